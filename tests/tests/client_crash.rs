//! The durable outbox through a crash at every point (issue 18): the
//! client, its driver and a durable store run a workload against a
//! scripted broker; the process "dies" at one store operation or one
//! transport write (before it takes effect, or just after), is restarted
//! over what the store had made durable, and the restarted client must
//! deliver every message whose `publish` returned `Ok`: at least once,
//! and, per publisher, the first deliveries in publish order.
//!
//! Both peers are fault injectors, because no real broker or disk can be
//! stopped at an exact operation: the store keeps records in memory and
//! treats a returned persist as durable (the file- and flash-level power
//! cuts are explored beside `FileStore` and `FlashStore`); the broker is a
//! minimal MQTT 3.1.1 server on an in-memory pipe that acknowledges every
//! QoS 1 PUBLISH and records what it received, across connections, as a
//! real broker's subscribers would.
//!
//! The number of cut points explored is printed.

extern crate alloc;

mod support;
use support::{leak, leak_str};

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::future::Future;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;
use std::collections::HashMap;
use std::sync::Mutex;

use embedded_io_adapters::tokio_1::FromTokio;
use embermq::client::{
    Backoff, ClientConfig, ClientState, Connection, CriticalSectionRawMutex, Event,
};
use embermq::clock::TokioClock;
use embermq::codec::{
    Connack, DecodeOptions, Decoded, Packet, Properties, ProtocolVersion, PubAck, QoS, ReasonCode,
};
use embermq::session::{OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq::store::Store;
use embermq::transport::{Connector, Transport};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// Where the process dies: the `at`-th fault point (store operations and
/// transport writes, counted together from 0), before it takes effect or
/// just after.
#[derive(Debug, Clone, Copy)]
struct Cut {
    at: usize,
    after: bool,
}

/// Counts the fault points and kills the process at the chosen one.
#[derive(Default)]
struct Fate {
    cut: Option<(usize, bool)>,
    seen: AtomicUsize,
    dead: AtomicBool,
    died: tokio::sync::Notify,
}

impl Fate {
    fn new(cut: Option<Cut>) -> Arc<Self> {
        Arc::new(Self {
            cut: cut.map(|c| (c.at, c.after)),
            ..Self::default()
        })
    }

    /// Called at a fault point: `Some(after)` when the process dies here.
    fn tick(&self) -> Option<bool> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        match self.cut {
            Some((at, after)) if at == n => Some(after),
            _ => None,
        }
    }

    fn die(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.died.notify_waiters();
        self.died.notify_one();
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
}

/// A dead process does nothing more, ever.
async fn never() -> ! {
    core::future::pending().await
}

/// The payloads the broker received, in order, across connections.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// What the store made durable, shared with the restarted process.
type Disk = Arc<Mutex<BTreeMap<u32, Vec<u8>>>>;

/// Fault injector: an in-memory durable store whose every operation is a
/// fault point.
struct CrashStore {
    disk: Disk,
    fate: Arc<Fate>,
}

#[derive(Debug)]
struct Never;

impl core::fmt::Display for Never {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("never")
    }
}

impl core::error::Error for Never {}

impl CrashStore {
    /// Runs `effect` under the fault point's rules.
    async fn op(&mut self, effect: impl FnOnce(&mut BTreeMap<u32, Vec<u8>>)) {
        if self.fate.is_dead() {
            never().await;
        }
        match self.fate.tick() {
            None => effect(&mut self.disk.lock().unwrap()),
            Some(after) => {
                if after {
                    effect(&mut self.disk.lock().unwrap());
                }
                self.fate.die();
                never().await;
            }
        }
    }
}

impl Store for CrashStore {
    type Error = Never;

    fn replay<V: FnMut(u32, &[u8])>(
        &mut self,
        mut visit: V,
    ) -> impl Future<Output = Result<(), Never>> {
        for (key, record) in self.disk.lock().unwrap().iter() {
            visit(*key, record);
        }
        core::future::ready(Ok(()))
    }

    async fn persist<F: FnOnce(&mut [u8])>(
        &mut self,
        key: u32,
        len: usize,
        fill: F,
    ) -> Result<(), Never> {
        let mut record = vec![0u8; len];
        fill(&mut record);
        self.op(move |disk| {
            disk.insert(key, record);
        })
        .await;
        Ok(())
    }

    async fn remove(&mut self, key: u32) -> Result<(), Never> {
        self.op(move |disk| {
            disk.remove(&key);
        })
        .await;
        Ok(())
    }
}

/// The client's end of an in-memory pipe; each write is a fault point.
struct PipeStream {
    io: FromTokio<DuplexStream>,
    fate: Arc<Fate>,
}

impl embedded_io_async::ErrorType for PipeStream {
    type Error = std::io::Error;
}

impl embedded_io_async::Read for PipeStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        if self.fate.is_dead() {
            never().await;
        }
        self.io.read(buf).await
    }
}

impl embedded_io_async::Write for PipeStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        if self.fate.is_dead() {
            never().await;
        }
        match self.fate.tick() {
            None => self.io.write(buf).await,
            Some(after) => {
                if after {
                    let _ = embedded_io_async::Write::write_all(&mut self.io, buf).await;
                    let _ = embedded_io_async::Write::flush(&mut self.io).await;
                }
                self.fate.die();
                never().await
            }
        }
    }

    async fn flush(&mut self) -> Result<(), std::io::Error> {
        self.io.flush().await
    }
}

impl Transport for PipeStream {}

/// Opens a pipe to the scripted broker per connect.
struct PipeConnector {
    broker: mpsc::UnboundedSender<DuplexStream>,
    fate: Arc<Fate>,
}

impl Connector for PipeConnector {
    type Transport<'a> = PipeStream;
    type Error = std::io::Error;

    async fn connect(&mut self) -> Result<PipeStream, std::io::Error> {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        self.broker
            .send(theirs)
            .map_err(|_| std::io::Error::other("broker gone"))?;
        Ok(PipeStream {
            io: FromTokio::new(ours),
            fate: self.fate.clone(),
        })
    }
}

/// What the scripted broker does, and how the client is set up for it:
/// one variant of the exploration.
#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    /// MQTT 5.0 (reason codes in acknowledgements), else 3.1.1.
    v5: bool,
    /// The QoS of every publish.
    qos: QoS,
    /// The client resumes its session (clean start off) and the broker
    /// keeps it: QoS 2 identifiers awaiting PUBREL stay held across
    /// connections, and a PUBLISH under a held identifier is answered with
    /// PUBREC and not taken as a new message [MQTT-4.3.3-9].
    resumed: bool,
    /// The n-th QoS 1 PUBLISH the broker ever receives (from 1) is refused
    /// with 0x97 Quota exceeded (5.0): the client must retry it.
    refuse_nth: Option<usize>,
    /// The disk holds an undecodable record before the first life: it
    /// must be quarantined, and the others still delivered.
    poisoned: bool,
}

const PLAIN: Variant = Variant {
    name: "3.1.1, QoS 1",
    v5: false,
    qos: QoS::AtLeastOnce,
    resumed: false,
    refuse_nth: None,
    poisoned: false,
};

impl Variant {
    fn version(&self) -> ProtocolVersion {
        if self.v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        }
    }
}

/// What the scripted broker keeps across connections.
#[derive(Default)]
struct BrokerSession {
    /// QoS 2 messages received and awaiting PUBREL, by packet identifier.
    held: HashMap<u16, Vec<u8>>,
    /// QoS 1 PUBLISH packets received, refused ones included.
    qos1_seen: usize,
    /// Payloads refused (0x97), in order.
    refused: Vec<Vec<u8>>,
    connections: usize,
}

/// Fault injector: a minimal MQTT broker serving each pipe it is handed
/// as `variant` says; every message it takes is recorded (payload), as a
/// real broker's subscribers would see it: QoS 1 at PUBLISH, QoS 2 at
/// PUBREL.
fn scripted_broker(
    variant: Variant,
) -> (
    mpsc::UnboundedSender<DuplexStream>,
    Received,
    Arc<Mutex<BrokerSession>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<DuplexStream>();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let session = Arc::new(Mutex::new(BrokerSession::default()));
    let broker_session = session.clone();
    let version = variant.version();
    tokio::spawn(async move {
        while let Some(mut pipe) = rx.recv().await {
            let (log, session) = (log.clone(), session.clone());
            {
                let mut s = session.lock().unwrap();
                s.connections += 1;
                if !variant.resumed {
                    s.held.clear();
                }
            }
            tokio::spawn(async move {
                let opts = DecodeOptions::new(version);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Ok(Decoded::Complete { value, len }) = Packet::decode(&buf, &opts) {
                        let mut out = [0u8; 16];
                        let reply = {
                            let mut s = session.lock().unwrap();
                            match value {
                                Packet::Connect(_) => Some(Packet::Connack(Connack {
                                    session_present: variant.resumed && s.connections > 1,
                                    reason_code: ReasonCode::SUCCESS,
                                    properties: Properties::NONE,
                                })),
                                Packet::Publish(p) => match (p.qos, p.packet_id) {
                                    (QoS::AtLeastOnce, Some(id)) => {
                                        s.qos1_seen += 1;
                                        let refused = variant.refuse_nth == Some(s.qos1_seen);
                                        if refused {
                                            s.refused.push(p.payload.to_vec());
                                        } else {
                                            log.lock().unwrap().push(p.payload.to_vec());
                                        }
                                        Some(Packet::Puback(PubAck {
                                            reason_code: if refused {
                                                ReasonCode::QUOTA_EXCEEDED
                                            } else {
                                                ReasonCode::SUCCESS
                                            },
                                            ..PubAck::new(id)
                                        }))
                                    }
                                    (QoS::ExactlyOnce, Some(id)) => {
                                        s.held.entry(id).or_insert_with(|| p.payload.to_vec());
                                        Some(Packet::Pubrec(PubAck::new(id)))
                                    }
                                    _ => None,
                                },
                                Packet::Pubrel(a) => {
                                    if let Some(payload) = s.held.remove(&a.packet_id) {
                                        log.lock().unwrap().push(payload);
                                    }
                                    Some(Packet::Pubcomp(PubAck::new(a.packet_id)))
                                }
                                Packet::Pingreq => Some(Packet::Pingresp),
                                _ => None,
                            }
                        };
                        buf.drain(..len);
                        if let Some(Ok(n)) = reply.map(|r| r.encode(&mut out, version))
                            && pipe.write_all(&out[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                    match pipe.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (tx, received, broker_session)
}

type State = ClientState<'static, CriticalSectionRawMutex, 4, 1, 128, 0, CrashStore>;

/// One process life: a client over `disk` (replayed first) whose driver
/// talks to the broker, with `publishers` tasks each publishing its own
/// messages (QoS 1) one after the other. Returns the messages whose
/// publish returned `Ok` before the process died (or all of them) and
/// whether it died.
async fn life(
    variant: Variant,
    disk: &Disk,
    broker: &mpsc::UnboundedSender<DuplexStream>,
    fate: Arc<Fate>,
    publishers: &[Vec<String>],
) -> (Vec<String>, bool) {
    let mut cfg = SessionConfig::new(leak_str(format!("crash-{}", std::process::id())));
    cfg.protocol = if variant.v5 {
        ProtocolChoice::V5
    } else {
        ProtocolChoice::V311
    };
    if variant.resumed {
        cfg.clean_start = false;
        cfg.session_expiry_secs = Some(300);
    }
    let store = CrashStore {
        disk: disk.clone(),
        fate: fate.clone(),
    };
    let st: &'static State = Box::leak(Box::new(ClientState::with_store(cfg, leak(8192), store)));
    let config = ClientConfig {
        backoff: Backoff {
            base: embermq::time::Duration::from_millis(1),
            cap: embermq::time::Duration::from_millis(5),
            max_attempts: None,
        },
        ..ClientConfig::DEFAULT
    };
    let driver = tokio::spawn(
        Connection::new(
            st,
            PipeConnector {
                broker: broker.clone(),
                fate: fate.clone(),
            },
            TokioClock::new(),
            StdRng::seed_from_u64(1),
            leak(2048),
            leak(2048),
            config,
        )
        .run(|_: Event<'_>| {}),
    );
    let ok = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = publishers
        .iter()
        .cloned()
        .map(|messages| {
            let (client, ok) = (st.client(), ok.clone());
            tokio::spawn(async move {
                for m in messages {
                    let msg = OutgoingMessage::new("crash", m.as_bytes(), variant.qos);
                    if client.publish(&msg).await.is_ok() {
                        ok.lock().unwrap().push(m);
                    }
                }
            })
        })
        .collect();
    let all_published = async {
        for t in tasks.iter() {
            while !t.is_finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        // Then until the outbox has drained (all acknowledged and removed).
        while st.client().outbox_len() > 0 || !disk.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let died = tokio::select! {
        () = all_published => false,
        () = fate.died.notified() => true,
        () = tokio::time::sleep(Duration::from_secs(20)) => panic!(
            "life neither ended nor died: outbox {}, records left on disk {:?}",
            st.client().outbox_len(),
            disk.lock().unwrap().keys().collect::<Vec<_>>()
        ),
    };
    // The process ends: nothing of it survives but the disk.
    fate.die();
    driver.abort();
    for t in tasks {
        t.abort();
    }
    let ok = ok.lock().unwrap().clone();
    (ok, died)
}

/// Runs the workload with `cut`, then a restarted life without faults;
/// checks at-least-once and per-publisher order. Returns the fault points
/// the first life passed (for the count of the uncut run).
async fn crash_and_restart(
    variant: Variant,
    cut: Option<Cut>,
    publishers: &[Vec<String>],
) -> usize {
    let disk: Disk = Arc::default();
    if variant.poisoned {
        // Left by an earlier run: not a PUBLISH at all.
        disk.lock().unwrap().insert(1, vec![0xFF; 9]);
    }
    let (broker, received, broker_session) = scripted_broker(variant);
    let fate = Fate::new(cut);
    let (ok, _died) = life(variant, &disk, &broker, fate.clone(), publishers).await;
    let points = fate.seen.load(Ordering::SeqCst);
    // Restart over the same disk; nothing new is published.
    let (_, died_again) = life(variant, &disk, &broker, Fate::new(None), &[]).await;
    assert!(!died_again);
    let got: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|p| String::from_utf8(p.clone()).unwrap())
        .collect();
    for m in &ok {
        assert!(
            got.contains(m),
            "{} {cut:?}: {m} was published (Ok) but never arrived; got {got:?}",
            variant.name
        );
    }
    // Per publisher, the first deliveries come in publish order; a message
    // refused for now is retried after those already in flight when the
    // refusal came (docs/client.md, "Transient refusals"), so it is left
    // out of the order.
    let refused: Vec<String> = broker_session
        .lock()
        .unwrap()
        .refused
        .iter()
        .map(|p| String::from_utf8(p.clone()).unwrap())
        .collect();
    for messages in publishers {
        let messages: Vec<String> = messages
            .iter()
            .filter(|m| !refused.contains(m))
            .cloned()
            .collect();
        let messages = &messages;
        let firsts: Vec<&String> = {
            let mut seen = std::collections::HashSet::new();
            got.iter()
                .filter(|g| messages.contains(g) && seen.insert(g.as_str()))
                .collect()
        };
        let expected: Vec<&String> = messages.iter().filter(|m| firsts.contains(m)).collect();
        assert_eq!(
            firsts, expected,
            "{} {cut:?}: publish order broken",
            variant.name
        );
    }
    assert!(
        disk.lock().unwrap().is_empty(),
        "{} {cut:?}: records left behind",
        variant.name
    );
    points
}

fn workload(publishers: usize, each: usize) -> Vec<Vec<String>> {
    (0..publishers)
        .map(|p| (0..each).map(|i| format!("p{p}-m{i}")).collect())
        .collect()
}

async fn explore(variant: Variant, publishers: &[Vec<String>]) -> usize {
    let total = crash_and_restart(variant, None, publishers).await;
    assert!(total > 0);
    let mut explored = 0;
    // Racing publishers make the order of fault points vary a little from
    // run to run; a few points past the uncut total are tried too.
    for at in 0..total + 4 {
        for after in [false, true] {
            crash_and_restart(variant, Some(Cut { at, after }), publishers).await;
            explored += 1;
        }
    }
    explored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_at_least_once_through_a_crash_at_every_store_operation_and_write() {
    let one = workload(1, 8);
    let explored = explore(PLAIN, &one).await;
    println!("client crash exploration, one publisher: {explored} cut points");
    let two = workload(2, 5);
    let explored_two = explore(PLAIN, &two).await;
    println!("client crash exploration, two racing publishers: {explored_two} cut points");
    assert!(
        explored + explored_two > 40,
        "too few cut points: {explored} + {explored_two}"
    );
}

/// Item 1 of issue 18: a restarted client resuming its session must send
/// its stored QoS 2 messages under the identifiers the broker holds, and
/// new ones under identifiers it does not hold; a crash after PUBREC and
/// before PUBCOMP is among the cut points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_mqtt_4_3_3_9_resumed_qos2_session_through_a_crash_at_every_point() {
    let variant = Variant {
        name: "5.0, QoS 2, resumed session",
        v5: true,
        qos: QoS::ExactlyOnce,
        resumed: true,
        ..PLAIN
    };
    let explored = explore(variant, &workload(2, 4)).await;
    println!("client crash exploration, resumed QoS 2 session: {explored} cut points");
}

/// Item 2 of issue 18: a message refused with 0x97 Quota exceeded is
/// retried, through a crash at every point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_mqtt_4_3_2_quota_refusal_is_retried_through_a_crash_at_every_point() {
    let variant = Variant {
        name: "5.0, QoS 1, one 0x97 refusal",
        v5: true,
        refuse_nth: Some(2),
        ..PLAIN
    };
    let explored = explore(variant, &workload(1, 4)).await;
    println!("client crash exploration, a 0x97 refusal: {explored} cut points");
}

/// Item 4 of issue 18: a poisoned record is quarantined and the others go
/// out, through a crash at every point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_poisoned_record_is_quarantined_through_a_crash_at_every_point() {
    let variant = Variant {
        name: "3.1.1, QoS 1, a poisoned record",
        poisoned: true,
        ..PLAIN
    };
    let explored = explore(variant, &workload(1, 4)).await;
    println!("client crash exploration, a poisoned record: {explored} cut points");
}
