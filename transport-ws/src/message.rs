//! The WebSocket connection and its message API (the seed's
//! `websocket_send_msg` / `websocket_recv_msg` / `websocket_disconnect`):
//! RFC 6455 §5 (framing, fragmentation, control frames), §6 (sending and
//! receiving data), §7 (closing) and §8.1 (UTF-8), for either role.
//!
//! [`WsConnection`] owns the inner transport and borrows two buffers the
//! caller lends: the receive buffer holds unread bytes from the transport
//! (the handshake's leftovers first), the transmit buffer is where frame
//! headers are written and, for the client, where the payload is masked
//! while it is copied in. A payload larger than the transmit buffer is sent
//! in pieces, still as one frame.
//!
//! The reader is strict: every frame a conforming peer may not send fails
//! the connection with a [`ProtocolError`] after a Close frame with the
//! matching code. Pings are answered with the same payload whenever the
//! reader runs, also between fragments. A received Close is echoed; after it
//! the message API returns [`Error::NotConnected`].
//!
//! Timeouts take a caller-supplied deadline future raced with
//! `embassy_futures::select`, so no clock is read here. Receiving is
//! cancel-safe, also while it answers a ping or echoes a Close: progress
//! lives in the connection, not in the future, and control frames we send
//! go out through [`control_out`], finished by whatever runs next (read,
//! write, `service`, `close`) before anything else. Cancelling a data send
//! after its first byte went out leaves a partial frame on the wire: the
//! connection is then failed (the next call says [`Error::NotConnected`]).
//!
//! Deliberately not here: extensions (none are negotiated), automatic
//! keep-alive pings (the MQTT layer has PINGREQ), and any allocation.

use core::future::Future;

use embassy_futures::select::{Either, select};
use embedded_io_async::{Read, Write};

use crate::error::{Error, ProtocolError};
use crate::frame::{
    FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, Opcode, apply_mask, mask_copy,
};
use crate::utf8::Utf8Stream;

mod control_out;
use control_out::ControlOut;

/// The smallest receive buffer: one whole control frame with its header.
pub const MIN_RX_BUF: usize = MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD;

/// The smallest transmit buffer: a header and one payload byte.
pub const MIN_TX_BUF: usize = MAX_HEADER_LEN + 1;

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
    /// Transmit buffer, at least [`MIN_TX_BUF`] bytes; on a client it also
    /// holds the extra header lines of the handshake request.
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

/// Why reading stopped. A protocol error is answered with a Close by
/// [`WsConnection::fail`], awaited in one place per entry point rather than
/// at every check (each await is a state of the reader's future: fewer of
/// them is less code on a device).
enum ReadFailure<E> {
    /// The peer broke the protocol: fail the connection with this.
    Protocol(ProtocolError),
    /// Returned as it is.
    Ended(Error<E>),
}

impl<E> From<Error<E>> for ReadFailure<E> {
    fn from(e: Error<E>) -> Self {
        Self::Ended(e)
    }
}

/// What the reader found when asked to stop at data.
enum Step {
    /// A data frame's payload is ready to be read.
    Data,
    /// A Close was received; its payload is in `control`.
    Close(usize),
}

/// Writes one frame; the payload is masked into the transmit buffer in
/// pieces if it does not fit. A free function over the connection's parts so
/// a payload held in the connection (a pong, a close echo) needs no copy.
///
/// `torn` is set once the first byte went out and cleared when the last
/// did: still set afterwards, it says a dropped write left half a frame.
async fn write_frame_parts<T: Write, M: Role>(
    io: &mut T,
    tx: &mut [u8],
    role: &mut M,
    torn: &mut bool,
    opcode: Opcode,
    payload: &[u8],
    fin: bool,
) -> Result<(), Error<T::Error>> {
    let mask = role.next_mask();
    let header = FrameHeader {
        fin,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let header_len = header.encode(tx).ok_or(Error::BufferTooSmall {
        required: MIN_TX_BUF,
    })?;
    match mask {
        Some(key) => {
            let mut offset = 0usize;
            let mut start = header_len;
            loop {
                let src = payload.get(offset..).unwrap_or_default();
                let dst = tx.get_mut(start..).unwrap_or_default();
                let n = mask_copy(src, dst, key, offset as u64);
                let out = tx.get(..start + n).unwrap_or_default();
                write_tracked(io, out, torn).await?;
                offset += n;
                start = 0;
                if offset >= payload.len() {
                    break;
                }
            }
        }
        None => {
            // Server: no copy unless the whole frame fits one write.
            let total = header_len + payload.len();
            if let Some(dst) = tx.get_mut(header_len..total) {
                dst.copy_from_slice(payload);
                let out = tx.get(..total).unwrap_or_default();
                write_tracked(io, out, torn).await?;
            } else {
                let head = tx.get(..header_len).unwrap_or_default();
                write_tracked(io, head, torn).await?;
                write_tracked(io, payload, torn).await?;
            }
        }
    }
    *torn = false;
    Ok(())
}

/// `write_all` that sets `torn` once a byte went out.
async fn write_tracked<T: Write>(
    io: &mut T,
    mut bytes: &[u8],
    torn: &mut bool,
) -> Result<(), Error<T::Error>> {
    while !bytes.is_empty() {
        let n = io.write(bytes).await.map_err(Error::Io)?;
        if n == 0 {
            // `write` may return 0 only for an empty buffer.
            return Err(Error::UnexpectedEof);
        }
        *torn = true;
        bytes = bytes.get(n..).unwrap_or_default();
    }
    Ok(())
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
    state: State,
    frame: Option<FrameState>,
    /// The data type of the message being received, if one is open.
    msg: Option<Opcode>,
    msg_len: u64,
    utf8: Utf8Stream,
    /// A fragmented message is being sent.
    sending_fragments: bool,
    /// The payload of the last control frame received.
    control: [u8; MAX_CONTROL_PAYLOAD],
    /// A pong, Close echo or Close of ours not yet written whole.
    out: ControlOut,
    /// A data write was dropped after its first byte: half a frame is on
    /// the wire (see [`write_frame_parts`]).
    tx_torn: bool,
    /// A Close was received (payload length in `control`) and is not yet
    /// reported: its echo was being written when the read was dropped.
    unreported_close: Option<u8>,
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
            state: State::Open,
            frame: None,
            msg: None,
            msg_len: 0,
            utf8: Utf8Stream::default(),
            sending_fragments: false,
            control: [0; MAX_CONTROL_PAYLOAD],
            out: ControlOut::new(),
            tx_torn: false,
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

    // ----- sending -------------------------------------------------------

    /// Writes one frame (see [`write_frame_parts`]), marking the
    /// connection failed if the write fails.
    async fn write_frame_or_fail(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        fin: bool,
    ) -> Result<(), Error<T::Error>> {
        let r = write_frame_parts(
            &mut self.io,
            self.tx,
            &mut self.role,
            &mut self.tx_torn,
            opcode,
            payload,
            fin,
        )
        .await;
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    /// Queues a control frame with `payload` (masked per the role) to be
    /// written by [`finish_control`](Self::finish_control). Nothing is
    /// queued behind a frame already started (never the case: every entry
    /// point finishes it first).
    fn queue_control(&mut self, opcode: Opcode, payload: &[u8]) {
        let mask = self.role.next_mask();
        let _ = self.out.queue(opcode, payload, mask);
    }

    /// What every entry point does first: fails the connection if a data
    /// write was dropped mid-frame, then writes what is left of a pending
    /// control frame and flushes. Cancel-safe.
    async fn finish_control(&mut self) -> Result<(), Error<T::Error>> {
        if self.tx_torn {
            self.out.discard();
            self.state = State::Failed;
            return Err(Error::NotConnected);
        }
        if self.out.is_pending()
            && let Err(e) = self.out.finish(&mut self.io).await
        {
            self.state = State::Failed;
            return Err(e);
        }
        Ok(())
    }

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
        self.finish_control().await?;
        if self.state != State::Open {
            return Err(Error::NotConnected);
        }
        match opcode {
            Opcode::Continuation if !self.sending_fragments => {
                return Err(Error::InvalidSendSequence);
            }
            Opcode::Text | Opcode::Binary if self.sending_fragments => {
                return Err(Error::InvalidSendSequence);
            }
            Opcode::Close => return Err(Error::InvalidSendSequence),
            Opcode::Ping | Opcode::Pong if !fin || payload.len() > MAX_CONTROL_PAYLOAD => {
                return Err(Error::InvalidSendSequence);
            }
            _ => {}
        }
        self.write_frame_or_fail(opcode, payload, fin).await?;
        if !opcode.is_control() {
            self.sending_fragments = !fin;
        }
        self.io.flush().await.map_err(Error::Io)
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

    /// Sends a binary frame with `fin`; used by the stream's `write`.
    pub(crate) async fn send_data(
        &mut self,
        payload: &[u8],
        opcode: Opcode,
    ) -> Result<(), Error<T::Error>> {
        self.finish_control().await?;
        if self.state != State::Open {
            return Err(Error::NotConnected);
        }
        if self.sending_fragments {
            return Err(Error::InvalidSendSequence);
        }
        self.write_frame_or_fail(opcode, payload, true).await
    }

    /// Finishes pending control output, then flushes the inner transport.
    pub async fn flush(&mut self) -> Result<(), Error<T::Error>> {
        self.finish_control().await?;
        self.io.flush().await.map_err(Error::Io)
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
        let closing = async {
            self.finish_control().await?;
            match self.state {
                State::Closed => return Ok(()),
                State::Failed => return Err(Error::NotConnected),
                State::Open => {
                    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
                    let len = 2 + reason.len();
                    if let Some(dst) = payload.get_mut(..len) {
                        let (c, r) = dst.split_at_mut(2);
                        c.copy_from_slice(&code.to_be_bytes());
                        r.copy_from_slice(reason.as_bytes());
                    }
                    self.queue_control(Opcode::Close, payload.get(..len).unwrap_or_default());
                    self.state = State::CloseSent;
                    self.finish_control().await?;
                }
                State::CloseSent => {}
            }
            let mut scratch = [0u8; 64];
            loop {
                match self.recv_msg(&mut scratch).await {
                    Ok(info) if info.opcode == Opcode::Close => return Ok(()),
                    Ok(_) => {}
                    Err(Error::NotConnected) if self.state == State::Closed => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        };
        match select(closing, deadline).await {
            Either::First(r) => r,
            Either::Second(()) => Err(Error::Timeout),
        }
    }

    /// Fails the connection for `e`: a best-effort Close with its code.
    async fn fail(&mut self, e: ProtocolError) -> Error<T::Error> {
        if self.state == State::Open {
            self.queue_control(Opcode::Close, &e.close_code().to_be_bytes());
        }
        // Failed before the await: a dropped future cannot fail it twice.
        self.state = State::Failed;
        let _ = self.finish_control().await;
        Error::Protocol(e)
    }

    /// The error a read ends with: a protocol error fails the connection
    /// first (see [`ReadFailure`]).
    async fn failed(&mut self, f: ReadFailure<T::Error>) -> Error<T::Error> {
        match f {
            ReadFailure::Protocol(e) => self.fail(e).await,
            ReadFailure::Ended(e) => e,
        }
    }

    // ----- receiving -----------------------------------------------------

    /// Reads more bytes from the transport into the receive buffer.
    async fn fill(&mut self) -> Result<(), Error<T::Error>> {
        if self.rx_pos > 0 {
            self.rx.copy_within(self.rx_pos..self.rx_end, 0);
            self.rx_end -= self.rx_pos;
            self.rx_pos = 0;
        }
        let Some(free) = self.rx.get_mut(self.rx_end..).filter(|f| !f.is_empty()) else {
            // Cannot happen with MIN_RX_BUF: a header plus a control
            // payload always fits.
            return Err(Error::BufferTooSmall {
                required: MIN_RX_BUF,
            });
        };
        let free_len = free.len();
        match self.io.read(free).await {
            Ok(0) => Err(self.eof()),
            Ok(n) => {
                // A transport claiming more than it was given is clamped.
                self.rx_end += n.min(free_len);
                Ok(())
            }
            Err(e) => {
                self.state = State::Failed;
                Err(Error::Io(e))
            }
        }
    }

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

    /// Processes frames until a data frame's payload is ready or a Close
    /// arrived. Control frames are handled here: pings answered, pongs
    /// dropped. With `stop_before_data`, a data header is left unconsumed.
    async fn advance(&mut self, stop_before_data: bool) -> Result<Step, ReadFailure<T::Error>> {
        loop {
            // Pending control output first, at every turn: a pong or echo
            // queued below goes out before the next frame is looked at.
            self.finish_control().await?;
            if let Some(len) = self.unreported_close.take() {
                return Ok(Step::Close(usize::from(len)));
            }
            if matches!(self.state, State::Closed | State::Failed) {
                return Err(Error::NotConnected.into());
            }
            if self.frame.is_some() {
                return Ok(Step::Data);
            }
            let buffered = self.rx.get(self.rx_pos..self.rx_end).unwrap_or_default();
            let (header, header_len) = match FrameHeader::decode(buffered) {
                Err(e) => return Err(ReadFailure::Protocol(e)),
                Ok(None) => {
                    self.fill().await?;
                    continue;
                }
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
                return Err(ReadFailure::Protocol(e));
            }
            if header.opcode.is_control() {
                // Whole control frames only: decode guarantees len <= 125.
                let len = header.payload_len as usize;
                let total = header_len + len;
                if buffered.len() < total {
                    self.fill().await?;
                    continue;
                }
                let start = self.rx_pos + header_len;
                let payload = self.rx.get(start..start + len).unwrap_or_default();
                let control = self.control.get_mut(..len).unwrap_or_default();
                control.copy_from_slice(payload);
                // Only a server receives masked frames (checked above); the
                // test lets a client build drop the unmasking code.
                if let (true, Some(key)) = (self.role.expects_masked(), header.mask) {
                    apply_mask(control, key, 0);
                }
                // Consuming the frame and queuing its answer happen together,
                // with no await between: a dropped future loses neither.
                self.rx_pos += total;
                match header.opcode {
                    // §5.5.2: answer with the same payload; not after our
                    // Close (§5.5.1: nothing follows a Close).
                    Opcode::Ping if self.state == State::Open => {
                        let mask = self.role.next_mask();
                        let _ = self.out.queue(
                            Opcode::Pong,
                            self.control.get(..len).unwrap_or_default(),
                            mask,
                        );
                    }
                    // Reported at the top of the loop once its echo is out.
                    Opcode::Close => self.on_close(len)?,
                    // Pong (§5.5.3: unsolicited pongs need no answer), or a ping
                    // after our Close.
                    _ => {}
                }
                continue;
            }
            match (header.opcode, self.msg) {
                (Opcode::Continuation, None) => {
                    return Err(ReadFailure::Protocol(
                        ProtocolError::ContinuationWithoutStart,
                    ));
                }
                (Opcode::Text | Opcode::Binary, Some(_)) => {
                    return Err(ReadFailure::Protocol(
                        ProtocolError::DataFrameInsideFragmentedMessage,
                    ));
                }
                (Opcode::Text, None) if self.cfg.mqtt => {
                    return Err(ReadFailure::Protocol(ProtocolError::TextFrameInMqtt));
                }
                _ => {}
            }
            if stop_before_data {
                return Ok(Step::Data);
            }
            let msg_len = match self.msg {
                Some(_) => self.msg_len.saturating_add(header.payload_len),
                None => header.payload_len,
            };
            if msg_len > self.cfg.max_message_len {
                return Err(ReadFailure::Protocol(ProtocolError::MessageTooBig));
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
            return Ok(Step::Data);
        }
    }

    /// Validates a received Close payload (in `self.control`) and queues
    /// its echo.
    fn on_close(&mut self, len: usize) -> Result<(), ReadFailure<T::Error>> {
        let payload = self.control.get(..len).unwrap_or_default();
        if len == 1 {
            return Err(ReadFailure::Protocol(ProtocolError::InvalidClosePayload));
        }
        if let Some((code, reason)) = payload.split_first_chunk::<2>() {
            if !is_sendable_close_code(u16::from_be_bytes(*code)) {
                return Err(ReadFailure::Protocol(ProtocolError::InvalidClosePayload));
            }
            if core::str::from_utf8(reason).is_err() {
                return Err(ReadFailure::Protocol(ProtocolError::InvalidUtf8));
            }
        }
        if self.state == State::Open {
            // §5.5.1: echo the status code (an empty Close echoes empty).
            let mask = self.role.next_mask();
            let echo = self.control.get(..len.min(2)).unwrap_or_default();
            let _ = self.out.queue(Opcode::Close, echo, mask);
        }
        self.state = State::Closed;
        self.unreported_close = Some(len as u8);
        Ok(())
    }

    /// Receives the next piece of a message (the seed's
    /// `websocket_recv_msg`). Answers pings and skips pongs on the way.
    ///
    /// Returns at most one frame's bytes: `remaining` says how much of the
    /// frame is left when `buf` was smaller. A Close from the peer returns
    /// `opcode: Close` with its payload in `buf` (as much as fits); after
    /// that, and after any failure, [`Error::NotConnected`].
    pub async fn recv_msg(&mut self, buf: &mut [u8]) -> Result<RecvInfo, Error<T::Error>> {
        let received = match self.advance(false).await {
            Ok(Step::Close(len)) => {
                let n = len.min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), self.control.get(..n)) {
                    dst.copy_from_slice(src);
                }
                Ok(RecvInfo {
                    len: n,
                    opcode: Opcode::Close,
                    fin: true,
                    remaining: 0,
                })
            }
            Ok(Step::Data) => self.read_payload(buf).await,
            Err(f) => Err(f),
        };
        match received {
            Ok(info) => Ok(info),
            Err(f) => Err(self.failed(f).await),
        }
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
        let serviced = async {
            match self.advance(true).await {
                Ok(step) => Ok(step),
                Err(f) => Err(self.failed(f).await),
            }
        };
        match select(serviced, deadline).await {
            Either::First(Ok(Step::Data)) => Ok(true),
            Either::First(Ok(Step::Close(_))) => Err(Error::NotConnected),
            Either::First(Err(e)) => Err(e),
            Either::Second(()) => Ok(false),
        }
    }

    /// Delivers payload bytes of the current data frame.
    async fn read_payload(&mut self, buf: &mut [u8]) -> Result<RecvInfo, ReadFailure<T::Error>> {
        let Some(mut frame) = self.frame else {
            return Err(Error::NotConnected.into());
        };
        if buf.is_empty() && frame.remaining > 0 {
            // Nothing could be delivered: a caller looping on `remaining`
            // would spin for ever.
            return Err(Error::EmptyReceiveBuffer {
                remaining: frame.remaining,
            }
            .into());
        }
        let want = usize::try_from(frame.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let mut n = 0;
        if want > 0 {
            let buffered = self.rx.get(self.rx_pos..self.rx_end).unwrap_or_default();
            if buffered.is_empty() {
                // Straight from the transport into the caller's buffer.
                let dst = buf.get_mut(..want).unwrap_or_default();
                n = match self.io.read(dst).await {
                    Ok(0) => return Err(self.eof().into()),
                    Ok(n) => n.min(want),
                    Err(e) => {
                        self.state = State::Failed;
                        return Err(Error::Io(e).into());
                    }
                };
            } else {
                n = want.min(buffered.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), buffered.get(..n)) {
                    dst.copy_from_slice(src);
                }
                self.rx_pos += n;
            }
        }
        let data = buf.get_mut(..n).unwrap_or_default();
        // A frame carries a mask only where the role expects one (checked
        // in `advance`); the test lets a client build drop this code.
        if let (true, Some(key)) = (self.role.expects_masked(), frame.mask) {
            apply_mask(data, key, frame.offset);
        }
        let opcode = self.msg.unwrap_or(Opcode::Binary);
        if opcode == Opcode::Text && !self.utf8.feed(data) {
            return Err(ReadFailure::Protocol(ProtocolError::InvalidUtf8));
        }
        frame.offset += n as u64;
        frame.remaining -= n as u64;
        let info = RecvInfo {
            len: n,
            opcode,
            fin: frame.fin,
            remaining: frame.remaining,
        };
        if frame.remaining == 0 {
            self.frame = None;
            if frame.fin {
                self.msg = None;
                if opcode == Opcode::Text && !self.utf8.is_complete() {
                    return Err(ReadFailure::Protocol(ProtocolError::InvalidUtf8));
                }
            }
        } else {
            self.frame = Some(frame);
        }
        Ok(info)
    }

    /// Closed cleanly (Close exchanged or the peer dropped the transport
    /// after ours): the stream reports end of file.
    pub(crate) fn at_clean_end(&self) -> bool {
        self.state == State::Closed
    }
}

#[cfg(test)]
mod cancel_tests;

#[cfg(test)]
mod tests {
    //! These tests script the server with hand-built frames: an in-memory
    //! fault injector for byte sequences no real server library will send.
    use super::*;
    use crate::frame::FrameHeader;
    use alloc::collections::VecDeque;
    use alloc::vec::Vec;
    use rand::SeedableRng;

    /// Reads come from scripted chunks (one chunk per read, EOF after);
    /// writes are recorded.
    struct Script {
        reads: VecDeque<Vec<u8>>,
        written: Vec<u8>,
    }
    impl embedded_io_async::ErrorType for Script {
        type Error = embedded_io::ErrorKind;
    }
    impl Read for Script {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let Some(mut chunk) = self.reads.pop_front() else {
                return Ok(0);
            };
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            if n < chunk.len() {
                self.reads.push_front(chunk.split_off(n));
            }
            Ok(n)
        }
    }
    impl Write for Script {
        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
    }

    fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let h = FrameHeader {
            fin,
            opcode: Opcode::from_bits(op).unwrap_or(Opcode::Binary),
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut out = alloc::vec![0u8; 14];
        let n = h.encode(&mut out).unwrap();
        out.truncate(n);
        out[0] = (out[0] & 0xF0) | op;
        out.extend_from_slice(payload);
        out
    }

    /// Splits what the client wrote into (opcode, fin, unmasked payload),
    /// checking every frame is masked (§5.3).
    fn sent_frames(mut bytes: &[u8]) -> Vec<(Opcode, bool, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (h, n) = FrameHeader::decode(bytes).unwrap().unwrap();
            let len = h.payload_len as usize;
            let mut p = bytes[n..n + len].to_vec();
            apply_mask(&mut p, h.mask.expect("client frames are masked"), 0);
            out.push((h.opcode, h.fin, p));
            bytes = &bytes[n + len..];
        }
        out
    }

    struct Fixture {
        rx: [u8; 256],
        tx: [u8; 64],
    }

    fn client<'b>(
        fx: &'b mut Fixture,
        reads: Vec<Vec<u8>>,
        cfg: Config,
    ) -> WsConnection<'b, Script, ClientRole<rand::rngs::StdRng>> {
        let io = Script {
            reads: reads.into(),
            written: Vec::new(),
        };
        let bufs = Buffers {
            rx: &mut fx.rx,
            tx: &mut fx.tx,
        };
        WsConnection::from_upgraded(
            io,
            ClientRole(rand::rngs::StdRng::seed_from_u64(1)),
            bufs,
            0,
            cfg,
        )
        .unwrap()
    }

    fn fx() -> Fixture {
        Fixture {
            rx: [0; 256],
            tx: [0; 64],
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        embassy_futures::block_on(f)
    }

    /// Receives until an error, returning the data and the error.
    fn drain(
        c: &mut WsConnection<'_, Script, ClientRole<rand::rngs::StdRng>>,
    ) -> (Vec<u8>, Error<embedded_io::ErrorKind>) {
        let mut data = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            match run(c.recv_msg(&mut buf)) {
                Ok(info) if info.opcode == Opcode::Close => return (data, Error::NotConnected),
                Ok(info) => data.extend_from_slice(&buf[..info.len]),
                Err(e) => return (data, e),
            }
        }
    }

    fn assert_failed_with(
        reads: Vec<Vec<u8>>,
        cfg: Config,
        expect: ProtocolError,
        close_code: u16,
    ) {
        let mut f = fx();
        let mut c = client(&mut f, reads, cfg);
        let (_, e) = drain(&mut c);
        assert!(matches!(e, Error::Protocol(p) if p == expect), "{e:?}");
        let sent = sent_frames(&c.inner_mut().written);
        let last = sent.last().unwrap();
        assert_eq!(last.0, Opcode::Close);
        assert_eq!(&last.2[..], &close_code.to_be_bytes());
        assert!(matches!(
            run(c.recv_msg(&mut [0; 4])),
            Err(Error::NotConnected)
        ));
    }

    #[test]
    fn rfc6455_5_1_masked_server_frame_rejected() {
        let masked = alloc::vec![0x82, 0x81, 1, 2, 3, 4, 0x55];
        assert_failed_with(
            alloc::vec![masked],
            Config::default(),
            ProtocolError::MaskedFrameFromServer,
            1002,
        );
    }

    #[test]
    fn rfc6455_5_4_continuation_without_start_rejected() {
        assert_failed_with(
            alloc::vec![frame(true, 0, b"x")],
            Config::default(),
            ProtocolError::ContinuationWithoutStart,
            1002,
        );
    }

    #[test]
    fn rfc6455_5_4_data_frame_inside_fragmented_message_rejected() {
        let reads = alloc::vec![frame(false, 2, b"a"), frame(true, 2, b"b")];
        assert_failed_with(
            reads,
            Config::default(),
            ProtocolError::DataFrameInsideFragmentedMessage,
            1002,
        );
    }

    #[test]
    fn rfc6455_8_1_invalid_utf8_across_fragments_closes_1007() {
        // "κ" is CE BA; split it across fragments and break the second byte.
        let reads = alloc::vec![frame(false, 1, b"ok\xCE"), frame(true, 0, b"\x41")];
        assert_failed_with(reads, Config::default(), ProtocolError::InvalidUtf8, 1007);
    }

    #[test]
    fn rfc6455_8_1_truncated_utf8_at_message_end_closes_1007() {
        let reads = alloc::vec![frame(false, 1, b"ok"), frame(true, 0, b"\xCE")];
        assert_failed_with(reads, Config::default(), ProtocolError::InvalidUtf8, 1007);
    }

    #[test]
    fn rfc6455_7_4_1_message_over_maximum_closes_1009() {
        let cfg = Config {
            max_message_len: 10,
            mqtt: false,
        };
        let reads = alloc::vec![frame(false, 2, b"123456"), frame(true, 0, b"789012")];
        assert_failed_with(reads, cfg, ProtocolError::MessageTooBig, 1009);
    }

    #[test]
    fn mqtt_6_0_0_1_text_frame_closes_1003() {
        let cfg = Config {
            mqtt: true,
            ..Config::default()
        };
        assert_failed_with(
            alloc::vec![frame(true, 1, b"hi")],
            cfg,
            ProtocolError::TextFrameInMqtt,
            1003,
        );
    }

    #[test]
    fn rfc6455_5_2_reserved_opcode_and_rsv_bits_close_1002() {
        assert_failed_with(
            alloc::vec![alloc::vec![0x83, 0]],
            Config::default(),
            ProtocolError::ReservedOpcode(3),
            1002,
        );
        assert_failed_with(
            alloc::vec![alloc::vec![0xC2, 0]],
            Config::default(),
            ProtocolError::ReservedBits,
            1002,
        );
    }

    #[test]
    fn rfc6455_5_5_126_byte_ping_closes_1002() {
        let mut ping = alloc::vec![0x89, 126, 0, 126];
        ping.extend_from_slice(&[0u8; 126]);
        assert_failed_with(
            alloc::vec![ping],
            Config::default(),
            ProtocolError::ControlFrameTooLong,
            1002,
        );
    }

    #[test]
    fn rfc6455_5_5_1_close_with_one_byte_payload_rejected() {
        assert_failed_with(
            alloc::vec![frame(true, 8, b"\x03")],
            Config::default(),
            ProtocolError::InvalidClosePayload,
            1002,
        );
        assert_failed_with(
            alloc::vec![frame(true, 8, &1005u16.to_be_bytes())],
            Config::default(),
            ProtocolError::InvalidClosePayload,
            1002,
        );
    }

    #[test]
    fn rfc6455_5_5_2_ping_between_fragments_answered_with_same_payload() {
        let reads = alloc::vec![
            frame(false, 2, b"abc"),
            frame(true, 9, b"are you there"),
            frame(true, 10, b"unsolicited pong"),
            frame(true, 0, b"def"),
        ];
        let mut f = fx();
        let mut c = client(&mut f, reads, Config::default());
        let mut buf = [0u8; 16];
        let a = run(c.recv_msg(&mut buf)).unwrap();
        assert_eq!(
            (&buf[..a.len], a.fin, a.opcode),
            (&b"abc"[..], false, Opcode::Binary)
        );
        let b = run(c.recv_msg(&mut buf)).unwrap();
        assert_eq!(
            (&buf[..b.len], b.fin, b.opcode),
            (&b"def"[..], true, Opcode::Binary)
        );
        assert!(b.is_message_end());
        let sent = sent_frames(&c.inner_mut().written);
        assert_eq!(
            sent,
            alloc::vec![(Opcode::Pong, true, b"are you there".to_vec())]
        );
    }

    #[test]
    fn recv_into_empty_buffer_is_an_error_not_a_spin() {
        let reads = alloc::vec![frame(true, 2, b"0123456789"), frame(true, 2, b"")];
        let mut f = fx();
        let mut c = client(&mut f, reads, Config::default());
        let e = run(c.recv_msg(&mut [])).unwrap_err();
        assert!(
            matches!(e, Error::EmptyReceiveBuffer { remaining: 10 }),
            "{e:?}"
        );
        assert_eq!(
            alloc::format!("{e}"),
            "recv_msg given an empty buffer while 10 payload bytes wait"
        );
        // Nothing was lost and the connection is still usable.
        let mut buf = [0u8; 16];
        let i = run(c.recv_msg(&mut buf)).unwrap();
        assert_eq!(&buf[..i.len], b"0123456789");
        // An empty frame needs no room.
        let i = run(c.recv_msg(&mut [])).unwrap();
        assert_eq!((i.len, i.remaining, i.fin), (0, 0, true));
    }

    #[test]
    fn recv_into_small_buffer_reports_remaining() {
        let reads = alloc::vec![frame(true, 2, b"0123456789")];
        let mut f = fx();
        let mut c = client(&mut f, reads, Config::default());
        let mut buf = [0u8; 4];
        let i = run(c.recv_msg(&mut buf)).unwrap();
        assert_eq!((i.len, i.remaining, i.fin), (4, 6, true));
        assert!(!i.is_message_end());
        let i = run(c.recv_msg(&mut buf)).unwrap();
        assert_eq!((i.len, i.remaining), (4, 6 - 4));
        let i = run(c.recv_msg(&mut buf)).unwrap();
        assert_eq!((&buf[..i.len], i.remaining), (&b"89"[..], 0));
    }

    #[test]
    fn frames_split_one_byte_per_read_reassemble() {
        let mut bytes = frame(false, 1, "κόσ".as_bytes());
        bytes.extend(frame(true, 9, b"p"));
        bytes.extend(frame(true, 0, "με".as_bytes()));
        let reads = bytes.iter().map(|b| alloc::vec![*b]).collect();
        let mut f = fx();
        let mut c = client(&mut f, reads, Config::default());
        let (data, e) = drain(&mut c);
        assert_eq!(core::str::from_utf8(&data).unwrap(), "κόσμε");
        assert!(matches!(e, Error::UnexpectedEof), "{e:?}");
    }

    #[test]
    fn rfc6455_5_5_1_close_echoed_then_not_connected() {
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"going away");
        let mut f = fx();
        let mut c = client(
            &mut f,
            alloc::vec![frame(true, 8, &payload)],
            Config::default(),
        );
        let mut buf = [0u8; 32];
        let i = run(c.recv_msg(&mut buf)).unwrap();
        assert_eq!(i.opcode, Opcode::Close);
        assert_eq!(&buf[..i.len], &payload[..]);
        assert!(matches!(
            run(c.recv_msg(&mut buf)),
            Err(Error::NotConnected)
        ));
        assert!(matches!(
            run(c.send_msg(b"x", Opcode::Binary, true)),
            Err(Error::NotConnected)
        ));
        let sent = sent_frames(&c.inner_mut().written);
        assert_eq!(
            sent,
            alloc::vec![(Opcode::Close, true, 1001u16.to_be_bytes().to_vec())]
        );
    }

    #[test]
    fn rfc6455_7_1_2_close_waits_for_peer_close() {
        let reads = alloc::vec![
            frame(true, 2, b"late data"),
            frame(true, 8, &1000u16.to_be_bytes())
        ];
        let mut f = fx();
        let mut c = client(&mut f, reads, Config::default());
        run(c.close(1000, "bye", core::future::pending())).unwrap();
        assert!(c.is_closed());
        let sent = sent_frames(&c.inner_mut().written);
        assert_eq!(sent.len(), 1);
        assert_eq!(&sent[0].2[..2], &1000u16.to_be_bytes());
        assert_eq!(&sent[0].2[2..], b"bye");
    }

    #[test]
    fn rfc6455_7_4_1_reserved_close_codes_never_sent() {
        for code in [1005u16, 1006, 1015, 999, 1004, 2000, 5000] {
            let mut f = fx();
            let mut c = client(&mut f, alloc::vec![], Config::default());
            assert!(matches!(
                run(c.close(code, "", core::future::pending())),
                Err(Error::InvalidCloseCode(_))
            ));
            assert!(c.inner_mut().written.is_empty());
        }
    }

    #[test]
    fn close_times_out_when_peer_never_answers() {
        struct Silent;
        impl embedded_io_async::ErrorType for Silent {
            type Error = embedded_io::ErrorKind;
        }
        impl Read for Silent {
            async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
                core::future::pending().await
            }
        }
        impl Write for Silent {
            async fn flush(&mut self) -> Result<(), Self::Error> {
                Ok(())
            }
            async fn write(&mut self, b: &[u8]) -> Result<usize, Self::Error> {
                Ok(b.len())
            }
        }
        let (mut rx, mut tx) = ([0u8; 256], [0u8; 64]);
        let mut c = WsConnection::from_upgraded(
            Silent,
            ClientRole(rand::rngs::StdRng::seed_from_u64(2)),
            Buffers {
                rx: &mut rx,
                tx: &mut tx,
            },
            0,
            Config::default(),
        )
        .unwrap();
        let r = run(c.recv_msg_with_timeout(&mut [0; 8], core::future::ready(())));
        assert!(matches!(r, Err(Error::Timeout)));
        assert!(
            c.is_open(),
            "a timed-out receive leaves the connection usable"
        );
        let r = run(c.close(1000, "", core::future::ready(())));
        assert!(matches!(r, Err(Error::Timeout)));
    }

    #[test]
    fn rfc6455_5_4_fragmented_send_and_large_frame_in_pieces() {
        let mut f = fx();
        let mut c = client(&mut f, alloc::vec![], Config::default());
        let big: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        assert!(matches!(
            run(c.send_msg(b"x", Opcode::Continuation, true)),
            Err(Error::InvalidSendSequence)
        ));
        run(c.send_msg(b"he", Opcode::Text, false)).unwrap();
        assert!(matches!(
            run(c.send_msg(b"x", Opcode::Binary, true)),
            Err(Error::InvalidSendSequence)
        ));
        run(c.send_msg(b"p", Opcode::Ping, true)).unwrap();
        run(c.send_msg(b"llo", Opcode::Continuation, true)).unwrap();
        run(c.send_msg(&big, Opcode::Binary, true)).unwrap();
        let sent = sent_frames(&c.inner_mut().written);
        assert_eq!(
            sent,
            alloc::vec![
                (Opcode::Text, false, b"he".to_vec()),
                (Opcode::Ping, true, b"p".to_vec()),
                (Opcode::Continuation, true, b"llo".to_vec()),
                (Opcode::Binary, true, big),
            ]
        );
    }

    #[test]
    fn rfc6455_5_3_fresh_mask_per_frame() {
        let mut f = fx();
        let mut c = client(&mut f, alloc::vec![], Config::default());
        run(c.send_msg(b"a", Opcode::Binary, true)).unwrap();
        run(c.send_msg(b"a", Opcode::Binary, true)).unwrap();
        let w = &c.inner_mut().written;
        let (h1, n) = FrameHeader::decode(w).unwrap().unwrap();
        let (h2, _) = FrameHeader::decode(&w[n + 1..]).unwrap().unwrap();
        assert_ne!(h1.mask, h2.mask);
    }

    #[test]
    fn rfc6455_5_1_unmasked_client_frame_rejected_by_server() {
        let (mut rx, mut tx) = ([0u8; 256], [0u8; 64]);
        let io = Script {
            reads: alloc::vec![frame(true, 2, b"x")].into(),
            written: Vec::new(),
        };
        let mut s = WsConnection::from_upgraded(
            io,
            ServerRole,
            Buffers {
                rx: &mut rx,
                tx: &mut tx,
            },
            0,
            Config::default(),
        )
        .unwrap();
        let r = run(s.recv_msg(&mut [0; 8]));
        assert!(matches!(
            r,
            Err(Error::Protocol(ProtocolError::UnmaskedFrameFromClient))
        ));
        // The server's close is unmasked.
        assert_eq!(s.inner_mut().written, alloc::vec![0x88, 0x02, 0x03, 0xEA]);
    }

    #[test]
    fn small_buffers_refused() {
        let (mut rx, mut tx) = ([0u8; 100], [0u8; 64]);
        let io = Script {
            reads: VecDeque::new(),
            written: Vec::new(),
        };
        let r = WsConnection::from_upgraded(
            io,
            ServerRole,
            Buffers {
                rx: &mut rx,
                tx: &mut tx,
            },
            0,
            Config::default(),
        );
        assert!(matches!(
            r,
            Err(Error::BufferTooSmall {
                required: MIN_RX_BUF
            })
        ));
    }
}
