//! The broker `embermq demo` starts when no `--broker` is given: rumqttd
//! 0.20 in this process, with an MQTT 3.1.1 WebSocket listener (subprotocol
//! `mqtt`, any path) and an MQTT 3.1.1 TCP listener on free loopback ports,
//! so the demo needs nothing installed.
//!
//! rumqttd 0.20 facts this relies on: its WebSocket server speaks 3.1.1
//! only (the demo's clients use 3.1.1 against it); it binds the configured
//! address itself and does not report the port, so ports are picked first
//! (and picked again if another process took one meanwhile); and it cannot
//! be stopped, so it runs on a detached thread until the process exits.
//! Its logs go through `tracing`, which nothing here subscribes to.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::failure::{Exit, Failure};

/// The running embedded broker's ports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmbeddedBroker {
    /// MQTT 3.1.1 over WebSocket.
    pub(crate) ws_port: u16,
    /// MQTT 3.1.1 over TCP.
    pub(crate) tcp_port: u16,
}

impl EmbeddedBroker {
    /// Starts the broker with its WebSocket listener on `ws_port` (0, or
    /// a port already taken: any free port) and waits until both listeners
    /// accept.
    pub(crate) fn start(ws_port: u16) -> Result<Self, Failure> {
        let mut last = String::new();
        for attempt in 0..3 {
            let preferred = (attempt == 0 && ws_port != 0)
                .then(|| TcpListener::bind(("127.0.0.1", ws_port)).ok())
                .flatten()
                .map(|_| ws_port);
            let broker = Self {
                ws_port: match preferred {
                    Some(port) => port,
                    None => free_port()?,
                },
                tcp_port: free_port()?,
            };
            let config = broker.config();
            std::thread::Builder::new()
                .name("embedded-broker".into())
                .spawn(move || {
                    let _ = Broker::new(config).start();
                })
                .map_err(|e| {
                    Failure::new(Exit::Failure, format!("cannot start the broker: {e}"))
                })?;
            match wait_accepting(&[broker.ws_port, broker.tcp_port]) {
                Ok(()) => return Ok(broker),
                Err(port) => last = format!("the embedded broker is not accepting on port {port}"),
            }
        }
        Err(Failure::new(Exit::Failure, last))
    }

    fn config(&self) -> Config {
        let server = |name: &str, port: u16| {
            HashMap::from([(
                "1".to_owned(),
                ServerSettings {
                    name: name.to_owned(),
                    listen: SocketAddr::from(([127, 0, 0, 1], port)),
                    tls: None,
                    next_connection_delay_ms: 1,
                    connections: ConnectionSettings {
                        connection_timeout_ms: 10_000,
                        max_payload_size: 256 * 1024,
                        max_inflight_count: 100,
                        auth: None,
                        external_auth: None,
                        dynamic_filters: true,
                    },
                },
            )])
        };
        Config {
            id: 0,
            router: RouterConfig {
                max_connections: 10_000,
                max_outgoing_packet_count: 200,
                max_segment_size: 4 << 20,
                max_segment_count: 4,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(server("v4", self.tcp_port)),
            ws: Some(server("ws", self.ws_port)),
            ..Config::default()
        }
    }
}

fn free_port() -> Result<u16, Failure> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure::new(Exit::Failure, format!("no free port on 127.0.0.1: {e}")))
}

/// Waits up to 10 s until every port accepts; the first port that did not.
fn wait_accepting(ports: &[u16]) -> Result<(), u16> {
    let start = Instant::now();
    for &port in ports {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
