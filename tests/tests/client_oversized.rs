//! A message larger than the device's receive buffer (issue 11, item 3),
//! against mosquitto: under 3.1.1 (no way to tell the broker a limit) it
//! is acknowledged, skipped without buffering and reported, and the link
//! stays up; under 5.0 the CONNECT's Maximum Packet Size comes from the
//! receive buffer, so the broker never sends it (MQTT 5.0 §3.1.2.11.4:
//! the server discards it for that client).

mod support;
use support::*;

use embermq::codec::QoS;
use embermq::session::{OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq_tests::peers::Mosquitto;

fn config(id: &str, protocol: ProtocolChoice) -> SessionConfig<'static> {
    let mut cfg = SessionConfig::new(leak_str(format!("{id}-{}", std::process::id())));
    cfg.protocol = protocol;
    // The configuration would take 64 KiB; the lent receive buffer holds 4.
    cfg.max_incoming_packet_size = 65_536;
    cfg
}

/// A second client with 256 KiB buffers publishes `payload` to `topic`.
async fn publish_from_another_client(port: u16, topic: &'static str, payload: Vec<u8>, qos: QoS) {
    let big = 256 * 1024;
    let st = state(config("big-publisher", ProtocolChoice::V5), 2 * big);
    let (driver, mut events) = spawn_driver!(st, tcp(port), big);
    connected(&mut events).await;
    let token = st
        .client()
        .publish(&OutgoingMessage::new(topic, &payload, qos))
        .await
        .unwrap();
    st.client().completion(token).await.unwrap();
    stop(st.client(), driver).await;
}

async fn oversized_then_small(protocol: ProtocolChoice, qos: QoS) -> Vec<Seen> {
    let broker = Mosquitto::start().unwrap();
    let st = state(config("small-rx", protocol), 8 * 1024);
    let (driver, mut events) = spawn_driver!(st, tcp(broker.tcp_port), 4096);
    let seen = within(30, async {
        connected(&mut events).await;
        st.client()
            .subscribe(&[sub("big/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        publish_from_another_client(broker.tcp_port, "big/one", vec![0xA5; 100 * 1024], qos).await;
        publish_from_another_client(broker.tcp_port, "big/small", b"fits".to_vec(), qos).await;
        let mut seen = Vec::new();
        loop {
            let s = events.recv().await.expect("driver ended");
            let done = matches!(&s, Seen::Message { topic, .. } if topic == "big/small");
            if !matches!(s, Seen::Other) {
                seen.push(s);
            }
            if done {
                break;
            }
        }
        assert!(st.client().is_connected());
        stop(st.client(), driver).await;
        seen
    })
    .await;
    drop(broker);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_oversized_publish_on_311_is_acknowledged_skipped_and_reported() {
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let seen = oversized_then_small(ProtocolChoice::V311, qos).await;
        // The skipped event names the topic, then the small message comes,
        // on the one connection (no Disconnected, no second Connected).
        assert!(
            matches!(
                seen.as_slice(),
                [
                    Seen::Skipped { topic: Some(t), len, qos: q },
                    Seen::Message { topic: small, payload, .. },
                ] if t == "big/one" && *len > 100 * 1024 && *q == qos
                    && small == "big/small" && payload == b"fits"
            ),
            "{qos:?}: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_3_1_2_11_4_receive_buffer_is_the_maximum_packet_size_so_the_broker_never_sends_more()
{
    let seen = oversized_then_small(ProtocolChoice::V5, QoS::AtLeastOnce).await;
    assert!(
        matches!(
            seen.as_slice(),
            [Seen::Message { topic, payload, .. }] if topic == "big/small" && payload == b"fits"
        ),
        "{seen:?}"
    );
}
