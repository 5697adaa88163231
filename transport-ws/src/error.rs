//! Error types, one per layer: [`ProtocolError`] for frames (each carries the
//! RFC 6455 §7.4.1 close code sent to the peer), [`HandshakeError`] for the
//! opening handshake (§4.1, §4.2.2; carries the HTTP status and reason), and
//! [`Error`] for the connection, generic over the inner transport's error.
//! [`Error`] implements [`embedded_io::Error`] so [`crate::WsStream`] is an
//! `embedded_io_async` stream.

use core::fmt;

use crate::frame::copy_prefix;

/// A frame or message the peer must not send (RFC 6455 §5, §7, §8 and
/// MQTT §6). The connection answers it with a Close frame carrying
/// [`close_code`](Self::close_code) and then fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A server sent a masked frame (§5.1).
    MaskedFrameFromServer,
    /// A client sent an unmasked frame (§5.1).
    UnmaskedFrameFromClient,
    /// RSV1-3 set though no extension was negotiated (§5.2).
    ReservedBits,
    /// An opcode reserved for future use (§5.2), with its value.
    ReservedOpcode(u8),
    /// A control frame with more than 125 bytes of payload (§5.5).
    ControlFrameTooLong,
    /// A control frame without FIN (§5.5).
    FragmentedControlFrame,
    /// A 64-bit payload length with the most significant bit set (§5.2).
    LengthTopBitSet,
    /// A continuation frame with no fragmented message to continue (§5.4).
    ContinuationWithoutStart,
    /// A text or binary frame inside an unfinished fragmented message (§5.4).
    DataFrameInsideFragmentedMessage,
    /// A text message that is not valid UTF-8 (§5.6, §8.1): close code 1007.
    InvalidUtf8,
    /// A message longer than the configured maximum (§7.4.1): close code 1009.
    MessageTooBig,
    /// A text frame on an MQTT connection (MQTT-6.0.0-1): close code 1003.
    TextFrameInMqtt,
    /// A Close frame with a 1-byte payload or a status code that may not be
    /// sent on the wire (§5.5.1, §7.4).
    InvalidClosePayload,
}

impl ProtocolError {
    /// The close code this error is reported to the peer with (§7.4.1).
    pub const fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 => 1007,
            Self::MessageTooBig => 1009,
            Self::TextFrameInMqtt => 1003,
            _ => 1002,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MaskedFrameFromServer => f.write_str("server sent a masked frame"),
            Self::UnmaskedFrameFromClient => f.write_str("client sent an unmasked frame"),
            Self::ReservedBits => f.write_str("RSV bits set without a negotiated extension"),
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::ControlFrameTooLong => f.write_str("control frame payload over 125 bytes"),
            Self::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Self::LengthTopBitSet => f.write_str("64-bit payload length with the top bit set"),
            Self::ContinuationWithoutStart => {
                f.write_str("continuation frame without a fragmented message")
            }
            Self::DataFrameInsideFragmentedMessage => {
                f.write_str("new data frame inside a fragmented message")
            }
            Self::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            Self::MessageTooBig => f.write_str("message exceeds the configured maximum"),
            Self::TextFrameInMqtt => f.write_str("text frame on an MQTT connection"),
            Self::InvalidClosePayload => f.write_str("malformed close frame payload"),
        }
    }
}

impl core::error::Error for ProtocolError {}

/// Why the HTTP reason phrase is kept inline: no allocator, and the lent
/// buffer it came from is reused. Longer phrases are cut at a char boundary.
pub const REASON_CAPACITY: usize = 48;

/// An HTTP reason phrase copied out of the response (truncated to
/// [`REASON_CAPACITY`] bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReasonPhrase {
    bytes: [u8; REASON_CAPACITY],
    len: u8,
}

impl ReasonPhrase {
    /// Copies `s`, cut to the capacity at a char boundary.
    pub fn new(s: &str) -> Self {
        let mut end = s.len().min(REASON_CAPACITY);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; REASON_CAPACITY];
        let src = s.as_bytes().get(..end).unwrap_or_default();
        copy_prefix(&mut bytes, src);
        Self {
            bytes,
            len: end as u8,
        }
    }

    /// The phrase.
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl fmt::Debug for ReasonPhrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The opening handshake failed (RFC 6455 §4.1, §4.2.2; MQTT §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The response status was not 101; 401, 403 and 404 are what cloud
    /// brokers send for bad credentials or paths.
    Status {
        /// The HTTP status code.
        code: u16,
        /// The HTTP reason phrase.
        reason: ReasonPhrase,
    },
    /// The response (or request) is not valid HTTP/1.1.
    MalformedHttp,
    /// More header fields than the parser has room for.
    TooManyHeaders,
    /// The response header does not fit the lent receive buffer.
    HeaderTooLarge {
        /// The size of the lent buffer that was filled.
        buffer_len: usize,
    },
    /// The peer closed the connection before the header ended.
    UnexpectedEof,
    /// `Upgrade: websocket` missing or different.
    MissingUpgrade,
    /// `Connection` does not contain the `upgrade` token.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` missing or not the digest of our key.
    BadAccept,
    /// The server selected a subprotocol the client did not offer.
    UnofferedProtocol,
    /// A subprotocol was required (MQTT: `mqtt`, MQTT-6.0.0-4) but none
    /// was selected.
    MissingProtocol,
    /// The server selected an extension the client did not offer.
    UnofferedExtension,
    /// (Server role) the request lacks `Sec-WebSocket-Key`, version 13, or
    /// is not a GET.
    BadRequest,
    /// The request header does not fit the lent transmit buffer in one
    /// field (a single header line is longer than the buffer).
    RequestTooLarge,
    /// (Client role) a field of our own upgrade request holds something
    /// RFC 7230 does not allow there (CR, LF, a control byte, a space in
    /// the target, ...). Found before a byte of the request was sent.
    InvalidRequest(InvalidRequestField),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { code, reason } => {
                write!(f, "upgrade refused: HTTP {code} {}", reason.as_str())
            }
            Self::MalformedHttp => f.write_str("malformed HTTP in the handshake"),
            Self::TooManyHeaders => f.write_str("too many HTTP header fields"),
            Self::HeaderTooLarge { buffer_len } => {
                write!(f, "handshake header exceeds the {buffer_len}-byte buffer")
            }
            Self::UnexpectedEof => f.write_str("connection closed during the handshake"),
            Self::MissingUpgrade => f.write_str("response lacks Upgrade: websocket"),
            Self::MissingConnectionUpgrade => f.write_str("response lacks Connection: upgrade"),
            Self::BadAccept => f.write_str("Sec-WebSocket-Accept does not match the key"),
            Self::UnofferedProtocol => f.write_str("server selected a subprotocol not offered"),
            Self::MissingProtocol => f.write_str("server selected no subprotocol"),
            Self::UnofferedExtension => f.write_str("server selected an extension not offered"),
            Self::BadRequest => f.write_str("not a valid WebSocket upgrade request"),
            Self::RequestTooLarge => f.write_str("request header line exceeds the buffer"),
            Self::InvalidRequest(e) => write!(f, "upgrade request not sent: {e}"),
        }
    }
}

impl core::error::Error for HandshakeError {}

/// The part of the client's upgrade request that
/// [`HandshakeError::InvalidRequest`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestField {
    /// The request target, path and query (RFC 7230 §5.3.1 origin-form).
    Target,
    /// The `Host` value (RFC 7230 §5.4, RFC 3986 §3.2.2).
    Host,
    /// The `Origin` value (RFC 6454 §7.1).
    Origin,
    /// One `Sec-WebSocket-Protocol` value (RFC 6455 §4.1: a token).
    Subprotocol,
    /// An extra header's name (RFC 7230 §3.2: a token).
    HeaderName,
    /// An extra header's value (RFC 7230 §3.2: field-content).
    HeaderValue,
}

/// What is wrong with a request field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldFault {
    /// The field is empty where a value is required.
    Empty,
    /// The request target does not start with `/`.
    NoLeadingSlash,
    /// `byte` at offset `at` is not allowed in this field.
    Byte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the field.
        at: usize,
    },
}

/// How many bytes of a header name an error keeps.
pub const HEADER_LABEL_CAPACITY: usize = 32;

/// A header name copied into an error: only its valid token characters (up
/// to the offending byte for a bad name), truncated to
/// [`HEADER_LABEL_CAPACITY`], so it always prints safely.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderLabel {
    bytes: [u8; HEADER_LABEL_CAPACITY],
    len: u8,
}

impl HeaderLabel {
    /// No name (for fields other than extra headers).
    pub const EMPTY: Self = Self {
        bytes: [0; HEADER_LABEL_CAPACITY],
        len: 0,
    };

    /// Copies the longest prefix of `name` made of token characters (RFC
    /// 7230 §3.2.6), truncated to the capacity.
    pub fn new(name: &str) -> Self {
        let mut label = Self::EMPTY;
        for (dst, &b) in label.bytes.iter_mut().zip(name.as_bytes()) {
            if !crate::handshake::is_tchar(b) {
                break;
            }
            *dst = b;
            label.len += 1;
        }
        label
    }

    /// The copied name.
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl fmt::Debug for HeaderLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A field of the client's upgrade request that may not be sent: the field,
/// the header it belongs to (for extra headers) and what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidRequestField {
    /// Which part of the request.
    pub field: RequestField,
    /// The header's name for [`RequestField::HeaderValue`]; the valid start
    /// of the name for [`RequestField::HeaderName`]; empty otherwise.
    pub header: HeaderLabel,
    /// What is wrong.
    pub fault: FieldFault,
}

/// A readable name for a byte that may not appear in a field.
fn byte_name(b: u8) -> &'static str {
    match b {
        b'\r' => " (CR)",
        b'\n' => " (LF)",
        0 => " (NUL)",
        b'\t' => " (TAB)",
        b' ' => " (space)",
        0x7F => " (DEL)",
        0x80.. => " (non-ASCII)",
        _ => "",
    }
}

impl fmt::Display for InvalidRequestField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.header.as_str();
        match self.field {
            RequestField::Target => f.write_str("request target")?,
            RequestField::Host => f.write_str("Host")?,
            RequestField::Origin => f.write_str("Origin")?,
            RequestField::Subprotocol => f.write_str("subprotocol")?,
            RequestField::HeaderName => write!(f, "header name `{name}...`")?,
            RequestField::HeaderValue => write!(f, "value of header `{name}`")?,
        }
        match self.fault {
            FieldFault::Empty => f.write_str(" is empty")?,
            FieldFault::NoLeadingSlash => f.write_str(" does not start with '/'")?,
            FieldFault::Byte { byte, at } => write!(
                f,
                " has byte {byte:#04x}{} at offset {at}, which is not allowed",
                byte_name(byte)
            )?,
        }
        f.write_str(match self.field {
            RequestField::Target => {
                " (RFC 7230 §5.3.1, RFC 3986: an origin-form target is '/' then visible \
                 ASCII, no space or control bytes)"
            }
            RequestField::Host => {
                " (RFC 7230 §5.4, RFC 3986 §3.2.2: a host is visible ASCII, no space or \
                 control bytes)"
            }
            RequestField::Origin => {
                " (RFC 6454 §7.1: an origin is visible ASCII, no space or control bytes)"
            }
            RequestField::Subprotocol => {
                " (RFC 6455 §4.1, RFC 7230 §3.2.6: a subprotocol is a token)"
            }
            RequestField::HeaderName => " (RFC 7230 §3.2, §3.2.6: a header name is a token)",
            RequestField::HeaderValue => {
                " (RFC 7230 §3.2: a header value is visible ASCII, space and tab; \
                 obs-text is not sent)"
            }
        })
    }
}

impl core::error::Error for InvalidRequestField {}

/// A WebSocket connection error, generic over the inner transport's error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The inner transport failed.
    Io(E),
    /// The opening handshake failed.
    Handshake(HandshakeError),
    /// The peer broke the protocol; a Close with the error's code was sent.
    Protocol(ProtocolError),
    /// The caller's deadline passed first (the seed's `-EAGAIN`). The
    /// connection stays usable after a timed-out receive.
    Timeout,
    /// The connection is closed or failed (the seed's `-ENOTCONN`).
    NotConnected,
    /// The transport ended without a Close frame (close code 1006, which is
    /// never sent).
    UnexpectedEof,
    /// A lent buffer is too small for the operation.
    BufferTooSmall {
        /// The size needed.
        required: usize,
    },
    /// `close` was asked to send a code that may not be sent (1005, 1006,
    /// 1015, undefined ranges) or a reason over 123 bytes.
    InvalidCloseCode(u16),
    /// `send_msg` opcodes out of order: a continuation without a start, or
    /// a new message inside an unfinished one.
    InvalidSendSequence,
    /// `recv_msg` was given an empty buffer while payload bytes wait: no
    /// progress is possible. The connection stays usable.
    EmptyReceiveBuffer {
        /// Payload bytes of the current frame waiting.
        remaining: u64,
    },
}

impl<E> From<HandshakeError> for Error<E> {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(e)
    }
}

impl<E> From<ProtocolError> for Error<E> {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "transport error: {e}"),
            Self::Handshake(e) => write!(f, "websocket handshake failed: {e}"),
            Self::Protocol(e) => write!(f, "websocket protocol error ({}): {e}", e.close_code()),
            Self::Timeout => f.write_str("timed out"),
            Self::NotConnected => f.write_str("websocket not connected"),
            Self::UnexpectedEof => f.write_str("transport closed without a close frame"),
            Self::BufferTooSmall { required } => {
                write!(f, "lent buffer too small: {required} bytes needed")
            }
            Self::InvalidCloseCode(c) => write!(f, "close code {c} may not be sent"),
            Self::InvalidSendSequence => f.write_str("send_msg opcode out of sequence"),
            Self::EmptyReceiveBuffer { remaining } => write!(
                f,
                "recv_msg given an empty buffer while {remaining} payload bytes wait"
            ),
        }
    }
}

impl<E: embedded_io::Error> Error<E> {
    /// The same error with the transport error reduced to its kind, for
    /// callers that must name one error type for any transport.
    pub fn into_kind(self) -> Error<embedded_io::ErrorKind> {
        match self {
            Self::Io(e) => Error::Io(e.kind()),
            Self::Handshake(e) => Error::Handshake(e),
            Self::Protocol(e) => Error::Protocol(e),
            Self::Timeout => Error::Timeout,
            Self::NotConnected => Error::NotConnected,
            Self::UnexpectedEof => Error::UnexpectedEof,
            Self::BufferTooSmall { required } => Error::BufferTooSmall { required },
            Self::InvalidCloseCode(c) => Error::InvalidCloseCode(c),
            Self::InvalidSendSequence => Error::InvalidSendSequence,
            Self::EmptyReceiveBuffer { remaining } => Error::EmptyReceiveBuffer { remaining },
        }
    }
}

// `Io` is not reported as a source: that would need `E: 'static`, which
// transports borrowing from their connector cannot promise. Its Display
// includes the inner error.
impl<E: core::error::Error> core::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Handshake(e) => Some(e),
            Self::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: embedded_io::Error> embedded_io::Error for Error<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            Self::Io(e) => e.kind(),
            Self::Handshake(_) => ErrorKind::ConnectionRefused,
            Self::Protocol(_) => ErrorKind::InvalidData,
            Self::Timeout => ErrorKind::TimedOut,
            Self::NotConnected => ErrorKind::NotConnected,
            Self::UnexpectedEof => ErrorKind::ConnectionReset,
            Self::BufferTooSmall { .. } => ErrorKind::OutOfMemory,
            Self::InvalidCloseCode(_)
            | Self::InvalidSendSequence
            | Self::EmptyReceiveBuffer { .. } => ErrorKind::InvalidInput,
        }
    }
}
