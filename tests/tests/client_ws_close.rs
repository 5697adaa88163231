//! The client ends a WebSocket link with the closing handshake (issue 11,
//! item 9; RFC 6455 §7.1.1): after its DISCONNECT it sends Close 1000 and
//! waits briefly for the echo, so the server does not log 1006 (abnormal
//! closure).
//!
//! The peer is Python `websockets` (an independent implementation) as a
//! bridge: a WebSocket server (subprotocol `mqtt`) that pipes the MQTT
//! bytes to mosquitto's TCP listener and prints the close code the client
//! sent when the WebSocket ends. mosquitto is the broker; the bridge never
//! starts the close itself, so the code it prints is the client's.

mod support;
use support::*;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use core::time::Duration;

use embermq::session::{ProtocolChoice, SessionConfig};
use embermq_tests::peers::{Mosquitto, SYSTEM_PYTHON};

const BRIDGE: &str = r#"
import asyncio, sys
import websockets

BROKER = int(sys.argv[1])

async def handler(ws, path=None):
    reader, writer = await asyncio.open_connection("127.0.0.1", BROKER)

    async def down():
        while True:
            data = await reader.read(65536)
            if not data:
                return
            await ws.send(data)

    pump = asyncio.ensure_future(down())
    try:
        async for message in ws:
            writer.write(message)
            await writer.drain()
    except websockets.ConnectionClosed:
        pass
    finally:
        pump.cancel()
        writer.close()
    print(f"close {ws.close_code}", flush=True)

async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, subprotocols=["mqtt"]) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// The bridge process and the lines it prints (its port first).
struct Bridge {
    child: std::process::Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Bridge {
    fn start(broker_port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("embermq-ws-close-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("bridge.py");
        std::fs::write(&script, BRIDGE).unwrap();
        let mut child = Command::new(SYSTEM_PYTHON)
            .arg(&script)
            .arg(broker_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let port = lines
            .recv_timeout(Duration::from_secs(15))
            .expect("the bridge reports its port")
            .trim()
            .parse()
            .expect("a port number");
        Self { child, port, lines }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6455_7_1_1_stop_closes_the_websocket_with_1000_after_disconnect() {
    let broker = Mosquitto::start().unwrap();
    let bridge = Bridge::start(broker.tcp_port);
    let mut cfg = SessionConfig::new(leak_str(format!("ws-close-{}", std::process::id())));
    cfg.protocol = ProtocolChoice::V5;
    let st = state(cfg, 4096);
    let (driver, mut events) = spawn_driver!(st, ws(bridge.port, SMALL));
    within(20, async {
        connected(&mut events).await;
        stop(st.client(), driver).await;
    })
    .await;
    let line = bridge
        .lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the bridge saw the WebSocket end");
    assert_eq!(line, "close 1000", "the server must see a normal closure");
}
