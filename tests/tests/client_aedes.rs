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

use embermq::client::{ClientError, Connection};
use embermq::clock::TokioClock;
use embermq::codec::{ProtocolVersion, QoS, ReasonCode};
use embermq::session::{CloseReason, OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq::transport::TokioTcpConnector;
use embermq::transport::WsConnector;
use embermq_tests::peers::Aedes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::unbounded_channel;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_to_self_over_tcp_v311() {
    let broker = Aedes::start().unwrap();
    let st = state(config("self-tcp", ProtocolChoice::V311), SMALL);
    within(20, async {
        let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port));
        publish_to_self_on(st.client(), &mut events, ProtocolVersion::V311).await;
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
        publish_to_self_on(st.client(), &mut events, ProtocolVersion::V311).await;
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
        stop(client, driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_1_3_retained_message_delivered_to_a_later_subscriber() {
    let broker = Aedes::start().unwrap();
    let a = state(config("retain-a", ProtocolChoice::V311), SMALL);
    within(20, async {
        let (driver_a, mut events_a) = spawn_driver!(a, ws_big(broker.ws_port, SMALL));
        publish_retained(a.client(), driver_a, &mut events_a).await;
        let b = state(config("retain-b", ProtocolChoice::V311), SMALL);
        let (driver_b, mut events_b) = spawn_driver!(b, tcp(broker.tcp_port));
        retained_arrives(b.client(), driver_b, &mut events_b).await;
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
        stop(st.client(), driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_payload_at_qos_1_over_websocket_arrives_intact() {
    let broker = Aedes::start().unwrap();
    let st = big_state(config("big", ProtocolChoice::V311));
    within(60, async {
        let (driver, mut events) = spawn_driver!(st, ws_big(broker.ws_port, BIG_BUF), BIG_BUF);
        one_mib_to_self(st.client(), driver, &mut events).await;
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
