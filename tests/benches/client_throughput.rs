//! Client throughput and CPU cost: embermq's async client against rumqttc
//! 0.25 (feature `websocket`), one client over MQTT-over-WebSocket, in the
//! same run, against the same broker.
//!
//! Each run is one client, on a fresh current-thread tokio runtime, that
//! subscribes to its own topic and then publishes `n` messages to it: every
//! message goes out, through the broker, and comes back. A run ends when
//! all `n` messages were received back and (QoS 1, 2) the publishes were
//! acknowledged (PUBACK, PUBCOMP). Both clients do exactly the same:
//!
//! - MQTT 3.1.1, the same topic, payload, QoS, subscription QoS;
//! - at most 16 QoS 1/2 publishes in flight (embermq `ClientState<_, 16, _>`,
//!   rumqttc `set_inflight(16)`), and for every QoS at most 64 messages
//!   published but not yet received back (an application window, a
//!   semaphore both sides share the code of), so QoS 0 is never dropped by
//!   a broker queue and both clients see the same flow control;
//! - TCP_NODELAY on (embermq's tokio connector sets it; rumqttc is told to);
//! - payloads are shared, not rebuilt (embermq borrows a slice; rumqttc
//!   gets a `Bytes` clone through `publish_bytes`).
//!
//! Measured per run, from the first publish to the last message and ack:
//! wall time (msg/s = n / wall) and CPU time of this process
//! (`getrusage(RUSAGE_SELF)`, user + system) per message. The brokers run
//! in their own processes (mosquitto, aedes under node), so the process's
//! CPU time is the client's alone: runtime, client, WebSocket, TCP syscalls.
//!
//! Cases: QoS 0, 1 and 2 with 64-byte payloads on mosquitto's websockets
//! listener; QoS 1 with 16 KiB payloads on aedes' (mosquitto's websocket
//! listener is slow with large messages: that would measure the broker).
//!
//! Environment: `EMBERMQ_BENCH_N` messages per 64-byte run (default
//! 20000; the 16 KiB runs use a tenth), `EMBERMQ_BENCH_ROUNDS` rounds
//! (default 3; each round runs embermq then rumqttc; the table shows the
//! medians). Run as a test (`cargo test --benches`) the defaults are 200
//! messages and one round: a check that every case completes. A CI smoke check: `EMBERMQ_BENCH_N=400 EMBERMQ_BENCH_ROUNDS=1
//! cargo bench -p embermq-tests --bench client_throughput`. For
//! profiling, `EMBERMQ_BENCH_CASE=<substring>` runs only the matching
//! cases and `EMBERMQ_BENCH_CLIENT=embermq` (or `rumqttc`) only one client
//! (the ratios are then meaningless).
//!
//! Not criterion: criterion times repeated iterations of a closure by wall
//! clock, while this needs CPU time per message over whole network runs
//! and a table of two clients side by side; it prints its own.

extern crate alloc;

use alloc::rc::Rc;
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::time::Instant;

use embermq::client::{ClientConfig, ClientState, Connection, CriticalSectionRawMutex, Event};
use embermq::clock::TokioClock;
use embermq::codec::{QoS, Subscription, SubscriptionOptions};
use embermq::session::{OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq::transport::TokioTcpConnector;
use embermq_tests::peers::{Aedes, Mosquitto};
use embermq_ws::{Buffers, WsConnector};
use nix::sys::resource::{UsageWho, getrusage};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, Semaphore};

/// QoS 1/2 publishes in flight, both clients.
const INFLIGHT: usize = 16;
/// Messages published but not yet received back, both clients.
const WINDOW: usize = 64;
/// Receive, transmit and WebSocket buffers; packet size limits.
const BUF: usize = 64 << 10;
/// A run that takes longer than this failed.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The client state of the embermq runs.
type State = ClientState<'static, CriticalSectionRawMutex, INFLIGHT, 4>;

/// One benchmark case.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    qos: u8,
    payload: usize,
    ws_port: u16,
    n: u32,
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    n: u32,
}

impl Sample {
    fn msgs_per_sec(&self) -> f64 {
        f64::from(self.n) / self.wall.as_secs_f64()
    }
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / f64::from(self.n)
    }
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn client_id(who: &str, case: &Case) -> String {
    static RUN: AtomicU32 = AtomicU32::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    format!("bench-{who}-{}-{}-{run}", case.name, std::process::id())
}

fn embermq_qos(qos: u8) -> QoS {
    match qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn rumqttc_qos(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

/// Runs `f` on a fresh current-thread runtime under [`RUN_LIMIT`].
fn on_runtime<F: core::future::Future<Output = Sample>>(what: &str, f: F) -> Sample {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            tokio::time::timeout(RUN_LIMIT, f)
                .await
                .unwrap_or_else(|_| panic!("{what}: run exceeded {RUN_LIMIT:?}"))
        })
}

/// One embermq run (see the module documentation).
fn run_embermq(case: Case) -> Sample {
    let id: &'static str = Box::leak(client_id("embermq", &case).into_boxed_str());
    let topic: &'static str = Box::leak(format!("bench/{id}").into_boxed_str());
    let mut config = SessionConfig::new(id);
    config.protocol = ProtocolChoice::V311;
    config.keep_alive_secs = 60;
    config.max_incoming_packet_size = BUF as u32;
    // Outbox room for the whole window of encoded PUBLISHes.
    let outbox = WINDOW * (case.payload + topic.len() + 32);
    let state: &'static State = Box::leak(Box::new(ClientState::new(config, leak(outbox))));
    let client = state.client();
    let qos = embermq_qos(case.qos);
    let payload = vec![0x5a; case.payload];

    on_runtime("embermq", async move {
        let received = Rc::new(Cell::new(0u32));
        let window = Rc::new(Semaphore::new(WINDOW));
        let all_back = Rc::new(Notify::new());
        let handler = {
            let (received, window, all_back) = (received.clone(), window.clone(), all_back.clone());
            let (len, n) = (case.payload, case.n);
            move |event: Event<'_>| {
                if let Event::Message(m) = event
                    && m.payload.len() == len
                {
                    received.set(received.get() + 1);
                    window.add_permits(1);
                    if received.get() == n {
                        all_back.notify_one();
                    }
                }
            }
        };
        let connector = WsConnector::new(
            TokioTcpConnector::new("127.0.0.1", case.ws_port),
            "127.0.0.1",
            Some(case.ws_port),
            "/mqtt",
            Buffers {
                rx: leak(BUF),
                tx: leak(BUF),
            },
            StdRng::seed_from_u64(1),
        );
        let driver = Connection::new(
            state,
            connector,
            TokioClock::new(),
            StdRng::seed_from_u64(2),
            leak(BUF),
            leak(BUF),
            ClientConfig::default(),
        )
        .run(handler);
        let app = async {
            // SUBACK implies CONNACK: the link is up.
            client
                .subscribe(&[Subscription {
                    filter: topic,
                    options: SubscriptionOptions::qos(qos),
                }])
                .await
                .expect("subscribe");
            let (t0, c0) = (Instant::now(), cpu_time());
            let mut last = None;
            for _ in 0..case.n {
                window.acquire().await.expect("window").forget();
                let msg = OutgoingMessage::new(topic, &payload, qos);
                last = Some(client.publish(&msg).await.expect("publish"));
            }
            if let Some(token) = last {
                client.completion(token).await.expect("completion");
            }
            if received.get() < case.n {
                all_back.notified().await;
            }
            let sample = Sample {
                wall: t0.elapsed(),
                cpu: cpu_time() - c0,
                n: case.n,
            };
            client.stop();
            sample
        };
        let (result, sample) = tokio::join!(driver, app);
        result.expect("embermq driver");
        sample
    })
}

/// One rumqttc run (see the module documentation).
fn run_rumqttc(case: Case) -> Sample {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, Transport};
    let id = client_id("rumqttc", &case);
    let topic = format!("bench/{id}");
    let mut options = MqttOptions::new(
        id,
        format!("ws://127.0.0.1:{}/mqtt", case.ws_port),
        case.ws_port,
    );
    options
        .set_transport(Transport::Ws)
        .set_keep_alive(Duration::from_secs(60))
        .set_max_packet_size(BUF, BUF)
        .set_inflight(INFLIGHT as u16);
    let qos = rumqttc_qos(case.qos);
    let payload = bytes::Bytes::from(vec![0x5a; case.payload]);

    on_runtime("rumqttc", async move {
        let (client, mut eventloop) = AsyncClient::new(options, WINDOW);
        // As embermq's `TokioTcpConnector` does. rumqttc's default (Nagle
        // on) stalls each QoS 1 window on the peer's delayed ACK (~40 ms):
        // 376 msg/s in a trial run, a socket option rather than the client.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        client.subscribe(&topic, qos).await.expect("subscribe");
        loop {
            match eventloop.poll().await.expect("rumqttc connect") {
                Event::Incoming(Packet::SubAck(_)) => break,
                _ => continue,
            }
        }
        let window = Semaphore::new(WINDOW);
        let (t0, c0) = (Instant::now(), cpu_time());
        let publisher = async {
            for _ in 0..case.n {
                window.acquire().await.expect("window").forget();
                client
                    .publish_bytes(topic.as_str(), qos, false, payload.clone())
                    .await
                    .expect("publish");
            }
        };
        let receiver = async {
            let (mut received, mut acked) = (0u32, 0u32);
            let need_acks = if case.qos == 0 { 0 } else { case.n };
            while received < case.n || acked < need_acks {
                match eventloop.poll().await.expect("rumqttc link") {
                    Event::Incoming(Packet::Publish(p)) if p.payload.len() == case.payload => {
                        received += 1;
                        window.add_permits(1);
                    }
                    Event::Incoming(Packet::PubAck(_)) if case.qos == 1 => acked += 1,
                    Event::Incoming(Packet::PubComp(_)) if case.qos == 2 => acked += 1,
                    Event::Outgoing(Outgoing::Disconnect) => break,
                    _ => {}
                }
            }
        };
        tokio::join!(publisher, receiver);
        Sample {
            wall: t0.elapsed(),
            cpu: cpu_time() - c0,
            n: case.n,
        }
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn main() {
    // `cargo bench` passes `--bench`; run as a test (`cargo test
    // --benches`, unoptimised) it only checks that every case completes.
    let bench = std::env::args().any(|a| a == "--bench");
    let n = env_u32("EMBERMQ_BENCH_N", if bench { 20_000 } else { 200 });
    let rounds = env_u32("EMBERMQ_BENCH_ROUNDS", if bench { 3 } else { 1 });
    let mosquitto = Mosquitto::start().expect("mosquitto");
    let aedes = Aedes::start().expect("aedes (npm ci in tests/peers)");
    let big_n = (n / 10).max(1);
    let cases = [
        Case {
            name: "qos0-64B-mosquitto",
            qos: 0,
            payload: 64,
            ws_port: mosquitto.ws_port,
            n,
        },
        Case {
            name: "qos1-64B-mosquitto",
            qos: 1,
            payload: 64,
            ws_port: mosquitto.ws_port,
            n,
        },
        Case {
            name: "qos2-64B-mosquitto",
            qos: 2,
            payload: 64,
            ws_port: mosquitto.ws_port,
            n,
        },
        Case {
            name: "qos1-16KiB-aedes",
            qos: 1,
            payload: 16 << 10,
            ws_port: aedes.ws_port,
            n: big_n,
        },
    ];
    println!(
        "client_throughput: {rounds} round(s), medians; msg/s = messages published and \
         received back per second; CPU = this process (client only), user + system"
    );
    println!(
        "| case | n | embermq msg/s | rumqttc msg/s | throughput ratio | embermq CPU µs/msg \
         | rumqttc CPU µs/msg | CPU ratio | target |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let only_case = std::env::var("EMBERMQ_BENCH_CASE").unwrap_or_default();
    let only_client = std::env::var("EMBERMQ_BENCH_CLIENT").unwrap_or_default();
    let (with_embermq, with_rumqttc) = (only_client != "rumqttc", only_client != "embermq");
    for case in cases.into_iter().filter(|c| c.name.contains(&only_case)) {
        // Warm-up: connections, allocator, broker caches.
        let warm = Case {
            n: (case.n / 10).max(1),
            ..case
        };
        if with_embermq {
            run_embermq(warm);
        }
        if with_rumqttc {
            run_rumqttc(warm);
        }
        let (mut e, mut r) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            if with_embermq {
                e.push(run_embermq(case));
            }
            if with_rumqttc {
                r.push(run_rumqttc(case));
            }
        }
        let rate = |s: &[Sample]| {
            if s.is_empty() {
                0.0
            } else {
                median(s.iter().map(Sample::msgs_per_sec).collect())
            }
        };
        let cpu = |s: &[Sample]| {
            if s.is_empty() {
                0.0
            } else {
                median(s.iter().map(Sample::cpu_us_per_msg).collect())
            }
        };
        let (er, rr, ec, rc) = (rate(&e), rate(&r), cpu(&e), cpu(&r));
        let met = ec <= rc / 2.0 && er >= rr;
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2}x | {} |",
            case.name,
            case.n,
            er,
            rr,
            er / rr,
            ec,
            rc,
            ec / rc,
            if met { "met" } else { "missed" }
        );
    }
    println!("target (issue 4): embermq CPU per message <= 0.5x rumqttc's and throughput >= 1x");
}
