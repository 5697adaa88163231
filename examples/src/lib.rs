//! What the examples in `src/bin/` share: reading a `--broker` URL
//! (`mqtt://host:port` or `ws://host:port/path`) into a connector, and the
//! default broker, the one `embermq demo --port 9001` starts, and running
//! the client's driver beside an example's own work ([`drive`]).
//!
//! | example | shows |
//! |---|---|
//! | `telemetry-publisher` | JSON readings (the sdk's `telemetry` model) at QoS 1, awaiting each completion |
//! | `command-responder` | MQTT 5 request/response: a device answers commands on the Response Topic with the Correlation Data; `--ask` is the caller's side |
//! | `counting-transport` | a user-written `Connector`: wraps any transport and counts the bytes on the wire (MQTT alone vs MQTT over WebSocket) |
//! | `durable-outbox` | `Client::publish_json` through an outbox backed by `FileStore`: readings persisted while the broker is away survive `kill -9` and go out on the next start |
//!
//! Run one with `cargo run -p embermq-examples --bin <name> -- --broker <URL>`.
//! TLS (`mqtts://`, `wss://`) is left out here to keep the examples short:
//! wrap the TCP connector in `embermq::transport::RustlsConnector` (see
//! docs/cloud.md) or use the `embermq` CLI, which does both.

use core::fmt;

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embermq::transport::WsConnector;
use embermq::transport::{Connector, TokioTcpConnector, TokioTcpError, TokioTcpStream};
use embermq_ws::{Buffers, ClientRole, WsStream};
use rand::rngs::StdRng;

/// The broker the examples use without `--broker`: the WebSocket listener
/// of `embermq demo --port 9001`.
pub const DEFAULT_BROKER: &str = "ws://127.0.0.1:9001/mqtt";

/// A parsed `--broker` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `Some(path)` for `ws://`, `None` for `mqtt://`.
    pub ws_path: Option<String>,
}

impl Broker {
    /// Parses `mqtt://host[:port]` (1883) or `ws://host[:port][/path]` (80,
    /// `/mqtt`).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}`: expected mqtt://host:port or ws://host:port/path"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (default_port, ws_path) = match scheme {
            "mqtt" => (1883, None),
            "ws" => (
                80,
                Some(if path.is_empty() { "/mqtt" } else { path }.to_owned()),
            ),
            other => {
                return Err(format!(
                    "`{other}://` is not supported by the examples: use mqtt:// or ws:// \
                     (the embermq CLI also does mqtts:// and wss://)"
                ));
            }
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port `{p}`"))?),
            None => (authority, default_port),
        };
        if host.is_empty() {
            return Err(format!("`{url}`: no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            ws_path,
        })
    }

    /// A connector to this broker; the WebSocket one borrows `buffers`.
    pub fn connector<'b>(&'b self, buffers: &'b mut WsBuffers, rng: StdRng) -> BrokerConnector<'b> {
        let tcp = TokioTcpConnector::new(self.host.clone(), self.port);
        match &self.ws_path {
            None => BrokerConnector::Tcp(tcp),
            Some(path) => BrokerConnector::Ws(WsConnector::new(
                tcp,
                &self.host,
                Some(self.port),
                path,
                Buffers {
                    rx: &mut buffers.rx,
                    tx: &mut buffers.tx,
                },
                rng,
            )),
        }
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ws_path {
            Some(path) => write!(f, "ws://{}:{}{path}", self.host, self.port),
            None => write!(f, "mqtt://{}:{}", self.host, self.port),
        }
    }
}

/// The WebSocket connector's buffers (handshake and frames), 8 KiB each.
#[derive(Debug)]
pub struct WsBuffers {
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl Default for WsBuffers {
    fn default() -> Self {
        Self {
            rx: vec![0; 8192],
            tx: vec![0; 8192],
        }
    }
}

/// MQTT over TCP or over WebSocket, as one connector type.
// One per client, held for its whole life: boxing the large variant
// would only add an allocation per (re)connect.
#[allow(clippy::large_enum_variant)]
pub enum BrokerConnector<'b> {
    /// `mqtt://`.
    Tcp(TokioTcpConnector),
    /// `ws://`.
    Ws(WsConnector<'b, TokioTcpConnector, StdRng>),
}

/// The transport a [`BrokerConnector`] opens.
// One per client, held for its whole life: boxing the large variant
// would only add an allocation per (re)connect.
#[allow(clippy::large_enum_variant)]
pub enum BrokerTransport<'a> {
    /// `mqtt://`.
    Tcp(TokioTcpStream),
    /// `ws://`.
    Ws(WsStream<'a, TokioTcpStream, ClientRole<&'a mut StdRng>>),
}

/// Why a [`BrokerConnector`] could not connect.
#[derive(Debug)]
pub enum BrokerError {
    /// DNS or TCP.
    Tcp(TokioTcpError),
    /// The WebSocket upgrade (e.g. `upgrade refused: HTTP 404 Not Found`).
    WebSocket(embermq::transport::WsConnectError<TokioTcpError>),
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(e) => e.fmt(f),
            Self::WebSocket(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for BrokerError {}

impl Connector for BrokerConnector<'_> {
    type Transport<'a>
        = BrokerTransport<'a>
    where
        Self: 'a;
    type Error = BrokerError;

    async fn connect(&mut self) -> Result<BrokerTransport<'_>, BrokerError> {
        match self {
            Self::Tcp(c) => c
                .connect()
                .await
                .map(BrokerTransport::Tcp)
                .map_err(BrokerError::Tcp),
            Self::Ws(c) => c
                .connect()
                .await
                .map(BrokerTransport::Ws)
                .map_err(BrokerError::WebSocket),
        }
    }
}

impl ErrorType for BrokerTransport<'_> {
    type Error = ErrorKind;
}

impl Read for BrokerTransport<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match self {
            Self::Tcp(s) => s.read(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
            Self::Ws(s) => s.read(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
        }
    }
}

impl embermq::transport::Transport for BrokerTransport<'_> {
    async fn close(&mut self) {
        match self {
            Self::Tcp(s) => embermq::transport::Transport::close(s).await,
            Self::Ws(s) => embermq::transport::Transport::close(s).await,
        }
    }
}

impl Write for BrokerTransport<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        match self {
            Self::Tcp(s) => s.write(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
            Self::Ws(s) => s.write(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
        }
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        match self {
            Self::Tcp(s) => s.flush().await.map_err(|e| embedded_io::Error::kind(&e)),
            Self::Ws(s) => s.flush().await.map_err(|e| embedded_io::Error::kind(&e)),
        }
    }
}

/// Runs the client's driver (`Connection::run`'s future) beside the
/// example's own `work` until the work is done and the driver, stopped by
/// it, has ended; or until the driver ends first. Driver failures are
/// reported with the broker they were for.
pub async fn drive<D, E, W>(broker: &Broker, driver: D, work: W) -> Result<(), String>
where
    D: core::future::Future<Output = Result<(), E>>,
    E: fmt::Display,
    W: core::future::Future<Output = Result<(), String>>,
{
    let mut driver = core::pin::pin!(driver);
    tokio::select! {
        ended = &mut driver => ended.map_err(|e| format!("{broker}: {e}")),
        done = work => {
            done?;
            driver.await.map_err(|e| format!("{broker}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mqtt_and_ws_urls_with_defaults() {
        assert_eq!(
            Broker::parse("ws://127.0.0.1:9001/mqtt").unwrap(),
            Broker {
                host: "127.0.0.1".into(),
                port: 9001,
                ws_path: Some("/mqtt".into())
            }
        );
        let b = Broker::parse("mqtt://broker").unwrap();
        assert_eq!((b.port, b.ws_path), (1883, None));
        assert_eq!(
            Broker::parse("ws://h").unwrap().to_string(),
            "ws://h:80/mqtt"
        );
        assert!(Broker::parse("wss://h").is_err());
        assert!(Broker::parse("ws://:1").is_err());
    }
}
