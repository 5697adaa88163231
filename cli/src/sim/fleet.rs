//! The simulated devices: one tokio task per device, each running the very
//! client the boards run (`ClientState` + `Connection` from `embermq`, over
//! `TokioTcpConnector`, `RustlsConnector` over it, and
//! `embermq::transport::WsConnector` over either), publishing JSON
//! telemetry on a schedule and answering commands.
//!
//! Memory per device is a headline figure, so a device keeps only what a
//! board would: one heap block for its lent buffers (outbox, MQTT receive
//! and transmit, WebSocket receive and transmit), sized from the profile;
//! the client state, its id and its counters live in the task's future.
//! Topic and payload are formatted into one scratch buffer shared by every
//! device on the (single) runtime thread, since `try_publish` copies them
//! into the outbox before returning.
//!
//! What a device publishes (topics under `{prefix}/{shard}/{id}/`):
//! - `telemetry`: `{"device":..,"seq":N,"qos":Q,"ts_us":T,<fields>,"pad":".."}`,
//!   `seq` counting from 0 per device, `qos` the QoS it was published
//!   with, `ts_us` the Unix time of sending;
//! - `state` (retained, QoS 1): `{"online":true}` after each connect, and
//!   `{"online":false}` as its will;
//! - a reply to each command received on `cmd`, to the MQTT 5.0 Response
//!   Topic with the Correlation Data when the command carried them, else to
//!   `reply`.
//!
//! Not here: the accounting of what arrived (see `super::checker`).

use alloc::collections::BTreeMap;
use core::cell::{Cell, RefCell};
use core::fmt::Write as _;
use core::pin::pin;
use core::task::{Context, Waker};
use core::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use embassy_futures::join::join;
use embermq::client::{Backoff, ClientConfig, ClientState, Connection, Event, NoopRawMutex};
use embermq::clock::TokioClock;
use embermq::codec::{Properties, PropertyFields, QoS, Subscription, SubscriptionOptions, Will};
use embermq::session::{self, CloseReason, OutgoingMessage, OverflowPolicy, SessionConfig};
use embermq::transport::WsConnector;
use embermq::transport::{Connector, TokioTcpConnector};
use embermq_board_app::model::{CommandReply, decode_command, encode_reply};
use embermq_ws::Buffers;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::link::{ConnectFailure, CutConnector, CutSignal, lent_tls_connector};
use super::settings::Settings;
use super::tls_slots::TlsSlots;

/// Outbound window and inbound QoS 2 table of a device.
const DEVICE_INFLIGHT: usize = 4;
/// The longest topic filter a device remembers (its command topic;
/// checked against the prefix and id pattern in `Settings::resolve`).
pub(crate) const DEVICE_FILTER_LEN: usize = 64;

/// How long a device's connect (TCP, TLS, WebSocket upgrade) may take.
const CONNECT_TIMEOUT_SECS: u64 = 20;

/// Publish tokens a device's completion table tracks. A device never
/// awaits a token (it counts outcomes from `PublishComplete` events, which
/// do not need the table), so a small table only lets the oldest entries
/// be given away sooner: 4 slots of 40 bytes instead of the default 16
/// (480 bytes less per device).
const DEVICE_TOKENS: usize = 4;

/// The capacity of a device's event queue: the session's minimum, one slot
/// beyond its headroom (`embermq::session::EVENT_HEADROOM`), instead of the
/// default 16. The driver hands every event to the device's handler right
/// after the input that raised it, so the queue holds one input's events;
/// a burst of acknowledgements (at most `DEVICE_INFLIGHT` publishes are
/// outstanding) waits in the outbox for the next round, losing nothing.
/// 12 events of 24 bytes less per device.
const DEVICE_EVENTS: usize = embermq::session::EVENT_HEADROOM + 1;

/// The size of a device's client state, for the report.
pub(crate) const CLIENT_STATE_BYTES: usize = core::mem::size_of::<DeviceState<'static>>();

/// A device's client state.
type DeviceState<'b> = ClientState<
    'b,
    NoopRawMutex,
    DEVICE_INFLIGHT,
    1,
    DEVICE_FILTER_LEN,
    0,
    embermq::store::NoStore,
    DEVICE_TOKENS,
    DEVICE_EVENTS,
>;

/// Counters for the whole fleet of this process (one runtime thread, so
/// plain cells).
#[derive(Default)]
pub(crate) struct Stats {
    /// Devices with an accepted link now.
    pub(crate) connected: Cell<u64>,
    /// The most devices connected at once.
    pub(crate) connected_peak: Cell<u64>,
    /// Accepted links (first connects and reconnects).
    pub(crate) connects: Cell<u64>,
    /// Accepted links after a device's first.
    pub(crate) reconnects: Cell<u64>,
    /// Links cut on purpose (`--cut-every`, `--storm-at`).
    pub(crate) cuts: Cell<u64>,
    /// Telemetry queued, per QoS.
    pub(crate) published: [Cell<u64>; 3],
    /// Telemetry completed (QoS 0 sent, QoS 1 PUBACK, QoS 2 PUBCOMP), per QoS.
    pub(crate) acknowledged: [Cell<u64>; 3],
    /// Telemetry the outbox refused (full); not counted as published.
    pub(crate) not_queued: Cell<u64>,
    /// Commands the devices answered.
    pub(crate) replies_sent: Cell<u64>,
    /// Messages the checker received (telemetry).
    pub(crate) received: Cell<u64>,
    /// Commands the checker sent.
    pub(crate) commands_sent: Cell<u64>,
    /// Replies the checker received.
    pub(crate) replies_received: Cell<u64>,
    /// Devices whose task ended.
    pub(crate) finished: Cell<u64>,
    /// Errors by kind: how many, and the first one's message.
    pub(crate) errors: RefCell<BTreeMap<&'static str, ErrorTally>>,
    /// First connect times, µs from the device's start to CONNACK.
    pub(crate) connect_us: RefCell<Option<Histogram<u64>>>,
}

/// Adds one to a counter.
pub(crate) fn bump(cell: &Cell<u64>) {
    cell.set(cell.get().saturating_add(1));
}

/// The errors of one kind.
#[derive(Debug, Default, Clone)]
pub(crate) struct ErrorTally {
    /// How many.
    pub(crate) count: u64,
    /// The first one: where (device or checker), when (seconds into the
    /// run) and what; `None` for kinds counted without a message.
    pub(crate) first: Option<String>,
}

impl Stats {
    /// Counts one error of `kind` (its kind says it all).
    pub(crate) fn error(&self, kind: &'static str) {
        self.errors_of(kind, 1);
    }

    /// Counts `n` errors of `kind`.
    pub(crate) fn errors_of(&self, kind: &'static str, n: u64) {
        let mut errors = self.errors.borrow_mut();
        let tally = errors.entry(kind).or_default();
        tally.count = tally.count.saturating_add(n);
    }

    /// Counts one error of `kind` seen by `who` `at` seconds into the run;
    /// the message is formatted only for the first of its kind.
    pub(crate) fn error_with(
        &self,
        kind: &'static str,
        who: &str,
        at: Duration,
        detail: &dyn core::fmt::Display,
    ) {
        let mut errors = self.errors.borrow_mut();
        let tally = errors.entry(kind).or_default();
        tally.count = tally.count.saturating_add(1);
        if tally.first.is_none() {
            tally.first = Some(format!("{who} at {:.1} s: {detail}", at.as_secs_f64()));
        }
    }

    /// Errors of every kind.
    pub(crate) fn error_total(&self) -> u64 {
        self.errors.borrow().values().map(|t| t.count).sum()
    }

    /// Telemetry queued but not yet completed.
    pub(crate) fn pending(&self) -> u64 {
        let p: u64 = self.published.iter().map(Cell::get).sum();
        let a: u64 = self.acknowledged.iter().map(Cell::get).sum();
        p.saturating_sub(a)
    }
}

/// What the fleet shares with the checker about one device.
pub(crate) struct DeviceSlot {
    /// Raised to cut the device's link.
    pub(crate) cut: CutSignal,
    /// Telemetry the device queued (its next sequence number).
    pub(crate) published: Cell<u32>,
    /// Telemetry the device saw completed (QoS 0 sent, QoS 1/2
    /// acknowledged by the broker).
    pub(crate) acknowledged: Cell<u32>,
    /// The connector counted the last connect failure itself (with its
    /// cause), so the `Reconnecting` that follows is not counted again.
    pub(crate) connect_failure_counted: Cell<bool>,
    /// What the device's event handler and publisher share (here rather
    /// than in the device's future, which `drive` builds without locals).
    cells: DeviceCells,
}

impl DeviceSlot {
    /// A device that has done nothing yet.
    pub(crate) fn new() -> Self {
        Self {
            cut: CutSignal::new(),
            published: Cell::new(0),
            acknowledged: Cell::new(0),
            connect_failure_counted: Cell::new(false),
            cells: DeviceCells {
                connected: Cell::new(false),
                ever_connected: Cell::new(false),
                cut_pending: Cell::new(false),
                link_ended: Cell::new(false),
                kinds: Cell::new(0),
            },
        }
    }
}

/// Everything the tasks of one run share (leaked once per run).
pub(crate) struct Fleet {
    pub(crate) settings: Settings,
    pub(crate) stats: Stats,
    pub(crate) slots: Vec<DeviceSlot>,
    /// The clock every client reads (one epoch).
    pub(crate) clock: TokioClock,
    /// When the run started.
    pub(crate) t0: Instant,
    /// When devices stop publishing.
    pub(crate) end: Instant,
    /// The Prometheus series, with `--metrics`.
    pub(crate) metrics: Option<super::metrics::Exported>,
    /// The devices' TLS buffers, over `mqtts://` and `wss://`.
    pub(crate) tls_slots: Option<TlsSlots>,
}

/// Topic and payload of the message being built (shared scratch).
struct Scratch {
    topic: String,
    payload: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { topic: String::new(), payload: Vec::new() })
    };
}

/// Unix time in microseconds.
pub(crate) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A small PRNG for schedule jitter, QoS choice and random walks (not for
/// WebSocket masks: those come from the thread's CSPRNG).
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 32) as u32
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        f64::from(self.next_u32()) / 4_294_967_296.0
    }
}

/// What a completed publish was: telemetry at QoS 0..2, or anything else.
const KIND_OTHER: u64 = 3;

/// The per-device cells the handler and the publisher share.
struct DeviceCells {
    connected: Cell<bool>,
    ever_connected: Cell<bool>,
    /// The simulator cut the current link.
    cut_pending: Cell<bool>,
    /// A link ended since the last `Reconnecting`.
    link_ended: Cell<bool>,
    /// 2 bits per publish token modulo 32: its kind.
    kinds: Cell<u64>,
}

impl DeviceCells {
    fn set_kind(&self, token: u32, kind: u64) {
        let shift = (token % 32) * 2;
        self.kinds
            .set((self.kinds.get() & !(3 << shift)) | (kind << shift));
    }
    fn kind(&self, token: u32) -> u64 {
        (self.kinds.get() >> ((token % 32) * 2)) & 3
    }
}

/// A device's one heap block: its id and its state topic (borrowed by the
/// will), then its lent buffers (outbox, MQTT receive and transmit,
/// WebSocket receive and transmit), with the lengths of the id and the
/// topic. A plain function, so that the formatting buffers are no part of
/// the device's future.
fn device_block(s: &Settings, n: u32) -> (Box<[u8]>, usize, usize) {
    let id = s.ids.format(n);
    let mut topic = String::new();
    let _ = write!(topic, "{}/{}/{}/state", s.prefix, s.shard.index, id);
    let b = s.buffers;
    let ws = if s.broker.websocket {
        b.ws_rx + b.ws_tx
    } else {
        0
    };
    let (id_len, topic_len) = (id.len(), topic.len());
    let mut block = vec![0u8; id_len + topic_len + b.outbox + b.rx + b.tx + ws].into_boxed_slice();
    let (id_bytes, rest) = block.split_at_mut(id_len);
    id_bytes.copy_from_slice(id.as_bytes());
    rest[..topic_len].copy_from_slice(topic.as_bytes());
    (block, id_len, topic_len)
}

/// Runs device `local` (0-based within this shard) to the end of the run,
/// over link `B` (the spawner picks it from the broker URL).
pub(crate) async fn device<B: BaseLink>(fleet: &'static Fleet, local: usize) {
    let s = &fleet.settings;
    let n = s.range.start.saturating_add(local as u32);
    let (mut block, id_len, topic_len) = device_block(s, n);
    let (id_bytes, rest) = block.split_at_mut(id_len);
    let id = core::str::from_utf8(id_bytes).unwrap_or("");
    let (topic_bytes, rest) = rest.split_at_mut(topic_len);
    let state_topic = core::str::from_utf8(topic_bytes).unwrap_or("");
    let b = s.buffers;
    let (ws_rx_len, ws_tx_len) = if s.broker.websocket {
        (b.ws_rx, b.ws_tx)
    } else {
        (0, 0)
    };
    let (outbox, rest) = rest.split_at_mut(b.outbox);
    let (rx, rest) = rest.split_at_mut(b.rx);
    let (tx, rest) = rest.split_at_mut(b.tx);
    let (ws_rx, ws_tx) = rest.split_at_mut(ws_rx_len);
    debug_assert_eq!(ws_tx.len(), ws_tx_len);

    let mut config = SessionConfig::new(id);
    config.protocol = s.protocol;
    config.keep_alive_secs = s.keep_alive_secs;
    config.clean_start = true;
    config.resume_on_reconnect = true;
    config.session_expiry_secs = Some(120);
    config.max_incoming_packet_size = b.rx as u32;
    config.max_inflight = DEVICE_INFLIGHT as u16;
    if s.will {
        config.will = Some(Will {
            topic: state_topic,
            payload: b"{\"online\":false}",
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::NONE,
        });
    }
    let state = DeviceState::new(config, outbox);
    let Some(base) = B::base(fleet) else {
        // Ruled out by `BrokerUrl::parse` and `Settings::resolve`.
        fleet.stats.error("link_setup");
        bump(&fleet.stats.finished);
        return;
    };
    if s.broker.websocket {
        let ws = WsConnector::new(
            base,
            s.broker.host_header.as_str(),
            Some(s.broker.port),
            s.broker.path.as_str(),
            Buffers {
                rx: ws_rx,
                tx: ws_tx,
            },
            rand::thread_rng(),
        );
        let (result, ()) = drive(
            fleet,
            local,
            n,
            id,
            &state,
            CutConnector::new(ws, fleet, local, id),
            rx,
            tx,
        )
        .await;
        if result.is_err() {
            fleet.stats.error("client_ended");
        }
    } else {
        let _ = ws_tx;
        let (result, ()) = drive(
            fleet,
            local,
            n,
            id,
            &state,
            CutConnector::new(base, fleet, local, id),
            rx,
            tx,
        )
        .await;
        if result.is_err() {
            fleet.stats.error("client_ended");
        }
    }
    bump(&fleet.stats.finished);
}

/// The link under the WebSocket layer (if any): plain TCP or TLS over TCP.
///
/// `device` is generic over it, rather than choosing at run time, so that
/// a plain device's future does not carry the (larger) TLS client's state:
/// an async fn's future is as large as its largest branch.
pub(crate) trait BaseLink {
    /// The connector type.
    type Connector: Connector<Error: ConnectFailure + core::fmt::Display>;
    /// The connector to `fleet`'s broker; `None` when the run has no TLS
    /// configuration for a TLS link.
    fn base(fleet: &Fleet) -> Option<Self::Connector>;
}

/// `mqtt://` and `ws://`: TCP.
pub(crate) struct PlainLink;

impl BaseLink for PlainLink {
    type Connector = TokioTcpConnector;

    fn base(fleet: &Fleet) -> Option<TokioTcpConnector> {
        let b = &fleet.settings.broker;
        Some(TokioTcpConnector::new(b.host.as_str(), b.port))
    }
}

/// `mqtts://` and `wss://`: rustls' unbuffered client over TCP, in the
/// device's TLS buffers (from the run's [`TlsSlots`]), sharing the run's
/// rustls configuration.
pub(crate) struct TlsLink;

impl BaseLink for TlsLink {
    type Connector = embermq::transport::RustlsLentConnector<'static, TokioTcpConnector>;

    fn base(fleet: &Fleet) -> Option<Self::Connector> {
        let s = &fleet.settings;
        let (tx, rx) = fleet.tls_slots.as_ref()?.take()?;
        let buffers = embermq::transport::RustlsBuffers { rx, tx };
        lent_tls_connector(&s.broker, s.tls.as_ref()?, buffers)
    }
}

/// A close reason as the report words it.
struct CloseText(CloseReason);

impl core::fmt::Display for CloseText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            CloseReason::TransportClosed => {
                f.write_str("the broker or the network closed the link (no DISCONNECT)")
            }
            CloseReason::KeepaliveTimeout => {
                f.write_str("no PINGRESP within the keep-alive's grace time")
            }
            CloseReason::WriteStalled => {
                f.write_str("the broker took no bytes for the write-stall timeout")
            }
            CloseReason::ConnackTimeout => f.write_str("no CONNACK within the connect timeout"),
            CloseReason::ConnectRefused(code) => write!(f, "CONNACK refused: {code:?}"),
            CloseReason::ServerDisconnect(code) => {
                write!(f, "the broker sent DISCONNECT: {code:?}")
            }
            CloseReason::ProtocolError(code) => {
                write!(f, "the broker broke the protocol; closed with {code:?}")
            }
            other => write!(f, "{other:?}"),
        }
    }
}

/// The client and the publisher of one device, joined; the client's
/// result comes first.
///
/// A plain function returning the join, not an `async fn`: an `async fn`
/// keeps its arguments (the connector, 208 bytes over WebSocket) in its
/// future besides the copies moved into the client, for the whole run.
#[allow(clippy::too_many_arguments)]
fn drive<'a, 's: 'a, C: Connector + 'a>(
    fleet: &'static Fleet,
    local: usize,
    n: u32,
    id: &'a str,
    state: &'a DeviceState<'s>,
    connector: C,
    rx: &'a mut [u8],
    tx: &'a mut [u8],
) -> impl Future<Output = (Result<(), impl Sized>, ())> + 'a {
    let started = Instant::now();
    let client = state.client();
    // The handler captures the fleet and the device's index, not the
    // references derived from them: it lives in the client's future.
    let handler = move |event: Event<'_>| {
        let s = &fleet.settings;
        let stats = &fleet.stats;
        let slot = &fleet.slots[local];
        let cells = &slot.cells;
        match event {
            Event::Connected { .. } => {
                if !cells.connected.replace(true) {
                    let c = stats.connected.get() + 1;
                    stats.connected.set(c);
                    if c > stats.connected_peak.get() {
                        stats.connected_peak.set(c);
                    }
                }
                bump(&stats.connects);
                if cells.ever_connected.replace(true) {
                    bump(&stats.reconnects);
                } else {
                    let took = started.elapsed();
                    if let Some(h) = stats.connect_us.borrow_mut().as_mut() {
                        let _ = h.record(took.as_micros().max(1) as u64);
                    }
                    if let Some(m) = &fleet.metrics {
                        m.connect.record(took.as_secs_f64());
                    }
                }
                if s.retain_state {
                    let mut topic = heapless::String::<160>::new();
                    let _ = write!(topic, "{}/{}/{}/state", s.prefix, s.shard.index, id);
                    let mut msg = OutgoingMessage::new(
                        topic.as_str(),
                        b"{\"online\":true}",
                        QoS::AtLeastOnce,
                    );
                    msg.retain = true;
                    match client.try_publish(&msg, OverflowPolicy::RejectNew) {
                        Ok(token) => cells.set_kind(token.0, KIND_OTHER),
                        Err(_) => stats.error("state_not_queued"),
                    }
                }
            }
            Event::Disconnected { reason } => {
                if cells.connected.replace(false) {
                    stats.connected.set(stats.connected.get().saturating_sub(1));
                }
                cells.link_ended.set(true);
                if cells.cut_pending.replace(false) {
                    return;
                }
                let kind = match reason {
                    CloseReason::ClientRequested => return,
                    CloseReason::TransportClosed => "link_lost",
                    CloseReason::KeepaliveTimeout => "keepalive_timeout",
                    CloseReason::WriteStalled => "write_stalled",
                    CloseReason::ConnackTimeout => "connack_timeout",
                    CloseReason::ConnectRefused(_) => "connect_refused",
                    CloseReason::ServerDisconnect(_) => "server_disconnect",
                    CloseReason::ProtocolError(_) => "protocol_error",
                    _ => "link_closed_other",
                };
                stats.error_with(kind, id, fleet.t0.elapsed(), &CloseText(reason));
            }
            // A connect failure the connector saw was counted there, with its
            // cause; what is left is the connect timeout abandoning the attempt.
            Event::Reconnecting { .. }
                if !cells.link_ended.replace(false)
                    && !slot.connect_failure_counted.replace(false) =>
            {
                stats.error_with(
                    "connect_timeout",
                    id,
                    fleet.t0.elapsed(),
                    &format_args!(
                        "no link (TCP, TLS, WebSocket upgrade) within {CONNECT_TIMEOUT_SECS} s"
                    ),
                );
            }
            Event::PublishComplete { token, result } => {
                let kind = cells.kind(token.0);
                match result {
                    Ok(()) => {
                        if let Some(c) = stats.acknowledged.get(kind as usize) {
                            bump(c);
                            slot.acknowledged
                                .set(slot.acknowledged.get().saturating_add(1));
                        }
                    }
                    Err(e) => stats.error_with(
                        "publish_failed",
                        id,
                        fleet.t0.elapsed(),
                        &format_args!("{e:?}"),
                    ),
                }
            }
            Event::Message(m) if m.topic.ends_with("/cmd") => {
                answer_command(fleet, id, &client, &m, cells);
            }
            Event::Session(session::Event::Subscribed { results, .. })
                if !results.all_succeeded() =>
            {
                stats.error("subscribe_refused");
            }
            _ => {}
        }
    };
    let s = &fleet.settings;
    let backoff = Backoff {
        base: embermq::time::Duration::from_millis(100),
        cap: embermq::time::Duration::from_secs(5),
        max_attempts: None,
    };
    let run = Connection::new(
        state,
        connector,
        fleet.clock,
        rand::thread_rng(),
        rx,
        tx,
        ClientConfig {
            backoff,
            connect_timeout: embermq::time::Duration::from_secs(CONNECT_TIMEOUT_SECS),
            close_timeout: embermq::time::Duration::from_secs(1),
        },
    )
    .run(handler);
    // Queue the command subscription now; its SUBACK arrives as an event.
    {
        let mut filter = heapless::String::<DEVICE_FILTER_LEN>::new();
        let _ = write!(filter, "{}/{}/{}/cmd", s.prefix, s.shard.index, id);
        let subs = [Subscription {
            filter: filter.as_str(),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }];
        let subscribe = pin!(client.subscribe(&subs));
        // The first poll queues the request; the result comes as an event.
        let _ = subscribe.poll(&mut Context::from_waker(Waker::noop()));
    }
    // The loop itself, not an `async move` block around it: the block would
    // keep its own copies of the arguments besides the loop's.
    join(run, publish_loop(fleet, local, n, id, client))
}

/// Cuts the device's link, if it is up (`--cut-every`, `--storm-at`).
fn cut_link(fleet: &Fleet, slot: &DeviceSlot) {
    if slot.cells.connected.get() {
        slot.cells.cut_pending.set(true);
        bump(&fleet.stats.cuts);
        slot.cut.signal(());
    }
}

/// Publishes the device's telemetry until the end of the run, cutting its
/// link when the fault knobs say so, then waits for the outbox to drain and
/// stops the client.
async fn publish_loop<
    M,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    const T: usize,
    const E: usize,
>(
    fleet: &'static Fleet,
    local: usize,
    n: u32,
    id: &str,
    client: embermq::client::Client<'_, '_, M, I, S, F, A, embermq::store::NoStore, T, E>,
) where
    M: embermq::client::RawMutex,
{
    // `fleet.settings`, `fleet.stats` and the slot's cells are named where
    // they are used rather than kept in locals: each such reference would
    // be a field of every device's future.
    let slot = &fleet.slots[local];
    let mut rng = Xorshift::new(u64::from(n) ^ fleet.t0.elapsed().as_nanos() as u64);
    let mut walks = [0f64; super::profile::MAX_WALKS];
    {
        let mut w = walks.iter_mut();
        for f in &fleet.settings.fields {
            if let super::profile::FieldKind::Walk { start, .. } = f.kind
                && let Some(slot) = w.next()
            {
                *slot = start;
            }
        }
    }
    let mut seq: u32 = 0;
    let now = Instant::now();
    let mut next = now + fleet.settings.interval.mul_f64(rng.unit());
    let mut next_cut = fleet
        .settings
        .cut_every
        .map(|c| now + c.mul_f64(0.5 + rng.unit()));
    let mut storm = fleet.settings.storm_at.map(|at| fleet.t0 + at);
    loop {
        let mut wake = next.min(fleet.end);
        if let Some(c) = next_cut {
            wake = wake.min(c);
        }
        if let Some(at) = storm {
            wake = wake.min(at);
        }
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        if now >= fleet.end || fleet.settings.messages.is_some_and(|m| seq >= m) {
            break;
        }
        if storm.is_some_and(|at| now >= at) {
            storm = None;
            cut_link(fleet, slot);
        }
        if let Some(c) = next_cut
            && now >= c
        {
            cut_link(fleet, slot);
            next_cut = fleet.settings.cut_every.map(|every| c + every);
        }
        if now >= next {
            let paused = fleet
                .settings
                .pause
                .is_some_and(|(at, len)| now >= fleet.t0 + at && now < fleet.t0 + at + len);
            if !paused {
                let qos = fleet.settings.qos.pick(rng.next_u32());
                let queued = SCRATCH.with(|scratch| {
                    let scratch = &mut *scratch.borrow_mut();
                    build_telemetry(&fleet.settings, id, seq, qos, &mut walks, &mut rng, scratch);
                    let msg = OutgoingMessage::new(scratch.topic.as_str(), &scratch.payload, qos);
                    client.try_publish(&msg, OverflowPolicy::RejectNew)
                });
                match queued {
                    Ok(token) => {
                        seq = seq.wrapping_add(1);
                        slot.published.set(seq);
                        slot.cells.set_kind(token.0, qos as u64);
                        bump(&fleet.stats.published[qos as usize]);
                    }
                    Err(_) => bump(&fleet.stats.not_queued),
                }
            }
            let jitter = if fleet.settings.jitter.is_zero() {
                Duration::ZERO
            } else {
                fleet.settings.jitter.mul_f64(rng.unit() * 2.0)
            };
            next = (next + fleet.settings.interval + jitter)
                .checked_sub(fleet.settings.jitter)
                .unwrap_or(next + fleet.settings.interval)
                .max(now + Duration::from_millis(1));
        }
    }
    // Let the outbox drain (QoS 1/2 acknowledgements), bounded.
    let until = Instant::now().min(fleet.end) + fleet.settings.drain;
    while client.outbox_len() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = client.outbox_len() as u64;
    if left > 0 {
        fleet.stats.errors_of("undelivered_at_end", left);
    }
    client.stop();
}

/// Writes the telemetry topic and JSON payload into `scratch`.
fn build_telemetry(
    s: &Settings,
    id: &str,
    seq: u32,
    qos: QoS,
    walks: &mut [f64; super::profile::MAX_WALKS],
    rng: &mut Xorshift,
    scratch: &mut Scratch,
) {
    use super::profile::FieldKind;
    use std::io::Write as _;
    scratch.topic.clear();
    let _ = write!(
        scratch.topic,
        "{}/{}/{}/telemetry",
        s.prefix, s.shard.index, id
    );
    let p = &mut scratch.payload;
    p.clear();
    let _ = write!(
        p,
        "{{\"device\":\"{id}\",\"seq\":{seq},\"qos\":{},\"ts_us\":{}",
        qos as u8,
        unix_us()
    );
    let mut w = walks.iter_mut();
    for f in &s.fields {
        let _ = match &f.kind {
            FieldKind::Walk { step, .. } => match w.next() {
                Some(v) => {
                    *v += (rng.unit() * 2.0 - 1.0) * step;
                    write!(p, ",\"{}\":{:.2}", f.name, v)
                }
                None => Ok(()),
            },
            FieldKind::Counter => write!(p, ",\"{}\":{}", f.name, u64::from(seq) + 1),
            FieldKind::Timestamp => write!(p, ",\"{}\":{}", f.name, unix_us() / 1000),
            FieldKind::Constant(v) => write!(p, ",\"{}\":\"{}\"", f.name, v),
        };
    }
    // `,"pad":""}` is 10 bytes.
    let want = s.payload_size;
    if p.len() + 11 <= want {
        let pad = want - p.len() - 10;
        p.extend_from_slice(b",\"pad\":\"");
        p.resize(p.len() + pad, b'x');
        p.push(b'"');
    }
    p.push(b'}');
}

/// Answers a command: the reply goes to the Response Topic (5.0) with the
/// Correlation Data, or to the device's `reply` topic.
fn answer_command<
    M,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    const T: usize,
    const E: usize,
>(
    fleet: &'static Fleet,
    id: &str,
    client: &embermq::client::Client<'_, '_, M, I, S, F, A, embermq::store::NoStore, T, E>,
    m: &session::Message<'_>,
    cells: &DeviceCells,
) where
    M: embermq::client::RawMutex,
{
    let s = &fleet.settings;
    let stats = &fleet.stats;
    let mut body = [0u8; 128];
    let len = match decode_command(m.payload) {
        Ok(cmd) => {
            let mut reply = CommandReply::ok(&cmd);
            reply.uptime_ms = Some(fleet.t0.elapsed().as_millis() as u64);
            encode_reply(&reply, &mut body)
        }
        Err(_) => {
            stats.error("bad_command");
            encode_reply(&CommandReply::failed("?", "cannot decode"), &mut body)
        }
    };
    let Ok(len) = len else {
        stats.error("reply_encode");
        return;
    };
    let mut fallback = heapless::String::<160>::new();
    let topic = match m.properties.response_topic() {
        Some(t) => t,
        None => {
            let _ = write!(fallback, "{}/{}/{}/reply", s.prefix, s.shard.index, id);
            fallback.as_str()
        }
    };
    let fields = PropertyFields {
        correlation_data: m.properties.correlation_data(),
        ..PropertyFields::default()
    };
    let mut msg = OutgoingMessage::new(topic, body.get(..len).unwrap_or(&[]), QoS::AtLeastOnce);
    msg.properties = Properties::from_fields(&fields);
    match client.try_publish(&msg, OverflowPolicy::RejectNew) {
        Ok(token) => {
            cells.set_kind(token.0, KIND_OTHER);
            bump(&stats.replies_sent);
        }
        Err(_) => stats.error("reply_not_queued"),
    }
}
