//! `WsConnector<C>` (feature `ws`): MQTT over WebSocket as an embermq
//! transport (MQTT §6, the seed's `CONFIG_MQTT_LIB_WEBSOCKET`), on the
//! RFC 6455 client of the `embermq-ws` crate.
//!
//! Opens the inner transport with any [`Connector`] (TCP, TLS), performs the
//! opening handshake offering subprotocol `mqtt` and requiring it
//! [MQTT-6.0.0-3, MQTT-6.0.0-4], and hands the client a [`WsStream`] in MQTT
//! mode. The buffers and the RNG are lent once and reused for every
//! reconnect. Deliberately not here: connect timeouts (the client bounds a
//! connect with its own timer) and TLS (wrap the inner connector).
//!
//! It lives in the sdk rather than in `embermq-ws` so that the dependency
//! runs one way (embermq → embermq-ws): the sdk's host layer builds
//! WebSocket links from a URL, and `embermq-ws` stays a WebSocket crate
//! that knows nothing of MQTT clients.

use core::fmt;

use embermq_ws::{
    Buffers, ClientRole, Config, Error, HandshakeHooks, Request, WsConnection, WsStream,
};

use super::Connector;

/// Why a [`WsConnector`] connect failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum WsConnectError<E> {
    /// The inner connector failed.
    Inner(E),
    /// The WebSocket handshake failed (transport errors reduced to their
    /// kind).
    WebSocket(Error<embedded_io_async::ErrorKind>),
}

impl<E: fmt::Display> fmt::Display for WsConnectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => write!(f, "inner connect failed: {e}"),
            Self::WebSocket(e) => write!(f, "{e}"),
        }
    }
}

// The inner error is in Display rather than `source` (no `'static` bound on
// the connector's error type).
impl<E: core::error::Error> core::error::Error for WsConnectError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Inner(_) => None,
            Self::WebSocket(e) => Some(e),
        }
    }
}

/// A [`Connector`] producing MQTT-mode WebSocket streams over connector `C`,
/// with handshake hooks `H` (none by default).
pub struct WsConnector<'b, C, R, H = ()> {
    inner: C,
    rx: &'b mut [u8],
    tx: &'b mut [u8],
    rng: R,
    request: Request<'b>,
    config: Config,
    hooks: H,
}

impl<'b, C: Connector, R: rand_core::RngCore + rand_core::CryptoRng> WsConnector<'b, C, R> {
    /// A connector for `ws://host[:port]path` over `inner`, offering
    /// subprotocol `mqtt`. `port` is written into `Host` when set (leave it
    /// `None` for the default port).
    pub fn new(
        inner: C,
        host: &'b str,
        port: Option<u16>,
        path: &'b str,
        buffers: Buffers<'b>,
        rng: R,
    ) -> Self {
        Self {
            inner,
            rx: buffers.rx,
            tx: buffers.tx,
            rng,
            request: Request::mqtt(host, port, path),
            config: Config {
                mqtt: true,
                ..Config::default()
            },
            hooks: (),
        }
    }
}

impl<'b, C: Connector, R: rand_core::RngCore + rand_core::CryptoRng, H: HandshakeHooks>
    WsConnector<'b, C, R, H>
{
    /// Handshake hooks run on every connect: extra headers written by a
    /// callback (e.g. a fresh SigV4 signature), response fields, success.
    pub fn with_hooks<H2: HandshakeHooks>(self, hooks: H2) -> WsConnector<'b, C, R, H2> {
        WsConnector {
            inner: self.inner,
            rx: self.rx,
            tx: self.tx,
            rng: self.rng,
            request: self.request,
            config: self.config,
            hooks,
        }
    }

    /// Extra request header fields (e.g. `Authorization`).
    pub fn with_headers(mut self, headers: &'b [(&'b str, &'b str)]) -> Self {
        self.request.headers = headers;
        self
    }

    /// An `Origin` header.
    pub fn with_origin(mut self, origin: &'b str) -> Self {
        self.request.origin = Some(origin);
        self
    }

    /// The largest WebSocket message accepted (close code 1009 beyond).
    pub fn with_max_message_len(mut self, max: u64) -> Self {
        self.config.max_message_len = max;
        self
    }
}

impl<'b, C: Connector, R: rand_core::RngCore + rand_core::CryptoRng, H: HandshakeHooks> Connector
    for WsConnector<'b, C, R, H>
{
    type Transport<'a>
        = WsStream<'a, C::Transport<'a>, ClientRole<&'a mut R>>
    where
        Self: 'a;

    type Error = WsConnectError<C::Error>;

    async fn connect(&mut self) -> Result<Self::Transport<'_>, Self::Error> {
        let io = self.inner.connect().await.map_err(WsConnectError::Inner)?;
        let buffers = Buffers {
            rx: &mut *self.rx,
            tx: &mut *self.tx,
        };
        let (conn, _) = WsConnection::connect(
            io,
            &self.request,
            buffers,
            &mut self.rng,
            self.config,
            &mut self.hooks,
        )
        .await
        .map_err(|e| WsConnectError::WebSocket(e.into_kind()))?;
        Ok(WsStream::new(conn))
    }
}

/// The closing handshake (RFC 6455 §7.1.1) when the client's driver ends
/// the link: Close 1000, then the peer's Close is awaited (data frames
/// discarded). The driver bounds it with its close timeout, so a peer that
/// never echoes costs only that long.
impl<T: embedded_io_async::Read + embedded_io_async::Write, M: embermq_ws::Role> super::Transport
    for WsStream<'_, T, M>
{
    async fn close(&mut self) {
        let _ = WsStream::close(self, 1000, "").await;
    }
}
