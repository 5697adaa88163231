//! The zero-copy MQTT 3.1.1 and 5.0 packet codec: every control packet of
//! both versions (CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP,
//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT,
//! and 5.0's AUTH), decoded into views that borrow the input and encoded
//! into a buffer the caller lends. No allocation, no I/O, no panics on any
//! input.
//!
//! # API in brief
//!
//! - [`ProtocolVersion`] `{ V311, V5 }`; [`DecodeOptions`]
//!   `{ version, max_packet_size }` (`DecodeOptions::new(v)`).
//! - [`FixedHeader::decode`]`(buf, &opts) -> Result<Decoded<FixedHeader>, DecodeError>`:
//!   the framing step. Type, flags and remaining length from at most five
//!   bytes; the maximum packet size is enforced here, before the body.
//! - [`Packet::decode`]`(buf, &opts) -> Result<Decoded<Packet<'_>>, DecodeError>`:
//!   [`Decoded::Complete`]` { value, len }` (the packet and the bytes it
//!   took) or [`Decoded::Incomplete`]` { needed }` (not an error; nothing
//!   consumed). [`Packet::decode_body`] decodes a body after a separate
//!   [`FixedHeader::decode`]. A client uses [`Packet::decode_from_server`],
//!   which refuses the client-to-server packet types
//!   ([`Violation::NotSentByServer`]) without carrying their decoders.
//! - [`Packet::encode`]`(&self, &mut [u8], version) -> Result<usize, EncodeError>`
//!   and [`Packet::encoded_len`]`(version)`. CONNECT is always written in its
//!   own [`Connect::protocol_version`].
//! - [`Packet`] has one variant per packet type, holding [`Connect`] (with
//!   [`Will`]), [`Connack`], [`Publish`], [`PubAck`] (shared by PUBACK,
//!   PUBREC, PUBREL, PUBCOMP), [`Subscribe`], [`Suback`], [`Unsubscribe`],
//!   [`Unsuback`], [`Disconnect`], [`Auth`]; `Pingreq` and `Pingresp` carry
//!   nothing. All are `Copy` with public fields, so the same structs are
//!   decoded and built for emit; shortcuts: [`Connect::new`],
//!   [`Publish::new`], [`PubAck::new`], [`Subscribe::new`], [`Suback::new`],
//!   [`Unsubscribe::new`], [`Unsuback::new`], [`Disconnect::NORMAL`], and
//!   `Default` where every field has one. `From<Connect>` etc. give a
//!   [`Packet`].
//! - Lists are views: [`Subscriptions`] (of [`Subscription`] =
//!   filter + [`SubscriptionOptions`]), [`TopicFilters`], [`ReasonCodes`].
//!   Decoded ones are validated once and iterated lazily from the packet's
//!   bytes (`iter()`); for emit build them from a slice (`from_slice`).
//!   Equality is semantic (element by element).
//! - [`Properties`] (5.0): decoded ones are validated once and read lazily
//!   through typed accessors (`topic_alias()`, `reason_string()`, ...),
//!   [`Properties::user_properties`], [`Properties::subscription_identifiers`]
//!   and [`Properties::iter`] over [`Property`]. For emit, fill a
//!   [`PropertyFields`] (all `Option`, user properties and subscription
//!   identifiers as slices) and lend it with [`Properties::from_fields`].
//!   [`Properties::NONE`] is empty (and the only value 3.1.1 accepts).
//!   [`Properties::to_fields`] turns decoded properties back into a
//!   [`PropertyFields`] without allocating (user properties and
//!   subscription identifiers stay a view, [`CarriedProperties`]), to
//!   change and re-encode; [`Properties::encode`] and
//!   [`Properties::encoded_len`] write a property block on its own.
//! - [`ReasonCode`]: a byte newtype with named constants, per-packet validity
//!   ([`ReasonCode::is_valid_for`]) and the 3.1.1 CONNACK return-code mapping
//!   (return codes 0-5 are 0x00, 0x84, 0x85, 0x88, 0x86, 0x87); a 3.1.1
//!   SUBACK Failure decodes as `ReasonCode(0x80)`
//!   ([`ReasonCode::UNSPECIFIED_ERROR`]).
//! - Errors: [`DecodeError`] `{ PacketTooLarge, Invalid(Violation) }`,
//!   [`EncodeError`] `{ InsufficientSize { required }, Invalid(Violation),
//!   NotInVersion }`. [`Violation`] has one variant per rule, each naming its
//!   spec statement; [`DecodeError::reason_code`] gives the 5.0 reason code
//!   to disconnect with.
//!
//! # Decoding
//!
//! ```
//! use embermq::codec::{DecodeOptions, Decoded, Packet, ProtocolVersion};
//!
//! let opts = DecodeOptions::new(ProtocolVersion::V311).with_max_packet_size(1024);
//! // PUBLISH QoS 0, topic "a/b", payload "hi", followed by the start of the
//! // next packet.
//! let bytes = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i', 0xc0];
//! match Packet::decode(&bytes, &opts)? {
//!     Decoded::Complete { value: Packet::Publish(p), len } => {
//!         assert_eq!((p.topic, p.payload, len), ("a/b", &b"hi"[..], 9));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! // A prefix is Incomplete, not an error.
//! assert_eq!(Packet::decode(&bytes[..4], &opts)?, Decoded::Incomplete { needed: 5 });
//! # Ok::<(), embermq::codec::DecodeError>(())
//! ```
//!
//! # Encoding
//!
//! ```
//! use embermq::codec::{
//!     Packet, Properties, PropertyFields, ProtocolVersion, Publish, QoS, UserProperty,
//! };
//!
//! let users = [UserProperty { name: "unit", value: "C" }];
//! let fields = PropertyFields {
//!     message_expiry_interval: Some(60),
//!     user_properties: &users,
//!     ..PropertyFields::NONE
//! };
//! let publish = Packet::Publish(Publish {
//!     dup: false,
//!     qos: QoS::AtLeastOnce,
//!     retain: false,
//!     topic: "sensors/t",
//!     packet_id: Some(7),
//!     properties: Properties::from_fields(&fields),
//!     payload: b"21.5",
//! });
//! let mut buf = [0u8; 64];
//! let len = publish.encode(&mut buf, ProtocolVersion::V5)?;
//! assert_eq!(len, publish.encoded_len(ProtocolVersion::V5));
//! # Ok::<(), embermq::codec::EncodeError>(())
//! ```
//!
//! # What it does not do
//!
//! No session state: it does not track packet identifiers, resolve topic
//! aliases, enforce Receive Maximum or the peer's Maximum Packet Size on
//! emit (compare [`Packet::encoded_len`]), or pick client identifiers. It
//! does not check 5.0's SHOULD-level string rules (control characters,
//! non-characters) nor validate a payload marked UTF-8. Topic names and
//! filters are validated with [`crate::topic`]'s rules (through one-pass
//! fast paths for valid names and unshared filters, checked against
//! [`crate::topic`] by tests; see `docs/codec.md`); matching lives there
//! too. MQTT 3.1 ("MQIsdp", level 3) is refused. See `docs/codec.md` for the full list of
//! checks.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod error;
mod fixed_header;
mod packet;
mod properties;
mod publish;
mod reason_code;
mod subscribe;
mod topic_syntax;
mod unsubscribe;
pub(crate) mod wire;

#[cfg(test)]
pub(crate) mod strategies;
#[cfg(test)]
mod tests;

pub use ack::PubAck;
pub use auth::Auth;
pub use connack::Connack;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use error::{DecodeError, EncodeError, Violation};
pub use fixed_header::{FixedHeader, PacketType};
pub use packet::{DecodeOptions, Decoded, Packet, ProtocolVersion, QoS};
// The per-packet encoders, for the client session: calling them directly
// (rather than through `Packet::encode`) keeps the server-side encoders out
// of a client's firmware.
pub(crate) use packet::{
    encode_ack, encode_auth, encode_connect, encode_disconnect, encode_empty, encode_subscribe,
    encode_unsubscribe,
};
pub use properties::{
    CarriedProperties, Properties, Property, PropertyFields, PropertyIter, UserProperty,
    id as property_id,
};
pub use publish::Publish;
pub use reason_code::{ReasonCode, ReasonCodeIter, ReasonCodes};
pub use subscribe::{
    RetainHandling, Suback, Subscribe, Subscription, SubscriptionIter, SubscriptionOptions,
    Subscriptions,
};
pub use unsubscribe::{TopicFilterIter, TopicFilters, Unsuback, Unsubscribe};
