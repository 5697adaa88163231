//! The session fixes of issue 11 end to end, through the async client:
//!
//! - item 2: a real mosquitto (`max_inflight_messages 20`) with 200 QoS 2
//!   messages stored for a persistent 3.1.1 session sends them to a client
//!   whose `INFLIGHT` is 4, many before the first PUBREL (mosquitto 2.0.11
//!   releases far more than 20 at once): every one is delivered exactly
//!   once over one connection (the client used to close the link at the
//!   fifth, again and again, and never got through the backlog);
//! - item 4: `V5WithFallback` keeps 5.0 after a link dropped between
//!   CONNECT and CONNACK. No broker drops a link there on demand, so a small
//!   fault peer does: a TCP listener that closes the first connection right
//!   after reading the CONNECT and forwards every later one, byte for byte,
//!   to a real mosquitto (which accepts 5.0).
//!
//! Every test runs under an overall timeout.

extern crate alloc;

mod support;
use support::*;

use alloc::collections::BTreeMap;

use embermq::client::{ClientConfig, ClientState, Connection, CriticalSectionRawMutex};
use embermq::clock::TokioClock;
use embermq::codec::{ProtocolVersion, QoS};
use embermq::session::{OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq_tests::peers::Mosquitto;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;

/// A device-sized client: 4 in flight (and 4 inbound QoS 2 slots before
/// the 3.1.1 extra table), 8 subscriptions.
type Small = ClientState<'static, CriticalSectionRawMutex, 4, 8>;

/// Spawns the driver for a [`Small`] state over TCP to `port`.
fn spawn_small(
    state: &'static Small,
    port: u16,
    config: ClientConfig,
) -> (
    JoinHandle<Result<(), embermq::client::ClientError<embermq::transport::TokioTcpError>>>,
    UnboundedReceiver<Seen>,
) {
    let (tx, rx) = unbounded_channel();
    let driver = Connection::new(
        state,
        tcp(port),
        TokioClock::new(),
        StdRng::seed_from_u64(5),
        leak(4096),
        leak(4096),
        config,
    )
    .run(forward(tx));
    (tokio::spawn(driver), rx)
}

/// A persistent 3.1.1 session under a fixed client identifier.
fn persistent_v311(id: &'static str) -> SessionConfig<'static> {
    let mut c = SessionConfig::new(id);
    c.protocol = ProtocolChoice::V311;
    c.clean_start = false;
    c.max_incoming_packet_size = 4096;
    c
}

const BACKLOG: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_3_3_v311_stored_qos2_backlog_beyond_inflight_delivered_once_on_one_connection() {
    let broker = Mosquitto::start_with("max_inflight_messages 20\n").unwrap();
    let port = broker.tcp_port;
    let id = leak_str(format!("backlog-{}", std::process::id()));
    within(60, async {
        // The device subscribes at QoS 2 on a persistent session and goes
        // away politely.
        let device: &'static Small = Box::leak(Box::new(ClientState::new(
            persistent_v311(id),
            leak(4096),
        )));
        let (driver, mut events) = spawn_small(device, port, fast_reconnect());
        connected(&mut events).await;
        device
            .client()
            .subscribe(&[sub("backlog/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        device.client().stop();
        driver.await.unwrap().unwrap();

        // While it is away, another client publishes the backlog at QoS 2.
        let mut c = SessionConfig::new(leak_str(format!("feeder-{}", std::process::id())));
        c.protocol = ProtocolChoice::V311;
        let feeder = state(c, 4096);
        let (feeder_driver, mut feeder_events) = spawn_driver!(feeder, tcp(port));
        connected(&mut feeder_events).await;
        for i in 0..BACKLOG {
            let topic = format!("backlog/{i}");
            let payload = i.to_string();
            let msg = OutgoingMessage::new(&topic, payload.as_bytes(), QoS::ExactlyOnce);
            let token = feeder.client().publish(&msg).await.unwrap();
            feeder.client().completion(token).await.unwrap();
        }
        stop(feeder.client(), feeder_driver).await;

        // The device comes back with a fresh state (as after a reboot) on
        // the same session: mosquitto sends the backlog in bursts.
        let device: &'static Small = Box::leak(Box::new(ClientState::new(
            persistent_v311(id),
            leak(4096),
        )));
        let (driver, mut events) = spawn_small(device, port, fast_reconnect());
        let mut got: BTreeMap<String, usize> = BTreeMap::new();
        let mut connects = Vec::new();
        let mut other_link_events = Vec::new();
        let mut delivered = 0;
        while delivered < BACKLOG {
            match events.recv().await.expect("driver ended") {
                Seen::Message { topic, payload, qos, .. } => {
                    assert_eq!(qos, QoS::ExactlyOnce);
                    assert_eq!(topic, format!("backlog/{}", String::from_utf8(payload).unwrap()));
                    *got.entry(topic).or_default() += 1;
                    delivered += 1;
                }
                Seen::Connected { session_present, version } => {
                    connects.push((session_present, version));
                }
                e @ (Seen::Disconnected(_) | Seen::Reconnecting(_)) => other_link_events.push(e),
                _ => {}
            }
        }
        // A little longer: no duplicate and no second link may follow.
        let settle = tokio::time::sleep(core::time::Duration::from_millis(500));
        tokio::pin!(settle);
        loop {
            tokio::select! {
                () = &mut settle => break,
                seen = events.recv() => match seen.expect("driver ended") {
                    Seen::Message { topic, .. } => *got.entry(topic).or_default() += 1,
                    Seen::Connected { session_present, version } => {
                        connects.push((session_present, version));
                    }
                    e @ (Seen::Disconnected(_) | Seen::Reconnecting(_)) => other_link_events.push(e),
                    _ => {}
                },
            }
        }
        assert_eq!(
            connects,
            vec![(true, ProtocolVersion::V311)],
            "one connection: {other_link_events:?}"
        );
        assert!(other_link_events.is_empty(), "{other_link_events:?}");
        assert_eq!(got.len(), BACKLOG, "every message delivered");
        let twice: Vec<_> = got.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
        device.client().stop();
        driver.await.unwrap().unwrap();
    })
    .await;
}

/// A fault peer: closes the first connection as soon as it has read the
/// client's CONNECT (before any CONNACK), and forwards every later one to
/// `broker_port`. Real brokers do not drop a link there on demand; a
/// restart, a proxy's idle timeout or a network fault do. Returns its port.
async fn drop_first_link_before_connack(broker_port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            if first {
                first = false;
                let mut connect = [0u8; 512];
                let n = client.read(&mut connect).await.unwrap_or(0);
                assert!(n > 0 && connect[0] == 0x10, "a CONNECT came first");
                drop(client);
                continue;
            }
            tokio::spawn(async move {
                let mut broker = TcpStream::connect(("127.0.0.1", broker_port))
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_v5_with_fallback_keeps_5_0_after_a_link_lost_before_connack() {
    let broker = Mosquitto::start().unwrap();
    within(20, async {
        let proxy = drop_first_link_before_connack(broker.tcp_port).await;
        let mut c = SessionConfig::new(leak_str(format!("fallback-{}", std::process::id())));
        c.protocol = ProtocolChoice::V5WithFallback;
        let st = state(c, 4096);
        let (driver, mut events) = spawn_driver!(st, tcp(proxy));
        // The first link ends before CONNACK; the reconnect is still 5.0.
        let first = next_matching(&mut events, |s| match s {
            Seen::Disconnected(reason) => Some(*reason),
            Seen::Connected { .. } => panic!("the first link must not be accepted"),
            _ => None,
        })
        .await;
        assert_eq!(first, embermq::session::CloseReason::TransportClosed);
        assert_eq!(connected(&mut events).await, (false, ProtocolVersion::V5));
        stop(st.client(), driver).await;
    })
    .await;
}
