//! Codec throughput: embermq against mqttbytes 0.6, MQTT 3.1.1, same run.
//!
//! Decode and encode of PUBLISH (QoS 1, 64 B, 1 KiB and 64 KiB payloads),
//! CONNECT (will, username, password) and SUBSCRIBE (four filters). Both
//! codecs work on the very same bytes: mqttbytes encodes each packet once,
//! embermq decodes those bytes (and must give back the same length). For
//! encode, embermq's packet borrows every topic, string and payload from
//! mqttbytes' own packet, so both encoders copy from the same memory, and
//! embermq's output must equal mqttbytes' byte for byte. A last group
//! compares topic-filter validation (`embermq::topic::validate_filter`
//! against `mqttbytes::valid_filter`, which checks less: see
//! tests/differential_topic.rs).
//!
//! What each encoder does per call: embermq `Packet::encode` into a reused
//! `&mut [u8]` of the packet's length, checking every rule the decoder
//! applies (topic name or filters, U+0000, packet identifier, lengths);
//! mqttbytes `Publish/Connect/Subscribe::write` into a reused `BytesMut`
//! (cleared, capacity kept), checking nothing but the remaining length and
//! (PUBLISH) a zero packet identifier.
//!
//! Fairness: mqttbytes decodes from a `BytesMut`; filling it (a copy of the
//! packet) is batch setup and is not timed, just as embermq's input buffer
//! is already filled.
//!
//! After criterion's own report, a table prints bytes/s for both and the
//! ratio embermq / mqttbytes (>1 means embermq is faster), read back from
//! criterion's estimates (the mean).
//!
//! Run: `cargo bench -p embermq --bench codec -- --warm-up-time 1 --measurement-time 3`
//!
//! Instruction counts (noise-free, for callgrind): see [`count_only`].

use core::hint::black_box;
use std::path::PathBuf;

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use embermq::codec::{
    Connect, DecodeOptions, Decoded, Packet, Properties, ProtocolVersion, Publish, Subscribe,
    Subscription, SubscriptionOptions, Will,
};
use embermq::topic;
use mqttbytes::QoS;
use mqttbytes::v4 as mb;

/// One benchmarked packet: its name, mqttbytes' value and the wire bytes.
struct Case {
    group: &'static str,
    param: String,
    mqttbytes: mb::Packet,
    wire: Vec<u8>,
}

fn mb_encode(p: &mb::Packet, buf: &mut BytesMut) -> usize {
    match p {
        mb::Packet::Publish(p) => p.write(buf),
        mb::Packet::Connect(p) => p.write(buf),
        mb::Packet::Subscribe(p) => p.write(buf),
        _ => unreachable!("only the benchmarked packets"),
    }
    .expect("mqttbytes encodes")
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (param, size) in [("64B", 64usize), ("1KiB", 1024), ("64KiB", 65536)] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let mut publish =
            mb::Publish::new("sensors/device-0042/temperature", QoS::AtLeastOnce, payload);
        publish.pkid = 42;
        out.push(("publish", param.to_owned(), mb::Packet::Publish(publish)));
    }
    let mut connect = mb::Connect::new("embermq-bench-client-0042");
    connect.keep_alive = 60;
    connect.clean_session = true;
    connect.last_will = Some(mb::LastWill::new(
        "devices/0042/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    connect.set_login("device-0042", "secret-token-0123456789");
    out.push((
        "connect",
        "will+login".to_owned(),
        mb::Packet::Connect(connect),
    ));
    let mut subscribe = mb::Subscribe::new("sensors/+/temperature", QoS::AtLeastOnce);
    subscribe.pkid = 7;
    subscribe.add("commands/device-0042/#".to_owned(), QoS::ExactlyOnce);
    subscribe.add("config/device-0042".to_owned(), QoS::AtMostOnce);
    subscribe.add("fleet/+/+/alerts".to_owned(), QoS::AtLeastOnce);
    out.push((
        "subscribe",
        "4-filters".to_owned(),
        mb::Packet::Subscribe(subscribe),
    ));

    out.into_iter()
        .map(|(group, param, mqttbytes)| {
            let mut buf = BytesMut::new();
            mb_encode(&mqttbytes, &mut buf);
            Case {
                group,
                param,
                mqttbytes,
                wire: buf.to_vec(),
            }
        })
        .collect()
}

const OPTS: DecodeOptions = DecodeOptions::new(ProtocolVersion::V311);

fn embermq_decode(wire: &[u8]) -> (Packet<'_>, usize) {
    match Packet::decode(wire, &OPTS) {
        Ok(Decoded::Complete { value, len }) => (value, len),
        other => panic!("embermq failed to decode a valid packet: {other:?}"),
    }
}

fn bench(c: &mut Criterion, cases: &[Case]) {
    for case in cases {
        let len = case.wire.len();
        // Both decoders agree on the framing before anything is timed.
        assert_eq!(embermq_decode(&case.wire).1, len);

        let mut group = c.benchmark_group(format!("{}_decode", case.group));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(
            BenchmarkId::new("embermq", &case.param),
            &case.wire,
            |b, wire| {
                b.iter(|| {
                    let (packet, used) = embermq_decode(black_box(wire));
                    black_box((packet, used));
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("mqttbytes", &case.param),
            &case.wire,
            |b, wire| {
                b.iter_batched_ref(
                    || BytesMut::from(&wire[..]),
                    |stream| black_box(mb::read(stream, usize::MAX).expect("mqttbytes decodes")),
                    BatchSize::SmallInput,
                )
            },
        );
        group.finish();

        let mut group = c.benchmark_group(format!("{}_encode", case.group));
        group.throughput(Throughput::Bytes(len as u64));
        let mut storage = Vec::new();
        let packet = encode_packet(&case.mqttbytes, &mut storage);
        let mut out = vec![0u8; len];
        assert_eq!(
            packet
                .encode(&mut out, ProtocolVersion::V311)
                .expect("embermq encodes"),
            len
        );
        assert_eq!(out, case.wire, "embermq re-encodes to the same bytes");
        group.bench_function(BenchmarkId::new("embermq", &case.param), |b| {
            b.iter(|| {
                black_box(&packet)
                    .encode(black_box(&mut out), ProtocolVersion::V311)
                    .expect("encodes")
            })
        });
        let mut buf = BytesMut::with_capacity(len);
        group.bench_function(BenchmarkId::new("mqttbytes", &case.param), |b| {
            b.iter(|| {
                buf.clear();
                black_box(mb_encode(black_box(&case.mqttbytes), &mut buf))
            })
        });
        group.finish();
    }
}

const FILTERS: [&str; 4] = [
    "sensors/+/temperature",
    "commands/device-0042/#",
    "config/device-0042",
    "fleet/+/+/alerts",
];

fn bench_topic(c: &mut Criterion) {
    let bytes: usize = FILTERS.iter().map(|f| f.len()).sum();
    let mut group = c.benchmark_group("topic_filter_validate");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(BenchmarkId::new("embermq", "4-filters"), |b| {
        b.iter(|| {
            for f in black_box(FILTERS) {
                black_box(topic::validate_filter(f)).expect("valid");
            }
        })
    });
    group.bench_function(BenchmarkId::new("mqttbytes", "4-filters"), |b| {
        b.iter(|| {
            for f in black_box(FILTERS) {
                assert!(black_box(mqttbytes::valid_filter(f)));
            }
        })
    });
    group.finish();
}

/// Where criterion writes its estimates (the same rule criterion applies).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(target).join("criterion")
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/criterion"))
    }
}

/// The mean point estimate (ns) of one benchmark, from criterion's JSON.
fn mean_ns(dir: &std::path::Path, group: &str, function: &str, param: &str) -> Option<f64> {
    let path = dir
        .join(group)
        .join(function)
        .join(param)
        .join("new/estimates.json");
    let json = std::fs::read_to_string(path).ok()?;
    let mean = json.get(json.find("\"mean\"")?..)?;
    let at = mean.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let rest = mean.get(at..)?;
    let end = rest.find([',', '}'])?;
    rest.get(..end)?.trim().parse().ok()
}

fn print_ratios(dir: &std::path::Path, cases: &[Case]) {
    println!();
    println!(
        "MQTT 3.1.1 codec, mean throughput (criterion estimates in {})",
        dir.display()
    );
    println!(
        "{:<26} {:>8} {:>14} {:>14} {:>8}",
        "benchmark", "bytes", "embermq", "mqttbytes", "ratio"
    );
    for case in cases {
        for op in ["decode", "encode"] {
            let group = format!("{}_{op}", case.group);
            let ours = mean_ns(dir, &group, "embermq", &case.param);
            let theirs = mean_ns(dir, &group, "mqttbytes", &case.param);
            let rate = |ns: Option<f64>| {
                ns.map_or("n/a".to_owned(), |ns| {
                    human_rate(case.wire.len() as f64 / (ns * 1e-9))
                })
            };
            let ratio = match (ours, theirs) {
                (Some(o), Some(t)) => format!("{:.2}x", t / o),
                _ => "n/a".to_owned(),
            };
            println!(
                "{:<26} {:>8} {:>14} {:>14} {:>8}",
                format!("{group}/{}", case.param),
                case.wire.len(),
                rate(ours),
                rate(theirs),
                ratio
            );
        }
    }
    let bytes: usize = FILTERS.iter().map(|f| f.len()).sum();
    let ours = mean_ns(dir, "topic_filter_validate", "embermq", "4-filters");
    let theirs = mean_ns(dir, "topic_filter_validate", "mqttbytes", "4-filters");
    if let (Some(o), Some(t)) = (ours, theirs) {
        println!(
            "{:<26} {:>8} {:>14} {:>14} {:>8}",
            "topic_filter_validate",
            bytes,
            human_rate(bytes as f64 / (o * 1e-9)),
            human_rate(bytes as f64 / (t * 1e-9)),
            format!("{:.2}x", t / o)
        );
    }
}

fn human_rate(bytes_per_s: f64) -> String {
    if bytes_per_s >= 1e9 {
        format!("{:.2} GB/s", bytes_per_s / 1e9)
    } else {
        format!("{:.1} MB/s", bytes_per_s / 1e6)
    }
}

fn qos(q: QoS) -> embermq::codec::QoS {
    match q {
        QoS::AtMostOnce => embermq::codec::QoS::AtMostOnce,
        QoS::AtLeastOnce => embermq::codec::QoS::AtLeastOnce,
        QoS::ExactlyOnce => embermq::codec::QoS::ExactlyOnce,
    }
}

/// The embermq packet for encode, as an application builds it (plain
/// fields; for SUBSCRIBE a slice of subscriptions, which `storage`
/// holds), borrowing every string and payload from mqttbytes' own packet:
/// both encoders copy from the very same bytes at the very same addresses.
fn encode_packet<'a>(mb: &'a mb::Packet, storage: &'a mut Vec<Subscription<'a>>) -> Packet<'a> {
    match mb {
        mb::Packet::Publish(p) => Packet::Publish(Publish {
            dup: p.dup,
            qos: qos(p.qos),
            retain: p.retain,
            topic: &p.topic,
            packet_id: (p.qos != QoS::AtMostOnce).then_some(p.pkid),
            properties: Properties::NONE,
            payload: &p.payload,
        }),
        mb::Packet::Connect(c) => Packet::Connect(Connect {
            clean_start: c.clean_session,
            keep_alive: c.keep_alive,
            will: c.last_will.as_ref().map(|w| Will {
                topic: &w.topic,
                payload: &w.message,
                qos: qos(w.qos),
                retain: w.retain,
                properties: Properties::NONE,
            }),
            username: c.login.as_ref().map(|l| l.username.as_str()),
            password: c.login.as_ref().map(|l| l.password.as_bytes()),
            ..Connect::new(ProtocolVersion::V311, &c.client_id)
        }),
        mb::Packet::Subscribe(s) => {
            storage.extend(s.filters.iter().map(|f| Subscription {
                filter: &f.path,
                options: SubscriptionOptions::qos(qos(f.qos)),
            }));
            Packet::Subscribe(Subscribe::new(s.pkid, storage))
        }
        _ => unreachable!("only the benchmarked packets"),
    }
}

/// Instruction-count mode, for callgrind: with `CODEC_BENCH_ONLY` set to
/// `<group>/<param>/<embermq|mqttbytes>` (e.g. `publish_encode/64B/embermq`)
/// and `CODEC_BENCH_ITERS` to a count, runs just that operation that many
/// times, the same work criterion times, and skips criterion (except that
/// mqttbytes' decode here includes filling its `BytesMut`, which criterion
/// leaves out as setup). Two runs under `valgrind --tool=callgrind` with
/// different counts give the instructions per operation as the difference
/// of the totals divided by the difference of the counts (setup cancels
/// out).
fn count_only(cases: &[Case]) -> bool {
    let Ok(only) = std::env::var("CODEC_BENCH_ONLY") else {
        return false;
    };
    let iters: u64 = std::env::var("CODEC_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let case = cases
        .iter()
        .find(|c| only.starts_with(c.group) && only.split('/').nth(1) == Some(c.param.as_str()))
        .expect("CODEC_BENCH_ONLY names a case");
    let side = only.rsplit('/').next().unwrap_or_default();
    // With `CODEC_BENCH_MIN_OF` = k, the loop runs k times and the fastest
    // run's ns per operation is printed: a quick figure that load from other
    // processes can only make slower, never faster.
    let runs: u32 = std::env::var("CODEC_BENCH_MIN_OF")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let start = std::time::Instant::now();
        run_op(case, only.as_str(), side, iters);
        best = best.min(start.elapsed().as_secs_f64() * 1e9 / iters as f64);
    }
    if runs > 1 {
        println!("{only}: {best:.2} ns/op (fastest of {runs} runs of {iters})");
    }
    true
}

/// One operation of [`count_only`], `iters` times.
fn run_op(case: &Case, only: &str, side: &str, iters: u64) {
    let op = only.split('/').next().unwrap_or_default();
    let wire = &case.wire[..];
    match (op.ends_with("_encode"), side) {
        (false, "embermq") => {
            for _ in 0..iters {
                black_box(embermq_decode(black_box(wire)));
            }
        }
        (false, _) => {
            for _ in 0..iters {
                let mut stream = BytesMut::from(wire);
                black_box(mb::read(&mut stream, usize::MAX).expect("mqttbytes decodes"));
            }
        }
        (true, "embermq") => {
            let mut storage = Vec::new();
            let packet = encode_packet(&case.mqttbytes, &mut storage);
            let mut out = vec![0u8; wire.len()];
            for _ in 0..iters {
                black_box(
                    black_box(&packet)
                        .encode(black_box(&mut out), ProtocolVersion::V311)
                        .expect("encodes"),
                );
            }
        }
        (true, _) => {
            let mut buf = BytesMut::with_capacity(wire.len());
            for _ in 0..iters {
                buf.clear();
                black_box(mb_encode(black_box(&case.mqttbytes), &mut buf));
            }
        }
    }
}

fn main() {
    let cases = cases();
    if count_only(&cases) {
        return;
    }
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    bench(&mut c, &cases);
    bench_topic(&mut c);
    c.final_summary();
    print_ratios(&dir, &cases);
}
