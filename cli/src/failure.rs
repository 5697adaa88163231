//! What a command failed with: one line on stderr and a documented exit
//! code (docs/cli.md).
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | other failure at run time (link lost, publish or subscription refused, I/O) |
//! | 2 | usage: bad arguments or URL, unreadable file or PEM (clap uses 2 as well) |
//! | 3 | cannot connect: name not resolved, connection refused, unreachable |
//! | 4 | WebSocket upgrade refused (HTTP status) or handshake failed |
//! | 5 | TLS handshake failed: verification (and why), the server's alert |
//! | 6 | the broker refused CONNECT (its reason code is named) |
//! | 7 | timeout: connect, CONNACK, or `--timeout` before the work was done |
//!
//! The mapping from the client's errors is [`Failure::from_client`]; it
//! reads the error values, never their text.

use std::process::ExitCode;

use embermq::client::ClientError;
use embermq::session::CloseReason;
use embermq_ws::HandshakeError;

use crate::broker_url::BrokerUrl;
use embermq::host::{self, LinkConnectError, SetupError};

/// The exit codes (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Exit {
    /// 1: other run-time failure.
    Failure = 1,
    /// 2: usage.
    Usage = 2,
    /// 3: cannot connect.
    Connect = 3,
    /// 4: WebSocket upgrade refused or failed.
    WebSocket = 4,
    /// 5: TLS.
    Tls = 5,
    /// 6: CONNECT refused by the broker.
    ConnectRefused = 6,
    /// 7: timeout.
    Timeout = 7,
}

/// A failed command: its exit code and the one line that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The exit code.
    pub(crate) exit: Exit,
    /// The explanation, without the `embermq: error:` prefix.
    pub(crate) message: String,
}

impl Failure {
    /// A failure with `exit` and `message`.
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// Prints the line on stderr and returns the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        eprintln!("embermq: error: {}", self.message);
        ExitCode::from(self.exit as u8)
    }

    /// A connector that could not be built.
    pub(crate) fn from_setup(e: &SetupError) -> Self {
        match e {
            SetupError::TlsOptionsWithoutTls => Self::new(
                Exit::Usage,
                "--cafile, --cert, --key and --insecure need an mqtts:// or wss:// URL",
            ),
            other => Self::new(Exit::Usage, other.to_string()),
        }
    }

    /// What the client's driver returned, for a link to `url`.
    pub(crate) fn from_client(e: &ClientError<LinkConnectError>, url: &BrokerUrl) -> Self {
        match e {
            ClientError::Connect(c) => Self::from_connect(c, url),
            ClientError::Io(embedded_io::ErrorKind::PermissionDenied) if url.scheme.is_tls() => {
                Self::client_certificate_refused(url)
            }
            ClientError::ConnectTimeout => Self::new(
                Exit::Timeout,
                format!("timed out connecting to {url} (see --connect-timeout)"),
            ),
            ClientError::Link(reason) => Self::from_close(*reason, url),
            ClientError::Io(kind) => {
                Self::new(Exit::Failure, format!("link to {url} failed: {kind:?}"))
            }
            other => Self::new(Exit::Failure, other.to_string()),
        }
    }

    /// What a host-layer client (`pub`, `sub`) ended with or a call
    /// returned, for a link to `url`.
    pub(crate) fn from_host(e: &host::Error, url: &BrokerUrl) -> Self {
        match e {
            host::Error::Connect(c) => Self::from_connect(c, url),
            host::Error::Client(c) => Self::from_client(&c.with_connector_error(), url),
            host::Error::Setup(s) => Self::from_setup(s),
            host::Error::Url(_) | host::Error::Options(_) => Self::new(Exit::Usage, e.to_string()),
            other => Self::new(Exit::Failure, other.to_string()),
        }
    }

    /// A connect attempt that failed, to `url`.
    fn from_connect(e: &LinkConnectError, url: &BrokerUrl) -> Self {
        match e {
            LinkConnectError::Tcp(tcp) => {
                Self::new(Exit::Connect, format!("cannot connect to {url}: {tcp}"))
            }
            LinkConnectError::Tls(tls) => {
                Self::new(Exit::Tls, format!("TLS with {url} failed: {tls}"))
            }
            // rustls reports a client-certificate alert received after a
            // TLS 1.3 handshake (the server checks the certificate then) as
            // PermissionDenied on the first read: during the WebSocket
            // upgrade, or before CONNACK.
            LinkConnectError::WebSocket(embermq_ws::Error::Io(
                embedded_io::ErrorKind::PermissionDenied,
            )) if url.scheme.is_tls() => Self::client_certificate_refused(url),
            LinkConnectError::WebSocket(ws) => match ws {
                embermq_ws::Error::Handshake(HandshakeError::Status { code, reason }) => Self::new(
                    Exit::WebSocket,
                    format!(
                        "websocket upgrade to {url} refused: HTTP {code} {}",
                        reason.as_str()
                    ),
                ),
                other => Self::new(
                    Exit::WebSocket,
                    format!("websocket upgrade to {url} failed: {other}"),
                ),
            },
            _ => Self::new(Exit::Connect, format!("cannot connect to {url}: {e}")),
        }
    }

    fn client_certificate_refused(url: &BrokerUrl) -> Self {
        Self::new(
            Exit::Tls,
            format!(
                "TLS with {url} failed: the broker refused the client certificate \
                 (or its absence); give --cert and --key it trusts"
            ),
        )
    }

    /// Why a link ended, for a link to `url`.
    pub(crate) fn from_close(reason: CloseReason, url: &BrokerUrl) -> Self {
        match reason {
            CloseReason::ConnectRefused(code) => Self::new(
                Exit::ConnectRefused,
                format!("broker at {url} refused CONNECT: {code}"),
            ),
            CloseReason::ConnackTimeout => Self::new(
                Exit::Timeout,
                format!("no CONNACK from {url} in time (see --connect-timeout)"),
            ),
            CloseReason::TransportClosed => {
                Self::new(Exit::Failure, format!("{url} closed the connection"))
            }
            CloseReason::KeepaliveTimeout => Self::new(
                Exit::Failure,
                format!("{url} stopped answering (keepalive timeout)"),
            ),
            CloseReason::WriteStalled => Self::new(
                Exit::Failure,
                format!("{url} stopped reading what we sent (write stalled)"),
            ),
            CloseReason::ServerDisconnect(code) => Self::new(
                Exit::Failure,
                format!("broker at {url} disconnected: {code}"),
            ),
            CloseReason::ProtocolError(code) => Self::new(
                Exit::Failure,
                format!("protocol error with {url}; disconnected with {code}"),
            ),
            other => Self::new(Exit::Failure, format!("link to {url} ended: {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embermq::codec::ReasonCode;
    use embermq_ws::ReasonPhrase;

    fn url() -> BrokerUrl {
        "ws://127.0.0.1:9001".parse().unwrap()
    }

    #[test]
    fn upgrade_status_is_named_with_exit_4() {
        let e = ClientError::Connect(LinkConnectError::WebSocket(embermq_ws::Error::Handshake(
            HandshakeError::Status {
                code: 401,
                reason: ReasonPhrase::new("Unauthorized"),
            },
        )));
        let f = Failure::from_client(&e, &url());
        assert_eq!(f.exit, Exit::WebSocket);
        assert_eq!(
            f.message,
            "websocket upgrade to ws://127.0.0.1:9001/mqtt refused: HTTP 401 Unauthorized"
        );
    }

    #[test]
    fn mqtt_3_2_2_3_connack_refusal_names_the_reason_code_with_exit_6() {
        let e = ClientError::Link(CloseReason::ConnectRefused(ReasonCode(0x87)));
        let f = Failure::from_client(&e, &url());
        assert_eq!(f.exit, Exit::ConnectRefused);
        assert!(f.message.contains("0x87"), "{}", f.message);
        assert!(f.message.contains("refused CONNECT"), "{}", f.message);
    }

    #[test]
    fn timeouts_exit_7() {
        assert_eq!(
            Failure::from_client(&ClientError::ConnectTimeout, &url()).exit,
            Exit::Timeout
        );
        assert_eq!(
            Failure::from_close(CloseReason::ConnackTimeout, &url()).exit,
            Exit::Timeout
        );
    }
}
