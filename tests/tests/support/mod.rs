//! Plumbing shared by the client integration tests (`client_mosquitto`,
//! `client_aedes`, `client_aedes_link`, `client_rumqttd`, `client_faults`,
//! ...): the client state type, leaked buffers with the `'static` lifetime
//! the driver wants, connectors, the overall time limit every test runs
//! under, the driver's events copied out ([`Seen`], [`forward`],
//! [`spawn_driver!`]) with the waits on them, and the test bodies that
//! several brokers run alike (publish to self, retained message, 1 MiB
//! payload). Each test binary uses a different part of it, hence
//! `dead_code` is allowed here.
#![allow(dead_code)]

use core::future::Future;
use core::time::Duration;

use embermq::client::{Backoff, Client, ClientConfig, ClientState, CriticalSectionRawMutex, Event};
use embermq::codec::{ProtocolVersion, QoS, ReasonCode, Subscription, SubscriptionOptions};
use embermq::session::{
    CloseReason, Event as SessionEvent, OutgoingMessage, PublishFailure, SessionConfig,
};
use embermq::store::Store;
use embermq::transport::TokioTcpConnector;
use embermq::transport::WsConnector;
use embermq_ws::Buffers;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

/// The default buffer size (outbox, rx, tx, WebSocket buffers).
pub(crate) const SMALL: usize = 4096;

/// The client state every test uses: 16 in flight, 8 subscriptions.
pub(crate) type State = ClientState<'static, CriticalSectionRawMutex, 16, 8>;
/// A handle to [`State`].
pub(crate) type Handle = Client<'static, 'static, CriticalSectionRawMutex, 16, 8>;

/// A zeroed buffer that lives for the rest of the test process.
pub(crate) fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

/// A string that lives for the rest of the test process.
pub(crate) fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Client state over `config` with an outbox of `outbox` bytes.
pub(crate) fn state(config: SessionConfig<'static>, outbox: usize) -> &'static State {
    Box::leak(Box::new(ClientState::new(config, leak(outbox))))
}

/// Reconnects quickly (50 ms base, 400 ms cap) and never gives up.
pub(crate) fn fast_reconnect() -> ClientConfig {
    ClientConfig {
        backoff: Backoff {
            base: embermq::time::Duration::from_millis(50),
            cap: embermq::time::Duration::from_millis(400),
            max_attempts: None,
        },
        connect_timeout: embermq::time::Duration::from_secs(5),
        close_timeout: embermq::time::Duration::from_secs(1),
    }
}

/// Plain TCP to a broker on loopback.
pub(crate) fn tcp(port: u16) -> TokioTcpConnector {
    TokioTcpConnector::new("127.0.0.1", port)
}

/// WebSocket (path `/mqtt`, subprotocol `mqtt`) over TCP on loopback, with
/// WebSocket buffers of `buf` bytes each.
pub(crate) fn ws(port: u16, buf: usize) -> WsConnector<'static, TokioTcpConnector, StdRng> {
    WsConnector::new(
        tcp(port),
        "127.0.0.1",
        Some(port),
        "/mqtt",
        Buffers {
            rx: leak(buf),
            tx: leak(buf),
        },
        StdRng::seed_from_u64(11),
    )
}

/// Runs `f` with an overall limit so no test hangs.
pub(crate) async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time limit")
}

/// A subscription to `filter` at `qos` with default options.
pub(crate) fn sub(filter: &str, qos: QoS) -> Subscription<'_> {
    Subscription {
        filter,
        options: SubscriptionOptions::qos(qos),
    }
}

/// 5.0 properties copied out: response topic, correlation data, user
/// properties.
pub(crate) type Props = (Option<String>, Option<Vec<u8>>, Vec<(String, String)>);

/// An event copied out of the driver (messages own their topic and payload).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seen {
    /// A message delivered to the client.
    Message {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        /// 5.0: response topic, correlation data, user properties.
        props: Props,
        /// The DUP flag: the broker sent it before (a redelivery).
        dup: bool,
    },
    /// The broker accepted the CONNECT.
    Connected {
        session_present: bool,
        version: ProtocolVersion,
    },
    /// The broker refused the CONNECT.
    Refused {
        reason: ReasonCode,
        falling_back_to_v311: bool,
    },
    /// The link closed.
    Disconnected(CloseReason),
    /// The driver is about to reconnect (attempt number).
    Reconnecting(u32),
    /// A publication failed.
    PublishFailed(PublishFailure),
    /// Subscriptions restored after a lost session (how many refused).
    Restored(u16),
    /// A message too large for the receive buffer was skipped.
    Skipped {
        topic: Option<String>,
        len: usize,
        qos: QoS,
    },
    /// Anything else.
    Other,
}

/// The event handler that copies each event into [`Seen`] and sends it.
pub(crate) fn forward(tx: UnboundedSender<Seen>) -> impl FnMut(Event<'_>) + Send {
    move |event: Event<'_>| {
        let seen = match event {
            Event::Message(m) => Seen::Message {
                topic: m.topic.to_owned(),
                payload: m.payload.to_vec(),
                qos: m.qos,
                retain: m.retain,
                props: (
                    m.properties.response_topic().map(str::to_owned),
                    m.properties.correlation_data().map(<[u8]>::to_vec),
                    m.properties
                        .user_properties()
                        .map(|u| (u.name.to_owned(), u.value.to_owned()))
                        .collect(),
                ),
                dup: m.dup,
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
            Event::Disconnected { reason } => Seen::Disconnected(reason),
            Event::Reconnecting { attempt, .. } => Seen::Reconnecting(attempt),
            Event::PublishComplete {
                result: Err(failure),
                ..
            } => Seen::PublishFailed(failure),
            Event::SubscriptionsRestored { refused } => Seen::Restored(refused),
            Event::MessageSkipped {
                topic, len, qos, ..
            } => Seen::Skipped {
                topic: topic.map(str::to_owned),
                len,
                qos,
            },
            _ => Seen::Other,
        };
        let _ = tx.send(seen);
    }
}

/// Spawns the driver for `state` over `connector` with rx and tx buffers of
/// `buf` bytes ([`SMALL`] when not given) and [`fast_reconnect`] on the
/// multi-threaded runtime; events go to the returned channel. A macro so
/// that `tokio::spawn` checks `run`'s own future for `Send` with its
/// concrete types (see docs/client.md, "Send"). Binaries with their own
/// driver macro leave it unused.
#[allow(unused_macros)]
macro_rules! spawn_driver {
    ($state:expr, $connector:expr) => {
        spawn_driver!($state, $connector, $crate::support::SMALL)
    };
    ($state:expr, $connector:expr, $buf:expr) => {{
        let (state, connector, buf): (&'static $crate::support::State, _, usize) =
            ($state, $connector, $buf);
        let (tx, rx) = ::tokio::sync::mpsc::unbounded_channel();
        let driver = ::embermq::client::Connection::new(
            state,
            connector,
            ::embermq::clock::TokioClock::new(),
            <::rand::rngs::StdRng as ::rand::SeedableRng>::seed_from_u64(7),
            $crate::support::leak(buf),
            $crate::support::leak(buf),
            $crate::support::fast_reconnect(),
        )
        .run($crate::support::forward(tx));
        (::tokio::spawn(driver), rx)
    }};
}
#[allow(unused_imports)]
pub(crate) use spawn_driver;

/// The next event that `pick` accepts (others are skipped).
pub(crate) async fn next_matching<T>(
    events: &mut UnboundedReceiver<Seen>,
    mut pick: impl FnMut(&Seen) -> Option<T>,
) -> T {
    loop {
        let seen = events.recv().await.expect("driver ended");
        if let Some(t) = pick(&seen) {
            return t;
        }
    }
}

/// The next connect: session present and protocol version.
pub(crate) async fn connected(events: &mut UnboundedReceiver<Seen>) -> (bool, ProtocolVersion) {
    next_matching(events, |s| match s {
        Seen::Connected {
            session_present,
            version,
        } => Some((*session_present, *version)),
        _ => None,
    })
    .await
}

/// The next message: topic, payload, QoS, retain and 5.0 properties.
pub(crate) async fn message_with_props(
    events: &mut UnboundedReceiver<Seen>,
) -> (String, Vec<u8>, QoS, bool, Props) {
    next_matching(events, |s| match s {
        Seen::Message {
            topic,
            payload,
            qos,
            retain,
            props,
            ..
        } => Some((topic.clone(), payload.clone(), *qos, *retain, props.clone())),
        _ => None,
    })
    .await
}

/// The next message: topic, payload, QoS and retain.
pub(crate) async fn message(events: &mut UnboundedReceiver<Seen>) -> (String, Vec<u8>, QoS, bool) {
    let (topic, payload, qos, retain, _) = message_with_props(events).await;
    (topic, payload, qos, retain)
}

/// Subscribes to `t/#` at QoS 2, publishes QoS 0, 1 and 2 to itself,
/// awaits each token (written, PUBACK, PUBCOMP) and receives each message
/// at its QoS; the connect must have been a new session in `expect`.
pub(crate) async fn publish_to_self_on(
    client: Handle,
    events: &mut UnboundedReceiver<Seen>,
    expect: ProtocolVersion,
) {
    assert_eq!(connected(events).await, (false, expect));
    let results = client
        .subscribe(&[sub("t/#", QoS::ExactlyOnce)])
        .await
        .unwrap();
    assert_eq!(results.codes(), &[ReasonCode(2)]);
    publish_each_qos_to_self(client, events).await;
}

/// Publishes `payload i` at QoS 0, 1 and 2 to `t/i` (i = 0, 1, 2; the
/// client is subscribed to them), awaits each token and receives each
/// message at its QoS; then stops the client.
pub(crate) async fn publish_each_qos_to_self(client: Handle, events: &mut UnboundedReceiver<Seen>) {
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

/// First half of the retained-message test (MQTT 3.3.1.3): once
/// connected, publishes `kept` to `r/x` at QoS 1 with retain, awaits the
/// PUBACK and stops the client and its driver.
pub(crate) async fn publish_retained<E: core::fmt::Debug>(
    client: Handle,
    driver: JoinHandle<Result<(), E>>,
    events: &mut UnboundedReceiver<Seen>,
) {
    connected(events).await;
    let mut msg = OutgoingMessage::new("r/x", b"kept", QoS::AtLeastOnce);
    msg.retain = true;
    let token = client.publish(&msg).await.unwrap();
    client.completion(token).await.unwrap();
    client.stop();
    driver.await.unwrap().unwrap();
}

/// Second half: a later client subscribes to `r/#` and must receive
/// `kept` on `r/x` with the retain flag set; then it stops.
pub(crate) async fn retained_arrives<E: core::fmt::Debug>(
    client: Handle,
    driver: JoinHandle<Result<(), E>>,
    events: &mut UnboundedReceiver<Seen>,
) {
    connected(events).await;
    client
        .subscribe(&[sub("r/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    assert_eq!(
        message(events).await,
        ("r/x".to_owned(), b"kept".to_vec(), QoS::AtLeastOnce, true)
    );
    client.stop();
    driver.await.unwrap().unwrap();
}

/// The large-payload test: 1 MiB of application payload.
pub(crate) const BIG_PAYLOAD: usize = 1 << 20;
/// Room for the 1 MiB PUBLISH: fixed header, topic, packet id, plus slack
/// (and the outbox's 12-byte entry header).
pub(crate) const BIG_BUF: usize = BIG_PAYLOAD + 1024;

/// Client state named by `config` made able to carry the 1 MiB PUBLISH
/// (incoming limit and outbox of [`BIG_BUF`]).
pub(crate) fn big_state(mut config: SessionConfig<'static>) -> &'static State {
    config.max_incoming_packet_size = BIG_BUF as u32;
    state(config, BIG_BUF)
}

/// Once connected, subscribes to `big/#`, publishes 1 MiB at QoS 1 to
/// `big/1` and must receive it back unaltered; then stops. The payload is
/// not a repeating pattern: a misplaced or dropped chunk changes it.
pub(crate) async fn one_mib_to_self<E: core::fmt::Debug>(
    client: Handle,
    driver: JoinHandle<Result<(), E>>,
    events: &mut UnboundedReceiver<Seen>,
) {
    let payload: Vec<u8> = (0..BIG_PAYLOAD as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    connected(events).await;
    client
        .subscribe(&[sub("big/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let token = client
        .publish(&OutgoingMessage::new("big/1", &payload, QoS::AtLeastOnce))
        .await
        .unwrap();
    client.completion(token).await.unwrap();
    let (topic, got, qos, retain) = message(events).await;
    assert_eq!(
        (topic.as_str(), qos, retain),
        ("big/1", QoS::AtLeastOnce, false)
    );
    assert_eq!(got.len(), BIG_PAYLOAD);
    assert!(got == payload, "1 MiB payload arrived altered");
    client.stop();
    driver.await.unwrap().unwrap();
}

/// `config` with a will: `gone` on `topic` at QoS 1, not retained.
pub(crate) fn with_will(
    mut config: SessionConfig<'static>,
    topic: &'static str,
) -> SessionConfig<'static> {
    config.will = Some(embermq::codec::Will {
        topic,
        payload: b"gone",
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: embermq::codec::Properties::NONE,
    });
    config
}

/// Once connected, subscribes to each of `filters` at QoS 1.
pub(crate) async fn watch(client: Handle, events: &mut UnboundedReceiver<Seen>, filters: &[&str]) {
    connected(events).await;
    let subs: Vec<_> = filters.iter().map(|f| sub(f, QoS::AtLeastOnce)).collect();
    client.subscribe(&subs).await.unwrap();
}

/// Aborts a spawned driver and waits until it is gone: the transport is
/// dropped with the driver's future, without DISCONNECT.
pub(crate) async fn abort<T: core::fmt::Debug>(driver: JoinHandle<T>) {
    driver.abort();
    assert!(driver.await.unwrap_err().is_cancelled());
}

/// The next message must be the will `gone` on `topic` at QoS 1.
pub(crate) async fn will_arrives(events: &mut UnboundedReceiver<Seen>, topic: &str) {
    assert_eq!(
        message(events).await,
        (topic.to_owned(), b"gone".to_vec(), QoS::AtLeastOnce, false)
    );
}

/// After the device with a will stopped cleanly (DISCONNECT sent), the
/// watcher subscribed to `wills/#` and `done` publishes a marker to `done`:
/// a will would arrive before it, so the next message must be the marker.
pub(crate) async fn marker_arrives_first(watcher: Handle, events: &mut UnboundedReceiver<Seen>) {
    let token = watcher
        .publish(&OutgoingMessage::new("done", b"", QoS::AtLeastOnce))
        .await
        .unwrap();
    watcher.completion(token).await.unwrap();
    assert_eq!(message(events).await.0, "done");
}

/// Stops the client (over any store) and waits for its driver to end
/// with `Ok`.
pub(crate) async fn stop<St: Store, E: core::fmt::Debug>(
    client: Client<'static, 'static, CriticalSectionRawMutex, 16, 8, 128, 0, St>,
    driver: JoinHandle<Result<(), E>>,
) {
    client.stop();
    driver.await.unwrap().unwrap();
}

/// 5.0 properties end to end (MQTT 5.0 §3.3.2.3): once connected,
/// subscribes to `req/#`, publishes `21.5` to `req/1` at QoS 1 with a
/// response topic, correlation data and a user property, and the message
/// that comes back must carry all three; then stops the client. Returns
/// the topic and payload received.
pub(crate) async fn properties_to_self<E: core::fmt::Debug>(
    client: Handle,
    driver: JoinHandle<Result<(), E>>,
    events: &mut UnboundedReceiver<Seen>,
) -> (String, Vec<u8>) {
    use embermq::codec::{Properties, PropertyFields, UserProperty};
    client
        .subscribe(&[sub("req/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let users = [UserProperty {
        name: "unit",
        value: "celsius",
    }];
    let fields = PropertyFields {
        response_topic: Some("resp/1"),
        correlation_data: Some(b"c-42"),
        user_properties: &users,
        ..PropertyFields::NONE
    };
    let mut msg = OutgoingMessage::new("req/1", b"21.5", QoS::AtLeastOnce);
    msg.properties = Properties::from_fields(&fields);
    let token = client.publish(&msg).await.unwrap();
    client.completion(token).await.unwrap();
    let (topic, payload, _, _, props) = message_with_props(events).await;
    assert_eq!(
        props,
        (
            Some("resp/1".to_owned()),
            Some(b"c-42".to_vec()),
            vec![("unit".to_owned(), "celsius".to_owned())]
        )
    );
    stop(client, driver).await;
    (topic, payload)
}
