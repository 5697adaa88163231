//! The simulated devices' links: the broker URL (`mqtt://`, `mqtts://`,
//! `ws://`, `wss://`), the TLS layer built from one shared rustls
//! configuration ([`tls_connector`]), and [`CutConnector`], which wraps any
//! connector so the simulator can cut a device's link on purpose (the
//! fault knobs `--cut-every` and `--storm-at`).
//!
//! A cut makes the transport's pending and later reads and writes fail with
//! `ConnectionReset`; the client then drops the transport (the broker sees
//! the socket close without DISCONNECT, so it publishes the will) and
//! reconnects with its own backoff, exactly as after a real link loss.
//!
//! TLS costs a device no more than a board pays: every device's
//! `RustlsLentConnector` (rustls' unbuffered client) shares one
//! `Arc<rustls::ClientConfig>` (CA roots parsed once per run) and works in
//! TLS buffers lent from the run's anonymous map (`TlsSlots`: a full record
//! in, see `BufferSizes::tls_rx`); the rustls connection state exists only while a
//! link is up. The checker's connections keep the buffered
//! `RustlsConnector` ([`tls_connector`]). The host layer's
//! `embermq::host::LinkConnector` is not used here because it owns a `StdRng`
//! and its own WebSocket buffers per connector, where a simulated device
//! lends slices of its one buffer block and the thread's RNG handle.
//!
//! Not here: extra WebSocket headers, ALPN, proxies.

use alloc::sync::Arc;
use core::fmt;

use embassy_futures::select::{Either, select};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::signal::Signal;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embermq::transport::{
    Connector, RustlsBuffers, RustlsConnectError, RustlsConnector, RustlsLentConnector,
    TokioTcpConnector, TokioTcpError, WsConnectError,
};
use rustls::pki_types::ServerName;

use super::fleet::{DeviceSlot, Fleet};
use super::profile::{ProfileError, invalid};
use crate::broker_url::masked;

/// Where the broker is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerUrl {
    /// WebSocket (`ws://`, `wss://`) or MQTT over TCP (`mqtt://`, `mqtts://`).
    pub(crate) websocket: bool,
    /// Over TLS (`mqtts://`, `wss://`).
    pub(crate) tls: bool,
    /// Host name or address (an IPv6 literal without brackets): what TCP
    /// dials and TLS verifies.
    pub(crate) host: String,
    /// The host as the WebSocket `Host` header writes it: IPv6 literals in
    /// brackets (RFC 7230 §5.4, RFC 3986 §3.2.2).
    pub(crate) host_header: String,
    /// TCP port.
    pub(crate) port: u16,
    /// The HTTP request target of the WebSocket endpoint (`/mqtt` by
    /// default), its query included; printed without the query.
    pub(crate) path: String,
}

impl BrokerUrl {
    /// Parses `ws[s]://host[:port][/path][?query]` or
    /// `mqtt[s]://host[:port]`. Errors show the URL without its password
    /// and query ([`masked`]); user info is refused (the simulated devices
    /// connect without credentials).
    pub(crate) fn parse(text: &str) -> Result<Self, ProfileError> {
        let shown = masked(text);
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            invalid(
                "--broker",
                format!("{shown:?}: expected scheme://host[:port]"),
            )
        })?;
        let (websocket, tls, default_port) = match scheme {
            "ws" => (true, false, 80),
            "wss" => (true, true, 443),
            "mqtt" | "tcp" => (false, false, 1883),
            "mqtts" | "ssl" => (false, true, 8883),
            other => return Err(invalid("--broker", format!("unknown scheme {other:?}"))),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(invalid(
                "--broker",
                format!("{shown:?}: user info (user:password@) is not supported by sim"),
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                let port = p
                    .parse()
                    .map_err(|_| invalid("--broker", format!("bad port in {shown:?}")))?;
                (h, port)
            }
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("--broker", format!("no host in {shown:?}")));
        }
        if tls && ServerName::try_from(host).is_err() {
            return Err(invalid(
                "--broker",
                format!("{host:?} is no valid TLS server name"),
            ));
        }
        let host_header = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(Self {
            websocket,
            tls,
            host: host.to_owned(),
            host_header,
            port,
            path: match path {
                "" => "/mqtt".to_owned(),
                p if p.starts_with('?') => format!("/mqtt{p}"),
                p => p.to_owned(),
            },
        })
    }
}

impl fmt::Display for BrokerUrl {
    /// The URL as reports and logs print it: IPv6 literals in brackets,
    /// the query left out (a presigned URL carries its signature there).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.tls { "s" } else { "" };
        if self.websocket {
            let path = self.path.split('?').next().unwrap_or_default();
            write!(f, "ws{s}://{}:{}{path}", self.host_header, self.port)
        } else {
            write!(f, "mqtt{s}://{}:{}", self.host_header, self.port)
        }
    }
}

/// The TLS layer of one link to `url`, over a new TCP connector, sharing
/// `config` (one per run). `None` when the host is no valid server name
/// (ruled out by [`BrokerUrl::parse`]).
pub(crate) fn tls_connector(
    url: &BrokerUrl,
    config: &Arc<rustls::ClientConfig>,
) -> Option<RustlsConnector<TokioTcpConnector>> {
    let name = ServerName::try_from(url.host.clone()).ok()?;
    Some(RustlsConnector::from_config(
        TokioTcpConnector::new(url.host.as_str(), url.port),
        name,
        config.clone(),
    ))
}

/// The TLS layer of one simulated device's link to `url` in the device's
/// lent `buffers` (rustls' unbuffered client), over a new TCP connector,
/// sharing `config`. `None` when the host is no valid server name.
pub(crate) fn lent_tls_connector<'b>(
    url: &BrokerUrl,
    config: &Arc<rustls::ClientConfig>,
    buffers: RustlsBuffers<'b>,
) -> Option<RustlsLentConnector<'b, TokioTcpConnector>> {
    let name = ServerName::try_from(url.host.clone()).ok()?;
    Some(RustlsLentConnector::new(
        TokioTcpConnector::new(url.host.as_str(), url.port),
        name,
        config.clone(),
        buffers,
    ))
}

/// A cut signal: raised by the simulator, seen by the device's transport.
pub(crate) type CutSignal = Signal<NoopRawMutex, ()>;

/// Wraps connector `C`; every transport it opens fails once the device's
/// cut signal is raised. Raising it while no link is open has no effect on
/// the next one. A failed connect is counted in the fleet's errors under
/// its [`ConnectFailure::kind`], the first of each kind with its message.
pub(crate) struct CutConnector<'c, C> {
    inner: C,
    fleet: &'static Fleet,
    slot: &'static DeviceSlot,
    id: &'c str,
}

impl<'c, C> CutConnector<'c, C> {
    /// `inner` for device `local` (named `id`) of `fleet`.
    pub(crate) fn new(inner: C, fleet: &'static Fleet, local: usize, id: &'c str) -> Self {
        Self {
            inner,
            fleet,
            slot: &fleet.slots[local],
            id,
        }
    }
}

impl<C: Connector> Connector for CutConnector<'_, C>
where
    C::Error: ConnectFailure,
{
    type Transport<'a>
        = CutStream<'a, C::Transport<'a>>
    where
        Self: 'a;
    type Error = C::Error;

    async fn connect(&mut self) -> Result<Self::Transport<'_>, Self::Error> {
        let cut = &self.slot.cut;
        // A cut raised between links is stale.
        cut.reset();
        let inner = match self.inner.connect().await {
            Ok(inner) => inner,
            Err(e) => {
                self.slot.connect_failure_counted.set(true);
                self.fleet.stats.error_with(
                    e.kind(),
                    self.id,
                    self.fleet.t0.elapsed(),
                    &Described(&e),
                );
                return Err(e);
            }
        };
        Ok(CutStream { inner, cut })
    }
}

/// What kind of connect failure an error is (the report groups errors by
/// kind), and its message without wrapper prefixes.
pub(crate) trait ConnectFailure {
    /// `connect_failed_tcp`, `connect_failed_tls` or
    /// `connect_failed_websocket`.
    fn kind(&self) -> &'static str;
    /// The message of the innermost layer that failed.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// Displays a [`ConnectFailure`] through its `describe`.
struct Described<'e, E>(&'e E);

impl<E: ConnectFailure> fmt::Display for Described<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f)
    }
}

impl ConnectFailure for TokioTcpError {
    fn kind(&self) -> &'static str {
        "connect_failed_tcp"
    }
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TCP: {self}")
    }
}

impl<E: ConnectFailure + fmt::Display> ConnectFailure for RustlsConnectError<E> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Inner(e) => e.kind(),
            _ => "connect_failed_tls",
        }
    }
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => e.describe(f),
            // RustlsError's messages start with "TLS: ".
            other => write!(f, "{other}"),
        }
    }
}

impl<E: ConnectFailure + fmt::Display> ConnectFailure for WsConnectError<E> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Inner(e) => e.kind(),
            _ => "connect_failed_websocket",
        }
    }
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => e.describe(f),
            other => write!(f, "WebSocket upgrade: {other}"),
        }
    }
}

/// A transport that fails once its cut signal is raised.
pub(crate) struct CutStream<'c, T> {
    inner: T,
    cut: &'c CutSignal,
}

/// An I/O error of a [`CutStream`]: the inner transport's kind, or the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutIoError {
    /// The inner transport failed.
    Inner(ErrorKind),
    /// The simulator cut the link.
    Cut,
}

impl fmt::Display for CutIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(kind) => write!(f, "transport failed: {kind:?}"),
            Self::Cut => f.write_str("link cut by the simulator"),
        }
    }
}

impl core::error::Error for CutIoError {}

impl embedded_io_async::Error for CutIoError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Inner(kind) => *kind,
            Self::Cut => ErrorKind::ConnectionReset,
        }
    }
}

impl<T: ErrorType> ErrorType for CutStream<'_, T> {
    type Error = CutIoError;
}

fn inner_error<E: embedded_io_async::Error>(e: E) -> CutIoError {
    CutIoError::Inner(e.kind())
}

impl<T: Read> Read for CutStream<'_, T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, CutIoError> {
        if self.cut.signaled() {
            return Err(CutIoError::Cut);
        }
        // Both halves are cancel-safe: the inner read loses no bytes, the
        // signal stays raised until taken.
        match select(self.inner.read(buf), self.cut.wait()).await {
            Either::First(r) => r.map_err(inner_error),
            Either::Second(()) => {
                self.cut.signal(());
                Err(CutIoError::Cut)
            }
        }
    }
}

impl<T: embermq::transport::Transport> embermq::transport::Transport for CutStream<'_, T> {
    async fn close(&mut self) {
        self.inner.close().await;
    }
}

impl<T: Write> Write for CutStream<'_, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, CutIoError> {
        if self.cut.signaled() {
            return Err(CutIoError::Cut);
        }
        self.inner.write(buf).await.map_err(inner_error)
    }

    async fn flush(&mut self) -> Result<(), CutIoError> {
        if self.cut.signaled() {
            return Err(CutIoError::Cut);
        }
        self.inner.flush().await.map_err(inner_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_give_scheme_host_port_and_path() {
        let u = BrokerUrl::parse("ws://127.0.0.1:9001/mqtt").unwrap();
        assert!(u.websocket);
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9001, "/mqtt")
        );
        let t = BrokerUrl::parse("mqtt://broker.local").unwrap();
        assert!(!t.websocket);
        assert_eq!((t.host.as_str(), t.port), ("broker.local", 1883));
        assert_eq!(BrokerUrl::parse("ws://h").unwrap().port, 80);
        let w = BrokerUrl::parse("wss://broker.example/ws").unwrap();
        assert!(w.websocket && w.tls);
        assert_eq!((w.port, w.path.as_str()), (443, "/ws"));
        assert_eq!(w.to_string(), "wss://broker.example:443/ws");
        let m = BrokerUrl::parse("mqtts://127.0.0.1").unwrap();
        assert!(!m.websocket && m.tls);
        assert_eq!(m.port, 8883);
        assert!(!BrokerUrl::parse("ws://h").unwrap().tls);
        assert!(BrokerUrl::parse("http://h").is_err());
        assert!(BrokerUrl::parse("h:1883").is_err());
    }

    #[test]
    fn rfc7230_5_4_ipv6_literal_gets_brackets_in_host_and_report() {
        let u = BrokerUrl::parse("ws://[::1]:9001/mqtt").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.host_header, "[::1]");
        assert_eq!(u.to_string(), "ws://[::1]:9001/mqtt");
        let d = BrokerUrl::parse("mqtt://[fe80::2]").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("fe80::2", 1883));
        assert_eq!(d.to_string(), "mqtt://[fe80::2]:1883");
        assert_eq!(BrokerUrl::parse("ws://h:1/x").unwrap().host_header, "h");
    }

    #[test]
    fn report_and_parse_errors_leave_out_the_query_and_password() {
        let u = BrokerUrl::parse("wss://h.example/mqtt?X-Amz-Signature=QuerySecret").unwrap();
        assert_eq!(u.path, "/mqtt?X-Amz-Signature=QuerySecret");
        assert_eq!(u.to_string(), "wss://h.example:443/mqtt");
        let q = BrokerUrl::parse("ws://h?sig=QuerySecret").unwrap();
        assert_eq!(q.path, "/mqtt?sig=QuerySecret");
        assert_eq!(q.to_string(), "ws://h:80/mqtt");
        for bad in [
            "ws://h:port/mqtt?sig=QuerySecret",
            "ws://alice:PassSecret@h/mqtt?sig=QuerySecret",
            "alice:PassSecret@h?sig=QuerySecret",
        ] {
            let e = BrokerUrl::parse(bad).unwrap_err().to_string();
            assert!(
                !e.contains("QuerySecret") && !e.contains("PassSecret"),
                "{e}"
            );
        }
    }
}
