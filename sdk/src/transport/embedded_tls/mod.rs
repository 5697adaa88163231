//! TLS 1.3 on devices through embedded-tls (feature `embedded-tls`): no
//! allocator, every buffer lent by the caller once.
//!
//! [`EmbeddedTlsConnector`] wraps any [`Connector`] (embassy-net TCP on a
//! device, tokio TCP in host tests) and runs a TLS 1.3 client handshake
//! (RFC 8446) with cipher suite `TLS_AES_128_GCM_SHA256` (the one every
//! TLS 1.3 server must offer, §9.1) and key share secp256r1. The server is
//! verified by embermq's own verifier (module `verifier`, on the small
//! X.509 reader in module `x509`), not by embedded-tls's: the chain must
//! lead to one pinned CA certificate (DER) through CA certificates only,
//! the server's certificate must carry the server name (sent as SNI,
//! RFC 6066 §3) as a DNS subjectAltName, and its key must have signed the
//! handshake (CertificateVerify, RFC 8446 §4.4.3). `connect` fails unless
//! both proofs were made, whatever embedded-tls's `open()` says.
//! `WsConnector<EmbeddedTlsConnector<..>>` is `wss://` on a device.
//!
//! # Memory
//!
//! Three buffers, lent once in [`EmbeddedTlsBuffers`] and reused for every
//! reconnect:
//!
//! - `read`: one whole encrypted record, decrypted in place: 16 640 bytes
//!   for the largest TLS 1.3 record (2^14 + 256), unless a smaller
//!   [`MaxFragmentLength`] is negotiated (RFC 6066 §4; many brokers ignore
//!   it);
//! - `staging`: the same size again; it makes `read` cancel-safe (below);
//! - `write`: outgoing records; 4 KiB is plenty for MQTT (larger writes
//!   are split into several records), and at least the ClientHello.
//!
//! The verifier reads the certificates where they lie in `read` and keeps
//! only the leaf's key and a transcript hash (about 140 bytes, in the
//! connector) until the CertificateVerify.
//!
//! # Cancel safety
//!
//! The client drops read futures. embedded-tls reads a record header into
//! a local variable, so dropping its read mid-record would lose bytes; the
//! connector therefore puts a record gate between embedded-tls and the
//! inner transport: the gate collects one whole record in the staging
//! buffer (its state lives in the gate, so a dropped read loses nothing)
//! and only then hands it to embedded-tls, which consumes it without ever
//! waiting. `write` is not cancel-safe (the client never drops one).
//!
//! # Not here (deliberately)
//!
//! - TLS 1.2, RSA server certificates, P-384 and Ed25519 chains (embedded-
//!   tls's `rsa` needs an allocator); the pinned CA and the server's chain
//!   must be ECDSA P-256 with SHA-256.
//! - Certificate validity periods: the device has no trusted clock, so
//!   expiry is not checked. Pin a CA you control (docs/tls.md).
//! - Revocation (CRL, OCSP), IP address names.
//! - Client certificates (mutual TLS), session resumption, 0-RTT.
//! - A post-handshake KeyUpdate or CertificateRequest from the server:
//!   embedded-tls 0.19 cannot process them (MQTT brokers do not send them
//!   unprompted).
//! - `EmbeddedTlsConnector::insecure_without_verification` exists for lab
//!   set-ups only with the separately named feature `embedded-tls-insecure`
//!   and says so in its name: it accepts any server.

mod verifier;
mod x509;

use core::fmt;

use ::embedded_tls::{
    Aes128GcmSha256, CryptoProvider, TlsConfig, TlsConnection, TlsContext, TlsError, TlsVerifier,
};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use rand_core::{CryptoRng, RngCore};

use super::Connector;

use verifier::{PinnedCaVerifier, ServerAuth};

pub use ::embedded_tls::MaxFragmentLength;
pub use verifier::{CertificateError, INTERMEDIATES_MAX};

/// The length of a TLS record header (RFC 8446 §5.1).
const RECORD_HEADER_LEN: usize = 5;

/// The buffers an [`EmbeddedTlsConnector`] borrows (see the module doc for
/// their sizes).
#[derive(Debug)]
pub struct EmbeddedTlsBuffers<'b> {
    /// Incoming records, decrypted in place (16 640 bytes for full-size
    /// records).
    pub read: &'b mut [u8],
    /// Outgoing records (at least the ClientHello; 4 KiB is plenty).
    pub write: &'b mut [u8],
    /// One incoming record collected before decryption; as large as
    /// `read`.
    pub staging: &'b mut [u8],
}

/// How the server is verified.
#[derive(Debug, Clone, Copy)]
enum Trust<'b> {
    /// Against a pinned CA certificate; the verifier's record of the
    /// current handshake lives here, in the connector, not in a future.
    PinnedCa(PinnedCaVerifier<'b>),
    /// Not at all (feature `embedded-tls-insecure` only).
    #[cfg(feature = "embedded-tls-insecure")]
    Insecure,
}

/// A [`Connector`] that runs a TLS 1.3 client (embedded-tls) over the
/// transports of connector `C`, with buffers lent once and RNG `R`.
pub struct EmbeddedTlsConnector<'b, C, R> {
    inner: C,
    read: &'b mut [u8],
    write: &'b mut [u8],
    staging: &'b mut [u8],
    rng: R,
    server_name: &'b str,
    trust: Trust<'b>,
    alpn: Option<&'b [&'b [u8]]>,
    max_fragment_length: Option<MaxFragmentLength>,
}

impl<C, R> fmt::Debug for EmbeddedTlsConnector<'_, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedTlsConnector")
            .field("server_name", &self.server_name)
            .field("verified", &matches!(self.trust, Trust::PinnedCa(_)))
            .field("read", &self.read.len())
            .field("write", &self.write.len())
            .field("staging", &self.staging.len())
            .finish_non_exhaustive()
    }
}

impl<'b, C: Connector, R: RngCore + CryptoRng> EmbeddedTlsConnector<'b, C, R> {
    /// TLS over `inner` to `server_name` (a DNS name: sent as SNI and
    /// matched against the server certificate's DNS subjectAltNames),
    /// trusting only the CA certificate `ca_der` (DER, ECDSA P-256, with
    /// basicConstraints cA). Pin a dedicated CA or the broker's
    /// intermediate, not a public root: docs/tls.md says why.
    pub fn new(
        inner: C,
        server_name: &'b str,
        ca_der: &'b [u8],
        buffers: EmbeddedTlsBuffers<'b>,
        rng: R,
    ) -> Self {
        let verifier = PinnedCaVerifier::new(ca_der, server_name);
        Self::with_trust(inner, server_name, Trust::PinnedCa(verifier), buffers, rng)
    }

    /// **Insecure: no server authentication at all.** TLS over `inner`
    /// that accepts any certificate, any name and no certificate, so
    /// anyone on the path (a Wi-Fi access point, a router, the ISP) can
    /// impersonate the broker, read every message and credential, and
    /// send the device commands. Encryption without authentication
    /// protects nothing against that attacker. For a lab bench only,
    /// never in a product; boards gate it behind a cargo feature of its
    /// own. Exists only with the separately named feature
    /// `embedded-tls-insecure`, so that turning on `embedded-tls` can never
    /// make it reachable by accident.
    #[cfg(feature = "embedded-tls-insecure")]
    pub fn insecure_without_verification(
        inner: C,
        server_name: &'b str,
        buffers: EmbeddedTlsBuffers<'b>,
        rng: R,
    ) -> Self {
        Self::with_trust(inner, server_name, Trust::Insecure, buffers, rng)
    }

    fn with_trust(
        inner: C,
        server_name: &'b str,
        trust: Trust<'b>,
        buffers: EmbeddedTlsBuffers<'b>,
        rng: R,
    ) -> Self {
        Self {
            inner,
            read: buffers.read,
            write: buffers.write,
            staging: buffers.staging,
            rng,
            server_name,
            trust,
            alpn: None,
            max_fragment_length: None,
        }
    }

    /// Offers these ALPN protocols (RFC 7301), e.g. `&[b"mqtt"]`.
    pub fn with_alpn(mut self, protocols: &'b [&'b [u8]]) -> Self {
        self.alpn = Some(protocols);
        self
    }

    /// Asks the server for records of at most this many plaintext bytes
    /// (RFC 6066 §4), so smaller buffers do. A server that ignores the
    /// request may still send full-size records.
    pub fn with_max_fragment_length(mut self, length: MaxFragmentLength) -> Self {
        self.max_fragment_length = Some(length);
        self
    }
}

/// Verifies the server against the pinned CA with embermq's verifier,
/// borrowed from the connector.
struct PinnedCaProvider<'v, 'b, R> {
    rng: R,
    verifier: &'v mut PinnedCaVerifier<'b>,
}

impl<R: RngCore + CryptoRng> CryptoProvider for PinnedCaProvider<'_, '_, R> {
    type CipherSuite = Aes128GcmSha256;
    // No client certificate, so nothing is ever signed.
    type Signature = [u8; 0];

    fn rng(&mut self) -> impl ::embedded_tls::CryptoRngCore {
        &mut self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut *self.verifier)
    }
}

impl<'b, C: Connector, R: RngCore + CryptoRng> Connector for EmbeddedTlsConnector<'b, C, R> {
    type Transport<'a>
        = EmbeddedTlsStream<'a, C::Transport<'a>>
    where
        Self: 'a;
    type Error = EmbeddedTlsConnectError<C::Error>;

    async fn connect(&mut self) -> Result<Self::Transport<'_>, Self::Error> {
        let io = self
            .inner
            .connect()
            .await
            .map_err(EmbeddedTlsConnectError::Inner)?;
        let gate = RecordGate::new(io, &mut *self.staging);
        let mut tls = TlsConnection::new(gate, &mut *self.read, &mut *self.write);
        let mut config = TlsConfig::new().with_server_name(self.server_name);
        if let Some(alpn) = self.alpn {
            config = config.with_alpn(alpn);
        }
        if let Some(length) = self.max_fragment_length {
            config = config.with_max_fragment_length(length);
        }
        match &mut self.trust {
            Trust::PinnedCa(verifier) => {
                verifier.state = ServerAuth::Nothing;
                let provider = PinnedCaProvider {
                    rng: &mut self.rng,
                    verifier: &mut *verifier,
                };
                let opened = tls.open(TlsContext::new(&config, provider)).await;
                // The verifier's reason first: embedded-tls only knows
                // that a check failed.
                let error = match (opened, verifier.state) {
                    (_, ServerAuth::Failed(reason)) => {
                        warn!("tls: server certificate rejected");
                        Some(EmbeddedTlsError::CertificateRejected(reason))
                    }
                    (Err(e), _) => Some(EmbeddedTlsError::from_tls(e)),
                    // RFC 8446 §4.4.2, §4.4.3: without a verified
                    // Certificate and CertificateVerify, the Finished
                    // proves only that the peer did the key exchange.
                    (Ok(()), ServerAuth::Nothing | ServerAuth::CertificateVerified { .. }) => {
                        warn!("tls: the server did not authenticate; connection refused");
                        Some(EmbeddedTlsError::ServerNotAuthenticated)
                    }
                    (Ok(()), ServerAuth::Authenticated) => None,
                };
                if let Some(error) = error {
                    return Err(EmbeddedTlsConnectError::Tls(error));
                }
            }
            #[cfg(feature = "embedded-tls-insecure")]
            Trust::Insecure => {
                let provider =
                    ::embedded_tls::UnsecureProvider::new::<Aes128GcmSha256>(&mut self.rng);
                tls.open(TlsContext::new(&config, provider))
                    .await
                    .map_err(|e| EmbeddedTlsConnectError::Tls(EmbeddedTlsError::from_tls(e)))?;
            }
        }
        debug!("tls handshake done");
        Ok(EmbeddedTlsStream { tls })
    }
}

/// Sits between embedded-tls and the inner transport: collects one whole
/// record in `buf` before handing any of it on, so that a dropped read
/// never leaves embedded-tls holding part of a record.
struct RecordGate<'s, T> {
    io: T,
    buf: &'s mut [u8],
    /// Bytes of the current record collected.
    filled: usize,
    /// Bytes of a complete record already handed on; `None` while
    /// collecting.
    handed: Option<usize>,
}

impl<'s, T> RecordGate<'s, T> {
    fn new(io: T, buf: &'s mut [u8]) -> Self {
        Self {
            io,
            buf,
            filled: 0,
            handed: None,
        }
    }
}

impl<T> ErrorType for RecordGate<'_, T> {
    type Error = ErrorKind;
}

impl<T: Read> Read for RecordGate<'_, T> {
    async fn read(&mut self, out: &mut [u8]) -> Result<usize, ErrorKind> {
        loop {
            if let Some(handed) = self.handed {
                let rest = self.buf.get(handed..self.filled).unwrap_or(&[]);
                let n = rest.len().min(out.len());
                if let (Some(dst), Some(src)) = (out.get_mut(..n), rest.get(..n)) {
                    dst.copy_from_slice(src);
                }
                let handed = handed.saturating_add(n);
                if handed >= self.filled {
                    self.handed = None;
                    self.filled = 0;
                } else {
                    self.handed = Some(handed);
                }
                return Ok(n);
            }
            // The record's full length, once its header is in.
            let want = match self.buf.get(3..RECORD_HEADER_LEN) {
                Some(&[hi, lo]) if self.filled >= RECORD_HEADER_LEN => {
                    RECORD_HEADER_LEN.saturating_add(usize::from(u16::from_be_bytes([hi, lo])))
                }
                _ => RECORD_HEADER_LEN,
            };
            if want > self.buf.len() {
                warn!("tls record of {} bytes exceeds the staging buffer", want);
                return Err(ErrorKind::OutOfMemory);
            }
            if self.filled >= want {
                self.handed = Some(0);
                continue;
            }
            let space = self.buf.get_mut(self.filled..want).unwrap_or(&mut []);
            let n = self
                .io
                .read(space)
                .await
                .map_err(|e| embedded_io_async::Error::kind(&e))?;
            if n == 0 {
                return if self.filled == 0 {
                    Ok(0)
                } else {
                    Err(ErrorKind::ConnectionAborted)
                };
            }
            self.filled = self.filled.saturating_add(n).min(want);
        }
    }
}

impl<T: Write> Write for RecordGate<'_, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.io
            .write(buf)
            .await
            .map_err(|e| embedded_io_async::Error::kind(&e))
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        self.io
            .flush()
            .await
            .map_err(|e| embedded_io_async::Error::kind(&e))
    }
}

/// A TLS 1.3 client stream over transport `T`, as opened by an
/// [`EmbeddedTlsConnector`]. Its `read` is cancel-safe (see the module
/// doc).
pub struct EmbeddedTlsStream<'a, T: Read + Write + 'a> {
    tls: TlsConnection<'a, RecordGate<'a, T>, Aes128GcmSha256>,
}

impl<'a, T: Read + Write + 'a> fmt::Debug for EmbeddedTlsStream<'a, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedTlsStream").finish_non_exhaustive()
    }
}

impl<'a, T: Read + Write + 'a> ErrorType for EmbeddedTlsStream<'a, T> {
    type Error = EmbeddedTlsError;
}

impl<'a, T: Read + Write + 'a> Read for EmbeddedTlsStream<'a, T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, EmbeddedTlsError> {
        match self.tls.read(buf).await {
            Ok(n) => Ok(n),
            // close_notify, or the transport ended at a record boundary
            // (embedded-tls reports a zero-length read as `IoError`).
            Err(TlsError::ConnectionClosed | TlsError::IoError) => Ok(0),
            Err(e) => Err(EmbeddedTlsError::from_tls(e)),
        }
    }
}

impl<'a, T: Read + Write + 'a> Write for EmbeddedTlsStream<'a, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, EmbeddedTlsError> {
        self.tls
            .write(buf)
            .await
            .map_err(EmbeddedTlsError::from_tls)
    }

    async fn flush(&mut self) -> Result<(), EmbeddedTlsError> {
        self.tls.flush().await.map_err(EmbeddedTlsError::from_tls)
    }
}

/// Nothing is sent before the stream is dropped: embedded-tls closes with
/// close_notify only by consuming the connection, which the driver does
/// not own.
impl<'a, T: Read + Write + 'a> super::Transport for EmbeddedTlsStream<'a, T> {}

/// Why an embedded-tls connection (handshake or traffic) failed.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum EmbeddedTlsError {
    /// The server finished the handshake without proving its identity: no
    /// verified Certificate and CertificateVerify (RFC 8446 §4.4.2), which
    /// is what a man in the middle does.
    ServerNotAuthenticated,
    /// The server's certificate chain, name or handshake signature was
    /// rejected; the reason says which check failed.
    CertificateRejected(CertificateError),
    /// The server aborted the handshake with this alert.
    Alert(::embedded_tls::alert::AlertDescription),
    /// A record does not fit the lent buffers (see [`EmbeddedTlsBuffers`]).
    BufferTooSmall(TlsError),
    /// The inner transport failed.
    Io(ErrorKind),
    /// Any other TLS failure embedded-tls reports.
    Tls(TlsError),
}

impl EmbeddedTlsError {
    /// Sorts an embedded-tls error into the variants above.
    pub fn from_tls(error: TlsError) -> Self {
        match error {
            TlsError::InvalidCertificate | TlsError::InvalidCertificateEntry => {
                Self::CertificateRejected(CertificateError::Malformed)
            }
            TlsError::HandshakeAborted(_, alert) => Self::Alert(alert),
            TlsError::InsufficientSpace | TlsError::OutOfMemory => Self::BufferTooSmall(error),
            TlsError::Io(ErrorKind::OutOfMemory) => Self::BufferTooSmall(error),
            TlsError::Io(kind) => Self::Io(kind),
            other => Self::Tls(other),
        }
    }
}

impl fmt::Display for EmbeddedTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerNotAuthenticated => f.write_str(
                "TLS: the server did not authenticate (no verified certificate and \
                 CertificateVerify): refusing the connection",
            ),
            Self::CertificateRejected(reason) => {
                write!(f, "TLS: server certificate rejected: {reason}")
            }
            Self::Alert(alert) => write!(f, "TLS: the server sent alert {alert:?}"),
            Self::BufferTooSmall(e) => {
                write!(f, "TLS: a record does not fit the lent buffers: {e:?}")
            }
            Self::Io(kind) => write!(f, "TLS: transport error: {kind:?}"),
            Self::Tls(e) => write!(f, "TLS: {e:?}"),
        }
    }
}

impl core::error::Error for EmbeddedTlsError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::CertificateRejected(reason) => Some(reason),
            _ => None,
        }
    }
}

impl embedded_io_async::Error for EmbeddedTlsError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Io(kind) => *kind,
            Self::BufferTooSmall(_) => ErrorKind::OutOfMemory,
            _ => ErrorKind::InvalidData,
        }
    }
}

/// Why an [`EmbeddedTlsConnector`] connect failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmbeddedTlsConnectError<E> {
    /// The inner connector failed.
    Inner(E),
    /// The TLS handshake failed.
    Tls(EmbeddedTlsError),
}

impl<E: fmt::Display> fmt::Display for EmbeddedTlsConnectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => write!(f, "{e}"),
            Self::Tls(e) => write!(f, "{e}"),
        }
    }
}

// The inner error is shown in Display rather than `source` (no `'static`
// bound on a connector's error type).
impl<E: core::error::Error> core::error::Error for EmbeddedTlsConnectError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Inner(_) => None,
            Self::Tls(e) => Some(e),
        }
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    extern crate alloc;

    use super::*;
    use crate::transport::TokioTcpConnector;
    use crate::transport::tls_test_peer::{
        ServerScript, TestPki, pki, read_through_dropped_reads, serve_scripted, serve_trickled,
    };
    use alloc::string::{String, ToString};
    use alloc::vec;
    use alloc::vec::Vec;
    use core::time::Duration;

    fn buffers() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (vec![0; 16_640], vec![0; 4096], vec![0; 16_640])
    }

    #[tokio::test]
    async fn read_is_cancel_safe_when_dropped_mid_record() {
        let pki = pki();
        let messages = vec![
            b"first record".to_vec(),
            b"second, a longer record".to_vec(),
        ];
        let expected: Vec<u8> = messages.concat();
        let (port, server) = serve_trickled(&pki, true, messages, Duration::from_millis(1));
        let (mut read, mut write, mut staging) = buffers();
        let mut connector = EmbeddedTlsConnector::new(
            TokioTcpConnector::new("127.0.0.1", port),
            "localhost",
            &pki.ca_der,
            EmbeddedTlsBuffers {
                read: &mut read,
                write: &mut write,
                staging: &mut staging,
            },
            <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1),
        );
        let mut stream = connector.connect().await.unwrap();

        read_through_dropped_reads(&mut stream, &expected).await;
        drop(stream);
        assert_eq!(server.join().unwrap(), b"ping");
    }

    /// Runs embedded-tls's handshake against the scripted server (pinned CA
    /// and name from `pki`); the connector's result and the server's.
    async fn scripted(
        pki: &TestPki,
        script: ServerScript,
    ) -> (Result<(), EmbeddedTlsError>, Result<(), String>) {
        let (port, server) = serve_scripted(vec![pki.server_der()], pki.server_key_pair(), script);
        let (mut read, mut write, mut staging) = buffers();
        let mut connector = EmbeddedTlsConnector::new(
            TokioTcpConnector::new("127.0.0.1", port),
            "localhost",
            &pki.ca_der,
            EmbeddedTlsBuffers {
                read: &mut read,
                write: &mut write,
                staging: &mut staging,
            },
            <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(2),
        );
        let client = match tokio::time::timeout(Duration::from_secs(10), connector.connect())
            .await
            .expect("the handshake ends within 10 s")
        {
            Ok(_) => Ok(()),
            Err(EmbeddedTlsConnectError::Tls(e)) => Err(e),
            Err(e) => panic!("not a TLS failure: {e}"),
        };
        drop(connector);
        (client, server.join().unwrap())
    }

    #[tokio::test]
    async fn scripted_server_full_handshake_is_accepted_control() {
        // Proves the scripted server is a correct TLS 1.3 peer: the
        // failures below are the verifier's, not the script's.
        let pki = pki();
        let (client, server) = scripted(&pki, ServerScript::Full).await;
        client.unwrap();
        assert_eq!(server, Ok(()), "the server checked the client's Finished");
    }

    #[tokio::test]
    async fn rfc8446_4_4_2_server_must_authenticate_with_certificate() {
        // EncryptedExtensions, then Finished: what a man in the middle
        // without the broker's key can send. embedded-tls's open() accepts
        // it (the server even checks the client's Finished); the
        // connector must not.
        let pki = pki();
        let (client, server) = scripted(&pki, ServerScript::NoCertificate).await;
        assert_eq!(server, Ok(()), "embedded-tls finished the handshake");
        let err = client.unwrap_err();
        assert!(
            matches!(err, EmbeddedTlsError::ServerNotAuthenticated),
            "{err:?}"
        );
        assert!(err.to_string().contains("did not authenticate"), "{err}");
    }

    #[tokio::test]
    async fn rfc8446_4_4_3_server_must_send_certificate_verify() {
        // A copied certificate without its key: Certificate, no
        // CertificateVerify.
        let pki = pki();
        let (client, _) = scripted(&pki, ServerScript::CertificateWithoutVerify).await;
        let err = client.unwrap_err();
        assert!(
            matches!(err, EmbeddedTlsError::ServerNotAuthenticated),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn rfc8446_4_4_3_certificate_verify_before_certificate_is_an_error_not_a_panic() {
        let pki = pki();
        let (client, server) = scripted(&pki, ServerScript::VerifyBeforeCertificate).await;
        let err = client.unwrap_err();
        assert!(
            matches!(
                err,
                EmbeddedTlsError::CertificateRejected(
                    CertificateError::CertificateVerifyOutOfOrder
                )
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("before a verified Certificate"),
            "{err}"
        );
        assert!(server.is_err(), "the client must not send its Finished");
    }

    #[tokio::test]
    async fn rfc8446_4_4_3_certificate_verify_by_another_key_is_rejected() {
        let pki = pki();
        let (client, server) = scripted(&pki, ServerScript::VerifyByAnotherKey).await;
        let err = client.unwrap_err();
        assert!(
            matches!(
                err,
                EmbeddedTlsError::CertificateRejected(CertificateError::HandshakeSignatureInvalid)
            ),
            "{err:?}"
        );
        assert!(server.is_err(), "the client must not send its Finished");
    }

    /// A transport that yields fixed bytes, then end of stream. Hand-written:
    /// no real server sends a record larger than the client's buffer on
    /// request.
    struct Canned<'a>(&'a [u8]);

    impl ErrorType for Canned<'_> {
        type Error = ErrorKind;
    }

    impl Read for Canned<'_> {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[tokio::test]
    async fn rfc8446_5_1_record_longer_than_the_staging_buffer_is_an_error() {
        // Application data, TLS 1.2 legacy version, length 0x4000.
        let mut staging = [0u8; 64];
        let mut gate = RecordGate::new(Canned(&[23, 3, 3, 0x40, 0x00, 1, 2, 3]), &mut staging);
        let mut out = [0u8; 16];
        assert_eq!(gate.read(&mut out).await, Err(ErrorKind::OutOfMemory));
    }

    #[tokio::test]
    async fn gate_hands_on_only_whole_records_and_reports_a_truncated_one() {
        let mut staging = [0u8; 64];
        let bytes = [23, 3, 3, 0, 2, 0xAA, 0xBB, 23, 3, 3, 0, 9, 1];
        let mut gate = RecordGate::new(Canned(&bytes), &mut staging);
        let mut out = [0u8; 64];
        let n = gate.read(&mut out).await.unwrap();
        assert_eq!(&out[..n], &bytes[..7]);
        // The second record stops after one of its nine bytes.
        assert_eq!(gate.read(&mut out).await, Err(ErrorKind::ConnectionAborted));
    }
}
