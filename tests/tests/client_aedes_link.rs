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

use embermq::client::{Connection, Event};
use embermq::clock::TokioClock;
use embermq::codec::{ProtocolVersion, QoS, Will};
use embermq::session::{CloseReason, OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq_tests::peers::Aedes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

/// Buffers (outbox, rx, tx, WebSocket).
const BUF: usize = 4096;

/// An event copied out of the driver.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Message {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    },
    Connected(ProtocolVersion),
    Disconnected(CloseReason),
    Other,
}

/// Spawns the driver for `state` over `connector`; events go to the
/// returned channel. A macro so that `tokio::spawn` checks `run`'s own
/// future for `Send` with its concrete types (docs/client.md, "Send").
macro_rules! spawn_driver {
    ($state:expr, $connector:expr) => {{
        let (state, connector): (&'static State, _) = ($state, $connector);
        let (tx, rx) = unbounded_channel();
        let driver = Connection::new(
            state,
            connector,
            TokioClock::new(),
            StdRng::seed_from_u64(5),
            leak(BUF),
            leak(BUF),
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
            Event::Connected { version, .. } => Seen::Connected(version),
            Event::Disconnected { reason } => Seen::Disconnected(reason),
            _ => Seen::Other,
        };
        let _ = tx.send(seen);
    }
}

fn config(id: &str) -> SessionConfig<'static> {
    let mut c = SessionConfig::new(leak_str(format!("aedes-link-{id}-{}", std::process::id())));
    c.protocol = ProtocolChoice::V311;
    c.max_incoming_packet_size = BUF as u32;
    c
}

/// A device configuration whose will is `gone` on `wills/<id>` at QoS 1.
fn with_will(id: &str) -> SessionConfig<'static> {
    let mut c = config(id);
    c.will = Some(Will {
        topic: leak_str(format!("wills/{id}")),
        payload: b"gone",
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: embermq::codec::Properties::NONE,
    });
    c
}

async fn connected(events: &mut UnboundedReceiver<Seen>) -> ProtocolVersion {
    loop {
        if let Seen::Connected(version) = events.recv().await.expect("driver ended") {
            return version;
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

/// Aborts a spawned driver and waits until it is gone.
async fn abort<T: core::fmt::Debug>(driver: JoinHandle<T>) {
    driver.abort();
    assert!(driver.await.unwrap_err().is_cancelled());
}

/// A watcher subscribed to `wills/#` (over TCP) and a device with a will,
/// connected over TCP or WebSocket; the device's driver is aborted and the
/// watcher must receive the will.
async fn will_after_abort(broker: &Aedes, id: &str, over_ws: bool) {
    let watcher = state(config(&format!("{id}-watch")), BUF);
    within(30, async {
        let (driver_w, mut events_w) = spawn_driver!(watcher, tcp(broker.tcp_port));
        connected(&mut events_w).await;
        watcher
            .client()
            .subscribe(&[sub("wills/#", QoS::AtLeastOnce)])
            .await
            .unwrap();
        let dev = state(with_will(id), BUF);
        // The transport is dropped with the driver's future: no DISCONNECT.
        if over_ws {
            let (driver, mut events) = spawn_driver!(dev, ws(broker.ws_port, BUF));
            assert_eq!(connected(&mut events).await, ProtocolVersion::V311);
            abort(driver).await;
        } else {
            let (driver, mut events) = spawn_driver!(dev, tcp(broker.tcp_port));
            assert_eq!(connected(&mut events).await, ProtocolVersion::V311);
            abort(driver).await;
        }
        assert_eq!(
            message(&mut events_w).await,
            (
                format!("wills/{id}"),
                b"gone".to_vec(),
                QoS::AtLeastOnce,
                false
            )
        );
        watcher.client().stop();
        driver_w.await.unwrap().unwrap();
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
    let watcher = state(config("nowill-watch"), BUF);
    within(30, async {
        let (driver_w, mut events_w) = spawn_driver!(watcher, tcp(broker.tcp_port));
        connected(&mut events_w).await;
        watcher
            .client()
            .subscribe(&[
                sub("wills/#", QoS::AtLeastOnce),
                sub("done", QoS::AtLeastOnce),
            ])
            .await
            .unwrap();
        let dev = state(with_will("nowill"), BUF);
        let (driver_d, mut events_d) = spawn_driver!(dev, tcp(broker.tcp_port));
        connected(&mut events_d).await;
        dev.client().stop();
        driver_d.await.unwrap().unwrap();
        // A marker published after the DISCONNECT: a will would come first.
        let token = watcher
            .client()
            .publish(&OutgoingMessage::new("done", b"", QoS::AtLeastOnce))
            .await
            .unwrap();
        watcher.client().completion(token).await.unwrap();
        assert_eq!(message(&mut events_w).await.0, "done");
        watcher.client().stop();
        driver_w.await.unwrap().unwrap();
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
    let st = state(cfg, BUF);
    within(30, async {
        if over_ws {
            let (driver, events) = spawn_driver!(st, ws(broker.ws_port, BUF));
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
            !matches!(seen, Seen::Disconnected(_) | Seen::Connected(_)),
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
