//! The application every embermq board firmware runs, kept out of the board
//! projects so that the host runs it too (`tests/broker.rs` runs it under
//! tokio against a real mosquitto).
//!
//! What it does, over any [`Connector`](embermq::transport::Connector) (the
//! boards: `embermq::transport::WsConnector` over `EmbassyTcpConnector`; the host
//! test: the same WebSocket connector over tokio TCP):
//!
//! - **telemetry** ([`run`]): every N seconds a JSON
//!   [`Readings`](crate::model::Readings) sample (uptime, a counter of
//!   acknowledged samples, and what the [`Board`] measures) is published at
//!   QoS 1 on `devices/{id}/telemetry`;
//! - **commands** ([`command`]): `devices/{id}/commands` is subscribed; LED
//!   on/off goes to the board, `interval` changes the period at once, `ping`
//!   and `label` are answered too; every command gets a
//!   [`CommandReply`](crate::model::CommandReply), sent to the MQTT 5.0
//!   Response Topic with the Correlation Data when the command carried them
//!   (5.0 §4.10), else to `devices/{id}/replies`;
//! - **reconnect**: the embermq client's own, configured by
//!   [`Settings::client`] (exponential backoff with full jitter, retrying for
//!   ever); subscriptions are restored by the session;
//! - **durable outbox** ([`FlashStore`]): the client's `Store` on NOR flash
//!   (sequential-storage over `embedded-storage-async`), so readings the
//!   broker had not acknowledged are sent after a reset.
//!
//! - **the device model** ([`model`]): the JSON readings, commands and
//!   replies, which the simulator, the demo, the examples and the tests of
//!   the host workspace use too (they depend on this crate by path, without
//!   the `embassy` feature), so that there is one model.
//!
//! Everything the board does is behind the small [`Board`] trait (LED,
//! sensors, logging of [`AppEvent`]s); memory is lent by the board.
//!
//! With the `embassy` feature (`wss` adds TLS), `Link` is the client wired
//! as every board wires it: MQTT over WebSocket over embassy-net TCP, the
//! outbox in flash, the buffers in one static `LinkMemory` the board lends.
//!
//! Deliberately not here: bringing the network up (Wi-Fi, LTE, Ethernet),
//! the flash driver, the log, and rebooting (answered as unsupported),
//! which are the boards' own.
#![no_std]
#![forbid(unsafe_code)]
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

mod board;
pub mod command;
mod device;
mod flash_store;
#[cfg(feature = "embassy")]
mod link;
pub mod model;
mod rng;
mod settings;

pub use board::{AppEvent, Board};
pub use device::run;
pub use flash_store::{FlashStore, FlashStoreError};
#[cfg(feature = "embassy")]
pub use link::{Broker, Link, LinkError, LinkMemory};
pub use rng::SharedRng;
pub use settings::{
    DEVICE_ID_MAX_LEN, Settings, SettingsError, TOPIC_MAX_LEN, Topics, device_id_from_serial,
};

/// The broker's TCP port from a build-time variable (`option_env!`), or
/// `default` when unset. Evaluated in a `const`, so a value that is not a
/// port number stops the build instead of the device.
#[allow(clippy::indexing_slicing, clippy::panic)] // const evaluation: a panic is a build error
pub const fn port_from_env(value: Option<&str>, default: u16) -> u16 {
    let Some(text) = value else {
        return default;
    };
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "BROKER_PORT is empty");
    let mut port: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(digit.is_ascii_digit(), "BROKER_PORT is not a number");
        port = port * 10 + (digit - b'0') as u32;
        assert!(port <= u16::MAX as u32, "BROKER_PORT is above 65535");
        i += 1;
    }
    port as u16
}

/// A number of seconds from a build-time variable (`option_env!`), or
/// `default` when unset; like [`port_from_env`], a bad value stops the build.
#[allow(clippy::indexing_slicing, clippy::panic)] // const evaluation: a panic is a build error
pub const fn secs_from_env(value: Option<&str>, default: u32) -> u32 {
    let Some(text) = value else {
        return default;
    };
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "TELEMETRY_SECS is empty");
    let mut secs: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(digit.is_ascii_digit(), "TELEMETRY_SECS is not a number");
        secs = secs * 10 + (digit - b'0') as u64;
        assert!(secs <= 86_400, "TELEMETRY_SECS is above 86400");
        i += 1;
    }
    assert!(secs >= 1, "TELEMETRY_SECS is 0");
    secs as u32
}

/// A build-time string (`option_env!`) or `default` when unset.
pub const fn str_from_env(value: Option<&'static str>, default: &'static str) -> &'static str {
    match value {
        Some(value) => value,
        None => default,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn port_from_env_parses_or_falls_back() {
        const SET: u16 = port_from_env(Some("8883"), 1883);
        assert_eq!(SET, 8883);
        assert_eq!(port_from_env(None, 1883), 1883);
        assert_eq!(port_from_env(Some("65535"), 1), 65535);
        assert!(std::panic::catch_unwind(|| port_from_env(Some("65536"), 1)).is_err());
        assert!(std::panic::catch_unwind(|| port_from_env(Some("80a"), 1)).is_err());
        assert!(std::panic::catch_unwind(|| port_from_env(Some(""), 1)).is_err());
    }

    #[test]
    fn secs_from_env_parses_within_the_interval_range() {
        const SET: u32 = secs_from_env(Some("15"), 10);
        assert_eq!(SET, 15);
        assert_eq!(secs_from_env(None, 10), 10);
        assert!(std::panic::catch_unwind(|| secs_from_env(Some("0"), 1)).is_err());
        assert!(std::panic::catch_unwind(|| secs_from_env(Some("86401"), 1)).is_err());
    }

    #[test]
    fn str_from_env_prefers_the_set_value() {
        assert_eq!(str_from_env(Some("/mqtt"), "/"), "/mqtt");
        assert_eq!(str_from_env(None, "/"), "/");
    }
}
