//! A durable outbox: QoS 1 readings that survive a kill.
//!
//! The client's outbox is backed by a [`FileStore`] (an append-only log
//! with a CRC per entry, `fsync`ed on every persist). `Client::publish_json`
//! returns only once the message is on disk, so a message whose
//! `persisted seq N` line was printed is never lost: if the process is
//! killed before the broker acknowledged it, the next start replays it
//! from the file and sends it again (with DUP, under the packet identifier
//! it had; QoS 1 may then deliver it twice, never zero times).
//!
//! ```text
//! # broker down: readings pile up on disk; kill it with Ctrl-C or kill -9
//! cargo run -p embermq-examples --bin durable-outbox -- --store /tmp/outbox.log --count 5 --broker mqtt://127.0.0.1:1
//! # broker up: the stored readings go out first, then the new ones
//! cargo run -p embermq-examples --bin durable-outbox -- --store /tmp/outbox.log --count 0 --broker mqtt://127.0.0.1:1883
//! ```
//!
//! Exits 0 once connected and the outbox (stored and new messages) is
//! empty, i.e. everything was acknowledged by the broker.

use core::cell::Cell;
use core::time::Duration;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use embermq::client::{Backoff, ClientConfig, ClientState, Connection, Event, NoopRawMutex};
use embermq::clock::TokioClock;
use embermq::codec::QoS;
use embermq::session::{ProtocolChoice, SessionConfig};
use embermq::store::FileStore;
use embermq_board_app::model::Readings;
use embermq_examples::{DEFAULT_BROKER, connector, drive, parse_broker};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Publish readings through a file-backed outbox.
#[derive(Parser, Debug)]
struct Args {
    /// Broker URL (mqtt:// or ws://).
    #[arg(long, default_value = DEFAULT_BROKER)]
    broker: String,
    /// The outbox log file (created if missing).
    #[arg(long)]
    store: PathBuf,
    /// New readings to publish in this run (0: only deliver stored ones).
    #[arg(long, default_value_t = 5)]
    count: u32,
    /// Device id (client id and topic level).
    #[arg(long, default_value = "durable-1")]
    device: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("durable-outbox: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let broker = parse_broker(&args.broker)?;
    let store = FileStore::open(&args.store)
        .map_err(|e| format!("cannot open {}: {e}", args.store.display()))?;
    let mut config = SessionConfig::new(&args.device);
    config.protocol = ProtocolChoice::V5WithFallback;
    config.max_incoming_packet_size = 2048;
    // The outbox bounds what can wait for the broker: 16 KiB of readings.
    let mut outbox = vec![0u8; 16 * 1024];
    let state: ClientState<'_, NoopRawMutex, 8, 2, 128, 0, FileStore> =
        ClientState::with_store(config, &mut outbox, store);
    let client = state.client();
    let connector = connector(&broker)?;
    let (mut rx, mut tx) = ([0u8; 2048], [0u8; 2048]);
    let connected = Cell::new(false);
    let client_config = ClientConfig {
        // Keep trying while the broker is away: that is the point.
        backoff: Backoff {
            base: embermq::time::Duration::from_millis(100),
            cap: embermq::time::Duration::from_secs(2),
            max_attempts: None,
        },
        ..ClientConfig::DEFAULT
    };
    let driver = Connection::new(
        &state,
        connector,
        TokioClock::new(),
        StdRng::from_entropy(),
        &mut rx,
        &mut tx,
        client_config,
    )
    .run(|event: Event<'_>| match event {
        Event::Connected { .. } => {
            connected.set(true);
            eprintln!("connected to {broker}");
        }
        Event::Reconnecting { attempt: 1, .. } => {
            eprintln!("{broker} unreachable; retrying (readings stay on disk)");
        }
        _ => {}
    });

    let topic = format!("devices/{}/telemetry", args.device);
    let booted = Instant::now();
    let work = async {
        for seq in 0..args.count {
            let readings = Readings {
                device_id: &args.device,
                seq,
                sent_at_ms: 0,
                uptime_ms: booted.elapsed().as_millis() as u64,
                temperature_c: Some(20.0),
                counter: seq,
                rssi_dbm: None,
                status: None,
            };
            // Returns once the message is in the outbox AND in the file.
            client
                .publish_json(&topic, &readings, QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string())?;
            println!("persisted seq {seq}");
            let _ = std::io::stdout().flush();
        }
        // Stored messages from an earlier run were replayed before the
        // first connect; wait until the broker acknowledged everything.
        while !connected.get() || client.outbox_len() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("delivered: outbox empty");
        client.stop();
        Ok::<(), String>(())
    };
    drive(&broker, driver, work).await
}
