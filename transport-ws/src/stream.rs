//! The byte-stream view of a connection (the seed's `send()` / `recv()` on
//! a WebSocket socket): [`WsStream`] implements `embedded_io_async::Read`
//! and `Write`, which is what the MQTT client runs on (MQTT §6).
//!
//! Each `write` sends one data frame (binary by default, text selectable).
//! `read` yields the payload bytes of data frames regardless of frame and
//! message boundaries, since an MQTT packet may span frames or several may
//! share one [MQTT-6.0.0-2]. Control frames are serviced on every read.
//! A clean close reads as end of file (`Ok(0)`). [`WsStream::close`] is the
//! closing handshake for a client that ends its MQTT session (RFC 6455
//! §7.1.1).
//!
//! Cancel-safety: a `read` may be dropped at any await (the MQTT client's
//! driver does so whenever a timer wins) without losing data, a pong or a
//! Close echo, and without leaving half a control frame on the wire; so may
//! [`close`](WsStream::close). A `write` dropped after its first byte went
//! out fails the connection (the frame cannot be completed later); dropped
//! before, its frame is never sent.
//!
//! Deliberately not here: buffering of writes (each `write` is one frame;
//! the MQTT client writes whole packets).

use embedded_io_async::{ErrorType, Read, Write};

use crate::error::Error;
use crate::frame::Opcode;
use crate::message::{Job, Role, WsConnection};

/// A WebSocket connection seen as a byte stream.
pub struct WsStream<'b, T, M> {
    conn: WsConnection<'b, T, M>,
    write_opcode: Opcode,
}

impl<'b, T: Read + Write, M: Role> WsStream<'b, T, M> {
    /// Wraps a connection; writes send binary frames.
    pub fn new(conn: WsConnection<'b, T, M>) -> Self {
        Self {
            conn,
            write_opcode: Opcode::Binary,
        }
    }

    /// Makes writes send text frames instead of binary (not in MQTT mode,
    /// where text is forbidden [MQTT-6.0.0-1]).
    pub fn set_text(&mut self, text: bool) {
        self.write_opcode = if text && !self.conn.config().mqtt {
            Opcode::Text
        } else {
            Opcode::Binary
        };
    }

    /// The connection, for the message API, `service` and `close`.
    pub fn connection(&mut self) -> &mut WsConnection<'b, T, M> {
        &mut self.conn
    }

    /// The closing handshake (RFC 6455 §7.1.1, §7.1.2): finishes pending
    /// control output, sends Close with `code` (1000 for a normal end) and
    /// `reason` (at most 123 bytes), then reads until the peer's Close
    /// arrives, discarding data frames. `Ok` once the peer's Close arrived
    /// (or the peer ended the transport after ours); then drop the stream.
    ///
    /// No deadline of its own: bound it with the caller's timer (select and
    /// drop). Cancel-safe: dropped part-way, nothing half-written is left
    /// behind, and calling it again resumes. Errors: [`Error::NotConnected`]
    /// on a failed connection, [`Error::InvalidCloseCode`] for a code that
    /// may not be sent, [`Error::UnexpectedEof`] or [`Error::Io`] from the
    /// transport.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), Error<T::Error>> {
        self.conn.close(code, reason, core::future::pending()).await
    }

    /// Unwraps the connection.
    pub fn into_connection(self) -> WsConnection<'b, T, M> {
        self.conn
    }
}

impl<T: Read + Write, M: Role> ErrorType for WsStream<'_, T, M> {
    type Error = Error<T::Error>;
}

impl<T: Read + Write, M: Role> Read for WsStream<'_, T, M> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut job = Job::Recv {
            buf,
            skip_empty: true,
        };
        match self.conn.drive(&mut job).await {
            Ok(info) if info.opcode == Opcode::Close => Ok(0),
            Ok(info) => Ok(info.len),
            Err(Error::NotConnected) if self.conn.at_clean_end() => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl<T: Read + Write, M: Role> Write for WsStream<'_, T, M> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.conn.send_data(buf, self.write_opcode).await?;
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.conn.flush().await
    }
}
