//! The final report of a run (printed, and written with `--report FILE`)
//! and `embermq sim merge`, which combines the reports of several shards.
//!
//! Histograms (latency, connect time) are stored as hdrhistogram V2
//! serializations in base64, so merging shards is exact: counts are
//! summed, histograms added, and the percentiles computed again from the
//! merged histograms. Peak RSS is per process: a merged report keeps the
//! sum (the fleet's memory) and the per-device figure over all shards.
//!
//! Not here: how the numbers are collected (`super::fleet`,
//! `super::checker`).

use alloc::collections::BTreeMap;
use core::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};

/// Report format version.
pub(crate) const FORMAT: u32 = 1;

/// Counts per QoS level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PerQos {
    pub(crate) qos0: u64,
    pub(crate) qos1: u64,
    pub(crate) qos2: u64,
}

impl PerQos {
    pub(crate) fn from_array(a: [u64; 3]) -> Self {
        Self {
            qos0: a[0],
            qos1: a[1],
            qos2: a[2],
        }
    }
    pub(crate) fn total(&self) -> u64 {
        self.qos0 + self.qos1 + self.qos2
    }
    fn add(&mut self, o: &Self) {
        self.qos0 += o.qos0;
        self.qos1 += o.qos1;
        self.qos2 += o.qos2;
    }
}

/// A distribution: percentiles and the serialized histogram they came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Distribution {
    /// Samples.
    pub(crate) count: u64,
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
    /// hdrhistogram V2, base64.
    pub(crate) histogram: String,
}

/// Why a histogram could not be stored or read back.
#[derive(Debug)]
pub(crate) enum HistogramError {
    Base64(base64::DecodeError),
    Decode(hdrhistogram::serialization::DeserializeError),
    Encode(hdrhistogram::serialization::V2SerializeError),
    Add(hdrhistogram::AdditionError),
}

impl fmt::Display for HistogramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Base64(e) => write!(f, "histogram is not base64: {e}"),
            Self::Decode(e) => write!(f, "histogram does not decode: {e:?}"),
            Self::Encode(e) => write!(f, "histogram does not encode: {e:?}"),
            Self::Add(e) => write!(f, "histograms do not add: {e:?}"),
        }
    }
}

impl core::error::Error for HistogramError {}

impl Distribution {
    /// The percentiles and serialization of `h`.
    pub(crate) fn of(h: &Histogram<u64>) -> Result<Self, HistogramError> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut bytes)
            .map_err(HistogramError::Encode)?;
        let q = |p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        Ok(Self {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: if h.is_empty() { 0 } else { h.max() },
            histogram: STANDARD.encode(bytes),
        })
    }

    /// The histogram back.
    pub(crate) fn histogram(&self) -> Result<Histogram<u64>, HistogramError> {
        let bytes = STANDARD
            .decode(&self.histogram)
            .map_err(HistogramError::Base64)?;
        Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(HistogramError::Decode)
    }

    fn merge(&self, other: &Self) -> Result<Self, HistogramError> {
        let mut a = self.histogram()?;
        a.auto(true);
        a.add(other.histogram()?).map_err(HistogramError::Add)?;
        Self::of(&a)
    }
}

/// What the checker found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckerReport {
    /// Messages received, copies included.
    pub(crate) received: u64,
    /// Distinct messages received, per QoS.
    pub(crate) unique: PerQos,
    /// Messages queued by the devices but never received, per QoS.
    pub(crate) lost: PerQos,
    /// Copies of messages already received, per QoS.
    pub(crate) duplicates: PerQos,
    /// Distinct messages that arrived after a later one of their device.
    pub(crate) reordered: u64,
    /// Devices with at least one lost message.
    pub(crate) devices_with_loss: u64,
    /// Devices with at least one duplicate.
    pub(crate) devices_with_duplicates: u64,
    /// Messages that named no device of this shard or had no seq/ts_us.
    pub(crate) unattributed: u64,
    /// End-to-end latency, microseconds (send time in the payload to the
    /// checker's receipt).
    pub(crate) latency_us: Distribution,
    /// Of `lost` (all QoS): readings the broker never acknowledged to the
    /// device (the devices' side: the link or the outbox).
    #[serde(default)]
    pub(crate) lost_never_acknowledged: u64,
    /// Of `lost` (all QoS): readings the broker acknowledged (PUBACK,
    /// PUBCOMP; QoS 0: sent) and never delivered to the checker (the
    /// broker's side: a full subscriber queue, a dropped session).
    #[serde(default)]
    pub(crate) lost_acknowledged: u64,
    /// Up to 20 devices with loss or duplicates: (id, published, unique,
    /// duplicates).
    pub(crate) worst_devices: Vec<(String, u64, u64, u64)>,
}

/// Shard and process facts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ShardInfo {
    pub(crate) index: u32,
    pub(crate) count: u32,
    /// First and one-past-last device number.
    pub(crate) first: u32,
    pub(crate) end: u32,
}

/// The simulator process's resource use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HostReport {
    /// User + system CPU seconds (getrusage).
    pub(crate) cpu_secs: f64,
    /// Peak resident set (VmHWM), KiB, summed over the merged processes.
    pub(crate) peak_rss_kib: u64,
    /// Resident set before the devices started (runtime, checker), KiB.
    pub(crate) baseline_rss_kib: u64,
    /// (peak − baseline) / devices, bytes.
    pub(crate) rss_per_device_bytes: u64,
    /// CPU per telemetry message published, microseconds.
    pub(crate) cpu_per_message_us: f64,
    /// The size of one device task's future (client state, driver and
    /// publisher), bytes; its lent buffers are on the heap besides.
    #[serde(default)]
    pub(crate) device_future_bytes: u64,
    /// The size of a device's client state (session, completion table),
    /// bytes: part of `device_future_bytes`.
    #[serde(default)]
    pub(crate) client_state_bytes: u64,
    /// Resident bytes of the devices' TLS buffers at the end of the run
    /// (`mqtts://`, `wss://`; 0 otherwise): the pages records reached, out
    /// of a full-record slot reserved per device.
    #[serde(default)]
    pub(crate) tls_buffers_resident_bytes: u64,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) format: u32,
    pub(crate) broker: String,
    pub(crate) protocol: String,
    /// Devices simulated by the process(es) of this report.
    pub(crate) devices: u64,
    pub(crate) shards: Vec<ShardInfo>,
    /// Seconds of publishing after the ramp.
    pub(crate) duration_secs: f64,
    /// Wall time of the run, seconds.
    pub(crate) wall_secs: f64,
    pub(crate) published: PerQos,
    pub(crate) acknowledged: PerQos,
    /// Readings the outbox refused (full).
    pub(crate) not_queued: u64,
    pub(crate) connects: u64,
    pub(crate) reconnects: u64,
    pub(crate) connected_peak: u64,
    /// Links cut on purpose.
    pub(crate) cuts: u64,
    pub(crate) commands_sent: u64,
    pub(crate) replies_sent: u64,
    pub(crate) replies_received: u64,
    /// First-connect time per device, microseconds from task start to CONNACK.
    pub(crate) connect_us: Distribution,
    pub(crate) errors: BTreeMap<String, u64>,
    /// The first error of each kind: who saw it, when, and its message
    /// (`dev-00012 at 0.3 s: TLS: invalid server certificate: ...`).
    #[serde(default)]
    pub(crate) error_first: BTreeMap<String, String>,
    /// `None` when run without the checker.
    pub(crate) checker: Option<CheckerReport>,
    pub(crate) host: HostReport,
    /// No loss or duplicates at QoS 2, no loss at QoS 1, no errors.
    pub(crate) clean: bool,
    /// Why the run is not clean, where and what probably caused it; empty
    /// when clean.
    #[serde(default)]
    pub(crate) reasons: Vec<String>,
    /// The run's settings as the HTML report lists them (name, value).
    #[serde(default)]
    pub(crate) settings: Vec<(String, String)>,
    /// The run over time (for the HTML report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) series: Option<super::series::Series>,
}

impl Report {
    /// Judges the findings: sets `reasons` and `clean`.
    pub(crate) fn judge_now(&mut self) {
        self.reasons = super::verdict::reasons(self);
        self.clean = self.reasons.is_empty();
    }

    /// Reads a report file.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a report: {e}", path.display()))
    }

    /// Writes the report as pretty JSON.
    pub(crate) fn save(&self, path: &Path) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Combines shard reports into one.
    pub(crate) fn merge(reports: &[Report]) -> Result<Self, String> {
        let (first, rest) = reports.split_first().ok_or("nothing to merge")?;
        let mut m = first.clone();
        for r in rest {
            if r.format != m.format {
                return Err("reports of different formats".into());
            }
            m.devices += r.devices;
            m.shards.extend(r.shards.iter().cloned());
            m.duration_secs = m.duration_secs.max(r.duration_secs);
            m.wall_secs = m.wall_secs.max(r.wall_secs);
            m.published.add(&r.published);
            m.acknowledged.add(&r.acknowledged);
            m.not_queued += r.not_queued;
            m.connects += r.connects;
            m.reconnects += r.reconnects;
            m.connected_peak += r.connected_peak;
            m.cuts += r.cuts;
            m.commands_sent += r.commands_sent;
            m.replies_sent += r.replies_sent;
            m.replies_received += r.replies_received;
            m.connect_us = m
                .connect_us
                .merge(&r.connect_us)
                .map_err(|e| e.to_string())?;
            for (k, v) in &r.errors {
                *m.errors.entry(k.clone()).or_default() += v;
            }
            // Shards come in the order given: the first message kept is
            // the first shard's.
            for (k, v) in &r.error_first {
                m.error_first.entry(k.clone()).or_insert_with(|| v.clone());
            }
            m.checker = match (m.checker.take(), &r.checker) {
                (Some(mut a), Some(b)) => {
                    a.received += b.received;
                    a.unique.add(&b.unique);
                    a.lost.add(&b.lost);
                    a.lost_never_acknowledged += b.lost_never_acknowledged;
                    a.lost_acknowledged += b.lost_acknowledged;
                    a.duplicates.add(&b.duplicates);
                    a.reordered += b.reordered;
                    a.devices_with_loss += b.devices_with_loss;
                    a.devices_with_duplicates += b.devices_with_duplicates;
                    a.unattributed += b.unattributed;
                    a.latency_us = a
                        .latency_us
                        .merge(&b.latency_us)
                        .map_err(|e| e.to_string())?;
                    a.worst_devices.extend(b.worst_devices.iter().cloned());
                    a.worst_devices.truncate(20);
                    Some(a)
                }
                _ => None,
            };
            m.series = match (m.series.take(), &r.series) {
                (Some(mut a), Some(b)) => {
                    a.merge(b);
                    Some(a)
                }
                _ => None,
            };
            m.host.cpu_secs += r.host.cpu_secs;
            m.host.peak_rss_kib += r.host.peak_rss_kib;
            m.host.baseline_rss_kib += r.host.baseline_rss_kib;
            m.host.device_future_bytes = m.host.device_future_bytes.max(r.host.device_future_bytes);
            m.host.client_state_bytes = m.host.client_state_bytes.max(r.host.client_state_bytes);
            m.host.tls_buffers_resident_bytes += r.host.tls_buffers_resident_bytes;
        }
        m.shards.sort_by_key(|s| s.index);
        let grown = m.host.peak_rss_kib.saturating_sub(m.host.baseline_rss_kib);
        m.host.rss_per_device_bytes = (grown * 1024).checked_div(m.devices).unwrap_or(0);
        let published = m.published.total();
        m.host.cpu_per_message_us = if published > 0 {
            m.host.cpu_secs * 1e6 / published as f64
        } else {
            0.0
        };
        m.judge_now();
        Ok(m)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shards: Vec<String> = self
            .shards
            .iter()
            .map(|s| format!("{}/{}", s.index, s.count))
            .collect();
        writeln!(
            f,
            "embermq sim: {} devices on {} (MQTT {}), shard(s) {}, {:.0} s publishing, {:.1} s wall",
            self.devices,
            self.broker,
            self.protocol,
            shards.join(","),
            self.duration_secs,
            self.wall_secs
        )?;
        let q = |p: &PerQos| format!("{} / {} / {}", p.qos0, p.qos1, p.qos2);
        writeln!(f, "  published    (QoS 0/1/2)  {}", q(&self.published))?;
        writeln!(f, "  acknowledged (QoS 0/1/2)  {}", q(&self.acknowledged))?;
        writeln!(
            f,
            "  links: {} connects, {} reconnects, peak {} connected, {} cut on purpose",
            self.connects, self.reconnects, self.connected_peak, self.cuts
        )?;
        let c = &self.connect_us;
        writeln!(
            f,
            "  connect time ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            c.p50 as f64 / 1e3,
            c.p90 as f64 / 1e3,
            c.p99 as f64 / 1e3,
            c.max as f64 / 1e3
        )?;
        if self.commands_sent > 0 {
            writeln!(
                f,
                "  commands: {} sent, {} answered by devices, {} replies received",
                self.commands_sent, self.replies_sent, self.replies_received
            )?;
        }
        match &self.checker {
            Some(k) => {
                writeln!(
                    f,
                    "  checker: {} received, unique {}, lost {}, duplicates {}, reordered {}",
                    k.received,
                    q(&k.unique),
                    q(&k.lost),
                    q(&k.duplicates),
                    k.reordered
                )?;
                if k.lost.total() > 0 {
                    writeln!(
                        f,
                        "  lost: {} never acknowledged by the broker (devices' side), \
                         {} acknowledged and never delivered (broker's side)",
                        k.lost_never_acknowledged, k.lost_acknowledged
                    )?;
                }
                let l = &k.latency_us;
                writeln!(
                    f,
                    "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                    l.p50 as f64 / 1e3,
                    l.p90 as f64 / 1e3,
                    l.p99 as f64 / 1e3,
                    l.max as f64 / 1e3
                )?;
            }
            None => writeln!(f, "  checker: off")?,
        }
        if self.not_queued > 0 {
            writeln!(f, "  not queued (outbox full): {}", self.not_queued)?;
        }
        if self.errors.is_empty() {
            writeln!(f, "  errors: none")?;
        } else {
            writeln!(f, "  errors by kind:")?;
            for (kind, count) in &self.errors {
                writeln!(f, "    {kind} {count}")?;
                match self.error_first.get(kind) {
                    Some(first) => writeln!(f, "      first: {first}")?,
                    None => writeln!(f, "      ({})", super::verdict::kind_meaning(kind))?,
                }
            }
        }
        let h = &self.host;
        writeln!(
            f,
            "  host: {:.2} s CPU ({:.1} µs/message), peak RSS {} KiB ({} KiB before devices), {} B/device",
            h.cpu_secs,
            h.cpu_per_message_us,
            h.peak_rss_kib,
            h.baseline_rss_kib,
            h.rss_per_device_bytes
        )?;
        if h.tls_buffers_resident_bytes > 0 {
            writeln!(
                f,
                "  TLS buffers resident: {} KiB ({} B/device)",
                h.tls_buffers_resident_bytes / 1024,
                h.tls_buffers_resident_bytes
                    .checked_div(self.devices)
                    .unwrap_or(0)
            )?;
        }
        if self.clean {
            write!(f, "  verdict: clean")
        } else {
            write!(f, "  verdict: NOT clean")?;
            for reason in &self.reasons {
                write!(f, "\n  - {reason}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_histograms_equal_one_histogram_of_all_samples() {
        let mut a = Histogram::<u64>::new(2).unwrap();
        let mut b = Histogram::<u64>::new(2).unwrap();
        let mut all = Histogram::<u64>::new(2).unwrap();
        for v in 1..1000u64 {
            if v % 3 == 0 {
                a.record(v * 7).unwrap()
            } else {
                b.record(v * 7).unwrap()
            }
            all.record(v * 7).unwrap();
        }
        let merged = Distribution::of(&a)
            .unwrap()
            .merge(&Distribution::of(&b).unwrap())
            .unwrap();
        let whole = Distribution::of(&all).unwrap();
        assert_eq!(
            (merged.count, merged.p50, merged.p99, merged.max),
            (whole.count, whole.p50, whole.p99, whole.max)
        );
    }

    #[test]
    fn merge_sums_counts_and_judges_again() {
        let mut a = Report {
            format: FORMAT,
            devices: 10,
            published: PerQos {
                qos0: 0,
                qos1: 100,
                qos2: 0,
            },
            checker: Some(CheckerReport::default()),
            connect_us: Distribution::of(&Histogram::new(2).unwrap()).unwrap(),
            ..Report::default()
        };
        a.checker.as_mut().unwrap().latency_us = a.connect_us.clone();
        let mut b = a.clone();
        b.checker.as_mut().unwrap().lost.qos1 = 1;
        let m = Report::merge(&[a.clone(), b]).unwrap();
        assert_eq!(m.devices, 20);
        assert_eq!(m.published.qos1, 200);
        assert!(!m.clean);
        assert!(Report::merge(&[a.clone(), a]).unwrap().clean);
    }
}
