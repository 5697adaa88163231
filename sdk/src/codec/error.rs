//! The codec's errors: [`DecodeError`] for bytes that are not a valid packet,
//! [`EncodeError`] for a packet that cannot or must not be written, and the
//! [`Violation`] both wrap: one variant per rule of the specification, its
//! doc naming the normative statement (or section, where the rule has no
//! numbered statement).
//!
//! A short buffer is not an error: decoding reports it as
//! [`Decoded::Incomplete`](super::Decoded::Incomplete).

use core::fmt;

use super::fixed_header::PacketType;
use super::packet::ProtocolVersion;
use super::reason_code::ReasonCode;
use crate::topic::TopicError;

/// A rule of MQTT 3.1.1 / 5.0 that a packet breaks.
///
/// Decoding reports it inside [`DecodeError::Invalid`]; encoding checks the
/// same rules and reports them inside [`EncodeError::Invalid`], so what this
/// codec writes a strict peer accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A Variable Byte Integer (remaining length, property length,
    /// subscription identifier) continues past its fourth byte
    /// (3.1.1 §2.2.3, 5.0 §1.5.5: "a maximum of four bytes").
    VarintTooLong,
    /// A Variable Byte Integer uses more bytes than its value needs.
    /// 5.0 [MQTT-1.5.5-1]; MQTT 3.1.1 has no such statement and this codec
    /// applies the same rule there by choice (strictness), since no
    /// conforming sender produces such an encoding.
    NonMinimalVarint,
    /// On emit: a remaining length (or other Variable Byte Integer) above
    /// 268 435 455 (3.1.1 §2.2.3, 5.0 §1.5.5).
    RemainingLengthTooLarge {
        /// The length that did not fit.
        len: usize,
    },
    /// Packet type 0 (reserved in both versions) or 15 (AUTH, which MQTT
    /// 3.1.1 reserves): 3.1.1 §2.2.1 Table 2.1, 5.0 §2.1.2 Table 2-1.
    ReservedPacketType {
        /// The four-bit type value.
        value: u8,
    },
    /// Fixed-header flag bits other than those the packet type prescribes:
    /// 3.1.1 [MQTT-2.2.2-1], [MQTT-2.2.2-2]; PUBREL, SUBSCRIBE, UNSUBSCRIBE
    /// [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]; 5.0 §2.1.3.
    InvalidFixedHeaderFlags {
        /// The packet's type.
        packet_type: PacketType,
        /// The four flag bits received.
        flags: u8,
    },
    /// QoS 3: PUBLISH [MQTT-3.3.1-4]; Will QoS 3.1.1 [MQTT-3.1.2-14],
    /// 5.0 [MQTT-3.1.2-12]; subscription QoS 3.1.1 [MQTT-3-8.3-4], 5.0
    /// §3.8.3.1; Maximum QoS property above 1 (5.0 §3.2.2.3.4).
    InvalidQos,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    DupWithQos0,
    /// Packet identifier 0: 3.1.1 [MQTT-2.3.1-1], 5.0 [MQTT-2.2.1-3]. The
    /// acknowledgements echo an identifier, so 0 is refused there too.
    ZeroPacketId,
    /// On emit: a PUBLISH packet identifier missing at QoS 1/2 or present at
    /// QoS 0: 3.1.1 [MQTT-2.3.1-5], 5.0 [MQTT-2.2.1-2].
    PacketIdMismatch,
    /// A string that is not well-formed UTF-8 (surrogates and overlong forms
    /// included): 3.1.1 [MQTT-1.5.3-1], 5.0 [MQTT-1.5.4-1].
    InvalidUtf8,
    /// A string containing U+0000: 3.1.1 [MQTT-1.5.3-2], 5.0 [MQTT-1.5.4-2].
    NullCharacter,
    /// On emit: a string or binary field longer than 65 535 bytes
    /// (3.1.1 §1.5.3, 5.0 §1.5.4 and §1.5.6).
    StringTooLong {
        /// The field's length in bytes.
        len: usize,
    },
    /// A wildcard (`+`, `#`) in a topic name: PUBLISH [MQTT-3.3.2-2], Will
    /// Topic, 5.0 Response Topic [MQTT-3.3.2-14].
    WildcardInTopicName,
    /// An empty topic name [MQTT-4.7.3-1] (5.0 allows it in a PUBLISH that
    /// carries a Topic Alias, §3.3.2.3.4).
    EmptyTopicName,
    /// A topic filter that [`crate::topic::validate_filter`] refuses: empty
    /// [MQTT-4.7.3-1], a misplaced wildcard (3.1.1 [MQTT-4.7.1-2],
    /// [MQTT-4.7.1-3]; 5.0 [MQTT-4.7.1-1], [MQTT-4.7.1-2]), a malformed
    /// shared subscription [MQTT-4.8.2-1], [MQTT-4.8.2-2]. The topic error
    /// says which.
    InvalidTopicFilter(TopicError),
    /// SUBSCRIBE or UNSUBSCRIBE without a topic filter: 3.1.1 [MQTT-3.8.3-3],
    /// 5.0 [MQTT-3.8.3-2]; [MQTT-3.10.3-2].
    NoTopicFilters,
    /// SUBACK (or 5.0 UNSUBACK) without a reason code; they answer one per
    /// filter and a request has at least one: [MQTT-3.9.3-1],
    /// 5.0 [MQTT-3.11.3-1].
    NoReasonCodes,
    /// CONNECT protocol name other than "MQTT": 3.1.1 [MQTT-3.1.2-1],
    /// 5.0 §3.1.2.1.
    InvalidProtocolName,
    /// CONNECT protocol level other than 4 (3.1.1) or 5 (5.0):
    /// [MQTT-3.1.2-2]. A server answers with CONNACK 0x01 / 0x84.
    UnsupportedProtocolLevel {
        /// The level received.
        level: u8,
    },
    /// The reserved CONNECT flag (bit 0) set [MQTT-3.1.2-3].
    ReservedConnectFlag,
    /// Will QoS or Will Retain set without the Will Flag: 3.1.1
    /// [MQTT-3.1.2-13], [MQTT-3.1.2-15]; 5.0 [MQTT-3.1.2-11], [MQTT-3.1.2-13].
    WillFlagsWithoutWill,
    /// MQTT 3.1.1 password without user name [MQTT-3.1.2-22].
    PasswordWithoutUsername,
    /// CONNACK acknowledge flags bits 7-1 set: 3.1.1 §3.2.2.1, 5.0
    /// [MQTT-3.2.2-1].
    ReservedConnackFlags,
    /// CONNACK with Session Present and a failure code: 3.1.1
    /// [MQTT-3.2.2-4], 5.0 [MQTT-3.2.2-6].
    SessionPresentWithError,
    /// Reserved subscription option bits set: 3.1.1 [MQTT-3-8.3-4],
    /// 5.0 [MQTT-3.8.3-5]; or, on emit in 3.1.1, a 5.0-only option.
    ReservedSubscriptionOptions,
    /// Retain Handling 3 (5.0 §3.8.3.1: "a Protocol Error").
    InvalidRetainHandling,
    /// No Local on a shared subscription (5.0 [MQTT-3.8.3-4]).
    NoLocalOnSharedSubscription,
    /// A property identifier that MQTT 5.0 does not define (§2.2.2.2).
    UnknownProperty {
        /// The identifier.
        id: u32,
    },
    /// A property not valid for this packet (5.0 §2.2.2.2: "a Malformed
    /// Packet").
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// The packet it appeared in (CONNECT for Will properties).
        packet_type: PacketType,
    },
    /// A property given twice where it may appear once (5.0 §3.x.2.x,
    /// "It is a Protocol Error to include ... more than once").
    DuplicateProperty {
        /// The property identifier.
        id: u8,
    },
    /// A property value outside its range (5.0 §2.2.2.2 and the property's
    /// own section): a boolean byte other than 0/1, Receive Maximum 0,
    /// Maximum Packet Size 0, Topic Alias 0, Subscription Identifier 0.
    InvalidPropertyValue {
        /// The property identifier.
        id: u8,
    },
    /// Authentication Data without Authentication Method (5.0 §3.1.2.11.10,
    /// §3.2.2.3.18, §3.15.2.2.3).
    AuthenticationDataWithoutMethod,
    /// A reason code that the packet type does not allow (5.0 §2.4 and the
    /// packet's table; 3.1.1 CONNACK return codes 0-5, SUBACK 0/1/2/0x80),
    /// or, on emit in 3.1.1, one that has no 3.1.1 equivalent.
    InvalidReasonCode {
        /// The code.
        code: ReasonCode,
        /// The packet it appeared in.
        packet_type: PacketType,
    },
    /// A length field points past the end of the packet, or the remaining
    /// length ends inside a field (3.1.1 §2.2.3, 5.0 §1.5: a malformed
    /// packet).
    Truncated,
    /// Bytes left after the last field the packet defines (the remaining
    /// length disagrees with the contents).
    TrailingBytes,
    /// A packet type that flows only from client to server (CONNECT,
    /// SUBSCRIBE, UNSUBSCRIBE, PINGREQ) received by a client
    /// ([`Packet::decode_from_server`](super::Packet::decode_from_server)):
    /// 3.1.1 §2.2.1 Table 2.1, 5.0 §2.1.2 Table 2-1, direction of flow.
    NotSentByServer {
        /// The packet's type.
        packet_type: PacketType,
    },
}

impl Violation {
    /// The MQTT 5.0 reason code a receiver sends (DISCONNECT or CONNACK) for
    /// this violation: Malformed Packet (0x81), Protocol Error (0x82),
    /// Topic Name invalid (0x90), Unsupported Protocol Version (0x84).
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            Self::UnsupportedProtocolLevel { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            Self::WildcardInTopicName | Self::EmptyTopicName => ReasonCode::TOPIC_NAME_INVALID,
            Self::InvalidTopicFilter(_) => ReasonCode::TOPIC_FILTER_INVALID,
            Self::DuplicateProperty { .. }
            | Self::InvalidPropertyValue { .. }
            | Self::AuthenticationDataWithoutMethod
            | Self::InvalidRetainHandling
            | Self::NoLocalOnSharedSubscription
            | Self::InvalidProtocolName
            | Self::ZeroPacketId
            | Self::PacketIdMismatch
            | Self::NoTopicFilters
            | Self::NotSentByServer { .. } => ReasonCode::PROTOCOL_ERROR,
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VarintTooLong => f.write_str("variable byte integer longer than four bytes"),
            Self::NonMinimalVarint => {
                f.write_str("variable byte integer not in its shortest encoding")
            }
            Self::RemainingLengthTooLarge { len } => {
                write!(
                    f,
                    "length {len} exceeds the 268435455 a variable byte integer holds"
                )
            }
            Self::ReservedPacketType { value } => write!(f, "reserved packet type {value}"),
            Self::InvalidFixedHeaderFlags { packet_type, flags } => {
                write!(
                    f,
                    "invalid fixed header flags {flags:#06b} for {packet_type}"
                )
            }
            Self::InvalidQos => f.write_str("invalid QoS (3, or above the allowed maximum)"),
            Self::DupWithQos0 => f.write_str("DUP flag set on a QoS 0 PUBLISH"),
            Self::ZeroPacketId => f.write_str("packet identifier 0"),
            Self::PacketIdMismatch => {
                f.write_str("PUBLISH packet identifier must be present exactly when QoS > 0")
            }
            Self::InvalidUtf8 => f.write_str("string is not well-formed UTF-8"),
            Self::NullCharacter => f.write_str("string contains U+0000"),
            Self::StringTooLong { len } => {
                write!(f, "string or binary field of {len} bytes exceeds 65535")
            }
            Self::WildcardInTopicName => f.write_str("wildcard character in a topic name"),
            Self::EmptyTopicName => f.write_str("empty topic name"),
            Self::InvalidTopicFilter(e) => write!(f, "invalid topic filter: {e}"),
            Self::NoTopicFilters => f.write_str("SUBSCRIBE or UNSUBSCRIBE without topic filters"),
            Self::NoReasonCodes => f.write_str("acknowledgement without reason codes"),
            Self::InvalidProtocolName => f.write_str("CONNECT protocol name is not \"MQTT\""),
            Self::UnsupportedProtocolLevel { level } => {
                write!(f, "unsupported protocol level {level}")
            }
            Self::ReservedConnectFlag => f.write_str("reserved CONNECT flag set"),
            Self::WillFlagsWithoutWill => {
                f.write_str("Will QoS or Will Retain set without the Will Flag")
            }
            Self::PasswordWithoutUsername => f.write_str("password without user name (MQTT 3.1.1)"),
            Self::ReservedConnackFlags => f.write_str("reserved CONNACK flags set"),
            Self::SessionPresentWithError => {
                f.write_str("CONNACK Session Present set with a failure code")
            }
            Self::ReservedSubscriptionOptions => {
                f.write_str("reserved or unsupported subscription option bits set")
            }
            Self::InvalidRetainHandling => f.write_str("Retain Handling 3"),
            Self::NoLocalOnSharedSubscription => {
                f.write_str("No Local set on a shared subscription")
            }
            Self::UnknownProperty { id } => write!(f, "unknown property identifier {id:#04x}"),
            Self::PropertyNotAllowed { id, packet_type } => {
                write!(f, "property {id:#04x} is not allowed in {packet_type}")
            }
            Self::DuplicateProperty { id } => write!(f, "property {id:#04x} given twice"),
            Self::InvalidPropertyValue { id } => {
                write!(f, "property {id:#04x} has a value outside its range")
            }
            Self::AuthenticationDataWithoutMethod => {
                f.write_str("Authentication Data without Authentication Method")
            }
            Self::InvalidReasonCode { code, packet_type } => {
                write!(
                    f,
                    "reason code {:#04x} is not valid in {packet_type}",
                    code.0
                )
            }
            Self::Truncated => f.write_str("a field runs past the end of the packet"),
            Self::TrailingBytes => f.write_str("bytes left over after the last field"),
            Self::NotSentByServer { packet_type } => {
                write!(f, "{packet_type} flows only from client to server")
            }
        }
    }
}

impl core::error::Error for Violation {}

/// Why bytes could not be decoded into a packet.
///
/// Not being complete yet is not an error; see
/// [`Decoded::Incomplete`](super::Decoded::Incomplete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet (fixed header included) is larger than the configured
    /// maximum; detected from the fixed header alone, before the body is
    /// read (5.0 §3.1.2.11.4 / §3.2.2.3.6, reason code 0x95).
    PacketTooLarge {
        /// The packet's total size in bytes, or a lower bound of it when the
        /// remaining length was still incomplete.
        size: usize,
        /// The configured maximum.
        max: u32,
    },
    /// The bytes break a rule of the protocol.
    Invalid(Violation),
}

impl DecodeError {
    /// The MQTT 5.0 reason code a receiver sends for this error (Packet too
    /// large 0x95, else [`Violation::reason_code`]).
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            Self::Invalid(v) => v.reason_code(),
        }
    }
}

impl From<Violation> for DecodeError {
    fn from(v: Violation) -> Self {
        Self::Invalid(v)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum of {max}")
            }
            Self::Invalid(v) => write!(f, "invalid packet: {v}"),
        }
    }
}

impl core::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Invalid(v) => Some(v),
            Self::PacketTooLarge { .. } => None,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The lent buffer is too small; `required` bytes are needed.
    InsufficientSize {
        /// The buffer size the packet needs.
        required: usize,
    },
    /// The packet breaks a rule of the protocol; a strict peer would reject it.
    Invalid(Violation),
    /// The packet uses something the protocol version cannot express:
    /// AUTH, properties, reason codes or subscription options in MQTT 3.1.1.
    NotInVersion {
        /// What cannot be expressed.
        what: &'static str,
        /// The version it was encoded for.
        version: ProtocolVersion,
    },
}

impl From<Violation> for EncodeError {
    fn from(v: Violation) -> Self {
        Self::Invalid(v)
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InsufficientSize { required } => {
                write!(f, "buffer too small: the packet needs {required} bytes")
            }
            Self::Invalid(v) => write!(f, "packet not encodable: {v}"),
            Self::NotInVersion { what, version } => {
                write!(f, "{what} cannot be expressed in {version}")
            }
        }
    }
}

impl core::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Invalid(v) => Some(v),
            _ => None,
        }
    }
}
