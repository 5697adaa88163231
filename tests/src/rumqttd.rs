//! rumqttd 0.20 (the broker of the rumqtt project) embedded in the test
//! process as a third real broker beside mosquitto and aedes, configured in
//! code (no config file) with three listeners on free loopback ports:
//!
//! - MQTT 3.1.1 over TCP (`v4` server),
//! - MQTT 5.0 over TCP (`v5` server),
//! - MQTT 3.1.1 over WebSocket (`ws` server, subprotocol `mqtt`, any path).
//!
//! What rumqttd 0.20 offers and what it does not, as read in its source
//! (`server/broker.rs`) and seen in the tests:
//!
//! - Each listener speaks one protocol version, fixed by the server kind. Its
//!   WebSocket server is always 3.1.1 (`Server::new(config, .., V4)`, with a
//!   "TODO: Add support for V5 protocol with websockets"), so MQTT 5.0 is
//!   tested over TCP only.
//! - It cannot be stopped. `Broker::start` spawns one thread per listener,
//!   each with its own current-thread tokio runtime, then joins them, and a
//!   listener's accept loop never ends; there is no shutdown handle. So
//!   [`Rumqttd::start`] runs it on a detached thread and the broker lives
//!   until the test process exits. Each test starts its own broker (its own
//!   ports, its own router), so tests never share state, and a test binary
//!   is one process, so nothing outlives the run.
//! - It binds the configured address itself and does not report the port
//!   it got, so the ports are picked with [`free_port`] first. Another
//!   process may take a port in between; then the listener thread logs a
//!   bind error and ends, the port never accepts, and `start` tries again
//!   with fresh ports (the failed broker's other threads stay idle).
//! - Because it runs in-process, its CPU time counts as the test process's:
//!   the client benchmark therefore uses brokers in other processes.
//!
//! Not here: TLS listeners, authentication, the console and metrics
//! endpoints, clustering.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::HashMap;
use std::io;
use std::net::TcpStream;
use std::time::Instant;

use ::rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::peers::free_port;

/// The largest packet the broker accepts from a client, in bytes: room for
/// a 1 MiB payload with its headers.
pub const MAX_PACKET: usize = 2 << 20;

/// An in-process rumqttd broker with a 3.1.1 TCP, a 5.0 TCP and a 3.1.1
/// WebSocket listener on loopback. It runs until the process exits (see the
/// module documentation: rumqttd 0.20 has no way to stop it).
#[derive(Debug, Clone, Copy)]
pub struct Rumqttd {
    /// MQTT 3.1.1 over TCP.
    pub v4_port: u16,
    /// MQTT 5.0 over TCP.
    pub v5_port: u16,
    /// MQTT 3.1.1 over WebSocket (any path, subprotocol `mqtt`).
    pub ws_port: u16,
}

impl Rumqttd {
    /// Starts a broker on three free loopback ports and waits until every
    /// listener accepts connections; tries fresh ports up to three times if
    /// a port was taken meanwhile.
    pub fn start() -> io::Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            let broker = Self {
                v4_port: free_port()?,
                v5_port: free_port()?,
                ws_port: free_port()?,
            };
            let config = broker.config();
            std::thread::Builder::new()
                .name(format!("rumqttd-{}", broker.v4_port))
                .spawn(move || {
                    // Returns only when every listener thread ended, which
                    // happens only when they all failed to bind.
                    if let Err(e) = Broker::new(config).start() {
                        eprintln!("rumqttd: {e}");
                    }
                })?;
            match wait_accepting(
                &[broker.v4_port, broker.v5_port, broker.ws_port],
                Duration::from_secs(10),
            ) {
                Ok(()) => return Ok(broker),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("rumqttd did not start")))
    }

    /// The configuration: one server of each kind, limits that take a
    /// 1 MiB payload and a stream of thousands of messages.
    fn config(&self) -> Config {
        let connections = || ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PACKET,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        let server = |name: &str, port: u16| {
            HashMap::from([(
                "1".to_owned(),
                ServerSettings {
                    name: name.to_owned(),
                    listen: SocketAddr::from(([127, 0, 0, 1], port)),
                    tls: None,
                    next_connection_delay_ms: 1,
                    connections: connections(),
                },
            )])
        };
        Config {
            id: 0,
            router: RouterConfig {
                max_connections: 1000,
                // Packets the router hands a connection per wake-up.
                max_outgoing_packet_count: 200,
                // The in-memory commit log per topic: 4 segments of 8 MiB,
                // far beyond what one test publishes on a topic.
                max_segment_size: 8 << 20,
                max_segment_count: 4,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(server("v4", self.v4_port)),
            v5: Some(server("v5", self.v5_port)),
            ws: Some(server("ws", self.ws_port)),
            ..Config::default()
        }
    }
}

/// Waits until every port accepts a TCP connection, or `limit` passes.
fn wait_accepting(ports: &[u16], limit: Duration) -> io::Result<()> {
    let start = Instant::now();
    for &port in ports {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if start.elapsed() > limit {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("rumqttd not accepting on port {port}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
