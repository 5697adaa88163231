//! PUBLISH (3.1.1 §3.3, 5.0 §3.3): DUP/QoS/RETAIN flags, topic name, packet
//! identifier (QoS 1/2), 5.0 properties, payload.
//!
//! It does not resolve topic aliases: a 5.0 PUBLISH with an empty topic and
//! a Topic Alias decodes with `topic == ""`, and the session substitutes.

use super::error::{DecodeError, EncodeError, Violation};
use super::fixed_header::{FixedHeader, PacketType};
use super::packet::{DecodeOptions, Decoded, ProtocolVersion, QoS, no_properties_in_v311};
use super::properties::{Properties, PropertyContext};
use super::topic_syntax;
use super::wire::{MAX_VARINT, Reader, copy_into, varint_bytes};

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

    /// Decodes a whole PUBLISH (fixed header included) from the start of
    /// `buf`: the session's reader of its own outbox records, which holds
    /// only PUBLISH packets. Another packet type, or a PUBLISH that is
    /// incomplete, is `Ok(None)`; malformed bytes are the error.
    pub(crate) fn decode_packet(
        buf: &'a [u8],
        version: ProtocolVersion,
    ) -> Result<Option<(Self, usize)>, DecodeError> {
        let header = match FixedHeader::decode(buf, &DecodeOptions::new(version))? {
            Decoded::Complete { value, .. } if value.packet_type == PacketType::Publish => value,
            _ => return Ok(None),
        };
        let len = header.packet_len();
        let Some(body) = buf.get(usize::from(header.header_len)..len) else {
            return Ok(None);
        };
        Ok(Some((Self::decode(header.flags, body, version)?, len)))
    }

    /// The whole packet's length (fixed header included), as
    /// [`Packet::encoded_len`](super::Packet::encoded_len) gives it.
    pub(crate) fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(version);
        body.saturating_add(1 + super::wire::varint_len(body))
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

    /// Writes the whole packet (fixed header included) into `buf`: what
    /// [`Packet::encode`](super::Packet::encode) does for a PUBLISH.
    ///
    /// On hosts a 3.1.1 PUBLISH without properties takes a lean path: the
    /// same checks as [`Publish::encode_any`], as yes/no tests, then the
    /// writes. Anything that fails a test, every 5.0 PUBLISH, and every
    /// PUBLISH on a device (`target_os = "none"`, built for size) goes
    /// through [`Publish::encode_any`], which also names the error.
    #[inline(never)]
    pub(crate) fn encode(
        &self,
        buf: &mut [u8],
        version: ProtocolVersion,
    ) -> Result<usize, EncodeError> {
        // Devices (built for size) take the general encoder always.
        if cfg!(target_os = "none") || version.is_v5() || !self.properties.is_none() {
            return self.encode_any(buf, version);
        }
        let packet_id = match (self.qos, self.packet_id, self.dup) {
            (QoS::AtMostOnce, None, false) => None,
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id), _) if id != 0 => Some(id),
            _ => return self.encode_any(buf, version),
        };
        if !topic_syntax::is_valid_name(self.topic) {
            return self.encode_any(buf, version);
        }
        let topic = self.topic.as_bytes();
        let id_len = if packet_id.is_some() { 2 } else { 0 };
        let body = 2 + topic.len() + id_len + self.payload.len();
        let Some(body32) = u32::try_from(body).ok().filter(|b| *b <= MAX_VARINT) else {
            return Err(Violation::RemainingLengthTooLarge { len: body }.into());
        };
        let ([v0, v1, v2, v3], varint_len) = varint_bytes(body32);
        let header_len = 1 + varint_len;
        let total = header_len + body;
        let out = buf
            .get_mut(..total)
            .ok_or(EncodeError::InsufficientSize { required: total })?;
        // The fixed header as one 5-byte store (a PUBLISH is at least 5
        // bytes: header 2, topic length 2, a topic of at least 1); the
        // body is written from `header_len` on, over whatever of the five
        // the header did not use.
        if let Some(head) = out.first_chunk_mut::<5>() {
            *head = [0x30 | self.flags(), v0, v1, v2, v3];
        }
        // Every split below fits: `out` is exactly `total` bytes.
        let rest = out.get_mut(header_len..).unwrap_or_default();
        let Some((topic_len, rest)) = rest.split_first_chunk_mut::<2>() else {
            return Err(EncodeError::InsufficientSize { required: total });
        };
        // At most 65 535 bytes (`is_valid_name`).
        *topic_len = (topic.len() as u16).to_be_bytes();
        let Some((topic_out, rest)) = rest.split_at_mut_checked(topic.len()) else {
            return Err(EncodeError::InsufficientSize { required: total });
        };
        copy_into(topic_out, topic);
        let rest = match packet_id {
            Some(id) => match rest.split_first_chunk_mut::<2>() {
                Some((id_out, rest)) => {
                    *id_out = id.to_be_bytes();
                    rest
                }
                None => return Err(EncodeError::InsufficientSize { required: total }),
            },
            None => rest,
        };
        // What is left is exactly the payload's length.
        copy_into(rest, self.payload);
        Ok(total)
    }

    /// Any PUBLISH in any version: every check with its error, then the
    /// writes. Every check comes first; then the fixed header claims the
    /// packet's exact length of `buf` (the one bounds check that can fail)
    /// and the fields are copied in.
    #[inline(never)]
    fn encode_any(&self, buf: &mut [u8], version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(Violation::DupWithQos0.into());
        }
        let props_len = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            no_properties_in_v311(&self.properties, version)?;
            0
        };
        check_topic(self.topic, &self.properties, version)?;
        let id_len = match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) => 0,
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) if id != 0 => 2,
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(_)) => {
                return Err(Violation::ZeroPacketId.into());
            }
            _ => return Err(Violation::PacketIdMismatch.into()),
        };
        let body = 2 + self.topic.len() + id_len + props_len + self.payload.len();
        let (mut w, total) = super::packet::header(buf, PacketType::Publish, self.flags(), body)?;
        // `check_topic` has refused U+0000 (and `&str` is UTF-8).
        w.utf8_checked(self.topic)?;
        if let Some(id) = self.packet_id {
            w.u16(id)?;
        }
        if version.is_v5() {
            self.properties.write(&mut w, CTX)?;
        }
        w.bytes(self.payload)?;
        Ok(total)
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

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use proptest::prelude::*;

    fn qos() -> impl Strategy<Value = QoS> {
        prop_oneof![
            Just(QoS::AtMostOnce),
            Just(QoS::AtLeastOnce),
            Just(QoS::ExactlyOnce)
        ]
    }

    /// The session's reader of its own outbox records ([MQTT-3.3.1-4]: QoS
    /// 3 is malformed): a whole PUBLISH decodes with its length, a prefix
    /// or another packet type is `None`, malformed bytes are the error.
    #[test]
    fn mqtt_3_3_stored_publish_decodes_alone() {
        let p = Publish {
            qos: QoS::AtLeastOnce,
            packet_id: Some(9),
            ..Publish::new("a/b", b"hi")
        };
        let mut buf = [0u8; 32];
        let n = p.encode(&mut buf, ProtocolVersion::V5).unwrap();
        assert_eq!(n, p.encoded_len(ProtocolVersion::V5));
        let bytes = &buf[..n];
        assert_eq!(
            Publish::decode_packet(bytes, ProtocolVersion::V5),
            Ok(Some((p, n)))
        );
        assert_eq!(
            Publish::decode_packet(&bytes[..n - 1], ProtocolVersion::V5),
            Ok(None)
        );
        assert_eq!(
            Publish::decode_packet(&[0xC0, 0x00], ProtocolVersion::V5),
            Ok(None)
        );
        assert_eq!(
            Publish::decode_packet(&[0x36, 0x00], ProtocolVersion::V5),
            Err(Violation::InvalidQos.into())
        );
    }

    proptest! {
        /// The 3.1.1 fast path and the general encoder agree on every
        /// PUBLISH, valid or not ([MQTT-3.3.2-2] wildcards, [MQTT-1.5.3-2]
        /// U+0000, [MQTT-4.7.3-1] empty topic, [MQTT-2.3.1-1] packet
        /// identifiers, [MQTT-3.3.1-2] DUP with QoS 0) and on every buffer
        /// length: the same result, and the same bytes when it succeeds.
        #[test]
        fn mqtt_3_3_fast_path_agrees_with_general_encoder(
            topic in "[a-z/+#\\x00]{0,40}",
            qos in qos(),
            packet_id in proptest::option::of(0u16..4),
            dup: bool,
            retain: bool,
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            short_by in 0usize..3,
        ) {
            let p = Publish { dup, qos, retain, topic: &topic, packet_id, properties: Properties::NONE, payload: &payload };
            let len = p.body_len(ProtocolVersion::V311) + 1 + crate::codec::wire::varint_len(p.body_len(ProtocolVersion::V311));
            let size = len.saturating_sub(short_by);
            let mut fast = alloc::vec![0u8; size];
            let mut general = alloc::vec![0u8; size];
            let a = p.encode(&mut fast, ProtocolVersion::V311);
            let b = p.encode_any(&mut general, ProtocolVersion::V311);
            prop_assert_eq!(&a, &b);
            if a.is_ok() {
                prop_assert_eq!(fast, general);
            }
        }
    }
}
