//! MQTT over WebSocket against mosquitto's websockets listener (MQTT §6):
//! the `WsConnector` handshake with subprotocol `mqtt`, then raw MQTT 3.1.1
//! packets through the `WsStream`.

use core::time::Duration;

use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{Read, Write};
use embermq::transport::Connector;
use embermq::transport::WsConnector;
use embermq_tests::peers::Mosquitto;
use embermq_ws::{Buffers, HandshakeError, HandshakeHooks, HeaderWriter};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::timeout;

/// Plain TCP to a loopback port: the inner connector.
struct LoopbackTcp(u16);

impl Connector for LoopbackTcp {
    type Transport<'a> = FromTokio<tokio::net::TcpStream>;
    type Error = std::io::Error;

    async fn connect(&mut self) -> Result<Self::Transport<'_>, Self::Error> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.0)).await?;
        tcp.set_nodelay(true)?;
        Ok(FromTokio::new(tcp))
    }
}

/// Adds a header through the callback and records what the handshake saw.
#[derive(Default)]
struct Recorder {
    response_fields: usize,
    connected_with: Option<String>,
}

impl HandshakeHooks for Recorder {
    fn write_headers(&mut self, out: &mut HeaderWriter<'_>) -> Result<(), HandshakeError> {
        out.header("X-Embermq-Test", "1")
    }
    fn on_response_header(&mut self, _name: &str, _value: &[u8]) {
        self.response_fields += 1;
    }
    fn on_connected(&mut self, protocol: Option<&str>) {
        self.connected_with = protocol.map(str::to_owned);
    }
}

/// Reads one MQTT packet (fixed header, remaining length, body).
async fn read_packet<R: Read>(r: &mut R) -> Vec<u8> {
    let mut packet = vec![0u8; 1];
    r.read_exact(&mut packet).await.map_err(|_| "read").unwrap();
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).await.map_err(|_| "read").unwrap();
        packet.push(b[0]);
        len |= usize::from(b[0] & 0x7F) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let start = packet.len();
    packet.resize(start + len, 0);
    r.read_exact(&mut packet[start..])
        .await
        .map_err(|_| "read")
        .unwrap();
    packet
}

fn remaining_len(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut p = vec![0x10];
    remaining_len(body.len(), &mut p);
    p.extend(body);
    p
}

#[tokio::test]
async fn mqtt_6_0_0_3_connect_subscribe_publish_through_mosquitto_websocket() {
    let broker = Mosquitto::start().expect("start mosquitto");
    let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 1024]);
    let mut recorder = Recorder::default();
    let mut connector = WsConnector::new(
        LoopbackTcp(broker.ws_port),
        "127.0.0.1",
        Some(broker.ws_port),
        "/mqtt",
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        StdRng::seed_from_u64(9),
    )
    .with_hooks(&mut recorder);
    timeout(Duration::from_secs(10), async {
        let mut s = connector.connect().await.expect("websocket upgrade");

        s.write_all(&connect_packet("embermq-ws-test"))
            .await
            .unwrap();
        s.flush().await.unwrap();
        assert_eq!(
            read_packet(&mut s).await,
            [0x20, 0x02, 0x00, 0x00],
            "CONNACK accepted"
        );

        // SUBSCRIBE t/ws QoS 0, packet id 1.
        s.write_all(&[
            0x82, 0x09, 0x00, 0x01, 0x00, 0x04, b't', b'/', b'w', b's', 0x00,
        ])
        .await
        .unwrap();
        assert_eq!(
            read_packet(&mut s).await,
            [0x90, 0x03, 0x00, 0x01, 0x00],
            "SUBACK"
        );

        // PUBLISH QoS 0 of 3000 bytes: spans WebSocket frames on the way back.
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut publish = vec![0x30];
        remaining_len(2 + 4 + payload.len(), &mut publish);
        publish.extend_from_slice(&[0x00, 0x04, b't', b'/', b'w', b's']);
        publish.extend_from_slice(&payload);
        s.write_all(&publish).await.unwrap();
        assert_eq!(
            read_packet(&mut s).await,
            publish,
            "own publish delivered back"
        );

        // PINGREQ / PINGRESP, then DISCONNECT.
        s.write_all(&[0xC0, 0x00]).await.unwrap();
        assert_eq!(read_packet(&mut s).await, [0xD0, 0x00]);
        s.write_all(&[0xE0, 0x00]).await.unwrap();
        s.flush().await.unwrap();
        let conn = s.connection();
        let r = conn
            .close(1000, "", tokio::time::sleep(Duration::from_secs(2)))
            .await;
        // mosquitto either answers the Close or drops the TCP connection
        // after DISCONNECT; both end cleanly.
        assert!(r.is_ok(), "{r:?}");
    })
    .await
    .expect("no hang");
    assert_eq!(recorder.connected_with.as_deref(), Some("mqtt"));
    assert!(
        recorder.response_fields >= 3,
        "Upgrade, Connection, Accept seen"
    );
}

#[tokio::test]
async fn mosquitto_plain_tcp_listener_accepts() {
    let broker = Mosquitto::start().expect("start mosquitto");
    let mut tcp = LoopbackTcp(broker.tcp_port).connect().await.unwrap();
    tcp.write_all(&connect_packet("embermq-tcp-test"))
        .await
        .unwrap();
    let got = timeout(Duration::from_secs(5), read_packet(&mut tcp))
        .await
        .unwrap();
    assert_eq!(got, [0x20, 0x02, 0x00, 0x00]);
    assert!(broker.pid() > 0);
}

/// Signs a fresh target on every connect, like an AWS IoT presigned URL.
struct Presigner {
    signed: u32,
    target: String,
}

impl HandshakeHooks for Presigner {
    fn request_target(&mut self) -> Option<&str> {
        self.signed += 1;
        self.target = format!("/mqtt?X-Amz-Signature=sig{}", self.signed);
        Some(&self.target)
    }
}

/// Issue 17 (finding 5): the request target is taken afresh from the hook
/// on every connect, so a presigned URL that expires can be signed again.
/// The peer records each request line (a plain listener: what matters is
/// what we sent), then a real mosquitto accepts the signed target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7230_5_3_1_request_target_is_signed_afresh_on_every_connect() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let recorder = tokio::spawn(async move {
        let mut lines = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 512];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&b[..n]);
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            lines.push(text.lines().next().unwrap_or_default().to_owned());
        }
        lines
    });
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let mut connector = WsConnector::new(
        LoopbackTcp(port),
        "127.0.0.1",
        Some(port),
        "/mqtt",
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        StdRng::seed_from_u64(5),
    )
    .with_hooks(Presigner {
        signed: 0,
        target: String::new(),
    });
    for _ in 0..2 {
        // The recorder closes without answering: the upgrade fails.
        assert!(connector.connect().await.is_err());
    }
    let lines = timeout(Duration::from_secs(10), recorder)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        lines,
        [
            "GET /mqtt?X-Amz-Signature=sig1 HTTP/1.1",
            "GET /mqtt?X-Amz-Signature=sig2 HTTP/1.1"
        ]
    );

    // mosquitto's websocket listener accepts the signed target.
    let broker = Mosquitto::start().unwrap();
    let (mut rx2, mut tx2) = ([0u8; 1024], [0u8; 1024]);
    let mut connector = WsConnector::new(
        LoopbackTcp(broker.ws_port),
        "127.0.0.1",
        Some(broker.ws_port),
        "/mqtt",
        Buffers {
            rx: &mut rx2,
            tx: &mut tx2,
        },
        StdRng::seed_from_u64(6),
    )
    .with_hooks(Presigner {
        signed: 0,
        target: String::new(),
    });
    assert!(connector.connect().await.is_ok());
}
