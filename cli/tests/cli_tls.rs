//! `embermq pub` / `sub` over `mqtts://` and `wss://` against mosquitto
//! with TLS listeners and certificates made by rcgen in the test
//! (`embermq_tests::tls`): round trips with `--cafile`, and the one-line
//! errors (exit 5) for the wrong CA, an expired certificate, a wrong host
//! name and a missing client certificate when mTLS is required; mTLS with
//! `--cert` / `--key`; and `--insecure` with its warning.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use embermq_tests::tls::{ClientAuth, ServerCert, TestPki, TlsMosquitto};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embermq"))
        .args(args)
        .output()
        .expect("embermq runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The PKI's PEM files on disk, removed on drop.
struct PemFiles {
    dir: PathBuf,
}

impl PemFiles {
    fn write(pki: &TestPki, tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("embermq-cli-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, pem) in [
            ("ca.pem", &pki.ca.cert_pem),
            ("other-ca.pem", &pki.other_ca.cert_pem),
            ("client.pem", &pki.client.cert_pem),
            ("client.key", &pki.client.key_pem),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        Path::new(&self.dir)
            .join(name)
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for PemFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn urls(broker: &TlsMosquitto) -> [String; 2] {
    [
        format!("mqtts://localhost:{}", broker.mqtts_port),
        format!("wss://localhost:{}/mqtt", broker.wss_port),
    ]
}

#[test]
fn retained_round_trip_over_mqtts_and_wss_with_cafile() {
    let pki = TestPki::generate().unwrap();
    let files = PemFiles::write(&pki, "ok");
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    let ca = files.path("ca.pem");
    for (i, url) in urls(&broker).iter().enumerate() {
        let topic = format!("tls/{i}");
        let out = run(&[
            "pub", url, "--cafile", &ca, "-t", &topic, "-m", "secret", "-r", "-q", "1", "-W", "20",
        ]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        let out = run(&[
            "sub", url, "--cafile", &ca, "-t", &topic, "-C", "1", "-v", "-W", "20",
        ]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{topic} secret\n")
        );
    }
}

/// Runs `pub` against every TLS URL of `broker`; each must fail with exit
/// 5 and one stderr line containing `needle`.
fn assert_tls_failure(broker: &TlsMosquitto, extra: &[&str], needle: &str) {
    for url in urls(broker) {
        let mut args = vec!["pub", &url, "-t", "a", "-m", "x", "-W", "20"];
        args.extend_from_slice(extra);
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(5), "{url}: {err}");
        assert_eq!(err.lines().count(), 1, "{url}: {err}");
        assert!(
            err.starts_with(&format!("embermq: error: TLS with {url}")),
            "{err}"
        );
        assert!(
            err.to_lowercase().contains(needle),
            "{url}: `{needle}` not in {err}"
        );
    }
}

#[test]
fn rfc5280_6_wrong_ca_fails_verification_with_exit_5() {
    let pki = TestPki::generate().unwrap();
    let files = PemFiles::write(&pki, "wrongca");
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    assert_tls_failure(
        &broker,
        &["--cafile", &files.path("other-ca.pem")],
        "issuer",
    );
}

#[test]
fn rfc5280_4_1_2_5_expired_certificate_fails_with_exit_5() {
    let pki = TestPki::generate().unwrap();
    let files = PemFiles::write(&pki, "expired");
    let broker = TlsMosquitto::start(&pki, ServerCert::Expired, ClientAuth::None).unwrap();
    assert_tls_failure(&broker, &["--cafile", &files.path("ca.pem")], "expired");
}

#[test]
fn rfc6125_6_wrong_host_name_fails_with_exit_5() {
    let pki = TestPki::generate().unwrap();
    let files = PemFiles::write(&pki, "name");
    let broker = TlsMosquitto::start(&pki, ServerCert::WrongName, ClientAuth::None).unwrap();
    assert_tls_failure(&broker, &["--cafile", &files.path("ca.pem")], "localhost");
}

#[test]
fn rfc8446_4_4_2_mtls_required_succeeds_with_cert_and_fails_without() {
    let pki = TestPki::generate().unwrap();
    let files = PemFiles::write(&pki, "mtls");
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::Required).unwrap();
    let ca = files.path("ca.pem");
    let (cert, key) = (files.path("client.pem"), files.path("client.key"));
    for url in urls(&broker) {
        let out = run(&[
            "pub", &url, "--cafile", &ca, "--cert", &cert, "--key", &key, "-t", "m", "-m", "x",
            "-q", "1", "-W", "20",
        ]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
    }
    assert_tls_failure(&broker, &["--cafile", &ca], "certificate");
}

#[test]
fn insecure_connects_to_an_untrusted_broker_and_warns() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::WrongName, ClientAuth::None).unwrap();
    for url in urls(&broker) {
        let out = run(&["pub", &url, "--insecure", "-t", "a", "-m", "x", "-W", "20"]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("WARNING: --insecure"),
            "{}",
            stderr(&out)
        );
    }
}
