//! A device publishing JSON telemetry: every `--interval-ms` one
//! [`Readings`] (the sdk's device model) to `devices/<device>/telemetry`
//! at QoS 1, waiting for each PUBACK before the next.
//!
//! ```text
//! embermq demo                        # terminal 1: broker on ws://127.0.0.1:9001/mqtt
//! cargo run -p embermq-examples --bin telemetry-publisher -- --count 5
//! cargo run -p embermq-examples --bin telemetry-publisher -- --broker mqtt://127.0.0.1:1883
//! ```
//!
//! The shape of every embermq program: a [`ClientState`] (session and
//! outbox, on the stack here), a [`Connection`] that drives the link and
//! hands events to a closure, and the application's work beside it using
//! the `Copy` [`Client`](embermq::client::Client) handle. Exits 0 when all
//! readings were acknowledged, 1 with one line on stderr otherwise.

use core::time::Duration;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use embermq::client::{ClientConfig, ClientState, Connection, Event, NoopRawMutex};
use embermq::clock::TokioClock;
use embermq::codec::QoS;
use embermq::session::{OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq::telemetry::{Readings, encode_readings};
use embermq_examples::{Broker, DEFAULT_BROKER, WsBuffers, drive};
use rand::SeedableRng;
use rand::rngs::StdRng;

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
    let broker = Broker::parse(&args.broker)?;
    let mut config = SessionConfig::new(&args.device);
    // 5.0 where the broker has it, else 3.1.1 (the demo's rumqttd).
    config.protocol = ProtocolChoice::V5WithFallback;
    config.max_incoming_packet_size = 2048;
    // INFLIGHT = 8 messages, SUBS = 2 subscriptions.
    let mut outbox = [0u8; 4096];
    let state: ClientState<'_, NoopRawMutex, 8, 2> = ClientState::new(config, &mut outbox);
    let client = state.client();
    let mut ws_buffers = WsBuffers::default();
    let connector = broker.connector(&mut ws_buffers, StdRng::from_entropy());
    let (mut rx, mut tx) = ([0u8; 2048], [0u8; 2048]);
    let mut client_config = ClientConfig::DEFAULT;
    // Give up after a few failed attempts instead of retrying for ever.
    client_config.backoff.max_attempts = Some(3);
    let driver = Connection::new(
        &state,
        connector,
        TokioClock::new(),
        StdRng::from_entropy(),
        &mut rx,
        &mut tx,
        client_config,
    )
    .run(|event: Event<'_>| {
        if let Event::Connected { version, .. } = event {
            eprintln!("connected to {broker} ({version:?})");
        }
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
            let payload = json.get(..len).unwrap_or_default();
            let token = client
                .publish(&OutgoingMessage::new(&topic, payload, QoS::AtLeastOnce))
                .await
                .map_err(|e| e.to_string())?;
            // PUBACK received: the broker has it.
            client.completion(token).await.map_err(|e| e.to_string())?;
            println!("{topic} {}", String::from_utf8_lossy(payload));
        }
        client.stop();
        Ok::<(), String>(())
    };

    drive(&broker, driver, work).await
}
