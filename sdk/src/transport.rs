//! The transport plug: how the client obtains a byte stream to a broker.
//!
//! A [`Connector`] opens a fresh transport for every connect and reconnect.
//! The transport is any [`embedded_io_async::Read`] + [`embedded_io_async::Write`]
//! byte stream: plain TCP (embassy-net on devices, tokio on hosts), TLS over
//! TCP, a WebSocket stream (`WsConnector`, feature `ws`), or a WebSocket
//! inside TLS. Connectors compose by wrapping one another.
//!
//! The transport may borrow from its connector (`Transport<'a>`), so a device
//! can keep socket and record buffers inside the connector, lent once at
//! start-up and reused for every reconnect: nothing is allocated per
//! connection.
//!
//! This module does no I/O of its own and deliberately says nothing about
//! timeouts: the client bounds a connect with its own timer.
//!
//! Provided TCP connectors, each behind its feature:
//!
//! - `tokio_tcp::TokioTcpConnector` (feature `tokio`): hosts; tokio's
//!   resolver, `TCP_NODELAY`, the stream seen through `embedded-io-adapters`.
//! - `embassy_tcp::EmbassyTcpConnector` (feature `embassy-net`): devices;
//!   DNS through the embassy-net stack, a socket on buffers the caller lends
//!   to the connector once.
//!
//! TLS connectors wrap any connector (see `docs/tls.md`):
//!
//! - `tls_rustls::RustlsConnector` (feature `rustls`): hosts; rustls with
//!   webpki or system roots, a custom CA, mTLS, SNI and ALPN.
//! - `tls_rustls_lent::RustlsLentConnector` (feature `rustls`): hosts; the
//!   same over rustls' unbuffered client in buffers the caller lends (many
//!   links on one host: the simulator's fleet).
//! - `embedded_tls::EmbeddedTlsConnector` (feature `embedded-tls`): devices;
//!   TLS 1.3 without an allocator, lent record buffers, a pinned CA.

/// Opens a fresh byte-stream transport to the broker, once per (re)connect.
///
/// Dropping the returned transport closes it. `connect` may be called again
/// after the previous transport was dropped; implementations reuse their
/// buffers.
pub trait Connector {
    /// The byte stream this connector produces.
    type Transport<'a>: Transport
    where
        Self: 'a;

    /// Why a connect failed (DNS, refused, TLS, WebSocket upgrade, ...).
    type Error: core::error::Error;

    /// Opens a new transport. Cancel-safe: dropping the future abandons the
    /// attempt and leaves the connector ready for the next one.
    fn connect(
        &mut self,
    ) -> impl core::future::Future<Output = Result<Self::Transport<'_>, Self::Error>>;
}

/// A byte stream a [`Connector`] opens: `embedded_io_async::Read +
/// Write`, plus a polite end.
///
/// Implement it with an empty body for a stream that has nothing to say
/// before it is dropped (`impl Transport for MyStream {}`); the provided
/// `close` does nothing.
pub trait Transport: embedded_io_async::Read + embedded_io_async::Write {
    /// Ends the stream politely before the driver drops it, once the
    /// session has closed the link (after an MQTT DISCONNECT, where there
    /// was one): the WebSocket closing handshake (RFC 6455 §7.1.1), a TLS
    /// close_notify (RFC 8446 §6.1). The client's driver bounds it by
    /// [`ClientConfig::close_timeout`](crate::client::ClientConfig::close_timeout)
    /// and drops the stream whatever happens; failures are not reported.
    /// The default does nothing (dropping a TCP socket sends its FIN).
    fn close(&mut self) -> impl core::future::Future<Output = ()> {
        core::future::ready(())
    }
}

#[cfg(feature = "embassy-net")]
pub mod embassy_tcp;
#[cfg(feature = "embedded-tls")]
pub mod embedded_tls;
#[cfg(feature = "rustls")]
pub mod tls_rustls;
#[cfg(feature = "rustls")]
pub mod tls_rustls_lent;
#[cfg(all(
    test,
    any(feature = "rustls", all(feature = "embedded-tls", feature = "tokio"))
))]
mod tls_test_peer;
#[cfg(feature = "tokio")]
pub mod tokio_tcp;
#[cfg(feature = "ws")]
pub mod ws;

#[cfg(feature = "embassy-net")]
pub use embassy_tcp::{EmbassyTcpConnector, EmbassyTcpError, EmbassyTcpStream};
#[cfg(feature = "embedded-tls")]
pub use embedded_tls::{
    EmbeddedTlsBuffers, EmbeddedTlsConnectError, EmbeddedTlsConnector, EmbeddedTlsError,
    EmbeddedTlsStream,
};
#[cfg(feature = "rustls")]
pub use tls_rustls::{
    Roots, RustlsConfigError, RustlsConnectError, RustlsConnector, RustlsError, RustlsOptions,
    RustlsStream,
};
#[cfg(feature = "rustls")]
pub use tls_rustls_lent::{
    RustlsBuffers, RustlsLentConnector, RustlsLentStream, TLS_RECORD_BUFFER_LEN,
    TLS_RECORD_OVERHEAD,
};
#[cfg(feature = "tokio")]
pub use tokio_tcp::{TokioTcpConnector, TokioTcpError, TokioTcpStream};
#[cfg(feature = "ws")]
pub use ws::{WsConnectError, WsConnector};
