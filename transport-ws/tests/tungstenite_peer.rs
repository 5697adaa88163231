//! embermq-ws against tungstenite, a WebSocket implementation we did not
//! write: tungstenite as the server for our client, and as the client for
//! our server role, over real loopback TCP. tungstenite runs blocking in a
//! thread; our side runs on tokio through `embedded-io-adapters`.

use core::time::Duration;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{Read as _, Write as _};
use embermq_ws::{
    Buffers, Config, Error, Opcode, ProtocolError, Request, WsClient, WsConnection, WsStream,
    server::WsServer,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::{Message, WebSocket};

type Io = FromTokio<tokio::net::TcpStream>;

/// Starts a tungstenite server that selects subprotocol `mqtt` when offered
/// and runs `body` on the accepted connection.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn tungstenite_server<T: Send + 'static>(
    body: impl FnOnce(WebSocket<TcpStream>) -> T + Send + 'static,
) -> (u16, thread::JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let ws = tungstenite::accept_hdr(
            tcp,
            |req: &tungstenite::handshake::server::Request,
             mut resp: tungstenite::handshake::server::Response| {
                if let Some(p) = req.headers().get("Sec-WebSocket-Protocol")
                    && p.to_str().unwrap().split(',').any(|s| s.trim() == "mqtt")
                {
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
                }
                Ok(resp)
            },
        )
        .unwrap();
        body(ws)
    });
    (port, handle)
}

async fn connect<'b>(
    port: u16,
    rx: &'b mut [u8],
    tx: &'b mut [u8],
    cfg: Config,
) -> WsClient<'b, Io, StdRng> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = Request::mqtt("127.0.0.1", Some(port), "/mqtt");
    let (conn, proto) = WsConnection::connect_with_timeout(
        FromTokio::new(tcp),
        &req,
        Buffers { rx, tx },
        StdRng::seed_from_u64(42),
        cfg,
        &mut (),
        tokio::time::sleep(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(proto, Some("mqtt"));
    conn
}

/// Receives one whole message; returns its type and bytes.
async fn recv_message<M: embermq_ws::Role>(c: &mut WsConnection<'_, Io, M>) -> (Opcode, Vec<u8>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let info = c
            .recv_msg_with_timeout(&mut buf, tokio::time::sleep(Duration::from_secs(10)))
            .await
            .unwrap();
        out.extend_from_slice(&buf[..info.len]);
        if info.is_message_end() {
            return (info.opcode, out);
        }
    }
}

fn big(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

/// Echo server: returns the close frame it received.
fn echo(mut ws: WebSocket<TcpStream>) -> Option<CloseFrame> {
    loop {
        match ws.read() {
            Ok(Message::Close(cf)) => {
                // tungstenite queues the echo; drive it out.
                let _ = ws.flush();
                return cf;
            }
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => ws.send(m).unwrap(),
            Ok(_) => {}
            Err(e) => panic!("tungstenite server: {e}"),
        }
    }
}

#[tokio::test]
async fn rfc6455_client_text_binary_fragmented_and_64_bit_frames_echo() {
    let (port, server) = tungstenite_server(echo);
    let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 1500]);
    let mut c = connect(port, &mut rx, &mut tx, Config::default()).await;

    c.send_msg(b"hello", Opcode::Text, true).await.unwrap();
    assert_eq!(
        recv_message(&mut c).await,
        (Opcode::Text, b"hello".to_vec())
    );

    let bin: Vec<u8> = (0..=255).collect();
    c.send_msg(&bin, Opcode::Binary, true).await.unwrap();
    assert_eq!(recv_message(&mut c).await, (Opcode::Binary, bin));

    // §5.4 fragmented send with a ping between fragments.
    c.send_msg("κό".as_bytes(), Opcode::Text, false)
        .await
        .unwrap();
    c.send_msg(b"between", Opcode::Ping, true).await.unwrap();
    c.send_msg("σμε".as_bytes(), Opcode::Continuation, true)
        .await
        .unwrap();
    assert_eq!(
        recv_message(&mut c).await,
        (Opcode::Text, "κόσμε".as_bytes().to_vec())
    );

    // 100 KiB and 300 KiB: 64-bit lengths, masked through a 1500-byte
    // transmit buffer in pieces.
    for len in [100 * 1024, 300 * 1024] {
        let payload = big(len);
        c.send_msg(&payload, Opcode::Binary, true).await.unwrap();
        let (op, got) = recv_message(&mut c).await;
        assert_eq!(op, Opcode::Binary);
        assert!(got == payload, "{len}-byte echo differs");
    }

    c.close(4001, "done", tokio::time::sleep(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(c.is_closed());
    let cf = server.join().unwrap().expect("close frame with a code");
    assert_eq!(u16::from(cf.code), 4001);
    assert_eq!(cf.reason.as_str(), "done");
}

#[tokio::test]
async fn rfc6455_5_5_2_ping_between_server_fragments_answered_and_server_close_echoed() {
    let (port, server) = tungstenite_server(|mut ws| {
        ws.write(Message::Frame(Frame::message(
            "ab".as_bytes().to_vec(),
            OpCode::Data(Data::Text),
            false,
        )))
        .unwrap();
        ws.write(Message::Ping(b"xyz".to_vec().into())).unwrap();
        ws.write(Message::Frame(Frame::message(
            "cd".as_bytes().to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .unwrap();
        ws.flush().unwrap();
        let pong = ws.read().unwrap();
        ws.close(Some(CloseFrame {
            code: CloseCode::Library(4000),
            reason: "bye".into(),
        }))
        .unwrap();
        // The client's echo completes the closing handshake.
        let end = loop {
            match ws.read() {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        (pong, end)
    });
    let (mut rx, mut tx) = (vec![0u8; 1024], vec![0u8; 256]);
    let mut c = connect(port, &mut rx, &mut tx, Config::default()).await;
    assert_eq!(recv_message(&mut c).await, (Opcode::Text, b"abcd".to_vec()));
    let mut buf = [0u8; 64];
    let info = c.recv_msg(&mut buf).await.unwrap();
    assert_eq!(info.opcode, Opcode::Close);
    assert_eq!(&buf[..info.len], b"\x0f\xa0bye");
    assert!(matches!(
        c.recv_msg(&mut buf).await,
        Err(Error::NotConnected)
    ));
    let (pong, end) = server.join().unwrap();
    assert_eq!(pong, Message::Pong(b"xyz".to_vec().into()));
    assert!(
        matches!(end, tungstenite::Error::ConnectionClosed),
        "{end:?}"
    );
}

#[tokio::test]
async fn mqtt_6_0_0_2_stream_reads_packets_across_frames() {
    let (port, server) = tungstenite_server(|mut ws| {
        // One "packet" split over two frames, then two sharing one frame.
        ws.send(Message::Binary(vec![0x20, 0x02].into())).unwrap();
        ws.send(Message::Binary(vec![0x00, 0x00, 0xD0, 0x00].into()))
            .unwrap();
        let got = ws.read().unwrap();
        ws.close(None).unwrap();
        let _ = ws.flush();
        got
    });
    let (mut rx, mut tx) = (vec![0u8; 1024], vec![0u8; 256]);
    let cfg = Config {
        mqtt: true,
        ..Config::default()
    };
    let c = connect(port, &mut rx, &mut tx, cfg).await;
    let mut s = WsStream::new(c);
    let mut packet = [0u8; 6];
    s.read_exact(&mut packet).await.unwrap();
    assert_eq!(packet, [0x20, 0x02, 0x00, 0x00, 0xD0, 0x00]);
    s.write_all(&[0xC0, 0x00]).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(s.read(&mut packet).await.unwrap(), 0, "close reads as EOF");
    assert_eq!(
        server.join().unwrap(),
        Message::Binary(vec![0xC0, 0x00].into())
    );
}

/// Runs a server that sends `msg`, then returns the close frame it gets.
fn send_then_expect_close(msg: Message) -> (u16, thread::JoinHandle<Option<CloseFrame>>) {
    tungstenite_server(move |mut ws| {
        ws.send(msg).unwrap();
        loop {
            match ws.read() {
                Ok(Message::Close(cf)) => return cf,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
}

#[tokio::test]
async fn mqtt_6_0_0_1_text_frame_from_tungstenite_closes_1003() {
    let (port, server) = send_then_expect_close(Message::text("not mqtt"));
    let (mut rx, mut tx) = (vec![0u8; 1024], vec![0u8; 256]);
    let cfg = Config {
        mqtt: true,
        ..Config::default()
    };
    let mut s = WsStream::new(connect(port, &mut rx, &mut tx, cfg).await);
    let e = s.read(&mut [0u8; 16]).await.unwrap_err();
    assert!(matches!(e, Error::Protocol(ProtocolError::TextFrameInMqtt)));
    assert_eq!(server.join().unwrap().unwrap().code, CloseCode::Unsupported);
}

#[tokio::test]
async fn rfc6455_7_4_1_message_over_maximum_from_tungstenite_closes_1009() {
    let (port, server) = send_then_expect_close(Message::Binary(big(5000).into()));
    let (mut rx, mut tx) = (vec![0u8; 1024], vec![0u8; 256]);
    let cfg = Config {
        max_message_len: 4096,
        mqtt: false,
    };
    let mut c = connect(port, &mut rx, &mut tx, cfg).await;
    let e = c.recv_msg(&mut [0u8; 16]).await.unwrap_err();
    assert!(matches!(e, Error::Protocol(ProtocolError::MessageTooBig)));
    assert_eq!(server.join().unwrap().unwrap().code, CloseCode::Size);
}

#[tokio::test]
async fn server_role_with_tungstenite_client() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = mpsc::channel();
    let client = thread::spawn(move || {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{port}/mqtt"
        ))
        .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        let (mut ws, resp) = tungstenite::client(req, tcp).unwrap();
        assert_eq!(
            resp.headers().get("Sec-WebSocket-Protocol").unwrap(),
            "mqtt"
        );
        let payload = big(150 * 1024);
        ws.send(Message::text("hi server")).unwrap();
        ws.send(Message::Binary(payload.clone().into())).unwrap();
        ws.send(Message::Ping(b"p".to_vec().into())).unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            match ws.read().unwrap() {
                Message::Close(_) => break,
                m => got.push(m),
            }
        }
        ws.close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        }))
        .unwrap();
        let end = loop {
            if let Err(e) = ws.read() {
                break e;
            }
        };
        done_tx.send(()).unwrap();
        (got, payload, end)
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 512]);
    let (mut s, proto) = WsServer::accept(
        FromTokio::new(tcp),
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        &["mqtt"],
        Config::default(),
    )
    .await
    .unwrap();
    assert_eq!(proto, Some("mqtt"));
    for _ in 0..2 {
        let (op, data) = recv_message(&mut s).await;
        s.send_msg(&data, op, true).await.unwrap();
    }
    // The ping was answered on the way; now the client's Close (1001).
    let mut buf = [0u8; 8];
    let info = s.recv_msg(&mut buf).await.unwrap();
    assert_eq!(info.opcode, Opcode::Close);
    assert_eq!(&buf[..2], &1001u16.to_be_bytes());
    let (io, r) = s
        .unregister(1000, tokio::time::sleep(Duration::from_secs(1)))
        .await;
    r.unwrap();
    // §7.1.1: the server closes the TCP connection first.
    drop(io);
    done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let (got, payload, end) = client.join().unwrap();
    assert_eq!(got[0], Message::text("hi server"));
    assert_eq!(got[1], Message::Binary(payload.into()));
    assert_eq!(got[2], Message::Pong(b"p".to_vec().into()));
    assert!(
        matches!(end, tungstenite::Error::ConnectionClosed),
        "{end:?}"
    );
}

#[tokio::test]
async fn mqtt_6_0_0_4_server_role_refuses_client_without_mqtt() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = thread::spawn(move || {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The HTTP status the handshake failed with, if it failed that way.
        match tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp) {
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                Some(resp.status().as_u16())
            }
            _ => None,
        }
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 512]);
    let cfg = Config {
        mqtt: true,
        ..Config::default()
    };
    let r = WsServer::accept(
        FromTokio::new(tcp),
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        &["mqtt"],
        cfg,
    )
    .await;
    assert!(matches!(
        r,
        Err(Error::Handshake(
            embermq_ws::HandshakeError::MissingProtocol
        ))
    ));
    drop(r);
    assert_eq!(client.join().unwrap(), Some(400));
}

/// RFC 6455 §5.5.2 over real TCP with back-pressure: tungstenite pings 2000
/// times (120-byte payloads) while its reading side sleeps, so the client's
/// small send buffer fills with pongs; the client reads with a 2 ms timer
/// (each timed-out read future is dropped, as the MQTT driver does) and
/// sends a data frame now and then. Once tungstenite reads, every frame
/// must decode (tungstenite fails the read on a partial or bad one), the
/// pongs must carry the pings' payloads in order, and the data frames must
/// arrive whole and in order.
#[tokio::test]
#[allow(clippy::result_large_err)] // tungstenite's callback signature
async fn rfc6455_5_5_2_pings_answered_whole_while_back_pressured_and_reads_dropped() {
    const PINGS: usize = 2000;
    let payload = |i: usize| format!("{i:0>120}").into_bytes();
    // Small kernel buffers on both ends so the pongs back up quickly.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let listener = socket.listen(1).unwrap();
    let accepted = tokio::spawn(async move { listener.accept().await.unwrap().0 });
    let client_socket = tokio::net::TcpSocket::new_v4().unwrap();
    client_socket.set_send_buffer_size(4096).unwrap();
    let tcp = client_socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let server_tcp = accepted.await.unwrap().into_std().unwrap();
    server_tcp.set_nonblocking(false).unwrap();
    let server = thread::spawn(move || {
        server_tcp
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reader = tungstenite::accept_hdr(
            server_tcp,
            |_: &tungstenite::handshake::server::Request,
             mut resp: tungstenite::handshake::server::Response| {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
                Ok(resp)
            },
        )
        .unwrap();
        let mut writer = WebSocket::from_raw_socket(
            reader.get_ref().try_clone().unwrap(),
            tungstenite::protocol::Role::Server,
            None,
        );
        let pinger = thread::spawn(move || {
            for i in 0..PINGS {
                writer.send(Message::Ping(payload(i).into())).unwrap();
            }
            writer
                .send(Message::Binary(b"done".to_vec().into()))
                .unwrap();
            writer
        });
        // Not reading for a while: the client's pongs back up.
        thread::sleep(Duration::from_millis(1500));
        let (mut pongs, mut data) = (0usize, Vec::new());
        while pongs < PINGS {
            match reader.read().expect("every client frame decodes") {
                Message::Pong(p) => {
                    assert_eq!(p.as_ref(), payload(pongs).as_slice(), "pong {pongs}");
                    pongs += 1;
                }
                Message::Binary(b) => data.push(b.to_vec()),
                other => panic!("unexpected {other:?}"),
            }
        }
        let _writer = pinger.join().unwrap();
        data
    });
    let (mut rx, mut tx) = (vec![0u8; 1024], vec![0u8; 512]);
    let req = Request::mqtt("127.0.0.1", Some(port), "/mqtt");
    let (mut c, _) = WsConnection::connect_with_timeout(
        FromTokio::new(tcp),
        &req,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        StdRng::seed_from_u64(3),
        Config::default(),
        &mut (),
        tokio::time::sleep(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    // The client does not read at first either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut dropped, mut sent) = (0usize, Vec::new());
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match tokio::time::timeout(Duration::from_millis(2), c.recv_msg(&mut buf)).await {
                Ok(Ok(info)) if info.opcode == Opcode::Binary => {
                    assert_eq!(&buf[..info.len], b"done");
                    break;
                }
                Ok(r) => panic!("unexpected {r:?}"),
                Err(_) => {
                    dropped += 1;
                    if dropped % 50 == 0 && sent.len() < 20 {
                        let frame = format!("data {}", sent.len()).into_bytes();
                        c.send_msg(&frame, Opcode::Binary, true).await.unwrap();
                        sent.push(frame);
                    }
                }
            }
        }
        // The last pong may still be pending: finish it.
        c.flush().await.unwrap();
    })
    .await
    .expect("all pings read");
    let data = server.join().expect("tungstenite read every frame");
    assert!(dropped > 50, "reads were dropped {dropped} times");
    assert_eq!(data, sent);
}
