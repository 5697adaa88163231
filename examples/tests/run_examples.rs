//! Runs the example programs against a real mosquitto (TCP and WebSocket
//! listeners on free ports), as a user would: telemetry publisher, the
//! MQTT 5 command responder with its caller, the byte-counting transport,
//! and the durable outbox killed with SIGKILL and restarted. Every program
//! gets a bounded amount of work (and the async test an overall timeout),
//! so none can hang the test.

use core::time::Duration;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use embermq_tests::peers::Mosquitto;

fn run(exe: &str, args: &[&str]) -> Output {
    Command::new(exe).args(args).output().expect("example runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn telemetry_publisher_sends_json_readings_over_mqtt_and_websocket() {
    let broker = Mosquitto::start().unwrap();
    for url in [
        format!("mqtt://127.0.0.1:{}", broker.tcp_port),
        format!("ws://127.0.0.1:{}/mqtt", broker.ws_port),
    ] {
        let out = run(
            env!("CARGO_BIN_EXE_telemetry-publisher"),
            &[
                "--broker",
                &url,
                "--count",
                "3",
                "--interval-ms",
                "10",
                "--device",
                "ex-1",
            ],
        );
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        for (seq, line) in lines.iter().enumerate() {
            let (topic, json) = line.split_once(' ').unwrap();
            assert_eq!(topic, "devices/ex-1/telemetry");
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(value["device"], "ex-1");
            assert_eq!(value["seq"], seq);
        }
    }
}

#[test]
fn mqtt_5_4_10_command_answered_on_response_topic_with_correlation_data() {
    let broker = Mosquitto::start().unwrap();
    let device_url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
    let caller_url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
    let exe = env!("CARGO_BIN_EXE_command-responder");
    let mut device = Command::new(exe)
        .args([
            "--broker",
            &device_url,
            "--device",
            "ex-dev",
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(device.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.starts_with("ready"), "{ready}");

    let ask = |json: &str| {
        let out = run(
            exe,
            &[
                "--broker",
                &caller_url,
                "--device",
                "ex-dev",
                "--ask",
                json,
                "--timeout",
                "10",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_str::<serde_json::Value>(text(&out.stdout).trim()).unwrap()
    };
    let pong = ask(r#"{"cmd":"ping"}"#);
    assert_eq!(pong["cmd"], "ping");
    assert_eq!(pong["ok"], true);
    assert!(pong["uptime_ms"].is_u64(), "{pong}");
    let refused = ask(r#"{"cmd":"fly"}"#);
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("unknown command"),
        "{refused}"
    );

    // The device exits by itself after its two answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = device.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "device did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counting_transport_sees_the_websocket_framing_on_top_of_mqtt() {
    let broker = Mosquitto::start().unwrap();
    let bytes = |url: String| {
        let out = run(
            env!("CARGO_BIN_EXE_counting-transport"),
            &["--broker", &url, "--count", "20", "--size", "32"],
        );
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        let line = text(&out.stdout);
        // "... wrote W bytes, read R bytes, ..."
        let after = |word: &str| -> u64 {
            line.split(word)
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .unwrap()
                .parse()
                .unwrap()
        };
        (after("wrote "), after("read "))
    };
    let (tcp_written, tcp_read) = bytes(format!("mqtt://127.0.0.1:{}", broker.tcp_port));
    let (ws_written, ws_read) = bytes(format!("ws://127.0.0.1:{}/mqtt", broker.ws_port));
    assert!(
        tcp_read > 20 * 32 && ws_read > tcp_read,
        "{tcp_read} {ws_read}"
    );
    // 20 × (PUBLISH 32 B payload + PUBACK) at least, plus CONNECT/SUBSCRIBE.
    assert!(tcp_written > 20 * 32, "{tcp_written}");
    // Masked frame headers (6+ bytes per frame) and the HTTP upgrade.
    assert!(
        ws_written > tcp_written + 20 * 6,
        "{ws_written} vs {tcp_written}"
    );
}

/// Subscribes to `filter` on the broker at `port` with the embermq client,
/// raises `ready` once the SUBACK is in, and returns the next `n`
/// payloads.
async fn watch(port: u16, filter: &str, n: usize, ready: &tokio::sync::Notify) -> Vec<Vec<u8>> {
    use embermq::client::{ClientConfig, ClientState, Connection, Event, NoopRawMutex};
    use embermq::codec::{QoS, Subscription, SubscriptionOptions};
    use embermq::session::SessionConfig;
    use rand::SeedableRng;

    let mut outbox = vec![0u8; 4096];
    let state: ClientState<'_, NoopRawMutex, 8, 2> =
        ClientState::new(SessionConfig::new("durable-watch"), &mut outbox);
    let client = state.client();
    let (messages_tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
    let (mut rx, mut tx) = (vec![0u8; 4096], vec![0u8; 4096]);
    let driver = Connection::new(
        &state,
        embermq::transport::TokioTcpConnector::new("127.0.0.1", port),
        embermq::clock::TokioClock::new(),
        rand::rngs::StdRng::seed_from_u64(5),
        &mut rx,
        &mut tx,
        ClientConfig::DEFAULT,
    )
    .run(move |event: Event<'_>| {
        if let Event::Message(m) = event {
            let _ = messages_tx.send(m.payload.to_vec());
        }
    });
    let filters = [Subscription {
        filter,
        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
    }];
    let work = async {
        client.subscribe(&filters).await.unwrap();
        ready.notify_one();
        let mut got = Vec::new();
        while got.len() < n {
            got.push(messages.recv().await.unwrap());
        }
        client.stop();
        got
    };
    let mut driver = core::pin::pin!(driver);
    tokio::select! {
        ended = &mut driver => panic!("watcher ended: {ended:?}"),
        got = work => {
            driver.await.unwrap();
            got
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn durable_outbox_survives_sigkill_and_delivers_after_restart() {
    use tokio::io::AsyncBufReadExt;

    let broker = Mosquitto::start().unwrap();
    let exe = env!("CARGO_BIN_EXE_durable-outbox");
    let store = std::env::temp_dir().join(format!("embermq-durable-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&store);
    let store_arg = store.to_str().unwrap().to_owned();
    tokio::time::timeout(Duration::from_secs(60), async {
        // 1. No broker: five readings persisted, then SIGKILL.
        let dead = format!(
            "mqtt://127.0.0.1:{}",
            embermq_tests::peers::free_port().unwrap()
        );
        let mut first = tokio::process::Command::new(exe)
            .args(["--store", &store_arg, "--count", "5", "--broker", &dead])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(first.stdout.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "persisted seq 4" {
                break;
            }
        }
        first.start_kill().unwrap();
        assert!(!first.wait().await.unwrap().success());

        // 2. Broker up: a restart with nothing new delivers the five.
        let ready = tokio::sync::Notify::new();
        let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        let restart = async {
            ready.notified().await;
            tokio::process::Command::new(exe)
                .args(["--store", &store_arg, "--count", "0", "--broker", &url])
                .output()
                .await
                .unwrap()
        };
        let (got, out) = tokio::join!(
            watch(broker.tcp_port, "devices/durable-1/telemetry", 5, &ready),
            restart
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("delivered: outbox empty"));
        let seqs: Vec<u64> = got
            .iter()
            .map(|p| {
                serde_json::from_slice::<serde_json::Value>(p).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
    })
    .await
    .expect("test exceeded its time limit");
    let _ = std::fs::remove_file(&store);
}
