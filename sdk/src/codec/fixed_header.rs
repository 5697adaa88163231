//! The fixed header: packet type, flags and remaining length (MQTT 3.1.1
//! §2.2, MQTT 5.0 §2.1).
//!
//! [`FixedHeader::decode`] is the framing step: it needs at most five bytes,
//! validates the type and the flags, and enforces the maximum packet size
//! before a byte of the body has arrived. It does not look at the body.

use core::fmt;

use super::error::{DecodeError, Violation};
use super::packet::{DecodeOptions, Decoded, ProtocolVersion};
use super::wire::{self, VarintRead};

/// The fifteen MQTT control packet types (4-bit values 1-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect.
    Connect = 1,
    /// Connect acknowledgement.
    Connack = 2,
    /// Publish message.
    Publish = 3,
    /// Publish acknowledgement (QoS 1).
    Puback = 4,
    /// Publish received (QoS 2, part 1).
    Pubrec = 5,
    /// Publish release (QoS 2, part 2).
    Pubrel = 6,
    /// Publish complete (QoS 2, part 3).
    Pubcomp = 7,
    /// Subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgement.
    Suback = 9,
    /// Unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgement.
    Unsuback = 11,
    /// Ping request.
    Pingreq = 12,
    /// Ping response.
    Pingresp = 13,
    /// Disconnect notification.
    Disconnect = 14,
    /// Authentication exchange (MQTT 5.0 only).
    Auth = 15,
}

impl PacketType {
    /// The type for a 4-bit value in `version`; 0 is reserved in both
    /// versions and 15 in MQTT 3.1.1.
    pub const fn from_bits(value: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        Ok(match value {
            1 => Self::Connect,
            2 => Self::Connack,
            3 => Self::Publish,
            4 => Self::Puback,
            5 => Self::Pubrec,
            6 => Self::Pubrel,
            7 => Self::Pubcomp,
            8 => Self::Subscribe,
            9 => Self::Suback,
            10 => Self::Unsubscribe,
            11 => Self::Unsuback,
            12 => Self::Pingreq,
            13 => Self::Pingresp,
            14 => Self::Disconnect,
            15 if matches!(version, ProtocolVersion::V5) => Self::Auth,
            _ => return Err(Violation::ReservedPacketType { value }),
        })
    }

    /// The flags every packet of this type carries, except PUBLISH whose
    /// flags are DUP, QoS and RETAIN ([MQTT-2.2.2-1], 5.0 §2.1.3).
    pub(crate) const fn fixed_flags(self) -> Option<u8> {
        match self {
            Self::Publish => None,
            Self::Pubrel | Self::Subscribe | Self::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// The specification's name: "CONNECT", "PUBLISH", ...
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Connack => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::Puback => "PUBACK",
            Self::Pubrec => "PUBREC",
            Self::Pubrel => "PUBREL",
            Self::Pubcomp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::Suback => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::Unsuback => "UNSUBACK",
            Self::Pingreq => "PINGREQ",
            Self::Pingresp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The packet type.
    pub packet_type: PacketType,
    /// The low four bits of the first byte (validated for the type).
    pub flags: u8,
    /// The number of bytes after the fixed header.
    pub remaining_length: u32,
    /// The fixed header's own length: 2 to 5 bytes.
    pub header_len: u8,
}

impl FixedHeader {
    /// Decodes the fixed header at the start of `buf`.
    ///
    /// Returns [`Decoded::Incomplete`] while the header itself is incomplete
    /// (`needed` is then 1: the header's length is not known yet). Fails with
    /// [`DecodeError::PacketTooLarge`] as soon as the remaining length (or,
    /// while it is still arriving, its lower bound) makes the packet larger
    /// than `opts.max_packet_size`: a 200 MB PUBLISH is refused after five
    /// bytes. `len` in the result is [`FixedHeader::header_len`].
    pub fn decode(buf: &[u8], opts: &DecodeOptions) -> Result<Decoded<Self>, DecodeError> {
        let Some((&first, rest)) = buf.split_first() else {
            return Ok(Decoded::Incomplete { needed: 2 });
        };
        let packet_type = PacketType::from_bits(first >> 4, opts.version)?;
        let flags = first & 0x0f;
        match packet_type.fixed_flags() {
            Some(expected) if flags != expected => {
                return Err(Violation::InvalidFixedHeaderFlags { packet_type, flags }.into());
            }
            None => {
                // PUBLISH: QoS 3 [MQTT-3.3.1-4]; DUP on QoS 0 [MQTT-3.3.1-2].
                let qos = (flags >> 1) & 0b11;
                if qos == 3 {
                    return Err(Violation::InvalidQos.into());
                }
                if qos == 0 && flags & 0b1000 != 0 {
                    return Err(Violation::DupWithQos0.into());
                }
            }
            Some(_) => {}
        }
        let too_large = |remaining: u32, varint_len: usize| {
            let size = (remaining as usize).saturating_add(1 + varint_len);
            if size > opts.max_packet_size as usize {
                Err(DecodeError::PacketTooLarge {
                    size,
                    max: opts.max_packet_size,
                })
            } else {
                Ok(size)
            }
        };
        match wire::read_varint(rest)? {
            VarintRead::Value { value, len } => {
                too_large(value, len)?;
                let header_len = u8::try_from(1 + len).map_err(|_| Violation::VarintTooLong)?;
                Ok(Decoded::Complete {
                    value: Self {
                        packet_type,
                        flags,
                        remaining_length: value,
                        header_len,
                    },
                    len: usize::from(header_len),
                })
            }
            VarintRead::Incomplete { lower_bound } => {
                too_large(lower_bound, rest.len() + 1)?;
                Ok(Decoded::Incomplete { needed: 1 })
            }
        }
    }

    /// The whole packet's length: header plus remaining length.
    pub const fn packet_len(&self) -> usize {
        self.header_len as usize + self.remaining_length as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(version: ProtocolVersion, max: u32) -> DecodeOptions {
        DecodeOptions {
            version,
            max_packet_size: max,
        }
    }

    #[test]
    fn header_decoded_with_remaining_length() {
        let got = FixedHeader::decode(
            &[0x30, 0x80, 0x01],
            &DecodeOptions::new(ProtocolVersion::V5),
        );
        assert_eq!(
            got,
            Ok(Decoded::Complete {
                value: FixedHeader {
                    packet_type: PacketType::Publish,
                    flags: 0,
                    remaining_length: 128,
                    header_len: 3
                },
                len: 3
            })
        );
    }

    #[test]
    fn mqtt5_3_1_2_11_4_max_packet_size_enforced_from_header_alone() {
        // A 200 MB PUBLISH: 0x30 then remaining length 200_000_000.
        let mut bytes = [0x30u8, 0, 0, 0, 0];
        let mut value = 200_000_000u32;
        for b in bytes.iter_mut().skip(1) {
            *b = (value & 0x7f) as u8;
            value >>= 7;
            if value > 0 {
                *b |= 0x80;
            }
        }
        let o = opts(ProtocolVersion::V311, 1024);
        assert_eq!(
            FixedHeader::decode(&bytes, &o),
            Err(DecodeError::PacketTooLarge {
                size: 200_000_005,
                max: 1024
            })
        );
        // Already after the third byte the lower bound exceeds 1024.
        assert!(matches!(
            FixedHeader::decode(&bytes[..3], &o),
            Err(DecodeError::PacketTooLarge { .. })
        ));
        // One byte of header says nothing yet.
        assert_eq!(
            FixedHeader::decode(&bytes[..1], &o),
            Ok(Decoded::Incomplete { needed: 1 })
        );
    }

    #[test]
    fn max_packet_size_counts_the_header() {
        let o = opts(ProtocolVersion::V5, 10);
        assert!(FixedHeader::decode(&[0xe0, 8], &o).is_ok());
        assert_eq!(
            FixedHeader::decode(&[0xe0, 9], &o),
            Err(DecodeError::PacketTooLarge { size: 11, max: 10 })
        );
    }

    #[test]
    fn mqtt_2_2_1_reserved_packet_types_rejected() {
        let v3 = DecodeOptions::new(ProtocolVersion::V311);
        let v5 = DecodeOptions::new(ProtocolVersion::V5);
        assert_eq!(
            FixedHeader::decode(&[0x00, 0x00], &v5),
            Err(Violation::ReservedPacketType { value: 0 }.into())
        );
        assert_eq!(
            FixedHeader::decode(&[0xf0, 0x00], &v3),
            Err(Violation::ReservedPacketType { value: 15 }.into())
        );
        assert!(FixedHeader::decode(&[0xf0, 0x00], &v5).is_ok());
    }

    #[test]
    fn mqtt_2_2_2_2_reserved_flags_rejected() {
        let o = DecodeOptions::new(ProtocolVersion::V311);
        for (first, packet_type) in [
            (0xc1, PacketType::Pingreq),
            (0x60, PacketType::Pubrel),
            (0x80, PacketType::Subscribe),
            (0xa3, PacketType::Unsubscribe),
            (0x18, PacketType::Connect),
        ] {
            assert_eq!(
                FixedHeader::decode(&[first, 0], &o),
                Err(Violation::InvalidFixedHeaderFlags {
                    packet_type,
                    flags: first & 0x0f
                }
                .into())
            );
        }
    }

    #[test]
    fn mqtt_3_3_1_4_publish_qos3_rejected_in_header() {
        let o = DecodeOptions::new(ProtocolVersion::V5);
        assert_eq!(
            FixedHeader::decode(&[0x36, 0], &o),
            Err(Violation::InvalidQos.into())
        );
    }

    #[test]
    fn mqtt_3_3_1_2_dup_on_qos0_rejected_in_header() {
        let o = DecodeOptions::new(ProtocolVersion::V5);
        assert_eq!(
            FixedHeader::decode(&[0x38, 0], &o),
            Err(Violation::DupWithQos0.into())
        );
    }

    #[test]
    fn mqtt_1_5_5_1_non_minimal_remaining_length_rejected() {
        let o = DecodeOptions::new(ProtocolVersion::V5);
        assert_eq!(
            FixedHeader::decode(&[0xc0, 0x80, 0x00], &o),
            Err(Violation::NonMinimalVarint.into())
        );
        assert_eq!(
            FixedHeader::decode(&[0xc0, 0xff, 0xff, 0xff, 0xff, 0x01], &o),
            Err(Violation::VarintTooLong.into())
        );
    }
}
