//! From a [`BrokerUrl`] to the connector stack the client runs on, shared by
//! `pub`, `sub`, `demo` and `sim`:
//!
//! | URL        | stack                                                    |
//! |------------|----------------------------------------------------------|
//! | `mqtt://`  | `TokioTcpConnector`                                      |
//! | `ws://`    | `WsConnector` (subprotocol `mqtt`, extra headers) over TCP |
//! | `mqtts://` | `RustlsConnector` over TCP                               |
//! | `wss://`   | `WsConnector` over `RustlsConnector` over TCP            |
//!
//! Usage (one connector per client; the buffers outlive it):
//!
//! ```ignore
//! let url: BrokerUrl = "ws://127.0.0.1:9001/mqtt".parse()?;
//! let options = TransportOptions::default();
//! let mut buffers = LinkBuffers::new(options.ws_buffer_len);
//! let connector = BrokerConnector::new(&url, &options, &mut buffers, StdRng::from_entropy())?;
//! Connection::new(state, connector, TokioClock::new(), rng, rx, tx, config).run(handler)
//! ```
//!
//! The transport is one enum ([`BrokerTransport`]) so that every URL gives
//! the same client type. TLS verifies the broker against Mozilla's roots
//! (`webpki-roots`, the same on every machine) or only the `--cafile`
//! CAs, with the URL's host as SNI; `--cert`/`--key` add a client
//! certificate; `--insecure` turns verification off (the CLI warns). The
//! rustls configuration is built once per [`TransportOptions`] and shared
//! by every connector made from it (a fleet parses its CA once).
//! Deliberately not here: retries and timeouts (the client's), proxies,
//! ALPN.

use alloc::sync::Arc;
use core::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use embedded_io::ErrorKind;
use embedded_io_async::{ErrorType, Read, Write};
use embermq::transport::{
    Connector, RustlsConfigError, RustlsConnectError, RustlsConnector, RustlsError, RustlsOptions,
    RustlsStream, TokioTcpConnector, TokioTcpError, TokioTcpStream, WsConnector,
};
use embermq_ws::{Buffers, ClientRole, HandshakeError, HandshakeHooks, HeaderWriter, WsStream};
use rand::rngs::StdRng;
use rustls::pki_types::ServerName;

use crate::broker_url::{BrokerUrl, Scheme};

/// WebSocket buffer size per direction when nothing else is asked: a
/// handshake response and the largest frame header fit easily.
pub(crate) const DEFAULT_WS_BUFFER_LEN: usize = 8 * 1024;

/// Header names as given, values as `<redacted>` (they often carry tokens).
pub(crate) struct RedactedHeaders<'h>(pub(crate) &'h [(String, String)]);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, _) in self.0 {
            list.entry(&format_args!("{name}: <redacted>"));
        }
        list.finish()
    }
}

/// TLS settings from the command line (used once TLS is available).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// PEM file with the CA certificate(s) to trust instead of the system's.
    pub(crate) cafile: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS).
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub(crate) key: Option<PathBuf>,
    /// Skip server certificate verification (CLI only; warned about).
    pub(crate) insecure: bool,
}

impl TlsOptions {
    /// Whether any TLS option was given.
    pub(crate) fn any(&self) -> bool {
        self.cafile.is_some() || self.cert.is_some() || self.key.is_some() || self.insecure
    }

    /// The rustls client configuration these options describe.
    fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, RustlsConfigError> {
        let mut options = match &self.cafile {
            Some(path) => RustlsOptions::ca_file(path)?,
            None => RustlsOptions::new(),
        };
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            options = options.client_auth_files(cert, key)?;
        }
        if self.insecure {
            options = options.danger_accept_invalid_certs();
        }
        options.client_config()
    }
}

/// Everything besides the URL that shapes the transport. `Debug` shows the
/// header names, never their values.
#[derive(Clone)]
pub(crate) struct TransportOptions {
    /// Extra WebSocket upgrade request headers, in order.
    pub(crate) headers: Vec<(String, String)>,
    /// TLS settings for `mqtts://` and `wss://`.
    pub(crate) tls: TlsOptions,
    /// WebSocket buffer size per direction ([`LinkBuffers::new`]).
    pub(crate) ws_buffer_len: usize,
    /// The rustls configuration, built from `tls` on first use.
    tls_config: OnceLock<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for TransportOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportOptions")
            .field("headers", &RedactedHeaders(&self.headers))
            .field("tls", &self.tls)
            .field("ws_buffer_len", &self.ws_buffer_len)
            .finish_non_exhaustive()
    }
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            tls: TlsOptions::default(),
            ws_buffer_len: DEFAULT_WS_BUFFER_LEN,
            tls_config: OnceLock::new(),
        }
    }
}

impl TransportOptions {
    /// Options with these headers and TLS settings.
    pub(crate) fn new(headers: Vec<(String, String)>, tls: TlsOptions) -> Self {
        Self {
            headers,
            tls,
            ..Self::default()
        }
    }

    /// The shared rustls configuration (built once).
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, SetupError> {
        if let Some(config) = self.tls_config.get() {
            return Ok(config.clone());
        }
        let config = self.tls.client_config().map_err(SetupError::Tls)?;
        Ok(self.tls_config.get_or_init(|| config).clone())
    }
}

/// The buffers a WebSocket connector borrows (unused for `mqtt://`). Keep
/// them alive as long as the [`BrokerConnector`].
#[derive(Debug)]
pub(crate) struct LinkBuffers {
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl LinkBuffers {
    /// Two zeroed buffers of `len` bytes.
    pub(crate) fn new(len: usize) -> Self {
        Self {
            rx: vec![0; len],
            tx: vec![0; len],
        }
    }
}

/// Writes the `--header` lines into every upgrade request.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExtraHeaders(Vec<(String, String)>);

impl HandshakeHooks for ExtraHeaders {
    fn write_headers(&mut self, out: &mut HeaderWriter<'_>) -> Result<(), HandshakeError> {
        for (name, value) in &self.0 {
            out.header(name, value)?;
        }
        Ok(())
    }
}

type TlsConnector = RustlsConnector<TokioTcpConnector>;

// One per client, held for its whole life: boxing the large variant
// would only add an allocation per (re)connect.
#[allow(clippy::large_enum_variant)]
enum Kind<'b> {
    Tcp(TokioTcpConnector),
    Tls(TlsConnector),
    Ws(WsConnector<'b, TokioTcpConnector, StdRng, ExtraHeaders>),
    Wss(WsConnector<'b, TlsConnector, StdRng, ExtraHeaders>),
}

/// The connector for one broker URL; implements
/// [`Connector`] with [`BrokerTransport`] and [`BrokerConnectError`].
pub(crate) struct BrokerConnector<'b> {
    kind: Kind<'b>,
}

impl<'b> BrokerConnector<'b> {
    /// The connector stack for `url` (see the module table). `buffers` are
    /// the WebSocket buffers; `rng` makes the WebSocket keys and masks.
    pub(crate) fn new(
        url: &'b BrokerUrl,
        options: &TransportOptions,
        buffers: &'b mut LinkBuffers,
        rng: StdRng,
    ) -> Result<Self, SetupError> {
        if options.tls.any() && !url.scheme.is_tls() {
            return Err(SetupError::TlsOptionsWithoutTls);
        }
        let tcp = TokioTcpConnector::new(url.host.clone(), url.port);
        let tls = |tcp| -> Result<TlsConnector, SetupError> {
            let name = ServerName::try_from(url.host.clone()).map_err(|_| {
                SetupError::Tls(RustlsConfigError::InvalidServerName {
                    name: url.host.clone(),
                })
            })?;
            Ok(RustlsConnector::from_config(
                tcp,
                name,
                options.tls_config()?,
            ))
        };
        let host_port = url.explicit_port.then_some(url.port);
        let buffers = Buffers {
            rx: &mut buffers.rx,
            tx: &mut buffers.tx,
        };
        let hooks = ExtraHeaders(options.headers.clone());
        let kind = match url.scheme {
            Scheme::Mqtt => Kind::Tcp(tcp),
            Scheme::Mqtts => Kind::Tls(tls(tcp)?),
            Scheme::Ws => Kind::Ws(
                WsConnector::new(tcp, &url.host_header, host_port, &url.path, buffers, rng)
                    .with_hooks(hooks),
            ),
            Scheme::Wss => Kind::Wss(
                WsConnector::new(
                    tls(tcp)?,
                    &url.host_header,
                    host_port,
                    &url.path,
                    buffers,
                    rng,
                )
                .with_hooks(hooks),
            ),
        };
        Ok(Self { kind })
    }
}

impl Connector for BrokerConnector<'_> {
    type Transport<'a>
        = BrokerTransport<'a>
    where
        Self: 'a;
    type Error = BrokerConnectError;

    async fn connect(&mut self) -> Result<BrokerTransport<'_>, BrokerConnectError> {
        use embermq::transport::WsConnectError as Ws;
        match &mut self.kind {
            Kind::Tcp(c) => c
                .connect()
                .await
                .map(BrokerTransport::Tcp)
                .map_err(BrokerConnectError::Tcp),
            Kind::Tls(c) => c
                .connect()
                .await
                .map(BrokerTransport::Tls)
                .map_err(BrokerConnectError::from_tls),
            Kind::Ws(c) => match c.connect().await {
                Ok(stream) => Ok(BrokerTransport::Ws(stream)),
                Err(Ws::Inner(e)) => Err(BrokerConnectError::Tcp(e)),
                Err(Ws::WebSocket(e)) => Err(BrokerConnectError::WebSocket(e)),
                Err(_) => Err(BrokerConnectError::WebSocket(
                    embermq_ws::Error::NotConnected,
                )),
            },
            Kind::Wss(c) => match c.connect().await {
                Ok(stream) => Ok(BrokerTransport::Wss(stream)),
                Err(Ws::Inner(e)) => Err(BrokerConnectError::from_tls(e)),
                Err(Ws::WebSocket(e)) => Err(BrokerConnectError::WebSocket(e)),
                Err(_) => Err(BrokerConnectError::WebSocket(
                    embermq_ws::Error::NotConnected,
                )),
            },
        }
    }
}

/// The byte stream to the broker, whatever the URL.
// One per client, held for its whole life: boxing the large variant
// would only add an allocation per (re)connect.
#[allow(clippy::large_enum_variant)]
pub(crate) enum BrokerTransport<'a> {
    /// `mqtt://`.
    Tcp(TokioTcpStream),
    /// `mqtts://`.
    Tls(RustlsStream<TokioTcpStream>),
    /// `ws://`.
    Ws(WsStream<'a, TokioTcpStream, ClientRole<&'a mut StdRng>>),
    /// `wss://`.
    Wss(WsStream<'a, RustlsStream<TokioTcpStream>, ClientRole<&'a mut StdRng>>),
}

impl ErrorType for BrokerTransport<'_> {
    type Error = ErrorKind;
}

impl Read for BrokerTransport<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match self {
            BrokerTransport::Tcp(s) => s.read(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
            BrokerTransport::Tls(s) => s.read(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
            BrokerTransport::Ws(s) => s.read(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
            BrokerTransport::Wss(s) => s.read(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
        }
    }
}

impl embermq::transport::Transport for BrokerTransport<'_> {
    async fn close(&mut self) {
        match self {
            Self::Tcp(s) => embermq::transport::Transport::close(s).await,
            Self::Tls(s) => embermq::transport::Transport::close(s).await,
            Self::Ws(s) => embermq::transport::Transport::close(s).await,
            Self::Wss(s) => embermq::transport::Transport::close(s).await,
        }
    }
}

impl Write for BrokerTransport<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        match self {
            BrokerTransport::Tcp(s) => s.write(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
            BrokerTransport::Tls(s) => s.write(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
            BrokerTransport::Ws(s) => s.write(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
            BrokerTransport::Wss(s) => s.write(buf).await.map_err(|e| embedded_io::Error::kind(&e)),
        }
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        match self {
            BrokerTransport::Tcp(s) => s.flush().await.map_err(|e| embedded_io::Error::kind(&e)),
            BrokerTransport::Tls(s) => s.flush().await.map_err(|e| embedded_io::Error::kind(&e)),
            BrokerTransport::Ws(s) => s.flush().await.map_err(|e| embedded_io::Error::kind(&e)),
            BrokerTransport::Wss(s) => s.flush().await.map_err(|e| embedded_io::Error::kind(&e)),
        }
    }
}

/// Why a connect attempt failed.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum BrokerConnectError {
    /// DNS or TCP (refused, unreachable, ...).
    Tcp(TokioTcpError),
    /// The TLS handshake failed (verification, the server's alert, ...).
    Tls(RustlsError),
    /// The WebSocket upgrade failed (an HTTP status other than 101, a bad
    /// `Sec-WebSocket-Accept`, no `mqtt` subprotocol, ...).
    WebSocket(embermq_ws::Error<ErrorKind>),
}

impl BrokerConnectError {
    fn from_tls(e: RustlsConnectError<TokioTcpError>) -> Self {
        match e {
            RustlsConnectError::Inner(e) => Self::Tcp(e),
            RustlsConnectError::Tls(e) => Self::Tls(e),
            _ => Self::Tls(RustlsError::Closed),
        }
    }
}

impl fmt::Display for BrokerConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerConnectError::Tcp(e) => e.fmt(f),
            BrokerConnectError::Tls(e) => e.fmt(f),
            BrokerConnectError::WebSocket(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for BrokerConnectError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            BrokerConnectError::Tcp(e) => Some(e),
            BrokerConnectError::Tls(e) => Some(e),
            BrokerConnectError::WebSocket(e) => Some(e),
        }
    }
}

/// Why no connector could be built for a URL.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum SetupError {
    /// The TLS settings are unusable (unreadable or malformed PEM file, a
    /// host that is no valid server name, ...).
    Tls(RustlsConfigError),
    /// `--cafile`, `--cert`, `--key` or `--insecure` on a URL without TLS.
    TlsOptionsWithoutTls,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Tls(e) => write!(f, "TLS settings: {e}"),
            SetupError::TlsOptionsWithoutTls => {
                f.write_str("--cafile, --cert, --key and --insecure need an mqtts:// or wss:// URL")
            }
        }
    }
}

impl core::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SetupError::Tls(e) => Some(e),
            SetupError::TlsOptionsWithoutTls => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn unreadable_cafile_is_a_setup_error_naming_the_file() {
        let url: BrokerUrl = "wss://broker.example".parse().unwrap();
        let mut buffers = LinkBuffers::new(1024);
        let tls = TlsOptions {
            cafile: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let options = TransportOptions::new(Vec::new(), tls);
        let err = BrokerConnector::new(&url, &options, &mut buffers, StdRng::seed_from_u64(1))
            .err()
            .unwrap();
        assert!(matches!(err, SetupError::Tls(_)), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn tls_options_on_a_plain_url_are_a_setup_error() {
        let url: BrokerUrl = "mqtt://broker.example".parse().unwrap();
        let mut buffers = LinkBuffers::new(1024);
        let mut options = TransportOptions::default();
        options.tls.insecure = true;
        let err = BrokerConnector::new(&url, &options, &mut buffers, StdRng::seed_from_u64(1))
            .err()
            .unwrap();
        assert!(matches!(err, SetupError::TlsOptionsWithoutTls), "{err:?}");
    }
}
