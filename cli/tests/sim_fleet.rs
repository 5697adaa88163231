//! `embermq sim` end to end: the binary runs a fleet of 200 simulated
//! devices against real brokers started on free loopback ports (mosquitto
//! over WebSocket, rumqttd over WebSocket in this test process), and the
//! JSON report's checker figures are asserted: no loss and no duplicates
//! on a steady link; with every link cut every few seconds, no loss at
//! QoS 1 and QoS 2, no duplicates at QoS 2 (QoS 1 copies are allowed and
//! counted); two shards run as two processes merge into the totals of
//! one run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use embermq_tests::peers::Mosquitto;
use embermq_tests::rumqttd::Rumqttd;
use serde_json::Value;

/// A fresh report path for one run.
fn report_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("embermq-sim-{tag}-{}.json", std::process::id()))
}

/// Runs `embermq sim` with `args` and a report file; returns the process
/// output and the parsed report.
fn sim(tag: &str, args: &[&str]) -> (Output, Value) {
    let report = report_path(tag);
    let out = Command::new(env!("CARGO_BIN_EXE_embermq"))
        .arg("sim")
        .args(args)
        .arg("--quiet")
        .arg("--report")
        .arg(&report)
        .output()
        .expect("embermq runs");
    let json = read_report(&report, &out);
    let _ = std::fs::remove_file(&report);
    (out, json)
}

fn read_report(path: &Path, out: &Output) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_slice(&text).expect("the report is JSON")
}

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

fn ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/mqtt")
}

/// 200 devices, one QoS 1 reading per second each, over a steady link.
fn steady_qos1(tag: &str, url: &str, protocol: &str) {
    let (out, r) = sim(
        tag,
        &[
            "--devices",
            "200",
            "--broker",
            url,
            "--protocol",
            protocol,
            "--duration",
            "15",
            "--qos",
            "1",
            "--ramp",
            "400",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(n(&r, "/devices"), 200, "{text}");
    assert_eq!(n(&r, "/connected_peak"), 200, "{text}");
    let published = n(&r, "/published/qos1");
    assert!(published >= 200 * 13, "{text}");
    assert_eq!(n(&r, "/acknowledged/qos1"), published, "{text}");
    assert_eq!(n(&r, "/checker/unique/qos1"), published, "{text}");
    assert_eq!(n(&r, "/checker/lost/qos1"), 0, "{text}");
    assert_eq!(n(&r, "/checker/duplicates/qos1"), 0, "{text}");
    assert_eq!(n(&r, "/checker/latency_us/count"), published, "{text}");
    assert_eq!(r["clean"], Value::Bool(true), "{text}");
    assert!(out.status.success(), "{text}");
}

#[test]
fn sim_mosquitto_ws_200_devices_qos1_no_loss_no_duplicates() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    steady_qos1("mosq-steady", &ws_url(broker.ws_port), "5");
}

#[test]
fn sim_rumqttd_ws_200_devices_qos1_no_loss_no_duplicates() {
    // rumqttd's WebSocket listener speaks MQTT 3.1.1 only.
    let broker = Rumqttd::start().expect("rumqttd starts");
    steady_qos1("rumqttd-steady", &ws_url(broker.ws_port), "3.1.1");
}

#[test]
fn sim_link_cuts_every_5s_lose_nothing_at_qos1_and_qos2_and_duplicate_nothing_at_qos2() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let url = ws_url(broker.ws_port);
    let (out, r) = sim(
        "mosq-cuts",
        &[
            "--devices",
            "200",
            "--broker",
            &url,
            "--duration",
            "15",
            "--qos",
            "1:50,2:50",
            "--cut-every",
            "5",
            "--interval",
            "0.5",
            "--ramp",
            "400",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Every device's link was cut at least twice and came back.
    assert!(n(&r, "/cuts") >= 400, "{text}");
    assert!(n(&r, "/reconnects") >= 400, "{text}");
    let (q1, q2) = (n(&r, "/published/qos1"), n(&r, "/published/qos2"));
    assert!(q1 > 1000 && q2 > 1000, "{text}");
    assert_eq!(n(&r, "/checker/lost/qos1"), 0, "{text}");
    assert_eq!(n(&r, "/checker/lost/qos2"), 0, "{text}");
    assert_eq!(n(&r, "/checker/duplicates/qos2"), 0, "{text}");
    // QoS 1 copies after a cut are allowed; they are counted, not hidden.
    let dup1 = n(&r, "/checker/duplicates/qos1");
    assert_eq!(n(&r, "/checker/received"), q1 + q2 + dup1, "{text}");
    assert_eq!(r["clean"], Value::Bool(true), "{text}");
}

#[test]
fn sim_two_shards_as_two_processes_merge_into_the_totals_of_one_run() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let url = ws_url(broker.ws_port);
    let common = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--devices",
            "200",
            "--broker",
            &url,
            "--messages",
            "6",
            "--interval",
            "0.5",
            "--duration",
            "20",
            "--qos",
            "0:20,1:40,2:40",
            "--ramp",
            "1000",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let spawn = |tag: &str, extra: &[&'static str]| {
        let path = report_path(tag);
        let child = Command::new(env!("CARGO_BIN_EXE_embermq"))
            .arg("sim")
            .args(common(extra))
            .arg("--quiet")
            .arg("--report")
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("embermq runs");
        (child, path)
    };
    // The two shards run at once, as two processes (as two pods would).
    let (a, a_path) = spawn("shard0", &["--shard", "0/2"]);
    let (b, b_path) = spawn("shard1", &["--shard", "1/2"]);
    let a_out = a.wait_with_output().expect("shard 0 ends");
    let b_out = b.wait_with_output().expect("shard 1 ends");
    assert!(
        a_out.status.success(),
        "{}",
        String::from_utf8_lossy(&a_out.stdout)
    );
    assert!(
        b_out.status.success(),
        "{}",
        String::from_utf8_lossy(&b_out.stdout)
    );
    let merged_path = report_path("merged");
    let merge = Command::new(env!("CARGO_BIN_EXE_embermq"))
        .args(["sim", "merge"])
        .arg(&a_path)
        .arg(&b_path)
        .arg("-o")
        .arg(&merged_path)
        .output()
        .expect("merge runs");
    assert!(
        merge.status.success(),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );
    let merged = read_report(&merged_path, &merge);
    for p in [&a_path, &b_path, &merged_path] {
        let _ = std::fs::remove_file(p);
    }

    let (one_out, one) = sim(
        "oneshard",
        &common(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let text = String::from_utf8_lossy(&one_out.stdout);
    // Every device published exactly 6 readings in both set-ups.
    for r in [&one, &merged] {
        assert_eq!(n(r, "/devices"), 200, "{text}");
        assert_eq!(n(r, "/connects"), 200, "{text}");
        let published = n(r, "/published/qos0") + n(r, "/published/qos1") + n(r, "/published/qos2");
        assert_eq!(published, 1200, "{r:#}");
        assert_eq!(
            n(r, "/checker/lost/qos1") + n(r, "/checker/lost/qos2"),
            0,
            "{r:#}"
        );
        let unique = n(r, "/checker/unique/qos0")
            + n(r, "/checker/unique/qos1")
            + n(r, "/checker/unique/qos2");
        assert_eq!(n(r, "/checker/latency_us/count"), unique, "{r:#}");
    }
    assert_eq!(n(&merged, "/shards/0/end"), n(&merged, "/shards/1/first"));
    assert_eq!(n(&merged, "/shards/1/end"), 200);
    assert_eq!(
        n(&merged, "/connect_us/count"),
        n(&one, "/connect_us/count")
    );
    // QoS 0 is the only level allowed to lose on loopback; with nothing
    // lost, the unique counts are the published counts in both.
    assert_eq!(
        n(&merged, "/checker/unique/qos0") + n(&merged, "/checker/lost/qos0"),
        n(&merged, "/published/qos0")
    );
}
