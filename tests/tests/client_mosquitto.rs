//! The async client (`embermq::client`) against a real mosquitto started by
//! each test, over TCP (`TokioTcpConnector`) and over WebSocket
//! (`WsConnector` over `TokioTcpConnector`), on tokio's multi-threaded
//! runtime: the driver and the publishing tasks are spawned, so their
//! futures are `Send`. Every test runs under an overall timeout.

extern crate alloc;

mod support;
use support::*;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use embermq::client::{
    ClientConfig, ClientError, ClientState, Connection, CriticalSectionRawMutex,
};
use embermq::clock::TokioClock;
use embermq::codec::{ProtocolVersion, QoS, ReasonCode};
use embermq::session::{CloseReason, OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq_tests::peers::{Mosquitto, RestartableMosquitto};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;

/// The driver future for `state` over `connector`, its events sent to
/// `tx`: `run`'s own future, so that `tokio::spawn` checks it for `Send`
/// with its concrete types (see `Connection::run`).
macro_rules! driver {
    ($state:expr, $connector:expr, $config:expr, $tx:expr) => {
        driver!($state, $connector, $config, $tx, 4096)
    };
    ($state:expr, $connector:expr, $config:expr, $tx:expr, $rx_len:expr) => {{
        let (state, connector, config, tx): (&'static State, _, ClientConfig, _) =
            ($state, $connector, $config, $tx);
        Connection::new(
            state,
            connector,
            TokioClock::new(),
            StdRng::seed_from_u64(7),
            leak($rx_len),
            leak(4096),
            config,
        )
        .run(forward(tx))
    }};
}

/// Spawns the driver on the multi-threaded runtime; events go to the
/// returned channel.
macro_rules! spawn_driver {
    ($state:expr, $connector:expr, $config:expr) => {{
        let (tx, rx) = unbounded_channel();
        (tokio::spawn(driver!($state, $connector, $config, tx)), rx)
    }};
}

fn config(id: &str, protocol: ProtocolChoice) -> SessionConfig<'static> {
    let mut c = SessionConfig::new(leak_str(format!("{id}-{}", std::process::id())));
    c.protocol = protocol;
    c.max_incoming_packet_size = 4096;
    c
}

/// Which transport a test drives.
#[derive(Clone, Copy)]
enum Via {
    Tcp(u16),
    Ws(u16),
}

/// Subscribes to `t/#` at QoS 2, publishes QoS 0, 1 and 2 to itself,
/// awaits each token and receives each message at its QoS.
async fn publish_to_self(via: Via, protocol: ProtocolChoice, expect: ProtocolVersion) {
    let st = state(config("self", protocol), 4096);
    within(20, async {
        match via {
            Via::Tcp(port) => {
                let (driver, mut events) = spawn_driver!(st, tcp(port), fast_reconnect());
                publish_to_self_on(st.client(), &mut events, expect).await;
                driver.await.unwrap().unwrap();
            }
            Via::Ws(port) => {
                let (driver, mut events) = spawn_driver!(st, ws(port, 4096), fast_reconnect());
                publish_to_self_on(st.client(), &mut events, expect).await;
                driver.await.unwrap().unwrap();
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_to_self_over_tcp_v311() {
    let broker = Mosquitto::start().unwrap();
    publish_to_self(
        Via::Tcp(broker.tcp_port),
        ProtocolChoice::V311,
        ProtocolVersion::V311,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_to_self_over_tcp_v5() {
    let broker = Mosquitto::start().unwrap();
    publish_to_self(
        Via::Tcp(broker.tcp_port),
        ProtocolChoice::V5,
        ProtocolVersion::V5,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_6_qos_0_1_2_to_self_over_websocket_v311_and_v5() {
    let broker = Mosquitto::start().unwrap();
    publish_to_self(
        Via::Ws(broker.ws_port),
        ProtocolChoice::V311,
        ProtocolVersion::V311,
    )
    .await;
    publish_to_self(
        Via::Ws(broker.ws_port),
        ProtocolChoice::V5,
        ProtocolVersion::V5,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_returns_one_result_per_filter_and_unsubscribe_too() {
    let broker = Mosquitto::start().unwrap();
    let st = state(config("filters", ProtocolChoice::V5), 2048);
    let client = st.client();
    let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port), fast_reconnect());
    within(20, async {
        connected(&mut events).await;
        let results = client
            .subscribe(&[
                sub("f/0", QoS::AtMostOnce),
                sub("f/1", QoS::AtLeastOnce),
                sub("f/+/2", QoS::ExactlyOnce),
            ])
            .await
            .unwrap();
        assert_eq!(
            results.codes(),
            &[ReasonCode(0), ReasonCode(1), ReasonCode(2)]
        );
        let results = client.unsubscribe(&["f/0", "f/1"]).await.unwrap();
        assert_eq!(results.codes(), &[ReasonCode::SUCCESS, ReasonCode::SUCCESS]);
        // 5.0 UNSUBACK: No subscription existed (0x11) for an unknown filter.
        let results = client.unsubscribe(&["never/subscribed"]).await.unwrap();
        assert_eq!(results.codes(), &[ReasonCode(0x11)]);
        stop(client, driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_1_3_retained_message_delivered_to_a_later_subscriber() {
    let broker = Mosquitto::start().unwrap();
    let a = state(config("retain-a", ProtocolChoice::V5), 2048);
    let (driver_a, mut events_a) = spawn_driver!(a, tcp(broker.tcp_port), fast_reconnect());
    within(20, async {
        publish_retained(a.client(), driver_a, &mut events_a).await;
        let b = state(config("retain-b", ProtocolChoice::V311), 2048);
        let (driver_b, mut events_b) = spawn_driver!(b, tcp(broker.tcp_port), fast_reconnect());
        retained_arrives(b.client(), driver_b, &mut events_b).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_8_will_published_after_an_abnormal_disconnect() {
    let broker = Mosquitto::start().unwrap();
    let watcher = state(config("will-watch", ProtocolChoice::V5), 2048);
    let (driver_w, mut events_w) = spawn_driver!(watcher, tcp(broker.tcp_port), fast_reconnect());
    within(20, async {
        watch(watcher.client(), &mut events_w, &["wills/#"]).await;
        let cfg = with_will(config("will-dev", ProtocolChoice::V311), "wills/dev");
        let dev = state(cfg, 2048);
        let (driver_d, mut events_d) = spawn_driver!(dev, tcp(broker.tcp_port), fast_reconnect());
        connected(&mut events_d).await;
        // Kill the driver: the transport is dropped without DISCONNECT.
        abort(driver_d).await;
        will_arrives(&mut events_w, "wills/dev").await;
        stop(watcher.client(), driver_w).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_disconnect_so_no_will_is_published() {
    let broker = Mosquitto::start().unwrap();
    let watcher = state(config("nowill-watch", ProtocolChoice::V5), 2048);
    let (driver_w, mut events_w) = spawn_driver!(watcher, tcp(broker.tcp_port), fast_reconnect());
    within(20, async {
        watch(watcher.client(), &mut events_w, &["wills/#", "done"]).await;
        let cfg = with_will(config("nowill-dev", ProtocolChoice::V5), "wills/dev");
        let dev = state(cfg, 2048);
        let (driver_d, mut events_d) = spawn_driver!(dev, tcp(broker.tcp_port), fast_reconnect());
        connected(&mut events_d).await;
        stop(dev.client(), driver_d).await;
        assert_eq!(
            next_matching(&mut events_d, |s| match s {
                Seen::Disconnected(r) => Some(*r),
                _ => None,
            })
            .await,
            CloseReason::ClientRequested
        );
        marker_arrives_first(watcher.client(), &mut events_w).await;
        stop(watcher.client(), driver_w).await;
    })
    .await;
}

/// Publishes `count` QoS 1 messages `0..count` (payload: the index) from
/// its own task with `publish().await`, awaiting only the last token.
fn spawn_publisher(client: Handle, topic: &'static str, count: u32) -> JoinHandle<()> {
    spawn_publisher_qos(client, topic, count, QoS::AtLeastOnce)
}

fn spawn_publisher_qos(
    client: Handle,
    topic: &'static str,
    count: u32,
    qos: QoS,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = None;
        for i in 0..count {
            let payload = i.to_be_bytes();
            let msg = OutgoingMessage::new(topic, &payload, qos);
            last = Some(client.publish(&msg).await.unwrap());
        }
        if let Some(token) = last {
            // Tracked tokens are the latest ones: the last one is kept.
            client.completion(token).await.unwrap();
        }
    })
}

/// Receives `count` distinct indices (duplicates allowed: QoS 1).
async fn receive_all(events: &mut UnboundedReceiver<Seen>, count: u32) -> Vec<bool> {
    let mut seen = vec![false; count as usize];
    let mut distinct = 0;
    while distinct < count {
        let (_, payload, _, _) = message(events).await;
        let i = u32::from_be_bytes(payload.try_into().unwrap()) as usize;
        if !seen[i] {
            seen[i] = true;
            distinct += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_with_a_tiny_outbox_deliver_everything_without_deadlock() {
    let broker = Mosquitto::start().unwrap();
    // Room for about three queued messages: the publisher waits often.
    let st = state(config("tiny", ProtocolChoice::V5), 128);
    let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port), fast_reconnect());
    within(60, async {
        connected(&mut events).await;
        st.client()
            .subscribe(&[sub("tiny/#", QoS::AtLeastOnce)])
            .await
            .unwrap();
        let publisher = spawn_publisher(st.client(), "tiny/n", 500);
        let seen = receive_all(&mut events, 500).await;
        assert!(seen.iter().all(|s| *s));
        publisher.await.unwrap();
        assert_eq!(st.client().outbox_len(), 0);
        stop(st.client(), driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_back_off_and_give_up_after_max_attempts() {
    // A port nobody listens on: every attempt is refused.
    let port = embermq_tests::peers::free_port().unwrap();
    let st = state(config("nobody", ProtocolChoice::V5), 512);
    let mut cfg = fast_reconnect();
    cfg.backoff.max_attempts = Some(3);
    let (driver, mut events) = spawn_driver!(st, tcp(port), cfg);
    within(20, async {
        for attempt in 1..=3 {
            assert_eq!(
                next_matching(&mut events, |s| match s {
                    Seen::Reconnecting(a) => Some(*a),
                    _ => None,
                })
                .await,
                attempt
            );
        }
        let err = driver.await.unwrap().unwrap_err();
        assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
        assert!(err.to_string().contains("connect failed"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_stream_every_qos1_message_delivered() {
    restart_mid_stream(QoS::AtLeastOnce, Restart::Kill).await;
}

/// MQTT 4.3.3: exactly once, as long as the broker keeps its side of the
/// session. Stopped the way a service manager stops it (SIGTERM), mosquitto
/// saves its database on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_3_3_broker_restarted_mid_stream_qos2_every_message_exactly_once() {
    restart_mid_stream(QoS::ExactlyOnce, Restart::Terminate).await;
}

// No QoS 2 case through a killed (-9) mosquitto: 2.0.11 answers PUBREC
// before it saves a message and, restarted without it, answers our PUBREL
// with a successful PUBCOMP (5.0 wants 0x92), so messages vanish where no
// client can see it; it also redelivers completed flows without DUP and its
// receive quota breaks (PUBREC 0x97 to every publish, hundreds of drops).
// Traced in docs/client.md ("Broker crashes"). QoS 1 survives the kill.

/// How the broker goes down mid-stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Restart {
    /// SIGKILL: no chance to save.
    Kill,
    /// SIGTERM: saves its database, then exits.
    Terminate,
}

/// 10,000 messages to self at `qos` through a mosquitto with persistence,
/// stopped (`how`) and restarted after a third: every message arrives; at
/// QoS 2 none twice.
async fn restart_mid_stream(qos: QoS, how: Restart) {
    const COUNT: u32 = 10_000;
    let mut broker = RestartableMosquitto::start().unwrap();
    // QoS 2 over 5.0, where a broker that forgot a message can say so
    // (PUBCOMP: Packet Identifier not found); QoS 1 over 3.1.1.
    let protocol = if qos == QoS::ExactlyOnce {
        ProtocolChoice::V5
    } else {
        ProtocolChoice::V311
    };
    let mut cfg = config("survivor", protocol);
    cfg.session_expiry_secs = Some(600);
    cfg.clean_start = false;
    cfg.keep_alive_secs = 5;
    let st = state(cfg, 8192);
    let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port), fast_reconnect());
    within(120, async {
        connected(&mut events).await;
        st.client()
            .subscribe(&[sub("stream/#", qos)])
            .await
            .unwrap();
        let publisher = spawn_publisher_qos(st.client(), "stream/n", COUNT, qos);
        let mut seen = vec![false; COUNT as usize];
        let mut distinct = 0;
        let mut killed = false;
        let (mut drops, mut resumed) = (0, 0);
        let mut failed = Vec::new();
        let mut redelivered = 0u32;
        while distinct < COUNT {
            let next = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
            let Ok(next) = next else {
                let missing: Vec<u32> =
                    (0..COUNT).filter(|i| !seen[*i as usize]).take(20).collect();
                panic!(
                    "stalled: {distinct} of {COUNT}, outbox {}, publisher done {}, \
                     missing {missing:?}, drops {drops}, resumed {resumed}, failed {failed:?}",
                    st.client().outbox_len(),
                    publisher.is_finished(),
                );
            };
            let i = match next.expect("driver ended") {
                Seen::Message { payload, dup, .. } => {
                    let i = u32::from_be_bytes(payload.try_into().unwrap());
                    if seen[i as usize] {
                        assert_ne!(
                            qos,
                            QoS::ExactlyOnce,
                            "message {i} delivered twice (dup {dup})"
                        );
                        redelivered += 1;
                    }
                    i
                }
                Seen::Disconnected(_) => {
                    drops += 1;
                    continue;
                }
                Seen::PublishFailed(f) => {
                    failed.push(f);
                    continue;
                }
                Seen::Connected {
                    session_present, ..
                } => {
                    // The broker restored the session from its database.
                    assert!(session_present);
                    resumed += 1;
                    continue;
                }
                _ => continue,
            } as usize;
            if !seen[i] {
                seen[i] = true;
                distinct += 1;
            }
            if !killed && distinct == COUNT / 3 {
                killed = true;
                let b = &mut broker;
                tokio::task::block_in_place(|| {
                    match how {
                        Restart::Kill => b.kill().unwrap(),
                        Restart::Terminate => b.terminate().unwrap(),
                    }
                    std::thread::sleep(Duration::from_millis(300));
                    b.restart().unwrap();
                });
            }
        }
        assert!(
            drops >= 1 && resumed >= 1,
            "drops {drops} resumed {resumed}"
        );
        // Every message arrived (the loop only ends at COUNT distinct).
        assert!(killed);
        eprintln!("{how:?}, {qos:?}: {drops} drops, {resumed} resumed, {redelivered} redelivered");
        publisher.await.unwrap();
        stop(st.client(), driver).await;
    })
    .await;
}

/// Fault injector (no real broker does this): a TCP proxy that forwards
/// between the client and mosquitto until frozen; frozen, it forwards
/// nothing and closes nothing, like a link whose NAT entry silently died.
struct FreezingProxy {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl FreezingProxy {
    async fn start(broker_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await
                else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (br, bw) = broker.into_split();
                tokio::spawn(Self::pump(cr, bw, flag.clone()));
                tokio::spawn(Self::pump(br, cw, flag.clone()));
            }
        });
        Self { port, frozen }
    }

    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        frozen: Arc<AtomicBool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 4096];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            if frozen.load(Ordering::SeqCst) {
                if n == 0 {
                    // Hold the other side open: a dead link says nothing.
                    core::future::pending::<()>().await;
                }
                continue;
            }
            if n == 0 || to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_10_half_open_link_found_within_one_and_a_half_keepalive() {
    let broker = Mosquitto::start().unwrap();
    let proxy = FreezingProxy::start(broker.tcp_port).await;
    let mut cfg = config("half-open", ProtocolChoice::V5);
    cfg.keep_alive_secs = 2;
    let st = state(cfg, 1024);
    let (driver, mut events) = spawn_driver!(st, tcp(proxy.port), fast_reconnect());
    within(30, async {
        connected(&mut events).await;
        // Idle for 3 × keepalive first: PINGREQ/PINGRESP keep the link.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(st.client().is_connected());
        while let Ok(seen) = events.try_recv() {
            assert!(!matches!(seen, Seen::Disconnected(_)), "dropped while idle");
        }
        proxy.freeze(true);
        let frozen_at = std::time::Instant::now();
        let reason = next_matching(&mut events, |s| match s {
            Seen::Disconnected(r) => Some(*r),
            _ => None,
        })
        .await;
        let found_after = frozen_at.elapsed();
        assert_eq!(reason, CloseReason::KeepaliveTimeout);
        // 1.5 × keepalive (3 s), plus 1 s of scheduling slack.
        assert!(
            found_after <= Duration::from_millis(4000),
            "found after {found_after:?}"
        );
        // Thawed, the driver reconnects on its own.
        proxy.freeze(false);
        connected(&mut events).await;
        stop(st.client(), driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_3_3_2_3_publish_properties_reach_the_subscriber() {
    let broker = Mosquitto::start().unwrap();
    let st = state(config("props", ProtocolChoice::V5), 2048);
    let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port), fast_reconnect());
    within(20, async {
        connected(&mut events).await;
        properties_to_self(st.client(), driver, &mut events).await;
    })
    .await;
}

/// A listener that completes TCP handshakes (kernel backlog) but never
/// answers: a WebSocket upgrade to it never finishes.
async fn silent_listener() -> (tokio::net::TcpListener, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_never_finishes_is_bounded_by_the_connect_timeout() {
    let (_listener, port) = silent_listener().await;
    let st = state(config("silent", ProtocolChoice::V5), 512);
    let mut cfg = fast_reconnect();
    cfg.connect_timeout = embermq::time::Duration::from_millis(300);
    cfg.backoff.max_attempts = Some(1);
    let (driver, mut events) = spawn_driver!(st, ws(port, 4096), cfg);
    within(20, async {
        let err = driver.await.unwrap().unwrap_err();
        assert!(matches!(err, ClientError::ConnectTimeout), "{err:?}");
        assert_eq!(events.recv().await, Some(Seen::Reconnecting(1)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_abandons_a_pending_connect_and_run_returns_ok() {
    let (_listener, port) = silent_listener().await;
    let st = state(config("stop-connect", ProtocolChoice::V5), 512);
    let mut cfg = fast_reconnect();
    cfg.connect_timeout = embermq::time::Duration::from_secs(60);
    let (driver, _events) = spawn_driver!(st, ws(port, 4096), cfg);
    within(10, async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!driver.is_finished());
        stop(st.client(), driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_restored_after_a_broker_that_lost_the_session() {
    let mut broker = RestartableMosquitto::start_with(false).unwrap();
    let mut cfg = config("restore", ProtocolChoice::V311);
    cfg.clean_start = false;
    let st = state(cfg, 1024);
    let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port), fast_reconnect());
    within(30, async {
        connected(&mut events).await;
        st.client()
            .subscribe(&[sub("keep/#", QoS::AtLeastOnce)])
            .await
            .unwrap();
        tokio::task::block_in_place(|| broker.restart().unwrap());
        // No persistence: the broker forgot us and our subscription.
        assert!(!connected(&mut events).await.0);
        let refused = next_matching(&mut events, |s| match s {
            Seen::Restored(refused) => Some(*refused),
            _ => None,
        })
        .await;
        assert_eq!(refused, 0);
        let token = st
            .client()
            .publish(&OutgoingMessage::new(
                "keep/1",
                b"still here",
                QoS::AtLeastOnce,
            ))
            .await
            .unwrap();
        st.client().completion(token).await.unwrap();
        assert_eq!(message(&mut events).await.1, b"still here");
        stop(st.client(), driver).await;
    })
    .await;
}

/// A scripted broker (mosquitto never sends topic aliases, so no real peer
/// here produces this case): accepts one client, answers its CONNECT with
/// a 5.0 CONNACK, then sends a PUBLISH setting Topic Alias 1 for `a/b` and
/// one carrying only the alias.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_3_3_2_3_4_inbound_topic_alias_resolved_for_the_handler() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    type AliasState = ClientState<'static, CriticalSectionRawMutex, 4, 2, 64, 2>;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(buf[0], 0x10, "CONNECT first ({n} bytes)");
        s.write_all(&[0x20, 0x03, 0x00, 0x00, 0x00]).await.unwrap();
        #[rustfmt::skip]
        let publishes = [
            0x30, 12, 0x00, 0x03, b'a', b'/', b'b', 0x03, 0x23, 0x00, 0x01, b'o', b'n', b'e',
            0x30, 9, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, b't', b'w', b'o',
        ];
        s.write_all(&publishes).await.unwrap();
        // Until the client's DISCONNECT closes the link.
        while s.read(&mut buf).await.unwrap_or(0) > 0 {}
    });
    let st: &'static AliasState = Box::leak(Box::new(ClientState::new(
        config("alias", ProtocolChoice::V5),
        leak(512),
    )));
    let (tx, mut events) = unbounded_channel();
    let driver = tokio::spawn(
        Connection::new(
            st,
            tcp(port),
            TokioClock::new(),
            StdRng::seed_from_u64(3),
            leak(512),
            leak(512),
            fast_reconnect(),
        )
        .run(forward(tx)),
    );
    within(10, async {
        connected(&mut events).await;
        let first = message(&mut events).await;
        let second = message(&mut events).await;
        assert_eq!((first.0.as_str(), first.1.as_slice()), ("a/b", &b"one"[..]));
        assert_eq!(
            (second.0.as_str(), second.1.as_slice()),
            ("a/b", &b"two"[..])
        );
        st.client().stop();
        driver.await.unwrap().unwrap();
        broker.await.unwrap();
    })
    .await;
}
