//! `WsStream::close` against Python `websockets` 10.4 (Debian's
//! `/usr/bin/python3`), a strict server that records what it received: the
//! client that ends its MQTT session closes with 1000 and waits for the
//! echo (RFC 6455 §7.1.1), and the server sees a clean close with that
//! code, not 1006.

use core::time::Duration;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{Read as _, Write as _};
use embermq_ws::{Buffers, Config, Request, WsConnection, WsStream};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Echoes data; after each connection prints `closed <code> <reason>` with
/// the Close the client sent.
const SERVER: &str = r#"
import asyncio, sys
import websockets

async def handler(ws):
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    print("closed", ws.close_code, ws.close_reason or "-", flush=True)

async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, subprotocols=["mqtt"]) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// The server process; killed on drop.
struct Server {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", SERVER])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let out = child.stdout.take().unwrap();
        let (sent, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if sent.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = Server {
            child,
            port: 0,
            lines,
        };
        server.port = server.line().parse().expect("the server reports its port");
        server
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(15))
            .expect("a line from the python server")
    }
}

#[tokio::test]
async fn rfc6455_7_1_1_stream_close_sends_1000_and_python_records_it() {
    let server = Server::start();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 256]);
    let req = Request::mqtt("127.0.0.1", Some(server.port), "/mqtt");
    let (conn, _) = WsConnection::connect(
        FromTokio::new(tcp),
        &req,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        StdRng::seed_from_u64(11),
        Config {
            mqtt: true,
            ..Config::default()
        },
        &mut (),
    )
    .await
    .unwrap();
    let mut stream = WsStream::new(conn);
    tokio::time::timeout(Duration::from_secs(10), async {
        // A DISCONNECT-like packet, echoed: data still in flight is
        // discarded by close.
        stream.write_all(&[0xE0, 0x00]).await.unwrap();
        stream.flush().await.unwrap();
        stream.close(1000, "").await.unwrap();
    })
    .await
    .expect("the echo arrived");
    assert!(stream.connection().is_closed());
    let mut buf = [0u8; 4];
    assert_eq!(
        stream.read(&mut buf).await.unwrap(),
        0,
        "end of stream after close"
    );
    // The server ends the handler once the TCP connection is closed too.
    drop(stream);
    assert_eq!(server.line(), "closed 1000 -");
}

/// Dropped part-way (the caller's timer fired before the echo, here at
/// once), `close` resumes when called again.
#[tokio::test]
async fn rfc6455_7_1_1_stream_close_resumes_after_being_dropped() {
    let server = Server::start();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 256]);
    let req = Request::mqtt("127.0.0.1", Some(server.port), "/mqtt");
    let (conn, _) = WsConnection::connect(
        FromTokio::new(tcp),
        &req,
        Buffers {
            rx: &mut rx,
            tx: &mut tx,
        },
        StdRng::seed_from_u64(12),
        Config::default(),
        &mut (),
    )
    .await
    .unwrap();
    let mut stream = WsStream::new(conn);
    for _ in 0..3 {
        let cut = tokio::time::timeout(Duration::ZERO, stream.close(1000, "bye")).await;
        assert!(cut.is_err() || cut.unwrap().is_ok());
    }
    tokio::time::timeout(Duration::from_secs(10), stream.close(1000, "bye"))
        .await
        .expect("the echo arrived")
        .unwrap();
    drop(stream);
    assert_eq!(server.line(), "closed 1000 bye");
}
