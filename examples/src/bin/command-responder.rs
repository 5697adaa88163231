//! MQTT 5 request/response with the boards' command model
//! (`embermq_board_app::model`).
//!
//! Device side (default): subscribes to `devices/<device>/commands`; every
//! command (`{"cmd":"ping"}`, `{"cmd":"led","on":true}`, ...) is decoded
//! into a [`Command`] and answered with a [`CommandReply`] published to the
//! request's **Response Topic**, carrying its **Correlation Data** back
//! (MQTT 5.0 §4.10). A request without a Response Topic (a 3.1.1 caller)
//! is answered on `devices/<device>/replies`.
//!
//! Caller side (`--ask '{"cmd":"ping"}'`): subscribes to its own reply
//! topic, publishes the command with Response Topic and a random
//! Correlation Data, prints the reply whose correlation matches, and exits.
//!
//! ```text
//! cargo run -p embermq-examples --bin command-responder -- --broker mqtt://127.0.0.1:1883
//! cargo run -p embermq-examples --bin command-responder -- --broker mqtt://127.0.0.1:1883 --ask '{"cmd":"ping"}'
//! ```
//!
//! Needs an MQTT 5.0 broker (mosquitto, EMQX, HiveMQ); the demo's embedded
//! rumqttd speaks 3.1.1 over WebSocket, which has no Response Topic.
//!
//! Note the one rule of the event handler: it must not `.await` a
//! publish (the driver that would complete it is the one running the
//! handler), so the device answers with
//! [`Client::try_publish`](embermq::client::Client::try_publish), which
//! queues without waiting.

use core::time::Duration;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use embermq::client::{ClientConfig, ClientState, Connection, Event, NoopRawMutex};
use embermq::clock::TokioClock;
use embermq::codec::{Properties, PropertyFields, QoS, Subscription, SubscriptionOptions};
use embermq::session::{OutgoingMessage, OverflowPolicy, ProtocolChoice, SessionConfig};
use embermq_board_app::model::{Command, CommandReply, decode_command, encode_reply};
use embermq_examples::{DEFAULT_BROKER, connector, drive, parse_broker};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::sync::mpsc;

/// Answer (or send) commands with MQTT 5 request/response.
#[derive(Parser, Debug)]
struct Args {
    /// Broker URL (mqtt:// or ws://), MQTT 5.0.
    #[arg(long, default_value = DEFAULT_BROKER)]
    broker: String,
    /// The device answering the commands.
    #[arg(long, default_value = "sensor-1")]
    device: String,
    /// Caller side: send this command JSON and print the reply.
    #[arg(long, value_name = "JSON")]
    ask: Option<String>,
    /// Device side: exit after answering this many commands.
    #[arg(long)]
    count: Option<u64>,
    /// Caller side: seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// INFLIGHT = 8 messages, SUBS = 2 subscriptions.
type State<'b> = ClientState<'b, NoopRawMutex, 8, 2>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match &args.ask {
        Some(json) => ask(&args, json).await,
        None => respond(&args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("command-responder: {e}");
            ExitCode::FAILURE
        }
    }
}

fn session_config(client_id: &str) -> SessionConfig<'_> {
    let mut config = SessionConfig::new(client_id);
    config.protocol = ProtocolChoice::V5;
    config.max_incoming_packet_size = 2048;
    config
}

fn subscription(filter: &str) -> [Subscription<'_>; 1] {
    [Subscription {
        filter,
        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
    }]
}

/// The device: answers every command on the request's Response Topic.
async fn respond(args: &Args) -> Result<(), String> {
    let broker = parse_broker(&args.broker)?;
    let mut outbox = [0u8; 8192];
    let state: State<'_> = ClientState::new(session_config(&args.device), &mut outbox);
    let client = state.client();
    let connector = connector(&broker)?;
    let (mut rx, mut tx) = ([0u8; 2048], [0u8; 2048]);
    let commands = format!("devices/{}/commands", args.device);
    let fallback_replies = format!("devices/{}/replies", args.device);
    let booted = Instant::now();
    let mut answered = 0u64;
    let handler = |event: Event<'_>| {
        let Event::Message(request) = event else {
            return;
        };
        if request.topic != commands {
            return;
        }
        let uptime_ms = booted.elapsed().as_millis() as u64;
        let mut json = [0u8; 256];
        let reason;
        let reply = match decode_command(request.payload) {
            Ok(command) => {
                let mut reply = CommandReply::ok(&command);
                if matches!(command, Command::Ping) {
                    reply.uptime_ms = Some(uptime_ms);
                }
                reply
            }
            Err(e) => {
                reason = e.to_string();
                CommandReply::failed("unknown", &reason)
            }
        };
        let Ok(len) = encode_reply(&reply, &mut json) else {
            return;
        };
        let payload = json.get(..len).unwrap_or_default();
        // MQTT 5.0 §4.10: answer on the Response Topic, echo the
        // Correlation Data so the caller can match the reply.
        let properties = request.properties;
        let fields = PropertyFields {
            correlation_data: properties.correlation_data(),
            ..PropertyFields::default()
        };
        let reply_topic = properties
            .response_topic()
            .unwrap_or(fallback_replies.as_str());
        let mut msg = OutgoingMessage::new(reply_topic, payload, QoS::AtLeastOnce);
        msg.properties = Properties::from_fields(&fields);
        match client.try_publish(&msg, OverflowPolicy::RejectNew) {
            Ok(_) => println!(
                "{} -> {reply_topic}: {}",
                request.topic,
                String::from_utf8_lossy(payload)
            ),
            Err(e) => eprintln!("cannot answer {:?}: {e}", reply.cmd),
        }
        let _ = std::io::stdout().flush();
        answered += 1;
        if args.count.is_some_and(|n| answered >= n) {
            client.stop();
        }
    };
    let driver = Connection::new(
        &state,
        connector,
        TokioClock::new(),
        StdRng::from_entropy(),
        &mut rx,
        &mut tx,
        ClientConfig::DEFAULT,
    )
    .run(handler);
    let filters = subscription(&commands);
    let work = async {
        client
            .subscribe(&filters)
            .await
            .map_err(|e| e.to_string())?;
        println!("ready: answering commands on {commands}");
        let _ = std::io::stdout().flush();
        Ok::<(), String>(())
    };
    let mut driver = core::pin::pin!(driver);
    tokio::select! {
        ended = &mut driver => return ended.map_err(|e| format!("{broker}: {e}")),
        done = work => done?,
    }
    tokio::select! {
        ended = &mut driver => ended.map_err(|e| format!("{broker}: {e}")),
        _ = tokio::signal::ctrl_c() => {
            client.stop();
            driver.await.map_err(|e| format!("{broker}: {e}"))
        }
    }
}

/// The caller: one request, one matching reply.
async fn ask(args: &Args, json: &str) -> Result<(), String> {
    let broker = parse_broker(&args.broker)?;
    let client_id = format!("{}-caller-{}", args.device, std::process::id());
    let mut outbox = [0u8; 8192];
    let state: State<'_> = ClientState::new(session_config(&client_id), &mut outbox);
    let client = state.client();
    let connector = connector(&broker)?;
    let (mut rx, mut tx) = ([0u8; 2048], [0u8; 2048]);
    let reply_topic = format!("callers/{client_id}/replies");
    let mut correlation = [0u8; 8];
    StdRng::from_entropy().fill_bytes(&mut correlation);
    // Replies leave the handler through a channel: the handler only
    // borrows the message until it returns.
    let (replies_tx, mut replies) = mpsc::unbounded_channel::<(Vec<u8>, Vec<u8>)>();
    let handler = |event: Event<'_>| {
        if let Event::Message(m) = event
            && m.topic == reply_topic
        {
            let correlation = m.properties.correlation_data().unwrap_or_default();
            let _ = replies_tx.send((correlation.to_vec(), m.payload.to_vec()));
        }
    };
    let mut client_config = ClientConfig::DEFAULT;
    client_config.backoff.max_attempts = Some(2);
    let driver = Connection::new(
        &state,
        connector,
        TokioClock::new(),
        StdRng::from_entropy(),
        &mut rx,
        &mut tx,
        client_config,
    )
    .run(handler);
    let filters = subscription(&reply_topic);
    let work = async {
        client
            .subscribe(&filters)
            .await
            .map_err(|e| e.to_string())?;
        let fields = PropertyFields {
            response_topic: Some(&reply_topic),
            correlation_data: Some(&correlation),
            ..PropertyFields::default()
        };
        let topic = format!("devices/{}/commands", args.device);
        let mut request = OutgoingMessage::new(&topic, json.as_bytes(), QoS::AtLeastOnce);
        request.properties = Properties::from_fields(&fields);
        let token = client.publish(&request).await.map_err(|e| e.to_string())?;
        client.completion(token).await.map_err(|e| e.to_string())?;
        let wait = async {
            while let Some((corr, payload)) = replies.recv().await {
                if corr == correlation {
                    return Some(payload);
                }
            }
            None
        };
        let reply = tokio::time::timeout(Duration::from_secs(args.timeout), wait)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| format!("no reply from {} within {} s", args.device, args.timeout))?;
        println!("{}", String::from_utf8_lossy(&reply));
        client.stop();
        Ok::<(), String>(())
    };
    drive(&broker, driver, work).await
}
