//! What a [`Session`](super::Session) is built from: identity, credentials,
//! will, protocol choice, keepalive and every limit. Its `Debug` redacts
//! the password and shows the Will payload's length only.

use core::fmt;

use crate::codec::{ProtocolVersion, Will};
use crate::time::Duration;

/// Which protocol version to speak, chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolChoice {
    /// MQTT 3.1.1 only.
    V311,
    /// MQTT 5.0 only (feature `v5`).
    #[cfg(feature = "v5")]
    V5,
    /// MQTT 5.0, falling back to 3.1.1 for the following connects when a
    /// broker refuses 5.0 with Unsupported Protocol Version (0x84, or the
    /// 3.1.1 return code 1). A link lost before CONNACK keeps 5.0: it says
    /// nothing about the broker's version. Feature `v5`.
    #[cfg(feature = "v5")]
    V5WithFallback,
}

impl ProtocolChoice {
    pub(crate) const fn first(self) -> ProtocolVersion {
        match self {
            Self::V311 => ProtocolVersion::V311,
            #[cfg(feature = "v5")]
            Self::V5 | Self::V5WithFallback => ProtocolVersion::V5,
        }
    }

    /// Whether a refusal of 5.0 makes the next connects use 3.1.1.
    pub(crate) const fn falls_back(self) -> bool {
        #[cfg(feature = "v5")]
        {
            matches!(self, Self::V5WithFallback)
        }
        #[cfg(not(feature = "v5"))]
        {
            false
        }
    }
}

/// What [`Session::publish_with_policy`](super::Session::publish_with_policy)
/// does when the outbox has no room for a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Refuse the new message with [`SessionError::OutboxFull`](super::SessionError::OutboxFull).
    #[default]
    RejectNew,
    /// Drop the oldest QoS 0 messages not yet sent (each is reported with
    /// [`PublishFailure::Dropped`](super::PublishFailure::Dropped)) until the
    /// new one fits; refuse it if that is not enough.
    DropOldestQos0,
}

/// What the session does with a QoS 2 publish it had already sent when the
/// broker answers a reconnect with Session Present 0 (it lost the session,
/// and with it the packet identifier that made the delivery exactly once).
/// The broker may or may not have forwarded the message: mosquitto forwards
/// a QoS 2 message only on PUBREL, other brokers on receipt (5.0 §4.3.3
/// allows both). Either choice is reported per publish; see
/// docs/session.md, "QoS 2 across a session loss".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionLostPolicy {
    /// Send it again as a new publish (at least once: it may arrive twice)
    /// and raise [`Event::Republished`](super::Event::Republished) before it
    /// goes out. Nothing is lost.
    #[default]
    Republish,
    /// Drop it: it completes with
    /// [`PublishFailure::SessionLost`](super::PublishFailure::SessionLost)
    /// (at most once: it may never have arrived). Nothing is duplicated.
    Abandon,
}

/// Everything a session needs besides its buffers. Strings are borrowed for
/// the session's lifetime; nothing is copied. `Debug` prints the password
/// as `<redacted>` and the Will payload as its length.
#[derive(Clone, Copy)]
pub struct SessionConfig<'b> {
    /// Client identifier. Empty asks the broker to assign one (5.0) or
    /// requires `clean_start` (3.1.1 [MQTT-3.1.3-7]).
    pub client_id: &'b str,
    /// Protocol version(s) to use.
    pub protocol: ProtocolChoice,
    /// Clean Start (5.0) / Clean Session (3.1.1) on every CONNECT.
    pub clean_start: bool,
    /// Once a connection was accepted, reconnect with Clean Start = 0 even
    /// if `clean_start` is set: start clean at boot, then resume the session
    /// after each link loss (5.0 also needs `session_expiry_secs` > 0).
    pub resume_on_reconnect: bool,
    /// Keep Alive in seconds; 0 turns the keepalive mechanism off.
    pub keep_alive_secs: u16,
    /// How long to wait for PINGRESP after a PINGREQ before declaring the
    /// link dead. `None` means half the effective keepalive, so a half-open
    /// link is found within 1.5 × keepalive.
    pub ping_timeout: Option<Duration>,
    /// How long to wait for CONNACK after CONNECT was handed out.
    pub connect_timeout: Duration,
    /// User Name.
    pub username: Option<&'b str>,
    /// Password.
    pub password: Option<&'b [u8]>,
    /// Will message (its properties are 5.0 only).
    pub will: Option<Will<'b>>,
    /// 5.0 Session Expiry Interval in seconds sent in CONNECT.
    pub session_expiry_secs: Option<u32>,
    /// The largest packet we accept. Sent as 5.0 Maximum Packet Size and
    /// enforced on decode in both versions.
    pub max_incoming_packet_size: u32,
    /// Upper bound for the outbound in-flight window, below the `INFLIGHT`
    /// table size; the broker's Receive Maximum lowers it further.
    pub max_inflight: u16,
    /// What happens to QoS 2 publishes already sent when the broker lost
    /// the session ([`SessionLostPolicy::Republish`] by default).
    pub session_lost_policy: SessionLostPolicy,
}

impl fmt::Debug for SessionConfig<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("client_id", &self.client_id)
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("resume_on_reconnect", &self.resume_on_reconnect)
            .field("keep_alive_secs", &self.keep_alive_secs)
            .field("ping_timeout", &self.ping_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| Redacted))
            .field("will", &self.will)
            .field("session_expiry_secs", &self.session_expiry_secs)
            .field("max_incoming_packet_size", &self.max_incoming_packet_size)
            .field("max_inflight", &self.max_inflight)
            .finish()
    }
}

/// `<redacted>`, in place of the password.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'b> SessionConfig<'b> {
    /// A configuration with the given client identifier and defaults:
    /// 5.0 (3.1.1 without the `v5` feature), clean start, 60 s keepalive, 10 s connect timeout, no
    /// credentials, no will, 64 KiB incoming packets, QoS 2 republished
    /// after a session loss.
    pub const fn new(client_id: &'b str) -> Self {
        Self {
            client_id,
            #[cfg(feature = "v5")]
            protocol: ProtocolChoice::V5,
            #[cfg(not(feature = "v5"))]
            protocol: ProtocolChoice::V311,
            clean_start: true,
            resume_on_reconnect: false,
            keep_alive_secs: 60,
            ping_timeout: None,
            connect_timeout: Duration::from_secs(10),
            username: None,
            password: None,
            will: None,
            session_expiry_secs: None,
            max_incoming_packet_size: 65_536,
            max_inflight: u16::MAX,
            session_lost_policy: SessionLostPolicy::Republish,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::format;

    use super::*;
    use crate::codec::{Properties, QoS};

    #[test]
    fn debug_redacts_the_password_and_the_will_payload() {
        let mut c = SessionConfig::new("dev-1");
        c.username = Some("alice");
        c.password = Some(b"hunter2-password");
        c.will = Some(Will {
            topic: "devices/dev-1/status",
            payload: b"offline-secret",
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::NONE,
        });
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("offline-secret"), "{shown}");
        // Nor as the bytes' numbers ('h', 'u' = 104, 117).
        assert!(!shown.contains("104, 117"), "{shown}");
        assert!(shown.contains("password: Some(<redacted>)"), "{shown}");
        assert!(shown.contains("payload: <14 bytes>"), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("dev-1"),
            "{shown}"
        );
    }
}
