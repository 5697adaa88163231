//! `embermq sub`: subscribe to one or more filters and print every message
//! (format: [`crate::output`]) until Ctrl-C, `--count` messages, or
//! `--timeout`.
//!
//! A filter the broker refuses (SUBACK reason code 0x80 or above) fails the
//! command with that code. With `-d`, `subscribed to <filter>` on stderr
//! tells a script that messages published from now on will be seen.
//!
//! It runs on the host layer (`embermq::host`). Once connected, a lost link
//! is reconnected like `mosquitto_sub` does: a new client after a
//! full-jitter backoff (0.1 s doubling to 10 s, attempts unbounded), the
//! subscriptions sent again (`-d` says `subscriptions restored`).
//! Failing to connect the first time still ends the command with the
//! connect failure's exit code, and so does a refused CONNACK later.
//! Deliberately absent: 5.0 subscription options beyond QoS.

use core::cell::Cell;
use std::process::ExitCode;

use clap::Args;
use embermq::client::{Backoff, ClientError};
use embermq::codec::{QoS, SubscriptionOptions};
use embermq::host::{self, Event};
use embermq::session::CloseReason;
use embermq::session::MAX_FILTERS_PER_REQUEST;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::client_run::{progress_line, runtime};
use crate::connect_args::ConnectArgs;
use crate::failure::{Exit, Failure};
use crate::output::{OutputFormat, Received, print, render};

/// The largest message `sub` accepts, bytes.
const MAX_PACKET: usize = 1 << 20;

/// Options of `embermq sub`.
#[derive(Args, Debug)]
pub(crate) struct SubCommand {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic filter (repeatable; `+` and `#` wildcards).
    #[arg(short = 't', long = "topic", required = true)]
    topics: Vec<String>,
    /// Subscription QoS 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Print the topic with each message.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Exit after this many messages.
    #[arg(short = 'C', long)]
    count: Option<u64>,
    /// How to print messages.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Raw)]
    output: OutputFormat,
}

/// Spacing of the reconnects after a lost link (attempts unbounded).
const RECONNECT: Backoff = Backoff {
    base: embermq::time::Duration::from_millis(100),
    cap: embermq::time::Duration::from_secs(10),
    max_attempts: None,
};

/// Whether `sub` connects again after its client ended with `e`: a lost
/// or failed link, but not a broker that refuses us, a stop, or a local
/// limit.
fn reconnects_after(e: &host::Error) -> bool {
    match e {
        host::Error::Connect(_) => true,
        host::Error::Client(ClientError::ConnectTimeout | ClientError::Io(_)) => true,
        host::Error::Client(ClientError::Link(reason)) => !matches!(
            reason,
            CloseReason::ConnectRefused(_) | CloseReason::ClientRequested
        ),
        _ => false,
    }
}

/// Runs `embermq sub`.
pub(crate) fn run(cmd: SubCommand) -> ExitCode {
    let outcome = runtime().and_then(|rt| rt.block_on(subscribe(&cmd)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

/// How one client (one generation of links) ended.
enum Ended {
    /// Done: `--count` reached, stdout closed, Ctrl-C or the deadline.
    Done,
    /// The client gave up with this error; `connected`: a link had been
    /// accepted.
    Failed { error: host::Error, connected: bool },
}

/// What [`one_client`] prints and counts.
struct Printing<'a> {
    cmd: &'a SubCommand,
    /// Messages printed so far (also read at the deadline).
    received: &'a Cell<u64>,
}

impl Printing<'_> {
    /// Prints `m`; `false` once done (count reached or stdout closed).
    fn message(&mut self, m: &host::Message) -> bool {
        let line = render(
            self.cmd.output,
            self.cmd.verbose,
            &Received {
                topic: &m.topic,
                payload: &m.payload,
                qos: m.qos as u8,
                retain: m.retain,
                response_topic: m.properties.response_topic.as_deref(),
                correlation_data: m.properties.correlation_data.as_deref(),
                user_properties: m
                    .properties
                    .user_properties
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect(),
            },
        );
        if print(&line).is_err() {
            // The reader went away (`| head`): end quietly.
            return false;
        }
        self.received.set(self.received.get() + 1);
        self.cmd.count.is_none_or(|n| self.received.get() < n)
    }
}

/// One host-layer client: connects, subscribes (`generation` 0 says
/// `subscribed to`, later ones `subscriptions restored`), prints messages
/// until done or until the client gives up.
async fn one_client(
    cmd: &SubCommand,
    generation: u32,
    printing: &mut Printing<'_>,
) -> Result<Ended, Failure> {
    let args = &cmd.connect;
    let url = &args.url;
    let options = args
        .host_options()?
        .max_packet_size(MAX_PACKET as u32)
        .outbox_bytes(16 * 1024);
    let (client, mut events) = host::connect(options).map_err(|e| Failure::from_host(&e, url))?;
    let qos = match cmd.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let filters = cmd
        .topics
        .iter()
        .map(|f| (f.clone(), SubscriptionOptions::qos(qos)));
    let debug = args.debug;
    match client.subscribe_many(filters).await {
        Ok(results) => {
            for (filter, code) in cmd.topics.iter().zip(results.codes()) {
                if debug && generation == 0 {
                    eprintln!("embermq: subscribed to {filter} (granted {code})");
                }
            }
            if debug && generation > 0 {
                eprintln!("embermq: subscriptions restored");
            }
        }
        Err(host::Error::Refused(results)) => {
            let refused = cmd
                .topics
                .iter()
                .zip(results.codes())
                .find(|(_, c)| c.0 >= 0x80);
            let (filter, code) = refused.unwrap_or((&cmd.topics[0], &results.codes()[0]));
            let _ = client.disconnect().await;
            return Err(Failure::new(
                Exit::Failure,
                format!("the broker refused the subscription to `{filter}`: {code}"),
            ));
        }
        // The client ended: its `Stopped` event says why.
        Err(_) => {}
    }
    let mut connected = false;
    while let Some(event) = events.recv().await {
        if debug && let Some(line) = progress_line(url, &event) {
            eprintln!("embermq: {line}");
        }
        match event {
            Event::Connected { .. } => connected = true,
            Event::Message(m) => {
                connected = true;
                if !printing.message(&m) {
                    let _ = client.disconnect().await;
                    return Ok(Ended::Done);
                }
            }
            Event::Stopped { error: Some(error) } => return Ok(Ended::Failed { error, connected }),
            Event::Stopped { error: None } => return Ok(Ended::Done),
            _ => {}
        }
    }
    Ok(Ended::Done)
}

async fn subscribe(cmd: &SubCommand) -> Result<(), Failure> {
    if cmd.topics.len() > MAX_FILTERS_PER_REQUEST {
        return Err(Failure::new(
            Exit::Usage,
            format!("at most {MAX_FILTERS_PER_REQUEST} topic filters"),
        ));
    }
    let args = &cmd.connect;
    let url = &args.url;
    let received = Cell::new(0u64);
    let mut printing = Printing {
        cmd,
        received: &received,
    };
    // One host-layer client per generation of links: it gives up on the
    // first failure (after a 5.0 -> 3.1.1 fall-back), and `sub` decides
    // here whether to connect again.
    let clients = async {
        let mut rng = StdRng::from_entropy();
        let mut attempt = 0u32;
        let mut generation = 0u32;
        loop {
            let (error, connected) = match one_client(cmd, generation, &mut printing).await? {
                Ended::Done => return Ok(()),
                Ended::Failed { error, connected } => (error, connected),
            };
            if !reconnects_after(&error) || (generation == 0 && !connected) {
                // Never connected, or refused: that is the failure.
                return Err(Failure::from_host(&error, url));
            }
            if connected {
                attempt = 0;
                generation += 1;
            }
            attempt = attempt.saturating_add(1);
            let delay = RECONNECT.delay(attempt, &mut rng);
            if args.debug {
                eprintln!(
                    "embermq: link lost ({error}); reconnecting in {} ms",
                    delay.as_millis()
                );
            }
            tokio::time::sleep(core::time::Duration::from_millis(delay.as_millis())).await;
        }
    };
    let deadline = async {
        match args.overall_timeout() {
            Some(limit) => tokio::time::sleep(limit).await,
            None => core::future::pending().await,
        }
    };
    // Ctrl-C and the deadline drop the client (no DISCONNECT needed: the
    // command ends).
    tokio::select! {
        ended = clients => ended,
        _ = tokio::signal::ctrl_c() => Ok(()),
        () = deadline => match cmd.count {
            Some(n) if received.get() < n => Err(args.timeout_failure(&format!(
                "after {} of {n} message(s)",
                received.get()
            ))),
            _ => Ok(()),
        },
    }
}
