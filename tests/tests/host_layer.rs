//! The host layer (`embermq::host`) against a real mosquitto over every
//! URL scheme it takes (`mqtt://`, `ws://`, `mqtts://`, `wss://`) and
//! against aedes (3.1.1 only: the default 5.0 falls back):
//! QoS 0/1/2 round trips with tokens, requests made before the broker is
//! up, reconnect after a broker restart with the subscription restored, a
//! handle shared by many tasks on the multi-threaded runtime, and
//! backpressure (a reader that stops makes the client stop reading the
//! socket; the process's memory stays flat).

mod host_support;

use core::time::Duration;

use bytes::Bytes;
use embermq::host::{self, Event, Options, QoS};
use embermq::session::ProtocolChoice;
use embermq_tests::peers::{Aedes, Mosquitto, RestartableMosquitto};
use embermq_tests::tls::{ClientAuth, ServerCert, TestPki, TlsMosquitto};
use host_support::{connected, fast, within};

/// Subscribes to `prefix/#`, publishes at QoS 0, 1 and 2 to itself, awaits
/// each token and receives each message back, then disconnects.
async fn round_trip(url: Options, prefix: &str) {
    let (client, mut events) = host::connect(url).unwrap();
    client
        .subscribe(format!("{prefix}/#"), QoS::ExactlyOnce)
        .await
        .unwrap();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let topic = format!("{prefix}/{i}");
        let payload = Bytes::from(format!("payload {i}"));
        let token = client.publish(&topic, payload.clone(), qos).await.unwrap();
        token.await.unwrap();
        let m = events.next_message().await.unwrap();
        assert_eq!(
            (m.topic.as_str(), &m.payload, m.qos),
            (&*topic, &payload, qos)
        );
    }
    client.disconnect().await.unwrap();
    // The stream ends with `Stopped` (no error: it was asked for).
    let mut last = None;
    while let Some(event) = events.recv().await {
        last = Some(event);
    }
    assert!(
        matches!(last, Some(Event::Stopped { error: None })),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_round_trips_over_mqtt_and_ws_urls() {
    let broker = Mosquitto::start().unwrap();
    within(20, async {
        let tcp = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
        round_trip(Options::new(&tcp).unwrap(), "host/tcp").await;
        let ws = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        round_trip(Options::new(&ws).unwrap(), "host/ws").await;
        // 3.1.1 only, over the same URL.
        let v311 = Options::new(&ws).unwrap().protocol(ProtocolChoice::V311);
        round_trip(v311, "host/v311").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_round_trips_with_aedes_over_mqtt_and_ws_urls_falling_back_to_3_1_1() {
    let broker = Aedes::start().unwrap();
    within(30, async {
        let tcp = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
        round_trip(Options::new(&tcp).unwrap(), "aedes/tcp").await;
        let ws = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        round_trip(Options::new(&ws).unwrap(), "aedes/ws").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_round_trips_over_mqtts_and_wss_urls_with_a_ca_file() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    within(30, async {
        let mqtts = format!("mqtts://localhost:{}", broker.mqtts_port);
        round_trip(
            Options::new(&mqtts).unwrap().tls(pki.trusting_ca()),
            "host/mqtts",
        )
        .await;
        let wss = format!("wss://localhost:{}/mqtt", broker.wss_port);
        round_trip(
            Options::new(&wss).unwrap().tls(pki.trusting_ca()),
            "host/wss",
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_is_reported_while_the_client_retries() {
    let pki = TestPki::generate().unwrap();
    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None).unwrap();
    within(20, async {
        // Mozilla's roots do not know the test CA; give up after 1 retry.
        let url = format!("mqtts://localhost:{}", broker.mqtts_port);
        let options = Options::new(&url)
            .unwrap()
            .backoff(embermq::client::Backoff {
                base: embermq::time::Duration::from_millis(10),
                cap: embermq::time::Duration::from_millis(20),
                max_attempts: Some(1),
            });
        let (_client, mut events) = host::connect(options).unwrap();
        loop {
            match events.recv().await.unwrap() {
                Event::Stopped { error } => {
                    let error = error.expect("an error");
                    assert!(matches!(error, host::Error::Connect(_)), "{error:?}");
                    eprintln!("{error}");
                    break;
                }
                Event::Connected { .. } => panic!("connected to an untrusted broker"),
                _ => {}
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_made_before_the_broker_is_up_go_out_once_connected() {
    let mut broker = RestartableMosquitto::start_with(false).unwrap();
    broker.terminate().unwrap();
    within(20, async {
        let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
        let (client, mut events) = host::connect(fast(&url)).unwrap();
        // Neither can finish before the broker is up.
        let subscriber = client.clone();
        let subscribed =
            tokio::spawn(async move { subscriber.subscribe("early/#", QoS::AtLeastOnce).await });
        let token = client
            .publish("early/1", "queued while down", QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!subscribed.is_finished());
        broker.restart().unwrap();
        subscribed.await.unwrap().unwrap();
        token.await.unwrap();
        assert!(!connected(&mut events).await.0);
        client.disconnect().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_client_reconnects_and_restores_its_subscription() {
    // No persistence: the restarted broker has forgotten the subscription.
    let mut broker = RestartableMosquitto::start_with(false).unwrap();
    within(30, async {
        let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
        let (client, mut events) = host::connect(fast(&url)).unwrap();
        connected(&mut events).await;
        client
            .subscribe("restart/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        broker.restart().unwrap();
        let mut restored = false;
        while !restored {
            match events.recv().await.unwrap() {
                Event::SubscriptionsRestored { refused } => {
                    assert_eq!(refused, 0);
                    restored = true;
                }
                Event::Stopped { error } => panic!("stopped: {error:?}"),
                _ => {}
            }
        }
        // Another client publishes; the restored subscription delivers it.
        let (publisher, _) = host::connect(url.as_str()).unwrap();
        publisher
            .publish("restart/x", "after restart", QoS::AtLeastOnce)
            .await
            .unwrap()
            .await
            .unwrap();
        let m = events.next_message().await.unwrap();
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("restart/x", &b"after restart"[..])
        );
        publisher.disconnect().await.unwrap();
        client.disconnect().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_handle_cloned_into_many_tasks_on_the_multi_thread_runtime() {
    const TASKS: usize = 8;
    const EACH: usize = 50;
    let broker = Mosquitto::start().unwrap();
    within(30, async {
        let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        let (client, mut events) = host::connect(url.as_str()).unwrap();
        client.subscribe("many/#", QoS::AtLeastOnce).await.unwrap();
        // The events are read while the tasks publish: a reader that
        // stopped would stop the client reading the acknowledgements too.
        let reader = tokio::spawn(async move {
            // Every message arrives, and each task's in order.
            let mut next = [0usize; TASKS];
            for _ in 0..TASKS * EACH {
                let m = events.next_message().await.unwrap();
                let t: usize = m.topic["many/".len()..].parse().unwrap();
                let i: usize = core::str::from_utf8(&m.payload).unwrap().parse().unwrap();
                assert_eq!(i, next[t], "task {t}");
                next[t] += 1;
            }
        });
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let qos = if i % 2 == 0 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::ExactlyOnce
                    };
                    let token = client
                        .publish(format!("many/{t}"), format!("{i}"), qos)
                        .await
                        .unwrap();
                    token.await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        reader.await.unwrap();
        client.disconnect().await.unwrap();
    })
    .await;
}

/// QoS 1 messages published while the broker is down stay in the
/// `file_store` when the client ends, and the next client on the same file
/// sends them once the broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_kept_in_the_file_store_are_sent_by_the_next_client() {
    let mut broker = RestartableMosquitto::start_with(false).unwrap();
    broker.terminate().unwrap();
    let dir = std::env::temp_dir().join(format!("embermq-host-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("outbox.log");
    within(30, async {
        let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
        let (first, _events) = host::connect(fast(&url).file_store(&store)).unwrap();
        for i in 0..3 {
            // Queued (and persisted by the driver); never acknowledged here.
            drop(
                first
                    .publish("stored", format!("kept {i}"), QoS::AtLeastOnce)
                    .await
                    .unwrap(),
            );
        }
        // Requests are served in order: the three are in the store before
        // the disconnect is handled.
        first.disconnect().await.unwrap();
        broker.restart().unwrap();
        let (watcher, mut events) = host::connect(url.as_str()).unwrap();
        watcher.subscribe("stored", QoS::AtLeastOnce).await.unwrap();
        let (second, _events) = host::connect(fast(&url).file_store(&store)).unwrap();
        for i in 0..3 {
            let m = events.next_message().await.unwrap();
            assert_eq!(&m.payload[..], format!("kept {i}").as_bytes());
        }
        second.disconnect().await.unwrap();
        watcher.disconnect().await.unwrap();
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// MQTT 3.1.2.5: a link that dies without DISCONNECT makes the broker
/// publish the Will; the client's runtime is dropped under it here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_5_the_will_is_published_when_the_client_dies_without_disconnect() {
    let broker = Mosquitto::start().unwrap();
    within(20, async {
        let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        let (watcher, mut events) = host::connect(url.as_str()).unwrap();
        watcher
            .subscribe("wills/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        let options = Options::new(&url).unwrap().will(host::Publish::new(
            "wills/dev-1",
            "gone",
            QoS::AtLeastOnce,
        ));
        // A runtime of its own, dropped while the client is connected.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (_client, mut events) = host::connect(options).unwrap();
                connected(&mut events).await;
            });
            drop(runtime);
        })
        .join()
        .unwrap();
        let m = events.next_message().await.unwrap();
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("wills/dev-1", &b"gone"[..])
        );
        watcher.disconnect().await.unwrap();
    })
    .await;
}

/// mosquitto acknowledges and drops the QoS 1/2 messages a 3.1.1 client
/// has in flight beyond its `max_inflight_messages` (20): the default
/// window (16) keeps a burst under it, so every message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_1_1_qos_2_burst_in_the_default_window_loses_nothing_at_mosquitto() {
    const N: usize = 200;
    let broker = Mosquitto::start().unwrap();
    within(30, async {
        let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        let options = Options::new(&url).unwrap().protocol(ProtocolChoice::V311);
        let (client, mut events) = host::connect(options).unwrap();
        client.subscribe("burst", QoS::ExactlyOnce).await.unwrap();
        let reader = tokio::spawn(async move {
            for i in 0..N {
                let m = events.next_message().await.unwrap();
                assert_eq!(&m.payload[..], i.to_string().as_bytes());
            }
        });
        let mut tokens = Vec::new();
        for i in 0..N {
            tokens.push(
                client
                    .publish("burst", i.to_string(), QoS::ExactlyOnce)
                    .await
                    .unwrap(),
            );
        }
        for token in tokens {
            token.await.unwrap();
        }
        reader.await.unwrap();
        client.disconnect().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_report_refusals_and_the_end_of_the_client() {
    let broker = Mosquitto::start().unwrap();
    within(20, async {
        let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
        let options = Options::new(&url).unwrap().max_packet_size(1024);
        let (client, _events) = host::connect(options).unwrap();
        // Larger than the largest packet: refused at once.
        let err = client
            .publish("big", vec![0u8; 2000], QoS::AtLeastOnce)
            .await
            .unwrap_err();
        assert!(
            matches!(err, host::Error::TooLarge { max: 1024, .. }),
            "{err}"
        );
        // A wildcard in a topic name: refused at once.
        let err = client
            .publish("a/#", "x", QoS::AtMostOnce)
            .await
            .unwrap_err();
        assert!(matches!(err, host::Error::Topic(_)), "{err}");
        // A dropped token does not stop the message.
        drop(
            client
                .publish("t", "dropped token", QoS::AtLeastOnce)
                .await
                .unwrap(),
        );
        client
            .publish("t", "awaited", QoS::AtLeastOnce)
            .await
            .unwrap()
            .await
            .unwrap();
        client.disconnect().await.unwrap();
        // After the end, every call says so.
        let err = client
            .publish("t", "late", QoS::AtMostOnce)
            .await
            .unwrap_err();
        assert!(matches!(err, host::Error::Stopped), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_publishes_at_qos_0_1_2_arrive_in_order_and_share_their_topic() {
    let broker = Mosquitto::start().unwrap();
    within(20, async {
        let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        let (client, mut events) = host::connect(Options::new(&url).unwrap()).unwrap();
        client
            .subscribe("detached/#", QoS::ExactlyOnce)
            .await
            .unwrap();
        // One `Topic` for every publish: clones, no new text.
        let topic = host::Topic::from("detached/t");
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            client
                .publish_detached(&topic, format!("{i}"), qos)
                .await
                .unwrap();
        }
        // Refused at once, as a publish with a token is.
        let err = client
            .publish_detached("a/+", "x", QoS::AtMostOnce)
            .await
            .unwrap_err();
        assert!(matches!(err, host::Error::Topic(_)), "{err}");
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(events.next_message().await.unwrap());
        }
        let payloads: Vec<&[u8]> = got.iter().map(|m| &m.payload[..]).collect();
        assert_eq!(payloads, [&b"0"[..], b"1", b"2"]);
        // Messages in a row on one topic share its allocation; no 5.0
        // property was set, so none is boxed.
        assert!(got.iter().all(|m| m.topic == "detached/t"));
        assert!(core::ptr::eq(got[0].topic.as_str(), got[2].topic.as_str()));
        assert!(got.iter().all(|m| m.properties.is_empty()));
        client.disconnect().await.unwrap();
        // After the end, a detached publish says so too.
        let err = client
            .publish_detached(&topic, "late", QoS::AtMostOnce)
            .await
            .unwrap_err();
        assert!(matches!(err, host::Error::Stopped), "{err}");
    })
    .await;
}

/// The local-port-independent receive queue of the one TCP socket
/// connected to `remote_port` on loopback (from /proc/net/tcp), in bytes.
fn rx_queue_to(remote_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let remote = fields.get(2)?;
        let port = u16::from_str_radix(remote.rsplit(':').next()?, 16).ok()?;
        // Our side: the connection whose remote end is the broker and
        // whose state is ESTABLISHED (01).
        if port != remote_port || fields.get(3)? != &"01" {
            return None;
        }
        let queues = fields.get(4)?;
        u64::from_str_radix(queues.split(':').nth(1)?, 16).ok()
    })
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_makes_the_client_stop_reading_the_socket_and_memory_stays_flat() {
    const MESSAGES: usize = 600;
    const SIZE: usize = 32 * 1024;
    // mosquitto keeps every message for the slow subscriber (no limit on
    // its queue), so nothing is dropped on the way.
    let broker = Mosquitto::start_with("max_queued_messages 0\nmax_queued_bytes 0\n").unwrap();
    within(60, async {
        // The subscriber alone uses the TCP listener (the publisher the
        // WebSocket one), so its socket is the one to the TCP port.
        let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
        let options = Options::new(&url).unwrap().event_capacity(4);
        let (subscriber, mut events) = host::connect(options).unwrap();
        subscriber
            .subscribe("flood", QoS::AtLeastOnce)
            .await
            .unwrap();
        let before = rss();
        let ws = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        let (publisher, _) = host::connect(ws.as_str()).unwrap();
        let payload = Bytes::from(vec![0x5a; SIZE]);
        let publishing = tokio::spawn(async move {
            for _ in 0..MESSAGES {
                let token = publisher
                    .publish("flood", payload.clone(), QoS::AtLeastOnce)
                    .await
                    .unwrap();
                token.await.unwrap();
            }
            publisher.disconnect().await.unwrap();
        });
        // Nobody reads `events`: the kernel's receive queue fills (to
        // its initial buffer, about 128 KiB on Linux) and stays full,
        // which only happens when the client has stopped reading.
        const FULL: u64 = 64 * 1024;
        let mut queued = 0;
        for _ in 0..100 {
            queued = rx_queue_to(broker.tcp_port).unwrap_or(0);
            if queued >= FULL {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(queued >= FULL, "receive queue only {queued} bytes");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let still = rx_queue_to(broker.tcp_port).unwrap_or(0);
        assert!(still >= FULL, "receive queue drained to {still} bytes");
        publishing.await.unwrap();
        let grown = rss().saturating_sub(before);
        eprintln!(
            "{MESSAGES} x {SIZE} B published ({} MiB) while the reader stalled: \
             socket receive queue {queued} B, RSS grew {} KiB",
            (MESSAGES * SIZE) >> 20,
            grown >> 10
        );
        // 18.75 MiB went through the broker; the client holds at most its
        // buffers and 4 events.
        assert!(grown < 8 << 20, "RSS grew {grown} bytes");
        // Reading again delivers every message.
        for _ in 0..MESSAGES {
            let m = events.next_message().await.unwrap();
            assert_eq!(m.payload.len(), SIZE);
        }
        subscriber.disconnect().await.unwrap();
    })
    .await;
}
