//! The async client (`embermq::client`) against aedes 1.2 (Node), a second
//! real broker beside mosquitto, started by each test over TCP
//! (`TokioTcpConnector`) and over WebSocket (`WsConnector` over
//! `TokioTcpConnector`), on tokio's multi-threaded runtime. Every test runs
//! under an overall timeout.
//!
//! aedes 1.x speaks MQTT 3.1.1 only (its `connect` handler accepts protocol
//! levels 3 and 4 and answers a 5.0 CONNECT with return code 1,
//! unacceptable protocol version), so these tests connect with 3.1.1, and
//! one proves that `V5WithFallback` lands on 3.1.1 against it.

mod support;
use support::*;

use embermq::client::{ClientError, Connection, Event};
use embermq::clock::TokioClock;
use embermq::codec::{ProtocolVersion, QoS, ReasonCode};
use embermq::session::{
    CloseReason, Event as SessionEvent, OutgoingMessage, ProtocolChoice, SessionConfig,
};
use embermq::transport::TokioTcpConnector;
use embermq_tests::peers::Aedes;
use embermq_ws::WsConnector;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// The default buffer size (outbox, rx, tx, WebSocket buffers).
const SMALL: usize = 4096;
/// The large-payload test: 1 MiB of application payload.
const BIG_PAYLOAD: usize = 1 << 20;
/// Room for the 1 MiB PUBLISH: fixed header, topic, packet id, plus slack
/// (and the outbox's 12-byte entry header).
const BIG_BUF: usize = BIG_PAYLOAD + 1024;

/// An event copied out of the driver (messages own their topic and payload).
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Message {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    },
    Connected {
        session_present: bool,
        version: ProtocolVersion,
    },
    Refused {
        reason: ReasonCode,
        falling_back_to_v311: bool,
    },
    Other,
}

/// Spawns the driver for `state` over `connector` with rx and tx buffers of
/// `buf` bytes on the multi-threaded runtime; events go to the returned
/// channel. A macro so that `tokio::spawn` checks `run`'s own future for
/// `Send` with its concrete types.
macro_rules! spawn_driver {
    ($state:expr, $connector:expr) => {
        spawn_driver!($state, $connector, SMALL)
    };
    ($state:expr, $connector:expr, $buf:expr) => {{
        let (state, connector, buf): (&'static State, _, usize) = ($state, $connector, $buf);
        let (tx, rx) = unbounded_channel();
        let driver = Connection::new(
            state,
            connector,
            TokioClock::new(),
            StdRng::seed_from_u64(7),
            leak(buf),
            leak(buf),
            fast_reconnect(),
        )
        .run(forward(tx));
        (tokio::spawn(driver), rx)
    }};
}

fn forward(tx: UnboundedSender<Seen>) -> impl FnMut(Event<'_>) + Send {
    move |event: Event<'_>| {
        let seen = match event {
            Event::Message(m) => Seen::Message {
                topic: m.topic.to_owned(),
                payload: m.payload.to_vec(),
                qos: m.qos,
                retain: m.retain,
            },
            Event::Connected {
                session_present,
                version,
            } => Seen::Connected {
                session_present,
                version,
            },
            Event::Session(SessionEvent::ConnectRefused {
                reason,
                falling_back_to_v311,
            }) => Seen::Refused {
                reason,
                falling_back_to_v311,
            },
            _ => Seen::Other,
        };
        let _ = tx.send(seen);
    }
}

/// A WebSocket connector whose buffers are `buf` bytes and which accepts
/// messages up to `buf` bytes.
fn ws_big(port: u16, buf: usize) -> WsConnector<'static, TokioTcpConnector, StdRng> {
    ws(port, buf).with_max_message_len(buf as u64)
}

fn config(id: &str, protocol: ProtocolChoice) -> SessionConfig<'static> {
    let mut c = SessionConfig::new(leak_str(format!("aedes-{id}-{}", std::process::id())));
    c.protocol = protocol;
    c.max_incoming_packet_size = SMALL as u32;
    c
}

async fn connected(events: &mut UnboundedReceiver<Seen>) -> (bool, ProtocolVersion) {
    loop {
        if let Seen::Connected {
            session_present,
            version,
        } = events.recv().await.expect("driver ended")
        {
            return (session_present, version);
        }
    }
}

async fn message(events: &mut UnboundedReceiver<Seen>) -> (String, Vec<u8>, QoS, bool) {
    loop {
        if let Seen::Message {
            topic,
            payload,
            qos,
            retain,
        } = events.recv().await.expect("driver ended")
        {
            return (topic, payload, qos, retain);
        }
    }
}

/// Subscribes to `t/#` at QoS 2, publishes QoS 0, 1 and 2 to itself,
/// awaits each token and receives each message at its QoS.
async fn publish_to_self_on(client: Handle, events: &mut UnboundedReceiver<Seen>) {
    assert_eq!(connected(events).await, (false, ProtocolVersion::V311));
    let results = client
        .subscribe(&[sub("t/#", QoS::ExactlyOnce)])
        .await
        .unwrap();
    assert_eq!(results.codes(), &[ReasonCode(2)]);
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let topic = format!("t/{i}");
        let payload = format!("payload {i}");
        let msg = OutgoingMessage::new(&topic, payload.as_bytes(), qos);
        let token = client.publish(&msg).await.unwrap();
        client.completion(token).await.unwrap();
        assert_eq!(
            message(events).await,
            (topic, payload.into_bytes(), qos, false)
        );
    }
    client.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_to_self_over_tcp_v311() {
    let broker = Aedes::start().unwrap();
    let st = state(config("self-tcp", ProtocolChoice::V311), SMALL);
    within(20, async {
        let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port));
        publish_to_self_on(st.client(), &mut events).await;
        driver.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_6_qos_0_1_2_to_self_over_websocket_v311() {
    let broker = Aedes::start().unwrap();
    let st = state(config("self-ws", ProtocolChoice::V311), SMALL);
    within(20, async {
        let (driver, mut events) = spawn_driver!(st, ws_big(broker.ws_port, SMALL));
        publish_to_self_on(st.client(), &mut events).await;
        driver.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_9_3_subscribe_and_unsubscribe_return_one_result_per_filter() {
    let broker = Aedes::start().unwrap();
    let st = state(config("filters", ProtocolChoice::V311), SMALL);
    let client = st.client();
    within(20, async {
        let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port));
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
        // A 3.1.1 UNSUBACK carries no codes: one SUCCESS per filter.
        let results = client
            .unsubscribe(&["f/0", "never/subscribed"])
            .await
            .unwrap();
        assert_eq!(results.codes(), &[ReasonCode::SUCCESS, ReasonCode::SUCCESS]);
        // The broker dropped `f/0` and kept `f/1`.
        for topic in ["f/0", "f/1"] {
            let msg = OutgoingMessage::new(topic, b"x", QoS::AtLeastOnce);
            let token = client.publish(&msg).await.unwrap();
            client.completion(token).await.unwrap();
        }
        assert_eq!(message(&mut events).await.0, "f/1");
        client.stop();
        driver.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_1_3_retained_message_delivered_to_a_later_subscriber() {
    let broker = Aedes::start().unwrap();
    let a = state(config("retain-a", ProtocolChoice::V311), SMALL);
    within(20, async {
        let (driver_a, mut events_a) = spawn_driver!(a, ws_big(broker.ws_port, SMALL));
        connected(&mut events_a).await;
        let mut msg = OutgoingMessage::new("r/x", b"kept", QoS::AtLeastOnce);
        msg.retain = true;
        let token = a.client().publish(&msg).await.unwrap();
        a.client().completion(token).await.unwrap();
        a.client().stop();
        driver_a.await.unwrap().unwrap();

        let b = state(config("retain-b", ProtocolChoice::V311), SMALL);
        let (driver_b, mut events_b) = spawn_driver!(b, tcp(broker.tcp_port));
        connected(&mut events_b).await;
        b.client()
            .subscribe(&[sub("r/#", QoS::AtLeastOnce)])
            .await
            .unwrap();
        assert_eq!(
            message(&mut events_b).await,
            ("r/x".to_owned(), b"kept".to_vec(), QoS::AtLeastOnce, true)
        );
        b.client().stop();
        driver_b.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_2_v5_with_fallback_connects_with_3_1_1_to_a_3_1_1_only_broker() {
    let broker = Aedes::start().unwrap();
    let st = state(config("fallback", ProtocolChoice::V5WithFallback), SMALL);
    within(20, async {
        let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port));
        // The 5.0 CONNECT went out first and was refused...
        assert_eq!(
            events.recv().await,
            Some(Seen::Refused {
                reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                falling_back_to_v311: true
            })
        );
        // ...then the next connect, in 3.1.1, is accepted.
        assert_eq!(connected(&mut events).await.1, ProtocolVersion::V311);
        st.client().stop();
        driver.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_payload_at_qos_1_over_websocket_arrives_intact() {
    let broker = Aedes::start().unwrap();
    let mut cfg = config("big", ProtocolChoice::V311);
    cfg.max_incoming_packet_size = BIG_BUF as u32;
    let st = state(cfg, BIG_BUF);
    // Not a repeating pattern: a misplaced or dropped chunk changes it.
    let payload: Vec<u8> = (0..BIG_PAYLOAD as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    within(60, async {
        let (driver, mut events) = spawn_driver!(st, ws_big(broker.ws_port, BIG_BUF), BIG_BUF);
        connected(&mut events).await;
        st.client()
            .subscribe(&[sub("big/#", QoS::AtLeastOnce)])
            .await
            .unwrap();
        let token = st
            .client()
            .publish(&OutgoingMessage::new("big/1", &payload, QoS::AtLeastOnce))
            .await
            .unwrap();
        st.client().completion(token).await.unwrap();
        let (topic, got, qos, retain) = message(&mut events).await;
        assert_eq!(
            (topic.as_str(), qos, retain),
            ("big/1", QoS::AtLeastOnce, false)
        );
        assert_eq!(got.len(), BIG_PAYLOAD);
        assert!(got == payload, "1 MiB payload arrived altered");
        st.client().stop();
        driver.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_2_v5_only_refused_by_a_3_1_1_broker_as_unsupported_protocol_version() {
    let broker = Aedes::start().unwrap();
    let st = state(config("v5-only", ProtocolChoice::V5), SMALL);
    let (tx, mut events) = unbounded_channel();
    let mut cfg = fast_reconnect();
    cfg.backoff.max_attempts = Some(1);
    let driver = tokio::spawn(
        Connection::new(
            st,
            tcp(broker.tcp_port),
            TokioClock::new(),
            StdRng::seed_from_u64(7),
            leak(SMALL),
            leak(SMALL),
            cfg,
        )
        .run(forward(tx)),
    );
    within(20, async {
        // aedes answers return code 1 (unacceptable protocol version); the
        // client reports it as 5.0's Unsupported Protocol Version (0x84)
        // and, told to use 5.0 only, does not fall back.
        let err = driver.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Link(CloseReason::ConnectRefused(
                    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
                ))
            ),
            "{err:?}"
        );
        assert_eq!(
            events.recv().await,
            Some(Seen::Refused {
                reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                falling_back_to_v311: false
            })
        );
    })
    .await;
}
