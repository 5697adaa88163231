//! The sending side of a connection, as synchronous steps over the lent
//! transmit buffer: data frames (RFC 6455 §5.2, §5.4, §6.1), the control
//! frames we send (a Pong for a Ping §5.5.2, the echo of a peer's Close
//! §5.5.1, our Close §7.1.2, the Close a failure sends §7.1.7), what is
//! owed to the transport (the rest of a frame, a flush), and the steps of
//! `send_msg`, `flush` and `close`.
//!
//! The transmit buffer holds at most one frame in progress,
//! `tx[tx_sent..tx_len]` still to write. A control frame is encoded and
//! masked whole into it at the moment the frame it answers is consumed,
//! and every operation writes what is left of it before anything else, as
//! tungstenite queues its pongs: a future dropped while writing it loses
//! nothing and leaves no half frame. One frame at a time is enough because
//! every operation finishes it first. A data frame is staged there piece by
//! piece from the caller's payload; once its first byte went out it must
//! be finished by the same future, or the connection fails.
//!
//! Deliberately not here: reading, and keeping the caller's payload (a
//! data write dropped mid-frame fails the connection instead).

use core::ops::Range;

use embedded_io_async::{Read, Write};

use super::receive::Sink;
use super::{Error, RecvInfo, Role, State, Step, WsConnection};
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, Opcode, copy_prefix, mask_copy};

/// The largest control frame: 2 header bytes, a 4-byte mask, 125 bytes of
/// payload.
pub(crate) const MAX_CONTROL_FRAME: usize = 2 + 4 + MAX_CONTROL_PAYLOAD;

/// A data or control frame being sent by `send_msg` or the stream's
/// `write`: its arguments and how far it got.
pub(crate) struct Send<'a> {
    payload: &'a [u8],
    opcode: Opcode,
    fin: bool,
    /// Flush once the frame is out (`send_msg`; not the stream's `write`).
    flush: bool,
    /// The frame's mask; set once the frame is started.
    mask: Option<[u8; 4]>,
    /// Payload bytes staged into the transmit buffer so far.
    staged: usize,
    started: bool,
    /// The frame went out whole.
    sent: bool,
}

impl<'a> Send<'a> {
    pub(crate) const fn new(payload: &'a [u8], opcode: Opcode, fin: bool, flush: bool) -> Self {
        Self {
            payload,
            opcode,
            fin,
            flush,
            mask: None,
            staged: 0,
            started: false,
            sent: false,
        }
    }
}

/// Copies `src` into `dst` (as much as fits), masked with `mask` from
/// payload `offset` when there is one; returns the bytes copied.
fn copy_payload(src: &[u8], dst: &mut [u8], mask: Option<[u8; 4]>, offset: u64) -> usize {
    match mask {
        Some(key) => mask_copy(src, dst, key, offset),
        None => copy_prefix(dst, src),
    }
}

/// Encodes a frame header for `len` payload bytes, then as much of `first`
/// as fits, into `tx`. Returns the bytes encoded and the payload bytes
/// among them.
fn encode_frame(
    tx: &mut [u8],
    opcode: Opcode,
    fin: bool,
    mask: Option<[u8; 4]>,
    len: usize,
    first: &[u8],
) -> (usize, usize) {
    let header = FrameHeader {
        fin,
        opcode,
        mask,
        payload_len: len as u64,
    };
    // MIN_TX_BUF holds the longest header: always encodes.
    let header_len = header.encode(tx).unwrap_or_default();
    let dst = tx.get_mut(header_len..).unwrap_or_default();
    let n = copy_payload(first, dst, mask, 0);
    (header_len + n, n)
}

impl<T: Read + Write, M: Role> WsConnection<'_, T, M> {
    /// What every operation does first, and the only step while a failure
    /// is being reported: fails the connection if a data write was dropped
    /// mid-frame, drops a data frame of which nothing went out, then asks
    /// for the rest of a pending control frame and its flush. `None` once
    /// nothing is owed to the transport.
    pub(super) fn output_step(&mut self) -> Option<Step<T::Error>> {
        if self.tx_torn {
            self.discard_output();
            self.state = State::Failed;
            return Some(Step::Done(Err(Error::NotConnected)));
        }
        if self.tx_data {
            // A data frame dropped before its first byte: never sent.
            self.discard_output();
        }
        if self.tx_sent < self.tx_len {
            Some(Step::Write)
        } else if self.unflushed {
            Some(Step::Flush)
        } else {
            None
        }
    }

    /// Forgets the transmit buffer's frame.
    fn discard_output(&mut self) {
        self.tx_len = 0;
        self.tx_sent = 0;
        self.tx_data = false;
        self.tx_torn = false;
    }

    /// Takes the result of writing `tx[tx_sent..tx_len]`. A failed write
    /// fails the connection.
    pub(super) fn on_written(
        &mut self,
        written: Result<usize, T::Error>,
    ) -> Option<Step<T::Error>> {
        let e = match written {
            // `write` may return 0 only for an empty buffer.
            Ok(0) => Error::UnexpectedEof,
            Ok(n) => {
                self.tx_sent = (self.tx_sent + n).min(self.tx_len);
                if self.tx_data {
                    self.tx_torn = true;
                } else if self.tx_sent == self.tx_len {
                    // A control frame went out whole.
                    self.tx_len = 0;
                    self.tx_sent = 0;
                    self.unflushed = true;
                }
                return None;
            }
            Err(e) => Error::Io(e),
        };
        self.discard_output();
        self.unflushed = false;
        self.state = State::Failed;
        Some(Step::Done(Err(e)))
    }

    /// Takes the result of a flush.
    pub(super) fn on_flushed(&mut self, flushed: Result<(), T::Error>) -> Option<Step<T::Error>> {
        self.unflushed = false;
        match flushed {
            Ok(()) => None,
            Err(e) => {
                self.state = State::Failed;
                Some(Step::Done(Err(Error::Io(e))))
            }
        }
    }

    /// Encodes a control frame of ours whole into the (empty) transmit
    /// buffer, masked per the role. `payload` is cut to 125 bytes. Nothing
    /// is queued behind a frame in progress (never the case: every
    /// operation finishes it first).
    pub(super) fn queue_control(&mut self, opcode: Opcode, payload: &[u8]) {
        if self.tx_len == 0 {
            let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
            let mask = self.role.next_mask();
            (self.tx_len, _) = encode_frame(self.tx, opcode, true, mask, payload.len(), payload);
            self.tx_sent = 0;
            self.tx_data = false;
        }
    }

    /// [`queue_control`](Self::queue_control) with the payload at
    /// `rx[payload]` (a ping's, a Close's code), which needs no copy.
    pub(super) fn queue_control_from_rx(&mut self, opcode: Opcode, payload: Range<usize>) {
        if self.tx_len == 0 {
            let payload = self.rx.get(payload).unwrap_or_default();
            let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
            let mask = self.role.next_mask();
            (self.tx_len, _) = encode_frame(self.tx, opcode, true, mask, payload.len(), payload);
            self.tx_sent = 0;
            self.tx_data = false;
        }
    }

    /// The step of a data or control frame sent by the caller.
    pub(super) fn send_step(&mut self, send: &mut Send<'_>) -> Step<T::Error> {
        if !send.started {
            if let Some(step) = self.output_step() {
                return step;
            }
            if self.state != State::Open {
                return Step::Done(Err(Error::NotConnected));
            }
            let refused = match send.opcode {
                Opcode::Continuation => !self.sending_fragments,
                Opcode::Text | Opcode::Binary => self.sending_fragments,
                Opcode::Close => true,
                Opcode::Ping | Opcode::Pong => {
                    !send.fin || send.payload.len() > MAX_CONTROL_PAYLOAD
                }
            };
            if refused {
                return Step::Done(Err(Error::InvalidSendSequence));
            }
            let mask = self.role.next_mask();
            let (tx_len, n) = encode_frame(
                self.tx,
                send.opcode,
                send.fin,
                mask,
                send.payload.len(),
                send.payload,
            );
            self.tx_len = tx_len;
            self.tx_sent = 0;
            self.tx_data = true;
            send.mask = mask;
            send.staged = n;
            send.started = true;
        }
        if !send.sent {
            if self.tx_sent < self.tx_len {
                return Step::Write;
            }
            if let Some(rest) = send.payload.get(send.staged..).filter(|r| !r.is_empty()) {
                // The next piece of the same frame.
                let n = copy_payload(rest, self.tx, send.mask, send.staged as u64);
                self.tx_len = n;
                self.tx_sent = 0;
                send.staged += n;
                return Step::Write;
            }
            self.discard_output();
            send.sent = true;
            if !send.opcode.is_control() {
                self.sending_fragments = !send.fin;
            }
            self.unflushed |= send.flush;
        }
        self.output_step().unwrap_or(Step::Done(Ok(RecvInfo::NONE)))
    }

    /// The step of `close`: our Close once, then the reader until the
    /// peer's Close.
    pub(super) fn close_step(&mut self, code: u16, reason: &str) -> Step<T::Error> {
        if let Some(step) = self.output_step() {
            return step;
        }
        match self.state {
            State::Closed => return Step::Done(Ok(RecvInfo::NONE)),
            State::Failed => return Step::Done(Err(Error::NotConnected)),
            State::Open => {
                let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
                let len = 2 + reason.len();
                if let Some((c, r)) = payload
                    .get_mut(..len)
                    .and_then(|dst| dst.split_at_mut_checked(2))
                {
                    copy_prefix(c, &code.to_be_bytes());
                    copy_prefix(r, reason.as_bytes());
                }
                self.queue_control(Opcode::Close, payload.get(..len).unwrap_or_default());
                self.state = State::CloseSent;
                return Step::Write;
            }
            State::CloseSent => {}
        }
        match self.recv_step(Sink::Discard) {
            Step::Done(Ok(info)) if info.opcode != Opcode::Close => {
                // Not reached: discarding never ends at data.
                Step::Done(Err(Error::NotConnected))
            }
            step => step,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameHeader;

    #[test]
    fn rfc6455_5_5_largest_control_frame_fits_the_smallest_transmit_buffer() {
        let mut tx = [0u8; super::super::MIN_TX_BUF];
        let header = FrameHeader {
            fin: true,
            opcode: Opcode::Pong,
            mask: Some([1, 2, 3, 4]),
            payload_len: 125,
        };
        let n = header.encode(&mut tx).unwrap();
        assert_eq!(n + 125, MAX_CONTROL_FRAME);
        assert_eq!(copy_payload(&[7; 125], &mut tx[n..], header.mask, 0), 125);
    }
}
