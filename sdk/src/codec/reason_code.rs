//! Reason codes (MQTT 5.0 §2.4 and each packet's table) and the MQTT 3.1.1
//! CONNACK return codes (§3.2.2.3) and SUBACK return codes (§3.9.3), mapped
//! onto the 5.0 codes so the layers above see one type.
//!
//! It does not interpret codes beyond naming them and checking which packet
//! may carry which.

use core::fmt;

use super::fixed_header::PacketType;
use super::packet::ProtocolVersion;

/// An MQTT reason code: one byte, its meaning depending on the packet.
///
/// # MQTT 3.1.1
///
/// - CONNACK return codes (3.1.1 §3.2.2.3) are represented by their 5.0
///   equivalents, on decode and on encode ([`ReasonCode::from_v311_connack`],
///   [`ReasonCode::to_v311_connack`]): 0 → `0x00` [`SUCCESS`](Self::SUCCESS),
///   1 → `0x84` [`UNSUPPORTED_PROTOCOL_VERSION`](Self::UNSUPPORTED_PROTOCOL_VERSION),
///   2 → `0x85` [`CLIENT_IDENTIFIER_NOT_VALID`](Self::CLIENT_IDENTIFIER_NOT_VALID),
///   3 → `0x88` [`SERVER_UNAVAILABLE`](Self::SERVER_UNAVAILABLE),
///   4 → `0x86` [`BAD_USER_NAME_OR_PASSWORD`](Self::BAD_USER_NAME_OR_PASSWORD),
///   5 → `0x87` [`NOT_AUTHORIZED`](Self::NOT_AUTHORIZED). Return codes above
///   5 are refused on decode; a 5.0 code without a 3.1.1 equivalent is
///   refused on encode in 3.1.1.
/// - SUBACK return codes (3.1.1 §3.9.3) are the same bytes in both
///   versions: granted QoS 0, 1, 2 are `ReasonCode(0)`, `ReasonCode(1)`,
///   `ReasonCode(2)` ([`GRANTED_QOS_0`](Self::GRANTED_QOS_0) ...), and the
///   3.1.1 Failure `0x80` decodes as `ReasonCode(0x80)`, which is
///   [`UNSPECIFIED_ERROR`](Self::UNSPECIFIED_ERROR) and
///   [`is_error`](Self::is_error). No other code is valid in a 3.1.1
///   SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ReasonCode(pub u8);

macro_rules! reason_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $text:literal;)*) => {
        impl ReasonCode {
            $($(#[$doc])* pub const $name: Self = Self($value);)*

            /// The specification's name for this code, if it has one.
            /// (0x00 and 0x01/0x02 are named for their most common meaning.)
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

reason_codes! {
    /// 0x00 Success (also Normal disconnection, Granted QoS 0).
    SUCCESS = 0x00, "Success";
    /// 0x01 Granted QoS 1 (SUBACK).
    GRANTED_QOS_1 = 0x01, "Granted QoS 1";
    /// 0x02 Granted QoS 2 (SUBACK).
    GRANTED_QOS_2 = 0x02, "Granted QoS 2";
    /// 0x04 Disconnect with Will Message (DISCONNECT).
    DISCONNECT_WITH_WILL_MESSAGE = 0x04, "Disconnect with Will Message";
    /// 0x10 No matching subscribers (PUBACK, PUBREC).
    NO_MATCHING_SUBSCRIBERS = 0x10, "No matching subscribers";
    /// 0x11 No subscription existed (UNSUBACK).
    NO_SUBSCRIPTION_EXISTED = 0x11, "No subscription existed";
    /// 0x18 Continue authentication (AUTH).
    CONTINUE_AUTHENTICATION = 0x18, "Continue authentication";
    /// 0x19 Re-authenticate (AUTH).
    RE_AUTHENTICATE = 0x19, "Re-authenticate";
    /// 0x80 Unspecified error.
    UNSPECIFIED_ERROR = 0x80, "Unspecified error";
    /// 0x81 Malformed Packet.
    MALFORMED_PACKET = 0x81, "Malformed Packet";
    /// 0x82 Protocol Error.
    PROTOCOL_ERROR = 0x82, "Protocol Error";
    /// 0x83 Implementation specific error.
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83, "Implementation specific error";
    /// 0x84 Unsupported Protocol Version (3.1.1 return code 1).
    UNSUPPORTED_PROTOCOL_VERSION = 0x84, "Unsupported Protocol Version";
    /// 0x85 Client Identifier not valid (3.1.1 return code 2).
    CLIENT_IDENTIFIER_NOT_VALID = 0x85, "Client Identifier not valid";
    /// 0x86 Bad User Name or Password (3.1.1 return code 4).
    BAD_USER_NAME_OR_PASSWORD = 0x86, "Bad User Name or Password";
    /// 0x87 Not authorized (3.1.1 return code 5).
    NOT_AUTHORIZED = 0x87, "Not authorized";
    /// 0x88 Server unavailable (3.1.1 return code 3).
    SERVER_UNAVAILABLE = 0x88, "Server unavailable";
    /// 0x89 Server busy.
    SERVER_BUSY = 0x89, "Server busy";
    /// 0x8A Banned.
    BANNED = 0x8A, "Banned";
    /// 0x8B Server shutting down.
    SERVER_SHUTTING_DOWN = 0x8B, "Server shutting down";
    /// 0x8C Bad authentication method.
    BAD_AUTHENTICATION_METHOD = 0x8C, "Bad authentication method";
    /// 0x8D Keep Alive timeout.
    KEEP_ALIVE_TIMEOUT = 0x8D, "Keep Alive timeout";
    /// 0x8E Session taken over.
    SESSION_TAKEN_OVER = 0x8E, "Session taken over";
    /// 0x8F Topic Filter invalid.
    TOPIC_FILTER_INVALID = 0x8F, "Topic Filter invalid";
    /// 0x90 Topic Name invalid.
    TOPIC_NAME_INVALID = 0x90, "Topic Name invalid";
    /// 0x91 Packet Identifier in use.
    PACKET_IDENTIFIER_IN_USE = 0x91, "Packet Identifier in use";
    /// 0x92 Packet Identifier not found.
    PACKET_IDENTIFIER_NOT_FOUND = 0x92, "Packet Identifier not found";
    /// 0x93 Receive Maximum exceeded.
    RECEIVE_MAXIMUM_EXCEEDED = 0x93, "Receive Maximum exceeded";
    /// 0x94 Topic Alias invalid.
    TOPIC_ALIAS_INVALID = 0x94, "Topic Alias invalid";
    /// 0x95 Packet too large.
    PACKET_TOO_LARGE = 0x95, "Packet too large";
    /// 0x96 Message rate too high.
    MESSAGE_RATE_TOO_HIGH = 0x96, "Message rate too high";
    /// 0x97 Quota exceeded.
    QUOTA_EXCEEDED = 0x97, "Quota exceeded";
    /// 0x98 Administrative action.
    ADMINISTRATIVE_ACTION = 0x98, "Administrative action";
    /// 0x99 Payload format invalid.
    PAYLOAD_FORMAT_INVALID = 0x99, "Payload format invalid";
    /// 0x9A Retain not supported.
    RETAIN_NOT_SUPPORTED = 0x9A, "Retain not supported";
    /// 0x9B QoS not supported.
    QOS_NOT_SUPPORTED = 0x9B, "QoS not supported";
    /// 0x9C Use another server.
    USE_ANOTHER_SERVER = 0x9C, "Use another server";
    /// 0x9D Server moved.
    SERVER_MOVED = 0x9D, "Server moved";
    /// 0x9E Shared Subscriptions not supported.
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E, "Shared Subscriptions not supported";
    /// 0x9F Connection rate exceeded.
    CONNECTION_RATE_EXCEEDED = 0x9F, "Connection rate exceeded";
    /// 0xA0 Maximum connect time.
    MAXIMUM_CONNECT_TIME = 0xA0, "Maximum connect time";
    /// 0xA1 Subscription Identifiers not supported.
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1, "Subscription Identifiers not supported";
    /// 0xA2 Wildcard Subscriptions not supported.
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2, "Wildcard Subscriptions not supported";
}

const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_PUBREC: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_PUBCOMP: &[u8] = &[0x00, 0x92];
const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const SUBACK_V311: &[u8] = &[0x00, 0x01, 0x02, 0x80];
const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH: &[u8] = &[0x00, 0x18, 0x19];

/// 3.1.1 CONNACK return codes 0-5, by index, as 5.0 codes.
const V311_CONNACK: [ReasonCode; 6] = [
    ReasonCode::SUCCESS,
    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
    ReasonCode::SERVER_UNAVAILABLE,
    ReasonCode::BAD_USER_NAME_OR_PASSWORD,
    ReasonCode::NOT_AUTHORIZED,
];

impl ReasonCode {
    /// 0x00 Granted QoS 0 (SUBACK): the same byte as [`ReasonCode::SUCCESS`].
    pub const GRANTED_QOS_0: Self = Self(0x00);

    /// Whether the code signals a failure (0x80 and above, 5.0 §2.4).
    pub const fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// Whether `packet_type` may carry this code in `version`.
    ///
    /// In 3.1.1 only CONNACK (return codes, mapped) and SUBACK carry codes;
    /// for the other packets only [`ReasonCode::SUCCESS`] is representable.
    pub fn is_valid_for(self, packet_type: PacketType, version: ProtocolVersion) -> bool {
        let table: &[u8] = match (version, packet_type) {
            (ProtocolVersion::V311, PacketType::Connack) => {
                return Self::to_v311_connack(self).is_some();
            }
            (ProtocolVersion::V311, PacketType::Suback) => SUBACK_V311,
            (ProtocolVersion::V311, _) => &[0x00],
            (ProtocolVersion::V5, PacketType::Connack) => CONNACK_V5,
            (ProtocolVersion::V5, PacketType::Puback | PacketType::Pubrec) => PUBACK_PUBREC,
            (ProtocolVersion::V5, PacketType::Pubrel | PacketType::Pubcomp) => PUBREL_PUBCOMP,
            (ProtocolVersion::V5, PacketType::Suback) => SUBACK_V5,
            (ProtocolVersion::V5, PacketType::Unsuback) => UNSUBACK,
            (ProtocolVersion::V5, PacketType::Disconnect) => DISCONNECT,
            (ProtocolVersion::V5, PacketType::Auth) => AUTH,
            (ProtocolVersion::V5, _) => &[0x00],
        };
        table.contains(&self.0)
    }

    /// Maps a 3.1.1 CONNACK return code (0-5, §3.2.2.3) to its 5.0 code.
    pub const fn from_v311_connack(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::SUCCESS),
            1 => Some(Self::UNSUPPORTED_PROTOCOL_VERSION),
            2 => Some(Self::CLIENT_IDENTIFIER_NOT_VALID),
            3 => Some(Self::SERVER_UNAVAILABLE),
            4 => Some(Self::BAD_USER_NAME_OR_PASSWORD),
            5 => Some(Self::NOT_AUTHORIZED),
            _ => None,
        }
    }

    /// The 3.1.1 CONNACK return code for this code, if it has one.
    pub fn to_v311_connack(self) -> Option<u8> {
        V311_CONNACK
            .iter()
            .position(|c| *c == self)
            .and_then(|i| u8::try_from(i).ok())
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{:#04x} {name}", self.0),
            None => write!(f, "{:#04x}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_3_2_2_3_v311_return_codes_round_trip() {
        for code in 0u8..=5 {
            let rc = ReasonCode::from_v311_connack(code).unwrap();
            assert_eq!(rc.to_v311_connack(), Some(code));
            assert!(rc.is_valid_for(PacketType::Connack, ProtocolVersion::V311));
        }
        assert_eq!(ReasonCode::from_v311_connack(6), None);
        assert_eq!(ReasonCode::SERVER_BUSY.to_v311_connack(), None);
    }

    #[test]
    fn mqtt5_2_4_codes_checked_per_packet() {
        let v5 = ProtocolVersion::V5;
        assert!(ReasonCode::NO_MATCHING_SUBSCRIBERS.is_valid_for(PacketType::Puback, v5));
        assert!(!ReasonCode::NO_MATCHING_SUBSCRIBERS.is_valid_for(PacketType::Pubrel, v5));
        assert!(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND.is_valid_for(PacketType::Pubcomp, v5));
        assert!(!ReasonCode::GRANTED_QOS_1.is_valid_for(PacketType::Unsuback, v5));
        assert!(ReasonCode::RE_AUTHENTICATE.is_valid_for(PacketType::Auth, v5));
        assert!(!ReasonCode::RE_AUTHENTICATE.is_valid_for(PacketType::Disconnect, v5));
        assert!(!ReasonCode::GRANTED_QOS_1.is_valid_for(PacketType::Puback, ProtocolVersion::V311));
        assert_eq!(ReasonCode(0x92).name(), Some("Packet Identifier not found"));
        assert_eq!(ReasonCode(0x03).name(), None);
    }
}

#[derive(Clone, Copy)]
enum CodesRepr<'a> {
    /// Validated code bytes of a received SUBACK / UNSUBACK.
    Raw(&'a [u8]),
    /// Codes lent by the caller for emit.
    Slice(&'a [ReasonCode]),
}

/// The reason codes of a SUBACK or UNSUBACK, one per topic filter of the
/// request, in order: received bytes (validated at decode) or a caller's
/// slice. Equality compares the codes.
#[derive(Clone, Copy)]
pub struct ReasonCodes<'a>(CodesRepr<'a>);

impl Default for ReasonCodes<'_> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<'a> ReasonCodes<'a> {
    /// No codes (a 3.1.1 UNSUBACK).
    pub const EMPTY: Self = Self(CodesRepr::Raw(&[]));

    /// Codes lent by the caller, for emit.
    pub const fn from_slice(codes: &'a [ReasonCode]) -> Self {
        Self(CodesRepr::Slice(codes))
    }

    pub(crate) const fn from_raw(bytes: &'a [u8]) -> Self {
        Self(CodesRepr::Raw(bytes))
    }

    /// How many codes there are.
    pub const fn len(&self) -> usize {
        match self.0 {
            CodesRepr::Raw(b) => b.len(),
            CodesRepr::Slice(s) => s.len(),
        }
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The codes, in order.
    pub fn iter(&self) -> ReasonCodeIter<'a> {
        ReasonCodeIter(self.0)
    }
}

impl<'a> From<&'a [ReasonCode]> for ReasonCodes<'a> {
    fn from(codes: &'a [ReasonCode]) -> Self {
        Self::from_slice(codes)
    }
}

impl<'a> IntoIterator for ReasonCodes<'a> {
    type Item = ReasonCode;
    type IntoIter = ReasonCodeIter<'a>;
    fn into_iter(self) -> ReasonCodeIter<'a> {
        self.iter()
    }
}

impl PartialEq for ReasonCodes<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for ReasonCodes<'_> {}

impl fmt::Debug for ReasonCodes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over [`ReasonCodes`].
#[derive(Clone, Copy)]
pub struct ReasonCodeIter<'a>(CodesRepr<'a>);

impl fmt::Debug for ReasonCodeIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReasonCodeIter")
    }
}

impl Iterator for ReasonCodeIter<'_> {
    type Item = ReasonCode;

    fn next(&mut self) -> Option<ReasonCode> {
        match &mut self.0 {
            CodesRepr::Raw(bytes) => {
                let (&first, rest) = bytes.split_first()?;
                *bytes = rest;
                Some(ReasonCode(first))
            }
            CodesRepr::Slice(codes) => {
                let (&first, rest) = codes.split_first()?;
                *codes = rest;
                Some(first)
            }
        }
    }
}
