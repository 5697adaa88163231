//! `embermq sub`: subscribe to one or more filters and print every message
//! (format: [`crate::output`]) until Ctrl-C, `--count` messages, or
//! `--timeout`.
//!
//! A filter the broker refuses (SUBACK reason code 0x80 or above) fails the
//! command with that code. With `-d`, `subscribed to <filter>` on stderr
//! tells a script that messages published from now on will be seen.
//! Deliberately absent: reconnecting after the link is lost (the command
//! exits 1 and says why), and 5.0 subscription options beyond QoS.

use alloc::rc::Rc;
use core::cell::Cell;
use std::process::ExitCode;

use clap::Args;
use embermq::client::{Connection, Event};
use embermq::clock::TokioClock;
use embermq::codec::{QoS, Subscription, SubscriptionOptions};
use embermq::session::MAX_FILTERS_PER_REQUEST;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::client_run::{CliState, call_failure, drive, progress_line, runtime};
use crate::connect::{BrokerConnector, LinkBuffers};
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
        args.session_config(&client_id, MAX_PACKET as u32),
        &mut outbox,
    );
    let client = state.client();
    let options = args.transport_options();
    let mut link_buffers = LinkBuffers::new(options.ws_buffer_len);
    let connector = BrokerConnector::new(url, &options, &mut link_buffers, StdRng::from_entropy())
        .map_err(|e| Failure::from_setup(&e))?;
    let (mut rx, mut tx) = (vec![0u8; MAX_PACKET], vec![0u8; 8 * 1024]);
    let received = Rc::new(Cell::new(0u64));
    let stdout_closed = Rc::new(Cell::new(false));
    let (debug, format, verbose, count) = (args.debug, cmd.output, cmd.verbose, cmd.count);
    let handler = {
        let (received, stdout_closed) = (received.clone(), stdout_closed.clone());
        move |event: Event<'_>| {
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
    let driver = Connection::new(
        &state,
        connector,
        TokioClock::new(),
        StdRng::from_entropy(),
        &mut rx,
        &mut tx,
        args.client_config(),
    )
    .run(handler);
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
                    Ok(())
                }
            }
            () = core::future::pending::<()>() => Ok(()),
        }
    };
    drive(url, driver, work).await
}
