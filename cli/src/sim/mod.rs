//! `embermq sim`: the fleet simulator. Thousands of simulated devices,
//! each a task running the very `embermq` client the boards run, publish
//! JSON telemetry to a broker while a built-in checker subscriber accounts
//! for loss, duplicates, reordering and latency; `embermq sim merge`
//! combines the reports of several shards. See `docs/simulator.md`.
//!
//! - `profile`: the telemetry profile (TOML file and flag values);
//! - `settings`: the flags and the resolved settings of a run;
//! - `html`: the report as a self-contained HTML page with SVG charts;
//! - `link`: broker URLs (`mqtt`, `mqtts`, `ws`, `wss`), the shared-config
//!   TLS layer and the link-cutting connector wrapper;
//! - `fleet`: the device tasks;
//! - `checker`: the checker subscriber;
//! - `metrics`: the Prometheus exposition of `--metrics`;
//! - `report`: the report, its JSON form and the merge;
//! - `series`: the run over time in a fixed number of buckets;
//! - `verdict`: why a report is not clean, where, and the likely cause.
//!
//! One process runs one shard on a current-thread tokio runtime: the
//! devices share one thread (no locks: the client state uses
//! `NoopRawMutex`), which keeps per-device memory at the client's own
//! footprint. Not here: extra WebSocket upgrade headers (`pub`/`sub`
//! have `--header`).

use core::cell::RefCell;
use core::time::Duration;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use tokio::time::Instant;

mod checker;
mod fleet;
mod html;
mod link;
mod metrics;
mod profile;
mod report;
mod series;
mod settings;
mod tls_slots;
mod verdict;

use checker::{CheckerControl, Findings};
use fleet::{DeviceSlot, Fleet, Stats};
use report::{CheckerReport, Distribution, HostReport, PerQos, Report, ShardInfo};
use settings::{RunArgs, Settings};

/// Options of `embermq sim`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SimCommand {
    #[command(subcommand)]
    action: Option<SimAction>,
    #[command(flatten)]
    run: RunArgs,
}

/// Subcommands of `embermq sim`.
#[derive(Subcommand, Debug)]
enum SimAction {
    /// Combine the JSON reports of several shards into one.
    Merge(MergeArgs),
}

/// Options of `embermq sim merge`.
#[derive(Args, Debug)]
struct MergeArgs {
    /// Shard reports (from --report).
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Where to write the merged report (printed either way).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write the merged report as a self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// Runs `embermq sim`: 0 when the run (or merge) is clean, 1 when the
/// report shows loss, duplicates at QoS 2 or errors, 2 when it could not
/// run.
pub(crate) fn run(cmd: SimCommand) -> ExitCode {
    match cmd.action {
        Some(SimAction::Merge(m)) => merge(&m),
        None => simulate(&cmd.run),
    }
}

fn merge(args: &MergeArgs) -> ExitCode {
    let reports: Result<Vec<Report>, String> =
        args.reports.iter().map(|p| Report::load(p)).collect();
    let merged = reports.and_then(|r| Report::merge(&r));
    let merged = match merged {
        Ok(m) => m,
        Err(e) => {
            eprintln!("embermq sim merge: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{merged}");
    if let Some(out) = &args.output
        && let Err(e) = merged.save(out)
    {
        eprintln!("embermq sim merge: {e}");
        return ExitCode::from(2);
    }
    if let Some(out) = &args.html
        && let Err(e) = html::save(&merged, out)
    {
        eprintln!("embermq sim merge: {e}");
        return ExitCode::from(2);
    }
    verdict(&merged)
}

fn verdict(report: &Report) -> ExitCode {
    if report.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn simulate(args: &RunArgs) -> ExitCode {
    let settings = match Settings::resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("embermq sim: {e}");
            return ExitCode::from(2);
        }
    };
    raise_fd_limit(settings.local_devices() as u64 + 256);
    if let Some(addr) = args.metrics
        && let Err(e) = metrics::start(addr, settings.shard.index)
    {
        eprintln!("embermq sim: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("embermq sim: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let local = tokio::task::LocalSet::new();
    let with_metrics = args.metrics.is_some();
    let report = local.block_on(&runtime, simulate_async(settings, args.quiet, with_metrics));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("embermq sim: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{report}");
    if let Some(path) = &args.report
        && let Err(e) = report.save(path)
    {
        eprintln!("embermq sim: {e}");
        return ExitCode::from(2);
    }
    if let Some(path) = &args.html
        && let Err(e) = html::save(&report, path)
    {
        eprintln!("embermq sim: {e}");
        return ExitCode::from(2);
    }
    if let Some(linger) = args.metrics_linger.filter(|l| *l > 0.0) {
        std::thread::sleep(Duration::from_secs_f64(linger.min(3600.0)));
    }
    verdict(&report)
}

async fn simulate_async(
    settings: Settings,
    quiet: bool,
    with_metrics: bool,
) -> Result<Report, String> {
    let devices = settings.local_devices();
    let t0 = Instant::now();
    // The end of publishing: after the ramp (and the checker's subscribe).
    let end = t0 + settings.ramp_time() + settings.duration + Duration::from_millis(500);
    let stats = Stats::default();
    *stats.connect_us.borrow_mut() = Some(checker::new_histogram());
    let tls_slots = if settings.broker.tls {
        let b = &settings.buffers;
        Some(
            tls_slots::TlsSlots::new(devices, b.tls_tx, b.tls_rx)
                .map_err(|e| format!("cannot map the devices' TLS buffers: {e}"))?,
        )
    } else {
        None
    };
    let fleet: &'static Fleet = Box::leak(Box::new(Fleet {
        tls_slots,
        slots: (0..devices).map(|_| DeviceSlot::new()).collect(),
        settings,
        stats,
        clock: embermq::clock::TokioClock::new(),
        t0,
        end,
        metrics: with_metrics.then(metrics::Exported::new),
    }));
    let s = &fleet.settings;
    let findings: &'static RefCell<Findings> =
        Box::leak(Box::new(RefCell::new(Findings::new(if s.checker {
            devices
        } else {
            0
        }))));
    let checkers = if s.checker { s.checkers } else { 0 };
    let controls: &'static [CheckerControl] = Box::leak(
        (0..checkers)
            .map(|_| CheckerControl {
                ready: embassy_sync::signal::Signal::new(),
                stop: embassy_sync::signal::Signal::new(),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let mut checker_tasks = Vec::new();
    for (k, control) in controls.iter().enumerate() {
        checker_tasks.push(tokio::task::spawn_local(checker::run(
            fleet, findings, control, k, checkers,
        )));
    }
    for control in controls {
        let why = match tokio::time::timeout(Duration::from_secs(20), control.ready.wait()).await {
            Ok(Ok(())) => continue,
            Ok(Err(why)) => why,
            Err(_) => "no acknowledgement within 20 s (the broker did not answer, or the \
                       connection did not come up)"
                .to_owned(),
        };
        return Err(format!(
            "the checker could not subscribe at {}: {why}",
            s.checker_broker
        ));
    }
    let baseline_kib = status_kib("VmRSS:").unwrap_or(0);
    let series: &'static RefCell<series::Series> =
        Box::leak(Box::new(RefCell::new(series::Series::default())));
    // The last sample: when (seconds into the run) and the counters.
    let last_sample: &'static RefCell<(f64, series::Snapshot)> = Box::leak(Box::new(RefCell::new(
        (t0.elapsed().as_secs_f64(), snapshot(fleet)),
    )));
    let sample = move || {
        let now = snapshot(fleet);
        let at = t0.elapsed().as_secs_f64();
        let mut f = findings.borrow_mut();
        let mut last = last_sample.borrow_mut();
        series
            .borrow_mut()
            .record(last.0, at, &last.1, &now, &mut f.latency_window);
        *last = (at, now);
    };
    let sampler = tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sample();
        }
    });
    let exporter = fleet.metrics.as_ref().map(|m| {
        tokio::task::spawn_local(async move {
            loop {
                m.sync(fleet, findings.borrow().duplicates);
                tokio::time::sleep(metrics::SYNC_EVERY).await;
            }
        })
    });
    let live = if quiet || !std::io::stderr().is_terminal() {
        None
    } else {
        Some(tokio::task::spawn_local(live_view(fleet)))
    };
    // Ramp: spawn in small batches on a 10 ms tick.
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut spawned = 0usize;
    let mut future_bytes = 0usize;
    while spawned < devices {
        let due = match s.ramp {
            Some(rate) => ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(devices),
            None => devices,
        };
        while spawned < due {
            // One future type per base link (see `fleet::BaseLink`).
            if s.broker.tls {
                let device = fleet::device::<fleet::TlsLink>(fleet, spawned);
                future_bytes = core::mem::size_of_val(&device);
                tasks.spawn_local(device);
            } else {
                let device = fleet::device::<fleet::PlainLink>(fleet, spawned);
                future_bytes = core::mem::size_of_val(&device);
                tasks.spawn_local(device);
            }
            spawned += 1;
        }
        if spawned < devices {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    while tasks.join_next().await.is_some() {}
    // Let the checker catch up: until every queued reading arrived, or
    // nothing new arrived for two seconds, within the drain time.
    if !checker_tasks.is_empty() {
        let give_up = Instant::now() + s.drain.max(Duration::from_secs(2));
        let mut last = (fleet.stats.received.get(), Instant::now());
        loop {
            let published: u64 = fleet
                .slots
                .iter()
                .map(|d| u64::from(d.published.get()))
                .sum();
            let unique: u64 = findings
                .borrow()
                .tracks
                .iter()
                .map(|t| u64::from(t.unique))
                .sum();
            let now = Instant::now();
            let received = fleet.stats.received.get();
            if received != last.0 {
                last = (received, now);
            }
            // Replies to the last commands are on their way too.
            let replies_due = fleet.stats.replies_received.get() < fleet.stats.replies_sent.get();
            if (unique >= published && !replies_due)
                || now >= give_up
                || now.duration_since(last.1) > Duration::from_secs(2)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for control in controls {
            control.stop.signal(());
        }
        for task in checker_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
    if let Some(live) = live {
        live.abort();
        let _ = live.await;
    }
    if let Some(exporter) = exporter {
        exporter.abort();
        let _ = exporter.await;
    }
    sampler.abort();
    let _ = sampler.await;
    sample();
    let wall = t0.elapsed();
    let mut report = build_report(fleet, findings, baseline_kib, wall);
    report.host.device_future_bytes = future_bytes as u64;
    report.host.client_state_bytes = fleet::CLIENT_STATE_BYTES as u64;
    report.host.tls_buffers_resident_bytes = fleet
        .tls_slots
        .as_ref()
        .and_then(tls_slots::TlsSlots::resident_bytes)
        .unwrap_or(0);
    report.series = Some(series.take());
    if let Some(m) = &fleet.metrics {
        m.finish(&report);
    }
    Ok(report)
}

fn build_report(
    fleet: &Fleet,
    findings: &RefCell<Findings>,
    baseline_kib: u64,
    wall: Duration,
) -> Report {
    let s = &fleet.settings;
    let st = &fleet.stats;
    let per_qos = |cells: &[core::cell::Cell<u64>; 3]| {
        PerQos::from_array([cells[0].get(), cells[1].get(), cells[2].get()])
    };
    let published = per_qos(&st.published);
    let checker = s.checker.then(|| {
        let f = findings.borrow();
        let unique = PerQos::from_array(f.unique);
        let mut k = CheckerReport {
            received: st.received.get(),
            unique,
            lost: PerQos {
                qos0: published.qos0.saturating_sub(unique.qos0),
                qos1: published.qos1.saturating_sub(unique.qos1),
                qos2: published.qos2.saturating_sub(unique.qos2),
            },
            duplicates: PerQos::from_array(f.duplicates),
            unattributed: f.unattributed,
            latency_us: Distribution::of(&f.latency_us).unwrap_or_default(),
            ..CheckerReport::default()
        };
        for (i, (t, d)) in f.tracks.iter().zip(&fleet.slots).enumerate() {
            k.reordered += u64::from(t.reordered);
            let (published, acked) = (d.published.get(), d.acknowledged.get());
            let lost_here = published.saturating_sub(t.unique);
            // What the broker never acknowledged counts first; the rest of
            // the loss had been acknowledged (exact when every reading
            // that arrived had been acknowledged, as it is but for a link
            // cut between delivery and PUBACK).
            let never_acked = published.saturating_sub(acked).min(lost_here);
            k.lost_never_acknowledged += u64::from(never_acked);
            k.lost_acknowledged += u64::from(lost_here - never_acked);
            let lost = published > t.unique;
            k.devices_with_loss += u64::from(lost);
            k.devices_with_duplicates += u64::from(t.duplicates > 0);
            if (lost || t.duplicates > 0) && k.worst_devices.len() < 20 {
                let id = s.ids.format(s.range.start + i as u32);
                k.worst_devices.push((
                    id.as_str().to_owned(),
                    u64::from(d.published.get()),
                    u64::from(t.unique),
                    u64::from(t.duplicates),
                ));
            }
        }
        k
    });
    let cpu_secs = cpu_secs();
    let peak = status_kib("VmHWM:").unwrap_or(0);
    let devices = s.local_devices() as u64;
    let mut report = Report {
        format: report::FORMAT,
        broker: s.broker.to_string(),
        protocol: s.protocol_name.to_owned(),
        devices,
        shards: vec![ShardInfo {
            index: s.shard.index,
            count: s.shard.count,
            first: s.range.start,
            end: s.range.end,
        }],
        duration_secs: s.duration.as_secs_f64(),
        wall_secs: wall.as_secs_f64(),
        published,
        acknowledged: per_qos(&st.acknowledged),
        not_queued: st.not_queued.get(),
        connects: st.connects.get(),
        reconnects: st.reconnects.get(),
        connected_peak: st.connected_peak.get(),
        cuts: st.cuts.get(),
        commands_sent: st.commands_sent.get(),
        replies_sent: st.replies_sent.get(),
        replies_received: st.replies_received.get(),
        connect_us: st
            .connect_us
            .borrow()
            .as_ref()
            .and_then(|h| Distribution::of(h).ok())
            .unwrap_or_default(),
        errors: st
            .errors
            .borrow()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.count))
            .collect(),
        error_first: st
            .errors
            .borrow()
            .iter()
            .filter_map(|(k, v)| Some(((*k).to_owned(), v.first.clone()?)))
            .collect(),
        checker,
        host: HostReport {
            cpu_secs,
            peak_rss_kib: peak,
            baseline_rss_kib: baseline_kib,
            rss_per_device_bytes: (peak.saturating_sub(baseline_kib) * 1024)
                .checked_div(devices)
                .unwrap_or(0),
            cpu_per_message_us: if published.total() > 0 {
                cpu_secs * 1e6 / published.total() as f64
            } else {
                0.0
            },
            device_future_bytes: 0,
            client_state_bytes: 0,
            tls_buffers_resident_bytes: 0,
        },
        clean: false,
        reasons: Vec::new(),
        settings: s.describe(),
        series: None,
    };
    report.judge_now();
    report
}

/// The fleet's cumulative counters now (for the series).
fn snapshot(fleet: &Fleet) -> series::Snapshot {
    let st = &fleet.stats;
    let total = |c: &[core::cell::Cell<u64>; 3]| c.iter().map(core::cell::Cell::get).sum::<u64>();
    series::Snapshot {
        published: total(&st.published),
        acknowledged: total(&st.acknowledged),
        received: st.received.get(),
        connects: st.connects.get(),
        connected: st.connected.get(),
        errors: st
            .errors
            .borrow()
            .iter()
            .map(|(k, t)| (*k, t.count))
            .collect(),
    }
}

/// The live view: connected / target, messages per second out and in,
/// acknowledgements pending, reconnects, errors.
async fn live_view(fleet: &'static Fleet) {
    let st = &fleet.stats;
    let bar = indicatif::ProgressBar::new(fleet.settings.local_devices() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} connected {pos}/{len} {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let total = |c: &[core::cell::Cell<u64>; 3]| c.iter().map(core::cell::Cell::get).sum::<u64>();
    let mut last = (total(&st.published), st.received.get(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = Instant::now();
        let (out, inn) = (total(&st.published), st.received.get());
        let dt = now.duration_since(last.2).as_secs_f64().max(1e-3);
        let errors = st.error_total();
        bar.set_position(st.connected.get());
        bar.set_message(format!(
            "| out {:.0}/s in {:.0}/s | pending acks {} | reconnects {} | cuts {} | errors {}",
            (out - last.0) as f64 / dt,
            (inn - last.1) as f64 / dt,
            st.pending(),
            st.reconnects.get(),
            st.cuts.get(),
            errors
        ));
        last = (out, inn, now);
    }
}

/// A `kB` line of /proc/self/status (VmRSS:, VmHWM:), in KiB.
fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds of this process.
fn cpu_secs() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// Raises the soft open-file limit to `want` (up to the hard limit).
fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < want
    {
        let new = want.min(hard);
        if setrlimit(Resource::RLIMIT_NOFILE, new, hard).is_err() || new < want {
            eprintln!(
                "embermq sim: open-file limit {new} is below the {want} needed; raise it (ulimit -n)"
            );
        }
    }
}
