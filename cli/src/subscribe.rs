//! `embermq sub`: subscribe to one or more filters and print every message
//! (format: [`crate::output`]) until Ctrl-C, `--count` messages, or
//! `--timeout`.
//!
//! A filter the broker refuses (SUBACK reason code 0x80 or above) fails the
//! command with that code. With `-d`, `subscribed to <filter>` on stderr
//! tells a script that messages published from now on will be seen.
//!
//! Once connected, a lost link is reconnected like `mosquitto_sub` does:
//! a new connection after a full-jitter backoff (0.1 s doubling to 10 s,
//! attempts unbounded), the session resuming or, when the broker lost
//! it, the subscriptions sent again (`-d` says `subscriptions restored`).
//! Failing to connect the first time still ends the command with the
//! connect failure's exit code, and so does a refused CONNACK later.
//! Deliberately absent: 5.0 subscription options beyond QoS.

use alloc::rc::Rc;
use core::cell::Cell;
use std::process::ExitCode;

use clap::Args;
use embermq::client::{Backoff, ClientError, Connection, Event};
use embermq::clock::TokioClock;
use embermq::codec::{QoS, Subscription, SubscriptionOptions};
use embermq::session::CloseReason;
use embermq::session::MAX_FILTERS_PER_REQUEST;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::client_run::{CliState, call_failure, drive, progress_line, runtime};
use crate::connect::{BrokerConnectError, BrokerConnector, LinkBuffers};
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

/// Whether `sub` connects again after the driver ended with `e`: a lost
/// or failed link, but not a broker that refuses us, a stop, or a local
/// limit.
fn reconnects_after(e: &ClientError<BrokerConnectError>) -> bool {
    match e {
        ClientError::Connect(_) | ClientError::ConnectTimeout | ClientError::Io(_) => true,
        ClientError::Link(reason) => !matches!(
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

async fn subscribe(cmd: &SubCommand) -> Result<(), Failure> {
    if cmd.topics.len() > MAX_FILTERS_PER_REQUEST {
        return Err(Failure::new(
            Exit::Usage,
            format!("at most {MAX_FILTERS_PER_REQUEST} topic filters"),
        ));
    }
    let args = &cmd.connect;
    let deadline_at = args
        .overall_timeout()
        .map(|limit| tokio::time::Instant::now() + limit);
    let url = &args.url;
    let client_id = args.client_id();
    let mut outbox = vec![0u8; 16 * 1024];
    let state = CliState::new(
        args.session_config(&client_id, MAX_PACKET as u32)?,
        &mut outbox,
    );
    let client = state.client();
    let options = args.transport_options();
    let mut link_buffers = LinkBuffers::new(options.ws_buffer_len);
    // Checked once up front: a bad URL or TLS file is a usage error.
    drop(
        BrokerConnector::new(url, &options, &mut link_buffers, StdRng::from_entropy())
            .map_err(|e| Failure::from_setup(&e))?,
    );
    let (mut rx, mut tx) = (vec![0u8; MAX_PACKET], vec![0u8; 8 * 1024]);
    let received = Rc::new(Cell::new(0u64));
    let stdout_closed = Rc::new(Cell::new(false));
    let connected = Rc::new(Cell::new(false));
    let stopping = tokio::sync::Notify::new();
    let (debug, format, verbose, count) = (args.debug, cmd.output, cmd.verbose, cmd.count);
    let handler = || {
        let (received, stdout_closed, connected) =
            (received.clone(), stdout_closed.clone(), connected.clone());
        move |event: Event<'_>| {
            if let Event::Connected { .. } = &event {
                connected.set(true);
            }
            if let Event::Message(m) = &event {
                if count.is_some_and(|n| received.get() >= n) || stdout_closed.get() {
                    return;
                }
                let line = render(
                    format,
                    verbose,
                    &Received {
                        topic: m.topic,
                        payload: m.payload,
                        qos: m.qos as u8,
                        retain: m.retain,
                        response_topic: m.properties.response_topic(),
                        correlation_data: m.properties.correlation_data(),
                        user_properties: m
                            .properties
                            .user_properties()
                            .map(|p| (p.name, p.value))
                            .collect(),
                    },
                );
                if print(&line).is_err() {
                    // The reader went away (`| head`): end quietly.
                    stdout_closed.set(true);
                    client.stop();
                    return;
                }
                received.set(received.get() + 1);
                if count.is_some_and(|n| received.get() >= n) {
                    client.stop();
                }
            } else if debug && let Some(line) = progress_line(url, &event) {
                eprintln!("embermq: {line}");
            }
        }
    };
    // One `Connection` per link; the session (outbox, subscriptions) stays
    // in `state` between them.
    let driver = async {
        let mut rng = StdRng::from_entropy();
        let mut attempt = 0u32;
        loop {
            connected.set(false);
            let connector =
                BrokerConnector::new(url, &options, &mut link_buffers, StdRng::from_entropy())
                    .map_err(|e| Failure::from_setup(&e))?;
            let ended = Connection::new(
                &state,
                connector,
                TokioClock::new(),
                StdRng::from_entropy(),
                &mut rx,
                &mut tx,
                args.client_config(),
            )
            .run(handler())
            .await;
            let failure = match ended {
                Ok(()) => return Ok(()),
                Err(e) if !reconnects_after(&e) => return Err(Failure::from_client(&e, url)),
                Err(e) => e,
            };
            if connected.get() {
                attempt = 0;
            } else if attempt == 0 {
                // Never connected: the first connect failed.
                return Err(Failure::from_client(&failure, url));
            }
            attempt = attempt.saturating_add(1);
            let delay = RECONNECT.delay(attempt, &mut rng);
            if debug {
                eprintln!(
                    "embermq: link lost ({failure}); reconnecting in {} ms",
                    delay.as_millis()
                );
            }
            let wait = core::time::Duration::from_millis(delay.as_millis());
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // Ctrl-C or the deadline while waiting: done.
                () = stopping.notified() => return Ok(()),
            }
        }
    };
    let qos = match cmd.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let subs: Vec<Subscription<'_>> = cmd
        .topics
        .iter()
        .map(|filter| Subscription {
            filter,
            options: SubscriptionOptions::qos(qos),
        })
        .collect();
    let work = async {
        let results = client
            .subscribe(&subs)
            .await
            .map_err(|e| call_failure("cannot subscribe", e))?;
        for (filter, code) in cmd.topics.iter().zip(results.codes()) {
            if code.0 >= 0x80 {
                return Err(Failure::new(
                    Exit::Failure,
                    format!("the broker refused the subscription to `{filter}`: {code}"),
                ));
            }
            if debug {
                eprintln!("embermq: subscribed to {filter} (granted {code})");
            }
        }
        // Runs until the handler stops the client (count reached), or
        // Ctrl-C / the deadline below.
        let deadline = async {
            match deadline_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => core::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                client.stop();
                stopping.notify_one();
                Ok(())
            }
            () = deadline => {
                if count.is_some_and(|n| received.get() < n) {
                    Err(args.timeout_failure(&format!(
                        "after {} of {} message(s)",
                        received.get(),
                        count.unwrap_or_default()
                    )))
                } else {
                    client.stop();
                    stopping.notify_one();
                    Ok(())
                }
            }
            () = core::future::pending::<()>() => Ok(()),
        }
    };
    drive(url, driver, work).await
}
