//! A device publishing JSON telemetry: every `--interval-ms` one
//! [`Readings`] (the boards' device model, `embermq_board_app::model`) to `devices/<device>/telemetry`
//! at QoS 1, waiting for each PUBACK before the next.
//!
//! ```text
//! embermq demo                        # terminal 1: broker on ws://127.0.0.1:9001/mqtt
//! cargo run -p embermq-examples --bin telemetry-publisher -- --count 5
//! cargo run -p embermq-examples --bin telemetry-publisher -- --broker mqtt://127.0.0.1:1883
//! ```
//!
//! Written on the host layer: `embermq::host::connect(url)` gives a
//! `Clone + Send` handle and a stream of owned events; each `publish`
//! returns a token that completes with the PUBACK. Exits 0 when all
//! readings were acknowledged, 1 with one line on stderr otherwise.

use core::time::Duration;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use embermq::client::Backoff;
use embermq::host::{self, Event, Options, QoS};
use embermq_board_app::model::{Readings, encode_readings};
use embermq_examples::DEFAULT_BROKER;

/// Publish JSON telemetry readings.
#[derive(Parser, Debug)]
struct Args {
    /// Broker URL (mqtt:// or ws://).
    #[arg(long, default_value = DEFAULT_BROKER)]
    broker: String,
    /// Device id (client id and topic level).
    #[arg(long, default_value = "sensor-1")]
    device: String,
    /// Readings to publish.
    #[arg(long, default_value_t = 10)]
    count: u32,
    /// Milliseconds between readings.
    #[arg(long = "interval-ms", default_value_t = 1000)]
    interval_ms: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("telemetry-publisher: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let options = Options::new(&args.broker)
        .map_err(|e| e.to_string())?
        .client_id(&args.device)
        // Give up after a few failed attempts instead of retrying for ever.
        .backoff(Backoff {
            max_attempts: Some(3),
            ..Backoff::DEFAULT
        });
    let broker = options.url().clone();
    let (client, mut events) = host::connect(options).map_err(|e| e.to_string())?;
    // Events in a task of their own; the last one says why the client ended.
    let watcher = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Connected { version, .. } => {
                    eprintln!("connected to {broker} ({version:?})")
                }
                Event::Stopped { error: Some(e) } => return Err(format!("{broker}: {e}")),
                _ => {}
            }
        }
        Ok(())
    });

    let topic = format!("devices/{}/telemetry", args.device);
    let booted = Instant::now();
    let work = async {
        for seq in 0..args.count {
            if seq > 0 {
                tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
            }
            let readings = Readings {
                device_id: &args.device,
                seq,
                sent_at_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                uptime_ms: booted.elapsed().as_millis() as u64,
                temperature_c: Some(21.5 + seq as f32 * 0.1),
                counter: seq,
                rssi_dbm: Some(-61),
                status: Some("ok"),
            };
            let mut json = [0u8; 256];
            let len = encode_readings(&readings, &mut json).map_err(|e| e.to_string())?;
            let payload = json.get(..len).unwrap_or_default().to_vec();
            let token = client
                .publish(&topic, payload.clone(), QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string())?;
            // PUBACK received: the broker has it.
            token.await.map_err(|e| e.to_string())?;
            println!("{topic} {}", String::from_utf8_lossy(&payload));
        }
        Ok::<(), String>(())
    };
    let done = work.await;
    client.disconnect().await.map_err(|e| e.to_string())?;
    // The client's own failure explains a publish that could not finish.
    watcher.await.map_err(|e| e.to_string())??;
    done
}
