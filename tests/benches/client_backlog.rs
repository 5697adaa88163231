//! The cost of draining a backlog (issue 13): a client queues `n` QoS 1
//! messages while it is offline, then connects and sends them all through
//! mosquitto (TCP listener, no subscriber). The CPU time of this process
//! per message must not grow with `n`: a device back from an hour offline,
//! or a host with a 16 MiB outbox, must not pay more per message than one
//! with a short queue. rumqttc 0.25 does the same in the same run (its
//! request channel sized for the backlog), as the peer.
//!
//! Measured per run (`getrusage(RUSAGE_SELF)`, user + system; the broker
//! is another process): CPU per message to queue the backlog, and CPU per
//! message from the connect until the last PUBACK. Both clients: MQTT
//! 3.1.1, 16 QoS 1 publishes in flight, 64-byte payloads, one topic.
//!
//! Environment: `EMBERMQ_BACKLOG_SIZES` (default `1000,10000,100000`).
//! Run as a test (`cargo test --benches`) the sizes are 100 and 1,000: a
//! check that every case completes. The figures are in
//! docs/benchmarks.md.

use core::time::Duration;
use std::time::Instant;

use embermq::client::{ClientConfig, ClientState, Connection, CriticalSectionRawMutex, Event};
use embermq::clock::TokioClock;
use embermq::codec::QoS;
use embermq::session::{OutgoingMessage, OverflowPolicy, ProtocolChoice, SessionConfig};
use embermq::transport::TokioTcpConnector;
use embermq_tests::peers::Mosquitto;
use nix::sys::resource::{UsageWho, getrusage};
use rand::SeedableRng;
use rand::rngs::StdRng;

const INFLIGHT: usize = 16;
const PAYLOAD: usize = 64;
const RUN_LIMIT: Duration = Duration::from_secs(300);

type State = ClientState<'static, CriticalSectionRawMutex, INFLIGHT, 1>;

/// CPU microseconds per message: to queue, and to drain.
#[derive(Clone, Copy)]
struct Sample {
    queue_us: f64,
    drain_us: f64,
    drain_wall: Duration,
}

fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

fn per_msg(cpu: Duration, n: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / n as f64
}

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn run_embermq(port: u16, n: usize) -> Sample {
    let id: &'static str =
        Box::leak(format!("backlog-embermq-{n}-{}", std::process::id()).into_boxed_str());
    let mut config = SessionConfig::new(id);
    config.protocol = ProtocolChoice::V311;
    config.keep_alive_secs = 60;
    config.max_incoming_packet_size = 4096;
    let topic = "bench/backlog";
    let outbox = n * (PAYLOAD + topic.len() + 32);
    let state: &'static State = Box::leak(Box::new(ClientState::new(config, leak(outbox))));
    let client = state.client();
    let payload = [0x5a; PAYLOAD];
    // Offline: the driver is not running yet.
    let c0 = cpu_time();
    let mut last = None;
    for _ in 0..n {
        let msg = OutgoingMessage::new(topic, &payload, QoS::AtLeastOnce);
        last = Some(
            client
                .try_publish(&msg, OverflowPolicy::RejectNew)
                .expect("queue"),
        );
    }
    let queue_us = per_msg(cpu_time() - c0, n);
    let last = last.expect("a message");
    runtime().block_on(async {
        let (t0, c0) = (Instant::now(), cpu_time());
        let driver = Connection::new(
            state,
            TokioTcpConnector::new("127.0.0.1", port),
            TokioClock::new(),
            StdRng::seed_from_u64(2),
            leak(4096),
            leak(16 << 10),
            ClientConfig::default(),
        )
        .run(|_: Event<'_>| {});
        let drained = async {
            // Acknowledgements come in order: the last one ends the run.
            client.completion(last).await.expect("completion");
            let sample = Sample {
                queue_us,
                drain_us: per_msg(cpu_time() - c0, n),
                drain_wall: t0.elapsed(),
            };
            client.stop();
            sample
        };
        let (result, sample) =
            tokio::time::timeout(RUN_LIMIT, async { tokio::join!(driver, drained) })
                .await
                .expect("embermq drain exceeded its limit");
        result.expect("embermq driver");
        sample
    })
}

fn run_rumqttc(port: u16, n: usize) -> Sample {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
    let mut options = MqttOptions::new(
        format!("backlog-rumqttc-{n}-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    options
        .set_keep_alive(Duration::from_secs(60))
        .set_inflight(INFLIGHT as u16);
    let payload = bytes::Bytes::from(vec![0x5a; PAYLOAD]);
    runtime().block_on(async {
        let (client, mut eventloop) = AsyncClient::new(options, n);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        // Offline: the event loop is not polled yet.
        let c0 = cpu_time();
        for _ in 0..n {
            client
                .try_publish(
                    "bench/backlog",
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .expect("queue");
        }
        let queue_us = per_msg(cpu_time() - c0, n);
        let (t0, c0) = (Instant::now(), cpu_time());
        let drain = async {
            let mut acked = 0;
            while acked < n {
                if let Event::Incoming(Packet::PubAck(_)) =
                    eventloop.poll().await.expect("rumqttc link")
                {
                    acked += 1;
                }
            }
        };
        tokio::time::timeout(RUN_LIMIT, drain)
            .await
            .expect("rumqttc drain exceeded its limit");
        Sample {
            queue_us,
            drain_us: per_msg(cpu_time() - c0, n),
            drain_wall: t0.elapsed(),
        }
    })
}

fn main() {
    // `cargo bench` passes `--bench`; run as a test (`cargo test
    // --benches`, unoptimised) it only checks that every case completes.
    let as_test = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("EMBERMQ_BACKLOG_SIZES") {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().parse().expect("EMBERMQ_BACKLOG_SIZES: numbers"))
            .collect(),
        Err(_) if as_test => vec![100, 1_000],
        Err(_) => vec![1_000, 10_000, 100_000],
    };
    let broker = Mosquitto::start().expect("mosquitto");
    println!(
        "backlog drain, QoS 1, {PAYLOAD} B, {INFLIGHT} in flight, mosquitto TCP; CPU µs per message"
    );
    println!(
        "{:>8} | {:>13} {:>13} {:>9} | {:>13} {:>13} {:>9} | {:>12}",
        "queued",
        "embermq queue",
        "embermq drain",
        "msg/s",
        "rumqttc queue",
        "rumqttc drain",
        "msg/s",
        "drain ratio"
    );
    let mut first: Option<(f64, f64)> = None;
    for &n in &sizes {
        let e = run_embermq(broker.tcp_port, n);
        let r = run_rumqttc(broker.tcp_port, n);
        let rate = |s: &Sample| n as f64 / s.drain_wall.as_secs_f64();
        println!(
            "{n:>8} | {:>13.2} {:>13.2} {:>9.0} | {:>13.2} {:>13.2} {:>9.0} | {:>11.2}x",
            e.queue_us,
            e.drain_us,
            rate(&e),
            r.queue_us,
            r.drain_us,
            rate(&r),
            e.drain_us / r.drain_us
        );
        let (e0, r0) = *first.get_or_insert((e.drain_us + e.queue_us, r.drain_us + r.queue_us));
        println!(
            "{:>8}   growth of (queue + drain) per message against the first row: embermq {:.2}x, rumqttc {:.2}x",
            "",
            (e.drain_us + e.queue_us) / e0,
            (r.drain_us + r.queue_us) / r0
        );
    }
}
