//! embermq-ws's client against Python `websockets` 10.4 (Debian), a strict
//! server: it fails unmasked or malformed client frames with a close code,
//! pings the client and waits for the matching pong before echoing.

use core::time::Duration;

use embedded_io_adapters::tokio_1::FromTokio;
use embermq_tests::peers::PythonWsServer;
use embermq_ws::{Buffers, Config, Opcode, Request, WsConnection};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::{sleep, timeout};

type Conn<'b> = WsConnection<'b, FromTokio<tokio::net::TcpStream>, embermq_ws::ClientRole<StdRng>>;

async fn recv_message(c: &mut Conn<'_>) -> (Opcode, Vec<u8>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let info = c
            .recv_msg_with_timeout(&mut buf, sleep(Duration::from_secs(10)))
            .await
            .unwrap();
        out.extend_from_slice(&buf[..info.len]);
        if info.is_message_end() {
            return (info.opcode, out);
        }
    }
}

#[tokio::test]
async fn rfc6455_5_3_strict_python_server_accepts_our_masked_frames() {
    let server = PythonWsServer::start().expect("start python websockets server");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 700]);
    let req = Request {
        protocols: &["mqtt"],
        origin: Some("http://embermq.test"),
        ..Request::mqtt("127.0.0.1", Some(server.port), "/ws")
    };
    let (mut c, proto) = WsConnection::connect_with_timeout(
        FromTokio::new(tcp),
        &req,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        StdRng::seed_from_u64(5),
        Config::default(),
        &mut (),
        sleep(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(proto, Some("mqtt"));
    timeout(Duration::from_secs(20), async {
        // The server pings first and echoes only after our pong.
        c.send_msg(b"hello", Opcode::Text, true).await.unwrap();
        assert_eq!(
            recv_message(&mut c).await,
            (Opcode::Text, b"hello".to_vec())
        );

        c.send_msg(b"frag", Opcode::Binary, false).await.unwrap();
        c.send_msg(b"ping!", Opcode::Ping, true).await.unwrap();
        c.send_msg(b"mented", Opcode::Continuation, true)
            .await
            .unwrap();
        assert_eq!(
            recv_message(&mut c).await,
            (Opcode::Binary, b"fragmented".to_vec())
        );

        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        c.send_msg(&big, Opcode::Binary, true).await.unwrap();
        let (op, got) = recv_message(&mut c).await;
        assert_eq!(op, Opcode::Binary);
        assert!(got == big, "200 KB echo differs");

        c.send_msg(b"close-me", Opcode::Text, true).await.unwrap();
        let mut buf = [0u8; 32];
        let info = c.recv_msg(&mut buf).await.unwrap();
        assert_eq!(info.opcode, Opcode::Close);
        assert_eq!(&buf[..info.len], b"\x0f\xa2asked");
    })
    .await
    .expect("no hang");
}

#[tokio::test]
async fn rfc6455_7_1_2_client_initiated_close_with_python_server() {
    let server = PythonWsServer::start().expect("start python websockets server");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 256]);
    let req = Request::mqtt("127.0.0.1", Some(server.port), "/");
    let (mut c, _) = WsConnection::connect(
        FromTokio::new(tcp),
        &req,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        StdRng::seed_from_u64(6),
        Config::default(),
        &mut (),
    )
    .await
    .unwrap();
    // Answer the server's ping (service does not consume data), then close.
    let waiting = c.service(sleep(Duration::from_millis(300))).await.unwrap();
    assert!(!waiting, "no data was sent to us");
    c.close(1000, "bye", sleep(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(c.is_closed());
}
