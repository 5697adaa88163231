//! Plain TCP to a broker on a host, through tokio (feature `tokio`).
//!
//! [`TokioTcpConnector`] resolves `host:port` with tokio's resolver, tries
//! each address in the order the resolver gives them, turns Nagle's algorithm
//! off (`TCP_NODELAY`: MQTT packets are small and latency-bound) and hands the
//! stream over as an `embedded_io_async` transport through
//! `embedded-io-adapters`. It is the host twin of the embassy-net connector,
//! so the same client code runs on both.
//!
//! It deliberately does no TLS (a TLS connector wraps this one), keeps no
//! connection pool and sets no timeout: the client bounds a connect with its
//! own timer, and dropping the future abandons the attempt.

extern crate alloc;

use alloc::string::String;
use core::fmt;
use core::net::SocketAddr;
use std::io;

use embedded_io_adapters::tokio_1::FromTokio;
use tokio::net::TcpStream;

use super::Connector;

/// The transport a [`TokioTcpConnector`] opens.
pub type TokioTcpStream = FromTokio<TcpStream>;

/// Opens a TCP connection to `host:port` for every (re)connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokioTcpConnector {
    host: String,
    port: u16,
}

impl TokioTcpConnector {
    /// A connector to `host` (a name or an IP literal) on `port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        TokioTcpConnector {
            host: host.into(),
            port,
        }
    }

    /// The host name or address this connector dials.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port this connector dials.
    pub fn port(&self) -> u16 {
        self.port
    }

    async fn open(&self) -> Result<TokioTcpStream, TokioTcpError> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|source| TokioTcpError::Resolve {
                host: self.host.clone(),
                port: self.port,
                source,
            })?;
        let mut last_failure = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    stream
                        .set_nodelay(true)
                        .map_err(|source| TokioTcpError::Configure { addr, source })?;
                    debug!("tcp connected to {}:{}", self.host.as_str(), self.port);
                    return Ok(FromTokio::new(stream));
                }
                Err(source) => {
                    debug!("tcp connect to {}:{} failed", self.host.as_str(), self.port);
                    last_failure = Some((addr, source));
                }
            }
        }
        Err(match last_failure {
            Some((addr, source)) => TokioTcpError::Connect {
                host: self.host.clone(),
                addr,
                source,
            },
            None => TokioTcpError::NoAddress {
                host: self.host.clone(),
                port: self.port,
            },
        })
    }
}

impl Connector for TokioTcpConnector {
    type Transport<'a> = TokioTcpStream;
    type Error = TokioTcpError;

    async fn connect(&mut self) -> Result<TokioTcpStream, TokioTcpError> {
        self.open().await
    }
}

/// Why a [`TokioTcpConnector`] could not open a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum TokioTcpError {
    /// The host name could not be resolved.
    Resolve {
        /// The name that was looked up.
        host: String,
        /// The port that was asked for.
        port: u16,
        /// The resolver's error.
        source: io::Error,
    },
    /// The name resolved to no address at all.
    NoAddress {
        /// The name that was looked up.
        host: String,
        /// The port that was asked for.
        port: u16,
    },
    /// Every address refused or failed; this is the last address tried.
    Connect {
        /// The host name or address as configured.
        host: String,
        /// The address the last attempt went to.
        addr: SocketAddr,
        /// Why that attempt failed (`kind()` tells refused from unreachable).
        source: io::Error,
    },
    /// The connection was open but `TCP_NODELAY` could not be set.
    Configure {
        /// The peer's address.
        addr: SocketAddr,
        /// The socket option's error.
        source: io::Error,
    },
}

impl TokioTcpError {
    /// The I/O error kind behind this failure (`NotFound` when the name
    /// resolved to nothing).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            TokioTcpError::Resolve { source, .. }
            | TokioTcpError::Connect { source, .. }
            | TokioTcpError::Configure { source, .. } => source.kind(),
            TokioTcpError::NoAddress { .. } => io::ErrorKind::NotFound,
        }
    }
}

impl fmt::Display for TokioTcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokioTcpError::Resolve { host, port, source } => {
                write!(f, "cannot resolve {host}:{port}: {}", source.kind())
            }
            TokioTcpError::NoAddress { host, port } => {
                write!(f, "{host}:{port} resolved to no address")
            }
            TokioTcpError::Connect { host, addr, source } => {
                match source.kind() {
                    io::ErrorKind::ConnectionRefused => write!(f, "connection refused by {addr}")?,
                    kind => write!(f, "cannot connect to {addr}: {kind}")?,
                }
                if host.parse::<core::net::IpAddr>().ok() != Some(addr.ip()) {
                    write!(f, " ({host})")?;
                }
                Ok(())
            }
            TokioTcpError::Configure { addr, source } => {
                write!(
                    f,
                    "cannot set TCP_NODELAY on the connection to {addr}: {}",
                    source.kind()
                )
            }
        }
    }
}

impl core::error::Error for TokioTcpError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            TokioTcpError::Resolve { source, .. }
            | TokioTcpError::Connect { source, .. }
            | TokioTcpError::Configure { source, .. } => Some(source),
            TokioTcpError::NoAddress { .. } => None,
        }
    }
}

/// Nothing to say before the socket closes (dropping it sends FIN).
impl super::Transport for TokioTcpStream {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use embedded_io_async::{Read, Write};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn carries_bytes_both_ways_with_nodelay_set() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut got = [0u8; 5];
            socket.read_exact(&mut got).await.unwrap();
            socket.write_all(b"pong!").await.unwrap();
            got
        });

        let mut connector = TokioTcpConnector::new("127.0.0.1", port);
        let mut transport = connector.connect().await.unwrap();
        assert!(transport.inner().nodelay().unwrap());
        transport.write_all(b"ping!").await.unwrap();
        transport.flush().await.unwrap();
        let mut reply = [0u8; 5];
        transport.read_exact(&mut reply).await.unwrap();

        assert_eq!(&reply, b"pong!");
        assert_eq!(&peer.await.unwrap(), b"ping!");
    }

    #[tokio::test]
    async fn reconnects_through_the_same_connector_after_a_drop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = tokio::spawn(async move {
            let mut seen = [0u8; 2];
            for slot in &mut seen {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut byte = [0u8; 1];
                socket.read_exact(&mut byte).await.unwrap();
                *slot = byte[0];
            }
            seen
        });

        let mut connector = TokioTcpConnector::new("localhost", port);
        for byte in [b'a', b'b'] {
            // `localhost` may resolve to ::1 first (nobody listens there);
            // the connector then goes on to 127.0.0.1.
            let mut transport = connector.connect().await.unwrap();
            transport.write_all(&[byte]).await.unwrap();
            transport.flush().await.unwrap();
        }
        assert_eq!(&peer.await.unwrap(), b"ab");
    }

    #[tokio::test]
    async fn refused_port_is_a_connect_error_naming_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);

        let mut connector = TokioTcpConnector::new("127.0.0.1", addr.port());
        let err = connector.connect().await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(matches!(err, TokioTcpError::Connect { addr: a, .. } if a == addr));
        assert_eq!(
            err.to_string(),
            std::format!("connection refused by {addr}")
        );
        assert!(core::error::Error::source(&err).is_some());
    }

    #[tokio::test]
    async fn unresolvable_name_is_a_resolve_error_naming_host_and_port() {
        // RFC 6761 §6.4: `.invalid` never resolves.
        let mut connector = TokioTcpConnector::new("no-such-broker.invalid", 1883);
        let err = tokio::time::timeout(core::time::Duration::from_secs(20), connector.connect())
            .await
            .expect("the resolver answered")
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                TokioTcpError::Resolve { .. } | TokioTcpError::NoAddress { .. }
            ),
            "{err:?}"
        );
        assert!(text.contains("no-such-broker.invalid:1883"), "{text}");
    }
}
