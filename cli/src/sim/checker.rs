//! The checker: one more `embermq` client in the simulator process that
//! subscribes (QoS 2, one wildcard per shard: `{prefix}/{shard}/+/telemetry`
//! and `.../+/reply`) and accounts, per device, for what arrived: received,
//! unique, duplicates and reordering from the sequence numbers, and the
//! end-to-end latency from the send time in the payload (into an
//! hdrhistogram, microseconds). Loss is what a device queued (its next
//! sequence number) minus what arrived at least once.
//!
//! It also sends the commands of `--command-every` (MQTT 5.0 Response Topic
//! and Correlation Data) and counts the replies.
//!
//! Duplicate detection keeps, per device, the first sequence number not yet
//! seen and a window of the 128 after it; a message more than 128 numbers
//! ahead of a gap gives the gap up as lost, and a late copy of a number
//! given up is then counted as a duplicate. At one reading per second that
//! is a message more than two minutes late.

use core::cell::RefCell;
use core::fmt::Write as _;
use core::time::Duration;

use embassy_futures::join::join;
use embassy_futures::select::select;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::signal::Signal;
use embermq::client::{Backoff, ClientConfig, ClientState, Connection, Event};
use embermq::codec::{Properties, PropertyFields, QoS, Subscription, SubscriptionOptions};
use embermq::session::{OutgoingMessage, OverflowPolicy, SessionConfig};
use embermq::transport::TokioTcpConnector;
use embermq::transport::WsConnector;
use embermq_ws::Buffers;
use hdrhistogram::Histogram;
use serde::Deserialize;

use super::fleet::{Fleet, bump, unix_us};
use super::link::tls_connector;

/// The checker's inbound QoS 2 table and its 5.0 Receive Maximum: how
/// many QoS 1/2 readings the broker may have in flight to one checker.
const CHECKER_INFLIGHT: usize = 256;

/// What the checker knows about one device.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Track {
    /// The first sequence number not yet seen.
    next: u32,
    /// Bit i: sequence number `next + i` seen (bit 0 is always clear).
    window: u128,
    /// The highest sequence number seen.
    max_seen: Option<u32>,
    /// Messages received (copies included).
    pub(crate) received: u32,
    /// Distinct sequence numbers received.
    pub(crate) unique: u32,
    /// Copies of a sequence number already received.
    pub(crate) duplicates: u32,
    /// Distinct messages that arrived after a higher sequence number.
    pub(crate) reordered: u32,
}

/// Whether a received sequence number was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    New,
    Duplicate,
}

impl Track {
    /// Accounts for sequence number `seq`.
    pub(crate) fn record(&mut self, seq: u32) -> Seen {
        self.received = self.received.saturating_add(1);
        if seq < self.next {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        let mut off = seq - self.next;
        if off >= 128 {
            // Give up the oldest gap(s) so that `seq` fits the window.
            let shift = off - 127;
            self.window = if shift >= 128 {
                0
            } else {
                self.window >> shift
            };
            self.next += shift;
            off = 127;
        }
        let bit = 1u128 << off;
        if self.window & bit != 0 {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        self.window |= bit;
        self.unique += 1;
        if self.max_seen.is_some_and(|m| seq < m) {
            self.reordered += 1;
        }
        self.max_seen = Some(self.max_seen.map_or(seq, |m| m.max(seq)));
        while self.window & 1 != 0 {
            self.window >>= 1;
            self.next += 1;
        }
        Seen::New
    }
}

/// What the checker accumulates.
pub(crate) struct Findings {
    pub(crate) tracks: Vec<Track>,
    /// Distinct messages received per QoS.
    pub(crate) unique: [u64; 3],
    /// Copies per QoS.
    pub(crate) duplicates: [u64; 3],
    /// Messages the checker could not attribute (bad topic or payload).
    pub(crate) unattributed: u64,
    /// End-to-end latency, µs.
    pub(crate) latency_us: Histogram<u64>,
    /// The same since the last sample of the series (`super::series`).
    pub(crate) latency_window: Histogram<u64>,
}

impl Findings {
    /// Empty findings for `devices` devices.
    pub(crate) fn new(devices: usize) -> Self {
        Self {
            tracks: vec![Track::default(); devices],
            unique: [0; 3],
            duplicates: [0; 3],
            unattributed: 0,
            latency_us: new_histogram(),
            latency_window: new_histogram(),
        }
    }
}

/// A histogram of microseconds up to a minute (it grows beyond), 2
/// significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    let mut h =
        Histogram::new_with_bounds(1, 60_000_000, 2).expect("constant histogram bounds are valid");
    h.auto(true);
    h
}

/// The two fields of a reading the checker needs.
#[derive(Deserialize)]
struct Probe {
    seq: u32,
    /// The QoS the device published with (a broker may deliver at
    /// another, e.g. rumqttd at the subscription's).
    qos: Option<u8>,
    ts_us: u64,
}

/// Signals between the run and the checker task.
pub(crate) struct CheckerControl {
    /// Raised by the checker once its subscriptions are acknowledged
    /// (`Ok`), or with why they are not.
    pub(crate) ready: Signal<NoopRawMutex, Result<(), String>>,
    /// Raised by the run when the checker should disconnect.
    pub(crate) stop: Signal<NoopRawMutex, ()>,
}

/// Runs the checker until `control.stop`.
///
/// Checker `index` of `count`: with more than one, they share the
/// subscriptions (`$share/...`, MQTT 5.0 §4.8.2; mosquitto and rumqttd
/// offer it under 3.1.1 too), so the broker spreads the fleet's readings
/// over several connections and their in-flight windows.
pub(crate) async fn run(
    fleet: &'static Fleet,
    findings: &RefCell<Findings>,
    control: &CheckerControl,
    index: usize,
    count: usize,
) {
    let s = &fleet.settings;
    let stats = &fleet.stats;
    let mut id = String::new();
    let _ = write!(
        id,
        "{}-checker-{}-{}-{index}",
        s.prefix.replace('/', "-"),
        s.shard.index,
        std::process::id()
    );
    let mut config = SessionConfig::new(id.as_str());
    config.protocol = s.protocol;
    config.keep_alive_secs = 30;
    // No session kept on the broker: a checker of an ended run must not
    // leave a queue of readings behind.
    config.clean_start = true;
    config.resume_on_reconnect = false;
    config.session_expiry_secs = None;
    config.max_incoming_packet_size = 65_536;
    config.max_inflight = CHECKER_INFLIGHT as u16;
    let mut outbox = vec![0u8; 64 * 1024];
    let state = ClientState::<NoopRawMutex, CHECKER_INFLIGHT, 4, 192>::new(config, &mut outbox);
    let client = state.client();
    let prefix_len = s.prefix.len() + 1;
    let handler = |event: Event<'_>| {
        let Event::Message(m) = event else {
            if let Event::Disconnected { reason } = event
                && reason != embermq::session::CloseReason::ClientRequested
            {
                stats.error("checker_link_lost");
            }
            return;
        };
        // {prefix}/{shard}/{id}/{kind}
        let rest = m.topic.get(prefix_len..).unwrap_or("");
        let mut parts = rest.splitn(3, '/');
        let (_shard, dev, kind) = (parts.next(), parts.next(), parts.next());
        if kind == Some("reply") {
            bump(&stats.replies_received);
            return;
        }
        let mut f = findings.borrow_mut();
        let local = dev
            .and_then(|d| s.ids.number(d))
            .and_then(|n| n.checked_sub(s.range.start))
            .map(|l| l as usize)
            .filter(|&l| l < f.tracks.len());
        let probe = serde_json::from_slice::<Probe>(m.payload).ok();
        let (Some(local), Some(probe)) = (local, probe) else {
            f.unattributed += 1;
            return;
        };
        bump(&stats.received);
        let q = probe.qos.map_or(m.qos as usize, usize::from);
        let seen = f.tracks.get_mut(local).map(|t| t.record(probe.seq));
        match seen {
            Some(Seen::New) => {
                if let Some(u) = f.unique.get_mut(q) {
                    *u += 1;
                }
                let latency = unix_us().saturating_sub(probe.ts_us).max(1);
                let _ = f.latency_us.record(latency);
                let _ = f.latency_window.record(latency);
                if let Some(m) = &fleet.metrics {
                    m.latency.record(latency as f64 / 1e6);
                }
            }
            Some(Seen::Duplicate) => {
                if let Some(d) = f.duplicates.get_mut(q) {
                    *d += 1;
                }
            }
            None => {}
        }
    };
    let mut rx = vec![0u8; 65_536];
    let mut tx = vec![0u8; 4096];
    let mut ws_rx = vec![0u8; 16 * 1024];
    let mut ws_tx = vec![0u8; 4096];
    let config = ClientConfig {
        backoff: Backoff {
            base: embermq::time::Duration::from_millis(100),
            cap: embermq::time::Duration::from_secs(2),
            max_attempts: None,
        },
        connect_timeout: embermq::time::Duration::from_secs(10),
        close_timeout: embermq::time::Duration::from_secs(1),
    };
    let broker = &s.checker_broker;
    let tcp = TokioTcpConnector::new(broker.host.as_str(), broker.port);
    let control_task = async {
        let mut telemetry = String::new();
        let mut replies = String::new();
        if count > 1 {
            let group = format!("$share/embermq-sim-{}/", std::process::id());
            telemetry.push_str(&group);
            replies.push_str(&group);
        }
        let _ = write!(telemetry, "{}/{}/+/telemetry", s.prefix, s.shard.index);
        let _ = write!(replies, "{}/{}/+/reply", s.prefix, s.shard.index);
        let subs = [
            Subscription {
                filter: telemetry.as_str(),
                options: SubscriptionOptions::qos(QoS::ExactlyOnce),
            },
            Subscription {
                filter: replies.as_str(),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            },
        ];
        let outcome = match client.subscribe(&subs).await {
            Ok(r) if r.all_succeeded() => Ok(()),
            Ok(r) => Err(format!("the broker refused a filter: {:?}", r.codes())),
            Err(e) => Err(e.to_string()),
        };
        control.ready.signal(outcome);
        if let Some(every) = s.command_every.filter(|_| index == 0) {
            let commands = send_commands(fleet, &client, every);
            let _ = select(commands, control.stop.wait()).await;
        } else {
            control.stop.wait().await;
        }
        client.stop();
    };
    // One client type per link kind; only the arm taken runs.
    macro_rules! run_over {
        ($connector:expr) => {{
            let run = Connection::new(
                &state,
                $connector,
                fleet.clock,
                rand::thread_rng(),
                &mut rx,
                &mut tx,
                config,
            )
            .run(handler);
            join(run, control_task).await.0.map_err(|_| ())
        }};
    }
    macro_rules! ws {
        ($inner:expr) => {
            WsConnector::new(
                $inner,
                broker.host_header.as_str(),
                Some(broker.port),
                broker.path.as_str(),
                Buffers {
                    rx: &mut ws_rx,
                    tx: &mut ws_tx,
                },
                rand::thread_rng(),
            )
        };
    }
    let tls = s
        .tls
        .as_ref()
        .filter(|_| broker.tls)
        .and_then(|config| tls_connector(broker, config));
    let result = match (broker.websocket, broker.tls, tls) {
        (false, false, _) => run_over!(tcp),
        (true, false, _) => run_over!(ws!(tcp)),
        (false, true, Some(tls)) => run_over!(tls),
        (true, true, Some(tls)) => run_over!(ws!(tls)),
        // Ruled out by `BrokerUrl::parse` and `Settings::resolve`.
        (_, true, None) => Err(()),
    };
    if result.is_err() {
        stats.error("checker_failed");
        control
            .ready
            .signal(Err("its connection ended with an error".to_owned()));
    }
}

/// Sends `{"cmd":"ping"}` to each device in turn, so that each gets one
/// every `every`, with a Response Topic and Correlation Data (5.0).
async fn send_commands<M, const I: usize, const S: usize, const F: usize, const A: usize>(
    fleet: &'static Fleet,
    client: &embermq::client::Client<'_, '_, M, I, S, F, A>,
    every: Duration,
) where
    M: embermq::client::RawMutex,
{
    let s = &fleet.settings;
    let devices = s.local_devices().max(1);
    let step = every
        .div_f64(devices as f64)
        .max(Duration::from_micros(100));
    let mut tick = tokio::time::interval(step);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut topic = String::new();
    let mut reply = String::new();
    let mut local = 0usize;
    loop {
        tick.tick().await;
        if tokio::time::Instant::now() >= fleet.end {
            core::future::pending::<()>().await;
        }
        let n = s.range.start + (local % devices) as u32;
        let id = s.ids.format(n);
        topic.clear();
        reply.clear();
        let _ = write!(topic, "{}/{}/{}/cmd", s.prefix, s.shard.index, id);
        let _ = write!(reply, "{}/{}/{}/reply", s.prefix, s.shard.index, id);
        let correlation = (local as u64).to_be_bytes();
        let fields = PropertyFields {
            response_topic: Some(reply.as_str()),
            correlation_data: Some(&correlation),
            ..PropertyFields::default()
        };
        let mut msg = OutgoingMessage::new(topic.as_str(), b"{\"cmd\":\"ping\"}", QoS::AtLeastOnce);
        msg.properties = Properties::from_fields(&fields);
        match client.try_publish(&msg, OverflowPolicy::RejectNew) {
            Ok(_) => bump(&fleet.stats.commands_sent),
            Err(_) => fleet.stats.error("command_not_queued"),
        }
        local += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_sequence_is_all_unique() {
        let mut t = Track::default();
        for s in 0..1000 {
            assert_eq!(t.record(s), Seen::New);
        }
        assert_eq!((t.unique, t.duplicates, t.reordered), (1000, 0, 0));
    }

    #[test]
    fn qos1_redelivery_counts_as_duplicate_and_late_arrival_as_reordered() {
        let mut t = Track::default();
        for s in [0, 1, 3, 2, 2, 4, 0] {
            t.record(s);
        }
        assert_eq!(t.received, 7);
        assert_eq!(t.unique, 5);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.reordered, 1);
    }

    #[test]
    fn a_gap_beyond_the_window_is_given_up_not_miscounted() {
        let mut t = Track::default();
        t.record(0);
        t.record(500);
        t.record(501);
        assert_eq!(t.unique, 3);
        assert_eq!(t.duplicates, 0);
        // 1 was given up; a late copy now counts as a duplicate.
        assert_eq!(t.record(1), Seen::Duplicate);
        assert_eq!(t.record(400), Seen::New);
    }
}
