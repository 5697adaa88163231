//! The receiving side of a connection, as synchronous steps over the lent
//! receive buffer: frame headers (RFC 6455 §5.2), masking by role (§5.1,
//! §5.3), fragmentation (§5.4), control frames (§5.5: pings answered with
//! the same payload, pongs dropped, a Close validated, echoed and reported),
//! the message limit (§7.4.1, close code 1009), MQTT's binary-only rule
//! [MQTT-6.0.0-1] and UTF-8 in text (§8.1).
//!
//! A control frame is read whole into the receive buffer and consumed in
//! the same step that queues its answer in the transmit buffer (see
//! `send.rs`). A received Close stays in the receive buffer, unconsumed,
//! until it is reported: nothing reads after it, so it needs no copy.
//!
//! Deliberately not here: writing (the steps return what they need written)
//! and the Close a failure sends (queued by `fail`, written by the loop).

use core::ops::Range;

use embedded_io_async::{Read, Write};

use super::{Error, FrameState, RecvInfo, Role, State, Step, WsConnection};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, Opcode, apply_mask, copy_prefix, move_within};
use crate::message::{Job, MIN_RX_BUF, is_sendable_close_code};
use crate::utf8::Utf8Stream;

/// Where received data payload goes.
pub(super) enum Sink<'x> {
    /// Into the caller's buffer (`recv_msg`); `true` passes over empty
    /// data frames (the stream's `read`).
    Buf(&'x mut [u8], bool),
    /// Nowhere: stop at a data frame's header (`service`).
    StopBeforeData,
    /// Dropped, after its checks (`close` waiting for the peer's Close).
    Discard,
}

/// Where delivered payload bytes are.
enum Delivered<'x> {
    /// In the caller's buffer.
    Caller(&'x mut [u8]),
    /// In the receive buffer, being discarded.
    Rx(Range<usize>),
}

/// Unmasks payload bytes received at `offset` of their frame and checks
/// the UTF-8 of a text message. False on invalid UTF-8.
fn check_payload(
    data: &mut [u8],
    unmask: Option<[u8; 4]>,
    offset: u64,
    opcode: Opcode,
    utf8: &mut Utf8Stream,
) -> bool {
    if let Some(key) = unmask {
        apply_mask(data, key, offset);
    }
    opcode != Opcode::Text || utf8.feed(data)
}

impl<T: Read + Write, M: Role> WsConnection<'_, T, M> {
    /// The step of a receive: pending output first, then a reported
    /// Close, then frames until data can be delivered to `sink`.
    pub(super) fn recv_step(&mut self, mut sink: Sink<'_>) -> Step<T::Error> {
        loop {
            // Pending output first, at every turn: a pong or echo queued
            // below goes out before the next frame is looked at.
            if let Some(step) = self.output_step() {
                return step;
            }
            if let Some((header_len, len)) = self.unreported_close.take() {
                return Step::Done(Ok(self.report_close(header_len, len, &mut sink)));
            }
            if matches!(self.state, State::Closed | State::Failed) {
                return Step::Done(Err(Error::NotConnected));
            }
            if self.frame.is_some() {
                match &mut sink {
                    Sink::StopBeforeData => return Step::Done(Ok(RecvInfo::NONE)),
                    Sink::Buf(buf, skip_empty) => match self.deliver(buf) {
                        Step::Done(Ok(info)) if *skip_empty && info.len == 0 => continue,
                        step => return step,
                    },
                    Sink::Discard => match self.deliver_discarding() {
                        Some(step) => return step,
                        None => continue,
                    },
                }
            }
            if let Some(step) = self.next_frame(matches!(sink, Sink::StopBeforeData)) {
                return step;
            }
        }
    }

    /// Hands the received Close (still at `rx_pos`) to the sink and
    /// consumes it.
    fn report_close(&mut self, header_len: u8, len: u8, sink: &mut Sink<'_>) -> RecvInfo {
        let start = self.rx_pos + usize::from(header_len);
        let len = usize::from(len);
        let mut n = 0;
        if let Sink::Buf(buf, _) = sink {
            n = len.min(buf.len());
            copy_prefix(buf, self.rx.get(start..start + n).unwrap_or_default());
        }
        self.rx_pos = start + len;
        RecvInfo {
            len: n,
            opcode: Opcode::Close,
            fin: true,
            remaining: 0,
        }
    }

    /// Moves unread bytes to the front and asks for a read into the rest.
    fn fill(&mut self) -> Step<T::Error> {
        if self.rx_pos > 0 {
            move_within(self.rx, self.rx_pos..self.rx_end, 0);
            self.rx_end -= self.rx_pos;
            self.rx_pos = 0;
        }
        if self.rx_end >= self.rx.len() {
            // Cannot happen with MIN_RX_BUF: a header plus a control
            // payload always fits.
            return Step::Done(Err(Error::BufferTooSmall {
                required: MIN_RX_BUF,
            }));
        }
        Step::Fill
    }

    /// Takes the result of a read: into the receive buffer, or `direct`ly
    /// into the caller's buffer (`Some(asked)`), whose bytes are then
    /// delivered.
    pub(super) fn on_read(
        &mut self,
        read: Result<usize, T::Error>,
        direct: Option<usize>,
        job: &mut Job<'_>,
    ) -> Option<Step<T::Error>> {
        let n = match read {
            Ok(0) => return Some(Step::Done(Err(self.eof()))),
            Ok(n) => n,
            Err(e) => {
                self.state = State::Failed;
                return Some(Step::Done(Err(Error::Io(e))));
            }
        };
        match (direct, job) {
            (Some(asked), Job::Recv { buf, .. }) => {
                // A transport claiming more than it was given is clamped.
                let n = n.min(asked);
                Some(self.delivered(Delivered::Caller(buf.get_mut(..n).unwrap_or_default())))
            }
            _ => {
                self.rx_end = (self.rx_end + n).min(self.rx.len());
                None
            }
        }
    }

    /// The transport ended.
    fn eof(&mut self) -> Error<T::Error> {
        if self.state == State::CloseSent {
            // The peer dropped the transport after our Close: done.
            self.state = State::Closed;
            Error::NotConnected
        } else {
            self.state = State::Failed;
            Error::UnexpectedEof
        }
    }

    /// Fails the connection for `e`: a Close with its code is queued
    /// (best effort: the loop writes it, then returns the error).
    fn fail(&mut self, e: ProtocolError) -> Step<T::Error> {
        if self.state == State::Open {
            self.queue_control(Opcode::Close, &e.close_code().to_be_bytes());
        }
        self.state = State::Failed;
        Step::Fail(e)
    }

    /// Looks at the next frame header. Control frames are handled whole
    /// here; a data frame becomes the current frame (its header left
    /// unconsumed with `stop_before_data`). `None` to go round again,
    /// otherwise the step to return.
    fn next_frame(&mut self, stop_before_data: bool) -> Option<Step<T::Error>> {
        let buffered = self.rx.get(self.rx_pos..self.rx_end).unwrap_or_default();
        let (header, header_len) = match FrameHeader::decode(buffered) {
            Err(e) => return Some(self.fail(e)),
            Ok(None) => return Some(self.fill()),
            Ok(Some(h)) => h,
        };
        // §5.1: a client MUST close on a masked frame; a server on an
        // unmasked one.
        if header.mask.is_some() != self.role.expects_masked() {
            let e = if self.role.expects_masked() {
                ProtocolError::UnmaskedFrameFromClient
            } else {
                ProtocolError::MaskedFrameFromServer
            };
            return Some(self.fail(e));
        }
        if header.opcode.is_control() {
            // Whole control frames only: decode guarantees len <= 125.
            let len = header.payload_len as usize;
            if buffered.len() < header_len + len {
                return Some(self.fill());
            }
            return self.on_control(header, header_len, len);
        }
        let refused = match (header.opcode, self.msg) {
            (Opcode::Continuation, None) => Some(ProtocolError::ContinuationWithoutStart),
            (Opcode::Text | Opcode::Binary, Some(_)) => {
                Some(ProtocolError::DataFrameInsideFragmentedMessage)
            }
            (Opcode::Text, None) if self.cfg.mqtt => Some(ProtocolError::TextFrameInMqtt),
            _ => None,
        };
        if let Some(e) = refused {
            return Some(self.fail(e));
        }
        if stop_before_data {
            return Some(Step::Done(Ok(RecvInfo::NONE)));
        }
        let msg_len = match self.msg {
            Some(_) => self.msg_len.saturating_add(header.payload_len),
            None => header.payload_len,
        };
        if msg_len > self.cfg.max_message_len {
            return Some(self.fail(ProtocolError::MessageTooBig));
        }
        if self.msg.is_none() {
            self.msg = Some(header.opcode);
            self.utf8.reset();
        }
        self.msg_len = msg_len;
        self.rx_pos += header_len;
        self.frame = Some(FrameState {
            remaining: header.payload_len,
            fin: header.fin,
            mask: header.mask,
            offset: 0,
        });
        None
    }

    /// A whole control frame at `rx_pos`: consumed (a Close only once
    /// reported) and answered in one step, with no await between: a
    /// dropped future loses neither.
    fn on_control(
        &mut self,
        header: FrameHeader,
        header_len: usize,
        len: usize,
    ) -> Option<Step<T::Error>> {
        let start = self.rx_pos + header_len;
        let end = start + len;
        // Only a server receives masked frames (checked by the caller); the
        // test lets a client build drop the unmasking code.
        if let (true, Some(key), Some(payload)) = (
            self.role.expects_masked(),
            header.mask,
            self.rx.get_mut(start..end),
        ) {
            apply_mask(payload, key, 0);
        }
        match header.opcode {
            // §5.5.2: answer with the same payload; not after our Close
            // (§5.5.1: nothing follows a Close). The transmit buffer is
            // empty here: pending output went first.
            Opcode::Ping if self.state == State::Open => {
                self.queue_control_from_rx(Opcode::Pong, start..end);
            }
            Opcode::Close => return self.on_close(header_len, len),
            // Pong (§5.5.3: unsolicited pongs need no answer), or a ping
            // after our Close.
            _ => {}
        }
        self.rx_pos = end;
        None
    }

    /// Validates a received Close (payload at `rx[start..]`), queues its
    /// echo, and keeps it in the receive buffer to be reported.
    fn on_close(&mut self, header_len: usize, len: usize) -> Option<Step<T::Error>> {
        let start = self.rx_pos + header_len;
        let payload = self.rx.get(start..start + len).unwrap_or_default();
        if len == 1 {
            return Some(self.fail(ProtocolError::InvalidClosePayload));
        }
        if let Some((code, reason)) = payload.split_first_chunk::<2>() {
            if !is_sendable_close_code(u16::from_be_bytes(*code)) {
                return Some(self.fail(ProtocolError::InvalidClosePayload));
            }
            if core::str::from_utf8(reason).is_err() {
                return Some(self.fail(ProtocolError::InvalidUtf8));
            }
        }
        if self.state == State::Open {
            // §5.5.1: echo the status code (an empty Close echoes empty).
            self.queue_control_from_rx(Opcode::Close, start..start + len.min(2));
        }
        self.state = State::Closed;
        // Both fit a u8: a control frame's header is at most 6 bytes, its
        // payload at most 125.
        self.unreported_close = Some((header_len as u8, len as u8));
        None
    }

    /// Delivers payload bytes of the current data frame into `buf`: from
    /// the receive buffer, or asks for a read straight into `buf`.
    fn deliver(&mut self, buf: &mut [u8]) -> Step<T::Error> {
        let remaining = self.frame.map_or(0, |f| f.remaining);
        if buf.is_empty() && remaining > 0 {
            // Nothing could be delivered: a caller looping on `remaining`
            // would spin for ever.
            return Step::Done(Err(Error::EmptyReceiveBuffer { remaining }));
        }
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let buffered = self.rx.get(self.rx_pos..self.rx_end).unwrap_or_default();
        if want > 0 && buffered.is_empty() {
            return Step::ReadDirect(want);
        }
        let n = copy_prefix(buf, buffered.get(..want).unwrap_or(buffered));
        self.rx_pos += n;
        self.delivered(Delivered::Caller(buf.get_mut(..n).unwrap_or_default()))
    }

    /// Drops buffered payload bytes of the current data frame after their
    /// checks; `None` to go round again.
    fn deliver_discarding(&mut self) -> Option<Step<T::Error>> {
        let remaining = self.frame.map_or(0, |f| f.remaining);
        let buffered = self.rx_end - self.rx_pos;
        if remaining > 0 && buffered == 0 {
            return Some(self.fill());
        }
        let n = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buffered);
        let (start, end) = (self.rx_pos, self.rx_pos + n);
        self.rx_pos = end;
        match self.delivered(Delivered::Rx(start..end)) {
            Step::Done(Ok(_)) => None,
            step => Some(step),
        }
    }

    /// The bookkeeping after bytes were taken from the current frame.
    fn delivered(&mut self, data: Delivered<'_>) -> Step<T::Error> {
        let data = match data {
            Delivered::Caller(data) => data,
            Delivered::Rx(range) => self.rx.get_mut(range).unwrap_or_default(),
        };
        let checked = Self::account(
            data,
            &mut self.frame,
            &mut self.msg,
            &mut self.utf8,
            self.role.expects_masked(),
        );
        match checked {
            Ok(info) => Step::Done(Ok(info)),
            Err(e) => self.fail(e),
        }
    }

    /// Unmasks and checks `data`, the next bytes of the current frame, and
    /// moves the frame and message on past them.
    fn account(
        data: &mut [u8],
        frame_slot: &mut Option<FrameState>,
        msg: &mut Option<Opcode>,
        utf8: &mut Utf8Stream,
        expects_masked: bool,
    ) -> Result<RecvInfo, ProtocolError> {
        let Some(mut frame) = *frame_slot else {
            return Ok(RecvInfo::NONE);
        };
        let n = data.len();
        let opcode = msg.unwrap_or(Opcode::Binary);
        // A frame carries a mask only where the role expects one (checked
        // in `next_frame`); the test lets a client build drop this code.
        let unmask = frame.mask.filter(|_| expects_masked);
        if !check_payload(data, unmask, frame.offset, opcode, utf8) {
            return Err(ProtocolError::InvalidUtf8);
        }
        frame.offset += n as u64;
        frame.remaining -= (n as u64).min(frame.remaining);
        let info = RecvInfo {
            len: n,
            opcode,
            fin: frame.fin,
            remaining: frame.remaining,
        };
        if frame.remaining == 0 {
            *frame_slot = None;
            if frame.fin {
                *msg = None;
                if opcode == Opcode::Text && !utf8.is_complete() {
                    return Err(ProtocolError::InvalidUtf8);
                }
            }
        } else {
            *frame_slot = Some(frame);
        }
        Ok(info)
    }
}
