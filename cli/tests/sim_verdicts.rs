//! `embermq sim` verdicts say where and why, against real mosquitto
//! brokers the tests start: a wss fleet refusing the broker's certificate
//! reports its errors as `connect_failed_tls` with the first message (who,
//! when, the TLS error), a refused TCP connect `connect_failed_tcp` and a
//! failed HTTP upgrade `connect_failed_websocket`; a broker whose
//! subscriber queue is tiny
//! (`max_queued_messages 5`, `max_inflight_messages 1`) drops readings it
//! had acknowledged, and the report puts that loss on the broker's side
//! with a hint at the setting.

mod sim_run;

use embermq_tests::peers::Mosquitto;
use embermq_tests::tls::{ClientAuth, ServerCert, TestPki, TlsMosquitto};
use serde_json::Value;
use sim_run::{n, sim};

#[test]
fn wss_fleet_refusing_the_certificate_reports_connect_failed_tls_with_the_first_message() {
    let pki = TestPki::generate().expect("rcgen makes the PKI");
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None)
        .expect("mosquitto with TLS listeners starts");
    // No --cafile: the test CA is in no root store.
    let url = format!("wss://localhost:{}/mqtt", broker.wss_port);
    let (out, t, r) = sim(
        "verdict-tls",
        &[
            "--devices",
            "8",
            "--herd",
            "--broker",
            &url,
            "--duration",
            "1",
            "--drain",
            "1",
            "--no-checker",
        ],
    );
    assert_eq!(n(&r, "/connected_peak"), 0, "{t}");
    assert!(n(&r, "/errors/connect_failed_tls") >= 8, "{t}");
    let first = r
        .pointer("/error_first/connect_failed_tls")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no first message: {t}"));
    assert!(first.starts_with("dev-"), "{first}");
    assert!(first.contains(" s: TLS: "), "{first}");
    assert!(first.to_lowercase().contains("certificate"), "{first}");
    let reasons = r["reasons"].to_string();
    assert!(reasons.contains("connect_failed_tls"), "{reasons}");
    assert!(reasons.contains("--cafile"), "{reasons}");
    assert!(t.contains("verdict: NOT clean"), "{t}");
    assert!(t.contains("first: dev-"), "{t}");
    assert_eq!(r["clean"], Value::Bool(false), "{t}");
    assert_eq!(out.status.code(), Some(1), "{t}");
}

#[test]
fn readings_the_broker_acknowledged_then_dropped_are_lost_on_the_brokers_side_with_a_hint() {
    // The checker's queue on the broker holds 5 readings beyond 1 in flight,
    // and 100 devices offer 5,000 readings a second: a third or more is
    // dropped here, and some on any machine (the checker acknowledges one
    // at a time on the thread the devices publish from).
    let broker = Mosquitto::start_with("max_queued_messages 5\nmax_inflight_messages 1\n")
        .expect("mosquitto starts");
    // Over WebSocket the checker drains its queue slowest.
    let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
    let (out, t, r) = sim(
        "verdict-queue",
        &[
            "--devices",
            "100",
            "--broker",
            &url,
            "--interval",
            "0.02",
            "--duration",
            "3",
            "--qos",
            "1",
            "--ramp",
            "1000",
            "--drain",
            "3",
        ],
    );
    let lost = n(&r, "/checker/lost/qos1");
    assert!(lost > 0, "the tiny queue dropped nothing: {t}");
    assert_eq!(n(&r, "/acknowledged/qos1"), n(&r, "/published/qos1"), "{t}");
    assert_eq!(n(&r, "/checker/lost_acknowledged"), lost, "{t}");
    assert_eq!(n(&r, "/checker/lost_never_acknowledged"), 0, "{t}");
    let reasons = r["reasons"].to_string();
    assert!(reasons.contains("max_queued_messages"), "{reasons}");
    assert!(
        reasons.contains("First device with loss: dev-"),
        "{reasons}"
    );
    assert!(
        t.contains("acknowledged and never delivered (broker's side)"),
        "{t}"
    );
    assert_eq!(out.status.code(), Some(1), "{t}");
}

#[test]
fn connect_failures_are_grouped_by_the_layer_that_failed_tcp_and_websocket() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    // Nothing listens on a port just released: TCP refuses.
    let closed = embermq_tests::peers::free_port().expect("a free port");
    let cases = [
        (
            format!("mqtt://127.0.0.1:{closed}"),
            "connect_failed_tcp",
            "TCP: connection refused",
        ),
        // mosquitto's plain MQTT listener does not answer an HTTP upgrade.
        (
            format!("ws://127.0.0.1:{}/mqtt", broker.tcp_port),
            "connect_failed_websocket",
            "WebSocket upgrade: ",
        ),
    ];
    for (url, kind, message) in cases {
        let (out, t, r) = sim(
            kind,
            &[
                "--devices",
                "3",
                "--herd",
                "--broker",
                &url,
                "--duration",
                "1",
                "--drain",
                "1",
                "--no-checker",
            ],
        );
        assert!(n(&r, &format!("/errors/{kind}")) >= 3, "{t}");
        let first = r
            .pointer(&format!("/error_first/{kind}"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no first {kind}: {t}"));
        assert!(first.contains(message), "{first}");
        assert!(r["reasons"].to_string().contains(kind), "{t}");
        assert_eq!(out.status.code(), Some(1), "{t}");
    }
}
