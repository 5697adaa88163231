//! Fleet benchmark (not a test): N devices over WebSocket to one local
//! mosquitto, each publishing one QoS 1 reading per second, run twice in
//! the same invocation:
//!
//! - embermq: `embermq sim --no-checker` (the device client, one
//!   current-thread runtime);
//! - rumqttc 0.25.1 (features `websocket`, `use-rustls-no-provider`): this
//!   same bench binary started again as a separate process in peer mode, N
//!   `AsyncClient` + `EventLoop` pairs on one current-thread runtime, each
//!   publishing the same size of payload at the same rate and QoS.
//!
//! Two links: `ws://` to mosquitto's plain WebSocket listener, and `wss://`
//! to a mosquitto with a WebSocket listener over TLS, presenting a
//! `localhost` certificate signed by a CA made for the run
//! (`embermq_tests::tls`); both fleets verify it against that CA, through
//! one shared rustls configuration (ring provider) each.
//!
//! Each fleet is its own process, so its peak RSS (VmHWM) and CPU time
//! (getrusage) are its own. Reported per fleet: (peak RSS − RSS before the
//! clients started) / N, and CPU seconds / messages published; then the
//! ratios rumqttc : embermq.
//!
//! ```text
//! cargo bench -p embermq-cli --bench fleet               # ws and wss, N = 1000
//! FLEET_SIZES=1000,10000 FLEET_SECS=30 cargo bench -p embermq-cli --bench fleet
//! FLEET_PEERS=embermq FLEET_SIZES=10000 cargo bench ...  # one side only
//! FLEET_LINKS=wss FLEET_WSS_SIZES=2000 cargo bench ...   # wss only, N = 2000
//! ```
//!
//! `FLEET_SIZES` sizes the `ws` fleets, `FLEET_WSS_SIZES` (default: the
//! same) the `wss` fleets; `FLEET_LINKS` picks the links (`ws,wss`).
//!
//! The ramp is 1000 connections per second for both; the measured window
//! is the whole run (ramp + FLEET_SECS of publishing).

use std::path::{Path, PathBuf};
use std::process::Command;
extern crate alloc;

use core::time::Duration;
use std::time::Instant;

use embermq::transport::RustlsOptions;
use embermq_tests::peers::Mosquitto;
use embermq_tests::tls::{ClientAuth, ServerCert, TestPki, TlsMosquitto};
use rumqttc::{AsyncClient, MqttOptions, QoS, TlsConfiguration, Transport};
use serde_json::Value;

/// A fleet's measured figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    devices: u64,
    published: u64,
    cpu_secs: f64,
    peak_kib: u64,
    baseline_kib: u64,
    /// embermq over TLS: the resident bytes of the devices' TLS buffers.
    tls_resident: u64,
    /// embermq: the size of a device's task future and of its client
    /// state (part of the future), bytes.
    future_bytes: u64,
    client_state_bytes: u64,
}

impl Figures {
    fn rss_per_device(&self) -> f64 {
        (self.peak_kib.saturating_sub(self.baseline_kib) * 1024) as f64 / self.devices as f64
    }
    fn cpu_per_message_us(&self) -> f64 {
        self.cpu_secs * 1e6 / self.published.max(1) as f64
    }
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_secs() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The payload both fleets send: the size of the simulator's default
/// reading (device, seq, qos, ts_us, temp_c, count).
const PAYLOAD_LEN: usize = 96;

/// Peer mode: runs N rumqttc clients and prints their figures as JSON;
/// over `wss://localhost` verifying against the CA in `cafile` if given.
fn rumqttc_fleet(port: u16, devices: u64, secs: u64, cafile: Option<&Path>) {
    // One configuration for the whole fleet, as the simulator shares one.
    let tls = cafile.map(|path| {
        RustlsOptions::ca_file(path)
            .and_then(|o| o.client_config())
            .expect("the CA file makes a rustls configuration")
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let published = alloc::rc::Rc::new(core::cell::Cell::new(0u64));
    let baseline = status_kib("VmRSS:");
    let start = Instant::now();
    let ramp = Duration::from_secs_f64(devices as f64 / 1000.0);
    let end = start + ramp + Duration::from_secs(secs) + Duration::from_millis(500);
    local.block_on(&runtime, async {
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..devices {
            let due = start + Duration::from_secs_f64(n as f64 / 1000.0);
            tokio::time::sleep_until(due.into()).await;
            let mut options = match &tls {
                Some(config) => {
                    let mut o = MqttOptions::new(
                        format!("rq-{n:05}"),
                        format!("wss://localhost:{port}/mqtt"),
                        port,
                    );
                    o.set_transport(Transport::wss_with_config(TlsConfiguration::Rustls(
                        config.clone(),
                    )));
                    o
                }
                None => {
                    let mut o = MqttOptions::new(
                        format!("rq-{n:05}"),
                        format!("ws://127.0.0.1:{port}/mqtt"),
                        port,
                    );
                    o.set_transport(Transport::Ws);
                    o
                }
            };
            options.set_keep_alive(Duration::from_secs(60));
            let (client, mut events) = AsyncClient::new(options, 10);
            let published = published.clone();
            tasks.spawn_local(async move {
                let poll = async {
                    loop {
                        if events.poll().await.is_err() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                };
                let publish = async {
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    let topic = format!("rq/0/rq-{n:05}/telemetry");
                    loop {
                        tick.tick().await;
                        if Instant::now() >= end {
                            break;
                        }
                        let payload = vec![b'x'; PAYLOAD_LEN];
                        if client
                            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
                            .await
                            .is_ok()
                        {
                            published.set(published.get() + 1);
                        }
                    }
                    let _ = client.disconnect().await;
                };
                tokio::select! {
                    () = poll => {}
                    () = publish => {}
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let f = serde_json::json!({
        "devices": devices,
        "published": published.get(),
        "cpu_secs": cpu_secs(),
        "peak_kib": status_kib("VmHWM:"),
        "baseline_kib": baseline,
    });
    println!("{f}");
}

fn figures(v: &Value, peer: bool) -> Figures {
    let u = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    if peer {
        Figures {
            devices: u("/devices"),
            published: u("/published"),
            cpu_secs: f("/cpu_secs"),
            peak_kib: u("/peak_kib"),
            baseline_kib: u("/baseline_kib"),
            tls_resident: 0,
            future_bytes: 0,
            client_state_bytes: 0,
        }
    } else {
        Figures {
            devices: u("/devices"),
            published: u("/published/qos1"),
            cpu_secs: f("/host/cpu_secs"),
            peak_kib: u("/host/peak_rss_kib"),
            baseline_kib: u("/host/baseline_rss_kib"),
            tls_resident: u("/host/tls_buffers_resident_bytes"),
            future_bytes: u("/host/device_future_bytes"),
            client_state_bytes: u("/host/client_state_bytes"),
        }
    }
}

/// Where a fleet connects: mosquitto's `ws://` port, or its `wss://` port
/// and the CA file that verifies it.
#[derive(Debug, Clone, Copy)]
struct Link<'a> {
    port: u16,
    cafile: Option<&'a Path>,
}

fn run_embermq(link: Link<'_>, devices: u64, secs: u64) -> Figures {
    let report = std::env::temp_dir().join(format!("embermq-fleet-{}.json", std::process::id()));
    let exe = env!("CARGO_BIN_EXE_embermq");
    let out = Command::new(exe)
        .args([
            "sim",
            "--quiet",
            "--no-checker",
            "--no-retain-state",
            "--no-will",
        ])
        .args(["--devices", &devices.to_string()])
        .args([
            "--broker",
            &match link.cafile {
                Some(_) => format!("wss://localhost:{}/mqtt", link.port),
                None => format!("ws://127.0.0.1:{}/mqtt", link.port),
            },
        ])
        .args(
            link.cafile
                .iter()
                .flat_map(|ca| [Path::new("--cafile"), ca]),
        )
        .args([
            "--duration",
            &secs.to_string(),
            "--ramp",
            "1000",
            "--qos",
            "1",
        ])
        .args(["--payload-size", &PAYLOAD_LEN.to_string()])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {exe}: {e}"));
    let text = std::fs::read(&report)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let _ = std::fs::remove_file(&report);
    figures(&serde_json::from_slice(&text).expect("report JSON"), false)
}

fn run_rumqttc(link: Link<'_>, devices: u64, secs: u64) -> Figures {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args([
            "--peer-rumqttc",
            &link.port.to_string(),
            &devices.to_string(),
            &secs.to_string(),
        ])
        .args(link.cafile)
        .output()
        .expect("peer runs");
    let line = String::from_utf8_lossy(&out.stdout);
    let json = line.lines().last().unwrap_or("{}");
    figures(&serde_json::from_str(json).expect("peer JSON"), true)
}

fn print(name: &str, f: &Figures) {
    println!(
        "  {name:<8} {:>6} devices {:>8} msgs  RSS/device {:>8.0} B  (peak {} KiB, before {} KiB)  CPU/msg {:>6.1} µs ({:.2} s)",
        f.devices,
        f.published,
        f.rss_per_device(),
        f.peak_kib,
        f.baseline_kib,
        f.cpu_per_message_us(),
        f.cpu_secs
    );
    if f.future_bytes > 0 {
        println!(
            "  {name:<8} device future {} B, of which client state {} B",
            f.future_bytes, f.client_state_bytes
        );
    }
    if f.tls_resident > 0 {
        println!(
            "  {name:<8} TLS buffers resident {:>8.0} B/device",
            f.tls_resident as f64 / f.devices.max(1) as f64
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--peer-rumqttc") {
        let get = |k: usize| {
            args.get(i + k)
                .and_then(|v| v.parse().ok())
                .expect("peer args")
        };
        let cafile = args.get(i + 4).map(PathBuf::from);
        rumqttc_fleet(get(1) as u16, get(2), get(3), cafile.as_deref());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        // `cargo bench -- --list` from tooling: nothing to list.
        return;
    }
    raise_fd_limit();
    let sizes = |var: &str, default: &str| -> Vec<u64> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    };
    let ws_sizes = sizes("FLEET_SIZES", "1000");
    let wss_sizes = sizes(
        "FLEET_WSS_SIZES",
        &std::env::var("FLEET_SIZES").unwrap_or_else(|_| "1000".into()),
    );
    let secs: u64 = std::env::var("FLEET_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let peers = std::env::var("FLEET_PEERS").unwrap_or_else(|_| "embermq,rumqttc".into());
    let links = std::env::var("FLEET_LINKS").unwrap_or_else(|_| "ws,wss".into());
    let links: Vec<&str> = links.split(',').map(str::trim).collect();
    if links.contains(&"ws") {
        for &n in &ws_sizes {
            println!(
                "fleet of {n} over WebSocket (ws://) to mosquitto, QoS 1 every second, {secs} s:"
            );
            compare(
                &peers,
                n,
                secs,
                || {
                    let broker = Mosquitto::start().expect("mosquitto starts");
                    let port = broker.ws_port;
                    (broker, port)
                },
                None,
            );
        }
    }
    if links.contains(&"wss") {
        let pki = TestPki::generate().expect("test certificates");
        let cafile =
            std::env::temp_dir().join(format!("embermq-fleet-ca-{}.pem", std::process::id()));
        std::fs::write(&cafile, &pki.ca.cert_pem).expect("CA file written");
        for &n in &wss_sizes {
            println!(
                "fleet of {n} over WebSocket over TLS (wss://) to mosquitto, QoS 1 every second, {secs} s:"
            );
            compare(
                &peers,
                n,
                secs,
                || {
                    let broker = TlsMosquitto::start(&pki, ServerCert::Valid, ClientAuth::None)
                        .expect("mosquitto with TLS starts");
                    let port = broker.wss_port;
                    (broker, port)
                },
                Some(&cafile),
            );
        }
        let _ = std::fs::remove_file(&cafile);
    }
}

/// Runs each of `peers` against its own fresh broker from `start` and
/// prints the figures and ratios.
fn compare<B>(peers: &str, n: u64, secs: u64, start: impl Fn() -> (B, u16), cafile: Option<&Path>) {
    let run = |name: &str, fleet: fn(Link<'_>, u64, u64) -> Figures| {
        peers.contains(name).then(|| {
            let (broker, port) = start();
            let f = fleet(Link { port, cafile }, n, secs);
            drop(broker);
            print(name, &f);
            f
        })
    };
    let e = run("embermq", run_embermq);
    let r = run("rumqttc", run_rumqttc);
    if let (Some(e), Some(r)) = (e, r) {
        println!(
            "  ratio rumqttc : embermq  RSS/device {:.1}x  CPU/msg {:.2}x",
            r.rss_per_device() / e.rss_per_device().max(1.0),
            r.cpu_per_message_us() / e.cpu_per_message_us().max(1e-9)
        );
    }
}
