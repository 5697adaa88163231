//! From a [`BrokerUrl`] to the connector the host client runs on:
//!
//! | URL        | stack                                                      |
//! |------------|------------------------------------------------------------|
//! | `mqtt://`  | `TokioTcpConnector`                                        |
//! | `ws://`    | RFC 6455 client (subprotocol `mqtt`, extra headers) over TCP |
//! | `mqtts://` | `RustlsConnector` over TCP                                 |
//! | `wss://`   | RFC 6455 client over `RustlsConnector` over TCP            |
//!
//! [`LinkConnector`] owns everything it needs (the WebSocket buffers, the
//! host and path, the headers, the RNG for keys and masks), so it has no
//! lifetime parameter: the driver future that holds it can be spawned on
//! tokio's multi-threaded runtime. The transport is one enum
//! ([`LinkTransport`]), so every URL gives the same client type. It is
//! public for programs that run the core [`Connection`](crate::client::Connection)
//! themselves (the CLI's demo, the fleet simulator's checker) and want a
//! URL to pick the stack.
//!
//! TLS verifies the broker against the roots of the
//! [`RustlsOptions`] given (Mozilla's by default), with the URL's host as
//! SNI. Deliberately not here: retries and timeouts (the client's),
//! proxies.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embermq_ws::{
    Buffers, ClientRole, Config, HandshakeError, HandshakeHooks, HeaderWriter, Request,
    WsConnection, WsStream,
};
use rand::rngs::StdRng;
use rustls_pki_types::ServerName;

use super::url::{BrokerUrl, Scheme};
use crate::transport::{
    Connector, RustlsConfigError, RustlsConnectError, RustlsConnector, RustlsError, RustlsOptions,
    RustlsStream, TokioTcpConnector, TokioTcpError, TokioTcpStream, Transport,
};

/// Extra WebSocket upgrade headers, written into every request.
#[derive(Clone, Default)]
struct ExtraHeaders(Vec<(String, String)>);

impl fmt::Debug for ExtraHeaders {
    /// Names only: the values often carry tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, _) in &self.0 {
            list.entry(&format_args!("{name}: <redacted>"));
        }
        list.finish()
    }
}

impl HandshakeHooks for ExtraHeaders {
    fn write_headers(&mut self, out: &mut HeaderWriter<'_>) -> Result<(), HandshakeError> {
        for (name, value) in &self.0 {
            out.header(name, value)?;
        }
        Ok(())
    }
}

type TlsConnector = RustlsConnector<TokioTcpConnector>;

/// The WebSocket layer over an inner connector, owning its buffers.
struct WsLayer<C> {
    inner: C,
    rx: Vec<u8>,
    tx: Vec<u8>,
    rng: StdRng,
    host: String,
    port: Option<u16>,
    path: String,
    hooks: ExtraHeaders,
}

impl<C: Connector> WsLayer<C> {
    fn new(inner: C, url: &BrokerUrl, settings: &LinkOptions, rng: StdRng) -> Self {
        Self {
            inner,
            rx: vec![0; settings.ws_buffer_len],
            tx: vec![0; settings.ws_buffer_len],
            rng,
            host: url.host_header.clone(),
            port: url.explicit_port.then_some(url.port),
            path: url.path.clone(),
            hooks: ExtraHeaders(settings.headers.clone()),
        }
    }

    /// The handshake (subprotocol `mqtt` offered and required,
    /// MQTT-6.0.0-3/4) over a fresh inner transport.
    async fn connect(
        &mut self,
    ) -> Result<WsStream<'_, C::Transport<'_>, ClientRole<&mut StdRng>>, LinkConnectError>
    where
        LinkConnectError: From<C::Error>,
    {
        let io = self.inner.connect().await?;
        let request = Request::mqtt(&self.host, self.port, &self.path);
        let config = Config {
            mqtt: true,
            ..Config::default()
        };
        let buffers = Buffers {
            rx: &mut self.rx,
            tx: &mut self.tx,
        };
        let (conn, _) = WsConnection::connect(
            io,
            &request,
            buffers,
            &mut self.rng,
            config,
            &mut self.hooks,
        )
        .await
        .map_err(|e| LinkConnectError::WebSocket(e.into_kind()))?;
        Ok(WsStream::new(conn))
    }
}

enum Kind {
    Tcp(TokioTcpConnector),
    Tls(TlsConnector),
    Ws(Box<WsLayer<TokioTcpConnector>>),
    Wss(Box<WsLayer<TlsConnector>>),
}

/// The [`Connector`] for one broker URL (see the module table).
pub struct LinkConnector {
    kind: Kind,
}

/// What a [`LinkConnector`] is built from besides the URL.
#[derive(Clone)]
pub struct LinkOptions {
    /// The rustls configuration for `mqtts://` and `wss://` (built from
    /// [`RustlsOptions`]); `None`: Mozilla's roots, no client certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Extra WebSocket upgrade request headers, in order.
    pub headers: Vec<(String, String)>,
    /// WebSocket buffer bytes per direction (the stream view carries
    /// larger messages through them).
    pub ws_buffer_len: usize,
}

impl fmt::Debug for LinkOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkOptions")
            .field("tls", &self.tls.is_some())
            .field("headers", &ExtraHeaders(self.headers.clone()))
            .field("ws_buffer_len", &self.ws_buffer_len)
            .finish()
    }
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            tls: None,
            headers: Vec::new(),
            ws_buffer_len: super::options::WS_BUFFER_LEN,
        }
    }
}

impl LinkConnector {
    /// The connector stack for `url` (see the module table); `rng` makes
    /// the WebSocket keys and masks.
    pub fn new(url: &BrokerUrl, settings: &LinkOptions, rng: StdRng) -> Result<Self, SetupError> {
        let tcp = TokioTcpConnector::new(url.host.clone(), url.port);
        let tls = |tcp| -> Result<TlsConnector, SetupError> {
            let name = ServerName::try_from(url.host.clone()).map_err(|_| {
                SetupError::Tls(RustlsConfigError::InvalidServerName {
                    name: url.host.clone(),
                })
            })?;
            let config = match &settings.tls {
                Some(config) => config.clone(),
                None => RustlsOptions::new()
                    .client_config()
                    .map_err(SetupError::Tls)?,
            };
            Ok(RustlsConnector::from_config(tcp, name, config))
        };
        let kind = match url.scheme {
            Scheme::Mqtt => Kind::Tcp(tcp),
            Scheme::Mqtts => Kind::Tls(tls(tcp)?),
            Scheme::Ws => Kind::Ws(Box::new(WsLayer::new(tcp, url, settings, rng))),
            Scheme::Wss => Kind::Wss(Box::new(WsLayer::new(tls(tcp)?, url, settings, rng))),
        };
        Ok(Self { kind })
    }
}

impl Connector for LinkConnector {
    type Transport<'a>
        = LinkTransport<'a>
    where
        Self: 'a;
    type Error = LinkConnectError;

    async fn connect(&mut self) -> Result<LinkTransport<'_>, LinkConnectError> {
        match &mut self.kind {
            Kind::Tcp(c) => Ok(LinkTransport::Tcp(c.connect().await?)),
            Kind::Tls(c) => Ok(LinkTransport::Tls(c.connect().await?)),
            Kind::Ws(c) => Ok(LinkTransport::Ws(c.connect().await?)),
            Kind::Wss(c) => Ok(LinkTransport::Wss(c.connect().await?)),
        }
    }
}

/// The byte stream to the broker, whatever the URL.
// One per link: boxing the large variant would only add an allocation per
// (re)connect.
#[allow(clippy::large_enum_variant)]
pub enum LinkTransport<'a> {
    /// `mqtt://`.
    Tcp(TokioTcpStream),
    /// `mqtts://`.
    Tls(RustlsStream<TokioTcpStream>),
    /// `ws://`.
    Ws(WsStream<'a, TokioTcpStream, ClientRole<&'a mut StdRng>>),
    /// `wss://`.
    Wss(WsStream<'a, RustlsStream<TokioTcpStream>, ClientRole<&'a mut StdRng>>),
}

/// Runs `$body` on the stream inside any variant, as `$s`.
macro_rules! each {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            LinkTransport::Tcp($s) => $body,
            LinkTransport::Tls($s) => $body,
            LinkTransport::Ws($s) => $body,
            LinkTransport::Wss($s) => $body,
        }
    };
}

impl ErrorType for LinkTransport<'_> {
    type Error = ErrorKind;
}

impl Read for LinkTransport<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        each!(self, s => s.read(buf).await.map_err(|e| embedded_io_async::Error::kind(&e)))
    }
}

impl Write for LinkTransport<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        each!(self, s => s.write(buf).await.map_err(|e| embedded_io_async::Error::kind(&e)))
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        each!(self, s => s.flush().await.map_err(|e| embedded_io_async::Error::kind(&e)))
    }
}

impl Transport for LinkTransport<'_> {
    async fn close(&mut self) {
        each!(self, s => Transport::close(s).await)
    }
}

/// Why a connect attempt failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkConnectError {
    /// DNS or TCP (refused, unreachable, ...).
    Tcp(TokioTcpError),
    /// The TLS handshake failed (verification, the server's alert, ...).
    Tls(RustlsError),
    /// The WebSocket upgrade failed (an HTTP status other than 101, a bad
    /// `Sec-WebSocket-Accept`, no `mqtt` subprotocol, ...).
    WebSocket(embermq_ws::Error<ErrorKind>),
}

impl From<TokioTcpError> for LinkConnectError {
    fn from(e: TokioTcpError) -> Self {
        Self::Tcp(e)
    }
}

impl From<RustlsConnectError<TokioTcpError>> for LinkConnectError {
    fn from(e: RustlsConnectError<TokioTcpError>) -> Self {
        match e {
            RustlsConnectError::Inner(e) => Self::Tcp(e),
            RustlsConnectError::Tls(e) => Self::Tls(e),
        }
    }
}

impl fmt::Display for LinkConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(e) => e.fmt(f),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::WebSocket(e) => write!(f, "WebSocket: {e}"),
        }
    }
}

impl core::error::Error for LinkConnectError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Tcp(e) => Some(e),
            Self::Tls(e) => Some(e),
            Self::WebSocket(e) => Some(e),
        }
    }
}

/// Why no connector could be built for a URL.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// The TLS settings are unusable (unreadable or malformed PEM file, a
    /// host that is no valid server name, ...).
    Tls(RustlsConfigError),
    /// TLS settings were given for a URL without TLS.
    TlsOptionsWithoutTls,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tls(e) => write!(f, "TLS settings: {e}"),
            Self::TlsOptionsWithoutTls => {
                f.write_str("TLS settings need an mqtts:// or wss:// URL")
            }
        }
    }
}

impl core::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Tls(e) => Some(e),
            Self::TlsOptionsWithoutTls => None,
        }
    }
}
