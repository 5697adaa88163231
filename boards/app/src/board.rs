//! What a board supplies to the application ([`Board`]) and what the
//! application tells it ([`AppEvent`], for its log).

use core::fmt;

use crate::model::ModelError;
use embermq::codec::ProtocolVersion;
use embermq::session::{CloseReason, PublishFailure};
use embermq::time::Duration;

/// The board under the application: an LED, optional sensors, a log.
///
/// Every method is called briefly from the application's task, never
/// across an `.await`; none may block for long.
pub trait Board {
    /// Switches the user LED (`{"cmd":"led","on":true}`).
    fn set_led(&mut self, on: bool);

    /// The temperature in °C, if the board has a sensor.
    fn temperature_c(&mut self) -> Option<f32> {
        None
    }

    /// The radio's received signal strength in dBm, if it reports one.
    fn rssi_dbm(&mut self) -> Option<i16> {
        None
    }

    /// Something happened that the board may log (defmt, esp-println).
    fn report(&mut self, event: AppEvent<'_>) {
        let _ = event;
    }
}

/// What the application reports to its [`Board`]. `Display` gives one log
/// line (no payloads, no credentials).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum AppEvent<'a> {
    /// CONNACK accepted the link.
    Connected {
        /// The protocol version in use.
        version: ProtocolVersion,
        /// Whether the broker resumed the session.
        session_present: bool,
    },
    /// A link that had been opened ended.
    Disconnected {
        /// Why.
        reason: CloseReason,
    },
    /// The client waits `delay` before connect attempt `attempt`.
    Reconnecting {
        /// Consecutive failures + 1.
        attempt: u32,
        /// The jittered delay.
        delay: Duration,
    },
    /// The command topic's SUBACK came back.
    Subscribed {
        /// Whether the broker granted it.
        granted: bool,
    },
    /// A reading was queued for publishing.
    ReadingQueued {
        /// Its sequence number.
        seq: u32,
    },
    /// A reading (or reply) could not be queued or sent.
    PublishFailed,
    /// The broker refused or dropped a publish.
    PublishRejected {
        /// Why.
        failure: PublishFailure,
    },
    /// A command was carried out.
    Command {
        /// Its name (`led`, `interval`, ...).
        name: &'static str,
    },
    /// A command payload was refused.
    CommandRefused {
        /// Why.
        error: &'a ModelError,
    },
    /// The reply to a command could not be queued (outbox full).
    ReplyNotQueued,
}

impl fmt::Display for AppEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected {
                version,
                session_present,
            } => write!(
                f,
                "mqtt connected ({version:?}, session present: {session_present})"
            ),
            Self::Disconnected { reason } => write!(f, "mqtt link ended: {reason:?}"),
            Self::Reconnecting { attempt, delay } => write!(
                f,
                "reconnecting in {} ms (attempt {attempt})",
                delay.as_millis()
            ),
            Self::Subscribed { granted: true } => f.write_str("commands subscribed"),
            Self::Subscribed { granted: false } => {
                f.write_str("commands subscription refused by the broker")
            }
            Self::ReadingQueued { seq } => write!(f, "reading {seq} queued"),
            Self::PublishFailed => f.write_str("publish could not be queued"),
            Self::PublishRejected { failure } => write!(f, "publish failed: {failure}"),
            Self::Command { name } => write!(f, "command {name} done"),
            Self::CommandRefused { error } => write!(f, "command refused: {error}"),
            Self::ReplyNotQueued => f.write_str("command reply dropped: outbox full"),
        }
    }
}
