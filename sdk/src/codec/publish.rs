//! PUBLISH (3.1.1 §3.3, 5.0 §3.3): DUP/QoS/RETAIN flags, topic name, packet
//! identifier (QoS 1/2), 5.0 properties, payload.
//!
//! It does not resolve topic aliases: a 5.0 PUBLISH with an empty topic and
//! a Topic Alias decodes with `topic == ""`, and the session substitutes.

use super::error::{EncodeError, Violation};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, QoS, no_properties_in_v311};
use super::properties::{Properties, PropertyContext};
use super::topic_syntax;
use super::wire::{Reader, Writer};

const CTX: PropertyContext = PropertyContext::Packet(PacketType::Publish);

/// A PUBLISH packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Publish<'a> {
    /// Whether this is a redelivery (only with QoS 1/2).
    pub dup: bool,
    /// The message's QoS.
    pub qos: QoS,
    /// Whether the message is retained.
    pub retain: bool,
    /// The topic name; empty only in 5.0 with a Topic Alias.
    pub topic: &'a str,
    /// The packet identifier: `Some` (non-zero) exactly when QoS > 0.
    pub packet_id: Option<u16>,
    /// 5.0 PUBLISH properties.
    pub properties: Properties<'a>,
    /// The application message.
    pub payload: &'a [u8],
}

impl<'a> Publish<'a> {
    /// A QoS 0, non-retained PUBLISH of `payload` to `topic`, without
    /// properties; set the other fields as needed.
    pub const fn new(topic: &'a str, payload: &'a [u8]) -> Self {
        Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: Properties::NONE,
            payload,
        }
    }

    #[inline]
    pub(crate) fn decode(
        flags: u8,
        body: &'a [u8],
        version: ProtocolVersion,
    ) -> Result<Self, Violation> {
        let dup = flags & 0b1000 != 0;
        let qos = QoS::from_bits((flags >> 1) & 0b11)?;
        let retain = flags & 0b0001 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(Violation::DupWithQos0);
        }
        let mut r = Reader::new(body);
        // U+0000 is checked with the wildcards, in `check_topic`.
        let topic = r.utf8_allowing_nul()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            match r.u16()? {
                0 => return Err(Violation::ZeroPacketId),
                id => Some(id),
            }
        };
        let properties = if version.is_v5() {
            Properties::decode(&mut r, CTX)?
        } else {
            Properties::NONE
        };
        check_topic(topic, &properties, version)?;
        Ok(Self {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    #[inline]
    pub(crate) fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    #[inline]
    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let id = if self.qos == QoS::AtMostOnce { 0 } else { 2 };
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        2 + self.topic.len() + id + props + self.payload.len()
    }

    #[inline]
    pub(crate) fn write_body(
        &self,
        w: &mut Writer<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(Violation::DupWithQos0.into());
        }
        no_properties_in_v311(&self.properties, version)?;
        check_topic(self.topic, &self.properties, version)?;
        let packet_id = match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) => None,
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(0)) => {
                return Err(Violation::ZeroPacketId.into());
            }
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) => Some(id),
            _ => return Err(Violation::PacketIdMismatch.into()),
        };
        // `check_topic` has refused U+0000 already (and `&str` is UTF-8).
        w.utf8_checked(self.topic)?;
        if let Some(id) = packet_id {
            w.u16(id)?;
        }
        if version.is_v5() {
            self.properties.write(w, CTX)?;
        }
        w.bytes(self.payload)
    }
}

/// [MQTT-3.3.2-2], [MQTT-4.7.3-1]; an empty topic is allowed in 5.0 only
/// with a Topic Alias (§3.3.2.3.4).
#[inline]
fn check_topic(
    topic: &str,
    properties: &Properties<'_>,
    version: ProtocolVersion,
) -> Result<(), Violation> {
    if topic.is_empty() && version.is_v5() && properties.topic_alias().is_some() {
        // An empty string holds no U+0000 either.
        return Ok(());
    }
    topic_syntax::check_name(topic)
}
