//! `embermq sim --metrics ADDR`: the run's figures as Prometheus text
//! exposition (format 0.0.4) on `http://ADDR/metrics` while the run lasts,
//! through the `metrics` facade and `metrics-exporter-prometheus` (its
//! HTTP listener runs on a thread of its own, off the fleet's thread).
//!
//! Every series carries the label `shard` (the shard index), so the
//! shards of an Indexed Job sum up in PromQL. What is exported:
//! - counters `embermq_sim_published_total{qos}`,
//!   `..._acknowledged_total{qos}`, `..._received_total`,
//!   `..._duplicates_total{qos}`, `..._lost_total{qos}` (known at the end
//!   of the run only: until then it stays 0), `..._connects_total`,
//!   `..._reconnects_total`, `..._cuts_total`, `..._not_queued_total`,
//!   `..._errors_total{kind}`, `..._commands_total`, `..._replies_total`;
//! - gauges `embermq_sim_connected_devices`, `..._devices`,
//!   `..._pending_acks`;
//! - histograms `embermq_sim_latency_seconds` (end to end, per reading
//!   the checker saw first) and `embermq_sim_connect_seconds` (first
//!   connect per device).
//!
//! Counters are copied from the fleet's cells every 200 ms and set to the
//! final report's figures when the run ends, so a scrape after the end
//! (see `--metrics-linger`) agrees with the JSON report exactly.
//!
//! Not here: push gateways, OpenMetrics exemplars.

use core::net::SocketAddr;
use core::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use super::fleet::Fleet;
use super::report::{PerQos, Report};

/// Bucket bounds of the latency histogram, seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
    30.0,
];
/// Bucket bounds of the connect-time histogram, seconds.
const CONNECT_BUCKETS: [f64; 13] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0,
];

/// Starts the exporter on `addr`, labelling every series `shard`.
///
/// Call it before the fleet's runtime starts: the listener gets a thread
/// and a runtime of its own. The address is bound here, so a port in use
/// is an error now rather than a silent absence of metrics.
pub(crate) fn start(addr: SocketAddr, shard: u32) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .add_global_label("shard", shard.to_string())
        .set_buckets_for_metric(
            Matcher::Full("embermq_sim_latency_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("embermq_sim_connect_seconds".into()),
                &CONNECT_BUCKETS,
            )
        })
        .and_then(PrometheusBuilder::install)
        .map_err(|e| format!("--metrics {addr}: {e}"))?;
    describe();
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "embermq_sim_published_total",
        "Readings the devices queued, by QoS"
    );
    describe_counter!(
        "embermq_sim_acknowledged_total",
        "Readings completed: QoS 0 sent, QoS 1 PUBACK, QoS 2 PUBCOMP"
    );
    describe_counter!(
        "embermq_sim_received_total",
        "Readings the checker received, copies included"
    );
    describe_counter!(
        "embermq_sim_duplicates_total",
        "Copies of readings the checker had already received, by QoS"
    );
    describe_counter!(
        "embermq_sim_lost_total",
        "Readings queued and never received, by QoS (set when the run ends)"
    );
    describe_counter!(
        "embermq_sim_connects_total",
        "Accepted links (first connects and reconnects)"
    );
    describe_counter!(
        "embermq_sim_reconnects_total",
        "Accepted links after a device's first"
    );
    describe_counter!("embermq_sim_cuts_total", "Links cut on purpose");
    describe_counter!(
        "embermq_sim_not_queued_total",
        "Readings the outbox refused (full)"
    );
    describe_counter!("embermq_sim_errors_total", "Errors by kind");
    describe_counter!("embermq_sim_commands_total", "Commands the checker sent");
    describe_counter!("embermq_sim_replies_total", "Replies the checker received");
    describe_gauge!(
        "embermq_sim_connected_devices",
        "Devices with an accepted link now"
    );
    describe_gauge!("embermq_sim_devices", "Devices this shard simulates");
    describe_gauge!(
        "embermq_sim_pending_acks",
        "Readings queued and not yet completed"
    );
    describe_histogram!(
        "embermq_sim_latency_seconds",
        metrics::Unit::Seconds,
        "End-to-end latency of readings, device send to checker receipt"
    );
    describe_histogram!(
        "embermq_sim_connect_seconds",
        metrics::Unit::Seconds,
        "First connect time per device, task start to CONNACK"
    );
}

/// Counters of one QoS each.
struct QosCounters([Counter; 3]);

impl QosCounters {
    fn new(name: &'static str) -> Self {
        Self([
            counter!(name, "qos" => "0"),
            counter!(name, "qos" => "1"),
            counter!(name, "qos" => "2"),
        ])
    }

    fn set(&self, values: [u64; 3]) {
        for (c, v) in self.0.iter().zip(values) {
            c.absolute(v);
        }
    }

    fn set_per_qos(&self, p: &PerQos) {
        self.set([p.qos0, p.qos1, p.qos2]);
    }
}

/// The handles the run updates (registered once; no look-up per update).
pub(crate) struct Exported {
    published: QosCounters,
    acknowledged: QosCounters,
    duplicates: QosCounters,
    lost: QosCounters,
    received: Counter,
    connects: Counter,
    reconnects: Counter,
    cuts: Counter,
    not_queued: Counter,
    commands: Counter,
    replies: Counter,
    connected: Gauge,
    devices: Gauge,
    pending: Gauge,
    /// End-to-end latency, seconds (the checker records into it).
    pub(crate) latency: Histogram,
    /// First connect time, seconds (the devices record into it).
    pub(crate) connect: Histogram,
}

impl Exported {
    /// Registers every series (zero until the run counts).
    pub(crate) fn new() -> Self {
        Self {
            published: QosCounters::new("embermq_sim_published_total"),
            acknowledged: QosCounters::new("embermq_sim_acknowledged_total"),
            duplicates: QosCounters::new("embermq_sim_duplicates_total"),
            lost: QosCounters::new("embermq_sim_lost_total"),
            received: counter!("embermq_sim_received_total"),
            connects: counter!("embermq_sim_connects_total"),
            reconnects: counter!("embermq_sim_reconnects_total"),
            cuts: counter!("embermq_sim_cuts_total"),
            not_queued: counter!("embermq_sim_not_queued_total"),
            commands: counter!("embermq_sim_commands_total"),
            replies: counter!("embermq_sim_replies_total"),
            connected: gauge!("embermq_sim_connected_devices"),
            devices: gauge!("embermq_sim_devices"),
            pending: gauge!("embermq_sim_pending_acks"),
            latency: histogram!("embermq_sim_latency_seconds"),
            connect: histogram!("embermq_sim_connect_seconds"),
        }
    }

    /// Copies the fleet's counters (and the checker's duplicates).
    pub(crate) fn sync(&self, fleet: &Fleet, duplicates: [u64; 3]) {
        let st = &fleet.stats;
        let cells = |c: &[core::cell::Cell<u64>; 3]| [c[0].get(), c[1].get(), c[2].get()];
        self.published.set(cells(&st.published));
        self.acknowledged.set(cells(&st.acknowledged));
        self.duplicates.set(duplicates);
        self.received.absolute(st.received.get());
        self.connects.absolute(st.connects.get());
        self.reconnects.absolute(st.reconnects.get());
        self.cuts.absolute(st.cuts.get());
        self.not_queued.absolute(st.not_queued.get());
        self.commands.absolute(st.commands_sent.get());
        self.replies.absolute(st.replies_received.get());
        self.connected.set(st.connected.get() as f64);
        self.devices.set(fleet.settings.local_devices() as f64);
        self.pending.set(st.pending() as f64);
        for (kind, tally) in st.errors.borrow().iter() {
            counter!("embermq_sim_errors_total", "kind" => *kind).absolute(tally.count);
        }
    }

    /// Sets every counter to the final report's figure.
    pub(crate) fn finish(&self, r: &Report) {
        self.published.set_per_qos(&r.published);
        self.acknowledged.set_per_qos(&r.acknowledged);
        if let Some(k) = &r.checker {
            self.duplicates.set_per_qos(&k.duplicates);
            self.lost.set_per_qos(&k.lost);
            self.received.absolute(k.received);
        }
        self.connects.absolute(r.connects);
        self.reconnects.absolute(r.reconnects);
        self.cuts.absolute(r.cuts);
        self.not_queued.absolute(r.not_queued);
        self.commands.absolute(r.commands_sent);
        self.replies.absolute(r.replies_received);
        self.connected.set(0.0);
        let pending = r.published.total().saturating_sub(r.acknowledged.total());
        self.pending.set(pending as f64);
        for (kind, count) in &r.errors {
            counter!("embermq_sim_errors_total", "kind" => kind.clone()).absolute(*count);
        }
    }
}

/// How often the counters are copied.
pub(crate) const SYNC_EVERY: Duration = Duration::from_millis(200);
