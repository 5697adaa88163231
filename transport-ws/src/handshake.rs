//! The client side of the opening handshake (RFC 6455 §4.1, §4.2.2) and
//! MQTT §6 subprotocol selection.
//!
//! The request is written straight to the transport through the lent
//! transmit buffer, flushed whenever it fills, so a request target of any
//! length (presigned cloud URLs of several KiB) works with any buffer that
//! holds one extra header line. The response is read into the lent receive
//! buffer across any number of partial reads and parsed with `httparse`;
//! [`check_response`] is a pure function over those bytes. Bytes after the
//! header stay in the receive buffer: they are the first frames.
//!
//! Deliberately not here: redirects (3xx is reported as
//! [`HandshakeError::Status`]), HTTP authentication schemes (callers add an
//! `Authorization` header), extensions (none are offered; a server that
//! selects one is refused), and I/O timeouts (the caller's deadline bounds
//! the whole connect).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use embedded_io_async::Write;

use crate::error::{Error, HandshakeError, ReasonPhrase};

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
    /// Appends `name: value\r\n`; fails if the lent transmit buffer cannot
    /// hold the header lines written so far by this callback.
    pub fn header(&mut self, name: &str, value: &str) -> Result<(), HandshakeError> {
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            let end = self
                .len
                .checked_add(part.len())
                .ok_or(HandshakeError::RequestTooLarge)?;
            self.buf
                .get_mut(self.len..end)
                .ok_or(HandshakeError::RequestTooLarge)?
                .copy_from_slice(part);
            self.len = end;
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
    rng.fill_bytes(&mut nonce);
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

/// Buffers output in the lent buffer and writes it out whenever it fills.
pub(crate) struct ChunkWriter<'b> {
    pub(crate) buf: &'b mut [u8],
    pub(crate) len: usize,
}

impl ChunkWriter<'_> {
    pub(crate) async fn put<T: Write>(
        &mut self,
        io: &mut T,
        mut bytes: &[u8],
    ) -> Result<(), T::Error> {
        while !bytes.is_empty() {
            let free = self.buf.get_mut(self.len..).unwrap_or_default();
            if free.is_empty() {
                self.flush(io).await?;
                continue;
            }
            let n = free.len().min(bytes.len());
            let (now, later) = bytes.split_at(n);
            if let Some(dst) = free.get_mut(..n) {
                dst.copy_from_slice(now);
            }
            self.len += n;
            bytes = later;
        }
        Ok(())
    }

    pub(crate) async fn flush<T: Write>(&mut self, io: &mut T) -> Result<(), T::Error> {
        if self.len > 0 {
            io.write_all(self.buf.get(..self.len).unwrap_or_default())
                .await?;
            self.len = 0;
        }
        Ok(())
    }
}

/// Writes the upgrade request for `req` with `key` to `io`, using `tx_buf`
/// as the output buffer (at least 1 byte; extra headers from `hooks` must
/// fit it together).
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
    let mut w = ChunkWriter {
        buf: tx_buf,
        len: 0,
    };
    let path = if req.path.is_empty() { "/" } else { req.path };
    let mut port_buf = [0u8; 6];
    let port = match req.port {
        Some(p) => format_port(p, &mut port_buf),
        None => &[],
    };
    let head: [&[u8]; 9] = [
        b"GET ",
        path.as_bytes(),
        b" HTTP/1.1\r\nHost: ",
        req.host.as_bytes(),
        port,
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        key,
        b"\r\nSec-WebSocket-Version: 13\r\n",
        b"",
    ];
    for part in head {
        w.put(io, part).await.map_err(Error::Io)?;
    }
    for (i, proto) in req.protocols.iter().enumerate() {
        let lead: &[u8] = if i == 0 {
            b"Sec-WebSocket-Protocol: "
        } else {
            b", "
        };
        w.put(io, lead).await.map_err(Error::Io)?;
        w.put(io, proto.as_bytes()).await.map_err(Error::Io)?;
    }
    if !req.protocols.is_empty() {
        w.put(io, b"\r\n").await.map_err(Error::Io)?;
    }
    if let Some(origin) = req.origin {
        for part in [b"Origin: ", origin.as_bytes(), b"\r\n"] {
            w.put(io, part).await.map_err(Error::Io)?;
        }
    }
    for (name, value) in req.headers {
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            w.put(io, part).await.map_err(Error::Io)?;
        }
    }
    // The callback gets the whole free buffer.
    w.flush(io).await.map_err(Error::Io)?;
    let mut hw = HeaderWriter {
        buf: &mut *w.buf,
        len: 0,
    };
    hooks.write_headers(&mut hw)?;
    w.len = hw.len;
    w.put(io, b"\r\n").await.map_err(Error::Io)?;
    w.flush(io).await.map_err(Error::Io)?;
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
    fn port_formatting() {
        let mut b = [0u8; 6];
        assert_eq!(format_port(0, &mut b), b":0");
        assert_eq!(format_port(65535, &mut b), b":65535");
        assert_eq!(format_port(443, &mut b), b":443");
    }
}
