//! embermq: MQTT 3.1.1 and 5.0 for devices and for the hosts that simulate
//! them.
//!
//! On a host (feature `host`, std + tokio), `host::connect` takes a URL
//! and gives a `Clone + Send` handle and a stream of owned events:
//!
#![cfg_attr(feature = "host", doc = "```no_run")]
#![cfg_attr(not(feature = "host"), doc = "```ignore")]
//! use embermq::host::{self, QoS};
//! use std::time::Duration;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), host::Error> {
//!     let (client, mut events) = host::connect("wss://user:pass@broker.example/mqtt")?;
//!     client.subscribe("commands/#", QoS::AtLeastOnce).await?;
//!     tokio::spawn(async move {
//!         for n in 0u32.. {
//!             client.publish("readings", n.to_string(), QoS::AtLeastOnce).await?;
//!             tokio::time::sleep(Duration::from_secs(1)).await;
//!         }
//!         Ok::<_, host::Error>(())
//!     });
//!     while let Some(m) = events.next_message().await {
//!         println!("{} {:?}", m.topic, m.payload);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! On a device, the same client runs with every byte lent by the caller
//! ([`client`]).
//!
//! The crate is `#![no_std]`, uses no allocator and no `unsafe`. Its layers,
//! from the bottom up:
//!
//! - [`codec`]: a zero-copy codec for every MQTT 3.1.1 and 5.0 control packet.
//!   [`codec::Packet::decode`] borrows from the input buffer and reports a
//!   short one as `Incomplete`; [`codec::FixedHeader::decode`] frames and
//!   enforces the maximum packet size from the header alone;
//!   [`codec::Packet::encode`] writes into a buffer the caller lends. Strict
//!   validation, each rule tied to its spec statement; bad input is an error
//!   value, never a panic.
//! - MQTT 5.0 is the feature `v5`, on by default. A device that speaks
//!   3.1.1 only builds with `default-features = false` and without `v5`:
//!   the session then has no 5.0 choice, its 5.0 paths fold away, and the
//!   codec skips property blocks unread and refuses properties on emit
//!   (about 4.6 KB less flash, docs/footprint.md).
//! - [`topic`]: topic name and filter validation and matching, shared
//!   subscriptions included.
//! - [`time`]: the millisecond [`time::Instant`] and [`time::Duration`] the
//!   sans-IO layers take as input instead of reading a clock.
//! - [`clock`]: the [`clock::Clock`] trait (now + sleep until) through which
//!   the async layers read time: embassy-time on devices (feature
//!   `embassy-time`), tokio's timer on hosts (feature `tokio`).
//! - [`transport`]: the [`transport::Connector`] trait through which the
//!   client opens a fresh byte stream (TCP, TLS, WebSocket) per connect,
//!   with TCP connectors for embassy-net (feature `embassy-net`) and tokio
//!   (feature `tokio`), and TLS over any connector: rustls on hosts
//!   (feature `rustls`) and embedded-tls on devices (feature
//!   `embedded-tls`, no allocator, caller-lent record buffers), and MQTT
//!   over WebSocket over any of them (`transport::WsConnector`, feature
//!   `ws`, on the `embermq-ws` crate).
//! - [`session`]: the sans-IO MQTT state machine: bytes and `now` in; bytes
//!   to send, events and the next deadline out. QoS 0/1/2 flows, keepalive,
//!   in-flight window, resend on resume, resubscribe, v5 topic aliases and
//!   limits, over a bounded outbox in a lent buffer.
//! - [`store`]: the [`store::Store`] trait that makes the outbox's QoS ≥ 1
//!   messages durable across restarts (flash on devices, `FileStore` behind
//!   feature `std`); [`store::NoStore`] by default.
//! - [`client`]: the async client over the session: a [`client::Client`]
//!   handle for any number of tasks (publish with completion tokens,
//!   subscribe with per-filter results), and the [`client::Connection`]
//!   driver that connects through a connector, runs the timers, hands
//!   events to a handler and reconnects with backoff and full jitter. The
//!   same code runs under embassy and tokio.
//! - `json` (feature `json`): any serde type as JSON (serde-json-core)
//!   into a lent buffer, and `Client::publish_json` straight into the
//!   outbox. The JSON device model of the boards, the simulator and the
//!   demo (readings, commands, replies) is not the SDK's: it lives in the
//!   board application, `embermq-board-app::model`.
//! - `host` (feature `host`): `connect(url)` for `mqtt://`, `mqtts://`,
//!   `ws://` and `wss://`, a `Clone + Send + 'static` handle, owned events
//!   on a bounded stream; the layer owns its buffers and spawns the driver.
//! - `cloud` (features `cloud-aws`, `cloud-azure`): the AWS IoT Core SigV4
//!   presigned WebSocket URL and the Azure IoT Hub SAS token, computed on
//!   the device into lent buffers.
//!
//! Internal log lines go to `defmt` (feature `defmt`) or `log` (feature
//! `log`), or nowhere; credentials and payloads are never logged.
#![no_std]
#![forbid(unsafe_code)]
// Nothing reachable from network input may panic: no indexing that can fail,
// no unwrap/expect on input-derived values. Tests may use them freely.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable
    )
)]

#[cfg(feature = "host")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

// Logging macros first: `macro_rules!` are visible only below their module.
#[macro_use]
mod fmt;

pub mod client;
pub mod clock;
#[cfg(any(feature = "cloud-aws", feature = "cloud-azure"))]
pub mod cloud;
pub mod codec;
#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "json")]
pub mod json;
pub mod session;
pub mod store;
pub mod time;
pub mod topic;
pub mod transport;
