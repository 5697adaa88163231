//! Test-only peer for the TLS connectors' unit tests: certificates made by
//! rcgen (a CA and a `localhost` server certificate, ECDSA P-256) and a
//! rustls server on a thread that sends its application data one byte at a
//! time, so that a client's reads are cut short mid-record.
//!
//! rustls is a real TLS server; only the byte-by-byte pacing of its output
//! is ours (no real peer lets a test choose where TCP segments end).

extern crate alloc;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::thread::JoinHandle;

use ::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA and a server certificate for `localhost` it signed.
// rustls' tests take the CA as PEM, embedded-tls's as DER; with only one
// of the two features on, the other field is unused.
#[cfg_attr(
    not(all(feature = "rustls", feature = "embedded-tls")),
    allow(dead_code)
)]
pub(crate) struct TestPki {
    pub(crate) ca_pem: String,
    pub(crate) ca_der: Vec<u8>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

pub(crate) fn pki() -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "unit test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(alloc::vec![String::from("localhost")]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        server_cert: cert.der().clone(),
        server_key: key.serialize_der(),
    }
}

#[cfg(all(feature = "embedded-tls", feature = "tokio"))]
impl TestPki {
    /// The server certificate (DER).
    pub(crate) fn server_der(&self) -> Vec<u8> {
        self.server_cert.to_vec()
    }

    /// The server certificate's key.
    pub(crate) fn server_key_pair(&self) -> KeyPair {
        KeyPair::try_from(self.server_key.as_slice()).unwrap()
    }
}

/// A rustls server configuration presenting `pki`'s server certificate,
/// TLS 1.3 only when `tls13_only`.
fn server_config(pki: &TestPki, tls13_only: bool) -> Arc<::rustls::ServerConfig> {
    let provider = Arc::new(::rustls::crypto::ring::default_provider());
    let builder = ::rustls::ServerConfig::builder_with_provider(provider);
    let builder = if tls13_only {
        builder
            .with_protocol_versions(&[&::rustls::version::TLS13])
            .unwrap()
    } else {
        builder.with_safe_default_protocol_versions().unwrap()
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone()));
    Arc::new(
        builder
            .with_no_client_auth()
            .with_single_cert(alloc::vec![pki.server_cert.clone()], key)
            .unwrap(),
    )
}

/// Reads `expected` from `stream` while a timer about as long as the
/// server's pause between bytes keeps dropping the read (most reads are
/// dropped with part of a record received): a cancel-safe read loses and
/// repeats nothing. Bounded at 10 s (a stream that lost bytes would wait
/// for ever); at least 5 reads must have been dropped. Then writes `ping`.
pub(crate) async fn read_through_dropped_reads<S>(stream: &mut S, expected: &[u8])
where
    S: embedded_io_async::Read + embedded_io_async::Write,
    S::Error: core::fmt::Debug,
{
    use embassy_futures::select::{Either, select};
    let (mut got, mut dropped) = (Vec::new(), 0u32);
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(10), async {
        while got.len() < expected.len() {
            match select(
                stream.read(&mut buf),
                tokio::time::sleep(Duration::from_micros(100)),
            )
            .await
            {
                Either::First(n) => {
                    let n = n.unwrap();
                    assert!(n > 0, "end of stream before all data");
                    got.extend_from_slice(&buf[..n]);
                }
                Either::Second(()) => dropped += 1,
            }
        }
    })
    .await
    .expect("every byte arrives within 10 s");
    assert_eq!(got, expected);
    assert!(dropped >= 5, "only {dropped} reads were dropped");
    stream.write_all(b"ping").await.unwrap();
    stream.flush().await.unwrap();
}

/// Serves one TLS connection on 127.0.0.1 (TLS 1.3 only when
/// `tls13_only`): after the handshake it sends each of `messages` as its
/// own record, the record's bytes one at a time `pause` apart; then it
/// returns everything the client sent until it closed.
pub(crate) fn serve_trickled(
    pki: &TestPki,
    tls13_only: bool,
    messages: Vec<Vec<u8>>,
    pause: Duration,
) -> (u16, JoinHandle<Vec<u8>>) {
    let config = server_config(pki, tls13_only);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut conn = ::rustls::ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        // Session tickets and the like go out whole.
        while conn.wants_write() {
            conn.write_tls(&mut tcp).unwrap();
        }
        for message in messages {
            conn.writer().write_all(&message).unwrap();
            let mut records = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut records).unwrap();
            }
            for byte in records {
                tcp.write_all(&[byte]).unwrap();
                std::thread::sleep(pause);
            }
        }
        let mut stream = ::rustls::StreamOwned::new(conn, tcp);
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        // Until the client closes (with or without close_notify).
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    (port, server)
}

/// Serves one TLS 1.3 connection on 127.0.0.1 with rustls; after the
/// handshake, writes to the TCP stream whatever `raw` makes of the
/// connection (records encrypted by it, cut or altered) and closes. A
/// **fault injector**: no real server sends a cut or oversized record on
/// request; everything before the raw bytes is a real rustls server.
#[cfg(feature = "rustls")]
pub(crate) fn serve_then_raw(
    pki: &TestPki,
    raw: impl FnOnce(&mut ::rustls::ServerConnection) -> Vec<u8> + Send + 'static,
) -> (u16, JoinHandle<()>) {
    let config = server_config(pki, true);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut conn = ::rustls::ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        while conn.wants_write() {
            conn.write_tls(&mut tcp).unwrap();
        }
        let bytes = raw(&mut conn);
        tcp.write_all(&bytes).unwrap();
        tcp.flush().unwrap();
        // Give the client time to read before the close.
        std::thread::sleep(Duration::from_millis(200));
    });
    (port, server)
}

/// What the scripted TLS 1.3 server ([`serve_scripted`]) sends between
/// EncryptedExtensions and its Finished.
#[cfg(all(feature = "embedded-tls", feature = "tokio"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerScript {
    /// Certificate, CertificateVerify: a correct handshake (the control).
    Full,
    /// Neither: what a man in the middle without the key sends.
    NoCertificate,
    /// Certificate only.
    CertificateWithoutVerify,
    /// CertificateVerify first, then Certificate.
    VerifyBeforeCertificate,
    /// Certificate, and a CertificateVerify signed by another key.
    VerifyByAnotherKey,
}

#[cfg(all(feature = "embedded-tls", feature = "tokio"))]
pub(crate) use scripted::serve_scripted;

/// A scripted TLS 1.3 server (RFC 8446): a **fault injector**, written
/// for the device verifier's tests because no real server (rustls
/// included) can be made to omit its Certificate or to send its
/// CertificateVerify first. It speaks just enough TLS 1.3 for one
/// handshake with embedded-tls: it reads the ClientHello, answers with
/// `TLS_AES_128_GCM_SHA256` and a secp256r1 key share, derives the
/// handshake keys (§7.1), sends EncryptedExtensions, what the
/// [`ServerScript`] says, and a correct Finished (§4.4.4), then checks the
/// client's Finished. No application data, no HelloRetryRequest, no
/// alerts, no session tickets.
#[cfg(all(feature = "embedded-tls", feature = "tokio"))]
mod scripted {
    use super::*;

    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes128Gcm, Nonce};
    use hkdf::Hkdf;
    use hmac::{Hmac, Mac};
    use p256::PublicKey;
    use p256::ecdh::EphemeralSecret;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use rcgen::SigningKey as _;
    use sha2::{Digest, Sha256};
    use std::net::TcpStream;

    use super::ServerScript;

    const HANDSHAKE: u8 = 22;
    const APPLICATION_DATA: u8 = 23;
    const CHANGE_CIPHER_SPEC: u8 = 20;

    type Failure = alloc::string::String;

    fn fail<T>(what: &str) -> Result<T, Failure> {
        Err(what.into())
    }

    fn read_record(tcp: &mut TcpStream) -> Result<(u8, Vec<u8>), Failure> {
        let mut header = [0u8; 5];
        tcp.read_exact(&mut header)
            .map_err(|e| alloc::format!("reading a record header: {e}"))?;
        let mut body = alloc::vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
        tcp.read_exact(&mut body)
            .map_err(|e| alloc::format!("reading a record: {e}"))?;
        Ok((header[0], body))
    }

    fn write(tcp: &mut TcpStream, bytes: &[u8]) -> Result<(), Failure> {
        tcp.write_all(bytes)
            .map_err(|e| alloc::format!("writing to the client: {e}"))
    }

    /// A handshake message: type, 24-bit length, body.
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len()).unwrap().to_be_bytes();
        let mut m = alloc::vec![kind, len[1], len[2], len[3]];
        m.extend_from_slice(body);
        m
    }

    /// HKDF-Expand-Label (RFC 8446 §7.1).
    fn expand_label(secret: &[u8], label: &str, context: &[u8], len: usize) -> Vec<u8> {
        let full = alloc::format!("tls13 {label}");
        let mut info = Vec::new();
        info.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        info.push(u8::try_from(full.len()).unwrap());
        info.extend_from_slice(full.as_bytes());
        info.push(u8::try_from(context.len()).unwrap());
        info.extend_from_slice(context);
        let mut out = alloc::vec![0u8; len];
        Hkdf::<Sha256>::from_prk(secret)
            .unwrap()
            .expand(&info, &mut out)
            .unwrap();
        out
    }

    /// One direction's handshake record protection (§5.2, §5.3).
    struct Protection {
        aead: Aes128Gcm,
        iv: Vec<u8>,
        sequence: u64,
        finished_key: Vec<u8>,
    }

    impl Protection {
        fn new(traffic_secret: &[u8]) -> Self {
            Self {
                aead: Aes128Gcm::new_from_slice(&expand_label(traffic_secret, "key", &[], 16))
                    .unwrap(),
                iv: expand_label(traffic_secret, "iv", &[], 12),
                sequence: 0,
                finished_key: expand_label(traffic_secret, "finished", &[], 32),
            }
        }

        fn nonce(&mut self) -> Vec<u8> {
            let mut nonce = self.iv.clone();
            for (n, s) in nonce[4..].iter_mut().zip(self.sequence.to_be_bytes()) {
                *n ^= s;
            }
            self.sequence += 1;
            nonce
        }

        fn seal(&mut self, content_type: u8, plaintext: &[u8]) -> Vec<u8> {
            let mut inner = plaintext.to_vec();
            inner.push(content_type);
            let len = u16::try_from(inner.len() + 16).unwrap().to_be_bytes();
            let header = [APPLICATION_DATA, 3, 3, len[0], len[1]];
            let nonce = self.nonce();
            let sealed = self
                .aead
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &inner,
                        aad: &header,
                    },
                )
                .unwrap();
            let mut record = header.to_vec();
            record.extend_from_slice(&sealed);
            record
        }

        fn open(&mut self, body: &[u8]) -> Result<(u8, Vec<u8>), Failure> {
            let len = u16::try_from(body.len()).unwrap().to_be_bytes();
            let header = [APPLICATION_DATA, 3, 3, len[0], len[1]];
            let nonce = self.nonce();
            let mut inner = self
                .aead
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: body,
                        aad: &header,
                    },
                )
                .map_err(|_| Failure::from("the client's record does not decrypt"))?;
            while inner.last() == Some(&0) {
                inner.pop();
            }
            let content_type = inner.pop().ok_or("an empty inner plaintext")?;
            Ok((content_type, inner))
        }

        /// The Finished message over `transcript` (§4.4.4).
        fn finished(&self, transcript: &Sha256) -> Vec<u8> {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.finished_key).unwrap();
            mac.update(&transcript.clone().finalize());
            message(20, &mac.finalize().into_bytes())
        }
    }

    /// The client's secp256r1 key share from a ClientHello body (§4.1.2,
    /// §4.2.8), or a description of what is missing.
    fn client_key_share(hello: &[u8]) -> Result<Vec<u8>, Failure> {
        let mut at = 2 + 32; // legacy_version, random
        let take = |at: &mut usize, n: usize| -> Result<&[u8], Failure> {
            let field = hello.get(*at..*at + n).ok_or("a short ClientHello")?;
            *at += n;
            Ok(field)
        };
        let session = usize::from(take(&mut at, 1)?[0]);
        take(&mut at, session)?;
        let suites = take(&mut at, 2)?;
        let suites = usize::from(u16::from_be_bytes([suites[0], suites[1]]));
        take(&mut at, suites)?;
        let compression = usize::from(take(&mut at, 1)?[0]);
        take(&mut at, compression)?;
        let total = take(&mut at, 2)?;
        let end = at + usize::from(u16::from_be_bytes([total[0], total[1]]));
        while at < end {
            let kind = take(&mut at, 2)?;
            let len = take(&mut at, 2)?;
            let data = take(&mut at, usize::from(u16::from_be_bytes([len[0], len[1]])))?;
            if kind == [0, 51] {
                // client_shares: u16 length, then group, u16 length, key.
                let mut i = 2;
                while i + 4 <= data.len() {
                    let group = [data[i], data[i + 1]];
                    let n = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
                    let key = data.get(i + 4..i + 4 + n).ok_or("a short key share")?;
                    if group == [0, 0x17] {
                        return Ok(key.to_vec());
                    }
                    i += 4 + n;
                }
            }
        }
        fail("no secp256r1 key share in the ClientHello")
    }

    /// A CertificateVerify message (§4.4.3) over `transcript` by `key`.
    fn certificate_verify(key: &rcgen::KeyPair, transcript: &Sha256) -> Vec<u8> {
        let mut content = alloc::vec![0x20u8; 64];
        content.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
        content.extend_from_slice(&transcript.clone().finalize());
        let signature = key.sign(&content).unwrap();
        let mut body = alloc::vec![0x04, 0x03]; // ecdsa_secp256r1_sha256
        body.extend_from_slice(&u16::try_from(signature.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&signature);
        message(15, &body)
    }

    /// A Certificate message (§4.4.2) carrying `chain`, leaf first.
    fn certificate(chain: &[Vec<u8>]) -> Vec<u8> {
        let mut list = Vec::new();
        for der in chain {
            let len = u32::try_from(der.len()).unwrap().to_be_bytes();
            list.extend_from_slice(&len[1..]);
            list.extend_from_slice(der);
            list.extend_from_slice(&[0, 0]); // no extensions
        }
        let len = u32::try_from(list.len()).unwrap().to_be_bytes();
        let mut body = alloc::vec![0]; // empty certificate_request_context
        body.extend_from_slice(&len[1..]);
        body.extend_from_slice(&list);
        message(11, &body)
    }

    fn handshake(
        tcp: &mut TcpStream,
        chain: &[Vec<u8>],
        key: &rcgen::KeyPair,
        script: ServerScript,
    ) -> Result<(), Failure> {
        let (kind, client_hello) = read_record(tcp)?;
        if kind != HANDSHAKE || client_hello.first() != Some(&1) {
            return fail("the first record is not a ClientHello");
        }
        let client_share = client_key_share(client_hello.get(4..).unwrap_or(&[]))?;
        let mut transcript = Sha256::new();
        transcript.update(&client_hello);

        let secret = EphemeralSecret::random(&mut rand::rngs::OsRng);
        let share = secret.public_key().to_encoded_point(false);
        let mut body = alloc::vec![3, 3];
        body.extend_from_slice(&[0x5a; 32]); // random
        body.extend_from_slice(&[0, 0x13, 0x01, 0]); // no session id, suite, compression
        let mut extensions = alloc::vec![0, 43, 0, 2, 3, 4]; // supported_versions: TLS 1.3
        extensions.extend_from_slice(&[0, 51, 0, 69, 0, 0x17, 0, 65]);
        extensions.extend_from_slice(share.as_bytes());
        body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&extensions);
        let server_hello = message(2, &body);
        transcript.update(&server_hello);
        let len = u16::try_from(server_hello.len()).unwrap().to_be_bytes();
        let mut record = alloc::vec![HANDSHAKE, 3, 3, len[0], len[1]];
        record.extend_from_slice(&server_hello);
        write(tcp, &record)?;

        // The key schedule (§7.1) up to the handshake traffic secrets.
        let client_point = PublicKey::from_sec1_bytes(&client_share)
            .map_err(|_| Failure::from("the client's key share is not a P-256 point"))?;
        let shared = secret.diffie_hellman(&client_point);
        let zeros = [0u8; 32];
        let (early, _) = Hkdf::<Sha256>::extract(Some(&zeros), &zeros);
        let derived = expand_label(&early, "derived", &Sha256::digest(b""), 32);
        let (handshake_secret, _) =
            Hkdf::<Sha256>::extract(Some(&derived), shared.raw_secret_bytes());
        let hello_hash = transcript.clone().finalize();
        let mut server = Protection::new(&expand_label(
            &handshake_secret,
            "s hs traffic",
            &hello_hash,
            32,
        ));
        let mut client = Protection::new(&expand_label(
            &handshake_secret,
            "c hs traffic",
            &hello_hash,
            32,
        ));

        // The client may hang up as soon as it rejects a message.
        let mut send = |tcp: &mut TcpStream, transcript: &mut Sha256, msg: Vec<u8>| {
            transcript.update(&msg);
            write(tcp, &server.seal(HANDSHAKE, &msg))
        };
        send(tcp, &mut transcript, message(8, &[0, 0]))?; // EncryptedExtensions
        let other_key;
        match script {
            ServerScript::Full => {
                send(tcp, &mut transcript, certificate(chain))?;
                let verify = certificate_verify(key, &transcript);
                send(tcp, &mut transcript, verify)?;
            }
            ServerScript::NoCertificate => {}
            ServerScript::CertificateWithoutVerify => {
                send(tcp, &mut transcript, certificate(chain))?;
            }
            ServerScript::VerifyBeforeCertificate => {
                let verify = certificate_verify(key, &transcript);
                send(tcp, &mut transcript, verify)?;
                send(tcp, &mut transcript, certificate(chain))?;
            }
            ServerScript::VerifyByAnotherKey => {
                other_key = rcgen::KeyPair::generate().unwrap();
                send(tcp, &mut transcript, certificate(chain))?;
                let verify = certificate_verify(&other_key, &transcript);
                send(tcp, &mut transcript, verify)?;
            }
        }
        let finished = server.finished(&transcript);
        transcript.update(&finished);
        write(tcp, &server.seal(HANDSHAKE, &finished))?;

        // The client's Finished, after any compatibility ChangeCipherSpec.
        let expected = client.finished(&transcript);
        loop {
            let (kind, body) = read_record(tcp)?;
            match kind {
                CHANGE_CIPHER_SPEC => continue,
                APPLICATION_DATA => {
                    let (inner, plaintext) = client.open(&body)?;
                    if inner == HANDSHAKE && plaintext == expected {
                        return Ok(());
                    }
                    return fail("the client's Finished is wrong");
                }
                _ => return fail("the client sent an unexpected record (an alert?)"),
            }
        }
    }

    /// Serves one handshake on 127.0.0.1 presenting `chain` (DER, leaf
    /// first) with `key` as the [`ServerScript`] says; the thread's result
    /// is `Ok` once the client's Finished verified.
    pub(crate) fn serve_scripted(
        chain: Vec<Vec<u8>>,
        key: rcgen::KeyPair,
        script: ServerScript,
    ) -> (u16, JoinHandle<Result<(), Failure>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            handshake(&mut tcp, &chain, &key, script)
        });
        (port, server)
    }
}
