//! What the examples in `src/bin/` share: the default broker (the one
//! `embermq demo --port 9001` starts), reading a `--broker` URL into the
//! sdk's URL connector for the examples that run the core client
//! ([`connector`]), and running that client's driver beside an example's
//! own work ([`drive`]). `telemetry-publisher` needs none of it: it is
//! written on the host layer, `embermq::host::connect(url)`.
//!
//! | example | shows |
//! |---|---|
//! | `telemetry-publisher` | JSON readings (the boards' device model, `embermq_board_app::model`) at QoS 1, awaiting each completion |
//! | `command-responder` | MQTT 5 request/response: a device answers commands on the Response Topic with the Correlation Data; `--ask` is the caller's side |
//! | `counting-transport` | a user-written `Connector`: wraps any transport and counts the bytes on the wire (MQTT alone vs MQTT over WebSocket) |
//! | `durable-outbox` | `Client::publish_json` through an outbox backed by `FileStore`: readings persisted while the broker is away survive `kill -9` and go out on the next start |
//!
//! Run one with `cargo run -p embermq-examples --bin <name> -- --broker <URL>`
//! (`mqtt://`, `ws://`, and `mqtts://`, `wss://` against Mozilla's roots).

use core::fmt;

pub use embermq::host::BrokerUrl;
use embermq::host::{LinkConnector, LinkOptions};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The broker the examples use without `--broker`: the WebSocket listener
/// of `embermq demo --port 9001`.
pub const DEFAULT_BROKER: &str = "ws://127.0.0.1:9001/mqtt";

/// Parses a `--broker` URL (`mqtt://`, `mqtts://`, `ws://`, `wss://`).
pub fn parse_broker(url: &str) -> Result<BrokerUrl, String> {
    url.parse()
        .map_err(|e| format!("`{}`: {e}", embermq::host::masked(url)))
}

/// The sdk's connector for `broker` (TCP, TLS, WebSocket as its scheme
/// says), for the examples that run the core client themselves.
pub fn connector(broker: &BrokerUrl) -> Result<LinkConnector, String> {
    LinkConnector::new(broker, &LinkOptions::default(), StdRng::from_entropy())
        .map_err(|e| format!("{broker}: {e}"))
}

/// Runs the client's driver (`Connection::run`'s future) beside the
/// example's own `work` until the work is done and the driver, stopped by
/// it, has ended; or until the driver ends first. Driver failures are
/// reported with the broker they were for.
pub async fn drive<D, E, W>(broker: &BrokerUrl, driver: D, work: W) -> Result<(), String>
where
    D: core::future::Future<Output = Result<(), E>>,
    E: fmt::Display,
    W: core::future::Future<Output = Result<(), String>>,
{
    let mut driver = core::pin::pin!(driver);
    tokio::select! {
        ended = &mut driver => ended.map_err(|e| format!("{broker}: {e}")),
        done = work => {
            done?;
            driver.await.map_err(|e| format!("{broker}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses_and_a_bad_url_names_the_reason() {
        for url in [
            "ws://127.0.0.1:9001/mqtt",
            "mqtt://broker",
            "wss://h",
            "mqtts://h:8883",
        ] {
            assert!(parse_broker(url).is_ok(), "{url}");
        }
        let e = parse_broker("http://user:secret@h").unwrap_err();
        assert!(e.contains("unknown scheme"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
