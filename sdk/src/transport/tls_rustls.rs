//! TLS on hosts through rustls (feature `rustls`): `mqtts://` and, under a
//! WebSocket connector, `wss://`.
//!
//! [`RustlsConnector`] wraps any [`Connector`]: it opens the inner transport
//! (usually [`TokioTcpConnector`]), runs a TLS 1.3 or 1.2 client handshake
//! (RFC 8446, RFC 5246) over it and hands the client a [`RustlsStream`].
//! `WsConnector<RustlsConnector<TokioTcpConnector>>` is MQTT over `wss://`.
//! The trust anchors, client certificate and ALPN list come from
//! [`RustlsOptions`]:
//!
//! - roots: Mozilla's through `webpki-roots` (the default, the same on every
//!   host), the operating system's through `rustls-native-certs`, or only
//!   the CA certificates given in PEM (a private CA, a pinned cloud root);
//! - a client certificate chain and key in PEM (mutual TLS, e.g. AWS IoT
//!   Core on 8883);
//! - the server name for SNI and verification (by default the host the
//!   inner TCP connector dials; RFC 6066 §3);
//! - ALPN protocols (RFC 7301), e.g. `mqtt`, or `x-amzn-mqtt-ca` for AWS
//!   IoT Core's MQTT with client certificates on port 443.
//!
//! Verification is on unless [`RustlsOptions::danger_accept_invalid_certs`]
//! is called, which is meant for the command line tool's `--insecure`
//! only. A failed verification is a [`RustlsError`] that names the reason:
//! unknown issuer, expired, wrong name, the server's alert, or I/O.
//!
//! # Cancel safety
//!
//! [`RustlsStream`]'s `read` is cancel-safe: the client drops read futures
//! whenever it has something to send or a timer fires. Every `.await`
//! inside `read` is a read of the inner transport (itself cancel-safe) or
//! the sending of already-encrypted bytes whose progress is kept in the
//! stream; ciphertext is handed to rustls only after an inner read
//! completed, synchronously. Dropping a `read` therefore loses no byte.
//! `write` is not cancel-safe (the client never drops one).
//!
//! # Not here
//!
//! Session resumption across reconnects beyond what rustls does by itself,
//! certificate revocation (CRLs, OCSP), raw public keys, and any TLS on
//! devices (see `embedded_tls`). The crypto provider is rustls' `ring`
//! (builds without cmake).

extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use std::io;
use std::path::{Path, PathBuf};

use ::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use ::rustls::crypto::CryptoProvider;
use ::rustls::pki_types::pem::PemObject;
use ::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use ::rustls::{ClientConfig, ClientConnection, RootCertStore};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};

use super::{Connector, TokioTcpConnector};

/// rustls' types that appear in this module's API: the server's alert
/// ([`RustlsError::Alert`]) and the certificate failures
/// ([`RustlsError::Certificate`]).
pub use ::rustls::{AlertDescription, CertificateError};

/// Ciphertext read from the inner transport at a time: one largest TLS
/// record (2^14 bytes of plaintext plus 256 of expansion and a 5-byte
/// header, RFC 8446 §5.2).
const CIPHERTEXT_CHUNK: usize = 16 * 1024 + 256 + 5;

/// Where the trust anchors for verifying the server come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Roots {
    /// Mozilla's root program through `webpki-roots`, compiled in: the same
    /// on every host, independent of the system's store (the default).
    #[default]
    WebPki,
    /// The operating system's store through `rustls-native-certs`
    /// (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured).
    System,
    /// No built-in roots: only the CA certificates added with
    /// [`RustlsOptions::add_ca_pem`] or [`RustlsOptions::add_ca_file`].
    CustomOnly,
}

/// How a [`RustlsConnector`] verifies the server and identifies itself.
///
/// Build it with [`RustlsOptions::new`] (webpki roots),
/// [`RustlsOptions::with_roots`], or [`RustlsOptions::ca_file`] /
/// [`RustlsOptions::ca_pem`] (trust only a given CA).
#[derive(Debug, Default)]
pub struct RustlsOptions {
    roots: Roots,
    extra_cas: Vec<CertificateDer<'static>>,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: Vec<Vec<u8>>,
    accept_invalid_certs: bool,
}

impl RustlsOptions {
    /// Verifies against Mozilla's roots (`webpki-roots`), no client
    /// certificate, no ALPN.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies against `roots`.
    pub fn with_roots(roots: Roots) -> Self {
        Self {
            roots,
            ..Self::default()
        }
    }

    /// Trusts only the CA certificates in the PEM file at `path` (like
    /// `mosquitto_pub --cafile`).
    pub fn ca_file(path: impl AsRef<Path>) -> Result<Self, RustlsConfigError> {
        Self::with_roots(Roots::CustomOnly).add_ca_file(path)
    }

    /// Trusts only the CA certificates in `pem`.
    pub fn ca_pem(pem: &[u8]) -> Result<Self, RustlsConfigError> {
        Self::with_roots(Roots::CustomOnly).add_ca_pem(pem)
    }

    /// Adds every certificate in the PEM file at `path` to the trust
    /// anchors.
    pub fn add_ca_file(self, path: impl AsRef<Path>) -> Result<Self, RustlsConfigError> {
        let path = path.as_ref();
        let pem = read_file(path)?;
        self.add_cas(&pem, PemSource::File(path.to_path_buf()))
    }

    /// Adds every certificate in `pem` to the trust anchors.
    pub fn add_ca_pem(self, pem: &[u8]) -> Result<Self, RustlsConfigError> {
        self.add_cas(pem, PemSource::Memory)
    }

    fn add_cas(mut self, pem: &[u8], source: PemSource) -> Result<Self, RustlsConfigError> {
        let certs = parse_certs(pem, &source, PemItem::CaCertificate)?;
        self.extra_cas.extend(certs);
        Ok(self)
    }

    /// Presents a client certificate (mutual TLS): the chain (leaf first)
    /// and its private key (PKCS#8, SEC1 or PKCS#1), both PEM files.
    pub fn client_auth_files(
        self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, RustlsConfigError> {
        let (cert_path, key_path) = (cert_chain.as_ref(), key.as_ref());
        let chain = read_file(cert_path)?;
        let key = read_file(key_path)?;
        self.client_auth_from(
            &chain,
            PemSource::File(cert_path.to_path_buf()),
            &key,
            PemSource::File(key_path.to_path_buf()),
        )
    }

    /// Presents a client certificate (mutual TLS): the chain (leaf first)
    /// and its private key, both PEM in memory.
    pub fn client_auth_pem(self, cert_chain: &[u8], key: &[u8]) -> Result<Self, RustlsConfigError> {
        self.client_auth_from(cert_chain, PemSource::Memory, key, PemSource::Memory)
    }

    fn client_auth_from(
        mut self,
        chain: &[u8],
        chain_source: PemSource,
        key: &[u8],
        key_source: PemSource,
    ) -> Result<Self, RustlsConfigError> {
        let chain = parse_certs(chain, &chain_source, PemItem::ClientCertificate)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|error| RustlsConfigError::Pem {
            item: PemItem::ClientKey,
            source: key_source,
            error,
        })?;
        self.client_auth = Some((chain, key));
        Ok(self)
    }

    /// Offers these ALPN protocols (RFC 7301), in order of preference, e.g.
    /// `["mqtt"]`, or `["x-amzn-mqtt-ca"]` for AWS IoT Core on port 443.
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: &[P]) -> Self {
        self.alpn = protocols.iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// **Turns server verification off**: any certificate, from any
    /// issuer, for any name, expired or not, is accepted (the handshake
    /// signature is still checked against the presented key). Anyone on
    /// the path can read and change the traffic. Meant only for the command
    /// line tool's `--insecure`, which warns loudly; never for a product.
    pub fn danger_accept_invalid_certs(mut self) -> Self {
        self.accept_invalid_certs = true;
        self
    }

    /// Whether [`Self::danger_accept_invalid_certs`] was called.
    pub fn accepts_invalid_certs(&self) -> bool {
        self.accept_invalid_certs
    }

    /// The rustls client configuration these options describe (ring
    /// provider, TLS 1.3 and 1.2).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, RustlsConfigError> {
        let provider = Arc::new(::rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(RustlsConfigError::Rustls)?;
        let builder = if self.accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { provider }))
        } else {
            builder.with_root_certificates(self.root_store()?)
        };
        let mut config = match &self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(RustlsConfigError::Rustls)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }

    fn root_store(&self) -> Result<RootCertStore, RustlsConfigError> {
        let mut store = RootCertStore::empty();
        match self.roots {
            Roots::WebPki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(RustlsConfigError::NoSystemRoots {
                        errors: found.errors.len(),
                    });
                }
            }
            Roots::CustomOnly => {}
        }
        for ca in &self.extra_cas {
            store
                .add(ca.clone())
                .map_err(|_| RustlsConfigError::InvalidCaCertificate)?;
        }
        if store.is_empty() {
            return Err(RustlsConfigError::NoTrustAnchors);
        }
        Ok(store)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, RustlsConfigError> {
    std::fs::read(path).map_err(|source| RustlsConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_certs(
    pem: &[u8],
    source: &PemSource,
    item: PemItem,
) -> Result<Vec<CertificateDer<'static>>, RustlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| RustlsConfigError::Pem {
            item,
            source: source.clone(),
            error,
        })?;
    if certs.is_empty() {
        return Err(RustlsConfigError::Pem {
            item,
            source: source.clone(),
            error: ::rustls::pki_types::pem::Error::NoItemsFound,
        });
    }
    Ok(certs)
}

/// The verifier behind [`RustlsOptions::danger_accept_invalid_certs`]:
/// accepts any certificate chain, still checks the handshake signature.
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, ::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &::rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, ::rustls::Error> {
        ::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &::rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, ::rustls::Error> {
        ::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<::rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A [`Connector`] that runs a rustls TLS client over the transports of
/// connector `C`.
pub struct RustlsConnector<C> {
    inner: C,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl<C> fmt::Debug for RustlsConnector<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsConnector")
            .field("server_name", &self.server_name)
            .field("alpn", &self.config.alpn_protocols.len())
            .finish_non_exhaustive()
    }
}

impl RustlsConnector<TokioTcpConnector> {
    /// `mqtts://host:port`: TLS over tokio TCP, verifying (and sending as
    /// SNI) `host`, a DNS name or an IP literal.
    pub fn tcp(
        host: impl Into<String>,
        port: u16,
        options: &RustlsOptions,
    ) -> Result<Self, RustlsConfigError> {
        let tcp = TokioTcpConnector::new(host, port);
        let host = tcp.host().to_owned();
        Self::new(tcp, &host, options)
    }
}

impl<C: Connector> RustlsConnector<C> {
    /// TLS over `inner`, verifying the server as `server_name` (a DNS name,
    /// sent as SNI, or an IP address literal).
    pub fn new(
        inner: C,
        server_name: &str,
        options: &RustlsOptions,
    ) -> Result<Self, RustlsConfigError> {
        Ok(Self::from_config(
            inner,
            parse_server_name(server_name)?,
            options.client_config()?,
        ))
    }

    /// TLS over `inner` with a ready rustls configuration (for settings
    /// [`RustlsOptions`] does not offer).
    pub fn from_config(
        inner: C,
        server_name: ServerName<'static>,
        config: Arc<ClientConfig>,
    ) -> Self {
        Self {
            inner,
            config,
            server_name,
        }
    }

    /// Verifies (and sends as SNI) `server_name` instead, e.g. when the
    /// inner connector dials an address but the certificate names a host.
    pub fn with_server_name(mut self, server_name: &str) -> Result<Self, RustlsConfigError> {
        self.server_name = parse_server_name(server_name)?;
        Ok(self)
    }

    /// The name the server's certificate is verified against.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    /// The inner connector.
    pub fn inner(&self) -> &C {
        &self.inner
    }
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>, RustlsConfigError> {
    ServerName::try_from(name.to_owned()).map_err(|_| RustlsConfigError::InvalidServerName {
        name: name.to_owned(),
    })
}

impl<C: Connector> Connector for RustlsConnector<C> {
    type Transport<'a>
        = RustlsStream<C::Transport<'a>>
    where
        Self: 'a;
    type Error = RustlsConnectError<C::Error>;

    async fn connect(&mut self) -> Result<Self::Transport<'_>, Self::Error> {
        let io = self
            .inner
            .connect()
            .await
            .map_err(RustlsConnectError::Inner)?;
        let conn = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(|e| RustlsConnectError::Tls(RustlsError::from_rustls(e)))?;
        let mut stream = RustlsStream::new(io, conn);
        stream.handshake().await.map_err(RustlsConnectError::Tls)?;
        debug!("tls handshake done");
        Ok(stream)
    }
}

/// A TLS client stream over transport `T`, as opened by a
/// [`RustlsConnector`]. Its `read` is cancel-safe (see the module doc).
pub struct RustlsStream<T> {
    io: T,
    conn: ClientConnection,
    /// Ciphertext read from `io`, `incoming[in_start..in_end]` not yet
    /// handed to rustls.
    incoming: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    /// Ciphertext taken from rustls, `outgoing[out_pos..]` not yet written.
    outgoing: Vec<u8>,
    out_pos: usize,
    /// The inner transport reported end of stream.
    eof: bool,
}

impl<T> fmt::Debug for RustlsStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsStream")
            .field("handshaking", &self.conn.is_handshaking())
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl<T: Read + Write> RustlsStream<T> {
    fn new(io: T, conn: ClientConnection) -> Self {
        Self {
            io,
            conn,
            incoming: alloc::vec![0u8; CIPHERTEXT_CHUNK].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            outgoing: Vec::new(),
            out_pos: 0,
            eof: false,
        }
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The negotiated TLS version.
    pub fn protocol_version(&self) -> Option<::rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The inner transport.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    async fn handshake(&mut self) -> Result<(), RustlsError> {
        match self.handshake_steps().await {
            Err(e @ (RustlsError::Io(_) | RustlsError::Closed)) => Err(e),
            Err(e) => {
                // Tell the server why (the alert rustls queued), best effort.
                let _ = self.send_pending().await;
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    async fn handshake_steps(&mut self) -> Result<(), RustlsError> {
        while self.conn.is_handshaking() {
            self.send_pending().await?;
            if !self.conn.is_handshaking() {
                break;
            }
            if self.in_start < self.in_end {
                self.feed()?;
                continue;
            }
            if self.eof {
                return Err(RustlsError::Closed);
            }
            self.fill().await?;
        }
        // TLS 1.3: the client's Finished (and certificate) go out now.
        self.send_pending().await
    }

    /// Reads one chunk of ciphertext from the inner transport. Cancel-safe:
    /// nothing is consumed before the inner read completes.
    async fn fill(&mut self) -> Result<(), RustlsError> {
        let n = self
            .io
            .read(&mut self.incoming)
            .await
            .map_err(|e| RustlsError::Io(embedded_io_async::Error::kind(&e)))?;
        self.in_start = 0;
        self.in_end = n.min(self.incoming.len());
        if n == 0 {
            self.eof = true;
            // Tells rustls the peer closed (close_notify or not).
            let _ = self.conn.read_tls(&mut &[][..]);
            self.process()?;
        } else {
            self.feed()?;
        }
        Ok(())
    }

    /// Hands buffered ciphertext to rustls (as much as it takes now).
    fn feed(&mut self) -> Result<(), RustlsError> {
        let mut pending = self.incoming.get(self.in_start..self.in_end).unwrap_or(&[]);
        let before = pending.len();
        let taken = self.conn.read_tls(&mut pending);
        let used = before.saturating_sub(pending.len());
        self.in_start = self.in_start.saturating_add(used).min(self.in_end);
        match taken {
            Ok(n) if n > 0 || before == 0 => self.process(),
            // rustls takes nothing while its plaintext buffer is full; it
            // takes the rest once the reader drained it. Refusing with
            // nothing to read would never end: an error.
            refused => {
                let state = self
                    .conn
                    .process_new_packets()
                    .map_err(RustlsError::from_rustls)?;
                match refused {
                    _ if state.plaintext_bytes_to_read() > 0 => Ok(()),
                    Err(e) => Err(RustlsError::Io(io_kind(e.kind()))),
                    Ok(_) => Err(RustlsError::Io(ErrorKind::OutOfMemory)),
                }
            }
        }
    }

    fn process(&mut self) -> Result<(), RustlsError> {
        match self.conn.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => {
                // rustls queued an alert for the server; it is sent on a
                // best-effort basis by `send_pending` (not awaited here).
                warn!("tls: {:?}", e);
                Err(RustlsError::from_rustls(e))
            }
        }
    }

    /// Writes the ciphertext rustls has for the server. Progress is kept in
    /// `self`, so a dropped call resumes where it stopped.
    async fn send_pending(&mut self) -> Result<(), RustlsError> {
        loop {
            if let Some(rest) = self.outgoing.get(self.out_pos..)
                && !rest.is_empty()
            {
                let n = self
                    .io
                    .write(rest)
                    .await
                    .map_err(|e| RustlsError::Io(embedded_io_async::Error::kind(&e)))?;
                if n == 0 {
                    return Err(RustlsError::Io(ErrorKind::WriteZero));
                }
                self.out_pos = self.out_pos.saturating_add(n);
                continue;
            }
            self.outgoing.clear();
            self.out_pos = 0;
            if !self.conn.wants_write() {
                return Ok(());
            }
            self.conn
                .write_tls(&mut self.outgoing)
                .map_err(|e| RustlsError::Io(io_kind(e.kind())))?;
        }
    }
}

fn io_kind(kind: io::ErrorKind) -> ErrorKind {
    match kind {
        io::ErrorKind::UnexpectedEof => ErrorKind::ConnectionAborted,
        io::ErrorKind::InvalidData => ErrorKind::InvalidData,
        io::ErrorKind::WriteZero => ErrorKind::WriteZero,
        _ => ErrorKind::Other,
    }
}

impl<T> ErrorType for RustlsStream<T> {
    type Error = RustlsError;
}

impl<T: Read + Write> Read for RustlsStream<T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, RustlsError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match io::Read::read(&mut self.conn.reader(), buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: MQTT frames its packets, so
                // a truncation is seen by the session; report end of stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(RustlsError::Io(io_kind(e.kind()))),
            }
            if self.in_start < self.in_end {
                self.feed()?;
                continue;
            }
            // Alerts or key-update answers rustls wants sent.
            self.send_pending().await?;
            if self.eof {
                return Ok(0);
            }
            self.fill().await?;
        }
    }
}

impl<T: Read + Write> Write for RustlsStream<T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, RustlsError> {
        self.send_pending().await?;
        if buf.is_empty() {
            return Ok(0);
        }
        let n = io::Write::write(&mut self.conn.writer(), buf)
            .map_err(|e| RustlsError::Io(io_kind(e.kind())))?;
        self.send_pending().await?;
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), RustlsError> {
        self.send_pending().await?;
        self.io
            .flush()
            .await
            .map_err(|e| RustlsError::Io(embedded_io_async::Error::kind(&e)))
    }
}

/// Sends close_notify (RFC 8446 §6.1) before the connection is dropped,
/// so the server sees a clean end rather than a truncation.
impl<T: Read + Write> super::Transport for RustlsStream<T> {
    async fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = Write::flush(self).await;
    }
}

/// Why a TLS connection (handshake or traffic) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RustlsError {
    /// The server's certificate chain does not lead to a trusted root: the
    /// wrong CA file, or a self-signed or private-CA server.
    UnknownIssuer,
    /// The server's certificate (or one in its chain) has expired.
    Expired {
        /// Its `notAfter`, seconds since the Unix epoch, when known.
        not_after: Option<u64>,
        /// The time it was checked at, seconds since the Unix epoch.
        now: Option<u64>,
    },
    /// The server's certificate is not valid yet (or the clock is wrong).
    NotYetValid,
    /// The server's certificate is for other names than the one dialled.
    NameMismatch {
        /// The name that was expected (SNI), when known.
        expected: Option<String>,
        /// The names the certificate carries.
        presented: Vec<String>,
    },
    /// Another certificate problem (bad signature, revoked, wrong purpose,
    /// unsupported algorithm, ...).
    Certificate(CertificateError),
    /// The server aborted with a fatal alert: e.g. `certificate_required`
    /// (mutual TLS without a client certificate), `bad_certificate`,
    /// `handshake_failure`, `no_application_protocol`.
    Alert(AlertDescription),
    /// Any other TLS failure rustls reports (protocol, decryption, ...).
    Protocol(::rustls::Error),
    /// The connection closed before the handshake finished.
    Closed,
    /// The inner transport failed.
    Io(ErrorKind),
    /// A record, or a handshake message spanning records, is larger than
    /// the lent receive buffer of `capacity` bytes (a
    /// [`RustlsLentConnector`](super::RustlsLentConnector) limit; lend
    /// [`TLS_RECORD_BUFFER_LEN`](super::TLS_RECORD_BUFFER_LEN) to accept
    /// every record).
    ReceiveBufferFull {
        /// The receive buffer's size.
        capacity: usize,
    },
    /// A record to send needs `required` bytes of the lent transmit buffer
    /// of `capacity` bytes (a
    /// [`RustlsLentConnector`](super::RustlsLentConnector) limit).
    TransmitBufferTooSmall {
        /// The transmit buffer's size.
        capacity: usize,
        /// The bytes the record needed.
        required: usize,
    },
    /// The connection ended in the middle of a record: `buffered` bytes of
    /// an unfinished record had arrived.
    TruncatedRecord {
        /// The bytes of the unfinished record.
        buffered: usize,
    },
}

impl RustlsError {
    /// Sorts a rustls error into the variants above.
    pub fn from_rustls(error: ::rustls::Error) -> Self {
        use ::rustls::Error as E;
        match error {
            E::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer => Self::UnknownIssuer,
                CertificateError::Expired => Self::Expired {
                    not_after: None,
                    now: None,
                },
                CertificateError::ExpiredContext { time, not_after } => Self::Expired {
                    not_after: Some(not_after.as_secs()),
                    now: Some(time.as_secs()),
                },
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Self::NotYetValid
                }
                CertificateError::NotValidForName => Self::NameMismatch {
                    expected: None,
                    presented: Vec::new(),
                },
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                } => Self::NameMismatch {
                    expected: Some(expected.to_str().into_owned()),
                    presented: presented.iter().map(|n| bare_name(n)).collect(),
                },
                other => Self::Certificate(other),
            },
            E::AlertReceived(alert) => Self::Alert(alert),
            other => Self::Protocol(other),
        }
    }
}

/// A presented name as rustls words it (`DnsName("a.example")`,
/// `IpAddress(..)`), without the wrapper.
fn bare_name(presented: &str) -> String {
    let inner = presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"').to_owned()
}

/// The civil date (year, month, day) of a day count since 1970-01-01
/// (proleptic Gregorian; H. Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

impl fmt::Display for RustlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIssuer => f.write_str(
                "TLS: server certificate has an unknown issuer (not signed by a trusted CA; \
                 check the CA file)",
            ),
            Self::Expired { not_after, now } => {
                f.write_str("TLS: server certificate expired")?;
                if let Some(not_after) = not_after {
                    let (y, m, d) = civil_date(i64::try_from(*not_after / 86_400).unwrap_or(0));
                    write!(f, " on {y:04}-{m:02}-{d:02}")?;
                    if let Some(now) = now {
                        write!(f, ", {} days ago", now.saturating_sub(*not_after) / 86_400)?;
                    }
                }
                Ok(())
            }
            Self::NotYetValid => {
                f.write_str("TLS: server certificate not valid yet (check the clock)")
            }
            Self::NameMismatch {
                expected,
                presented,
            } => {
                f.write_str("TLS: server certificate name mismatch")?;
                if let Some(expected) = expected {
                    write!(f, ": dialled {expected}")?;
                }
                if !presented.is_empty() {
                    write!(f, ", certificate is for {}", presented.join(", "))?;
                }
                Ok(())
            }
            Self::Certificate(e) => write!(f, "TLS: invalid server certificate: {e}"),
            Self::Alert(alert) => match alert {
                AlertDescription::CertificateRequired => f.write_str(
                    "TLS: the server requires a client certificate (alert certificate_required)",
                ),
                AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied => write!(
                    f,
                    "TLS: the server rejected the client certificate (alert {alert:?})"
                ),
                AlertDescription::NoApplicationProtocol => f.write_str(
                    "TLS: the server accepts none of the offered ALPN protocols \
                     (alert no_application_protocol)",
                ),
                AlertDescription::HandshakeFailure => f.write_str(
                    "TLS: the server aborted the handshake (alert handshake_failure: no common \
                     version or cipher suite, or a client certificate missing)",
                ),
                other => write!(f, "TLS: the server sent alert {other:?}"),
            },
            Self::Protocol(e) => write!(f, "TLS: {e}"),
            Self::Closed => f.write_str("TLS: the connection closed during the handshake"),
            Self::Io(kind) => write!(f, "TLS: transport error: {kind:?}"),
            Self::ReceiveBufferFull { capacity } => write!(
                f,
                "TLS: a record larger than the receive buffer of {capacity} bytes"
            ),
            Self::TransmitBufferTooSmall { capacity, required } => write!(
                f,
                "TLS: a record needs {required} bytes, more than the transmit buffer of \
                 {capacity} bytes"
            ),
            Self::TruncatedRecord { buffered } => write!(
                f,
                "TLS: the connection ended in the middle of a record ({buffered} bytes of it \
                 had arrived)"
            ),
        }
    }
}

impl core::error::Error for RustlsError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl embedded_io_async::Error for RustlsError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Io(kind) => *kind,
            Self::Closed | Self::TruncatedRecord { .. } => ErrorKind::ConnectionAborted,
            Self::ReceiveBufferFull { .. } | Self::TransmitBufferTooSmall { .. } => {
                ErrorKind::OutOfMemory
            }
            // A refused client certificate: the client reports the kind
            // only, and "permission denied" says it best.
            Self::Alert(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied,
            ) => ErrorKind::PermissionDenied,
            _ => ErrorKind::InvalidData,
        }
    }
}

/// Why a [`RustlsConnector`] connect failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RustlsConnectError<E> {
    /// The inner connector failed (DNS, refused, ...).
    Inner(E),
    /// The TLS handshake failed.
    Tls(RustlsError),
}

impl<E> RustlsConnectError<E> {
    /// The TLS failure, if the handshake is what failed.
    pub fn tls(&self) -> Option<&RustlsError> {
        match self {
            Self::Tls(e) => Some(e),
            Self::Inner(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for RustlsConnectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => write!(f, "{e}"),
            Self::Tls(e) => write!(f, "{e}"),
        }
    }
}

// The inner error is shown in Display rather than `source` (no `'static`
// bound on a connector's error type), as in `embermq::transport::WsConnectError`.
impl<E: core::error::Error> core::error::Error for RustlsConnectError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Inner(_) => None,
            Self::Tls(e) => Some(e),
        }
    }
}

/// Which PEM item a configuration error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemItem {
    /// A CA certificate to trust.
    CaCertificate,
    /// The client certificate chain.
    ClientCertificate,
    /// The client's private key.
    ClientKey,
}

impl fmt::Display for PemItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CaCertificate => "CA certificate",
            Self::ClientCertificate => "client certificate",
            Self::ClientKey => "client private key",
        })
    }
}

/// Where PEM text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemSource {
    /// A file.
    File(PathBuf),
    /// Bytes in memory.
    Memory,
}

/// Why [`RustlsOptions`] could not become a TLS configuration.
#[derive(Debug)]
#[non_exhaustive]
pub enum RustlsConfigError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A PEM item is malformed or missing.
    Pem {
        /// What was being read.
        item: PemItem,
        /// Where from.
        source: PemSource,
        /// The parser's error (`NoItemsFound` when there was none).
        error: ::rustls::pki_types::pem::Error,
    },
    /// A CA certificate is not a usable trust anchor.
    InvalidCaCertificate,
    /// [`Roots::System`] was asked for and the system store gave no
    /// certificate.
    NoSystemRoots {
        /// How many errors loading the store reported.
        errors: usize,
    },
    /// No trust anchor at all ([`Roots::CustomOnly`] without a CA).
    NoTrustAnchors,
    /// The server name is neither a DNS name nor an IP address.
    InvalidServerName {
        /// The name given.
        name: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match
    /// the certificate).
    Rustls(::rustls::Error),
}

impl fmt::Display for RustlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            Self::Pem {
                item,
                source,
                error,
            } => {
                write!(f, "invalid {item} PEM")?;
                if let PemSource::File(path) = source {
                    write!(f, " in {}", path.display())?;
                }
                write!(f, ": {error}")
            }
            Self::InvalidCaCertificate => {
                f.write_str("a CA certificate is not a valid trust anchor")
            }
            Self::NoSystemRoots { errors } => write!(
                f,
                "no CA certificate found in the system store ({errors} errors while loading)"
            ),
            Self::NoTrustAnchors => f.write_str("no CA certificate to trust"),
            Self::InvalidServerName { name } => {
                write!(f, "{name:?} is not a valid TLS server name")
            }
            Self::Rustls(e) => write!(f, "TLS configuration refused: {e}"),
        }
    }
}

impl core::error::Error for RustlsConfigError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Pem { error, .. } => Some(error),
            Self::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tls_test_peer::{pki, read_through_dropped_reads, serve_trickled};
    use alloc::string::ToString;
    use alloc::vec;
    use core::time::Duration;

    #[tokio::test]
    async fn read_is_cancel_safe_when_dropped_mid_record() {
        let pki = pki();
        let messages = vec![
            b"first record".to_vec(),
            b"second, a longer record".to_vec(),
        ];
        let expected: Vec<u8> = messages.concat();
        let (port, server) = serve_trickled(&pki, false, messages, Duration::from_millis(1));
        let options = RustlsOptions::ca_pem(pki.ca_pem.as_bytes()).unwrap();
        let mut connector = RustlsConnector::tcp("localhost", port, &options).unwrap();
        let mut stream = connector.connect().await.unwrap();

        read_through_dropped_reads(&mut stream, &expected).await;
        drop(stream);
        assert_eq!(server.join().unwrap(), b"ping");
    }

    #[tokio::test]
    async fn untrusted_server_is_an_unknown_issuer_unless_verification_is_turned_off() {
        let pki = pki();
        // Verified against Mozilla's roots, the test CA is unknown.
        let (port, server) = serve_trickled(&pki, false, vec![], Duration::ZERO);
        let mut connector = RustlsConnector::tcp("localhost", port, &RustlsOptions::new()).unwrap();
        let err = connector.connect().await.err().unwrap();
        assert!(
            matches!(err, RustlsConnectError::Tls(RustlsError::UnknownIssuer)),
            "{err:?}"
        );
        let _ = server.join();

        let (port, server) = serve_trickled(&pki, false, vec![], Duration::ZERO);
        let options = RustlsOptions::new().danger_accept_invalid_certs();
        assert!(options.accepts_invalid_certs());
        let mut connector = RustlsConnector::tcp("localhost", port, &options).unwrap();
        let mut stream = connector.connect().await.unwrap();
        stream.write_all(b"x").await.unwrap();
        stream.flush().await.unwrap();
        drop(stream);
        assert_eq!(server.join().unwrap(), b"x");
    }

    #[test]
    fn ca_pem_without_a_certificate_is_an_error_naming_the_item() {
        let err = RustlsOptions::ca_pem(b"no certificate here").unwrap_err();
        assert!(
            matches!(
                err,
                RustlsConfigError::Pem {
                    item: PemItem::CaCertificate,
                    source: PemSource::Memory,
                    error: ::rustls::pki_types::pem::Error::NoItemsFound,
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "invalid CA certificate PEM: no items found"
        );
    }

    #[test]
    fn missing_ca_file_is_a_read_error_naming_the_path() {
        let err = RustlsOptions::ca_file("/nonexistent/embermq-ca.pem").unwrap_err();
        assert!(matches!(err, RustlsConfigError::Read { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/embermq-ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn custom_only_roots_without_a_ca_are_refused() {
        let err = RustlsOptions::with_roots(Roots::CustomOnly)
            .client_config()
            .unwrap_err();
        assert!(matches!(err, RustlsConfigError::NoTrustAnchors), "{err:?}");
    }

    #[test]
    fn rfc6066_3_server_name_must_be_a_dns_name_or_an_ip_address() {
        let tcp = TokioTcpConnector::new("127.0.0.1", 8883);
        let err = RustlsConnector::new(tcp, "not a host name!", &RustlsOptions::new()).unwrap_err();
        assert!(
            matches!(err, RustlsConfigError::InvalidServerName { ref name } if name == "not a host name!"),
            "{err:?}"
        );
        let ip = RustlsConnector::tcp("127.0.0.1", 8883, &RustlsOptions::new()).unwrap();
        assert!(matches!(ip.server_name(), ServerName::IpAddress(_)));
    }

    #[test]
    fn expiry_date_is_shown_as_a_civil_date() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(18_628), (2021, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        let err = RustlsError::Expired {
            not_after: Some(1_609_459_200),
            now: Some(1_609_459_200 + 3 * 86_400 + 5),
        };
        assert_eq!(
            err.to_string(),
            "TLS: server certificate expired on 2021-01-01, 3 days ago"
        );
    }

    #[test]
    fn presented_names_lose_the_rustls_wrapper() {
        assert_eq!(bare_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(bare_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(bare_name("plain"), "plain");
    }

    #[test]
    fn alpn_protocols_reach_the_rustls_configuration_in_order() {
        let config = RustlsOptions::new()
            .alpn(&["x-amzn-mqtt-ca", "mqtt"])
            .client_config()
            .unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"x-amzn-mqtt-ca".to_vec(), b"mqtt".to_vec()]
        );
    }
}
