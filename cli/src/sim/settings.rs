//! The options of one simulator run: the command-line flags
//! ([`RunArgs`]), the profile file under them, and the resolved
//! [`Settings`] every task reads.
//!
//! Precedence: a flag given on the command line, else the profile file's
//! key, else the default shown in `--help`.

use alloc::sync::Arc;
use core::ops::Range;
use core::time::Duration;
use std::path::PathBuf;

use clap::Args;
use embermq::session::ProtocolChoice;
use embermq::transport::{RustlsOptions, TLS_RECORD_BUFFER_LEN, TLS_RECORD_OVERHEAD};

use super::link::BrokerUrl;
use super::profile::{
    Field, IdPattern, MAX_WALKS, ProfileError, ProfileFile, QosMix, Shard, default_fields, invalid,
    secs,
};

/// Options of a simulator run.
#[derive(Args, Debug, Default)]
pub(crate) struct RunArgs {
    /// A TOML profile file; flags given here override its keys.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Number of simulated devices in the whole fleet (all shards) [default: 100].
    #[arg(long)]
    devices: Option<u32>,
    /// The broker: mqtt://, mqtts://, ws:// or wss://, then host, an
    /// optional :port and (ws, wss) /path [default: mqtt://127.0.0.1:1883].
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// Client id pattern, with {n} or {n:0W} for the device number [default: dev-{n:05}].
    #[arg(long, value_name = "PATTERN")]
    id_pattern: Option<String>,
    /// Topic prefix; devices use {prefix}/{shard}/{id}/telemetry|state|cmd|reply
    /// [default: embermq-sim].
    #[arg(long, value_name = "PREFIX")]
    topic_prefix: Option<String>,
    /// MQTT version: 5, 3.1.1, or 5-fallback (5, falling back to 3.1.1) [default: 5].
    #[arg(long, value_name = "VERSION")]
    protocol: Option<String>,
    /// Connections started per second [default: 500].
    #[arg(long, value_name = "RATE")]
    ramp: Option<f64>,
    /// Start every device at once (thundering herd), ignoring --ramp.
    #[arg(long)]
    herd: bool,
    /// Seconds between two readings of one device [default: 1].
    #[arg(long, value_name = "SECS")]
    interval: Option<f64>,
    /// Up to this many seconds earlier or later per reading [default: 0].
    #[arg(long, value_name = "SECS")]
    jitter: Option<f64>,
    /// QoS of the readings: 0, 1, 2, or a weighted mix such as 0:50,1:40,2:10 [default: 1].
    #[arg(long, value_name = "MIX")]
    qos: Option<String>,
    /// Pad each JSON reading to at least this many bytes [default: 0].
    #[arg(long, value_name = "BYTES")]
    payload_size: Option<usize>,
    /// A payload field: name=walk(start,step), name=counter, name=timestamp or
    /// name=constant(text); repeat for more [default: temp_c=walk(21.5,0.1), count=counter].
    #[arg(long = "field", value_name = "SPEC")]
    fields: Vec<String>,
    /// Do not publish the retained state message {"online":true} after each connect.
    #[arg(long)]
    no_retain_state: bool,
    /// Connect without the will message {"online":false} on the state topic.
    #[arg(long)]
    no_will: bool,
    /// MQTT keep alive in seconds [default: 60].
    #[arg(long, value_name = "SECS")]
    keep_alive: Option<u16>,
    /// Seconds of publishing after the ramp-up ended [default: 30].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Each device stops after this many readings (an exact total for
    /// comparing runs); --duration still bounds the run.
    #[arg(long, value_name = "N")]
    messages: Option<u32>,
    /// Seconds allowed after publishing stopped for acknowledgements and the
    /// checker to catch up [default: 10].
    #[arg(long, value_name = "SECS")]
    drain: Option<f64>,
    /// Fault: cut each device's link every SECS (each device at its own phase).
    #[arg(long, value_name = "SECS")]
    cut_every: Option<f64>,
    /// Fault: pause all publishing SECS after the start ...
    #[arg(long, value_name = "SECS", requires = "pause_for")]
    pause_at: Option<f64>,
    /// ... for this many seconds.
    #[arg(long, value_name = "SECS", requires = "pause_at")]
    pause_for: Option<f64>,
    /// Fault: reconnect storm, cut every device's link SECS after the start.
    #[arg(long, value_name = "SECS")]
    storm_at: Option<f64>,
    /// The checker sends a ping command to every device, one device after the
    /// other, so that each device gets one every SECS (MQTT 5.0 request/response).
    #[arg(long, value_name = "SECS")]
    command_every: Option<f64>,
    /// Simulate shard i of N (0-based): devices [i*D/N, (i+1)*D/N).
    #[arg(long, value_name = "i/N", conflicts_with = "shards")]
    shard: Option<String>,
    /// Number of shards, the index taken from JOB_COMPLETION_INDEX
    /// (a Kubernetes Indexed Job).
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
    /// Where the checker connects, if not to --broker (e.g. the broker's
    /// plain MQTT listener, to spare its WebSocket listener) [default: --broker].
    #[arg(long, value_name = "URL")]
    checker_broker: Option<String>,
    /// Checker connections sharing the subscription ($share) [default: one per 2500 devices].
    #[arg(long, value_name = "N")]
    checkers: Option<usize>,
    /// Run without the checker subscriber (no loss or latency accounting).
    #[arg(long)]
    no_checker: bool,
    /// CA certificate(s) to trust (PEM) for mqtts:// and wss://, instead of
    /// the built-in Mozilla roots.
    #[arg(long, value_name = "FILE")]
    cafile: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; every device presents it.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Do not verify the broker's certificate (DANGEROUS; testing only).
    #[arg(long)]
    insecure: bool,
    /// Write the final report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// No live view.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Write the report as one self-contained HTML page with charts to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics while the run lasts
    /// (e.g. 0.0.0.0:9464).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// Keep serving --metrics this many seconds after the run, so that the
    /// last scrape sees the final figures [default: 0].
    #[arg(long, value_name = "SECS", requires = "metrics")]
    pub(crate) metrics_linger: Option<f64>,
    /// Per-device MQTT receive buffer in bytes [default: 256].
    #[arg(long, value_name = "BYTES")]
    rx_buffer: Option<usize>,
    /// Per-device outbox in bytes [default: from the payload size].
    #[arg(long, value_name = "BYTES")]
    outbox: Option<usize>,
}

/// Room in a device's TLS transmit buffer for the ClientHello: about 300
/// bytes with rustls' defaults, plus SNI, ALPN and a resumption ticket
/// (OpenSSL's are about 250 bytes).
const TLS_HELLO_LEN: usize = 1536;

/// Per-device buffer sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufferSizes {
    pub(crate) rx: usize,
    pub(crate) tx: usize,
    pub(crate) outbox: usize,
    /// WebSocket receive buffer (holds the handshake response too).
    pub(crate) ws_rx: usize,
    /// WebSocket transmit buffer (frames are masked through it in pieces).
    pub(crate) ws_tx: usize,
    /// TLS receive buffer (`mqtts://`, `wss://`): one full record
    /// ([`TLS_RECORD_BUFFER_LEN`], 16,645 bytes), the largest a server may
    /// send, since rustls negotiates no smaller record size. Lent from
    /// the run's `TlsSlots`: only the pages records reach are resident.
    pub(crate) tls_rx: usize,
    /// TLS transmit buffer: the ClientHello (with a resumption ticket) and
    /// one record of what the device writes.
    pub(crate) tls_tx: usize,
}

/// The resolved options of a run.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) broker: BrokerUrl,
    pub(crate) ids: IdPattern,
    pub(crate) prefix: String,
    pub(crate) protocol: ProtocolChoice,
    pub(crate) protocol_name: &'static str,
    pub(crate) shard: Shard,
    pub(crate) range: Range<u32>,
    /// Connections per second; `None`: all at once.
    pub(crate) ramp: Option<f64>,
    pub(crate) interval: Duration,
    pub(crate) jitter: Duration,
    pub(crate) qos: QosMix,
    pub(crate) payload_size: usize,
    pub(crate) fields: Vec<Field>,
    pub(crate) retain_state: bool,
    pub(crate) will: bool,
    pub(crate) keep_alive_secs: u16,
    pub(crate) duration: Duration,
    pub(crate) drain: Duration,
    pub(crate) messages: Option<u32>,
    pub(crate) cut_every: Option<Duration>,
    pub(crate) pause: Option<(Duration, Duration)>,
    pub(crate) storm_at: Option<Duration>,
    pub(crate) command_every: Option<Duration>,
    pub(crate) checker: bool,
    pub(crate) checkers: usize,
    pub(crate) checker_broker: BrokerUrl,
    /// The rustls configuration every TLS link shares; `Some` when
    /// `broker` or `checker_broker` is `mqtts://` or `wss://`.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) buffers: BufferSizes,
}

impl Settings {
    /// The settings a report lists (name, value).
    pub(crate) fn describe(&self) -> Vec<(String, String)> {
        let secs = |d: Duration| format!("{} s", d.as_secs_f64());
        let opt = |d: Option<Duration>| d.map_or_else(|| "off".to_owned(), secs);
        vec![
            (
                "ramp".into(),
                self.ramp
                    .map_or_else(|| "all at once".into(), |r| format!("{r} per second")),
            ),
            ("interval".into(), secs(self.interval)),
            ("jitter".into(), secs(self.jitter)),
            ("QoS mix".into(), self.qos.to_string()),
            (
                "payload size".into(),
                format!("{} bytes at least", self.payload_size),
            ),
            ("keep alive".into(), format!("{} s", self.keep_alive_secs)),
            ("drain".into(), secs(self.drain)),
            (
                "messages per device".into(),
                self.messages
                    .map_or_else(|| "until the end".into(), |m| m.to_string()),
            ),
            ("cut every".into(), opt(self.cut_every)),
            ("storm at".into(), opt(self.storm_at)),
            ("command every".into(), opt(self.command_every)),
            (
                "checker".into(),
                if self.checker {
                    format!("{} connection(s) at {}", self.checkers, self.checker_broker)
                } else {
                    "off".into()
                },
            ),
            (
                "retained state, will".into(),
                format!("{}, {}", self.retain_state, self.will),
            ),
        ]
    }

    /// Resolves `args` over the profile file (if any) and the environment.
    pub(crate) fn resolve(args: &RunArgs) -> Result<Self, ProfileError> {
        let file = match &args.profile {
            Some(path) => ProfileFile::load(path)?,
            None => ProfileFile::default(),
        };
        let devices = args.devices.or(file.devices).unwrap_or(100);
        let broker = BrokerUrl::parse(
            args.broker
                .as_deref()
                .or(file.broker.as_deref())
                .unwrap_or("mqtt://127.0.0.1:1883"),
        )?;
        let ids = IdPattern::parse(
            args.id_pattern
                .as_deref()
                .or(file.id_pattern.as_deref())
                .unwrap_or("dev-{n:05}"),
        )?;
        let prefix = args
            .topic_prefix
            .clone()
            .or(file.topic_prefix)
            .unwrap_or_else(|| "embermq-sim".to_owned());
        if prefix.is_empty() || prefix.contains(['+', '#']) || prefix.len() > 48 {
            return Err(invalid("--topic-prefix", "1 to 48 bytes without + or #"));
        }
        let filter_len = prefix.len() + ids.max_len() + 16;
        if filter_len > super::fleet::DEVICE_FILTER_LEN {
            return Err(invalid(
                "--topic-prefix",
                format!(
                    "prefix and id too long: a device's command topic must fit {} bytes",
                    super::fleet::DEVICE_FILTER_LEN
                ),
            ));
        }
        let (protocol, protocol_name) = match args
            .protocol
            .as_deref()
            .or(file.protocol.as_deref())
            .unwrap_or("5")
        {
            "5" | "5.0" => (ProtocolChoice::V5, "5.0"),
            "3.1.1" | "3" | "4" => (ProtocolChoice::V311, "3.1.1"),
            "5-fallback" => (ProtocolChoice::V5WithFallback, "5.0 (fallback 3.1.1)"),
            other => {
                return Err(invalid(
                    "--protocol",
                    format!("{other:?}: 5, 3.1.1 or 5-fallback"),
                ));
            }
        };
        let shard = match (&args.shard, args.shards) {
            (Some(text), _) => Shard::parse(text)?,
            (None, Some(count)) => {
                let index = std::env::var("JOB_COMPLETION_INDEX")
                    .map_err(|_| invalid("--shards", "JOB_COMPLETION_INDEX is not set"))?;
                Shard::parse(&format!("{index}/{count}"))?
            }
            (None, None) => Shard { index: 0, count: 1 },
        };
        let ramp = if args.herd || file.herd == Some(true) {
            None
        } else {
            let r = args.ramp.or(file.ramp).unwrap_or(500.0);
            if !(r.is_finite() && r > 0.0) {
                return Err(invalid("--ramp", "a positive rate"));
            }
            Some(r)
        };
        let interval = secs(
            "--interval",
            args.interval.or(file.interval_secs).unwrap_or(1.0),
        )?;
        if interval < Duration::from_millis(10) {
            return Err(invalid("--interval", "at least 0.01 s"));
        }
        let jitter = secs("--jitter", args.jitter.or(file.jitter_secs).unwrap_or(0.0))?;
        if jitter >= interval {
            return Err(invalid("--jitter", "must be below the interval"));
        }
        let qos = QosMix::parse(args.qos.as_deref().or(file.qos.as_deref()).unwrap_or("1"))?;
        let payload_size = args.payload_size.or(file.payload_size).unwrap_or(0);
        if payload_size > 16_384 {
            return Err(invalid("--payload-size", "at most 16384 bytes"));
        }
        let specs = if args.fields.is_empty() {
            file.fields.unwrap_or_default()
        } else {
            args.fields.clone()
        };
        let fields = if specs.is_empty() {
            default_fields()
        } else {
            specs
                .iter()
                .map(|f| Field::parse(f))
                .collect::<Result<Vec<_>, _>>()?
        };
        let walks = fields
            .iter()
            .filter(|f| matches!(f.kind, super::profile::FieldKind::Walk { .. }))
            .count();
        if walks > MAX_WALKS {
            return Err(invalid(
                "--field",
                format!("at most {MAX_WALKS} walk fields"),
            ));
        }
        let opt_secs = |option, v: Option<f64>| v.map(|v| secs(option, v)).transpose();
        let cut_every = opt_secs("--cut-every", args.cut_every.or(file.cut_every_secs))?;
        if cut_every.is_some_and(|c| c < Duration::from_millis(100)) {
            return Err(invalid("--cut-every", "at least 0.1 s"));
        }
        let pause = match (
            opt_secs("--pause-at", args.pause_at.or(file.pause_at_secs))?,
            opt_secs("--pause-for", args.pause_for.or(file.pause_for_secs))?,
        ) {
            (Some(at), Some(len)) => Some((at, len)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "--pause-at",
                    "give both --pause-at and --pause-for",
                ));
            }
        };
        let fields_len: usize = fields
            .iter()
            .map(|f| {
                f.name.len()
                    + 8
                    + match &f.kind {
                        super::profile::FieldKind::Constant(v) => v.len(),
                        _ => 24,
                    }
            })
            .sum();
        // device, seq, ts_us and the field text, or the padded size.
        let message = payload_size.max(80 + fields_len) + prefix.len() + 64;
        let rx = args.rx_buffer.unwrap_or(256).max(256);
        let tx = (message + 32).max(256 + prefix.len());
        let outbox = args.outbox.unwrap_or((2 * message + 64).max(512));
        if outbox < message + 64 {
            return Err(invalid(
                "--outbox",
                format!("at least {} bytes", message + 64),
            ));
        }
        let checker_broker = match &args.checker_broker {
            Some(url) => BrokerUrl::parse(url)?,
            None => broker.clone(),
        };
        let tls = tls_config(args, broker.tls || checker_broker.tls)?;
        let client_chain_len = args
            .cert
            .as_ref()
            .and_then(|path| std::fs::metadata(path).ok())
            .map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX));
        Ok(Self {
            tls,
            checker_broker,
            range: shard.range(devices),
            broker,
            ids,
            prefix,
            protocol,
            protocol_name,
            shard,
            ramp,
            interval,
            jitter,
            qos,
            payload_size,
            fields,
            retain_state: !args.no_retain_state && file.retain_state != Some(false),
            will: !args.no_will && file.will != Some(false),
            keep_alive_secs: args.keep_alive.or(file.keep_alive_secs).unwrap_or(60),
            duration: secs(
                "--duration",
                args.duration.or(file.duration_secs).unwrap_or(30.0),
            )?,
            drain: secs("--drain", args.drain.or(file.drain_secs).unwrap_or(10.0))?,
            messages: args.messages.or(file.messages),
            cut_every,
            pause,
            storm_at: opt_secs("--storm-at", args.storm_at.or(file.storm_at_secs))?,
            command_every: opt_secs(
                "--command-every",
                args.command_every.or(file.command_every_secs),
            )?,
            checker: !args.no_checker,
            checkers: args
                .checkers
                .unwrap_or_else(|| (shard.range(devices).len()).div_ceil(2500))
                .clamp(1, 64),
            buffers: BufferSizes {
                rx,
                tx,
                outbox,
                ws_rx: 256,
                ws_tx: 256,
                tls_rx: TLS_RECORD_BUFFER_LEN,
                // A client certificate chain goes out in the handshake's
                // second flight; its PEM file is longer than its DER.
                tls_tx: (TLS_HELLO_LEN + client_chain_len).max(tx + TLS_RECORD_OVERHEAD),
            },
        })
    }

    /// Devices of this shard.
    pub(crate) fn local_devices(&self) -> usize {
        (self.range.end - self.range.start) as usize
    }

    /// How long starting every device takes.
    pub(crate) fn ramp_time(&self) -> Duration {
        match self.ramp {
            Some(rate) => Duration::from_secs_f64(self.local_devices() as f64 / rate),
            None => Duration::ZERO,
        }
    }
}

/// The one rustls configuration of a run, from `--cafile`, `--cert`,
/// `--key` and `--insecure`; `None` when no URL of the run uses TLS (then
/// those options are an error, as in `embermq pub`/`sub`).
fn tls_config(
    args: &RunArgs,
    needed: bool,
) -> Result<Option<Arc<rustls::ClientConfig>>, ProfileError> {
    let given = args.cafile.is_some() || args.cert.is_some() || args.insecure;
    if !needed {
        return if given {
            Err(invalid(
                "--cafile",
                "--cafile, --cert, --key and --insecure need an mqtts:// or wss:// URL",
            ))
        } else {
            Ok(None)
        };
    }
    let tls_error =
        |option, e: embermq::transport::RustlsConfigError| invalid(option, e.to_string());
    let mut options = match &args.cafile {
        Some(path) => RustlsOptions::ca_file(path).map_err(|e| tls_error("--cafile", e))?,
        None => RustlsOptions::new(),
    };
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        options = options
            .client_auth_files(cert, key)
            .map_err(|e| tls_error("--cert", e))?;
    }
    if args.insecure {
        eprintln!(
            "WARNING: --insecure: the broker's TLS certificate is NOT verified; \
             anyone on the path can read and alter this run's traffic. Testing only."
        );
        options = options.danger_accept_invalid_certs();
    }
    options
        .client_config()
        .map(Some)
        .map_err(|e| tls_error("--cafile", e))
}
