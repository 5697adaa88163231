//! MQTT 5.0 properties (§2.2.2): decoded once into a validated view that
//! borrows the packet's bytes, or built for emit from a [`PropertyFields`]
//! value with `Option` fields and borrowed user-property pairs. Neither
//! allocates.
//!
//! Decoding checks, once: every identifier is defined (§2.2.2.2) and allowed
//! in the packet (Table 2-4), single-valued properties appear once, values
//! are in range (booleans 0/1, Receive Maximum, Maximum Packet Size, Topic
//! Alias and Subscription Identifier non-zero, Maximum QoS 0/1, Response
//! Topic without wildcards), strings are well-formed UTF-8, and
//! Authentication Data comes with an Authentication Method. Accessors and
//! [`Properties::iter`] then read the bytes lazily. Encoding checks the same.
//!
//! It does not interpret properties (topic aliases, flow control, ...): the
//! session does.

use core::fmt;

use super::error::{EncodeError, Violation};
use super::fixed_header::PacketType;
use super::packet::QoS;
use super::topic_syntax;
use super::wire::{self, Reader, Writer};

/// Property identifiers (5.0 §2.2.2.2, Table 2-4).
pub mod id {
    /// Payload Format Indicator (byte).
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    /// Message Expiry Interval (four-byte integer).
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    /// Content Type (UTF-8 string).
    pub const CONTENT_TYPE: u8 = 0x03;
    /// Response Topic (UTF-8 string).
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Correlation Data (binary).
    pub const CORRELATION_DATA: u8 = 0x09;
    /// Subscription Identifier (variable byte integer).
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    /// Session Expiry Interval (four-byte integer).
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    /// Assigned Client Identifier (UTF-8 string).
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    /// Server Keep Alive (two-byte integer).
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// Authentication Method (UTF-8 string).
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    /// Authentication Data (binary).
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    /// Request Problem Information (byte).
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    /// Will Delay Interval (four-byte integer).
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    /// Request Response Information (byte).
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    /// Response Information (UTF-8 string).
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    /// Server Reference (UTF-8 string).
    pub const SERVER_REFERENCE: u8 = 0x1C;
    /// Reason String (UTF-8 string).
    pub const REASON_STRING: u8 = 0x1F;
    /// Receive Maximum (two-byte integer).
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// Topic Alias Maximum (two-byte integer).
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// Topic Alias (two-byte integer).
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// Maximum QoS (byte).
    pub const MAXIMUM_QOS: u8 = 0x24;
    /// Retain Available (byte).
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    /// User Property (UTF-8 string pair).
    pub const USER_PROPERTY: u8 = 0x26;
    /// Maximum Packet Size (four-byte integer).
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    /// Wildcard Subscription Available (byte).
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    /// Subscription Identifier Available (byte).
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    /// Shared Subscription Available (byte).
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Where a property block sits: a packet type, or the Will inside CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropertyContext {
    Packet(PacketType),
    Will,
    /// A block encoded on its own ([`Properties::encode`]): every
    /// identifier allowed, User Property and Subscription Identifier
    /// repeatable.
    Any,
}

const fn bit(id: u8) -> u64 {
    match 1u64.checked_shl(id as u32) {
        Some(b) => b,
        None => 0,
    }
}

impl PropertyContext {
    fn packet_type(self) -> PacketType {
        match self {
            Self::Packet(t) => t,
            // `Any` allows every identifier, so no error names it; CONNECT
            // stands in.
            Self::Will | Self::Any => PacketType::Connect,
        }
    }

    /// Table 2-4: which identifiers each packet may carry.
    fn allowed(self) -> u64 {
        use id::*;
        let user = bit(USER_PROPERTY);
        let reason = bit(REASON_STRING) | user;
        let message = bit(PAYLOAD_FORMAT_INDICATOR)
            | bit(MESSAGE_EXPIRY_INTERVAL)
            | bit(CONTENT_TYPE)
            | bit(RESPONSE_TOPIC)
            | bit(CORRELATION_DATA)
            | user;
        match self {
            Self::Any => u64::MAX,
            Self::Will => message | bit(WILL_DELAY_INTERVAL),
            Self::Packet(t) => match t {
                PacketType::Connect => {
                    bit(SESSION_EXPIRY_INTERVAL)
                        | bit(AUTHENTICATION_METHOD)
                        | bit(AUTHENTICATION_DATA)
                        | bit(REQUEST_PROBLEM_INFORMATION)
                        | bit(REQUEST_RESPONSE_INFORMATION)
                        | bit(RECEIVE_MAXIMUM)
                        | bit(TOPIC_ALIAS_MAXIMUM)
                        | bit(MAXIMUM_PACKET_SIZE)
                        | user
                }
                PacketType::Connack => {
                    bit(SESSION_EXPIRY_INTERVAL)
                        | bit(ASSIGNED_CLIENT_IDENTIFIER)
                        | bit(SERVER_KEEP_ALIVE)
                        | bit(AUTHENTICATION_METHOD)
                        | bit(AUTHENTICATION_DATA)
                        | bit(RESPONSE_INFORMATION)
                        | bit(SERVER_REFERENCE)
                        | bit(RECEIVE_MAXIMUM)
                        | bit(TOPIC_ALIAS_MAXIMUM)
                        | bit(MAXIMUM_QOS)
                        | bit(RETAIN_AVAILABLE)
                        | bit(MAXIMUM_PACKET_SIZE)
                        | bit(WILDCARD_SUBSCRIPTION_AVAILABLE)
                        | bit(SUBSCRIPTION_IDENTIFIER_AVAILABLE)
                        | bit(SHARED_SUBSCRIPTION_AVAILABLE)
                        | reason
                }
                PacketType::Publish => message | bit(SUBSCRIPTION_IDENTIFIER) | bit(TOPIC_ALIAS),
                PacketType::Puback
                | PacketType::Pubrec
                | PacketType::Pubrel
                | PacketType::Pubcomp
                | PacketType::Suback
                | PacketType::Unsuback => reason,
                PacketType::Subscribe => bit(SUBSCRIPTION_IDENTIFIER) | user,
                PacketType::Unsubscribe => user,
                PacketType::Disconnect => {
                    bit(SESSION_EXPIRY_INTERVAL) | bit(SERVER_REFERENCE) | reason
                }
                PacketType::Auth => bit(AUTHENTICATION_METHOD) | bit(AUTHENTICATION_DATA) | reason,
                PacketType::Pingreq | PacketType::Pingresp => 0,
            },
        }
    }

    /// Whether `id` may appear here.
    pub(crate) fn allows(self, id: u8) -> bool {
        id < 64 && self.allowed() & bit(id) != 0
    }

    fn check_allowed(self, id: u8) -> Result<(), Violation> {
        if !self.allows(id) {
            return Err(Violation::PropertyNotAllowed {
                id,
                packet_type: self.packet_type(),
            });
        }
        Ok(())
    }

    /// Whether `id` may appear more than once here.
    fn repeatable(self, id: u8) -> bool {
        id == id::USER_PROPERTY
            || (id == id::SUBSCRIPTION_IDENTIFIER
                && matches!(self, Self::Packet(PacketType::Publish) | Self::Any))
    }
}

/// A User Property: a name/value pair of UTF-8 strings (5.0 §3.1.2.11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserProperty<'a> {
    /// The name.
    pub name: &'a str,
    /// The value.
    pub value: &'a str,
}

/// One MQTT 5.0 property, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Property<'a> {
    /// 0x01: the payload is UTF-8 (`true`) or unspecified bytes.
    PayloadFormatIndicator(bool),
    /// 0x02: seconds until the message expires.
    MessageExpiryInterval(u32),
    /// 0x03: the payload's content type.
    ContentType(&'a str),
    /// 0x08: the topic for a response.
    ResponseTopic(&'a str),
    /// 0x09: correlation data for a response.
    CorrelationData(&'a [u8]),
    /// 0x0B: a subscription identifier (1 to 268 435 455).
    SubscriptionIdentifier(u32),
    /// 0x11: seconds the session outlives the connection.
    SessionExpiryInterval(u32),
    /// 0x12: the client identifier the server assigned.
    AssignedClientIdentifier(&'a str),
    /// 0x13: the keep alive the server imposes.
    ServerKeepAlive(u16),
    /// 0x15: the extended authentication method.
    AuthenticationMethod(&'a str),
    /// 0x16: extended authentication data.
    AuthenticationData(&'a [u8]),
    /// 0x17: whether the server may send reason strings and user properties
    /// on failures.
    RequestProblemInformation(bool),
    /// 0x18: seconds before the will is published.
    WillDelayInterval(u32),
    /// 0x19: whether the client asks for Response Information.
    RequestResponseInformation(bool),
    /// 0x1A: the basis for response topics.
    ResponseInformation(&'a str),
    /// 0x1C: another server to use.
    ServerReference(&'a str),
    /// 0x1F: a human-readable reason.
    ReasonString(&'a str),
    /// 0x21: how many QoS 1/2 publishes the sender accepts at once (non-zero).
    ReceiveMaximum(u16),
    /// 0x22: the highest topic alias the sender accepts.
    TopicAliasMaximum(u16),
    /// 0x23: a topic alias (non-zero).
    TopicAlias(u16),
    /// 0x24: the highest QoS the server supports (0 or 1; absent means 2).
    MaximumQos(QoS),
    /// 0x25: whether the server supports retained messages.
    RetainAvailable(bool),
    /// 0x26: a user property (may repeat; order is kept).
    UserProperty(UserProperty<'a>),
    /// 0x27: the largest packet the sender accepts (non-zero).
    MaximumPacketSize(u32),
    /// 0x28: whether the server supports wildcard subscriptions.
    WildcardSubscriptionAvailable(bool),
    /// 0x29: whether the server supports subscription identifiers.
    SubscriptionIdentifierAvailable(bool),
    /// 0x2A: whether the server supports shared subscriptions.
    SharedSubscriptionAvailable(bool),
}

/// How a property's value is carried (5.0 §1.5, §2.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// One byte (booleans, Maximum QoS).
    Byte,
    /// Two-byte integer.
    Two,
    /// Four-byte integer.
    Four,
    /// Variable Byte Integer.
    Varint,
    /// UTF-8 string.
    Str,
    /// Binary data.
    Bin,
    /// UTF-8 string pair.
    Pair,
}

/// The [`Wire`] type of each identifier MQTT 5.0 defines, indexed by
/// identifier (Table 2-4); `None` for the identifiers it does not define.
const WIRE: [Option<Wire>; 0x2B] = {
    use Wire::*;
    [
        None,         // 0x00
        Some(Byte),   // 0x01 Payload Format Indicator
        Some(Four),   // 0x02 Message Expiry Interval
        Some(Str),    // 0x03 Content Type
        None,         // 0x04
        None,         // 0x05
        None,         // 0x06
        None,         // 0x07
        Some(Str),    // 0x08 Response Topic
        Some(Bin),    // 0x09 Correlation Data
        None,         // 0x0A
        Some(Varint), // 0x0B Subscription Identifier
        None,         // 0x0C
        None,         // 0x0D
        None,         // 0x0E
        None,         // 0x0F
        None,         // 0x10
        Some(Four),   // 0x11 Session Expiry Interval
        Some(Str),    // 0x12 Assigned Client Identifier
        Some(Two),    // 0x13 Server Keep Alive
        None,         // 0x14
        Some(Str),    // 0x15 Authentication Method
        Some(Bin),    // 0x16 Authentication Data
        Some(Byte),   // 0x17 Request Problem Information
        Some(Four),   // 0x18 Will Delay Interval
        Some(Byte),   // 0x19 Request Response Information
        Some(Str),    // 0x1A Response Information
        None,         // 0x1B
        Some(Str),    // 0x1C Server Reference
        None,         // 0x1D
        None,         // 0x1E
        Some(Str),    // 0x1F Reason String
        None,         // 0x20
        Some(Two),    // 0x21 Receive Maximum
        Some(Two),    // 0x22 Topic Alias Maximum
        Some(Two),    // 0x23 Topic Alias
        Some(Byte),   // 0x24 Maximum QoS
        Some(Byte),   // 0x25 Retain Available
        Some(Pair),   // 0x26 User Property
        Some(Four),   // 0x27 Maximum Packet Size
        Some(Byte),   // 0x28 Wildcard Subscription Available
        Some(Byte),   // 0x29 Subscription Identifier Available
        Some(Byte),   // 0x2A Shared Subscription Available
    ]
};

/// A value as read by its [`Wire`] type, before it becomes a [`Property`].
#[derive(Clone, Copy)]
enum Value<'a> {
    Int(u32),
    Str(&'a str),
    Bin(&'a [u8]),
    Pair(UserProperty<'a>),
}

impl<'a> Property<'a> {
    /// The property's identifier.
    pub const fn id(&self) -> u8 {
        use id::*;
        match self {
            Self::PayloadFormatIndicator(_) => PAYLOAD_FORMAT_INDICATOR,
            Self::MessageExpiryInterval(_) => MESSAGE_EXPIRY_INTERVAL,
            Self::ContentType(_) => CONTENT_TYPE,
            Self::ResponseTopic(_) => RESPONSE_TOPIC,
            Self::CorrelationData(_) => CORRELATION_DATA,
            Self::SubscriptionIdentifier(_) => SUBSCRIPTION_IDENTIFIER,
            Self::SessionExpiryInterval(_) => SESSION_EXPIRY_INTERVAL,
            Self::AssignedClientIdentifier(_) => ASSIGNED_CLIENT_IDENTIFIER,
            Self::ServerKeepAlive(_) => SERVER_KEEP_ALIVE,
            Self::AuthenticationMethod(_) => AUTHENTICATION_METHOD,
            Self::AuthenticationData(_) => AUTHENTICATION_DATA,
            Self::RequestProblemInformation(_) => REQUEST_PROBLEM_INFORMATION,
            Self::WillDelayInterval(_) => WILL_DELAY_INTERVAL,
            Self::RequestResponseInformation(_) => REQUEST_RESPONSE_INFORMATION,
            Self::ResponseInformation(_) => RESPONSE_INFORMATION,
            Self::ServerReference(_) => SERVER_REFERENCE,
            Self::ReasonString(_) => REASON_STRING,
            Self::ReceiveMaximum(_) => RECEIVE_MAXIMUM,
            Self::TopicAliasMaximum(_) => TOPIC_ALIAS_MAXIMUM,
            Self::TopicAlias(_) => TOPIC_ALIAS,
            Self::MaximumQos(_) => MAXIMUM_QOS,
            Self::RetainAvailable(_) => RETAIN_AVAILABLE,
            Self::UserProperty(_) => USER_PROPERTY,
            Self::MaximumPacketSize(_) => MAXIMUM_PACKET_SIZE,
            Self::WildcardSubscriptionAvailable(_) => WILDCARD_SUBSCRIPTION_AVAILABLE,
            Self::SubscriptionIdentifierAvailable(_) => SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            Self::SharedSubscriptionAvailable(_) => SHARED_SUBSCRIPTION_AVAILABLE,
        }
    }

    /// Reads one property (identifier and value) and checks its value.
    ///
    /// Table-driven: the identifier's [`Wire`] type says how to read the
    /// value (one reader per type, not one per property), and
    /// [`Property::from_value`] gives it its variant.
    fn read(r: &mut Reader<'a>) -> Result<Self, Violation> {
        let raw_id = r.varint()?;
        let unknown = Violation::UnknownProperty { id: raw_id };
        let id = u8::try_from(raw_id).map_err(|_| unknown)?;
        let wire = WIRE
            .get(usize::from(id))
            .copied()
            .flatten()
            .ok_or(unknown)?;
        let value = match wire {
            Wire::Byte => Value::Int(u32::from(r.u8()?)),
            Wire::Two => Value::Int(u32::from(r.u16()?)),
            Wire::Four => Value::Int(r.u32()?),
            Wire::Varint => Value::Int(r.varint()?),
            Wire::Str => Value::Str(r.utf8()?),
            Wire::Bin => Value::Bin(r.binary()?),
            Wire::Pair => Value::Pair(UserProperty {
                name: r.utf8()?,
                value: r.utf8()?,
            }),
        };
        let property = Self::from_value(id, value).ok_or(Violation::InvalidPropertyValue { id })?;
        property.check_value()?;
        Ok(property)
    }

    /// The property `id` with a value read as its [`Wire`] type says;
    /// `None` for a byte that is not a valid boolean or Maximum QoS.
    fn from_value(id: u8, value: Value<'a>) -> Option<Self> {
        use id::*;
        let (n, s, b) = match value {
            Value::Int(n) => (n, "", &[][..]),
            Value::Str(s) => (0, s, &[][..]),
            Value::Bin(b) => (0, "", b),
            Value::Pair(u) => return Some(Self::UserProperty(u)),
        };
        let flag = || match n {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        // Two-byte values were read from two bytes.
        let short = u16::try_from(n).unwrap_or(u16::MAX);
        Some(match id {
            PAYLOAD_FORMAT_INDICATOR => Self::PayloadFormatIndicator(flag()?),
            MESSAGE_EXPIRY_INTERVAL => Self::MessageExpiryInterval(n),
            CONTENT_TYPE => Self::ContentType(s),
            RESPONSE_TOPIC => Self::ResponseTopic(s),
            CORRELATION_DATA => Self::CorrelationData(b),
            SUBSCRIPTION_IDENTIFIER => Self::SubscriptionIdentifier(n),
            SESSION_EXPIRY_INTERVAL => Self::SessionExpiryInterval(n),
            ASSIGNED_CLIENT_IDENTIFIER => Self::AssignedClientIdentifier(s),
            SERVER_KEEP_ALIVE => Self::ServerKeepAlive(short),
            AUTHENTICATION_METHOD => Self::AuthenticationMethod(s),
            AUTHENTICATION_DATA => Self::AuthenticationData(b),
            REQUEST_PROBLEM_INFORMATION => Self::RequestProblemInformation(flag()?),
            WILL_DELAY_INTERVAL => Self::WillDelayInterval(n),
            REQUEST_RESPONSE_INFORMATION => Self::RequestResponseInformation(flag()?),
            RESPONSE_INFORMATION => Self::ResponseInformation(s),
            SERVER_REFERENCE => Self::ServerReference(s),
            REASON_STRING => Self::ReasonString(s),
            RECEIVE_MAXIMUM => Self::ReceiveMaximum(short),
            TOPIC_ALIAS_MAXIMUM => Self::TopicAliasMaximum(short),
            TOPIC_ALIAS => Self::TopicAlias(short),
            MAXIMUM_QOS => Self::MaximumQos(match n {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => return None,
            }),
            RETAIN_AVAILABLE => Self::RetainAvailable(flag()?),
            MAXIMUM_PACKET_SIZE => Self::MaximumPacketSize(n),
            WILDCARD_SUBSCRIPTION_AVAILABLE => Self::WildcardSubscriptionAvailable(flag()?),
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => Self::SubscriptionIdentifierAvailable(flag()?),
            SHARED_SUBSCRIPTION_AVAILABLE => Self::SharedSubscriptionAvailable(flag()?),
            _ => return None,
        })
    }

    /// The range rules of each property's section.
    fn check_value(&self) -> Result<(), Violation> {
        let id = self.id();
        let bad = Violation::InvalidPropertyValue { id };
        match *self {
            Self::ReceiveMaximum(0) | Self::TopicAlias(0) | Self::MaximumPacketSize(0) => Err(bad),
            Self::SubscriptionIdentifier(v) if v == 0 || v > wire::MAX_VARINT => Err(bad),
            Self::MaximumQos(QoS::ExactlyOnce) => Err(bad),
            // [MQTT-3.3.2-14]: the Response Topic is a topic name.
            Self::ResponseTopic(topic) => topic_syntax::check_name(topic),
            _ => Ok(()),
        }
    }

    fn value_len(&self) -> usize {
        match self {
            Self::PayloadFormatIndicator(_)
            | Self::RequestProblemInformation(_)
            | Self::RequestResponseInformation(_)
            | Self::MaximumQos(_)
            | Self::RetainAvailable(_)
            | Self::WildcardSubscriptionAvailable(_)
            | Self::SubscriptionIdentifierAvailable(_)
            | Self::SharedSubscriptionAvailable(_) => 1,
            Self::ServerKeepAlive(_)
            | Self::ReceiveMaximum(_)
            | Self::TopicAliasMaximum(_)
            | Self::TopicAlias(_) => 2,
            Self::MessageExpiryInterval(_)
            | Self::SessionExpiryInterval(_)
            | Self::WillDelayInterval(_)
            | Self::MaximumPacketSize(_) => 4,
            Self::SubscriptionIdentifier(v) => wire::varint_len(*v as usize),
            Self::ContentType(s)
            | Self::ResponseTopic(s)
            | Self::AssignedClientIdentifier(s)
            | Self::AuthenticationMethod(s)
            | Self::ResponseInformation(s)
            | Self::ServerReference(s)
            | Self::ReasonString(s) => 2 + s.len(),
            Self::CorrelationData(b) | Self::AuthenticationData(b) => 2 + b.len(),
            Self::UserProperty(u) => 4 + u.name.len() + u.value.len(),
        }
    }

    /// Bytes this property takes on the wire (identifier included).
    pub fn encoded_len(&self) -> usize {
        1 + self.value_len()
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(self.id())?;
        match *self {
            Self::PayloadFormatIndicator(b)
            | Self::RequestProblemInformation(b)
            | Self::RequestResponseInformation(b)
            | Self::RetainAvailable(b)
            | Self::WildcardSubscriptionAvailable(b)
            | Self::SubscriptionIdentifierAvailable(b)
            | Self::SharedSubscriptionAvailable(b) => w.u8(u8::from(b)),
            Self::MaximumQos(q) => w.u8(q as u8),
            Self::ServerKeepAlive(v)
            | Self::ReceiveMaximum(v)
            | Self::TopicAliasMaximum(v)
            | Self::TopicAlias(v) => w.u16(v),
            Self::MessageExpiryInterval(v)
            | Self::SessionExpiryInterval(v)
            | Self::WillDelayInterval(v)
            | Self::MaximumPacketSize(v) => w.u32(v),
            Self::SubscriptionIdentifier(v) => w.varint(v as usize),
            Self::ContentType(s)
            | Self::ResponseTopic(s)
            | Self::AssignedClientIdentifier(s)
            | Self::AuthenticationMethod(s)
            | Self::ResponseInformation(s)
            | Self::ServerReference(s)
            | Self::ReasonString(s) => w.utf8(s),
            Self::CorrelationData(b) | Self::AuthenticationData(b) => w.binary(b),
            Self::UserProperty(u) => {
                w.utf8(u.name)?;
                w.utf8(u.value)
            }
        }
    }
}

/// Properties to emit: set the fields the packet needs, leave the rest
/// `None` (start from [`PropertyFields::NONE`] or `Default`), and wrap it with
/// [`Properties::from_fields`].
///
/// Which fields a packet may carry is checked on encode (5.0 Table 2-4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PropertyFields<'a> {
    /// 0x01 Payload Format Indicator (PUBLISH, Will).
    pub payload_format_indicator: Option<bool>,
    /// 0x02 Message Expiry Interval (PUBLISH, Will).
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type (PUBLISH, Will).
    pub content_type: Option<&'a str>,
    /// 0x08 Response Topic (PUBLISH, Will).
    pub response_topic: Option<&'a str>,
    /// 0x09 Correlation Data (PUBLISH, Will).
    pub correlation_data: Option<&'a [u8]>,
    /// 0x11 Session Expiry Interval (CONNECT, CONNACK, DISCONNECT).
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier (CONNACK).
    pub assigned_client_identifier: Option<&'a str>,
    /// 0x13 Server Keep Alive (CONNACK).
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method (CONNECT, CONNACK, AUTH).
    pub authentication_method: Option<&'a str>,
    /// 0x16 Authentication Data (CONNECT, CONNACK, AUTH).
    pub authentication_data: Option<&'a [u8]>,
    /// 0x17 Request Problem Information (CONNECT).
    pub request_problem_information: Option<bool>,
    /// 0x18 Will Delay Interval (Will).
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information (CONNECT).
    pub request_response_information: Option<bool>,
    /// 0x1A Response Information (CONNACK).
    pub response_information: Option<&'a str>,
    /// 0x1C Server Reference (CONNACK, DISCONNECT).
    pub server_reference: Option<&'a str>,
    /// 0x1F Reason String (acknowledgements, DISCONNECT, AUTH).
    pub reason_string: Option<&'a str>,
    /// 0x21 Receive Maximum (CONNECT, CONNACK).
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum (CONNECT, CONNACK).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias (PUBLISH).
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS (CONNACK; 0 or 1).
    pub maximum_qos: Option<QoS>,
    /// 0x25 Retain Available (CONNACK).
    pub retain_available: Option<bool>,
    /// 0x27 Maximum Packet Size (CONNECT, CONNACK).
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available (CONNACK).
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29 Subscription Identifier Available (CONNACK).
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A Shared Subscription Available (CONNACK).
    pub shared_subscription_available: Option<bool>,
    /// 0x26 User Properties, in order (every packet).
    pub user_properties: &'a [UserProperty<'a>],
    /// 0x0B Subscription Identifiers (PUBLISH: any number; SUBSCRIBE: one).
    pub subscription_identifiers: &'a [u32],
    /// User Properties and Subscription Identifiers carried over, as a
    /// borrowed view, from decoded properties by [`Properties::to_fields`];
    /// written after the two slices above. Empty otherwise.
    pub carried: CarriedProperties<'a>,
}

/// The User Properties and Subscription Identifiers of a decoded property
/// block, kept as a view of its bytes so that [`Properties::to_fields`]
/// needs no storage. Only [`Properties::to_fields`] fills one; its bytes
/// were validated when the packet was decoded.
///
/// Equality compares the user properties and the subscription identifiers
/// in order.
#[derive(Clone, Copy, Default)]
pub struct CarriedProperties<'a> {
    /// A validated property block (without its length prefix).
    block: &'a [u8],
}

impl<'a> CarriedProperties<'a> {
    /// Nothing carried.
    pub const NONE: Self = Self { block: &[] };

    /// Whether nothing is carried.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The carried user properties, in wire order.
    pub fn user_properties(&self) -> impl Iterator<Item = UserProperty<'a>> + Clone + 'a {
        self.iter().filter_map(|p| match p {
            Property::UserProperty(u) => Some(u),
            _ => None,
        })
    }

    /// The carried subscription identifiers, in wire order.
    pub fn subscription_identifiers(&self) -> impl Iterator<Item = u32> + Clone + 'a {
        self.iter().filter_map(|p| match p {
            Property::SubscriptionIdentifier(v) => Some(v),
            _ => None,
        })
    }

    /// The carried properties (user properties and subscription
    /// identifiers only), in wire order.
    fn iter(&self) -> CarriedIter<'a> {
        CarriedIter(Reader::new(self.block))
    }
}

impl PartialEq for CarriedProperties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.user_properties().eq(other.user_properties())
            && self
                .subscription_identifiers()
                .eq(other.subscription_identifiers())
    }
}

impl Eq for CarriedProperties<'_> {}

impl fmt::Debug for CarriedProperties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The repeatable properties of a validated block, skipping the rest.
#[derive(Clone)]
struct CarriedIter<'a>(Reader<'a>);

impl<'a> Iterator for CarriedIter<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        while !self.0.is_empty() {
            // Validated at decode; a failure would end the iteration.
            let p = Property::read(&mut self.0).ok()?;
            if let Property::UserProperty(_) | Property::SubscriptionIdentifier(_) = p {
                return Some(p);
            }
        }
        None
    }
}

/// The number of single-valued properties (all but User Property and
/// Subscription Identifier).
const SINGLE_COUNT: usize = 25;

impl<'a> PropertyFields<'a> {
    /// No properties.
    pub const NONE: Self = Self {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
        user_properties: &[],
        subscription_identifiers: &[],
        carried: CarriedProperties::NONE,
    };

    /// The `index`th single-valued field as a property, in identifier order.
    fn single(&self, index: usize) -> Option<Property<'a>> {
        use Property as P;
        match index {
            0 => self.payload_format_indicator.map(P::PayloadFormatIndicator),
            1 => self.message_expiry_interval.map(P::MessageExpiryInterval),
            2 => self.content_type.map(P::ContentType),
            3 => self.response_topic.map(P::ResponseTopic),
            4 => self.correlation_data.map(P::CorrelationData),
            5 => self.session_expiry_interval.map(P::SessionExpiryInterval),
            6 => self
                .assigned_client_identifier
                .map(P::AssignedClientIdentifier),
            7 => self.server_keep_alive.map(P::ServerKeepAlive),
            8 => self.authentication_method.map(P::AuthenticationMethod),
            9 => self.authentication_data.map(P::AuthenticationData),
            10 => self
                .request_problem_information
                .map(P::RequestProblemInformation),
            11 => self.will_delay_interval.map(P::WillDelayInterval),
            12 => self
                .request_response_information
                .map(P::RequestResponseInformation),
            13 => self.response_information.map(P::ResponseInformation),
            14 => self.server_reference.map(P::ServerReference),
            15 => self.reason_string.map(P::ReasonString),
            16 => self.receive_maximum.map(P::ReceiveMaximum),
            17 => self.topic_alias_maximum.map(P::TopicAliasMaximum),
            18 => self.topic_alias.map(P::TopicAlias),
            19 => self.maximum_qos.map(P::MaximumQos),
            20 => self.retain_available.map(P::RetainAvailable),
            21 => self.maximum_packet_size.map(P::MaximumPacketSize),
            22 => self
                .wildcard_subscription_available
                .map(P::WildcardSubscriptionAvailable),
            23 => self
                .subscription_identifier_available
                .map(P::SubscriptionIdentifierAvailable),
            24 => self
                .shared_subscription_available
                .map(P::SharedSubscriptionAvailable),
            _ => None,
        }
    }
}

/// Slot of a single-valued property in [`PropertyFields::single`] order.
fn slot(id: u8) -> Option<usize> {
    use id::*;
    Some(match id {
        PAYLOAD_FORMAT_INDICATOR => 0,
        MESSAGE_EXPIRY_INTERVAL => 1,
        CONTENT_TYPE => 2,
        RESPONSE_TOPIC => 3,
        CORRELATION_DATA => 4,
        SESSION_EXPIRY_INTERVAL => 5,
        ASSIGNED_CLIENT_IDENTIFIER => 6,
        SERVER_KEEP_ALIVE => 7,
        AUTHENTICATION_METHOD => 8,
        AUTHENTICATION_DATA => 9,
        REQUEST_PROBLEM_INFORMATION => 10,
        WILL_DELAY_INTERVAL => 11,
        REQUEST_RESPONSE_INFORMATION => 12,
        RESPONSE_INFORMATION => 13,
        SERVER_REFERENCE => 14,
        REASON_STRING => 15,
        RECEIVE_MAXIMUM => 16,
        TOPIC_ALIAS_MAXIMUM => 17,
        TOPIC_ALIAS => 18,
        MAXIMUM_QOS => 19,
        RETAIN_AVAILABLE => 20,
        MAXIMUM_PACKET_SIZE => 21,
        WILDCARD_SUBSCRIPTION_AVAILABLE => 22,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => 23,
        SHARED_SUBSCRIPTION_AVAILABLE => 24,
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Repr<'a> {
    /// A validated property block (without its length prefix).
    Raw(&'a [u8]),
    /// Fields lent by the caller for emit.
    Fields(&'a PropertyFields<'a>),
}

/// The properties of one packet (or Will): a validated view of received
/// bytes, or fields lent for emit. Empty in MQTT 3.1.1.
///
/// Equality is semantic: the same single-valued properties, and the same
/// user properties and subscription identifiers in the same order, however
/// each side is held.
#[derive(Clone, Copy)]
pub struct Properties<'a>(Repr<'a>);

impl Default for Properties<'_> {
    fn default() -> Self {
        Self::NONE
    }
}

impl<'a> From<&'a PropertyFields<'a>> for Properties<'a> {
    fn from(fields: &'a PropertyFields<'a>) -> Self {
        Self::from_fields(fields)
    }
}

macro_rules! accessors {
    ($($(#[$doc:meta])* $name:ident -> $ty:ty = $variant:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> Option<$ty> {
                self.iter().find_map(|p| match p {
                    Property::$variant(v) => Some(v),
                    _ => None,
                })
            }
        )*
    };
}

impl<'a> Properties<'a> {
    /// No properties.
    pub const NONE: Self = Self(Repr::Raw(&[]));

    /// Properties to emit, lent by the caller.
    pub const fn from_fields(fields: &'a PropertyFields<'a>) -> Self {
        Self(Repr::Fields(fields))
    }

    /// Whether there are no properties at all.
    #[inline]
    pub fn is_empty(&self) -> bool {
        match self.0 {
            Repr::Raw(bytes) => bytes.is_empty(),
            Repr::Fields(_) => self.iter().next().is_none(),
        }
    }

    /// Whether this is an empty received block or [`Properties::NONE`]:
    /// a cheap test for the encoders' 3.1.1 fast paths (lent
    /// [`PropertyFields`] answer `false` even when empty; those paths then
    /// fall back to the full check).
    #[inline(always)]
    pub(crate) fn is_none(&self) -> bool {
        matches!(self.0, Repr::Raw(bytes) if bytes.is_empty())
    }

    /// Every property, lazily, in wire order (for received properties) or
    /// identifier order followed by user properties and subscription
    /// identifiers (for [`PropertyFields`]).
    // Out of line on devices: inlined, its two-way construction was
    // repeated at each of nine callers.
    #[cfg_attr(target_os = "none", inline(never))]
    pub fn iter(&self) -> PropertyIter<'a> {
        PropertyIter {
            inner: match self.0 {
                Repr::Raw(bytes) => IterRepr::Raw(Reader::new(bytes)),
                Repr::Fields(fields) => IterRepr::Fields {
                    fields,
                    index: 0,
                    carried: fields.carried.iter(),
                },
            },
        }
    }

    /// The user properties, in order.
    pub fn user_properties(&self) -> impl Iterator<Item = UserProperty<'a>> + Clone + 'a {
        self.iter().filter_map(|p| match p {
            Property::UserProperty(u) => Some(u),
            _ => None,
        })
    }

    /// The subscription identifiers, in order (PUBLISH may carry several).
    pub fn subscription_identifiers(&self) -> impl Iterator<Item = u32> + Clone + 'a {
        self.iter().filter_map(|p| match p {
            Property::SubscriptionIdentifier(v) => Some(v),
            _ => None,
        })
    }

    accessors! {
        /// 0x01 Payload Format Indicator: `true` for UTF-8.
        payload_format_indicator -> bool = PayloadFormatIndicator;
        /// 0x02 Message Expiry Interval in seconds.
        message_expiry_interval -> u32 = MessageExpiryInterval;
        /// 0x03 Content Type.
        content_type -> &'a str = ContentType;
        /// 0x08 Response Topic.
        response_topic -> &'a str = ResponseTopic;
        /// 0x09 Correlation Data.
        correlation_data -> &'a [u8] = CorrelationData;
        /// 0x11 Session Expiry Interval in seconds.
        session_expiry_interval -> u32 = SessionExpiryInterval;
        /// 0x12 Assigned Client Identifier.
        assigned_client_identifier -> &'a str = AssignedClientIdentifier;
        /// 0x13 Server Keep Alive in seconds.
        server_keep_alive -> u16 = ServerKeepAlive;
        /// 0x15 Authentication Method.
        authentication_method -> &'a str = AuthenticationMethod;
        /// 0x16 Authentication Data.
        authentication_data -> &'a [u8] = AuthenticationData;
        /// 0x17 Request Problem Information.
        request_problem_information -> bool = RequestProblemInformation;
        /// 0x18 Will Delay Interval in seconds.
        will_delay_interval -> u32 = WillDelayInterval;
        /// 0x19 Request Response Information.
        request_response_information -> bool = RequestResponseInformation;
        /// 0x1A Response Information.
        response_information -> &'a str = ResponseInformation;
        /// 0x1C Server Reference.
        server_reference -> &'a str = ServerReference;
        /// 0x1F Reason String.
        reason_string -> &'a str = ReasonString;
        /// 0x21 Receive Maximum.
        receive_maximum -> u16 = ReceiveMaximum;
        /// 0x22 Topic Alias Maximum.
        topic_alias_maximum -> u16 = TopicAliasMaximum;
        /// 0x23 Topic Alias.
        topic_alias -> u16 = TopicAlias;
        /// 0x24 Maximum QoS.
        maximum_qos -> QoS = MaximumQos;
        /// 0x25 Retain Available.
        retain_available -> bool = RetainAvailable;
        /// 0x27 Maximum Packet Size.
        maximum_packet_size -> u32 = MaximumPacketSize;
        /// 0x28 Wildcard Subscription Available.
        wildcard_subscription_available -> bool = WildcardSubscriptionAvailable;
        /// 0x29 Subscription Identifier Available.
        subscription_identifier_available -> bool = SubscriptionIdentifierAvailable;
        /// 0x2A Shared Subscription Available.
        shared_subscription_available -> bool = SharedSubscriptionAvailable;
    }

    /// Reads a property block (length prefix included) and validates it for
    /// `ctx`. Without the `v5` feature the block is skipped unread and the
    /// result is [`Properties::NONE`]: a 3.1.1-only build frames 5.0
    /// packets (its outbox records use the 5.0 layout) but reads no
    /// properties.
    pub(crate) fn decode(r: &mut Reader<'a>, ctx: PropertyContext) -> Result<Self, Violation> {
        let len = r.varint()?;
        let block = r.take(len as usize)?;
        if !cfg!(feature = "v5") {
            return Ok(Self::NONE);
        }
        let mut seen = 0u64;
        let mut inner = Reader::new(block);
        while !inner.is_empty() {
            let property = Property::read(&mut inner)?;
            let id = property.id();
            ctx.check_allowed(id)?;
            if seen & bit(id) != 0 && !ctx.repeatable(id) {
                return Err(Violation::DuplicateProperty { id });
            }
            seen |= bit(id);
        }
        check_auth_pair(seen)?;
        Ok(Self(Repr::Raw(block)))
    }

    /// The property block's length without its length prefix.
    fn body_len(&self) -> usize {
        match self.0 {
            Repr::Raw(bytes) => bytes.len(),
            Repr::Fields(_) => self.iter().map(|p| p.encoded_len()).sum(),
        }
    }

    /// Bytes the block takes on the wire, length prefix included (what
    /// [`Properties::encode`] writes; 1 for no properties).
    #[inline]
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        wire::varint_len(body) + body
    }

    /// Writes the property block on its own (length prefix included) into
    /// `buf` and returns its length, [`Properties::encoded_len`].
    ///
    /// Without a packet around it, only the checks that do not depend on
    /// the packet are made: values in range (as on decode), single-valued
    /// properties at most once (User Property and Subscription Identifier
    /// may repeat), Authentication Data only with a Method, strings without
    /// U+0000 and at most 65 535 bytes. Which properties a packet may carry
    /// (5.0 Table 2-4) is checked when the block is encoded in a packet. A
    /// buffer that is too short is [`EncodeError::InsufficientSize`].
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut w = Writer::new(buf);
        self.write(&mut w, PropertyContext::Any)?;
        Ok(w.position())
    }

    /// The same properties as a [`PropertyFields`], to change some and
    /// encode them again. Nothing is copied or allocated: strings and
    /// binary values borrow from the decoded bytes, and the User Properties
    /// and Subscription Identifiers stay a view of them in
    /// [`PropertyFields::carried`] (the two slices are left empty). For
    /// properties built from a [`PropertyFields`], that value is returned.
    ///
    /// `Properties::from_fields(&p.to_fields()) == p` for every `p`.
    pub fn to_fields(&self) -> PropertyFields<'a> {
        let block = match self.0 {
            Repr::Fields(fields) => return *fields,
            Repr::Raw(block) => block,
        };
        let mut f = PropertyFields::NONE;
        let mut carried = false;
        for p in self.iter() {
            match p {
                Property::PayloadFormatIndicator(v) => f.payload_format_indicator = Some(v),
                Property::MessageExpiryInterval(v) => f.message_expiry_interval = Some(v),
                Property::ContentType(v) => f.content_type = Some(v),
                Property::ResponseTopic(v) => f.response_topic = Some(v),
                Property::CorrelationData(v) => f.correlation_data = Some(v),
                Property::SessionExpiryInterval(v) => f.session_expiry_interval = Some(v),
                Property::AssignedClientIdentifier(v) => {
                    f.assigned_client_identifier = Some(v);
                }
                Property::ServerKeepAlive(v) => f.server_keep_alive = Some(v),
                Property::AuthenticationMethod(v) => f.authentication_method = Some(v),
                Property::AuthenticationData(v) => f.authentication_data = Some(v),
                Property::RequestProblemInformation(v) => {
                    f.request_problem_information = Some(v);
                }
                Property::WillDelayInterval(v) => f.will_delay_interval = Some(v),
                Property::RequestResponseInformation(v) => {
                    f.request_response_information = Some(v);
                }
                Property::ResponseInformation(v) => f.response_information = Some(v),
                Property::ServerReference(v) => f.server_reference = Some(v),
                Property::ReasonString(v) => f.reason_string = Some(v),
                Property::ReceiveMaximum(v) => f.receive_maximum = Some(v),
                Property::TopicAliasMaximum(v) => f.topic_alias_maximum = Some(v),
                Property::TopicAlias(v) => f.topic_alias = Some(v),
                Property::MaximumQos(v) => f.maximum_qos = Some(v),
                Property::RetainAvailable(v) => f.retain_available = Some(v),
                Property::MaximumPacketSize(v) => f.maximum_packet_size = Some(v),
                Property::WildcardSubscriptionAvailable(v) => {
                    f.wildcard_subscription_available = Some(v);
                }
                Property::SubscriptionIdentifierAvailable(v) => {
                    f.subscription_identifier_available = Some(v);
                }
                Property::SharedSubscriptionAvailable(v) => {
                    f.shared_subscription_available = Some(v);
                }
                Property::UserProperty(_) | Property::SubscriptionIdentifier(_) => carried = true,
            }
        }
        if carried {
            f.carried = CarriedProperties { block };
        }
        f
    }

    /// Validates for `ctx` and writes the block, length prefix included.
    pub(crate) fn write(
        &self,
        w: &mut Writer<'_>,
        ctx: PropertyContext,
    ) -> Result<(), EncodeError> {
        if !cfg!(feature = "v5") {
            // A 3.1.1-only build writes the empty block of the 5.0 layout
            // and refuses anything else.
            if !self.is_empty() {
                return Err(EncodeError::NotInVersion {
                    what: "properties (this build has no `v5` feature)",
                    version: super::packet::ProtocolVersion::V5,
                });
            }
            return w.varint(0);
        }
        if self.is_none() {
            // Nothing to check (issue 13: most publishes carry no
            // properties, and the walk below cost ~180 instructions each).
            return w.varint(0);
        }
        let mut seen = 0u64;
        for p in self.iter() {
            let id = p.id();
            ctx.check_allowed(id)?;
            if seen & bit(id) != 0 && !ctx.repeatable(id) {
                return Err(Violation::DuplicateProperty { id }.into());
            }
            seen |= bit(id);
            p.check_value()?;
        }
        check_auth_pair(seen)?;
        w.varint(self.body_len())?;
        match self.0 {
            Repr::Raw(bytes) => w.bytes(bytes),
            Repr::Fields(_) => self.iter().try_for_each(|p| p.write(w)),
        }
    }

    /// Single-valued properties by slot, for semantic comparison.
    fn slots(&self) -> [Option<Property<'a>>; SINGLE_COUNT] {
        let mut slots = [None; SINGLE_COUNT];
        for p in self.iter() {
            if let Some(s) = slot(p.id()).and_then(|i| slots.get_mut(i)) {
                *s = Some(p);
            }
        }
        slots
    }
}

fn check_auth_pair(seen: u64) -> Result<(), Violation> {
    if seen & bit(id::AUTHENTICATION_DATA) != 0 && seen & bit(id::AUTHENTICATION_METHOD) == 0 {
        return Err(Violation::AuthenticationDataWithoutMethod);
    }
    Ok(())
}

impl PartialEq for Properties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.slots() == other.slots()
            && self.user_properties().eq(other.user_properties())
            && self
                .subscription_identifiers()
                .eq(other.subscription_identifiers())
    }
}

impl Eq for Properties<'_> {}

impl fmt::Debug for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[derive(Clone)]
enum IterRepr<'a> {
    Raw(Reader<'a>),
    Fields {
        fields: &'a PropertyFields<'a>,
        index: usize,
        carried: CarriedIter<'a>,
    },
}

/// Iterator over [`Properties`], reading lazily.
#[derive(Clone)]
pub struct PropertyIter<'a> {
    inner: IterRepr<'a>,
}

impl fmt::Debug for PropertyIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PropertyIter")
    }
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        match &mut self.inner {
            IterRepr::Raw(r) => {
                // Without `v5` every decoded block is empty (see `decode`).
                if r.is_empty() || !cfg!(feature = "v5") {
                    return None;
                }
                // The block was validated at decode; a failure here cannot
                // happen, and would end the iteration rather than panic.
                Property::read(r).ok()
            }
            IterRepr::Fields {
                fields,
                index,
                carried,
            } => loop {
                let i = *index;
                if i < SINGLE_COUNT {
                    *index += 1;
                    if let Some(p) = fields.single(i) {
                        return Some(p);
                    }
                    continue;
                }
                let u = i - SINGLE_COUNT;
                if let Some(user) = fields.user_properties.get(u) {
                    *index += 1;
                    return Some(Property::UserProperty(*user));
                }
                let s = u - fields.user_properties.len();
                if let Some(v) = fields.subscription_identifiers.get(s) {
                    *index += 1;
                    return Some(Property::SubscriptionIdentifier(*v));
                }
                return carried.next();
            },
        }
    }
}

// Every case here is a 5.0 property block: without `v5` they are skipped
// unread (see `Properties::decode`).
#[cfg(all(test, feature = "v5"))]
mod tests {
    extern crate alloc;

    use super::*;

    fn decode(bytes: &[u8], ctx: PropertyContext) -> Result<Properties<'_>, Violation> {
        let mut r = Reader::new(bytes);
        let p = Properties::decode(&mut r, ctx)?;
        r.finish()?;
        Ok(p)
    }

    const PUBLISH: PropertyContext = PropertyContext::Packet(PacketType::Publish);

    #[test]
    fn mqtt5_2_2_2_properties_decoded_lazily() {
        let bytes = [
            9, 0x23, 0x00, 0x05, 0x0b, 0x01, 0x26, 0x00, 0x00, 0x00, 0x00,
        ];
        // Length 9 is one short of the user property's value: truncated.
        assert_eq!(decode(&bytes, PUBLISH), Err(Violation::Truncated));
        let bytes = [
            10, 0x23, 0x00, 0x05, 0x0b, 0x01, 0x26, 0x00, 0x01, b'k', 0x00, 0x00,
        ];
        assert_eq!(decode(&bytes, PUBLISH), Err(Violation::Truncated));
        let bytes = [
            11, 0x23, 0x00, 0x05, 0x0b, 0x01, 0x26, 0x00, 0x01, b'k', 0x00, 0x00,
        ];
        let p = decode(&bytes, PUBLISH).unwrap();
        assert_eq!(p.topic_alias(), Some(5));
        assert_eq!(
            p.subscription_identifiers().collect::<alloc::vec::Vec<_>>(),
            [1]
        );
        assert_eq!(
            p.user_properties().collect::<alloc::vec::Vec<_>>(),
            [UserProperty {
                name: "k",
                value: ""
            }]
        );
        assert_eq!(p.message_expiry_interval(), None);
        let users = [UserProperty {
            name: "k",
            value: "",
        }];
        let fields = PropertyFields {
            topic_alias: Some(5),
            subscription_identifiers: &[1],
            user_properties: &users,
            ..PropertyFields::NONE
        };
        assert_eq!(p, Properties::from_fields(&fields));
    }

    #[test]
    fn mqtt5_2_2_2_2_property_not_allowed_for_packet_rejected() {
        // Topic Alias in a PUBACK.
        assert_eq!(
            decode(
                &[3, 0x23, 0x00, 0x01],
                PropertyContext::Packet(PacketType::Puback)
            ),
            Err(Violation::PropertyNotAllowed {
                id: 0x23,
                packet_type: PacketType::Puback
            })
        );
        // Will Delay Interval in CONNECT itself (it belongs to the Will).
        assert_eq!(
            decode(
                &[5, 0x18, 0, 0, 0, 1],
                PropertyContext::Packet(PacketType::Connect)
            ),
            Err(Violation::PropertyNotAllowed {
                id: 0x18,
                packet_type: PacketType::Connect
            })
        );
        assert!(decode(&[5, 0x18, 0, 0, 0, 1], PropertyContext::Will).is_ok());
    }

    #[test]
    fn mqtt5_2_2_2_2_unknown_property_rejected() {
        assert_eq!(
            decode(&[2, 0x04, 0x00], PUBLISH),
            Err(Violation::UnknownProperty { id: 4 })
        );
    }

    #[test]
    fn mqtt5_3_3_2_3_duplicate_property_rejected() {
        assert_eq!(
            decode(&[4, 0x01, 0x00, 0x01, 0x01], PUBLISH),
            Err(Violation::DuplicateProperty { id: 0x01 })
        );
        // Subscription Identifier may repeat in PUBLISH, not in SUBSCRIBE.
        assert!(decode(&[4, 0x0b, 0x01, 0x0b, 0x02], PUBLISH).is_ok());
        assert_eq!(
            decode(
                &[4, 0x0b, 0x01, 0x0b, 0x02],
                PropertyContext::Packet(PacketType::Subscribe)
            ),
            Err(Violation::DuplicateProperty { id: 0x0b })
        );
    }

    #[test]
    fn mqtt5_3_2_2_3_property_values_out_of_range_rejected() {
        let connack = PropertyContext::Packet(PacketType::Connack);
        for (bytes, id) in [
            (&[3u8, 0x21, 0, 0][..], 0x21),     // Receive Maximum 0
            (&[2, 0x24, 2][..], 0x24),          // Maximum QoS 2
            (&[2, 0x25, 2][..], 0x25),          // Retain Available 2
            (&[5, 0x27, 0, 0, 0, 0][..], 0x27), // Maximum Packet Size 0
        ] {
            assert_eq!(
                decode(bytes, connack),
                Err(Violation::InvalidPropertyValue { id })
            );
        }
        assert_eq!(
            decode(&[3, 0x23, 0, 0], PUBLISH),
            Err(Violation::InvalidPropertyValue { id: 0x23 })
        );
        assert_eq!(
            decode(&[2, 0x0b, 0], PUBLISH),
            Err(Violation::InvalidPropertyValue { id: 0x0b })
        );
        assert_eq!(
            decode(&[2, 0x01, 2], PUBLISH),
            Err(Violation::InvalidPropertyValue { id: 0x01 })
        );
    }

    #[test]
    fn mqtt5_3_3_2_14_response_topic_with_wildcard_rejected() {
        assert_eq!(
            decode(&[4, 0x08, 0, 1, b'#'], PUBLISH),
            Err(Violation::WildcardInTopicName)
        );
    }

    #[test]
    fn mqtt5_3_1_2_11_10_auth_data_without_method_rejected() {
        assert_eq!(
            decode(
                &[3, 0x16, 0, 0],
                PropertyContext::Packet(PacketType::Connect)
            ),
            Err(Violation::AuthenticationDataWithoutMethod)
        );
    }

    #[test]
    fn fields_encode_then_decode_round_trip() {
        let users = [
            UserProperty {
                name: "a",
                value: "b",
            },
            UserProperty {
                name: "a",
                value: "c",
            },
        ];
        let fields = PropertyFields {
            session_expiry_interval: Some(60),
            receive_maximum: Some(10),
            maximum_packet_size: Some(1024),
            authentication_method: Some("SCRAM"),
            authentication_data: Some(b"xyz"),
            user_properties: &users,
            ..PropertyFields::NONE
        };
        let props = Properties::from_fields(&fields);
        let ctx = PropertyContext::Packet(PacketType::Connect);
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        props.write(&mut w, ctx).unwrap();
        let n = w.position();
        assert_eq!(n, props.encoded_len());
        let back = decode(&buf[..n], ctx).unwrap();
        assert_eq!(back, props);
        assert_eq!(back.authentication_data(), Some(&b"xyz"[..]));
        // Not allowed in a DISCONNECT: refused on emit as well.
        let mut w = Writer::new(&mut buf);
        assert_eq!(
            props.write(&mut w, PropertyContext::Packet(PacketType::Disconnect)),
            Err(EncodeError::Invalid(Violation::PropertyNotAllowed {
                id: 0x15,
                packet_type: PacketType::Disconnect
            }))
        );
    }
}
