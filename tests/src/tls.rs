//! TLS peers for the integration tests: a certificate authority and its
//! certificates made fresh by rcgen in every test run (nothing checked in,
//! nothing expires by surprise), and mosquitto with an MQTT-over-TLS
//! (`mqtts`) and an MQTT-over-WebSocket-over-TLS (`wss`) listener.
//!
//! The certificates ([`TestPki`]): a CA; a server certificate for
//! `localhost` and `127.0.0.1`; the same names expired (valid 2020 to
//! 2021); a certificate for another name only; a client certificate (for
//! mutual TLS); and an unrelated CA that signed none of them. Then the
//! chains that test the CA constraints (RFC 5280 §4.2.1.9): a server
//! certificate under an intermediate CA (valid); one signed by the
//! ordinary server certificate, which is no CA (a forgery); one naming
//! `localhost` only in its common name; and one under a self-signed "CA"
//! without basicConstraints cA. A chain's PEM is leaf first, then the
//! certificates the server sends with it. All keys are ECDSA P-256, which
//! both rustls and embedded-tls verify.
//!
//! Not here: any TLS client (the tests use embermq's connectors) and
//! certificate revocation.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Instant;

use embermq::transport::RustlsOptions;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};

use crate::peers::free_port;

/// A certificate with its private key, PEM and DER.
#[derive(Debug, Clone)]
pub struct KeyedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// The CA and the certificates the TLS tests use (see the module doc).
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA every other certificate here is signed by.
    pub ca: KeyedCert,
    /// A CA that signed nothing here ("wrong CA file").
    pub other_ca: KeyedCert,
    /// Server certificate for `localhost` and `127.0.0.1`.
    pub server: KeyedCert,
    /// Server certificate for `localhost` and `127.0.0.1`, expired in 2021.
    pub expired_server: KeyedCert,
    /// Server certificate for `broker.example.invalid` only.
    pub wrong_name_server: KeyedCert,
    /// Client certificate (mutual TLS), CN `embermq-test-client`.
    pub client: KeyedCert,
    /// Server certificate for the server names under an intermediate CA
    /// that the CA signed; the PEM carries the intermediate too.
    pub via_intermediate: KeyedCert,
    /// A certificate for the server names signed by [`Self::server`]'s key
    /// (an end certificate, no CA); the PEM carries the signer too.
    pub forged_by_end_entity: KeyedCert,
    /// Server certificate with `localhost` as its common name and no
    /// subjectAltName.
    pub cn_only: KeyedCert,
    /// A self-signed certificate without basicConstraints cA: pinning it
    /// must not work.
    pub not_a_ca: KeyedCert,
    /// Server certificate for the server names signed by
    /// [`Self::not_a_ca`].
    pub under_not_a_ca: KeyedCert,
}

/// The names on the valid and the expired server certificates.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];
/// The only name on [`TestPki::wrong_name_server`].
pub const OTHER_NAME: &str = "broker.example.invalid";

fn rcgen_err(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("rcgen: {e}"))
}

fn ca_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn make_ca(name: &str) -> Result<(KeyedCert, Issuer<'static, KeyPair>), rcgen::Error> {
    let key = KeyPair::generate()?;
    let params = ca_params(name)?;
    let cert = params.self_signed(&key)?;
    let keyed = KeyedCert {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
    };
    Ok((keyed, Issuer::new(params, key)))
}

fn leaf_params(
    names: &[&str],
    common_name: &str,
    purpose: ExtendedKeyUsagePurpose,
    expired: bool,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![purpose];
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    Ok(params)
}

/// A certificate made from `params` for a fresh key, signed by `issuer`;
/// its PEM followed by `chain_pem` (the certificates sent with it).
fn signed(
    params: &CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
    chain_pem: &str,
) -> Result<(KeyedCert, KeyPair), rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    let keyed = KeyedCert {
        cert_pem: format!("{}{chain_pem}", cert.pem()),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
    };
    Ok((keyed, key))
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    common_name: &str,
    purpose: ExtendedKeyUsagePurpose,
    expired: bool,
) -> Result<KeyedCert, rcgen::Error> {
    let params = leaf_params(names, common_name, purpose, expired)?;
    Ok(signed(&params, issuer, "")?.0)
}

impl TestPki {
    /// Makes a fresh CA and every certificate (ECDSA P-256).
    pub fn generate() -> io::Result<Self> {
        Self::try_generate().map_err(rcgen_err)
    }

    fn try_generate() -> Result<Self, rcgen::Error> {
        let (ca, issuer) = make_ca("embermq test CA")?;
        let (other_ca, _) = make_ca("embermq unrelated CA")?;
        let server_auth = ExtendedKeyUsagePurpose::ServerAuth;
        let server_params = leaf_params(&SERVER_NAMES, "localhost", server_auth.clone(), false)?;
        let (server, server_key) = signed(&server_params, &issuer, "")?;

        // An intermediate CA under the CA, and a server under it.
        let intermediate_params = ca_params("embermq test intermediate")?;
        let (intermediate, intermediate_key) = signed(&intermediate_params, &issuer, "")?;
        let intermediate_issuer = Issuer::new(intermediate_params, intermediate_key);
        let (via_intermediate, _) =
            signed(&server_params, &intermediate_issuer, &intermediate.cert_pem)?;

        // The server's own (end-entity) key signing a certificate for the
        // same names, sent with the server certificate as its "issuer".
        let mut forged_params = server_params.clone();
        forged_params.distinguished_name = DistinguishedName::new();
        forged_params
            .distinguished_name
            .push(DnType::CommonName, "forged localhost");
        let end_entity_issuer = Issuer::new(server_params.clone(), server_key);
        let (forged_by_end_entity, _) =
            signed(&forged_params, &end_entity_issuer, &server.cert_pem)?;

        let mut cn_only_params = leaf_params(&[], "localhost", server_auth.clone(), false)?;
        cn_only_params.subject_alt_names.clear();
        let (cn_only, _) = signed(&cn_only_params, &issuer, "")?;

        // A self-signed certificate that is not a CA, and a server under it.
        let mut not_a_ca_params = ca_params("embermq not a CA")?;
        not_a_ca_params.is_ca = IsCa::ExplicitNoCa;
        not_a_ca_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let not_a_ca_key = KeyPair::generate()?;
        let not_a_ca_cert = not_a_ca_params.self_signed(&not_a_ca_key)?;
        let not_a_ca = KeyedCert {
            cert_pem: not_a_ca_cert.pem(),
            cert_der: not_a_ca_cert.der().to_vec(),
            key_pem: not_a_ca_key.serialize_pem(),
        };
        let (under_not_a_ca, _) = signed(
            &server_params,
            &Issuer::new(not_a_ca_params, not_a_ca_key),
            "",
        )?;

        Ok(Self {
            server,
            via_intermediate,
            forged_by_end_entity,
            cn_only,
            not_a_ca,
            under_not_a_ca,
            expired_server: leaf(
                &issuer,
                &SERVER_NAMES,
                "localhost",
                server_auth.clone(),
                true,
            )?,
            wrong_name_server: leaf(&issuer, &[OTHER_NAME], OTHER_NAME, server_auth, false)?,
            client: leaf(
                &issuer,
                &[],
                "embermq-test-client",
                ExtendedKeyUsagePurpose::ClientAuth,
                false,
            )?,
            ca,
            other_ca,
        })
    }

    /// Client options trusting only this run's CA.
    pub fn trusting_ca(&self) -> RustlsOptions {
        RustlsOptions::ca_pem(self.ca.cert_pem.as_bytes()).expect("the test CA parses")
    }

    /// Client options trusting only `cert` (PEM).
    pub fn trusting(cert: &KeyedCert) -> RustlsOptions {
        RustlsOptions::ca_pem(cert.cert_pem.as_bytes()).expect("the certificate parses")
    }

    /// Client options trusting only the unrelated CA.
    pub fn trusting_other_ca(&self) -> RustlsOptions {
        RustlsOptions::ca_pem(self.other_ca.cert_pem.as_bytes()).expect("the other CA parses")
    }

    /// Client options trusting this run's CA and presenting the client
    /// certificate.
    pub fn trusting_ca_with_client_cert(&self) -> RustlsOptions {
        self.trusting_ca()
            .client_auth_pem(
                self.client.cert_pem.as_bytes(),
                self.client.key_pem.as_bytes(),
            )
            .expect("the client certificate and key parse")
    }
}

/// Which certificate the TLS mosquitto presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCert {
    /// [`TestPki::server`].
    Valid,
    /// [`TestPki::expired_server`].
    Expired,
    /// [`TestPki::wrong_name_server`].
    WrongName,
    /// [`TestPki::via_intermediate`], with the intermediate.
    ViaIntermediate,
    /// [`TestPki::forged_by_end_entity`], with the server certificate
    /// that signed it.
    ForgedByEndEntity,
    /// [`TestPki::cn_only`].
    CnOnly,
    /// [`TestPki::under_not_a_ca`].
    UnderNotACa,
}

/// How the TLS mosquitto treats client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// None asked for.
    None,
    /// Required (`require_certificate true`), verified against the CA.
    Required,
}

/// A fresh, empty temporary directory.
fn temp_dir(tag: &str) -> io::Result<PathBuf> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("embermq-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// mosquitto from PATH, else `/usr/sbin/mosquitto`.
fn mosquitto_binary() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("mosquitto");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let fallback = Path::new("/usr/sbin/mosquitto");
    if fallback.is_file() {
        return Ok(fallback.to_path_buf());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "mosquitto not found on PATH nor at /usr/sbin/mosquitto",
    ))
}

/// mosquitto with an `mqtts` and a `wss` listener on free loopback ports;
/// killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct TlsMosquitto {
    /// MQTT over TLS.
    pub mqtts_port: u16,
    /// MQTT over WebSocket over TLS (path `/mqtt` or any).
    pub wss_port: u16,
    child: Child,
    dir: PathBuf,
}

impl TlsMosquitto {
    /// Starts mosquitto presenting `cert` (signed by `pki.ca`) on both
    /// listeners, with client certificates as `client_auth` says.
    pub fn start(pki: &TestPki, cert: ServerCert, client_auth: ClientAuth) -> io::Result<Self> {
        let binary = mosquitto_binary()?;
        let dir = temp_dir("mosquitto-tls")?;
        let presented = match cert {
            ServerCert::Valid => &pki.server,
            ServerCert::Expired => &pki.expired_server,
            ServerCert::WrongName => &pki.wrong_name_server,
            ServerCert::ViaIntermediate => &pki.via_intermediate,
            ServerCert::ForgedByEndEntity => &pki.forged_by_end_entity,
            ServerCert::CnOnly => &pki.cn_only,
            ServerCert::UnderNotACa => &pki.under_not_a_ca,
        };
        let ca = dir.join("ca.pem");
        let cert_file = dir.join("server.pem");
        let key_file = dir.join("server.key");
        std::fs::write(&ca, &pki.ca.cert_pem)?;
        std::fs::write(&cert_file, &presented.cert_pem)?;
        std::fs::write(&key_file, &presented.key_pem)?;
        let (mqtts_port, wss_port) = (free_port()?, free_port()?);
        let require = match client_auth {
            ClientAuth::None => "",
            ClientAuth::Required => "require_certificate true\n",
        };
        let tls = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n{require}",
            ca.display(),
            cert_file.display(),
            key_file.display()
        );
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\n\
                 listener {mqtts_port} 127.0.0.1\nprotocol mqtt\n{tls}\
                 listener {wss_port} 127.0.0.1\nprotocol websockets\n{tls}"
            ),
        )?;
        let child = crate::peers::spawn_mosquitto(&binary, &config)?;
        let mut broker = Self {
            mqtts_port,
            wss_port,
            child,
            dir,
        };
        broker.wait_accepting(Duration::from_secs(10))?;
        Ok(broker)
    }

    fn wait_accepting(&mut self, limit: Duration) -> io::Result<()> {
        let start = Instant::now();
        for port in [self.mqtts_port, self.wss_port] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if let Some(status) = self.child.try_wait()? {
                    return Err(io::Error::other(format!(
                        "mosquitto exited early: {status}"
                    )));
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                    break;
                }
                if start.elapsed() > limit {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("mosquitto not accepting on port {port}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

impl Drop for TlsMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
