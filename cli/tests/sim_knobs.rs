//! `embermq sim` end to end, for what `sim_fleet.rs` leaves out: the TLS
//! links (`mqtts://` and `wss://` against mosquitto with TLS listeners and
//! a CA made by rcgen in the test, `--cafile`, and the wrong CA refused),
//! and the fault knobs `--herd`, `--pause-at`/`--pause-for` and
//! `--command-every`, each on a small fleet for a few seconds, asserted
//! from the JSON report.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use embermq_tests::peers::Mosquitto;
use embermq_tests::tls::{ClientAuth, ServerCert, TestPki, TlsMosquitto};
use serde_json::Value;

/// A fresh path in the temp dir for one run.
fn temp_path(tag: &str, ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("embermq-sim-{tag}-{}.{ext}", std::process::id()))
}

/// Runs `embermq sim` with `devices` devices all started at once
/// (`--herd`) against `broker`, `--cafile` when given, the options in
/// `knobs` (separated by spaces), `--quiet` and a report file; returns the
/// process output and the parsed report, which must have been written.
fn sim(
    tag: &str,
    devices: u64,
    broker: &str,
    cafile: Option<&Path>,
    knobs: &str,
) -> (Output, Value) {
    let report = temp_path(tag, "json");
    let out = Command::new(env!("CARGO_BIN_EXE_embermq"))
        .arg("sim")
        .args([
            "--devices",
            &devices.to_string(),
            "--broker",
            broker,
            "--herd",
        ])
        .args(
            cafile
                .into_iter()
                .flat_map(|ca| [OsStr::new("--cafile"), ca.as_os_str()]),
        )
        .args(knobs.split_whitespace())
        .arg("--quiet")
        .arg("--report")
        .arg(&report)
        .output()
        .expect("embermq runs");
    let json = std::fs::read(&report)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&report);
    assert!(json.is_object(), "{tag}: no report; {}", text(&out));
    (out, json)
}

/// mosquitto with TLS listeners and a valid server certificate from a fresh
/// test PKI (no client certificates asked).
fn tls_broker() -> (TestPki, TlsMosquitto) {
    let pki = TestPki::generate().expect("rcgen makes the PKI");
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None)
        .expect("mosquitto with TLS listeners starts");
    (pki, broker)
}

/// `pem` written to a fresh file for `--cafile`.
fn ca_file(tag: &str, pem: &str) -> PathBuf {
    let path = temp_path(tag, "pem");
    std::fs::write(&path, pem).expect("CA file written");
    path
}

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every QoS 1 reading published was acknowledged and reached the checker
/// exactly once, and the run is clean.
fn assert_qos1_no_loss_no_duplicates(r: &Value, out: &Output, devices: u64) {
    let t = text(out);
    assert_eq!(n(r, "/devices"), devices, "{t}");
    assert_eq!(n(r, "/connected_peak"), devices, "{t}");
    let published = n(r, "/published/qos1");
    assert!(published >= devices, "{t}");
    assert_eq!(n(r, "/acknowledged/qos1"), published, "{t}");
    assert_eq!(n(r, "/checker/unique/qos1"), published, "{t}");
    assert_eq!(n(r, "/checker/lost/qos1"), 0, "{t}");
    assert_eq!(n(r, "/checker/duplicates/qos1"), 0, "{t}");
    assert_eq!(r["clean"], Value::Bool(true), "{t}");
    assert!(out.status.success(), "{t}");
}

#[test]
fn sim_mqtts_and_wss_20_devices_qos1_with_cafile_no_loss_no_duplicates() {
    let (pki, broker) = tls_broker();
    let ca = ca_file("tls-ca", &pki.ca.cert_pem);
    for (tag, url) in [
        ("mqtts", format!("mqtts://localhost:{}", broker.mqtts_port)),
        ("wss", format!("wss://localhost:{}/mqtt", broker.wss_port)),
    ] {
        let (out, r) = sim(
            tag,
            20,
            &url,
            Some(&ca),
            "--interval 0.25 --duration 3 --qos 1 --drain 5",
        );
        assert_eq!(r["broker"].as_str(), Some(url.as_str()), "{}", text(&out));
        assert_qos1_no_loss_no_duplicates(&r, &out, 20);
        // About 3.5 s of publishing at 4 readings per second.
        assert!(n(&r, "/published/qos1") >= 20 * 10, "{url}: {}", text(&out));
    }
    let _ = std::fs::remove_file(&ca);
}

#[test]
fn sim_wss_link_cuts_reconnect_in_the_same_lent_tls_buffers_and_lose_nothing() {
    // Each cut drops a TLS stream mid-traffic; the next connect starts a
    // fresh rustls connection in the device's same TLS buffers.
    let (pki, broker) = tls_broker();
    let ca = ca_file("tls-cuts-ca", &pki.ca.cert_pem);
    let url = format!("wss://localhost:{}/mqtt", broker.wss_port);
    let (out, r) = sim(
        "wss-cuts",
        20,
        &url,
        Some(&ca),
        "--interval 0.25 --duration 5 --qos 1 --cut-every 2 --drain 5",
    );
    let _ = std::fs::remove_file(&ca);
    let t = text(&out);
    assert!(n(&r, "/cuts") >= 20, "{t}");
    assert!(n(&r, "/reconnects") >= 20, "{t}");
    let published = n(&r, "/published/qos1");
    assert!(published >= 20 * 10, "{t}");
    assert_eq!(n(&r, "/acknowledged/qos1"), published, "{t}");
    assert_eq!(n(&r, "/checker/lost/qos1"), 0, "{t}");
    assert_eq!(r["clean"], Value::Bool(true), "{t}");
    // The TLS buffers' resident pages: at least the first of each slot,
    // far from the 20 KiB reserved per device.
    let resident = n(&r, "/host/tls_buffers_resident_bytes");
    assert!(
        (20 * 4096..20 * 12 * 1024).contains(&resident),
        "{resident}: {t}"
    );
}

#[test]
fn sim_mqtts_with_the_wrong_ca_connects_no_device_and_reports_connect_failures() {
    let (pki, broker) = tls_broker();
    let ca = ca_file("tls-other-ca", &pki.other_ca.cert_pem);
    let url = format!("mqtts://localhost:{}", broker.mqtts_port);
    let (out, r) = sim(
        "tls-wrong-ca",
        5,
        &url,
        Some(&ca),
        "--duration 1 --drain 1 --no-checker",
    );
    let _ = std::fs::remove_file(&ca);
    let t = text(&out);
    assert_eq!(n(&r, "/connected_peak"), 0, "{t}");
    assert!(n(&r, "/errors/connect_failed_tls") >= 5, "{t}");
    assert_eq!(r["clean"], Value::Bool(false), "{t}");
    assert!(!out.status.success(), "{t}");
}

#[test]
fn sim_insecure_connects_without_the_ca_and_warns_loudly() {
    let (_pki, broker) = tls_broker();
    let url = format!("mqtts://localhost:{}", broker.mqtts_port);
    // The test CA is in no root store: only --insecure lets this connect.
    let (out, r) = sim(
        "tls-insecure",
        5,
        &url,
        None,
        "--insecure --duration 1 --drain 3 --qos 1",
    );
    let t = text(&out);
    assert_eq!(n(&r, "/connected_peak"), 5, "{t}");
    assert_eq!(r["clean"], Value::Bool(true), "{t}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WARNING: --insecure"),
        "{t}"
    );
}

#[test]
fn sim_tls_options_on_a_plain_url_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_embermq"))
        .args([
            "sim",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--insecure",
            "--quiet",
        ])
        .output()
        .expect("embermq runs");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mqtts:// or wss://"),
        "{}",
        text(&out)
    );
}

#[test]
fn sim_herd_50_devices_start_at_once_all_connect_and_lose_nothing() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
    let (out, r) = sim(
        "herd",
        50,
        &url,
        None,
        // A ramp this slow would take 50 s; --herd ignores it.
        "--ramp 1 --interval 0.5 --duration 3 --qos 1 --drain 5",
    );
    assert_qos1_no_loss_no_duplicates(&r, &out, 50);
    assert_eq!(n(&r, "/connects"), 50, "{}", text(&out));
    assert_eq!(n(&r, "/reconnects"), 0, "{}", text(&out));
    assert_eq!(n(&r, "/connect_us/count"), 50, "{}", text(&out));
    assert!(
        r["wall_secs"].as_f64().is_some_and(|w| w < 12.0),
        "{}",
        text(&out)
    );
}

#[test]
fn sim_pause_stops_publishing_for_the_pause_window() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
    // 20 devices, 5 readings per second each, 4 s (+0.5 s) of publishing
    // of which 2 s paused: about 2.5 s × 5 = 12.5 readings per device,
    // against 22.5 without the pause.
    let (out, r) = sim(
        "pause",
        20,
        &url,
        None,
        "--interval 0.2 --duration 4 --pause-at 1 --pause-for 2 --qos 1 --drain 5",
    );
    assert_qos1_no_loss_no_duplicates(&r, &out, 20);
    let published = n(&r, "/published/qos1");
    assert!(
        (20 * 10..=20 * 15).contains(&published),
        "{published} readings: {}",
        text(&out)
    );
}

#[test]
fn sim_commands_are_all_answered_but_for_the_last_round_and_every_reply_arrives() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
    // Each of 20 devices gets a command every second: one every 50 ms.
    let (out, r) = sim(
        "commands",
        20,
        &url,
        None,
        "--interval 1 --duration 4 --command-every 1 --qos 1 --drain 5",
    );
    let t = text(&out);
    let sent = n(&r, "/commands_sent");
    // About 4.5 s at 20 per second.
    assert!(sent >= 60, "{sent} commands: {t}");
    // Every command reached its device and was answered, except those the
    // checker sent in the last moments before the end, which may find the
    // device already stopped: at most one round (one per device, the
    // commands of the last `--command-every` period) may stay open.
    let answered = n(&r, "/replies_sent");
    assert!(answered <= sent && sent - answered <= 20, "{t}");
    // Every answer sent reached the checker (QoS 1, no link loss here).
    assert_eq!(n(&r, "/replies_received"), answered, "{t}");
    assert_eq!(r["clean"], Value::Bool(true), "{t}");
    assert!(out.status.success(), "{t}");
}

/// A broker that accepts the connection and never answers: the run stops
/// after the checker's 20 s with an error that says what was missing, not
/// only that the checker could not subscribe.
#[test]
fn sim_checker_without_an_answer_says_so_after_its_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = silent.local_addr().expect("its address").port();
    // Accept and hold every connection, reading nothing back.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_embermq"))
        .args(["sim", "--devices", "1", "--duration", "2", "--quiet"])
        .arg("--broker")
        .arg(format!("mqtt://127.0.0.1:{port}"))
        .output()
        .expect("embermq runs");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("the checker could not subscribe")
            && t.contains("no acknowledgement within 20 s"),
        "{t}"
    );
    assert!(
        started.elapsed() < core::time::Duration::from_secs(60),
        "{t}"
    );
}
