//! Control output waiting to go out: the Pong for a Ping (RFC 6455
//! §5.5.2), the echo of a peer's Close and our own Close (§5.5.1, §7.1.2).
//!
//! The frame is encoded and masked whole, into a buffer inside the
//! connection, at the moment the frame it answers is consumed from the
//! receive buffer; a cursor records how much of it the transport took. A
//! future dropped while writing it (a receive cut short by a timer, as the
//! MQTT client's driver does all the time) therefore loses nothing and
//! leaves no half frame: the next read, write, `service` or `close` finishes
//! the frame before anything else, as tungstenite queues its pongs. One
//! slot is enough because every entry point finishes it first, so a second
//! control frame is never queued behind an unfinished one.
//!
//! This relies on the transport's `write` being cancel-safe (what it
//! reports written is all it wrote; a dropped write wrote nothing), which
//! holds for the tokio adapters and embassy-net's `TcpSocket`.
//!
//! Deliberately not here: data frames (the caller's payload is not ours to
//! keep; a data write dropped mid-frame fails the connection instead).

use embedded_io_async::Write;

use crate::error::Error;
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, Opcode, mask_copy};

/// The largest control frame: 2 header bytes, a 4-byte mask, 125 bytes of
/// payload.
pub(crate) const MAX_CONTROL_FRAME: usize = 2 + 4 + MAX_CONTROL_PAYLOAD;

/// One encoded control frame and how much of it was written.
#[derive(Debug)]
pub(crate) struct ControlOut {
    frame: [u8; MAX_CONTROL_FRAME],
    len: u8,
    written: u8,
    /// The frame went out whole but the transport was not flushed yet.
    unflushed: bool,
}

impl ControlOut {
    pub(crate) const fn new() -> Self {
        Self {
            frame: [0; MAX_CONTROL_FRAME],
            len: 0,
            written: 0,
            unflushed: false,
        }
    }

    /// True while a frame (or its flush) waits.
    pub(crate) const fn is_pending(&self) -> bool {
        self.len > 0 || self.unflushed
    }

    /// True if no byte of the current frame was written yet (or there is
    /// none): it may still be replaced.
    pub(crate) const fn is_untouched(&self) -> bool {
        self.written == 0
    }

    /// Encodes `opcode` with `payload` (at most 125 bytes, cut otherwise)
    /// masked with `mask`, replacing a frame of which nothing was written.
    /// Returns false, queuing nothing, if a started frame is still pending.
    pub(crate) fn queue(&mut self, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) -> bool {
        if !self.is_untouched() {
            return false;
        }
        let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
        let header = FrameHeader {
            fin: true,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        // A control frame's header is at most 6 bytes: always fits.
        let header_len = header.encode(&mut self.frame).unwrap_or_default();
        let dst = self.frame.get_mut(header_len..).unwrap_or_default();
        let n = match mask {
            Some(key) => mask_copy(payload, dst, key, 0),
            None => {
                let n = payload.len().min(dst.len());
                if let (Some(d), Some(s)) = (dst.get_mut(..n), payload.get(..n)) {
                    d.copy_from_slice(s);
                }
                n
            }
        };
        self.len = (header_len + n) as u8;
        self.written = 0;
        true
    }

    /// Drops the frame unsent (the connection failed under it).
    pub(crate) fn discard(&mut self) {
        self.len = 0;
        self.written = 0;
        self.unflushed = false;
    }

    /// Writes what is left of the frame, then flushes. Cancel-safe: the
    /// cursor moves only by what the transport reports written. On a
    /// transport error the frame is dropped and the error returned.
    pub(crate) async fn finish<T: Write>(&mut self, io: &mut T) -> Result<(), Error<T::Error>> {
        while self.written < self.len {
            let rest = self
                .frame
                .get(usize::from(self.written)..usize::from(self.len))
                .unwrap_or_default();
            match io.write(rest).await {
                // `write` may return 0 only for an empty buffer.
                Ok(0) => {
                    self.discard();
                    return Err(Error::UnexpectedEof);
                }
                Ok(n) => self.written += n.min(rest.len()) as u8,
                Err(e) => {
                    self.discard();
                    return Err(Error::Io(e));
                }
            }
            if self.written == self.len {
                self.len = 0;
                self.written = 0;
                self.unflushed = true;
            }
        }
        if self.unflushed {
            if let Err(e) = io.flush().await {
                self.discard();
                return Err(Error::Io(e));
            }
            self.unflushed = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_5_5_largest_control_frame_fits_masked() {
        let mut out = ControlOut::new();
        assert!(out.queue(Opcode::Pong, &[7; 125], Some([1, 2, 3, 4])));
        assert_eq!(usize::from(out.len), MAX_CONTROL_FRAME);
        let (h, n) = FrameHeader::decode(&out.frame).unwrap().unwrap();
        assert_eq!((h.opcode, h.payload_len, n), (Opcode::Pong, 125, 6));
    }

    #[test]
    fn a_started_frame_is_never_replaced() {
        let mut out = ControlOut::new();
        assert!(out.queue(Opcode::Pong, b"old", None));
        assert!(
            out.queue(Opcode::Pong, b"newer", None),
            "untouched: replaced"
        );
        out.written = 1;
        assert!(!out.queue(Opcode::Pong, b"newest", None));
        assert_eq!(&out.frame[2..7], b"newer");
    }
}
