//! The transport plug: how the client obtains a byte stream to a broker.
//!
//! A [`Connector`] opens a fresh transport for every connect and reconnect.
//! The transport is any [`embedded_io_async::Read`] + [`embedded_io_async::Write`]
//! byte stream: plain TCP (embassy-net on devices, tokio on hosts), TLS over
//! TCP, a WebSocket stream (`embermq_ws::WsConnector`), or a WebSocket inside
//! TLS. Connectors compose by wrapping one another.
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

/// Opens a fresh byte-stream transport to the broker, once per (re)connect.
///
/// Dropping the returned transport closes it. `connect` may be called again
/// after the previous transport was dropped; implementations reuse their
/// buffers.
pub trait Connector {
    /// The byte stream this connector produces.
    type Transport<'a>: embedded_io_async::Read + embedded_io_async::Write
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

#[cfg(feature = "embassy-net")]
pub mod embassy_tcp;
#[cfg(feature = "tokio")]
pub mod tokio_tcp;

#[cfg(feature = "embassy-net")]
pub use embassy_tcp::{EmbassyTcpConnector, EmbassyTcpError};
#[cfg(feature = "tokio")]
pub use tokio_tcp::{TokioTcpConnector, TokioTcpError, TokioTcpStream};
