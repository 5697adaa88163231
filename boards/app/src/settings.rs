//! What the application is configured with: the device id and the topics
//! built from it, the first telemetry interval, and the client's reconnect
//! and session settings.
//!
//! Topics follow one scheme, `devices/{id}/telemetry`, `devices/{id}/commands`
//! and `devices/{id}/replies`, so a device id must be a valid topic level
//! (MQTT §4.7: no `/`, `+`, `#`, no NUL) and short enough for the fixed
//! topic strings. Nothing here allocates: topics are `heapless` strings.

use core::fmt;
use core::fmt::Write as _;

use crate::model::INTERVAL_SECS;
use embermq::client::{Backoff, ClientConfig};
use embermq::session::{ProtocolChoice, SessionConfig};
use embermq::time::Duration;

/// The longest device id (it is also the MQTT client id).
pub const DEVICE_ID_MAX_LEN: usize = 32;

/// The capacity of each topic string.
pub const TOPIC_MAX_LEN: usize = 64;

/// Why [`Settings::new`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsError {
    /// The device id is empty, longer than [`DEVICE_ID_MAX_LEN`], or holds
    /// a character that cannot stand in a topic level (`/`, `+`, `#`, NUL).
    DeviceId,
    /// The interval is outside [`INTERVAL_SECS`].
    Interval {
        /// The value given.
        secs: u32,
    },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeviceId => write!(
                f,
                "device id must be 1..={DEVICE_ID_MAX_LEN} bytes without '/', '+', '#' or NUL"
            ),
            Self::Interval { secs } => write!(
                f,
                "telemetry interval {secs} s is outside {}..={} s",
                INTERVAL_SECS.start(),
                INTERVAL_SECS.end()
            ),
        }
    }
}

impl core::error::Error for SettingsError {}

/// The three topics of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    telemetry: heapless::String<TOPIC_MAX_LEN>,
    commands: heapless::String<TOPIC_MAX_LEN>,
    replies: heapless::String<TOPIC_MAX_LEN>,
}

impl Topics {
    /// `devices/{id}/telemetry`, `devices/{id}/commands`,
    /// `devices/{id}/replies`.
    pub fn for_device(device_id: &str) -> Result<Self, SettingsError> {
        let valid = !device_id.is_empty()
            && device_id.len() <= DEVICE_ID_MAX_LEN
            && !device_id.contains(['/', '+', '#', '\0']);
        if !valid {
            return Err(SettingsError::DeviceId);
        }
        let topic = |leaf: &str| {
            let mut s = heapless::String::new();
            // Cannot fail: 8 + 32 + 1 + 9 bytes fit in TOPIC_MAX_LEN.
            write!(s, "devices/{device_id}/{leaf}").map(|()| s)
        };
        match (topic("telemetry"), topic("commands"), topic("replies")) {
            (Ok(telemetry), Ok(commands), Ok(replies)) => Ok(Self {
                telemetry,
                commands,
                replies,
            }),
            _ => Err(SettingsError::DeviceId),
        }
    }

    /// Where readings are published.
    pub fn telemetry(&self) -> &str {
        &self.telemetry
    }

    /// What is subscribed for commands.
    pub fn commands(&self) -> &str {
        &self.commands
    }

    /// Where replies go when a command names no Response Topic.
    pub fn replies(&self) -> &str {
        &self.replies
    }
}

/// A device id from a name and the chip's serial number (FICR device id,
/// eFuse MAC): `{prefix}-{serial as lowercase hex}`, cut at
/// [`DEVICE_ID_MAX_LEN`] bytes.
pub fn device_id_from_serial(prefix: &str, serial: &[u8]) -> heapless::String<DEVICE_ID_MAX_LEN> {
    let mut id = heapless::String::new();
    let mut push = |c: char| id.push(c).is_ok();
    let digits = serial
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0f])
        .filter_map(|nibble| char::from_digit(u32::from(nibble), 16));
    let _ = prefix
        .chars()
        .chain(core::iter::once('-'))
        .chain(digits)
        .all(&mut push);
    id
}

/// The application's configuration.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// The device id: the MQTT client id and the `{id}` of the topics.
    pub device_id: &'a str,
    /// Seconds between readings until a command changes it.
    pub interval_secs: u32,
    /// Reconnect backoff and connect timeout of the client.
    pub client: ClientConfig,
    topics: Topics,
}

impl<'a> Settings<'a> {
    /// Reconnects after 0..1 s, doubling to at most 60 s, for ever; a
    /// connect attempt (DNS, TCP, TLS, WebSocket upgrade) may take 30 s,
    /// which an LTE-M link sometimes needs.
    pub const CLIENT: ClientConfig = ClientConfig {
        backoff: Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_attempts: None,
        },
        connect_timeout: Duration::from_secs(30),
        close_timeout: Duration::from_secs(1),
    };

    /// Settings for `device_id`, publishing every `interval_secs`, with
    /// [`Self::CLIENT`].
    pub fn new(device_id: &'a str, interval_secs: u32) -> Result<Self, SettingsError> {
        if !INTERVAL_SECS.contains(&interval_secs) {
            return Err(SettingsError::Interval {
                secs: interval_secs,
            });
        }
        Ok(Self {
            device_id,
            interval_secs,
            client: Self::CLIENT,
            topics: Topics::for_device(device_id)?,
        })
    }

    /// The device's topics.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The session configuration the boards use: MQTT 5.0 with a fall-back
    /// to 3.1.1 (3.1.1 without the `v5` feature), a clean start at boot then resuming the session (kept one
    /// hour by the broker) on every reconnect, 60 s keepalive, and incoming
    /// packets bounded by the receive buffer of `rx_len` bytes.
    pub fn session_config(&self, rx_len: usize) -> SessionConfig<'a> {
        let mut config = SessionConfig::new(self.device_id);
        #[cfg(feature = "v5")]
        {
            config.protocol = ProtocolChoice::V5WithFallback;
        }
        #[cfg(not(feature = "v5"))]
        {
            config.protocol = ProtocolChoice::V311;
        }
        config.clean_start = true;
        config.resume_on_reconnect = true;
        config.session_expiry_secs = Some(3600);
        config.max_incoming_packet_size = u32::try_from(rx_len).unwrap_or(u32::MAX);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_device_scheme() {
        let t = Topics::for_device("board-7").unwrap();
        assert_eq!(t.telemetry(), "devices/board-7/telemetry");
        assert_eq!(t.commands(), "devices/board-7/commands");
        assert_eq!(t.replies(), "devices/board-7/replies");
        let longest = "x".repeat(DEVICE_ID_MAX_LEN);
        assert!(Topics::for_device(&longest).is_ok());
    }

    #[test]
    fn mqtt_4_7_wildcards_and_separators_refused_in_a_device_id() {
        for bad in ["", "a/b", "a+", "#", "a\0b"] {
            assert_eq!(Topics::for_device(bad), Err(SettingsError::DeviceId));
        }
        let too_long = "x".repeat(DEVICE_ID_MAX_LEN + 1);
        assert_eq!(Topics::for_device(&too_long), Err(SettingsError::DeviceId));
    }

    #[test]
    fn device_id_from_serial_is_prefix_and_hex_within_the_limit() {
        let id = device_id_from_serial("nrf52840", &[0x01, 0xab, 0xff]);
        assert_eq!(id.as_str(), "nrf52840-01abff");
        assert!(Topics::for_device(&id).is_ok());
        let long = device_id_from_serial("a-rather-long-board-name", &[0x11; 16]);
        assert_eq!(long.len(), DEVICE_ID_MAX_LEN);
        assert!(long.starts_with("a-rather-long-board-name-1111"));
    }

    #[test]
    fn interval_outside_the_command_range_refused() {
        assert_eq!(
            Settings::new("d", 0).unwrap_err(),
            SettingsError::Interval { secs: 0 }
        );
        assert!(Settings::new("d", 86_401).is_err());
        assert_eq!(Settings::new("d", 10).unwrap().interval_secs, 10);
    }

    #[test]
    fn session_config_resumes_and_bounds_incoming_packets() {
        let s = Settings::new("dev", 10).unwrap();
        let c = s.session_config(1024);
        assert_eq!(c.client_id, "dev");
        #[cfg(feature = "v5")]
        assert_eq!(c.protocol, ProtocolChoice::V5WithFallback);
        #[cfg(not(feature = "v5"))]
        assert_eq!(c.protocol, ProtocolChoice::V311);
        assert!(c.resume_on_reconnect);
        assert_eq!(c.max_incoming_packet_size, 1024);
    }
}
