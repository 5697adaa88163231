//! The server role (the seed's `websocket_register` / `websocket_unregister`):
//! RFC 6455 §4.2 on the server side, then framing with unmasked sends and
//! masked receives (§5.1).
//!
//! [`check_request`] is a pure function over the bytes of a client's upgrade
//! request; [`WsServer::accept`] reads one, answers `101 Switching
//! Protocols` (or `400 Bad Request` and an error) and keeps bytes after the
//! request header as the first frames. [`WsServer::register`] wraps a
//! transport whose upgrade was done elsewhere (e.g. by an HTTP server).
//!
//! Deliberately not here: routing, authentication and HTTP other than the
//! upgrade; extensions (never accepted).

use core::future::Future;

use embedded_io_async::{Read, Write};

use crate::error::{Error, HandshakeError};
use crate::handshake::{Coalescer, Segment, accept_for_key, has_token};
use crate::message::{Buffers, Config, MIN_RX_BUF, ServerRole, WsConnection};

/// How many request header fields are parsed at most.
pub const MAX_REQUEST_HEADERS: usize = 48;

/// A server connection.
pub type WsServer<'b, T> = WsConnection<'b, T, ServerRole>;

/// A valid client upgrade request (§4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeRequest<'s> {
    /// The client's `Sec-WebSocket-Key` (24 base64 characters).
    pub key: [u8; 24],
    /// The first subprotocol the client offered that the server supports.
    pub protocol: Option<&'s str>,
    /// The length of the request header; bytes after it are frames.
    pub header_len: usize,
}

/// Checks a client's upgrade request in `buf` (§4.2.1): `GET`, HTTP/1.1,
/// `Host`, `Upgrade: websocket`, `Connection` containing `upgrade`, a
/// 16-byte base64 `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`.
/// Selects the first offered protocol found in `supported`. `Ok(None)` while
/// incomplete.
pub fn check_request<'s>(
    buf: &[u8],
    supported: &'s [&'s str],
) -> Result<Option<UpgradeRequest<'s>>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let header_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(_) => return Err(HandshakeError::MalformedHttp),
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return Err(HandshakeError::BadRequest);
    }
    let (mut host, mut upgrade, mut connection, mut version) = (false, false, false, false);
    let mut key = None;
    let mut protocol = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = h.value.trim_ascii() == b"13";
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            let v = h.value.trim_ascii();
            let mut decoded = [0u8; 18];
            use base64::Engine as _;
            let ok = base64::engine::general_purpose::STANDARD
                .decode_slice(v, &mut decoded)
                .is_ok_and(|n| n == 16);
            key = v
                .first_chunk::<24>()
                .copied()
                .filter(|_| ok && v.len() == 24);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") && protocol.is_none() {
            protocol = h.value.split(|&b| b == b',').find_map(|offered| {
                let offered = offered.trim_ascii();
                supported.iter().copied().find(|s| s.as_bytes() == offered)
            });
        }
    }
    if !upgrade {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !connection {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let (true, true, Some(key)) = (host, version, key) else {
        return Err(HandshakeError::BadRequest);
    };
    Ok(Some(UpgradeRequest {
        key,
        protocol,
        header_len,
    }))
}

/// Writes the `101 Switching Protocols` answer for `key` (§4.2.2).
pub async fn write_accept<T: Write>(
    io: &mut T,
    tx_buf: &mut [u8],
    key: &[u8; 24],
    protocol: Option<&str>,
) -> Result<(), T::Error> {
    let accept = accept_for_key(key);
    let parts: [&[u8]; 5] = match protocol {
        Some(p) => [
            ACCEPT_HEAD,
            &accept,
            b"\r\nSec-WebSocket-Protocol: ",
            p.as_bytes(),
            b"\r\n\r\n",
        ],
        None => [ACCEPT_HEAD, &accept, b"\r\n\r\n", b"", b""],
    };
    let mut out = Coalescer::default();
    loop {
        let bytes = match out.next_segment(tx_buf, |i| parts.get(i).copied()) {
            Segment::Buffered(n) => tx_buf.get(..n).unwrap_or_default(),
            Segment::Part(p) => p,
            Segment::Done => break,
        };
        io.write_all(bytes).await?;
    }
    io.flush().await
}

/// The start of the `101` answer, up to the accept value.
const ACCEPT_HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";

impl<'b, T: Read + Write> WsConnection<'b, T, ServerRole> {
    /// Reads a client's upgrade request, answers 101 and returns the
    /// connection and the selected subprotocol. A bad request is answered
    /// with `400 Bad Request` and an error. With `cfg.mqtt`, a client that
    /// does not offer `mqtt` is refused.
    pub async fn accept<'s>(
        mut io: T,
        buffers: Buffers<'b>,
        supported: &'s [&'s str],
        cfg: Config,
    ) -> Result<(Self, Option<&'s str>), Error<T::Error>> {
        if buffers.rx.len() < MIN_RX_BUF {
            return Err(Error::BufferTooSmall {
                required: MIN_RX_BUF,
            });
        }
        let mut filled = 0usize;
        let checked = loop {
            let Some(free) = buffers.rx.get_mut(filled..).filter(|f| !f.is_empty()) else {
                break Err(HandshakeError::HeaderTooLarge {
                    buffer_len: buffers.rx.len(),
                });
            };
            let free_len = free.len();
            let n = io.read(free).await.map_err(Error::Io)?.min(free_len);
            if n == 0 {
                return Err(HandshakeError::UnexpectedEof.into());
            }
            filled += n;
            match check_request(buffers.rx.get(..filled).unwrap_or_default(), supported) {
                Ok(None) => {}
                Ok(Some(r)) if cfg.mqtt && r.protocol != Some("mqtt") => {
                    break Err(HandshakeError::MissingProtocol);
                }
                Ok(Some(r)) => break Ok(r),
                Err(e) => break Err(e),
            }
        };
        let req = match checked {
            Ok(r) => r,
            Err(e) => {
                let _ = io
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = io.flush().await;
                return Err(e.into());
            }
        };
        write_accept(&mut io, buffers.tx, &req.key, req.protocol)
            .await
            .map_err(Error::Io)?;
        buffers.rx.copy_within(req.header_len..filled, 0);
        let conn = Self::from_upgraded(io, ServerRole, buffers, filled - req.header_len, cfg)?;
        Ok((conn, req.protocol))
    }

    /// Wraps a transport already upgraded elsewhere (the seed's
    /// `websocket_register`); `leftover` bytes at the start of `buffers.rx`
    /// are frames that came with the request.
    pub fn register(
        io: T,
        buffers: Buffers<'b>,
        leftover: usize,
        cfg: Config,
    ) -> Result<Self, Error<T::Error>> {
        Self::from_upgraded(io, ServerRole, buffers, leftover, cfg)
    }

    /// Closes with `code` (bounded by `deadline`) and hands back the
    /// transport with the outcome of the close (the seed's
    /// `websocket_unregister`).
    pub async fn unregister(
        mut self,
        code: u16,
        deadline: impl Future<Output = ()>,
    ) -> (T, Result<(), Error<T::Error>>) {
        let r = self.close(code, "", deadline).await;
        (self.into_inner(), r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqttv3.1, mqtt\r\n\r\n";

    #[test]
    fn rfc6455_4_2_1_valid_request_accepted_and_protocol_selected() {
        let r = check_request(REQ.as_bytes(), &["mqtt"]).unwrap().unwrap();
        assert_eq!(&r.key, b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(r.protocol, Some("mqtt"));
        assert_eq!(r.header_len, REQ.len());
        for cut in 0..REQ.len() {
            assert_eq!(check_request(&REQ.as_bytes()[..cut], &["mqtt"]), Ok(None));
        }
    }

    #[test]
    fn rfc6455_4_2_1_wrong_version_or_key_rejected() {
        let bad_version = REQ.replace("Version: 13", "Version: 8");
        assert_eq!(
            check_request(bad_version.as_bytes(), &[]),
            Err(HandshakeError::BadRequest)
        );
        let short_key = REQ.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhl");
        assert_eq!(
            check_request(short_key.as_bytes(), &[]),
            Err(HandshakeError::BadRequest)
        );
        let post = REQ.replace("GET", "POST");
        assert_eq!(
            check_request(post.as_bytes(), &[]),
            Err(HandshakeError::BadRequest)
        );
    }
}
