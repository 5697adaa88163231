//! The session layer's error enum: broker misbehaviour, limits reached,
//! misuse, and wrapped codec and topic errors.

use core::fmt;

use crate::codec::{DecodeError, EncodeError, PacketType, ReasonCode};
use crate::topic::TopicError;

/// Something the broker did that the protocol forbids. The session closes
/// the link (with a 5.0 DISCONNECT carrying [`Self::reason_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A packet a server never sends, or one out of order (CONNACK twice,
    /// anything before CONNACK, SUBSCRIBE, PINGREQ, AUTH...).
    UnexpectedPacket {
        /// Its type.
        packet_type: PacketType,
    },
    /// A SUBACK or UNSUBACK whose number of reason codes differs from the
    /// number of filters requested [MQTT-3.9.3-1], [MQTT-3.11.3-1].
    ReasonCodeCountMismatch {
        /// Filters requested.
        expected: usize,
        /// Reason codes received.
        received: usize,
    },
    /// More unreleased QoS 2 messages than our Receive Maximum allows
    /// (5.0 §3.3.4, reason 0x93).
    ReceiveMaximumExceeded,
    /// 3.1.1: an unreleased inbound QoS 2 message could not be remembered:
    /// the `INFLIGHT` table is full and the identifiers held beyond it
    /// already form `V311_QOS2_RUNS` separate runs. Reason 0x93 (only sent
    /// in 5.0, where this cannot occur).
    InboundQos2TableFull {
        /// The session's `V311_QOS2_RUNS`.
        runs: usize,
    },
    /// A PUBLISH with a Topic Alias although we allow none (5.0 §3.3.2.3.4,
    /// reason 0x94).
    TopicAliasInvalid,
    /// CONNACK says Session Present although we asked for a clean start
    /// ([MQTT-3.2.2-2] in 5.0, [MQTT-3.2.2-1] in 3.1.1).
    SessionPresentOnCleanStart,
}

impl ProtocolViolation {
    /// The 5.0 reason code the DISCONNECT carries.
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            Self::UnexpectedPacket { .. }
            | Self::ReasonCodeCountMismatch { .. }
            | Self::SessionPresentOnCleanStart => ReasonCode::PROTOCOL_ERROR,
            Self::ReceiveMaximumExceeded | Self::InboundQos2TableFull { .. } => {
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED
            }
            Self::TopicAliasInvalid => ReasonCode::TOPIC_ALIAS_INVALID,
        }
    }
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedPacket { packet_type } => {
                write!(f, "broker sent an unexpected {packet_type:?} packet")
            }
            Self::ReasonCodeCountMismatch { expected, received } => write!(
                f,
                "acknowledgement carries {received} reason codes for {expected} topic filters"
            ),
            Self::ReceiveMaximumExceeded => {
                f.write_str("broker exceeded our Receive Maximum of unreleased QoS 2 messages")
            }
            Self::InboundQos2TableFull { runs } => write!(
                f,
                "unreleased inbound QoS 2 packet identifiers beyond INFLIGHT are scattered \
                 over more than {runs} runs (3.1.1): raise the session's V311_QOS2_RUNS"
            ),
            Self::TopicAliasInvalid => f.write_str("broker used a Topic Alias we did not allow"),
            Self::SessionPresentOnCleanStart => {
                f.write_str("CONNACK claims a stored session although Clean Start was set")
            }
        }
    }
}

impl core::error::Error for ProtocolViolation {}

/// A size limit a message can exceed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SizeLimit {
    /// The driver's transmit buffer.
    TransmitBuffer,
    /// The broker's 5.0 Maximum Packet Size (from its last CONNACK).
    BrokerMaximumPacketSize,
    /// The outbox itself (the message is larger than the whole buffer).
    Outbox,
}

impl fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TransmitBuffer => "transmit buffer",
            Self::BrokerMaximumPacketSize => "broker's Maximum Packet Size",
            Self::Outbox => "outbox",
        })
    }
}

/// Why a session call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// Received bytes are not a valid packet; the link must be closed.
    Decode(DecodeError),
    /// A packet could not be encoded (for example the transmit buffer is too
    /// small: [`EncodeError::InsufficientSize`]).
    Encode(EncodeError),
    /// A topic name or filter handed in by the application is invalid.
    Topic(TopicError),
    /// The broker broke the protocol; the link must be closed.
    Protocol(ProtocolViolation),
    /// The outbox has no room for the message (limit: the lent buffer).
    OutboxFull {
        /// Bytes the message needs in the outbox.
        needed: usize,
        /// Bytes free now.
        free: usize,
        /// The outbox size.
        capacity: usize,
    },
    /// The subscription table (`SUBS` entries) is full.
    SubscriptionTableFull {
        /// Its size.
        capacity: usize,
    },
    /// More topic filters in one request than [`MAX_FILTERS_PER_REQUEST`](super::MAX_FILTERS_PER_REQUEST),
    /// or none at all.
    FilterCount {
        /// Filters given.
        given: usize,
        /// The maximum per request.
        max: usize,
    },
    /// A topic filter longer than the `FILTER_LEN` the table stores.
    FilterTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// All 65 535 packet identifiers are in use.
    PacketIdsExhausted,
    /// The message can never be sent: its encoded PUBLISH exceeds a
    /// limit that does not depend on the outbox's fill level.
    PacketTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
        /// Which limit.
        limit: SizeLimit,
    },
    /// A payload writer ([`Session::publish_with`](super::Session::publish_with))
    /// ran out of room: the payload needs more than the `room` bytes left
    /// in the outbox for it.
    PayloadDoesNotFit {
        /// Bytes the writer had for the payload.
        room: usize,
        /// The outbox size.
        capacity: usize,
    },
    /// The call is not valid in the current state (for example
    /// `handle_connected` twice).
    InvalidState {
        /// The state the session is in.
        state: &'static str,
    },
}

impl From<DecodeError> for SessionError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl From<EncodeError> for SessionError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

impl From<TopicError> for SessionError {
    fn from(e: TopicError) -> Self {
        Self::Topic(e)
    }
}

impl From<ProtocolViolation> for SessionError {
    fn from(e: ProtocolViolation) -> Self {
        Self::Protocol(e)
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "received packet rejected: {e}"),
            Self::Encode(e) => write!(f, "packet not encoded: {e}"),
            Self::Topic(e) => write!(f, "invalid topic: {e}"),
            Self::Protocol(e) => write!(f, "protocol violation by the broker: {e}"),
            Self::OutboxFull {
                needed,
                free,
                capacity,
            } => write!(
                f,
                "outbox full: the message needs {needed} bytes, {free} of {capacity} are free"
            ),
            Self::SubscriptionTableFull { capacity } => {
                write!(f, "subscription table full ({capacity} entries)")
            }
            Self::FilterCount { given, max } => {
                write!(
                    f,
                    "{given} topic filters in one request; 1 to {max} are allowed"
                )
            }
            Self::FilterTooLong { len, max } => {
                write!(
                    f,
                    "topic filter of {len} bytes exceeds the stored maximum of {max}"
                )
            }
            Self::PacketTooLarge { size, max, limit } => {
                write!(
                    f,
                    "PUBLISH of {size} bytes exceeds the {limit} of {max} bytes"
                )
            }
            Self::PayloadDoesNotFit { room, capacity } => write!(
                f,
                "payload does not fit the {room} bytes left for it in the {capacity}-byte outbox"
            ),
            Self::PacketIdsExhausted => f.write_str("all packet identifiers are in use"),
            Self::InvalidState { state } => write!(f, "call not valid while {state}"),
        }
    }
}

impl core::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            Self::Encode(e) => Some(e),
            Self::Topic(e) => Some(e),
            Self::Protocol(e) => Some(e),
            _ => None,
        }
    }
}
