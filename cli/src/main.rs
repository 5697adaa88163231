//! `embermq`: the command line for embermq.
//!
//! The `pub`, `sub`, `sim` and `demo` commands arrive with the client layer;
//! until then the binary only reports its version and what it will offer.
use clap::Parser;

/// MQTT over WebSocket for devices and the hosts that simulate them.
#[derive(Parser, Debug)]
#[command(name = "embermq", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!(
        "embermq {}: the pub, sub, sim and demo commands are not built yet; \
         see README.md for what works today.",
        env!("CARGO_PKG_VERSION")
    );
}
