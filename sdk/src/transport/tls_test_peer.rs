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
    let config = Arc::new(
        builder
            .with_no_client_auth()
            .with_single_cert(alloc::vec![pki.server_cert.clone()], key)
            .unwrap(),
    );
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
