//! A fault-injecting raw TCP server, for what no WebSocket library will
//! send: broken handshakes and frames that violate RFC 6455. It is written
//! here by hand on purpose, since a real peer cannot produce these cases.
//! Every case must end in a typed error or a clean close within its
//! deadline: no panic, no hang.

use core::time::Duration;

use base64::Engine as _;
use embedded_io_adapters::tokio_1::FromTokio;
use embermq_ws::{
    Buffers, Config, Error, HandshakeError, Opcode, ProtocolError, Request, WsClient, WsConnection,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha1_smol::Sha1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};

type Io = FromTokio<TcpStream>;

/// What the scripted server writes after reading the request: a list of
/// chunks, each written and flushed separately (with a pause between when
/// `paced`).
struct Script {
    chunks: Vec<Vec<u8>>,
    paced: bool,
    /// Keep the connection open, silent, after the script.
    linger: bool,
}

fn accept_of(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let mut out = [0u8; 28];
    base64::engine::general_purpose::STANDARD
        .encode_slice(sha.digest().bytes(), &mut out)
        .unwrap();
    String::from_utf8(out.to_vec()).unwrap()
}

fn ok_response(key: &str, protocol: Option<&str>) -> Vec<u8> {
    let proto = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{proto}\r\n",
        accept_of(key)
    )
    .into_bytes()
}

/// Starts the scripted server. `script` gets the client's key. Returns the
/// port and a handle yielding every byte the client sent after its request.
async fn fault_server(
    script: impl FnOnce(&str) -> Script + Send + 'static,
) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut req = Vec::new();
        let mut byte = [0u8; 1];
        while !req.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).await.unwrap() == 0 {
                return Vec::new();
            }
            req.push(byte[0]);
        }
        let text = String::from_utf8(req).unwrap();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_owned();
        let s = script(&key);
        for chunk in s.chunks {
            tcp.write_all(&chunk).await.unwrap();
            tcp.flush().await.unwrap();
            if s.paced {
                sleep(Duration::from_millis(2)).await;
            }
        }
        let mut rest = Vec::new();
        if s.linger {
            let _ = timeout(Duration::from_secs(2), tcp.read_to_end(&mut rest)).await;
        } else {
            let _ = timeout(Duration::from_millis(500), tcp.read_to_end(&mut rest)).await;
        }
        rest
    });
    (port, handle)
}

async fn try_connect<'b>(
    port: u16,
    rx: &'b mut [u8],
    tx: &'b mut [u8],
    mqtt: bool,
) -> Result<WsClient<'b, Io, StdRng>, Error<std::io::Error>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = Request::mqtt("localhost", Some(port), "/mqtt");
    let cfg = Config {
        mqtt,
        ..Config::default()
    };
    WsConnection::connect_with_timeout(
        FromTokio::new(tcp),
        &req,
        Buffers { rx, tx },
        StdRng::seed_from_u64(3),
        cfg,
        &mut (),
        sleep(Duration::from_secs(3)),
    )
    .await
    .map(|(c, _)| c)
}

async fn handshake_error(
    script: impl FnOnce(&str) -> Script + Send + 'static,
) -> Error<std::io::Error> {
    let (port, server) = fault_server(script).await;
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 256]);
    let r = timeout(
        Duration::from_secs(5),
        try_connect(port, &mut rx, &mut tx, true),
    )
    .await
    .expect("no hang");
    let _ = server.await;
    match r {
        Ok(_) => panic!("handshake unexpectedly succeeded"),
        Err(e) => e,
    }
}

fn once(bytes: Vec<u8>) -> Script {
    Script {
        chunks: vec![bytes],
        paced: false,
        linger: false,
    }
}

#[tokio::test]
async fn rfc6455_4_1_wrong_accept_fails_handshake() {
    let e = handshake_error(|_| once(ok_response("not-the-key", Some("mqtt")))).await;
    assert!(
        matches!(e, Error::Handshake(HandshakeError::BadAccept)),
        "{e:?}"
    );
}

#[tokio::test]
async fn rfc6455_4_1_401_with_body_reports_status_and_reason() {
    let e = handshake_error(|_| {
        once(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\n\r\nbad password".to_vec())
    })
    .await;
    match e {
        Error::Handshake(HandshakeError::Status { code, reason }) => {
            assert_eq!((code, reason.as_str()), (401, "Unauthorized"));
        }
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn rfc6455_4_1_unoffered_subprotocol_fails_handshake() {
    let e = handshake_error(|k| once(ok_response(k, Some("chat")))).await;
    assert!(
        matches!(e, Error::Handshake(HandshakeError::UnofferedProtocol)),
        "{e:?}"
    );
}

#[tokio::test]
async fn mqtt_6_0_0_4_missing_subprotocol_fails_handshake() {
    let e = handshake_error(|k| once(ok_response(k, None))).await;
    assert!(
        matches!(e, Error::Handshake(HandshakeError::MissingProtocol)),
        "{e:?}"
    );
}

#[tokio::test]
async fn peer_closing_mid_handshake_is_unexpected_eof() {
    let e = handshake_error(|k| once(ok_response(k, Some("mqtt"))[..20].to_vec())).await;
    assert!(
        matches!(e, Error::Handshake(HandshakeError::UnexpectedEof)),
        "{e:?}"
    );
}

/// Connects with `frames` sent by the server right behind the 101,
/// optionally one byte per write.
async fn with_frames(
    frames: Vec<u8>,
    byte_per_write: bool,
) -> (Vec<u8>, Result<Vec<u8>, Error<std::io::Error>>, Vec<u8>) {
    let (port, server) = fault_server(move |k| {
        let mut all = ok_response(k, Some("mqtt"));
        all.extend_from_slice(&frames);
        if byte_per_write {
            Script {
                chunks: all.into_iter().map(|b| vec![b]).collect(),
                paced: true,
                linger: false,
            }
        } else {
            once(all)
        }
    })
    .await;
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 256]);
    let outcome = timeout(Duration::from_secs(10), async {
        let mut c = try_connect(port, &mut rx, &mut tx, false).await?;
        let mut data = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let info = c.recv_msg(&mut buf).await?;
            data.extend_from_slice(&buf[..info.len]);
            if info.opcode == Opcode::Close || info.is_message_end() {
                return Ok(data);
            }
        }
    })
    .await
    .expect("no hang");
    let sent = server.await.unwrap();
    (Vec::new(), outcome, sent)
}

fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![b0, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

/// The close code in the first frame the client sent (unmasking it).
fn close_code_sent(sent: &[u8]) -> u16 {
    let (h, n) = embermq_ws::FrameHeader::decode(sent).unwrap().unwrap();
    assert_eq!(h.opcode, Opcode::Close);
    let mut p = sent[n..n + h.payload_len as usize].to_vec();
    embermq_ws::frame::apply_mask(&mut p, h.mask.unwrap(), 0);
    u16::from_be_bytes([p[0], p[1]])
}

#[tokio::test]
async fn rfc6455_4_1_response_one_byte_per_read_then_frame() {
    let (_, r, _) = with_frames(frame(0x82, b"after"), true).await;
    assert_eq!(r.unwrap(), b"after");
}

#[tokio::test]
async fn frames_in_the_same_read_as_the_101_are_kept() {
    let mut frames = frame(0x01, b"sa");
    frames.extend(frame(0x80, b"me"));
    let (_, r, _) = with_frames(frames, false).await;
    assert_eq!(r.unwrap(), b"same");
}

async fn expect_protocol_error(frames: Vec<u8>, expect: ProtocolError, code: u16) {
    let (_, r, sent) = with_frames(frames, false).await;
    match r {
        Err(Error::Protocol(p)) => assert_eq!(p, expect),
        other => panic!("{other:?}"),
    }
    assert_eq!(close_code_sent(&sent), code);
}

#[tokio::test]
async fn rfc6455_5_1_masked_server_frame_closes_1002() {
    expect_protocol_error(
        vec![0x82, 0x82, 1, 2, 3, 4, 0, 0],
        ProtocolError::MaskedFrameFromServer,
        1002,
    )
    .await;
}

#[tokio::test]
async fn rfc6455_5_2_rsv_bits_close_1002() {
    expect_protocol_error(frame(0xC2, b"x"), ProtocolError::ReservedBits, 1002).await;
}

#[tokio::test]
async fn rfc6455_5_2_reserved_opcode_closes_1002() {
    expect_protocol_error(frame(0x8B, b""), ProtocolError::ReservedOpcode(0xB), 1002).await;
}

#[tokio::test]
async fn rfc6455_5_5_126_byte_ping_closes_1002() {
    let mut ping = vec![0x89, 126, 0, 126];
    ping.extend_from_slice(&[7u8; 126]);
    expect_protocol_error(ping, ProtocolError::ControlFrameTooLong, 1002).await;
}

#[tokio::test]
async fn rfc6455_8_1_invalid_utf8_across_fragments_closes_1007() {
    let mut frames = frame(0x01, b"\xF0\x9F");
    frames.extend(frame(0x80, b"\x98\x28"));
    expect_protocol_error(frames, ProtocolError::InvalidUtf8, 1007).await;
}

#[tokio::test]
async fn rfc6455_7_1_2_peer_silent_mid_close_times_out() {
    let (port, server) = fault_server(|k| Script {
        chunks: vec![ok_response(k, Some("mqtt"))],
        paced: false,
        linger: true,
    })
    .await;
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 256]);
    let mut c = try_connect(port, &mut rx, &mut tx, true).await.unwrap();
    let started = std::time::Instant::now();
    let r = timeout(
        Duration::from_secs(5),
        c.close(1000, "", sleep(Duration::from_millis(200))),
    )
    .await
    .expect("close returns by its own deadline");
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(c.into_inner());
    let sent = server.await.unwrap();
    assert_eq!(close_code_sent(&sent), 1000);
}
