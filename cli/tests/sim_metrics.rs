//! `embermq sim --metrics ADDR`: the Prometheus exposition is scraped
//! while a short run against a real mosquitto goes on and once it ended
//! (`--metrics-linger`), parsed with a Prometheus text parser
//! (`prometheus-parse`); mid-run the gauges show the fleet connected and
//! the counters counting, and after the run every counter and histogram
//! count agrees with the final JSON report. All series carry the shard.

mod sim_run;

use core::time::Duration;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Instant;

use embermq_tests::peers::{Mosquitto, free_port};
use prometheus_parse::{Sample, Scrape, Value as Prom};
use serde_json::Value;
use sim_run::{n, read_report, spawn, temp_path};

/// GET http://127.0.0.1:`port`/metrics, parsed; `None` while nothing
/// listens or the answer is not 200.
fn scrape(port: u16) -> Option<Scrape> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    // hyper may answer chunked; the chunk-size lines are no sample lines
    // (no space in them) and the parser skips them.
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).ok()
}

/// The sample `metric` with label `key`=`value` (any when `key` is "").
fn find<'s>(s: &'s Scrape, metric: &str, key: &str, value: &str) -> Option<&'s Sample> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && (key.is_empty() || x.labels.get(key) == Some(value)))
}

/// A counter's or gauge's value (absent: `None`).
fn num(s: &Scrape, metric: &str, key: &str, value: &str) -> Option<f64> {
    match find(s, metric, key, value)?.value {
        Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => Some(v),
        _ => None,
    }
}

/// A histogram's observation count (its +Inf bucket).
fn histogram_count(s: &Scrape, metric: &str) -> Option<f64> {
    match &find(s, metric, "", "")?.value {
        Prom::Histogram(buckets) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count),
        _ => None,
    }
}

#[test]
fn metrics_are_scraped_during_the_run_and_agree_with_the_final_report() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
    let port = free_port().expect("a free port");
    let addr = format!("127.0.0.1:{port}");
    let report = temp_path("metrics", "json");
    let _ = std::fs::remove_file(&report);
    let child = spawn(
        &[
            "--devices",
            "20",
            "--broker",
            &url,
            "--interval",
            "0.2",
            "--duration",
            "4",
            "--qos",
            "0:30,1:40,2:30",
            "--herd",
            "--metrics",
            &addr,
            "--metrics-linger",
            "3",
        ],
        &report,
    );
    // During the run: the fleet connected, readings counted, shard label.
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut mid = None;
    while Instant::now() < give_up && mid.is_none() {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(s) = scrape(port)
            && num(&s, "embermq_sim_connected_devices", "shard", "0") == Some(20.0)
            && num(&s, "embermq_sim_published_total", "qos", "1").is_some_and(|v| v > 0.0)
        {
            mid = Some(s);
        }
    }
    let mid = mid.expect("a mid-run scrape shows 20 devices connected and readings published");
    assert_eq!(num(&mid, "embermq_sim_devices", "shard", "0"), Some(20.0));
    assert!(
        mid.samples
            .iter()
            .filter(|x| x.metric.starts_with("embermq_sim_"))
            .all(|x| x.labels.get("shard") == Some("0")),
        "every series carries shard=0"
    );
    // After the run: the report is written, the exporter still serves.
    let mut r = Value::Null;
    while Instant::now() < give_up + Duration::from_secs(30) && !r.is_object() {
        std::thread::sleep(Duration::from_millis(200));
        r = read_report(&report);
    }
    assert!(r.is_object(), "the run wrote its report");
    let last = scrape(port).expect("the exporter serves during --metrics-linger");
    let out = child.wait_with_output().expect("embermq ends");
    let _ = std::fs::remove_file(&report);
    let t = sim_run::text(&out);
    for (q, qos) in ["qos0", "qos1", "qos2"].iter().enumerate() {
        let q = q.to_string();
        let get = |m: &str| num(&last, m, "qos", &q).unwrap_or(-1.0) as u64;
        assert_eq!(
            get("embermq_sim_published_total"),
            n(&r, &format!("/published/{qos}")),
            "{t}"
        );
        assert_eq!(
            get("embermq_sim_acknowledged_total"),
            n(&r, &format!("/acknowledged/{qos}")),
            "{t}"
        );
        assert_eq!(
            get("embermq_sim_duplicates_total"),
            n(&r, &format!("/checker/duplicates/{qos}")),
            "{t}"
        );
        assert_eq!(
            get("embermq_sim_lost_total"),
            n(&r, &format!("/checker/lost/{qos}")),
            "{t}"
        );
    }
    let total = |m: &str| num(&last, m, "", "").unwrap_or(-1.0) as u64;
    assert!(n(&r, "/published/qos1") > 0, "{t}");
    assert_eq!(
        total("embermq_sim_received_total"),
        n(&r, "/checker/received"),
        "{t}"
    );
    assert_eq!(
        total("embermq_sim_connects_total"),
        n(&r, "/connects"),
        "{t}"
    );
    assert_eq!(
        total("embermq_sim_reconnects_total"),
        n(&r, "/reconnects"),
        "{t}"
    );
    assert_eq!(
        histogram_count(&last, "embermq_sim_latency_seconds").map(|c| c as u64),
        Some(n(&r, "/checker/latency_us/count")),
        "{t}"
    );
    assert_eq!(
        histogram_count(&last, "embermq_sim_connect_seconds").map(|c| c as u64),
        Some(n(&r, "/connect_us/count")),
        "{t}"
    );
    assert!(out.status.success(), "{t}");
}

#[test]
fn metrics_on_an_address_in_use_is_refused_before_the_run() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let (out, t, _) = {
        let report = temp_path("metrics-in-use", "json");
        let out = sim_run::command(
            &[
                "--devices",
                "1",
                "--broker",
                "mqtt://127.0.0.1:1",
                "--metrics",
                &addr,
            ],
            &report,
        )
        .output()
        .expect("embermq runs");
        let t = sim_run::text(&out);
        (out, t, ())
    };
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&format!("--metrics {addr}")), "{t}");
}
