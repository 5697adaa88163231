//! The telemetry profile of a simulated fleet: what the devices send, how
//! often, at which QoS, and the fault knobs, read from a TOML file and
//! overridden by command-line flags.
//!
//! A profile file looks like this (every key optional):
//!
//! ```toml
//! devices = 1000
//! broker = "ws://127.0.0.1:8080/mqtt"
//! id_pattern = "dev-{n:05}"
//! interval_secs = 1.0
//! jitter_secs = 0.2
//! qos = "0:50,1:40,2:10"
//! payload_size = 128
//! fields = ["temp_c=walk(21.5,0.1)", "count=counter", "fw=constant(1.4.2)"]
//! ```
//!
//! Deliberately not here: the transport (see `super::link`) and the
//! checker's accounting (see `super::checker`).

use core::fmt::{self, Write as _};
use core::time::Duration;
use std::path::Path;

use embermq::codec::QoS;
use serde::Deserialize;

/// Why a profile or a flag could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum ProfileError {
    /// The profile file could not be read.
    Read(std::io::Error),
    /// The profile file is not valid TOML for a profile.
    Toml(toml::de::Error),
    /// A value is out of range or malformed.
    Invalid {
        /// The option.
        option: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "cannot read the profile: {e}"),
            Self::Toml(e) => write!(f, "profile is not valid: {e}"),
            Self::Invalid { option, problem } => write!(f, "{option}: {problem}"),
        }
    }
}

impl core::error::Error for ProfileError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Read(e) => Some(e),
            Self::Toml(e) => Some(e),
            Self::Invalid { .. } => None,
        }
    }
}

pub(crate) fn invalid(option: &'static str, problem: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        option,
        problem: problem.into(),
    }
}

/// The profile file's keys (all optional; flags win).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileFile {
    pub(crate) devices: Option<u32>,
    pub(crate) broker: Option<String>,
    pub(crate) id_pattern: Option<String>,
    pub(crate) topic_prefix: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) ramp: Option<f64>,
    pub(crate) herd: Option<bool>,
    pub(crate) interval_secs: Option<f64>,
    pub(crate) jitter_secs: Option<f64>,
    pub(crate) qos: Option<String>,
    pub(crate) payload_size: Option<usize>,
    pub(crate) fields: Option<Vec<String>>,
    pub(crate) retain_state: Option<bool>,
    pub(crate) will: Option<bool>,
    pub(crate) keep_alive_secs: Option<u16>,
    pub(crate) duration_secs: Option<f64>,
    pub(crate) drain_secs: Option<f64>,
    pub(crate) messages: Option<u32>,
    pub(crate) cut_every_secs: Option<f64>,
    pub(crate) pause_at_secs: Option<f64>,
    pub(crate) pause_for_secs: Option<f64>,
    pub(crate) storm_at_secs: Option<f64>,
    pub(crate) command_every_secs: Option<f64>,
}

impl ProfileFile {
    /// Reads a profile file.
    pub(crate) fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(ProfileError::Read)?;
        toml::from_str(&text).map_err(ProfileError::Toml)
    }
}

/// Seconds (possibly fractional) as a duration; negative or non-finite is
/// refused.
pub(crate) fn secs(option: &'static str, value: f64) -> Result<Duration, ProfileError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| invalid(option, format!("{value} is not a duration in seconds")))
}

/// The QoS mix: weights for QoS 0, 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QosMix {
    weights: [u32; 3],
}

impl core::fmt::Display for QosMix {
    /// `1` for one QoS, else the weights: `0:50,1:40,2:10`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let used: Vec<(usize, u32)> = self
            .weights
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, w)| *w > 0)
            .collect();
        match used.as_slice() {
            [(q, _)] => write!(f, "{q}"),
            parts => {
                let parts: Vec<String> = parts.iter().map(|(q, w)| format!("{q}:{w}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

impl QosMix {
    /// Parses `1` (all QoS 1) or `0:50,1:40,2:10` (weights).
    pub(crate) fn parse(text: &str) -> Result<Self, ProfileError> {
        let bad = || {
            invalid(
                "--qos",
                format!("{text:?}: expected 0, 1, 2 or 0:W,1:W,2:W"),
            )
        };
        let mut weights = [0u32; 3];
        for part in text.split(',') {
            let (qos, weight) = match part.trim().split_once(':') {
                Some((q, w)) => (q.trim(), w.trim().parse::<u32>().map_err(|_| bad())?),
                None => (part.trim(), 1),
            };
            let slot = match qos {
                "0" => &mut weights[0],
                "1" => &mut weights[1],
                "2" => &mut weights[2],
                _ => return Err(bad()),
            };
            *slot = slot.saturating_add(weight);
        }
        if weights.iter().all(|&w| w == 0) {
            return Err(bad());
        }
        Ok(Self { weights })
    }

    /// The QoS for a uniform draw `r`.
    pub(crate) fn pick(&self, r: u32) -> QoS {
        let total: u32 = self.weights.iter().sum();
        let mut x = r % total.max(1);
        for (i, &w) in self.weights.iter().enumerate() {
            if x < w {
                return qos_from_index(i);
            }
            x -= w;
        }
        QoS::AtLeastOnce
    }
}

/// QoS 0, 1, 2 from an index.
pub(crate) fn qos_from_index(i: usize) -> QoS {
    match i {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// One varying field of the JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldKind {
    /// A random walk: starts at `start`, moves by up to ±`step` per sample.
    Walk { start: f64, step: f64 },
    /// +1 per sample (the device's sample counter).
    Counter,
    /// Unix time in milliseconds at sending.
    Timestamp,
    /// A fixed string.
    Constant(String),
}

/// A named payload field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) kind: FieldKind,
}

/// The most random-walk fields a profile may have (their state lives in
/// each device).
pub(crate) const MAX_WALKS: usize = 4;

impl Field {
    /// Parses `name=walk(start,step)`, `name=counter`, `name=timestamp`,
    /// `name=constant(text)`.
    pub(crate) fn parse(text: &str) -> Result<Self, ProfileError> {
        let bad = |why: &str| invalid("--field", format!("{text:?}: {why}"));
        let (name, spec) = text
            .split_once('=')
            .ok_or_else(|| bad("expected name=kind"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad("the name must be letters, digits, '_' or '-'"));
        }
        if ["device", "seq", "qos", "ts_us", "pad"].contains(&name) {
            return Err(bad("the name is reserved"));
        }
        let spec = spec.trim();
        let (kind, args) = match spec.split_once('(') {
            Some((k, rest)) => (
                k,
                Some(rest.strip_suffix(')').ok_or_else(|| bad("missing ')'"))?),
            ),
            None => (spec, None),
        };
        let kind = match (kind, args) {
            ("walk", args) => {
                let (start, step) = match args {
                    Some(a) => {
                        let (s, t) = a.split_once(',').ok_or_else(|| bad("walk(start,step)"))?;
                        (
                            s.trim().parse().map_err(|_| bad("walk start"))?,
                            t.trim().parse().map_err(|_| bad("walk step"))?,
                        )
                    }
                    None => (0.0, 1.0),
                };
                FieldKind::Walk { start, step }
            }
            ("counter", None) => FieldKind::Counter,
            ("timestamp", None) => FieldKind::Timestamp,
            ("constant", Some(v)) => {
                if v.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
                    return Err(bad(
                        "constant text may not contain quotes, '\\' or controls",
                    ));
                }
                FieldKind::Constant(v.to_owned())
            }
            _ => {
                return Err(bad(
                    "kind is walk(a,b), counter, timestamp or constant(text)",
                ));
            }
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
        })
    }
}

/// The default payload fields.
pub(crate) fn default_fields() -> Vec<Field> {
    vec![
        Field {
            name: "temp_c".to_owned(),
            kind: FieldKind::Walk {
                start: 21.5,
                step: 0.1,
            },
        },
        Field {
            name: "count".to_owned(),
            kind: FieldKind::Counter,
        },
    ]
}

/// `dev-{n:05}`: a prefix, the device number with a minimum width, a suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdPattern {
    prefix: String,
    width: usize,
    suffix: String,
}

/// The longest client id a pattern may produce.
pub(crate) const MAX_ID_LEN: usize = 48;

impl IdPattern {
    /// Parses a pattern with exactly one `{n}` or `{n:0W}`.
    pub(crate) fn parse(text: &str) -> Result<Self, ProfileError> {
        let bad = || {
            invalid(
                "--id-pattern",
                format!("{text:?}: expected one {{n}} or {{n:0W}}"),
            )
        };
        let (prefix, rest) = text.split_once("{n").ok_or_else(bad)?;
        let (spec, suffix) = rest.split_once('}').ok_or_else(bad)?;
        let width = match spec.strip_prefix(':') {
            Some(w) => w.trim_start_matches('0').parse::<usize>().unwrap_or(0),
            None if spec.is_empty() => 0,
            None => return Err(bad()),
        };
        let valid = |s: &str| {
            !s.contains(['{', '}', '/', '+', '#']) && s.chars().all(|c| c.is_ascii_graphic())
        };
        if !valid(prefix) || !valid(suffix) || width > 20 {
            return Err(bad());
        }
        if prefix.len() + suffix.len() + width.max(10) > MAX_ID_LEN {
            return Err(invalid("--id-pattern", "ids would exceed 48 bytes"));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            width,
            suffix: suffix.to_owned(),
        })
    }

    /// The longest id this pattern produces (numbers up to 10 digits).
    pub(crate) fn max_len(&self) -> usize {
        self.prefix.len() + self.suffix.len() + self.width.max(10)
    }

    /// The id of device `n`, into a stack string.
    pub(crate) fn format(&self, n: u32) -> heapless::String<MAX_ID_LEN> {
        let mut id = heapless::String::new();
        // Fits: checked in `parse`.
        let _ = write!(
            id,
            "{}{:0w$}{}",
            self.prefix,
            n,
            self.suffix,
            w = self.width
        );
        id
    }

    /// The device number in an id this pattern produced.
    pub(crate) fn number(&self, id: &str) -> Option<u32> {
        id.strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?
            .parse()
            .ok()
    }
}

/// Which slice of the device id space this process simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    /// 0-based index.
    pub(crate) index: u32,
    /// Number of shards.
    pub(crate) count: u32,
}

impl Shard {
    /// Parses `i/N` (0 ≤ i < N).
    pub(crate) fn parse(text: &str) -> Result<Self, ProfileError> {
        let bad = || invalid("--shard", format!("{text:?}: expected i/N with 0 <= i < N"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let shard = Self {
            index: i.trim().parse().map_err(|_| bad())?,
            count: n.trim().parse().map_err(|_| bad())?,
        };
        if shard.count == 0 || shard.index >= shard.count {
            return Err(bad());
        }
        Ok(shard)
    }

    /// The device numbers of this shard out of `devices`.
    pub(crate) fn range(&self, devices: u32) -> core::ops::Range<u32> {
        let at = |i: u32| (u64::from(devices) * u64::from(i) / u64::from(self.count)) as u32;
        at(self.index)..at(self.index + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_mix_weights_pick_each_level_in_proportion() {
        let mix = QosMix::parse("0:50,1:40,2:10").unwrap();
        let mut counts = [0u32; 3];
        for r in 0..100 {
            counts[mix.pick(r) as usize] += 1;
        }
        assert_eq!(counts, [50, 40, 10]);
        assert_eq!(QosMix::parse("1").unwrap().pick(7), QoS::AtLeastOnce);
        assert!(QosMix::parse("3").is_err());
        assert!(QosMix::parse("0:0").is_err());
    }

    #[test]
    fn id_pattern_pads_and_reads_back_the_number() {
        let p = IdPattern::parse("dev-{n:05}").unwrap();
        assert_eq!(p.format(42).as_str(), "dev-00042");
        assert_eq!(p.number("dev-00042"), Some(42));
        assert_eq!(p.number("other-1"), None);
        let q = IdPattern::parse("s{n}x").unwrap();
        assert_eq!(q.format(123_456).as_str(), "s123456x");
        assert!(IdPattern::parse("no-number").is_err());
        assert!(IdPattern::parse("a/{n}").is_err());
    }

    #[test]
    fn shards_split_the_id_space_without_gaps_or_overlap() {
        let ranges: Vec<_> = (0..3)
            .map(|i| Shard { index: i, count: 3 }.range(10))
            .collect();
        assert_eq!(ranges, vec![0..3, 3..6, 6..10]);
        assert!(Shard::parse("2/2").is_err());
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
    }

    #[test]
    fn fields_parse_every_kind_and_refuse_reserved_names() {
        assert_eq!(
            Field::parse("t=walk(1.5,0.5)").unwrap().kind,
            FieldKind::Walk {
                start: 1.5,
                step: 0.5
            }
        );
        assert_eq!(Field::parse("c=counter").unwrap().kind, FieldKind::Counter);
        assert_eq!(
            Field::parse("fw=constant(1.2.3)").unwrap().kind,
            FieldKind::Constant("1.2.3".into())
        );
        assert!(Field::parse("seq=counter").is_err());
        assert!(Field::parse("x=constant(a\"b)").is_err());
    }
}
