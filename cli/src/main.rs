//! `embermq`: the command line for embermq.
//!
//! - `embermq pub` / `embermq sub`: publish and subscribe, as handy as
//!   mosquitto_pub / mosquitto_sub, over `ws://`, `wss://`, `mqtt://` and
//!   `mqtts://` URLs.
//! - `embermq demo`: an embedded broker, a few simulated devices and a
//!   subscriber, with live statistics.
//! - `embermq sim`: a fleet of simulated devices running the device client.
//!
//! Each command lives in its own module; this file only parses the command
//! line and maps the outcome to the documented exit code.
extern crate alloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod sim;

mod broker_url;
mod client_run;
mod connect;
mod connect_args;
mod demo;
mod failure;
mod output;
mod publish;
mod subscribe;

/// MQTT over WebSocket for devices and the hosts that simulate them.
#[derive(Parser, Debug)]
#[command(name = "embermq", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Run a fleet of simulated devices against a broker.
    Sim(sim::SimCommand),
    /// Publish a message (like mosquitto_pub).
    Pub(publish::PubCommand),
    /// Subscribe and print messages (like mosquitto_sub).
    Sub(subscribe::SubCommand),
    /// Embedded broker, simulated devices and a subscriber, with live statistics.
    Demo(demo::DemoCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(cmd) => sim::run(cmd),
        Command::Pub(cmd) => publish::run(cmd),
        Command::Sub(cmd) => subscribe::run(cmd),
        Command::Demo(cmd) => demo::run(cmd),
    }
}
