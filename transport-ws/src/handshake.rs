//! The client side of the opening handshake (RFC 6455 §4.1, §4.2.2) and
//! MQTT §6 subprotocol selection.
//!
//! The request is laid out by synchronous code (`Coalescer`) a bufferful at
//! a time in the lent transmit buffer and each bufferful written with the
//! one `write_all` of [`write_request`], so a request target of any length
//! (presigned cloud URLs of several KiB) works with any buffer that holds
//! one extra header line. The response is read into the lent receive
//! buffer across any number of partial reads and parsed with `httparse`;
//! [`check_response`] is a pure function over those bytes. Bytes after the
//! header stay in the receive buffer: they are the first frames.
//!
//! Our own request is checked against RFC 7230 (§3.2 header fields, §5.3.1
//! request target, §5.4 Host) and RFC 6455 §4.1 (subprotocol tokens) before
//! a byte of it is sent, so values from configuration or provisioning can
//! never add header lines or a second request ([`Request::check`],
//! [`check_header_field`]).
//!
//! Deliberately not here: redirects (3xx is reported as
//! [`HandshakeError::Status`]), HTTP authentication schemes (callers add an
//! `Authorization` header), extensions (none are offered; a server that
//! selects one is refused), and I/O timeouts (the caller's deadline bounds
//! the whole connect).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use embedded_io_async::Write;

use crate::error::{
    Error, FieldFault, HandshakeError, HeaderLabel, InvalidRequestField, ReasonPhrase, RequestField,
};
use crate::frame::copy_prefix;

/// The GUID of RFC 6455 §1.3, appended to the key for the accept digest.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How many response header fields are parsed at most.
pub const MAX_RESPONSE_HEADERS: usize = 48;

/// What the client asks for in its upgrade request (RFC 6455 §4.1).
#[derive(Debug, Clone, Copy)]
pub struct Request<'r> {
    /// The `Host` value without port, e.g. `broker.example.com`.
    pub host: &'r str,
    /// Appended to `Host` as `:port` when set; leave `None` for the scheme's
    /// default port (80 for `ws`, 443 for `wss`).
    pub port: Option<u16>,
    /// The request target: path and query, e.g. `/mqtt?X-Amz-Signature=...`.
    pub path: &'r str,
    /// `Sec-WebSocket-Protocol` values offered, in order of preference.
    pub protocols: &'r [&'r str],
    /// `Origin`, if any.
    pub origin: Option<&'r str>,
    /// Extra header fields written as `name: value` (the seed's
    /// `optional_headers`).
    pub headers: &'r [(&'r str, &'r str)],
}

impl<'r> Request<'r> {
    /// A request for `path` on `host` offering subprotocol `mqtt`
    /// (MQTT-6.0.0-3).
    pub const fn mqtt(host: &'r str, port: Option<u16>, path: &'r str) -> Self {
        Self {
            host,
            port,
            path,
            protocols: &["mqtt"],
            origin: None,
            headers: &[],
        }
    }
}

/// Writes extra request header lines into the space the caller lent.
pub struct HeaderWriter<'w> {
    buf: &'w mut [u8],
    len: usize,
}

impl HeaderWriter<'_> {
    /// Appends `name: value\r\n`. Fails, writing nothing, if `name` is not
    /// a token or `value` holds anything but visible ASCII, space and tab
    /// ([`HandshakeError::InvalidRequest`], see [`check_header_field`]), or
    /// if the lent transmit buffer cannot hold the header lines written so
    /// far by this callback ([`HandshakeError::RequestTooLarge`]).
    pub fn header(&mut self, name: &str, value: &str) -> Result<(), HandshakeError> {
        check_header_field(name, value)?;
        let line_len = name.len() + value.len() + 4;
        let end = self
            .len
            .checked_add(line_len)
            .ok_or(HandshakeError::RequestTooLarge)?;
        let mut dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(HandshakeError::RequestTooLarge)?;
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            let (now, rest) = dst.split_at_mut(part.len());
            now.copy_from_slice(part);
            dst = rest;
        }
        self.len = end;
        Ok(())
    }
}

/// True for the `tchar` of RFC 7230 §3.2.6, the characters of a token.
pub(crate) const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// True for the bytes RFC 7230 §3.2 allows in a field value we send:
/// visible ASCII (VCHAR), space and tab. obs-text (0x80-0xFF) is refused:
/// RFC 7230 §3.2.6 keeps it only for old messages, and a non-ASCII `&str`
/// would reach the peer as UTF-8 it may read as Latin-1.
const fn is_field_value_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | b' ' | b'\t')
}

/// The first byte of `s` that `allowed` refuses, as a fault.
fn first_refused(s: &str, allowed: impl Fn(u8) -> bool) -> Option<FieldFault> {
    s.bytes()
        .position(|b| !allowed(b))
        .map(|at| FieldFault::Byte {
            byte: s.as_bytes().get(at).copied().unwrap_or_default(),
            at,
        })
}

fn invalid(field: RequestField, header: HeaderLabel, fault: FieldFault) -> HandshakeError {
    HandshakeError::InvalidRequest(InvalidRequestField {
        field,
        header,
        fault,
    })
}

/// Checks one extra header field (RFC 7230 §3.2): the name is a token
/// (§3.2.6), the value visible ASCII, space and tab. Leading or trailing
/// whitespace in the value is allowed (the peer strips it); CR, LF and every
/// other control byte are not, so a value cannot end the line and add a
/// header of its own.
pub fn check_header_field(name: &str, value: &str) -> Result<(), HandshakeError> {
    let label = HeaderLabel::new(name);
    if name.is_empty() {
        return Err(invalid(RequestField::HeaderName, label, FieldFault::Empty));
    }
    if let Some(fault) = first_refused(name, is_tchar) {
        return Err(invalid(RequestField::HeaderName, label, fault));
    }
    if let Some(fault) = first_refused(value, is_field_value_byte) {
        return Err(invalid(RequestField::HeaderValue, label, fault));
    }
    Ok(())
}

/// Checks a request target: `/` followed by visible ASCII (origin-form,
/// RFC 7230 §5.3.1; no space, no control byte).
pub fn check_target(target: &str) -> Result<(), HandshakeError> {
    let none = HeaderLabel::EMPTY;
    if !target.starts_with('/') {
        return Err(invalid(
            RequestField::Target,
            none,
            FieldFault::NoLeadingSlash,
        ));
    }
    if let Some(fault) = first_refused(target, |b| matches!(b, 0x21..=0x7E)) {
        return Err(invalid(RequestField::Target, none, fault));
    }
    Ok(())
}

impl Request<'_> {
    /// The request target sent: `path`, or `/` when it is empty.
    pub fn target(&self) -> &str {
        if self.path.is_empty() { "/" } else { self.path }
    }

    /// Checks every field against RFC 7230 before anything is sent: the
    /// target is `/` followed by visible ASCII (origin-form, §5.3.1; no
    /// space, no control byte); `Host` and `Origin` are non-empty visible
    /// ASCII; each subprotocol is a token (RFC 6455 §4.1); each extra header
    /// passes [`check_header_field`]. A value from configuration or
    /// provisioning can thus never add a header line or a second request.
    pub fn check(&self) -> Result<(), HandshakeError> {
        let none = HeaderLabel::EMPTY;
        check_target(self.target())?;
        let visible = |b: u8| matches!(b, 0x21..=0x7E);
        let hosts = [
            (RequestField::Host, Some(self.host)),
            (RequestField::Origin, self.origin),
        ];
        for (field, value) in hosts {
            let Some(value) = value else { continue };
            if value.is_empty() {
                return Err(invalid(field, none, FieldFault::Empty));
            }
            if let Some(fault) = first_refused(value, visible) {
                return Err(invalid(field, none, fault));
            }
        }
        for proto in self.protocols {
            if proto.is_empty() {
                return Err(invalid(RequestField::Subprotocol, none, FieldFault::Empty));
            }
            if let Some(fault) = first_refused(proto, is_tchar) {
                return Err(invalid(RequestField::Subprotocol, none, fault));
            }
        }
        for (name, value) in self.headers {
            check_header_field(name, value)?;
        }
        Ok(())
    }
}

/// Caller hooks into the handshake (the seed's `optional_headers_cb`,
/// `http_cb` and connect callback). Every method has a default that does
/// nothing; `()` implements the trait for no hooks.
pub trait HandshakeHooks {
    /// Writes extra request header lines (e.g. a SigV4 `Authorization`).
    fn write_headers(&mut self, _out: &mut HeaderWriter<'_>) -> Result<(), HandshakeError> {
        Ok(())
    }
    /// The request target (path and query) for this connect, in place of
    /// the configured one: for credentials carried in the URL that expire,
    /// such as an AWS IoT SigV4 presigned URL, signed afresh on every
    /// connect (the hook owns the buffer it returns). Checked like the
    /// configured target ([`check_target`]). `None`, the default, keeps the
    /// configured target. Called after
    /// [`write_headers`](Self::write_headers), once per connect.
    fn request_target(&mut self) -> Option<&str> {
        None
    }
    /// Sees each response header field, for any status.
    fn on_response_header(&mut self, _name: &str, _value: &[u8]) {}
    /// Runs once the upgrade succeeded, with the selected subprotocol.
    fn on_connected(&mut self, _protocol: Option<&str>) {}
}

impl HandshakeHooks for () {}

impl<H: HandshakeHooks + ?Sized> HandshakeHooks for &mut H {
    fn write_headers(&mut self, out: &mut HeaderWriter<'_>) -> Result<(), HandshakeError> {
        (**self).write_headers(out)
    }
    fn request_target(&mut self) -> Option<&str> {
        (**self).request_target()
    }
    fn on_response_header(&mut self, name: &str, value: &[u8]) {
        (**self).on_response_header(name, value);
    }
    fn on_connected(&mut self, protocol: Option<&str>) {
        (**self).on_connected(protocol);
    }
}

/// A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes (§4.1).
pub fn generate_key<R: rand_core::RngCore + rand_core::CryptoRng>(rng: &mut R) -> [u8; 24] {
    let mut nonce = [0u8; 16];
    // Word by word: the generic `fill_bytes` of a block RNG brings its
    // own copy loops and panic paths, `next_u32` is there for the masks.
    for word in nonce.as_chunks_mut::<4>().0 {
        *word = rng.next_u32().to_le_bytes();
    }
    let mut key = [0u8; 24];
    // 16 bytes encode to exactly 24 base64 characters.
    let _ = STANDARD.encode_slice(nonce, &mut key);
    key
}

/// The `Sec-WebSocket-Accept` value for a key: base64(SHA-1(key + GUID))
/// (§4.2.2 item 5.4).
pub fn accept_for_key(key: &[u8]) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let mut out = [0u8; 28];
    // 20 digest bytes encode to exactly 28 base64 characters.
    let _ = STANDARD.encode_slice(sha.digest().bytes(), &mut out);
    out
}

/// Which bytes go out next, from [`Coalescer::next_segment`].
pub(crate) enum Segment<'p> {
    /// `buf[start..start + n]`: parts copied together into the lent buffer.
    Buffered(usize),
    /// A part as it is (no room lent).
    Part(&'p [u8]),
    /// Every part went out.
    Done,
}

/// Coalesces a sequence of byte parts (the lines of an HTTP header) into
/// the lent buffer, a bufferful at a time, so that the async layer writes
/// each with its one `write_all`. The parts come from a function of their
/// index (`None` past the last), so nothing is held across the writes but
/// this cursor.
#[derive(Default)]
pub(crate) struct Coalescer {
    part: usize,
    offset: usize,
}

impl Coalescer {
    /// Copies parts from the cursor into `area` until it is full or the
    /// parts end; with no `area`, hands out the next part itself.
    pub(crate) fn next_segment<'p>(
        &mut self,
        area: &mut [u8],
        part: impl Fn(usize) -> Option<&'p [u8]>,
    ) -> Segment<'p> {
        if area.is_empty() {
            return match part(self.part) {
                Some(p) => {
                    self.part += 1;
                    Segment::Part(p)
                }
                None => Segment::Done,
            };
        }
        let mut n = 0;
        while let Some(p) = part(self.part) {
            let rest = p.get(self.offset..).unwrap_or_default();
            let Some(free) = area.get_mut(n..).filter(|f| !f.is_empty()) else {
                break;
            };
            let k = copy_prefix(free, rest);
            n += k;
            self.offset += k;
            if self.offset >= p.len() {
                self.part += 1;
                self.offset = 0;
            }
        }
        if n == 0 {
            Segment::Done
        } else {
            Segment::Buffered(n)
        }
    }
}

/// Part `i` of the upgrade request after the hooks' lines: the request
/// line and fixed fields (`head`), the offered subprotocols, the origin and
/// the request's extra headers. `None` past the last.
fn request_part<'p>(i: usize, head: &[&'p [u8]; 8], req: &Request<'p>) -> Option<&'p [u8]> {
    if let Some(p) = head.get(i) {
        return Some(p);
    }
    let mut i = i - head.len();
    let offered = req.protocols.len();
    if i < 2 * offered {
        let proto = req.protocols.get(i / 2)?;
        return Some(match (i % 2, i / 2) {
            (0, 0) => b"Sec-WebSocket-Protocol: ",
            (0, _) => b", ",
            _ => proto.as_bytes(),
        });
    }
    i -= 2 * offered;
    if offered > 0 {
        if i == 0 {
            return Some(b"\r\n");
        }
        i -= 1;
    }
    if let Some(origin) = req.origin {
        if i < 3 {
            return [b"Origin: ", origin.as_bytes(), b"\r\n"].get(i).copied();
        }
        i -= 3;
    }
    let (name, value) = req.headers.get(i / 4)?;
    [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"]
        .get(i % 4)
        .copied()
}

/// Writes the upgrade request for `req` with `key` to `io`, using `tx_buf`
/// as the output buffer (at least 1 byte; extra headers from `hooks` must
/// fit it together).
///
/// Nothing reaches `io` unless the whole request is valid: `req` is checked
/// ([`Request::check`]) and the hooks write their header lines into the
/// start of `tx_buf` (each checked by [`HeaderWriter::header`]) before the
/// first byte is sent. The rest of the request goes through the space left
/// after those lines, which are sent last. The request is laid out by
/// synchronous code (`Coalescer`); the only awaits are one `write_all`
/// and the final flush.
pub async fn write_request<T: Write, H: HandshakeHooks>(
    io: &mut T,
    tx_buf: &mut [u8],
    req: &Request<'_>,
    key: &[u8; 24],
    hooks: &mut H,
) -> Result<(), Error<T::Error>> {
    if tx_buf.is_empty() {
        return Err(Error::BufferTooSmall { required: 1 });
    }
    req.check()?;
    // The callback gets the whole buffer.
    let mut hw = HeaderWriter {
        buf: &mut *tx_buf,
        len: 0,
    };
    hooks.write_headers(&mut hw)?;
    let extra_len = hw.len;
    let target = match hooks.request_target() {
        Some(target) => {
            check_target(target)?;
            target
        }
        None => req.target(),
    };
    let mut port_buf = [0u8; 6];
    let port = match req.port {
        Some(p) => format_port(p, &mut port_buf),
        None => &[],
    };
    let head: [&[u8]; 8] = [
        b"GET ",
        target.as_bytes(),
        b" HTTP/1.1\r\nHost: ",
        req.host.as_bytes(),
        port,
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        key,
        b"\r\nSec-WebSocket-Version: 13\r\n",
    ];
    let mut parts = Coalescer::default();
    // After the parts: the hooks' lines and the empty line that ends the
    // header (0: not yet, 1: the empty line alone, 2: done).
    let mut tail = 0u8;
    loop {
        let area = tx_buf.get_mut(extra_len..).unwrap_or_default();
        let bytes = match parts.next_segment(area, |i| request_part(i, &head, req)) {
            Segment::Buffered(n) => tx_buf.get(extra_len..extra_len + n),
            Segment::Part(p) => Some(p),
            Segment::Done if tail == 0 => {
                let end = extra_len + 2;
                if let Some(crlf) = tx_buf.get_mut(extra_len..end) {
                    crlf.copy_from_slice(b"\r\n");
                    tail = 2;
                    tx_buf.get(..end)
                } else {
                    tail = 1;
                    tx_buf.get(..extra_len)
                }
            }
            Segment::Done if tail == 1 => {
                tail = 2;
                Some(&b"\r\n"[..])
            }
            Segment::Done => break,
        };
        io.write_all(bytes.unwrap_or_default())
            .await
            .map_err(Error::Io)?;
    }
    io.flush().await.map_err(Error::Io)
}

/// Formats `port` as `:port` into `buf`.
fn format_port(port: u16, buf: &mut [u8; 6]) -> &[u8] {
    let mut digits = [0u8; 5];
    let mut n = port;
    let mut count = 0;
    loop {
        if let Some(d) = digits.get_mut(count) {
            *d = b'0' + (n % 10) as u8;
        }
        count += 1;
        n /= 10;
        if n == 0 || count == 5 {
            break;
        }
    }
    buf[0] = b':';
    for i in 0..count {
        if let (Some(dst), Some(src)) = (buf.get_mut(1 + i), digits.get(count - 1 - i)) {
            *dst = *src;
        }
    }
    buf.get(..1 + count).unwrap_or_default()
}

/// True if the comma-separated token list `value` contains `token`
/// (ASCII case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The outcome of a successful [`check_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'r> {
    /// The subprotocol the server selected, one of those offered.
    pub protocol: Option<&'r str>,
    /// The length of the response header; bytes after it are frames.
    pub header_len: usize,
}

/// Checks a server's upgrade response in `buf` (RFC 6455 §4.1, the client's
/// validation steps 1-6; MQTT-6.0.0-4 when `require_protocol`).
///
/// Returns `Ok(None)` while the header is incomplete. Status other than 101
/// is [`HandshakeError::Status`] as soon as the header is complete (the body
/// is not read). `hooks` sees every header field once the header is
/// complete.
pub fn check_response<'r, H: HandshakeHooks>(
    buf: &[u8],
    accept: &[u8; 28],
    offered: &'r [&'r str],
    require_protocol: bool,
    hooks: &mut H,
) -> Result<Option<Accepted<'r>>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let header_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(_) => return Err(HandshakeError::MalformedHttp),
    };
    for h in resp.headers.iter() {
        hooks.on_response_header(h.name, h.value);
    }
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::Status {
            code,
            reason: ReasonPhrase::new(resp.reason.unwrap_or("")),
        });
    }
    // §4.1: "an HTTP/1.1 or higher response".
    if resp.version != Some(1) {
        return Err(HandshakeError::MalformedHttp);
    }
    let (mut upgrade, mut connection, mut accept_ok) = (false, false, false);
    let mut protocol: Option<&'r str> = None;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            if accept_ok || h.value.trim_ascii() != accept {
                return Err(HandshakeError::BadAccept);
            }
            accept_ok = true;
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            let value = h.value.trim_ascii();
            let chosen = offered.iter().find(|p| p.as_bytes() == value);
            match (protocol, chosen) {
                (None, Some(p)) => protocol = Some(p),
                _ => return Err(HandshakeError::UnofferedProtocol),
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions")
            && !h.value.trim_ascii().is_empty()
        {
            return Err(HandshakeError::UnofferedExtension);
        }
    }
    if !upgrade {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !connection {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if !accept_ok {
        return Err(HandshakeError::BadAccept);
    }
    if require_protocol && protocol.is_none() {
        return Err(HandshakeError::MissingProtocol);
    }
    Ok(Some(Accepted {
        protocol,
        header_len,
    }))
}

/// Reads and checks the response into `rx_buf` across partial reads.
/// Returns the accepted response and how many bytes of `rx_buf` are filled
/// (frames start at `header_len`).
pub async fn read_response<'r, T: embedded_io_async::Read, H: HandshakeHooks>(
    io: &mut T,
    rx_buf: &mut [u8],
    accept: &[u8; 28],
    offered: &'r [&'r str],
    require_protocol: bool,
    hooks: &mut H,
) -> Result<(Accepted<'r>, usize), Error<T::Error>> {
    let mut filled = 0usize;
    loop {
        let Some(free) = rx_buf.get_mut(filled..).filter(|f| !f.is_empty()) else {
            return Err(HandshakeError::HeaderTooLarge {
                buffer_len: rx_buf.len(),
            }
            .into());
        };
        let free_len = free.len();
        let n = io.read(free).await.map_err(Error::Io)?.min(free_len);
        if n == 0 {
            return Err(HandshakeError::UnexpectedEof.into());
        }
        let start = filled;
        filled += n;
        // The header can only have ended if a line ended in this read.
        if !rx_buf
            .get(start..filled)
            .unwrap_or_default()
            .contains(&b'\n')
        {
            continue;
        }
        let seen = rx_buf.get(..filled).unwrap_or_default();
        if let Some(acc) = check_response(seen, accept, offered, require_protocol, hooks)? {
            return Ok((acc, filled));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8; 24] = b"dGhlIHNhbXBsZSBub25jZQ==";

    fn resp(extra: &str) -> alloc::string::String {
        alloc::format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
        )
    }

    fn check(buf: &str, require: bool) -> Result<Option<Accepted<'static>>, HandshakeError> {
        check_response(
            buf.as_bytes(),
            &accept_for_key(KEY),
            &["mqtt"],
            require,
            &mut (),
        )
    }

    #[test]
    fn rfc6455_1_3_accept_of_sample_key() {
        assert_eq!(&accept_for_key(KEY), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn rfc6455_4_1_key_is_base64_of_16_random_bytes() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = generate_key(&mut rng);
        let b = generate_key(&mut rng);
        assert_ne!(a, b);
        let mut decoded = [0u8; 18];
        assert_eq!(STANDARD.decode_slice(a, &mut decoded).unwrap(), 16);
    }

    #[test]
    fn valid_response_accepted_with_protocol() {
        let r = resp("Sec-WebSocket-Protocol: mqtt\r\n");
        let acc = check(&r, true).unwrap().unwrap();
        assert_eq!(acc.protocol, Some("mqtt"));
        assert_eq!(acc.header_len, r.len());
    }

    #[test]
    fn rfc6455_4_1_header_names_and_tokens_case_insensitive() {
        let r = "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check(r, false).unwrap().is_some());
    }

    #[test]
    fn partial_response_needs_more_at_every_cut() {
        let r = resp("Sec-WebSocket-Protocol: mqtt\r\n");
        for cut in 0..r.len() {
            assert_eq!(check(&r[..cut], true), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn rfc6455_4_1_non_101_status_reported_with_reason() {
        let e = check(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nnope!",
            true,
        );
        match e {
            Err(HandshakeError::Status { code, reason }) => {
                assert_eq!(code, 401);
                assert_eq!(reason.as_str(), "Unauthorized");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc6455_4_1_missing_upgrade_rejected() {
        let r = "HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check(r, false), Err(HandshakeError::MissingUpgrade));
    }

    #[test]
    fn rfc6455_4_1_missing_connection_upgrade_rejected() {
        let r = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(
            check(r, false),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
    }

    #[test]
    fn rfc6455_4_1_wrong_accept_rejected() {
        let r = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAALMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check(r, false), Err(HandshakeError::BadAccept));
        let r = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(check(r, false), Err(HandshakeError::BadAccept));
    }

    #[test]
    fn rfc6455_4_1_unoffered_protocol_rejected() {
        let r = resp("Sec-WebSocket-Protocol: mqttv3.1\r\n");
        assert_eq!(check(&r, true), Err(HandshakeError::UnofferedProtocol));
    }

    #[test]
    fn mqtt_6_0_0_4_no_protocol_selected_rejected() {
        assert_eq!(check(&resp(""), true), Err(HandshakeError::MissingProtocol));
        assert!(check(&resp(""), false).unwrap().is_some());
    }

    #[test]
    fn rfc6455_4_1_unoffered_extension_rejected() {
        let r = resp(
            "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
        );
        assert_eq!(check(&r, true), Err(HandshakeError::UnofferedExtension));
    }

    #[test]
    fn rfc6455_4_1_http_1_0_response_rejected() {
        let r = resp("Sec-WebSocket-Protocol: mqtt\r\n").replace("HTTP/1.1", "HTTP/1.0");
        assert_eq!(check(&r, true), Err(HandshakeError::MalformedHttp));
    }

    #[test]
    fn garbage_is_malformed_http() {
        assert_eq!(
            check("SSH-2.0-OpenSSH\r\n\r\n", false),
            Err(HandshakeError::MalformedHttp)
        );
    }

    #[test]
    fn hooks_see_response_headers() {
        struct Seen(usize);
        impl HandshakeHooks for Seen {
            fn on_response_header(&mut self, _n: &str, _v: &[u8]) {
                self.0 += 1;
            }
        }
        let mut seen = Seen(0);
        let r = resp("Sec-WebSocket-Protocol: mqtt\r\n");
        check_response(
            r.as_bytes(),
            &accept_for_key(KEY),
            &["mqtt"],
            true,
            &mut seen,
        )
        .unwrap();
        assert_eq!(seen.0, 4);
    }

    /// A transport that records writes, for the request tests.
    struct Sink(alloc::vec::Vec<u8>, usize);
    impl embedded_io_async::ErrorType for Sink {
        type Error = core::convert::Infallible;
    }
    impl Write for Sink {
        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.0.extend_from_slice(buf);
            self.1 += 1;
            Ok(buf.len())
        }
    }

    #[test]
    fn rfc6455_4_1_request_has_required_fields_and_long_target() {
        let long_path = alloc::format!("/mqtt?X-Amz-Signature={}", "a".repeat(5000));
        let req = Request {
            host: "broker.example",
            port: Some(8080),
            path: &long_path,
            protocols: &["mqtt", "mqttv3.1"],
            origin: Some("http://o.example"),
            headers: &[("X-One", "1")],
        };
        struct Auth;
        impl HandshakeHooks for Auth {
            fn write_headers(&mut self, out: &mut HeaderWriter<'_>) -> Result<(), HandshakeError> {
                out.header("Authorization", "Bearer t")
            }
        }
        let mut sink = Sink(alloc::vec::Vec::new(), 0);
        let mut buf = [0u8; 64];
        embassy_futures::block_on(write_request(&mut sink, &mut buf, &req, KEY, &mut Auth))
            .unwrap();
        let text = alloc::string::String::from_utf8(sink.0).unwrap();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut headers);
        assert!(parsed.parse(text.as_bytes()).unwrap().is_complete());
        assert_eq!(parsed.method, Some("GET"));
        assert_eq!(parsed.path, Some(long_path.as_str()));
        let get = |n: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(n))
                .map(|h| core::str::from_utf8(h.value).unwrap())
        };
        assert_eq!(get("host"), Some("broker.example:8080"));
        assert_eq!(get("upgrade"), Some("websocket"));
        assert_eq!(get("connection"), Some("Upgrade"));
        assert_eq!(get("sec-websocket-key"), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(get("sec-websocket-version"), Some("13"));
        assert_eq!(get("sec-websocket-protocol"), Some("mqtt, mqttv3.1"));
        assert_eq!(get("origin"), Some("http://o.example"));
        assert_eq!(get("x-one"), Some("1"));
        assert_eq!(get("authorization"), Some("Bearer t"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn request_without_port_has_bare_host() {
        let req = Request::mqtt("h", None, "");
        let mut sink = Sink(alloc::vec::Vec::new(), 0);
        let mut buf = [0u8; 1];
        embassy_futures::block_on(write_request(&mut sink, &mut buf, &req, KEY, &mut ())).unwrap();
        let text = alloc::string::String::from_utf8(sink.0).unwrap();
        assert!(text.starts_with("GET / HTTP/1.1\r\nHost: h\r\n"), "{text}");
    }

    #[test]
    fn rfc6455_4_1_request_same_bytes_through_any_transmit_buffer() {
        let req = Request {
            host: "broker.example",
            port: Some(443),
            path: "/mqtt?x=1",
            protocols: &["mqtt", "mqttv3.1"],
            origin: Some("https://o.example"),
            headers: &[("X-One", "1"), ("X-Two", "22")],
        };
        let request = |len: usize, hook: bool| {
            let mut sink = Sink(alloc::vec::Vec::new(), 0);
            let mut buf = alloc::vec![0u8; len];
            let mut hooks = OneHeader("Authorization", "Bearer t");
            let written = if hook {
                embassy_futures::block_on(write_request(&mut sink, &mut buf, &req, KEY, &mut hooks))
            } else {
                embassy_futures::block_on(write_request(&mut sink, &mut buf, &req, KEY, &mut ()))
            };
            written.map(|()| sink.0)
        };
        let plain = request(4096, false).unwrap();
        let hooked = request(4096, true).unwrap();
        assert!(hooked.ends_with(b"Authorization: Bearer t\r\n\r\n"));
        for len in 1..plain.len() + 8 {
            assert_eq!(request(len, false).unwrap(), plain, "buffer of {len}");
            // The hook's line must fit; then the rest goes through the
            // space after it, or part by part when there is none.
            if let Ok(bytes) = request(len, true) {
                assert_eq!(bytes, hooked, "buffer of {len} with a hook");
            } else {
                assert!(len < 25, "buffer of {len} refused the hook");
            }
        }
    }

    /// Hooks that add one header through the `HeaderWriter`.
    struct OneHeader<'a>(&'a str, &'a str);
    impl HandshakeHooks for OneHeader<'_> {
        fn write_headers(&mut self, out: &mut HeaderWriter<'_>) -> Result<(), HandshakeError> {
            out.header(self.0, self.1)
        }
    }

    /// The fields of a request, owned, for the property tests.
    #[derive(Debug, Clone)]
    struct Fields {
        target: alloc::string::String,
        host: alloc::string::String,
        origin: alloc::string::String,
        protocol: alloc::string::String,
        name: alloc::string::String,
        value: alloc::string::String,
    }

    /// Writes the request for `f`, the extra header given in `Request`
    /// (`via_hook` false) or by a hook (true); what was written, and how.
    fn write_fields(
        f: &Fields,
        via_hook: bool,
    ) -> (Result<(), Error<core::convert::Infallible>>, Sink) {
        let protocols = [f.protocol.as_str()];
        let headers = [(f.name.as_str(), f.value.as_str())];
        let req = Request {
            host: &f.host,
            port: Some(1883),
            path: &f.target,
            protocols: &protocols,
            origin: Some(&f.origin),
            headers: if via_hook { &[] } else { &headers },
        };
        let mut sink = Sink(alloc::vec::Vec::new(), 0);
        let mut buf = [0u8; 48];
        let mut hook = OneHeader(&f.name, &f.value);
        let r = if via_hook {
            embassy_futures::block_on(write_request(&mut sink, &mut buf, &req, KEY, &mut hook))
        } else {
            embassy_futures::block_on(write_request(&mut sink, &mut buf, &req, KEY, &mut ()))
        };
        (r, sink)
    }

    /// Picks one field out of [`Fields`].
    type FieldOf = fn(&mut Fields) -> &mut alloc::string::String;

    fn valid_fields() -> impl proptest::strategy::Strategy<Value = Fields> {
        use proptest::prelude::*;
        (
            "/[a-zA-Z0-9/?=&%._~-]{0,24}",
            "[a-z0-9.-]{1,16}|\\[[0-9a-f:]{2,10}\\]",
            "https?://[a-z0-9.-]{1,12}",
            "[a-zA-Z0-9.!#$%&'*+^_`|~-]{1,10}",
            "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,16}",
            "[\t -~]{0,24}",
        )
            .prop_map(|(target, host, origin, protocol, name, value)| Fields {
                target,
                host,
                origin,
                protocol,
                name,
                value,
            })
    }

    proptest::proptest! {
        /// RFC 7230 §3.2 / §5.3.1: CR, LF, NUL, space and DEL at every
        /// position of every field are refused, naming the field, and not a
        /// byte of the request reaches the transport (space is allowed
        /// inside a header value, so only the other four are tried there).
        #[test]
        fn rfc7230_3_2_injected_bytes_refused_before_anything_is_written(
            f in valid_fields(),
            via_hook in proptest::bool::ANY,
        ) {
            let fields: [(RequestField, FieldOf); 6] = [
                (RequestField::Target, |f| &mut f.target),
                (RequestField::Host, |f| &mut f.host),
                (RequestField::Origin, |f| &mut f.origin),
                (RequestField::Subprotocol, |f| &mut f.protocol),
                (RequestField::HeaderName, |f| &mut f.name),
                (RequestField::HeaderValue, |f| &mut f.value),
            ];
            for (field, get) in fields {
                let len = get(&mut f.clone()).len();
                for bad in [b'\r', b'\n', 0u8, b' ', 0x7F] {
                    if bad == b' ' && field == RequestField::HeaderValue {
                        continue;
                    }
                    for at in 0..=len {
                        let mut g = f.clone();
                        get(&mut g).insert(at, char::from(bad));
                        let (r, sink) = write_fields(&g, via_hook);
                        let Err(Error::Handshake(HandshakeError::InvalidRequest(e))) = r else {
                            panic!("{field:?} with {bad:#x} at {at} accepted: {r:?}");
                        };
                        proptest::prop_assert_eq!(e.field, field);
                        let expect = if field == RequestField::Target && at == 0 {
                            FieldFault::NoLeadingSlash
                        } else {
                            FieldFault::Byte { byte: bad, at }
                        };
                        proptest::prop_assert_eq!(e.fault, expect);
                        proptest::prop_assert!(sink.0.is_empty() && sink.1 == 0, "{} bytes written", sink.0.len());
                    }
                }
            }
        }

        /// Valid fields go out as they are: httparse reads back each one.
        #[test]
        fn rfc7230_3_2_valid_fields_sent_unchanged(
            f in valid_fields(),
            via_hook in proptest::bool::ANY,
        ) {
            let (r, sink) = write_fields(&f, via_hook);
            proptest::prop_assert!(r.is_ok(), "{r:?}");
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut parsed = httparse::Request::new(&mut headers);
            proptest::prop_assert!(parsed.parse(&sink.0).unwrap().is_complete());
            proptest::prop_assert_eq!(parsed.path, Some(f.target.as_str()));
            let get = |n: &str| {
                parsed
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(n))
                    .map(|h| h.value)
                    .collect::<alloc::vec::Vec<_>>()
            };
            let host = alloc::format!("{}:1883", f.host);
            proptest::prop_assert_eq!(get("host"), [host.as_bytes()]);
            proptest::prop_assert_eq!(get("origin"), [f.origin.as_bytes()]);
            proptest::prop_assert_eq!(get("sec-websocket-protocol"), [f.protocol.as_bytes()]);
            let value = f.value.trim_matches([' ', '\t']);
            proptest::prop_assert!(get(&f.name).contains(&value.as_bytes()));
        }
    }

    #[test]
    fn rfc7230_3_2_6_obs_text_and_empty_fields_refused() {
        let e = check_header_field("X-Name", "caf\u{e9}").unwrap_err();
        assert_eq!(
            e,
            invalid(
                RequestField::HeaderValue,
                HeaderLabel::new("X-Name"),
                FieldFault::Byte { byte: 0xC3, at: 3 }
            )
        );
        assert!(check_header_field("X-Name", "tab\tand space ok").is_ok());
        assert!(check_header_field("X-Name", "").is_ok());
        assert!(matches!(
            check_header_field("", "v"),
            Err(HandshakeError::InvalidRequest(InvalidRequestField {
                fault: FieldFault::Empty,
                ..
            }))
        ));
        for bad in [
            Request {
                protocols: &[""],
                ..Request::mqtt("h", None, "/")
            },
            Request {
                origin: Some(""),
                ..Request::mqtt("h", None, "/")
            },
            Request::mqtt("", None, "/"),
            Request::mqtt("h", None, "mqtt"),
            Request::mqtt("h", None, "/caf\u{e9}"),
            Request {
                protocols: &["mq,tt"],
                ..Request::mqtt("h", None, "/")
            },
            Request {
                headers: &[("Bad:Name", "v")],
                ..Request::mqtt("h", None, "/")
            },
        ] {
            assert!(
                matches!(bad.check(), Err(HandshakeError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc7230_3_2_refusal_names_the_header_and_the_rule() {
        let e = check_header_field("A", "b\r\nHost: x").unwrap_err();
        let text = alloc::format!("{}", Error::<core::convert::Infallible>::Handshake(e));
        assert_eq!(
            text,
            "websocket handshake failed: upgrade request not sent: value of header `A` has \
             byte 0x0d (CR) at offset 1, which is not allowed (RFC 7230 §3.2: a header value \
             is visible ASCII, space and tab; obs-text is not sent)"
        );
        let e = check_header_field("X-Bad\nName", "v").unwrap_err();
        assert!(
            alloc::format!("{e}").contains("header name `X-Bad...` has byte 0x0a (LF) at offset 5"),
            "{e}"
        );
    }

    #[test]
    fn hook_headers_filling_the_whole_buffer_still_send_the_request() {
        // The hook's line takes all 20 bytes lent: the rest goes unbuffered.
        let req = Request::mqtt("h", None, "/mqtt");
        let mut sink = Sink(alloc::vec::Vec::new(), 0);
        let mut buf = [0u8; 20];
        let mut hook = OneHeader("X-Fill", "0123456789");
        embassy_futures::block_on(write_request(&mut sink, &mut buf, &req, KEY, &mut hook))
            .unwrap();
        let text = alloc::string::String::from_utf8(sink.0).unwrap();
        assert!(
            text.starts_with("GET /mqtt HTTP/1.1\r\nHost: h\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\nX-Fill: 0123456789\r\n\r\n"), "{text}");
    }

    #[test]
    fn port_formatting() {
        let mut b = [0u8; 6];
        assert_eq!(format_port(0, &mut b), b":0");
        assert_eq!(format_port(65535, &mut b), b":65535");
        assert_eq!(format_port(443, &mut b), b":443");
    }
}
