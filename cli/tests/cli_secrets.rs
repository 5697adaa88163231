//! Secrets on the command line (issue 17, finding 5): the password read
//! from `--password-file` or `EMBERMQ_PASSWORD` instead of `-P` (which
//! `ps` shows), against a real mosquitto that checks it (`password_file`
//! made with `mosquitto_passwd -b`), their precedence and errors; and a
//! malformed URL whose error must not repeat its password or query.
//!
//! Every command runs with `-W` (overall timeout) so no test can hang.

use core::time::Duration;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use embermq_tests::peers::free_port;

const USER: &str = "alice";
const PASSWORD: &str = "Corr3ct-horse";

fn embermq() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_embermq"));
    c.env_remove("EMBERMQ_PASSWORD");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// mosquitto accepting only `alice` with [`PASSWORD`].
struct PasswordMosquitto {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PasswordMosquitto {
    fn start() -> Self {
        let port = free_port().unwrap();
        let dir =
            std::env::temp_dir().join(format!("embermq-cli-secrets-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let passwd = dir.join("passwd");
        let made = Command::new("mosquitto_passwd")
            .arg("-c")
            .arg("-b")
            .arg(&passwd)
            .args([USER, PASSWORD])
            .status()
            .expect("mosquitto_passwd runs (Debian's mosquitto package)");
        assert!(made.success());
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous false\npersistence false\n\
                 password_file {}\nlistener {port} 127.0.0.1\nprotocol mqtt\n",
                passwd.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// A file in the broker's scratch directory holding `text`.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for PasswordMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `embermq pub URL -u alice -t a -m x -W 20` plus `extra`, with `env`.
fn publish(broker: &PasswordMosquitto, extra: &[&str], env: Option<&str>) -> Output {
    let mut c = embermq();
    c.args([
        "pub",
        &broker.url(),
        "-u",
        USER,
        "-t",
        "a",
        "-m",
        "x",
        "-W",
        "20",
    ]);
    c.args(extra);
    if let Some(value) = env {
        c.env("EMBERMQ_PASSWORD", value);
    }
    c.output().expect("embermq runs")
}

#[test]
fn mqtt_3_1_3_5_password_from_file_or_environment_is_accepted_by_mosquitto() {
    let broker = PasswordMosquitto::start();
    // The broker does check: no password and a wrong one are refused (6).
    let out = publish(&broker, &[], None);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let out = publish(&broker, &[], Some("wrong"));
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));

    // First line of the file, its line ending stripped (LF and CRLF).
    for (name, text) in [
        ("lf", format!("{PASSWORD}\n")),
        ("crlf", format!("{PASSWORD}\r\nsecond line\n")),
        ("bare", PASSWORD.to_owned()),
    ] {
        let file = broker.file(name, &text);
        let out = publish(&broker, &["--password-file", file.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    }
    let out = publish(&broker, &[], Some(PASSWORD));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Precedence: -P > --password-file > EMBERMQ_PASSWORD > the URL's.
    let good = broker.file("good", PASSWORD);
    let bad = broker.file("bad", "wrong");
    let out = publish(
        &broker,
        &["--password-file", good.to_str().unwrap()],
        Some("wrong"),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "file over env: {}",
        stderr(&out)
    );
    let out = publish(
        &broker,
        &["--password-file", bad.to_str().unwrap()],
        Some(PASSWORD),
    );
    assert_eq!(
        out.status.code(),
        Some(6),
        "file over env: {}",
        stderr(&out)
    );
    let out = publish(&broker, &["-P", PASSWORD], Some("wrong"));
    assert_eq!(out.status.code(), Some(0), "-P over env: {}", stderr(&out));
    let url_with_wrong = format!("mqtt://{USER}:wrong@127.0.0.1:{}", broker.port);
    let out = embermq()
        .args(["pub", &url_with_wrong, "-t", "a", "-m", "x", "-W", "20"])
        .env("EMBERMQ_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "env over URL: {}", stderr(&out));

    // sub takes the same options: accepted, it waits for a message until
    // its timeout (7); with the wrong file it is refused (6).
    for (file, exit) in [(&good, 7), (&bad, 6)] {
        let out = embermq()
            .args([
                "sub",
                &broker.url(),
                "-u",
                USER,
                "-t",
                "a",
                "-C",
                "1",
                "-W",
                "2",
            ])
            .args(["--password-file", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(exit), "sub: {}", stderr(&out));
    }
}

#[test]
fn password_sources_that_conflict_or_cannot_be_read_are_usage_errors() {
    let broker = PasswordMosquitto::start();
    let good = broker.file("good", PASSWORD);
    let out = publish(
        &broker,
        &["-P", PASSWORD, "--password-file", good.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(PASSWORD), "{}", stderr(&out));

    let missing = broker.dir.join("no-such-file");
    let out = publish(
        &broker,
        &["--password-file", missing.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!(
            "embermq: error: --password-file {}: cannot read it",
            missing.display()
        )),
        "{}",
        stderr(&out)
    );
    let empty = broker.file("empty", "");
    let out = publish(&broker, &["--password-file", empty.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the file is empty"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_malformed_url_is_reported_without_its_password_or_query() {
    for (command, url) in [
        (
            "pub",
            "mqtt://alice:Sup3rSecret@broker:99999/?token=QuerySecret",
        ),
        (
            "sub",
            "mqtt://alice:Sup3rSecret@broker/x?X-Amz-Signature=QuerySecret",
        ),
        (
            "demo",
            "wss://alice:Sup3rSecret@broker:0/mqtt?sig=QuerySecret",
        ),
    ] {
        let args: Vec<&str> = match command {
            "demo" => vec!["demo", "--broker", url, "--duration", "1"],
            _ => vec![command, url, "-t", "a", "-m", "x", "-W", "5"],
        };
        let out = embermq().args(&args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("invalid value"), "{err}");
        assert!(err.contains("alice:***@broker"), "{err}");
        assert!(!err.contains("Sup3rSecret"), "{command}: {err}");
        assert!(!err.contains("QuerySecret"), "{command}: {err}");
    }
}
