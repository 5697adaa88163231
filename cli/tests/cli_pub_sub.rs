//! The `embermq` binary run as a user runs it: `pub` and `sub` against a
//! real mosquitto (TCP and WebSocket listeners on free ports), the output
//! formats, `--count`, and the one-line errors with their exit codes
//! (docs/cli.md): connection refused (3), WebSocket upgrade refused (4),
//! CONNECT refused by mosquitto with
//! `allow_anonymous false` (6), no CONNACK (7), usage (2); TLS (5) is in
//! `cli_tls.rs`. And `demo
//! --duration` with the embedded broker and against mosquitto.
//!
//! Every command runs with `-W` (overall timeout) so no test can hang.

use core::time::Duration;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use embermq_tests::peers::{Mosquitto, RestartableMosquitto, free_port};

fn embermq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_embermq"))
}

/// Runs `embermq args...` to completion.
fn run(args: &[&str]) -> Output {
    embermq().args(args).output().expect("embermq runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A running `embermq sub -d ...`, started once it reported every
/// subscription (so what is published next reaches it).
struct Sub {
    child: Child,
    stderr_rest: mpsc::Receiver<String>,
}

impl Sub {
    fn start(args: &[&str]) -> Sub {
        let mut child = embermq()
            .arg("sub")
            .arg("-d")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("embermq sub starts");
        let topics = args.iter().filter(|a| **a == "-t").count();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = 0;
        let mut log = Vec::new();
        while seen < topics {
            let line = rx
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| panic!("sub did not subscribe; stderr: {log:?}"));
            if line.contains("subscribed to") {
                seen += 1;
            }
            log.push(line);
        }
        Sub {
            child,
            stderr_rest: rx,
        }
    }

    /// Waits (15 s at most) for a stderr line containing `needle`; the
    /// lines before it.
    fn wait_stderr(&mut self, needle: &str) -> Vec<String> {
        let mut log = Vec::new();
        loop {
            let line = self
                .stderr_rest
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| panic!("no `{needle}` on stderr; saw {log:?}"));
            let found = line.contains(needle);
            log.push(line);
            if found {
                return log;
            }
        }
    }

    /// Waits for the exit; stdout, the exit code and the rest of stderr.
    fn finish(mut self) -> (String, Option<i32>, String) {
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut out).expect("stdout readable");
        }
        let status = self.child.wait().expect("sub exits");
        let rest: Vec<String> = self.stderr_rest.try_iter().collect();
        (out, status.code(), rest.join("\n"))
    }
}

#[test]
fn pub_sub_round_trip_over_mqtt_tcp_prints_topic_and_payload() {
    let broker = Mosquitto::start().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
    let sub = Sub::start(&[&url, "-t", "cli/tcp/#", "-v", "-C", "1", "-W", "20"]);
    let out = run(&[
        "pub",
        &url,
        "-t",
        "cli/tcp/a",
        "-m",
        "hello",
        "-q",
        "1",
        "-W",
        "20",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (text, code, err) = sub.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(text, "cli/tcp/a hello\n");
}

#[test]
fn mqtt_6_pub_sub_over_websocket_with_count_and_jsonl() {
    let broker = Mosquitto::start().unwrap();
    let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
    // sub exits after 3 of the 5 messages pub sends.
    let sub = Sub::start(&[
        &url, "-t", "cli/ws/+", "-q", "1", "-C", "3", "-o", "jsonl", "-W", "20",
    ]);
    let out = run(&[
        "pub",
        &url,
        "-t",
        "cli/ws/j",
        "-m",
        r#"{"temp_c":21.5}"#,
        "-q",
        "1",
        "-C",
        "5",
        "--v311",
        "-W",
        "20",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (text, code, err) = sub.finish();
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in lines {
        assert_eq!(
            line,
            serde_json::json!({"topic":"cli/ws/j","qos":1,"retain":false,"payload":{"temp_c":21.5}})
        );
    }
}

#[test]
fn mqtt_5_3_3_2_3_request_properties_reach_the_subscriber_in_jsonl() {
    let broker = Mosquitto::start().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
    let sub = Sub::start(&[
        &url, "-t", "cli/req", "--v5", "-C", "1", "-o", "jsonl", "-W", "20",
    ]);
    let out = run(&[
        "pub",
        &url,
        "--v5",
        "-t",
        "cli/req",
        "-m",
        "ping",
        "--response-topic",
        "cli/reply/1",
        "--correlation-data",
        "c-42",
        "-D",
        "origin=test",
        "-W",
        "20",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (text, code, err) = sub.finish();
    assert_eq!(code, Some(0), "{err}");
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        line,
        serde_json::json!({
            "topic": "cli/req", "qos": 0, "retain": false, "payload": "ping",
            "response_topic": "cli/reply/1", "correlation_data": "c-42",
            "user_properties": [["origin", "test"]]
        })
    );
}

#[test]
fn mqtt_3_3_1_3_retained_message_from_file_seen_by_a_later_sub_in_json_output() {
    let broker = Mosquitto::start().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
    let file = std::env::temp_dir().join(format!("embermq-cli-{}.json", std::process::id()));
    std::fs::write(&file, br#"{"a":[1,2]}"#).unwrap();
    let out = run(&[
        "pub",
        &url,
        "-t",
        "cli/ret",
        "-f",
        file.to_str().unwrap(),
        "-r",
        "-q",
        "1",
        "-W",
        "20",
    ]);
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&[
        "sub", &url, "-t", "cli/ret", "-C", "1", "-o", "json", "-W", "20",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
}

#[test]
fn sub_timeout_ends_with_0_without_count_and_7_when_count_not_reached() {
    let broker = Mosquitto::start().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
    let out = run(&["sub", &url, "-t", "cli/quiet", "-W", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&["sub", &url, "-t", "cli/quiet", "-C", "1", "-W", "1"]);
    assert_eq!(out.status.code(), Some(7));
    let err = stderr(&out);
    assert!(
        err.contains("--timeout 1s expired after 0 of 1 message(s)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn connection_refused_is_one_line_with_exit_3() {
    let port = free_port().unwrap();
    for url in [
        format!("mqtt://127.0.0.1:{port}"),
        format!("ws://127.0.0.1:{port}/mqtt"),
    ] {
        let out = run(&["pub", &url, "-t", "a", "-m", "x", "-W", "20"]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!(
                "embermq: error: cannot connect to {url}: connection refused by 127.0.0.1:{port}\n"
            )
        );
    }
}

/// Fault injector (no real broker answers an upgrade with a chosen status):
/// a TCP listener that reads one request and answers `status`.
fn http_refuser(status: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let reply =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = std::io::Write::write_all(&mut conn, reply.as_bytes());
        }
    });
    port
}

#[test]
fn rfc6455_4_1_upgrade_answered_404_or_401_names_the_status_with_exit_4() {
    for status in ["404 Not Found", "401 Unauthorized"] {
        let port = http_refuser(status);
        let url = format!("ws://127.0.0.1:{port}/wrong");
        let out = run(&["sub", &url, "-t", "a", "-W", "20"]);
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("embermq: error: websocket upgrade to {url} refused: HTTP {status}\n")
        );
    }
}

/// mosquitto refusing anonymous clients.
struct ClosedMosquitto {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl ClosedMosquitto {
    fn start() -> Self {
        let port = free_port().unwrap();
        let dir =
            std::env::temp_dir().join(format!("embermq-cli-auth-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous false\npersistence false\n\
                 listener {port} 127.0.0.1\nprotocol mqtt\n"
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
}

impl Drop for ClosedMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn mqtt_3_2_2_3_connect_refused_names_the_reason_code_with_exit_6() {
    let broker = ClosedMosquitto::start();
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    // 5.0 CONNACK 0x87; 3.1.1 return code 5, reported as the same reason.
    for version in ["--v5", "--v311"] {
        let out = run(&["pub", &url, "-t", "a", "-m", "x", version, "-W", "20"]);
        assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("embermq: error: broker at {url} refused CONNECT: 0x87 Not authorized\n")
        );
    }
}

#[test]
fn mqtt_3_1_4_no_connack_is_a_timeout_with_exit_7() {
    // Fault injector: accepts TCP and never answers CONNECT.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let out = run(&[
        "pub",
        &url,
        "-t",
        "a",
        "-m",
        "x",
        "--v5",
        "--connect-timeout",
        "1",
        "-W",
        "20",
    ]);
    drop(listener);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!("embermq: error: no CONNACK from {url} in time (see --connect-timeout)\n")
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["pub", "http://x", "-t", "a", "-m", "x"][..],
        &["pub", "mqtt://x", "-t", "a"][..],
        &["pub", "mqtt://x", "-t", "a", "-m", "x", "-q", "3"][..],
        &["sub", "mqtt://x"][..],
        &[
            "pub",
            "mqtt://127.0.0.1:1",
            "-t",
            "a",
            "-m",
            "x",
            "--cafile",
            "/x",
        ][..],
        &[
            "pub",
            "mqtt://127.0.0.1:1",
            "-t",
            "a",
            "-f",
            "/nonexistent/file",
        ][..],
        &[
            "pub",
            "mqtts://127.0.0.1:1",
            "-t",
            "a",
            "-m",
            "x",
            "--cafile",
            "/nonexistent/ca.pem",
        ][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

/// The summary line's `name N` figure.
fn figure(summary: &str, name: &str) -> u64 {
    summary
        .split([',', ':'])
        .find_map(|part| part.trim().strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in {summary}"))
}

#[test]
fn demo_with_the_embedded_broker_exits_0_after_duration_with_nothing_lost() {
    // Any free port: tests run in parallel (the default is 9001).
    let out = run(&["demo", "--duration", "3", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let summary = text.lines().last().unwrap_or_default();
    assert!(summary.contains("5 devices"), "{text}");
    let sent = figure(summary, "sent");
    assert!(sent >= 20, "{text}");
    assert_eq!(figure(summary, "received"), sent, "{text}");
    assert_eq!(figure(summary, "lost"), 0, "{text}");
}

#[test]
fn demo_against_mosquitto_over_websocket_with_broker_flag() {
    let broker = Mosquitto::start().unwrap();
    let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
    let out = run(&[
        "demo",
        "--broker",
        &url,
        "--devices",
        "3",
        "--duration",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let summary = text.lines().last().unwrap_or_default();
    let sent = figure(summary, "sent");
    assert!(sent >= 10, "{text}");
    assert_eq!(figure(summary, "lost"), 0, "{text}");
}

/// `sub` reconnects as `mosquitto_sub` does: a broker killed, down for a
/// second and restarted without persistence (it forgot the session and
/// the subscription) between two messages; the link comes back, the
/// subscription is sent again, both messages are printed.
#[test]
fn sub_reconnects_and_resubscribes_after_the_broker_restarts() {
    let mut broker = RestartableMosquitto::start_with(false).unwrap();
    let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
    let mut sub = Sub::start(&[&url, "-t", "cli/re/#", "-q", "1", "-C", "2", "-W", "30"]);
    let publish = |payload: &str| {
        let out = run(&[
            "pub", &url, "-t", "cli/re/a", "-m", payload, "-q", "1", "-W", "10",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    publish("one");
    // The broker forwards before it acknowledges; give the subscriber's
    // side of loopback a moment before the broker goes away.
    std::thread::sleep(Duration::from_millis(300));
    // Down for a second: longer than the driver's own retry, so `sub`
    // itself backs off and connects again.
    broker.kill().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    broker.restart().unwrap();
    let log = sub.wait_stderr("subscriptions restored");
    assert!(
        log.iter().any(|l| l.contains("link lost")),
        "no reconnect reported: {log:?}"
    );
    publish("two");
    let (text, code, err) = sub.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(text, "one\ntwo\n");
}

/// Failing to connect the first time is still the connect failure (exit 3),
/// not a reconnect loop.
#[test]
fn sub_that_never_connected_exits_with_the_connect_failure() {
    let port = free_port().unwrap();
    let url = format!("mqtt://127.0.0.1:{port}");
    let out = run(&["sub", &url, "-t", "a", "-W", "10"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}
