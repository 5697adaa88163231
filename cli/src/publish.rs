//! `embermq pub`: publish one message (or `--count` of them) and exit once
//! each is acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP; QoS 0: written).
//!
//! The payload comes from `-m TEXT`, `-f FILE` (`-` for stdin) or `-n`
//! (empty). Up to eight publishes are in flight at once; the command
//! disconnects politely (DISCONNECT) at the end. It runs on the host layer
//! (`embermq::host`): one connect attempt, plus the one a 5.0 → 3.1.1
//! fall-back needs. MQTT 5.0 request/response
//! properties (Response Topic, Correlation Data, User Properties) can be
//! set; on a 3.1.1 link they are dropped. Deliberately absent: a
//! line-by-line stdin mode.

use alloc::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use embermq::codec::QoS;
use embermq::host::{self, Event, MessageProperties, Publish};
use embermq::session::PublishFailure;

use crate::client_run::{progress_line, runtime};
use crate::connect_args::ConnectArgs;
use crate::failure::{Exit, Failure};

/// Publishes in flight at once with `--count`.
const WINDOW: usize = 8;

/// Options of `embermq pub`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("payload").required(true).args(["message", "file", "null_message"])))]
pub(crate) struct PubCommand {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to publish to.
    #[arg(short = 't', long)]
    topic: String,
    /// Payload text.
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Payload from a file (`-` reads stdin).
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// Empty payload (with -r: clears the retained message).
    #[arg(short = 'n', long = "null-message")]
    null_message: bool,
    /// QoS 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Ask the broker to retain the message.
    #[arg(short = 'r', long)]
    retain: bool,
    /// Publish the message this many times.
    #[arg(short = 'C', long, default_value_t = 1)]
    count: u64,
    /// Milliseconds between repeated publishes.
    #[arg(long = "interval-ms", default_value_t = 0)]
    interval_ms: u64,
    /// MQTT 5.0 Response Topic (request/response).
    #[arg(long = "response-topic", value_name = "TOPIC")]
    response_topic: Option<String>,
    /// MQTT 5.0 Correlation Data (the text's bytes).
    #[arg(long = "correlation-data", value_name = "TEXT")]
    correlation_data: Option<String>,
    /// MQTT 5.0 User Property (repeatable).
    #[arg(short = 'D', long = "user-property", value_name = "NAME=VALUE", value_parser = parse_user_property)]
    user_properties: Vec<(String, String)>,
}

fn parse_user_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

/// Runs `embermq pub`.
pub(crate) fn run(cmd: PubCommand) -> ExitCode {
    let outcome = runtime().and_then(|rt| rt.block_on(publish(&cmd)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn payload(cmd: &PubCommand) -> Result<Vec<u8>, Failure> {
    if let Some(m) = &cmd.message {
        return Ok(m.clone().into_bytes());
    }
    match &cmd.file {
        Some(path) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| Failure::new(Exit::Usage, format!("cannot read stdin: {e}")))?;
            Ok(buf)
        }
        Some(path) => std::fs::read(path)
            .map_err(|e| Failure::new(Exit::Usage, format!("cannot read {}: {e}", path.display()))),
        None => Ok(Vec::new()),
    }
}

async fn publish(cmd: &PubCommand) -> Result<(), Failure> {
    let payload = payload(cmd)?;
    let args = &cmd.connect;
    let url = &args.url;
    // Room for the message and its header in every buffer; the outbox
    // holds the window.
    let packet = payload.len() + cmd.topic.len() + 1024;
    let options = args
        .host_options()?
        .max_packet_size(u32::try_from(packet.max(64 * 1024)).unwrap_or(u32::MAX))
        .outbox_bytes(packet * (WINDOW + 1));
    let (client, mut events) = host::connect(options).map_err(|e| Failure::from_host(&e, url))?;
    let mut msg =
        Publish::new(cmd.topic.clone(), payload, qos(cmd.qos)).with_properties(MessageProperties {
            response_topic: cmd.response_topic.clone(),
            correlation_data: cmd.correlation_data.clone().map(Into::into),
            user_properties: cmd.user_properties.clone(),
            ..MessageProperties::default()
        });
    msg.retain = cmd.retain;
    let debug = args.debug;
    // The driver's end: `Stopped` with its error, if any.
    let watch = async {
        while let Some(event) = events.recv().await {
            if debug && let Some(line) = progress_line(url, &event) {
                eprintln!("embermq: {line}");
            }
            if let Event::Stopped { error: Some(e) } = event {
                return Err(Failure::from_host(&e, url));
            }
        }
        Ok(())
    };
    let publish_all = async {
        let mut pending = VecDeque::with_capacity(WINDOW);
        for i in 0..cmd.count {
            if i > 0 && cmd.interval_ms > 0 {
                tokio::time::sleep(core::time::Duration::from_millis(cmd.interval_ms)).await;
            }
            let token = client.send(msg.clone()).await.map_err(|e| {
                Failure::new(Exit::Failure, format!("cannot queue the message: {e}"))
            })?;
            pending.push_back(token);
            if pending.len() >= WINDOW
                && let Some(oldest) = pending.pop_front()
            {
                oldest.await.map_err(publish_failure)?;
            }
        }
        while let Some(token) = pending.pop_front() {
            token.await.map_err(publish_failure)?;
        }
        if debug {
            eprintln!(
                "embermq: published {} message(s) to {}",
                cmd.count, cmd.topic
            );
        }
        Ok(())
    };
    // Always disconnect, so that `watch` sees the end.
    let work = async {
        let done = publish_all.await;
        let _ = client.disconnect().await;
        done
    };
    let all = async {
        let (watched, worked) = tokio::join!(watch, work);
        // The driver's failure explains a publish that could not finish.
        watched.and(worked)
    };
    match args.overall_timeout() {
        Some(limit) => tokio::time::timeout(limit, all)
            .await
            .unwrap_or_else(|_| Err(args.timeout_failure("before every publish was acknowledged"))),
        None => all.await,
    }
}

fn publish_failure(e: host::Error) -> Failure {
    match e {
        host::Error::Publish(PublishFailure::Rejected(code)) => Failure::new(
            Exit::Failure,
            format!("the broker rejected the publish: {code}"),
        ),
        other => Failure::new(Exit::Failure, format!("publish failed: {other}")),
    }
}
