//! The link's life against aedes 1.2 (Node, MQTT 3.1.1 only): the will a
//! broker publishes when a client vanishes without DISCONNECT, none when it
//! says goodbye, and keepalive holding an idle link open. The same cases
//! against mosquitto are in `client_mosquitto.rs`.
//!
//! "Abnormal disconnect" here is the client's driver aborted: its future,
//! which owns the transport, is dropped, so the TCP (or WebSocket over TCP)
//! connection closes without an MQTT DISCONNECT, as when a device loses
//! power. aedes then publishes the will (MQTT 3.1.1 §3.1.2.5, §3.1.2.8).
//! Every driver is spawned on tokio's multi-threaded runtime and every test
//! runs under an overall timeout.

mod support;
use support::*;

use core::time::Duration;

use embermq::codec::{ProtocolVersion, QoS};
use embermq::session::{OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq_tests::peers::Aedes;
use tokio::sync::mpsc::UnboundedReceiver;

fn config(id: &str) -> SessionConfig<'static> {
    let mut c = SessionConfig::new(leak_str(format!("aedes-link-{id}-{}", std::process::id())));
    c.protocol = ProtocolChoice::V311;
    c.max_incoming_packet_size = SMALL as u32;
    c
}

/// A watcher subscribed to `wills/#` (over TCP) and a device with a will,
/// connected over TCP or WebSocket; the device's driver is aborted and the
/// watcher must receive the will.
async fn will_after_abort(broker: &Aedes, id: &str, over_ws: bool) {
    let watcher = state(config(&format!("{id}-watch")), SMALL);
    within(30, async {
        let (driver_w, mut events_w) = spawn_driver!(watcher, tcp(broker.tcp_port));
        watch(watcher.client(), &mut events_w, &["wills/#"]).await;
        let topic = leak_str(format!("wills/{id}"));
        let dev = state(with_will(config(id), topic), SMALL);
        // The transport is dropped with the driver's future: no DISCONNECT.
        if over_ws {
            let (driver, mut events) = spawn_driver!(dev, ws(broker.ws_port, SMALL));
            assert_eq!(connected(&mut events).await.1, ProtocolVersion::V311);
            abort(driver).await;
        } else {
            let (driver, mut events) = spawn_driver!(dev, tcp(broker.tcp_port));
            assert_eq!(connected(&mut events).await.1, ProtocolVersion::V311);
            abort(driver).await;
        }
        will_arrives(&mut events_w, topic).await;
        stop(watcher.client(), driver_w).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_8_will_published_by_aedes_after_an_abnormal_disconnect_over_tcp() {
    let broker = Aedes::start().unwrap();
    will_after_abort(&broker, "tcp", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_8_will_published_by_aedes_after_an_abnormal_disconnect_over_ws() {
    let broker = Aedes::start().unwrap();
    will_after_abort(&broker, "ws", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_14_4_3_disconnect_on_stop_means_aedes_publishes_no_will() {
    let broker = Aedes::start().unwrap();
    let watcher = state(config("nowill-watch"), SMALL);
    within(30, async {
        let (driver_w, mut events_w) = spawn_driver!(watcher, tcp(broker.tcp_port));
        watch(watcher.client(), &mut events_w, &["wills/#", "done"]).await;
        let dev = state(with_will(config("nowill"), "wills/nowill"), SMALL);
        let (driver_d, mut events_d) = spawn_driver!(dev, tcp(broker.tcp_port));
        connected(&mut events_d).await;
        stop(dev.client(), driver_d).await;
        marker_arrives_first(watcher.client(), &mut events_w).await;
        stop(watcher.client(), driver_w).await;
    })
    .await;
}

/// Idle for 3 × keepalive over `over_ws` or TCP: aedes closes a link that
/// sends nothing for 1.5 × keepalive (§3.1.2.10; checked by hand with a raw
/// socket that sent CONNECT with keepalive 1 s and then nothing: aedes
/// closed it after 1.51 s), so the link survives only if the client's
/// PINGREQs keep it; afterwards it still carries a message both ways.
async fn idle_link_kept(broker: &Aedes, id: &str, over_ws: bool) {
    let mut cfg = config(id);
    cfg.keep_alive_secs = 1;
    let st = state(cfg, SMALL);
    within(30, async {
        if over_ws {
            let (driver, events) = spawn_driver!(st, ws(broker.ws_port, SMALL));
            idle_then_publish(st.client(), events).await;
            driver.await.unwrap().unwrap();
        } else {
            let (driver, events) = spawn_driver!(st, tcp(broker.tcp_port));
            idle_then_publish(st.client(), events).await;
            driver.await.unwrap().unwrap();
        }
    })
    .await;
}

/// Connects, subscribes, stays idle for 3 s (3 × a 1 s keepalive), checks
/// the link never dropped, sends a message to itself, then stops.
async fn idle_then_publish(client: Handle, mut events: UnboundedReceiver<Seen>) {
    connected(&mut events).await;
    client
        .subscribe(&[sub("idle/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(client.is_connected(), "link dropped while idle");
    while let Ok(seen) = events.try_recv() {
        assert!(
            !matches!(seen, Seen::Disconnected(_) | Seen::Connected { .. }),
            "link dropped (or reconnected) while idle: {seen:?}"
        );
    }
    let token = client
        .publish(&OutgoingMessage::new("idle/1", b"awake", QoS::AtLeastOnce))
        .await
        .unwrap();
    client.completion(token).await.unwrap();
    assert_eq!(message(&mut events).await.1, b"awake");
    client.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_10_idle_for_three_keepalives_aedes_keeps_the_tcp_link() {
    let broker = Aedes::start().unwrap();
    idle_link_kept(&broker, "idle-tcp", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_10_idle_for_three_keepalives_aedes_keeps_the_ws_link() {
    let broker = Aedes::start().unwrap();
    idle_link_kept(&broker, "idle-ws", true).await;
}
