//! `embermq demo`: messages flowing in one command, on a fresh machine.
//!
//! Without `--broker`, starts rumqttd in this process
//! ([`embedded_broker`]), then a subscriber on `devices/+/telemetry` and
//! `--devices` simulated devices (default 5), each its own embermq client
//! over WebSocket publishing the sdk's JSON [`Readings`]
//! (`Client::publish_json`, serialized straight into the outbox) to
//! `devices/<id>/telemetry` every `--interval-ms`. Live statistics
//! (messages per second out and in, connected devices, each device's last
//! reading) are drawn on stderr until Ctrl-C or `--duration`; when stderr
//! is not a terminal a plain line is printed each second instead. At the
//! end the devices stop publishing, their outboxes drain, and a summary
//! (sent = acknowledged publishes, received, duplicates, lost) goes to
//! stdout. Exit code 0 unless the demo could not start (then the codes of
//! docs/cli.md).
//!
//! Device ids are `demo-<run>-<n>` with a random run tag, so on a shared
//! broker (`--broker`) the subscriber counts only this run's devices.
//!
//! Each device also answers commands (the sdk's `Command` JSON) on
//! `devices/<id>/cmd`, replying on the MQTT 5.0 Response Topic with the
//! Correlation Data when the command carried them, else on
//! `devices/<id>/reply`: `ping` (its uptime), `led` (kept), `interval`
//! (applied to its readings), `label` (kept); `reboot` is refused.
//!
//! With a `ws://` or `wss://` broker (the embedded one is), a dashboard
//! page is served at `http://127.0.0.1:<port>/` ([`dashboard`]): the
//! browser connects to the broker itself and shows the fleet live.
//! Deliberately not here: TLS for the embedded broker.

mod dashboard;
mod embedded_broker;

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::time::Duration;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use embermq::client::{Backoff, Client, ClientConfig, Connection, Event, NoopRawMutex};
use embermq::clock::TokioClock;
use embermq::codec::{Properties, PropertyFields};
use embermq::codec::{QoS, Subscription, SubscriptionOptions};
use embermq::session::{OutgoingMessage, OverflowPolicy};
use embermq::session::{ProtocolChoice, SessionConfig};
use embermq_board_app::model::{
    Command, CommandReply, Readings, decode_command, decode_readings, encode_reply,
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::{LocalSet, spawn_local};

use crate::broker_url::{BrokerUrl, UrlValueParser};
use crate::client_run::{CliState, runtime};
use crate::connect::TransportOptions;
use crate::connect_args::{PASSWORD_ENV, resolve_password};
use crate::failure::{Exit, Failure};
use embermq::host::LinkConnector;

use embedded_broker::EmbeddedBroker;

/// The subscriber's filter; devices publish to `devices/<id>/telemetry`.
const FILTER: &str = "devices/+/telemetry";

/// Device lines drawn below the header at most.
const SHOWN_DEVICES: usize = 10;

/// Options of `embermq demo`.
#[derive(Args, Debug)]
pub(crate) struct DemoCommand {
    /// Use this broker (mqtt://, ws://, ...) instead of the embedded one.
    #[arg(long, value_name = "URL", value_parser = UrlValueParser)]
    broker: Option<BrokerUrl>,
    /// Read the MQTT Password for --broker from the first line of this file
    /// (over EMBERMQ_PASSWORD, which is over the URL's).
    #[arg(long = "password-file", value_name = "PATH", requires = "broker")]
    password_file: Option<std::path::PathBuf>,
    /// WebSocket port of the embedded broker (0: any free port; a taken
    /// port falls back to a free one).
    #[arg(long, default_value_t = 9001)]
    port: u16,
    /// Number of simulated devices.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    devices: u16,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Milliseconds between two readings of one device.
    #[arg(long = "interval-ms", default_value_t = 200)]
    interval_ms: u64,
    /// QoS of the telemetry (devices and subscriber).
    #[arg(short = 'q', long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Port of the dashboard page on 127.0.0.1 (0: any free port; a taken
    /// port falls back to a free one).
    #[arg(long = "dashboard-port", default_value_t = 9002)]
    dashboard_port: u16,
    /// Open the dashboard in the default browser (xdg-open / open).
    #[arg(long, conflicts_with = "no_dashboard")]
    open: bool,
    /// Serve no dashboard page.
    #[arg(long = "no-dashboard")]
    no_dashboard: bool,
}

/// Runs `embermq demo`.
pub(crate) fn run(cmd: DemoCommand) -> ExitCode {
    let outcome = runtime().and_then(|rt| rt.block_on(LocalSet::new().run_until(demo(cmd))));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

type DemoState = CliState<'static>;
type DemoClient = Client<'static, 'static, NoopRawMutex, 32, 8>;
type DemoConnection =
    Connection<'static, 'static, NoopRawMutex, LinkConnector, TokioClock, StdRng, 32, 8>;

/// One device as the statistics see it, and the state its commands set.
#[derive(Debug, Default)]
struct DeviceCounters {
    /// Publishes completed (acknowledged at QoS 1/2, written at QoS 0).
    sent: Cell<u64>,
    /// CONNACK accepted the current link.
    connected: Cell<bool>,
    /// Set by the `led` command.
    led: Cell<bool>,
    /// Set by the `interval` command (else `--interval-ms`).
    interval: Cell<Option<Duration>>,
    /// Set by the `label` command.
    label: RefCell<String>,
}

/// What the subscriber saw from one device.
#[derive(Debug, Default, Clone)]
struct SeenDevice {
    received: u64,
    duplicates: u64,
    last_seq: Option<u32>,
    temperature_c: Option<f32>,
    rssi_dbm: Option<i16>,
}

/// Counters shared by the clients' handlers and the display.
#[derive(Debug, Default)]
struct Stats {
    devices: Vec<DeviceCounters>,
    seen: RefCell<HashMap<String, SeenDevice>>,
    received: Cell<u64>,
    duplicates: Cell<u64>,
}

impl Stats {
    fn sent(&self) -> u64 {
        self.devices.iter().map(|d| d.sent.get()).sum()
    }

    fn connected(&self) -> usize {
        self.devices.iter().filter(|d| d.connected.get()).count()
    }
}

fn leak_buf(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Everything a client of the demo is built from.
struct Plan {
    url: &'static BrokerUrl,
    protocol: ProtocolChoice,
    options: TransportOptions,
    /// MQTT Password for `--broker` (file, environment or URL).
    password: Option<&'static str>,
}

impl Plan {
    /// Leaks the state and buffers of one client (they live as long as the
    /// demo) and returns its handle and the driver's future.
    fn client(
        &self,
        id: &'static str,
        max_attempts: Option<u32>,
    ) -> Result<(DemoClient, DemoConnection), Failure> {
        let mut config = SessionConfig::new(id);
        config.protocol = self.protocol;
        config.keep_alive_secs = 30;
        config.max_incoming_packet_size = 16 * 1024;
        config.username = self.url.username.as_deref();
        config.password = self.password.map(str::as_bytes);
        let state: &'static DemoState =
            Box::leak(Box::new(CliState::new(config, leak_buf(32 * 1024))));
        let connector = self
            .options
            .connector(self.url, StdRng::from_entropy())
            .map_err(|e| Failure::from_setup(&e))?;
        let connection = Connection::new(
            state,
            connector,
            TokioClock::new(),
            StdRng::from_entropy(),
            leak_buf(16 * 1024),
            leak_buf(4 * 1024),
            ClientConfig {
                backoff: Backoff {
                    max_attempts,
                    ..Backoff::DEFAULT
                },
                ..ClientConfig::DEFAULT
            },
        );
        Ok((state.client(), connection))
    }
}

async fn demo(cmd: DemoCommand) -> Result<(), Failure> {
    let run_tag: u16 = StdRng::from_entropy().r#gen();
    let (url, protocol, origin) = match cmd.broker.clone() {
        Some(url) => (url, ProtocolChoice::V5WithFallback, String::new()),
        None => {
            let broker = EmbeddedBroker::start(cmd.port)?;
            let url: BrokerUrl = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port)
                .parse()
                .map_err(|e| Failure::new(Exit::Failure, format!("{e}")))?;
            let origin = format!(
                " (embedded rumqttd; also mqtt://127.0.0.1:{})",
                broker.tcp_port
            );
            // rumqttd's WebSocket listener speaks 3.1.1 only.
            (url, ProtocolChoice::V311, origin)
        }
    };
    let url: &'static BrokerUrl = Box::leak(Box::new(url));
    println!("embermq demo: broker {url}{origin}");
    println!("  watch it too: embermq sub {url} -t '{FILTER}' -v");
    let ids: Vec<&'static str> = (0..cmd.devices)
        .map(|i| &*Box::leak(format!("demo-{run_tag:04x}-{:02}", i + 1).into_boxed_str()))
        .collect();
    if !cmd.no_dashboard {
        start_dashboard(&cmd, url, &ids)?;
    }
    let password = match &cmd.broker {
        Some(_) => resolve_password(
            None,
            cmd.password_file.as_deref(),
            std::env::var_os(PASSWORD_ENV),
            url.password.as_deref(),
        )
        .map_err(|e| Failure::new(Exit::Usage, e))?,
        None => None,
    };
    let plan = Plan {
        url,
        protocol,
        options: TransportOptions::default(),
        password: password.map(|p| &*Box::leak(p.into_boxed_str())),
    };
    let prefix = format!("demo-{run_tag:04x}-");
    let stats = Rc::new(Stats {
        devices: ids.iter().map(|_| DeviceCounters::default()).collect(),
        ..Stats::default()
    });

    // The subscriber first, so it sees every reading.
    let sub_id: &'static str = Box::leak(format!("demo-{run_tag:04x}-watch").into_boxed_str());
    let (subscriber, connection) = plan.client(sub_id, Some(2))?;
    let handler = {
        let stats = stats.clone();
        move |event: Event<'_>| {
            if let Event::Message(m) = event {
                count_reading(&stats, &prefix, m.payload);
            }
        }
    };
    let mut sub_driver = spawn_local(connection.run(handler));
    let filters = [Subscription {
        filter: FILTER,
        options: SubscriptionOptions::qos(qos(cmd.qos)),
    }];
    let subscribed = subscriber.subscribe(&filters);
    tokio::select! {
        ended = &mut sub_driver => {
            return Err(match ended {
                Ok(Err(e)) => Failure::from_client(&e, url),
                _ => Failure::new(Exit::Failure, "the subscriber ended before subscribing"),
            });
        }
        result = subscribed => {
            let results = result.map_err(|e| Failure::new(Exit::Failure, format!("cannot subscribe: {e}")))?;
            if results.codes().iter().any(|c| c.0 >= 0x80) {
                return Err(Failure::new(Exit::Failure, format!("the broker refused the subscription to {FILTER}")));
            }
        }
    }

    // The devices.
    let interval = Duration::from_millis(cmd.interval_ms.max(1));
    let mut devices = Vec::new();
    for (index, id) in ids.iter().copied().enumerate() {
        let (client, connection) = plan.client(id, None)?;
        let booted = Instant::now();
        let handler = {
            let stats = stats.clone();
            move |event: Event<'_>| {
                let Some(counters) = stats.devices.get(index) else {
                    return;
                };
                match event {
                    Event::Connected { .. } => counters.connected.set(true),
                    Event::Disconnected { .. } => counters.connected.set(false),
                    Event::PublishComplete { result: Ok(()), .. } => {
                        counters.sent.set(counters.sent.get() + 1);
                    }
                    Event::Message(m) if m.topic.ends_with("/cmd") => {
                        answer_command(&client, id, counters, booted, &m);
                    }
                    _ => {}
                }
            }
        };
        let driver = spawn_local(connection.run(handler));
        let publisher = spawn_local(publish_readings(
            client,
            id,
            index,
            stats.clone(),
            interval,
            qos(cmd.qos),
        ));
        devices.push((client, driver, publisher));
    }

    let started = Instant::now();
    watch(&cmd, &stats, &ids, started).await;
    let elapsed = started.elapsed();

    // Stop publishing, let the outboxes drain, then disconnect politely.
    for (_, _, publisher) in &devices {
        publisher.abort();
    }
    let drain_until = Instant::now() + Duration::from_secs(3);
    while devices.iter().any(|(c, _, _)| c.outbox_len() > 0) && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (client, _, _) in &devices {
        client.stop();
    }
    for (_, driver, _) in devices {
        let _ = tokio::time::timeout(Duration::from_secs(3), driver).await;
    }
    // Whatever is still on its way to the subscriber.
    let settle_until = Instant::now() + Duration::from_secs(3);
    while stats.received.get() < stats.sent() && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    subscriber.stop();
    let _ = tokio::time::timeout(Duration::from_secs(3), sub_driver).await;

    let (sent, received) = (stats.sent(), stats.received.get());
    println!(
        "embermq demo: {:.1} s, {} devices, QoS {}: sent {sent}, received {received}, \
         duplicates {}, lost {}",
        elapsed.as_secs_f64(),
        ids.len(),
        cmd.qos,
        stats.duplicates.get(),
        sent.saturating_sub(received)
    );
    Ok(())
}

/// The subscriber's handler: counts one reading of this run's devices.
fn count_reading(stats: &Stats, prefix: &str, payload: &[u8]) {
    let Ok(r) = decode_readings(payload) else {
        return;
    };
    if !r.device_id.starts_with(prefix) {
        return;
    }
    let mut seen = stats.seen.borrow_mut();
    let device = seen.entry(r.device_id.to_owned()).or_default();
    if device.last_seq.is_some_and(|last| r.seq <= last) {
        device.duplicates += 1;
        stats.duplicates.set(stats.duplicates.get() + 1);
        return;
    }
    device.received += 1;
    device.last_seq = Some(r.seq);
    device.temperature_c = r.temperature_c;
    device.rssi_dbm = r.rssi_dbm;
    stats.received.set(stats.received.get() + 1);
}

/// Answers a command on `devices/<id>/cmd` (see the module doc).
fn answer_command(
    client: &DemoClient,
    id: &str,
    device: &DeviceCounters,
    booted: Instant,
    m: &embermq::session::Message<'_>,
) {
    let mut body = [0u8; 160];
    let encoded = match decode_command(m.payload) {
        Ok(command) => {
            let mut reply = CommandReply::ok(&command);
            match command {
                Command::Ping => reply.uptime_ms = Some(booted.elapsed().as_millis() as u64),
                Command::Led { on } => device.led.set(on),
                Command::Interval { secs } => {
                    device
                        .interval
                        .set(Some(Duration::from_secs(u64::from(secs))));
                }
                Command::Label { text } => *device.label.borrow_mut() = text.to_owned(),
                Command::Reboot => {
                    reply = CommandReply::failed("reboot", "a demo device does not reboot");
                }
                _ => reply = CommandReply::failed(command.name(), "not supported by the demo"),
            }
            encode_reply(&reply, &mut body)
        }
        Err(_) => encode_reply(&CommandReply::failed("?", "cannot decode"), &mut body),
    };
    let Ok(len) = encoded else {
        return;
    };
    let fallback = format!("devices/{id}/reply");
    let topic = m.properties.response_topic().unwrap_or(&fallback);
    let fields = PropertyFields {
        correlation_data: m.properties.correlation_data(),
        ..PropertyFields::default()
    };
    let mut msg = OutgoingMessage::new(topic, body.get(..len).unwrap_or(&[]), QoS::AtLeastOnce);
    msg.properties = Properties::from_fields(&fields);
    // A full outbox drops the reply; the sender sees no answer.
    let _ = client.try_publish(&msg, OverflowPolicy::RejectNew);
}

/// Serves the dashboard (for a WebSocket broker) and prints its address.
fn start_dashboard(cmd: &DemoCommand, url: &BrokerUrl, ids: &[&str]) -> Result<(), Failure> {
    if !matches!(url.scheme.as_str(), "ws" | "wss") {
        println!("  dashboard: off (the browser needs a ws:// or wss:// broker)");
        return Ok(());
    }
    let config = dashboard::PageConfig {
        url: url.to_string(),
        protocol_version: 4,
        devices: ids.iter().map(|s| (*s).to_owned()).collect(),
        qos: cmd.qos,
    };
    let addr = dashboard::serve(cmd.dashboard_port, &config)?;
    let page = format!("http://{addr}/");
    println!("  dashboard: {page}");
    if cmd.open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        if let Err(e) = std::process::Command::new(opener)
            .arg(&page)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            eprintln!("embermq demo: cannot open a browser ({opener}: {e}); open {page}");
        }
    }
    Ok(())
}

/// One device's publishing loop: a reading every `interval` (or what the
/// `interval` command set), after queueing its command subscription.
async fn publish_readings(
    client: DemoClient,
    id: &'static str,
    index: usize,
    stats: Rc<Stats>,
    interval: Duration,
    qos: QoS,
) {
    let topic = format!("devices/{id}/telemetry");
    let filter = format!("devices/{id}/cmd");
    let subscription = [Subscription {
        filter: &filter,
        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
    }];
    {
        // The first poll queues the request; its SUBACK is an event.
        let subscribe = core::pin::pin!(client.subscribe(&subscription));
        let _ = futures_poll_once(subscribe);
    }
    let booted = Instant::now();
    for seq in 0u32.. {
        let wait = stats
            .devices
            .get(index)
            .and_then(|d| d.interval.get())
            .unwrap_or(interval);
        tokio::time::sleep(wait).await;
        let uptime_ms = booted.elapsed().as_millis() as u64;
        let phase = uptime_ms as f32 / 10_000.0 + index as f32;
        let readings = Readings {
            device_id: id,
            seq,
            sent_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            uptime_ms,
            temperature_c: Some(21.0 + 2.5 * phase.sin()),
            counter: seq / 3,
            rssi_dbm: Some(-48 - (index % 30) as i16),
            status: Some("ok"),
        };
        // Serialized straight into the outbox (serde-json-core).
        if client.publish_json(&topic, &readings, qos).await.is_err() {
            return;
        }
    }
}

/// Polls `f` once (queueing what its first poll queues) and drops it.
fn futures_poll_once<F: core::future::Future>(
    f: core::pin::Pin<&mut F>,
) -> core::task::Poll<F::Output> {
    f.poll(&mut core::task::Context::from_waker(
        core::task::Waker::noop(),
    ))
}

/// Shows the statistics until Ctrl-C or `--duration`.
async fn watch(cmd: &DemoCommand, stats: &Stats, ids: &[&str], started: Instant) {
    let end = async {
        match cmd.duration {
            Some(secs) => tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let mut end = core::pin::pin!(end);
    let live = std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner:.green} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let header = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
    let lines: Vec<ProgressBar> = ids
        .iter()
        .take(SHOWN_DEVICES)
        .map(|_| multi.add(ProgressBar::new_spinner().with_style(style.clone())))
        .collect();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // Rates over the last second: (when, sent, received) samples.
    let mut samples: VecDeque<(Instant, u64, u64)> = VecDeque::new();
    let mut last_plain = Instant::now();
    loop {
        tokio::select! {
            () = &mut end => break,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let (sent, received) = (stats.sent(), stats.received.get());
        samples.push_back((now, sent, received));
        while samples.len() > 5 {
            samples.pop_front();
        }
        let (out_rate, in_rate) = match samples.front() {
            Some((t, s, r)) if now > *t => {
                let dt = (now - *t).as_secs_f64();
                ((sent - s) as f64 / dt, (received - r) as f64 / dt)
            }
            _ => (0.0, 0.0),
        };
        let summary = format!(
            "{:>5.1}s  out {out_rate:>7.1} msg/s  in {in_rate:>7.1} msg/s  devices {}/{}  \
             sent {sent}  received {received}  (Ctrl-C to stop)",
            started.elapsed().as_secs_f64(),
            stats.connected(),
            ids.len(),
        );
        if live {
            header.set_message(summary);
            header.tick();
            let seen = stats.seen.borrow();
            for (line, id) in lines.iter().zip(ids) {
                let d = seen.get(*id).cloned().unwrap_or_default();
                line.set_message(format!(
                    "{id}  readings {:>6}  seq {:>6}  temp {:>6}  rssi {:>4}",
                    d.received,
                    d.last_seq.map_or("-".into(), |s| s.to_string()),
                    d.temperature_c.map_or("-".into(), |t| format!("{t:.2}")),
                    d.rssi_dbm.map_or("-".into(), |r| r.to_string()),
                ));
            }
            if ids.len() > SHOWN_DEVICES {
                header.set_prefix(format!("and {} more devices", ids.len() - SHOWN_DEVICES));
            }
        } else if now - last_plain >= Duration::from_secs(1) {
            last_plain = now;
            println!("{summary}");
        }
    }
    let _ = multi.clear();
}
