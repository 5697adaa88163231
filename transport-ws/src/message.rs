//! The WebSocket connection and its message API (the seed's
//! `websocket_send_msg` / `websocket_recv_msg` / `websocket_disconnect`):
//! RFC 6455 §5 (framing, fragmentation, control frames), §6 (sending and
//! receiving data), §7 (closing) and §8.1 (UTF-8), for either role.
//!
//! [`WsConnection`] owns the inner transport and borrows two buffers the
//! caller lends: the receive buffer holds unread bytes from the transport
//! (the handshake's leftovers first), the transmit buffer holds the bytes
//! waiting to be written: a data frame's header and, for the client, its
//! payload masked while it is copied in (a payload larger than the buffer
//! is sent in pieces, still as one frame), or a whole control frame we send
//! (a pong, the echo of a Close, our Close).
//!
//! The reader is strict: every frame a conforming peer may not send fails
//! the connection with a [`ProtocolError`] after a Close frame with the
//! matching code. Pings are answered with the same payload whenever the
//! reader runs, also between fragments. A received Close is echoed; after it
//! the message API returns [`Error::NotConnected`].
//!
//! # Shape: synchronous steps, one await per kind of I/O
//!
//! Every operation (`recv_msg`, `send_msg`, the stream's `read`, `write`
//! and `flush`, `flush`, `close`, `service`) runs the same small loop,
//! `drive`: it asks a synchronous `&mut self` step (in `receive.rs` and
//! `send.rs`) what I/O comes next, does it with the one `io.read`, the one
//! `io.write` or the one `io.flush` of the loop, and hands the result back
//! to a synchronous method. Frame headers, control frames and the pongs and
//! Close echoes they call for, UTF-8, limits and the Close that a protocol
//! failure sends are all decided in the steps, as quinn-proto's connection
//! is driven by quinn. So the state machine the compiler builds for an
//! operation has three await points whatever the protocol does, and the
//! state that must outlive a dropped future lives in the connection.
//!
//! # Cancel-safety
//!
//! Timeouts take a caller-supplied deadline future raced with
//! `embassy_futures::select`, so no clock is read here. Receiving is
//! cancel-safe, also while it answers a ping or echoes a Close: consuming a
//! control frame from the receive buffer and building its answer in the
//! transmit buffer happen in one synchronous step, a cursor records how
//! much of the answer the transport took, and whatever runs next (read,
//! write, `service`, `close`) finishes it before anything else. A received
//! Close stays in the receive buffer until it is reported. Cancelling a
//! data send after its first byte went out leaves a partial frame on the
//! wire: the connection is then failed (the next call says
//! [`Error::NotConnected`]); cancelled before, the frame is dropped unsent.
//! This relies on the transport's `write` being cancel-safe (what it
//! reports written is all it wrote; a dropped write wrote nothing), which
//! holds for the tokio adapters and embassy-net's `TcpSocket`.
//!
//! Deliberately not here: extensions (none are negotiated), automatic
//! keep-alive pings (the MQTT layer has PINGREQ), and any allocation.

use core::future::Future;

use embassy_futures::select::{Either, select};
use embedded_io_async::{Read, Write};

use crate::error::{Error, ProtocolError};
use crate::frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, Opcode};
use crate::utf8::Utf8Stream;

mod receive;
mod send;

use receive::Sink;

pub(crate) use send::MAX_CONTROL_FRAME;

/// The smallest receive buffer: one whole control frame with its header.
pub const MIN_RX_BUF: usize = MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD;

/// The smallest transmit buffer: one whole control frame, masked (2 header
/// bytes, a 4-byte mask, 125 bytes of payload). Pongs and Close frames are
/// built there, so the connection keeps no buffer of its own for them.
pub const MIN_TX_BUF: usize = MAX_CONTROL_FRAME;

/// Which end of the connection we are: decides masking both ways (§5.1).
pub trait Role {
    /// The masking key for the next frame we send: a fresh random key for
    /// a client, `None` for a server.
    fn next_mask(&mut self) -> Option<[u8; 4]>;
    /// Whether frames from the peer must be masked (true for a server).
    fn expects_masked(&self) -> bool;
}

/// The client role: masks every frame with a fresh key from `R` (§5.3) and
/// requires unmasked frames from the server.
#[derive(Debug)]
pub struct ClientRole<R>(pub R);

impl<R: rand_core::RngCore + rand_core::CryptoRng> Role for ClientRole<R> {
    fn next_mask(&mut self) -> Option<[u8; 4]> {
        Some(self.0.next_u32().to_ne_bytes())
    }
    fn expects_masked(&self) -> bool {
        false
    }
}

/// The server role: sends unmasked frames and requires masked ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerRole;

impl Role for ServerRole {
    fn next_mask(&mut self) -> Option<[u8; 4]> {
        None
    }
    fn expects_masked(&self) -> bool {
        true
    }
}

/// Connection limits and mode.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The largest message accepted; a longer one fails with close code
    /// 1009 (§7.4.1). Counts all fragments.
    pub max_message_len: u64,
    /// MQTT mode (MQTT §6): a text frame fails with close code 1003
    /// [MQTT-6.0.0-1].
    pub mqtt: bool,
}

impl Default for Config {
    /// No MQTT mode; messages up to 256 MiB + 5 bytes (the largest MQTT
    /// packet).
    fn default() -> Self {
        Self {
            max_message_len: 268_435_460,
            mqtt: false,
        }
    }
}

/// The buffers a connection borrows.
#[derive(Debug)]
pub struct Buffers<'b> {
    /// Receive buffer, at least [`MIN_RX_BUF`] bytes; on a client it also
    /// holds the whole handshake response header.
    pub rx: &'b mut [u8],
    /// Transmit buffer, at least [`MIN_TX_BUF`] bytes: data frames are
    /// staged there (in pieces when larger), and the pongs and Close frames
    /// we send are built there whole. On a client it also holds the extra
    /// header lines of the handshake request.
    pub tx: &'b mut [u8],
}

/// What [`WsConnection::recv_msg`] delivered (the seed's message type,
/// flags and `remaining`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvInfo {
    /// Bytes written to the caller's buffer.
    pub len: usize,
    /// The message type: `Text` or `Binary` for data (continuations report
    /// their message's type), `Close` when the peer closed (the buffer then
    /// holds the close payload: code and reason).
    pub opcode: Opcode,
    /// The current frame is the final fragment of its message.
    pub fin: bool,
    /// Payload bytes of the current frame not yet delivered.
    pub remaining: u64,
}

impl RecvInfo {
    /// What an operation without data returns.
    pub(crate) const NONE: Self = Self {
        len: 0,
        opcode: Opcode::Binary,
        fin: true,
        remaining: 0,
    };

    /// True once the last byte of a message was delivered.
    pub const fn is_message_end(&self) -> bool {
        self.fin && self.remaining == 0
    }
}

/// A close status code we may send (RFC 6455 §7.4: never 1005, 1006, 1015
/// or an undefined code).
pub const fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We sent Close and wait for the peer's.
    CloseSent,
    /// Both Close frames exchanged (or the peer's echoed).
    Closed,
    /// A protocol or transport failure ended the connection.
    Failed,
}

/// The frame currently being delivered.
#[derive(Debug, Clone, Copy)]
struct FrameState {
    remaining: u64,
    fin: bool,
    mask: Option<[u8; 4]>,
    offset: u64,
}

/// What an operation asks the loop in `drive` for next.
enum Step<E> {
    /// Write `tx[tx_sent..tx_len]`.
    Write,
    /// Flush the transport.
    Flush,
    /// Read into the free end of the receive buffer.
    Fill,
    /// Read up to this many payload bytes straight into the caller's
    /// buffer (nothing of the frame is buffered).
    ReadDirect(usize),
    /// The peer broke the protocol: a Close with the error's code is
    /// queued and the connection failed; the operation ends with the error
    /// once the Close is out (or could not be written).
    Fail(ProtocolError),
    /// The operation's result.
    Done(Result<RecvInfo, Error<E>>),
}

/// One operation run by `drive`: its arguments and the progress that may
/// live in the future (a data frame dropped part-way fails the connection,
/// so its progress need not outlive the future).
pub(crate) enum Job<'a> {
    /// Deliver payload bytes into `buf` (`recv_msg`); with `skip_empty`
    /// (the stream's `read`), empty data frames are passed over.
    Recv { buf: &'a mut [u8], skip_empty: bool },
    /// Service control frames until data waits (`service`).
    Service,
    /// Send one frame of `payload`; `flush` afterwards if asked.
    Send(send::Send<'a>),
    /// Finish control output and flush.
    Flush,
    /// The closing handshake: send our Close once, then discard data until
    /// the peer's Close.
    Close { code: u16, reason: &'a str },
}

/// One WebSocket connection over transport `T`, in role `M`.
///
/// Build a client with [`WsConnection::connect`] (in `client.rs`), a server
/// with `crate::server`, or wrap an already upgraded transport with
/// [`WsConnection::from_upgraded`].
pub struct WsConnection<'b, T, M> {
    io: T,
    role: M,
    cfg: Config,
    rx: &'b mut [u8],
    rx_pos: usize,
    rx_end: usize,
    tx: &'b mut [u8],
    /// Bytes of `tx` waiting to be written: `tx[tx_sent..tx_len]`.
    tx_len: usize,
    tx_sent: usize,
    state: State,
    frame: Option<FrameState>,
    /// The data type of the message being received, if one is open.
    msg: Option<Opcode>,
    msg_len: u64,
    utf8: Utf8Stream,
    /// A fragmented message is being sent.
    sending_fragments: bool,
    /// `tx` holds (part of) a data frame, not a control frame of ours.
    tx_data: bool,
    /// A data write was dropped after its first byte: half a frame is on
    /// the wire.
    tx_torn: bool,
    /// Control output went out whole but the transport was not flushed, or
    /// `flush` was asked for.
    unflushed: bool,
    /// A Close was received and is not yet reported: its header length and
    /// payload length. The frame stays at `rx_pos` until then.
    unreported_close: Option<(u8, u8)>,
}

impl<'b, T: Read + Write, M: Role> WsConnection<'b, T, M> {
    /// Wraps a transport on which the upgrade is already done. `leftover`
    /// bytes of `buffers.rx` (from its start) are frames that arrived with
    /// the handshake.
    pub fn from_upgraded(
        io: T,
        role: M,
        buffers: Buffers<'b>,
        leftover: usize,
        cfg: Config,
    ) -> Result<Self, Error<T::Error>> {
        if buffers.rx.len() < MIN_RX_BUF {
            return Err(Error::BufferTooSmall {
                required: MIN_RX_BUF,
            });
        }
        if buffers.tx.len() < MIN_TX_BUF {
            return Err(Error::BufferTooSmall {
                required: MIN_TX_BUF,
            });
        }
        Ok(Self {
            io,
            role,
            cfg,
            rx_pos: 0,
            rx_end: leftover.min(buffers.rx.len()),
            rx: buffers.rx,
            tx: buffers.tx,
            tx_len: 0,
            tx_sent: 0,
            state: State::Open,
            frame: None,
            msg: None,
            msg_len: 0,
            utf8: Utf8Stream::default(),
            sending_fragments: false,
            tx_data: false,
            tx_torn: false,
            unflushed: false,
            unreported_close: None,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// True while data may still be sent and received.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// True once the closing handshake completed cleanly.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Hands back the inner transport (the seed's `websocket_unregister`).
    /// Call [`close`](Self::close) first for a clean close.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// The inner transport.
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Closed cleanly (Close exchanged or the peer dropped the transport
    /// after ours): the stream reports end of file.
    pub(crate) fn at_clean_end(&self) -> bool {
        self.state == State::Closed
    }

    /// The one async loop under every operation: asks the job's
    /// synchronous step what I/O it needs, does it, and hands the result
    /// back. One await per kind of I/O.
    pub(crate) async fn drive(&mut self, job: &mut Job<'_>) -> Result<RecvInfo, Error<T::Error>> {
        let mut failure: Option<ProtocolError> = None;
        loop {
            let step = match failure {
                // Failing: only the queued Close is written, then the error.
                Some(e) => self
                    .output_step()
                    .unwrap_or(Step::Done(Err(Error::Protocol(e)))),
                None => self.step(job),
            };
            let after = match step {
                Step::Write => {
                    let out = self.tx.get(self.tx_sent..self.tx_len).unwrap_or_default();
                    let written = self.io.write(out).await;
                    self.on_written(written)
                }
                Step::Flush => {
                    let flushed = self.io.flush().await;
                    self.on_flushed(flushed)
                }
                Step::Fill | Step::ReadDirect(_) => {
                    let direct = match step {
                        Step::ReadDirect(want) => Some(want),
                        _ => None,
                    };
                    let dst = match (direct, &mut *job) {
                        (Some(want), Job::Recv { buf, .. }) => {
                            buf.get_mut(..want).unwrap_or_default()
                        }
                        // `recv_step` moved the unread bytes to the front.
                        _ => self.rx.get_mut(self.rx_end..).unwrap_or_default(),
                    };
                    let read = self.io.read(dst).await;
                    self.on_read(read, direct, job)
                }
                done_or_fail => Some(done_or_fail),
            };
            match after {
                Some(Step::Fail(e)) => failure = Some(e),
                Some(Step::Done(r)) => {
                    return match failure {
                        Some(e) => Err(Error::Protocol(e)),
                        None => r,
                    };
                }
                // The I/O went through: ask the step again.
                _ => {}
            }
        }
    }

    /// The step of `job`.
    fn step(&mut self, job: &mut Job<'_>) -> Step<T::Error> {
        match job {
            Job::Recv { buf, skip_empty } => self.recv_step(Sink::Buf(buf, *skip_empty)),
            Job::Service => self.recv_step(Sink::StopBeforeData),
            Job::Send(send) => self.send_step(send),
            Job::Flush => self.output_step().unwrap_or(Step::Done(Ok(RecvInfo::NONE))),
            Job::Close { code, reason } => self.close_step(*code, reason),
        }
    }

    // ----- the public operations -----------------------------------------

    /// Sends one frame of a message (the seed's `websocket_send_msg`).
    ///
    /// A message is `Text` or `Binary` with `fin = true`, or fragmented:
    /// the first frame `Text`/`Binary` with `fin = false`, then
    /// `Continuation` frames, the last with `fin = true` (§5.4). `Ping` and
    /// `Pong` (payload up to 125 bytes) may be sent between fragments. Use
    /// [`close`](Self::close) to close. Masking follows the role (§5.1), so
    /// there is no mask argument: a client always masks, a server never.
    pub async fn send_msg(
        &mut self,
        payload: &[u8],
        opcode: Opcode,
        fin: bool,
    ) -> Result<(), Error<T::Error>> {
        let mut job = Job::Send(send::Send::new(payload, opcode, fin, true));
        self.drive(&mut job).await.map(drop)
    }

    /// [`send_msg`](Self::send_msg) bounded by `deadline`. A send cut off by
    /// the deadline after its first byte went out leaves a partial frame:
    /// the connection is then failed. Cut off earlier, it stays usable.
    pub async fn send_msg_with_timeout(
        &mut self,
        payload: &[u8],
        opcode: Opcode,
        fin: bool,
        deadline: impl Future<Output = ()>,
    ) -> Result<(), Error<T::Error>> {
        let r = match select(self.send_msg(payload, opcode, fin), deadline).await {
            Either::First(r) => return r,
            Either::Second(()) => Err(Error::Timeout),
        };
        if self.tx_torn {
            self.state = State::Failed;
        }
        r
    }

    /// Sends a data frame with `fin`, unflushed; used by the stream's
    /// `write`.
    pub(crate) async fn send_data(
        &mut self,
        payload: &[u8],
        opcode: Opcode,
    ) -> Result<(), Error<T::Error>> {
        let mut job = Job::Send(send::Send::new(payload, opcode, true, false));
        self.drive(&mut job).await.map(drop)
    }

    /// Finishes pending control output, then flushes the inner transport.
    pub async fn flush(&mut self) -> Result<(), Error<T::Error>> {
        // Owed until done: dropped, the next operation flushes first.
        self.unflushed = true;
        self.drive(&mut Job::Flush).await.map(drop)
    }

    /// Starts or completes the closing handshake (§7.1.1, §7.1.2, the
    /// seed's `websocket_disconnect`): finishes pending control output,
    /// sends Close with `code` and `reason` (at most 123 bytes), then reads
    /// until the peer's Close arrives, discarding data. `Ok` once the
    /// peer's Close arrived, or the peer ended the transport after ours
    /// (§7.1.1 lets the server close TCP first). Afterwards
    /// [`into_inner`](Self::into_inner) hands back the transport.
    ///
    /// `deadline` bounds the whole call ([`Error::Timeout`]); pass
    /// `core::future::pending()` for none. Cancel-safe: dropped (or timed
    /// out) part-way, the Close is finished by the next call, and calling
    /// `close` again resumes the wait. Codes 1005, 1006 and 1015 and
    /// undefined codes are refused ([`Error::InvalidCloseCode`]); they may
    /// never be sent.
    pub async fn close(
        &mut self,
        code: u16,
        reason: &str,
        deadline: impl Future<Output = ()>,
    ) -> Result<(), Error<T::Error>> {
        if !is_sendable_close_code(code) || reason.len() > MAX_CONTROL_PAYLOAD - 2 {
            return Err(Error::InvalidCloseCode(code));
        }
        let mut job = Job::Close { code, reason };
        match select(self.drive(&mut job), deadline).await {
            Either::First(Err(Error::NotConnected)) if self.state == State::Closed => Ok(()),
            Either::First(r) => r.map(drop),
            Either::Second(()) => Err(Error::Timeout),
        }
    }

    /// Receives the next piece of a message (the seed's
    /// `websocket_recv_msg`). Answers pings and skips pongs on the way.
    ///
    /// Returns at most one frame's bytes: `remaining` says how much of the
    /// frame is left when `buf` was smaller. A Close from the peer returns
    /// `opcode: Close` with its payload in `buf` (as much as fits); after
    /// that, and after any failure, [`Error::NotConnected`].
    pub async fn recv_msg(&mut self, buf: &mut [u8]) -> Result<RecvInfo, Error<T::Error>> {
        let mut job = Job::Recv {
            buf,
            skip_empty: false,
        };
        self.drive(&mut job).await
    }

    /// [`recv_msg`](Self::recv_msg) bounded by `deadline`: on expiry
    /// [`Error::Timeout`] (the seed's `-EAGAIN`) and the connection stays
    /// usable.
    pub async fn recv_msg_with_timeout(
        &mut self,
        buf: &mut [u8],
        deadline: impl Future<Output = ()>,
    ) -> Result<RecvInfo, Error<T::Error>> {
        match select(self.recv_msg(buf), deadline).await {
            Either::First(r) => r,
            Either::Second(()) => Err(Error::Timeout),
        }
    }

    /// Services control frames without consuming data, until data is
    /// waiting (`Ok(true)`) or `deadline` passes (`Ok(false)`): how a
    /// write-only user gets pings answered and Close frames echoed. A Close
    /// from the peer is echoed and reported as [`Error::NotConnected`].
    pub async fn service(
        &mut self,
        deadline: impl Future<Output = ()>,
    ) -> Result<bool, Error<T::Error>> {
        match select(self.drive(&mut Job::Service), deadline).await {
            Either::First(Ok(info)) if info.opcode == Opcode::Close => Err(Error::NotConnected),
            Either::First(r) => r.map(|_| true),
            Either::Second(()) => Ok(false),
        }
    }
}

#[cfg(test)]
mod cancel_tests;

#[cfg(test)]
mod tests;
