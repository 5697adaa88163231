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
//!   rumqttc `set_inflight(16)`; 64 on the rows named `64inflight`), and
//!   for every QoS at most four times that many messages published but not
//!   yet received back (an application window, a semaphore both sides share
//!   the code of), so QoS 0 is never dropped by a broker queue and both
//!   clients see the same flow control;
//! - TCP_NODELAY on (embermq's tokio connector sets it; rumqttc is told to);
//! - payloads are shared, not rebuilt (embermq borrows a slice; rumqttc
//!   gets a `Bytes` clone through `publish_bytes`).
//!
//! Measured per run, from the first publish to the last message and ack:
//! wall time (msg/s = n / wall) and CPU time of this process
//! (`getrusage(RUSAGE_SELF)`, user + system) per message. The brokers run
//! in their own processes (mosquitto, aedes under node, and rumqttd in a
//! child process of this bench: [`RumqttdProcess`]), so the process's CPU
//! time is the client's alone: runtime, client, WebSocket, TCP syscalls.
//!
//! Cases: QoS 0, 1 (16 and 64 in flight) and 2 with 64-byte payloads on
//! mosquitto's websockets listener and on rumqttd's (two brokers, so one
//! broker's habits do not decide the verdict: mosquitto sends each packet
//! in its own WebSocket frame, rumqttd a burst of them in one); QoS 1 with
//! 16 KiB payloads on aedes' (mosquitto's websocket listener is slow with
//! large messages: that would measure the broker).
//!
//! After the measured rounds, one traced run per client and case
//! (`trace.rs`) explains the figures: window occupancy, time in flight,
//! slots held back, stalls, writes and reads per message.
//!
//! Environment: `EMBERMQ_BENCH_N` messages per 64-byte run (default
//! 20000; the 16 KiB runs use a tenth), `EMBERMQ_BENCH_ROUNDS` rounds
//! (default 3; each round runs embermq then rumqttc; the table shows the
//! medians), `EMBERMQ_BENCH_TRACE=0` leaves the traced runs out (`=1` adds
//! them to a test run). Run as a test (`cargo test --benches`) the
//! defaults are 200 messages, one round and no trace: a check that every
//! case completes. A CI smoke check: `EMBERMQ_BENCH_N=400
//! EMBERMQ_BENCH_ROUNDS=1 cargo bench -p embermq-tests --bench
//! client_throughput`. For profiling, `EMBERMQ_BENCH_CASE=<substring>`
//! runs only the matching cases and `EMBERMQ_BENCH_CLIENT=embermq` (or
//! `rumqttc`, `floor`, `host`, `host-floor`) only one client (the ratios
//! are then meaningless).
//!
//! A second table sets the host layer (`embermq::host`, [`run_host`])
//! beside the core client of the same run: the same client behind
//! `connect(url)`, a request channel and owned events; and beside the
//! floor of that design ([`run_host_floor`]: the core client behind a
//! spawned task and two bounded channel hops of owned messages).
//!
//! Not criterion: criterion times repeated iterations of a closure by wall
//! clock, while this needs CPU time per message over whole network runs
//! and a table of two clients side by side; it prints its own.

extern crate alloc;

#[path = "client_throughput/trace.rs"]
mod trace;

use alloc::rc::Rc;
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::time::Instant;

use embermq::client::{
    ClientConfig, ClientState, Connection, CriticalSectionRawMutex, Event, EventHandler,
};
use embermq::clock::TokioClock;
use embermq::codec::{QoS, Subscription, SubscriptionOptions};
use embermq::session::{OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq::transport::TokioTcpConnector;
use embermq::transport::WsConnector;
use embermq_tests::peers::{Aedes, Mosquitto};
use embermq_tests::rumqttd::Rumqttd;
use embermq_ws::Buffers;
use nix::sys::resource::{UsageWho, getrusage};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, Semaphore};

/// QoS 1/2 publishes in flight, both clients (the rows with 64 in flight
/// say so in their name).
const INFLIGHT: usize = 16;
/// Messages published but not yet received back, both clients, as a
/// multiple of the in-flight window (64 with 16 in flight).
const WINDOW_PER_INFLIGHT: usize = 4;
/// Receive, transmit and WebSocket buffers; packet size limits.
const BUF: usize = 64 << 10;
/// A run that takes longer than this failed.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The client state of the core-client runs, with `I` in flight.
type State<const I: usize> = ClientState<'static, CriticalSectionRawMutex, I, 4>;

/// One benchmark case.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    qos: u8,
    payload: usize,
    ws_port: u16,
    n: u32,
    /// QoS 1/2 publishes in flight.
    inflight: usize,
}

impl Case {
    /// Messages published but not yet received back.
    fn window(&self) -> usize {
        self.inflight * WINDOW_PER_INFLIGHT
    }
    /// The in-flight window, for the trace (none at QoS 0).
    fn window_in_flight(&self) -> Option<usize> {
        (self.qos > 0).then_some(self.inflight)
    }
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

/// One embermq run (see the module documentation), with the in-flight
/// window the case asks for; `trace` records what passes under the driver.
fn run_embermq(case: Case, trace: Option<&trace::Shared>) -> Sample {
    match case.inflight {
        16 => run_embermq_with::<16>(case, trace),
        64 => run_embermq_with::<64>(case, trace),
        n => panic!("no embermq state with {n} in flight"),
    }
}

fn run_embermq_with<const I: usize>(case: Case, trace: Option<&trace::Shared>) -> Sample {
    let (topic, state) = core_state::<I>("embermq", &case);
    let client = state.client();
    let qos = embermq_qos(case.qos);
    let payload = vec![0x5a; case.payload];
    let trace = trace.cloned();

    on_runtime("embermq", async move {
        let received = Rc::new(Cell::new(0u32));
        let window = Rc::new(Semaphore::new(case.window()));
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
        let driver = core_driver(state, case.ws_port, trace.clone(), handler);
        let app = async {
            subscribe(state, topic, qos).await;
            if let Some(t) = &trace {
                t.borrow_mut().begin(case.window_in_flight());
            }
            let (t0, c0) = (Instant::now(), cpu_time());
            let mut last = None;
            for _ in 0..case.n {
                window.acquire().await.expect("window").forget();
                let msg = OutgoingMessage::new(topic, &payload, qos);
                last = Some(client.publish(&msg).await.expect("publish"));
                if let Some(t) = &trace {
                    t.borrow_mut().app_publish();
                }
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
            if let Some(t) = &trace {
                t.borrow_mut().finish();
            }
            client.stop();
            sample
        };
        let ((), sample) = tokio::join!(driver, app);
        sample
    })
}

/// Subscribes the core client of `state` to `topic` and waits for the
/// SUBACK (which implies the CONNACK: the link is up).
async fn subscribe<const I: usize>(state: &'static State<I>, topic: &'static str, qos: QoS) {
    state
        .client()
        .subscribe(&[Subscription {
            filter: topic,
            options: SubscriptionOptions::qos(qos),
        }])
        .await
        .expect("subscribe");
}

/// The topic and the leaked client state of one core-client run (`who`
/// names the client in its id).
fn core_state<const I: usize>(who: &str, case: &Case) -> (&'static str, &'static State<I>) {
    let id: &'static str = Box::leak(client_id(who, case).into_boxed_str());
    let topic: &'static str = Box::leak(format!("bench/{id}").into_boxed_str());
    let mut config = SessionConfig::new(id);
    config.protocol = ProtocolChoice::V311;
    config.keep_alive_secs = 60;
    config.max_incoming_packet_size = BUF as u32;
    // Outbox room for the whole window of encoded PUBLISHes.
    let outbox = case.window() * (case.payload + topic.len() + 32);
    let state: &'static State<I> = Box::leak(Box::new(ClientState::new(config, leak(outbox))));
    (topic, state)
}

/// The core driver of `state` over MQTT-over-WebSocket to `port`, handing
/// its events to `handler` (`trace` records what passes under it); ends
/// when the client is stopped.
fn core_driver<const I: usize, H: EventHandler>(
    state: &'static State<I>,
    port: u16,
    trace: Option<trace::Shared>,
    handler: H,
) -> impl Future<Output = ()> {
    let connector = trace::Traced {
        inner: WsConnector::new(
            TokioTcpConnector::new("127.0.0.1", port),
            "127.0.0.1",
            Some(port),
            "/mqtt",
            Buffers {
                rx: leak(BUF),
                tx: leak(BUF),
            },
            StdRng::seed_from_u64(1),
        ),
        trace,
    };
    let run = Connection::new(
        state,
        connector,
        TokioClock::new(),
        StdRng::seed_from_u64(2),
        leak(BUF),
        leak(BUF),
        ClientConfig::default(),
    )
    .run(handler);
    async move { run.await.expect("embermq driver") }
}

/// [`run_host_floor`]'s event handler: each message, owned, into the
/// bounded channel to the application's task.
struct FloorForward {
    events: tokio::sync::mpsc::Sender<(alloc::sync::Arc<str>, bytes::Bytes)>,
    /// The last topic received, shared while it repeats.
    last: Option<alloc::sync::Arc<str>>,
}

impl EventHandler for FloorForward {
    async fn on_event(&mut self, event: Event<'_>) {
        if let Event::Message(m) = event {
            let topic = match &self.last {
                Some(t) if **t == *m.topic => t.clone(),
                _ => self.last.insert(m.topic.into()).clone(),
            };
            let owned = (topic, bytes::Bytes::copy_from_slice(m.payload));
            // Waits for room as the host layer does (its default event
            // capacity, 64, is below the larger windows).
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(owned)) =
                self.events.try_send(owned)
            {
                let _ = self.events.send(owned).await;
            }
        }
    }
}

/// The floor of any design with the host layer's shape (issue 14): the
/// core client of [`run_embermq`] with its driver in a task of its own
/// (as `host::connect` spawns one), each publish handed to it
/// over a bounded mpsc as an owned message (an `Arc<str>` topic and a
/// `Bytes` payload, both clones: no allocation), each message received
/// handed back over a bounded mpsc as an owned message (the topic shared
/// while it repeats, the payload copied into a fresh `Bytes`). Nothing
/// else: no tokens, no 5.0 properties, no request/response routing, no
/// subscribe bookkeeping on the per-message path. What `run_host` costs
/// beyond this is what its features cost.
fn run_host_floor(case: Case) -> Sample {
    match case.inflight {
        16 => run_host_floor_with::<16>(case),
        64 => run_host_floor_with::<64>(case),
        n => panic!("no embermq state with {n} in flight"),
    }
}

fn run_host_floor_with<const I: usize>(case: Case) -> Sample {
    use alloc::sync::Arc;
    use bytes::Bytes;
    use tokio::sync::mpsc;
    let (topic, state) = core_state::<I>("hostfloor", &case);
    let client = state.client();
    let qos = embermq_qos(case.qos);
    let payload = Bytes::from(vec![0x5a; case.payload]);
    let owned_topic: Arc<str> = Arc::from(topic);
    // A `LocalSet`: `tokio::spawn` would need the driver's future to be
    // provably `Send` for every lifetime, which rustc cannot show for the
    // leaked `WsConnector` here; on a current-thread runtime a local task
    // is scheduled as a spawned one is.
    let local = tokio::task::LocalSet::new();
    on_runtime(
        "host floor",
        local.run_until(async move {
            let (requests, mut queued) = mpsc::channel::<(Arc<str>, Bytes)>(64);
            let (events, mut received) = mpsc::channel::<(Arc<str>, Bytes)>(64);
            // The host layer's default request and event capacities.
            // The last publish's completion (QoS 1/2), as the other runs wait.
            let (last_done, all_done) = tokio::sync::oneshot::channel();
            let handler = FloorForward { events, last: None };
            let n = case.n;
            let task = tokio::task::spawn_local(async move {
                let serve = async move {
                    let mut sent = 0;
                    while let Some((topic, payload)) = queued.recv().await {
                        let msg = OutgoingMessage::new(&topic, &payload, qos);
                        let token = client.publish(&msg).await.expect("publish");
                        sent += 1;
                        if sent == n {
                            client.completion(token).await.expect("completion");
                            let _ = last_done.send(());
                            break;
                        }
                    }
                };
                tokio::join!(core_driver(state, case.ws_port, None, handler), serve);
            });
            subscribe(state, topic, qos).await;
            let window = Rc::new(Semaphore::new(case.window()));
            let reader = {
                let window = window.clone();
                let len = case.payload;
                async move {
                    let mut count = 0;
                    while count < n {
                        let (_topic, payload) = received.recv().await.expect("message");
                        if payload.len() == len {
                            count += 1;
                            window.add_permits(1);
                        }
                    }
                }
            };
            let app = async {
                let (t0, c0) = (Instant::now(), cpu_time());
                for _ in 0..n {
                    window.acquire().await.expect("window").forget();
                    let request = (owned_topic.clone(), payload.clone());
                    if let Err(mpsc::error::TrySendError::Full(request)) =
                        requests.try_send(request)
                    {
                        requests.send(request).await.expect("driver task");
                    }
                }
                all_done.await.expect("completion");
                (t0, c0)
            };
            let ((t0, c0), ()) = tokio::join!(app, reader);
            let sample = Sample {
                wall: t0.elapsed(),
                cpu: cpu_time() - c0,
                n,
            };
            client.stop();
            task.await.expect("driver task");
            sample
        }),
    )
}

/// One run of the host layer (`embermq::host`): the same client, session
/// and WebSocket code as [`run_embermq`], behind `connect(url)`, the
/// request channel, owned events (`Bytes` payloads) and the driver task it
/// spawns. Same flow control: the window is given back by the task that
/// reads the events.
fn run_host(case: Case) -> Sample {
    use embermq::host::{self, Options};
    let id = client_id("host", &case);
    let topic = host::Topic::from(format!("bench/{id}"));
    let qos = embermq_qos(case.qos);
    let payload = bytes::Bytes::from(vec![0x5a; case.payload]);
    on_runtime("host", async move {
        let url = format!("ws://127.0.0.1:{}/mqtt", case.ws_port);
        let options = Options::new(&url)
            .expect("url")
            .client_id(id)
            .protocol(ProtocolChoice::V311)
            .max_packet_size(BUF as u32)
            .max_inflight(case.inflight as u16)
            .outbox_bytes(case.window() * (case.payload + topic.len() + 32));
        let (client, mut events) = host::connect(options).expect("connect");
        client
            .subscribe(topic.clone(), qos)
            .await
            .expect("subscribe");
        let window = Rc::new(Semaphore::new(case.window()));
        let reader = {
            let window = window.clone();
            let (len, n) = (case.payload, case.n);
            async move {
                let mut received = 0;
                while received < n {
                    let m = events.next_message().await.expect("message");
                    if m.payload.len() == len {
                        received += 1;
                        window.add_permits(1);
                    }
                }
            }
        };
        let app = async {
            let (t0, c0) = (Instant::now(), cpu_time());
            // Every message but the last without a token (nobody awaits
            // them, as in the other runs); the last one's completion is
            // awaited.
            for _ in 1..case.n {
                window.acquire().await.expect("window").forget();
                client
                    .publish_detached(&topic, payload.clone(), qos)
                    .await
                    .expect("publish");
            }
            window.acquire().await.expect("window").forget();
            client
                .publish(&topic, payload.clone(), qos)
                .await
                .expect("publish")
                .await
                .expect("completion");
            (t0, c0)
        };
        let ((t0, c0), ()) = tokio::join!(app, reader);
        let sample = Sample {
            wall: t0.elapsed(),
            cpu: cpu_time() - c0,
            n: case.n,
        };
        client.disconnect().await.expect("disconnect");
        sample
    })
}

/// One rumqttc run (see the module documentation); `trace` records its
/// event loop's publish, ack and message events.
fn run_rumqttc(case: Case, trace: Option<&trace::Shared>) -> Sample {
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
        .set_inflight(case.inflight as u16);
    let qos = rumqttc_qos(case.qos);
    let trace = trace.cloned();
    let payload = bytes::Bytes::from(vec![0x5a; case.payload]);

    on_runtime("rumqttc", async move {
        let (client, mut eventloop) = AsyncClient::new(options, case.window());
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
        let window = Semaphore::new(case.window());
        if let Some(t) = &trace {
            t.borrow_mut().begin(case.window_in_flight());
        }
        let (t0, c0) = (Instant::now(), cpu_time());
        let publisher = async {
            for _ in 0..case.n {
                window.acquire().await.expect("window").forget();
                client
                    .publish_bytes(topic.as_str(), qos, false, payload.clone())
                    .await
                    .expect("publish");
                if let Some(t) = &trace {
                    t.borrow_mut().app_publish();
                }
            }
        };
        let receiver = async {
            let (mut received, mut acked) = (0u32, 0u32);
            let need_acks = if case.qos == 0 { 0 } else { case.n };
            while received < case.n || acked < need_acks {
                let event = eventloop.poll().await.expect("rumqttc link");
                if let Some(t) = &trace {
                    let mut t = t.borrow_mut();
                    match &event {
                        Event::Outgoing(Outgoing::Publish(id)) => {
                            t.publish_out((case.qos > 0).then_some(*id));
                        }
                        Event::Incoming(Packet::PubAck(a)) => t.ack_in(a.pkid),
                        Event::Incoming(Packet::PubComp(a)) => t.ack_in(a.pkid),
                        Event::Incoming(Packet::Publish(_)) => t.publish_in(),
                        _ => {}
                    }
                }
                match event {
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
        let sample = Sample {
            wall: t0.elapsed(),
            cpu: cpu_time() - c0,
            n: case.n,
        };
        if let Some(t) = &trace {
            t.borrow_mut().finish();
        }
        sample
    })
}

/// The floor (QoS 0 and 1): no client library at all, only what any client
/// must do on this I/O pattern. A hand-written loop on the same runtime
/// and socket options sends pre-built MQTT packets in masked WebSocket
/// frames (mask key zero, so masking costs nothing) and parses only the
/// first byte and length of what comes back. Like embermq it answers
/// everything received and sends every publish the windows allow in one
/// write per wake-up; it keeps the same windows (16 in flight, 64 not yet
/// back). What it costs is the kernel, the runtime and the loopback peer's
/// wake-ups: a client can only add to it.
fn run_floor(case: Case, trace: Option<&trace::Shared>) -> Option<Sample> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if case.qos > 1 {
        return None;
    }
    let trace = trace.cloned();
    let traced = |f: &dyn Fn(&mut trace::Trace)| {
        if let Some(t) = &trace {
            f(&mut t.borrow_mut());
        }
    };
    let id = client_id("floor", &case);
    let topic = format!("bench/{id}");
    Some(on_runtime("floor", async move {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", case.ws_port))
            .await
            .expect("floor: connect");
        sock.set_nodelay(true).expect("nodelay");
        let upgrade = format!(
            "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
            case.ws_port
        );
        sock.write_all(upgrade.as_bytes())
            .await
            .expect("floor: upgrade");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            sock.read_exact(&mut byte)
                .await
                .expect("floor: upgrade reply");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "floor: upgrade refused");
        // MQTT packets, built once.
        let packet = |first: u8, body: &[u8]| {
            let mut p = vec![first];
            let mut len = body.len();
            loop {
                let digit = (len % 128) as u8;
                len /= 128;
                p.push(if len > 0 { digit | 0x80 } else { digit });
                if len == 0 {
                    break;
                }
            }
            p.extend_from_slice(body);
            p
        };
        let str16 = |s: &[u8]| {
            let mut v = (s.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(s);
            v
        };
        let mut connect = str16(b"MQTT");
        connect.extend_from_slice(&[4, 0x02, 0, 60]);
        connect.extend(str16(id.as_bytes()));
        let mut subscribe = vec![0, 1];
        subscribe.extend(str16(topic.as_bytes()));
        subscribe.push(case.qos);
        let mut publish_body = str16(topic.as_bytes());
        let id_at = publish_body.len();
        if case.qos == 1 {
            publish_body.extend_from_slice(&[0, 0]);
        }
        publish_body.extend(vec![0x5a; case.payload]);
        let mut publish = packet(0x30 | (case.qos << 1), &publish_body);
        let id_at = publish.len() - publish_body.len() + id_at;
        // One masked binary frame around `mqtt`, appended to `out`.
        let frame = |out: &mut Vec<u8>, mqtt: &[u8]| {
            out.push(0x82);
            match mqtt.len() {
                n if n < 126 => out.push(0x80 | n as u8),
                n if n <= 0xFFFF => {
                    out.push(0x80 | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(0x80 | 127);
                    out.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(mqtt);
        };
        let mut out = Vec::with_capacity(BUF);
        let mut mqtt = packet(0x10, &connect);
        mqtt.extend(packet(0x82, &subscribe));
        frame(&mut out, &mqtt);
        sock.write_all(&out).await.expect("floor: connect");
        // Received: WebSocket bytes in `rx`, the MQTT stream in `stream`.
        let mut rx = vec![0u8; BUF];
        let (mut rx_len, mut stream) = (0usize, Vec::<u8>::with_capacity(BUF));
        let (mut sent, mut received, mut acked, mut inflight) = (0u32, 0u32, 0u32, 0usize);
        let mut subscribed = false;
        let mut acks: Vec<[u8; 2]> = Vec::new();
        let mut next_id: u16 = 0;
        let mut t0 = (Instant::now(), cpu_time());
        let need_acks = if case.qos == 1 { case.n } else { 0 };
        while received < case.n || acked < need_acks {
            // Everything due, in one write.
            out.clear();
            mqtt.clear();
            let sent_before = sent;
            for id in acks.drain(..) {
                mqtt.extend_from_slice(&[0x40, 2, id[0], id[1]]);
            }
            while subscribed
                && sent < case.n
                && (sent - received) < case.window() as u32
                && (case.qos == 0 || inflight < case.inflight)
                && mqtt.len() < 16 << 10
            {
                if case.qos == 1 {
                    next_id = next_id % 0xFFFF + 1;
                    publish[id_at..id_at + 2].copy_from_slice(&next_id.to_be_bytes());
                    inflight += 1;
                }
                traced(&|t| {
                    t.app_publish();
                    t.publish_out((case.qos == 1).then_some(next_id));
                });
                mqtt.extend_from_slice(&publish);
                sent += 1;
            }
            if !mqtt.is_empty() {
                frame(&mut out, &mqtt);
                sock.write_all(&out).await.expect("floor: write");
                let publishes = u64::from(sent - sent_before);
                traced(&|t| t.write(publishes));
            }
            // One read, then everything complete in it.
            let n = sock.read(&mut rx[rx_len..]).await.expect("floor: read");
            assert!(n > 0, "floor: broker closed");
            traced(&|t| t.read());
            rx_len += n;
            let mut at = 0;
            while rx_len - at >= 2 {
                let (len, hdr) = match rx[at + 1] & 0x7F {
                    126 if rx_len - at >= 4 => {
                        (u16::from_be_bytes([rx[at + 2], rx[at + 3]]) as usize, 4)
                    }
                    127 if rx_len - at >= 10 => (
                        u64::from_be_bytes(rx[at + 2..at + 10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => break,
                    n => (n as usize, 2),
                };
                if rx_len - at < hdr + len {
                    break;
                }
                stream.extend_from_slice(&rx[at + hdr..at + hdr + len]);
                at += hdr + len;
            }
            rx.copy_within(at..rx_len, 0);
            rx_len -= at;
            let mut p = 0;
            loop {
                let (mut len, mut mul, mut i) = (0usize, 1usize, p + 1);
                let complete = loop {
                    let Some(&b) = stream.get(i) else { break false };
                    len += (b & 0x7F) as usize * mul;
                    mul *= 128;
                    i += 1;
                    if b & 0x80 == 0 {
                        break true;
                    }
                };
                if !complete || stream.len() < i + len {
                    break;
                }
                match stream[p] >> 4 {
                    9 => {
                        subscribed = true;
                        traced(&|t| t.begin(case.window_in_flight()));
                        t0 = (Instant::now(), cpu_time());
                    }
                    4 => {
                        acked += 1;
                        inflight -= 1;
                        let id = u16::from_be_bytes([stream[i], stream[i + 1]]);
                        traced(&|t| t.ack_in(id));
                    }
                    3 => {
                        received += 1;
                        traced(&|t| t.publish_in());
                        if stream[p] & 0x06 != 0 {
                            let topic_len = u16::from_be_bytes([stream[i], stream[i + 1]]) as usize;
                            let at = i + 2 + topic_len;
                            acks.push([stream[at], stream[at + 1]]);
                        }
                    }
                    _ => {}
                }
                p = i + len;
            }
            stream.drain(..p);
        }
        let sample = Sample {
            wall: t0.0.elapsed(),
            cpu: cpu_time() - t0.1,
            n: case.n,
        };
        traced(&|t| t.finish());
        sample
    }))
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

/// Set in the child process that runs rumqttd (see [`RumqttdProcess`]).
const RUMQTTD_CHILD: &str = "EMBERMQ_BENCH_RUMQTTD_CHILD";

/// rumqttd (`embermq_tests::rumqttd`, the crate embedded) in a child
/// process: this bench binary started again with [`RUMQTTD_CHILD`] set. In
/// this process its CPU time would count as the client's. The child prints
/// its WebSocket port and runs until its stdin closes (rumqttd cannot be
/// stopped otherwise), so it ends with this process.
struct RumqttdProcess {
    child: std::process::Child,
    ws_port: u16,
}

impl RumqttdProcess {
    fn start() -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().expect("bench binary"))
            .env(RUMQTTD_CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("rumqttd child");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("child stdout"))
            .read_line(&mut line)
            .expect("rumqttd child port");
        let ws_port = line.trim().parse().expect("rumqttd child: port");
        Self { child, ws_port }
    }

    /// The child's side: start the broker, report its port, wait for EOF.
    fn serve() -> ! {
        use std::io::Read;
        let broker = Rumqttd::start().expect("rumqttd");
        println!("{}", broker.ws_port);
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    }
}

impl Drop for RumqttdProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    if std::env::var_os(RUMQTTD_CHILD).is_some() {
        RumqttdProcess::serve();
    }
    // `cargo bench` passes `--bench`; run as a test (`cargo test
    // --benches`, unoptimised) it only checks that every case completes.
    let bench = std::env::args().any(|a| a == "--bench");
    let n = env_u32("EMBERMQ_BENCH_N", if bench { 20_000 } else { 200 });
    let rounds = env_u32("EMBERMQ_BENCH_ROUNDS", if bench { 3 } else { 1 });
    let mosquitto = Mosquitto::start().expect("mosquitto");
    let aedes = Aedes::start().expect("aedes (npm ci in tests/peers)");
    let rumqttd = RumqttdProcess::start();
    let big_n = (n / 10).max(1);
    let case = |name, qos, payload, ws_port, inflight| Case {
        name,
        qos,
        payload,
        ws_port,
        n: if payload > 64 { big_n } else { n },
        inflight,
    };
    let (mq, rd) = (mosquitto.ws_port, rumqttd.ws_port);
    let cases = [
        case("qos0-64B-mosquitto", 0, 64, mq, INFLIGHT),
        case("qos1-64B-mosquitto", 1, 64, mq, INFLIGHT),
        case("qos1-64B-64inflight-mosquitto", 1, 64, mq, 64),
        case("qos2-64B-mosquitto", 2, 64, mq, INFLIGHT),
        case("qos1-16KiB-aedes", 1, 16 << 10, aedes.ws_port, INFLIGHT),
        case("qos0-64B-rumqttd", 0, 64, rd, INFLIGHT),
        case("qos1-64B-rumqttd", 1, 64, rd, INFLIGHT),
        case("qos1-64B-64inflight-rumqttd", 1, 64, rd, 64),
        case("qos2-64B-rumqttd", 2, 64, rd, INFLIGHT),
    ];
    // One traced run per client and case after the measured ones.
    let traced = std::env::var("EMBERMQ_BENCH_TRACE").map_or(bench, |v| v != "0");
    let mut trace_rows = Vec::new();
    println!(
        "client_throughput: {rounds} round(s), medians; msg/s = messages published and \
         received back per second; CPU = this process (client only), user + system"
    );
    println!(
        "| case | n | embermq msg/s | rumqttc msg/s | throughput ratio | embermq CPU µs/msg \
         | rumqttc CPU µs/msg | CPU ratio | target | floor CPU µs/msg | embermq / floor CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    let only_case = std::env::var("EMBERMQ_BENCH_CASE").unwrap_or_default();
    let only_client = std::env::var("EMBERMQ_BENCH_CLIENT").unwrap_or_default();
    let with = |who: &str| only_client.is_empty() || only_client == who;
    let (with_embermq, with_rumqttc, with_floor, with_host, with_host_floor) = (
        with("embermq"),
        with("rumqttc"),
        with("floor"),
        with("host"),
        with("host-floor"),
    );
    let mut host_rows = Vec::new();
    for case in cases.into_iter().filter(|c| c.name.contains(&only_case)) {
        // Warm-up: connections, allocator, broker caches.
        let warm = Case {
            n: (case.n / 10).max(1),
            ..case
        };
        if with_embermq {
            run_embermq(warm, None);
        }
        if with_rumqttc {
            run_rumqttc(warm, None);
        }
        if with_floor {
            run_floor(warm, None);
        }
        if with_host {
            run_host(warm);
        }
        if with_host_floor {
            run_host_floor(warm);
        }
        let (mut e, mut r, mut f, mut h, mut hf) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            if with_embermq {
                e.push(run_embermq(case, None));
            }
            if with_rumqttc {
                r.push(run_rumqttc(case, None));
            }
            if with_floor {
                f.extend(run_floor(case, None));
            }
            if with_host {
                h.push(run_host(case));
            }
            if with_host_floor {
                hf.push(run_host_floor(case));
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
        if traced {
            let mut row = |who: &str, run: &dyn Fn(&trace::Shared) -> bool| {
                let t = trace::Shared::default();
                if run(&t) {
                    trace_rows.push(format!(
                        "| {} | {who} | {} |",
                        case.name,
                        t.borrow_mut().row()
                    ));
                }
            };
            if with_embermq {
                row("embermq", &|t| {
                    run_embermq(case, Some(t));
                    true
                });
            }
            if with_rumqttc {
                row("rumqttc", &|t| {
                    run_rumqttc(case, Some(t));
                    true
                });
            }
            if with_floor {
                row("floor", &|t| run_floor(case, Some(t)).is_some());
            }
        }
        if std::env::var_os("EMBERMQ_BENCH_ROUNDS_SHOWN").is_some() {
            let each = |s: &[Sample]| {
                s.iter()
                    .map(|s| format!("{:.0}", s.msgs_per_sec()))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            eprintln!(
                "{}: msg/s by round: embermq [{}] rumqttc [{}]",
                case.name,
                each(&e),
                each(&r)
            );
        }
        let (er, rr, ec, rc) = (rate(&e), rate(&r), cpu(&e), cpu(&r));
        host_rows.push((case.name, case.n, er, rate(&h), ec, cpu(&h), cpu(&hf)));
        let fc = cpu(&f);
        // Issue 13's targets: throughput at least rumqttc's, CPU at most
        // rumqttc's, and within 1.10x of the floor where there is one.
        let met = er >= rr && ec <= rc && (f.is_empty() || ec <= 1.10 * fc);
        let (floor, floor_ratio) = if f.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (format!("{fc:.2}"), format!("{:.2}x", ec / fc))
        };
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2}x | {} | {} | {} |",
            case.name,
            case.n,
            er,
            rr,
            er / rr,
            ec,
            rc,
            ec / rc,
            if met { "met" } else { "missed" },
            floor,
            floor_ratio
        );
    }
    println!(
        "target (issue 13): throughput >= 1.0x rumqttc's, embermq CPU per message <= rumqttc's \
         and <= 1.10x the floor's"
    );
    println!();
    println!(
        "host layer (embermq::host: connect(url), owned events) against the core client, \
         same run"
    );
    println!(
        "| case | n | core msg/s | host msg/s | core CPU µs/msg | host CPU µs/msg \
         | CPU ratio | target | floor CPU µs/msg | floor / core | host / floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for (name, n, core_rate, host_rate, core_cpu, host_cpu, floor_cpu) in host_rows {
        let ratio = host_cpu / core_cpu;
        println!(
            "| {name} | {n} | {core_rate:.0} | {host_rate:.0} | {core_cpu:.2} | {host_cpu:.2} \
             | {ratio:.2}x | {} | {floor_cpu:.2} | {:.2}x | {:.2}x |",
            if ratio <= 1.10 { "met" } else { "missed" },
            floor_cpu / core_cpu,
            host_cpu / floor_cpu,
        );
    }
    println!(
        "target (issue 14): host layer CPU per message <= 1.10x the core client's; floor = \
         the core client behind a spawned task and two bounded mpsc hops of owned messages \
         (run_host_floor), the least any owned-event, separate-task design does"
    );
    if !trace_rows.is_empty() {
        println!();
        println!(
            "traced runs (one per client and case, not measured for CPU): windows by \
             Little's law, writes and reads per message"
        );
        println!("{}", trace::HEADER);
        for row in trace_rows {
            println!("{row}");
        }
    }
    drop(rumqttd);
}
