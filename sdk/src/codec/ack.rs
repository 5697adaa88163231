//! PUBACK, PUBREC, PUBREL and PUBCOMP (3.1.1 §3.4-3.7, 5.0 §3.4-3.7): a
//! packet identifier, and in 5.0 an optional reason code and properties.
//!
//! The four share one struct, [`PubAck`]; the [`Packet`](super::Packet)
//! variant says which it is. In 5.0 the short forms (no reason code when it
//! is Success and there are no properties; no property length when there are
//! none) are decoded, and emitted whenever they apply.

use super::error::{EncodeError, Violation};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, no_properties_in_v311};
use super::properties::{Properties, PropertyContext};
use super::reason_code::ReasonCode;
use super::wire::{Reader, Writer};

/// A PUBACK, PUBREC, PUBREL or PUBCOMP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubAck<'a> {
    /// The identifier of the PUBLISH (or PUBREL) acknowledged; non-zero.
    pub packet_id: u16,
    /// The outcome; always [`ReasonCode::SUCCESS`] in 3.1.1.
    pub reason_code: ReasonCode,
    /// 5.0 properties (Reason String, User Properties).
    pub properties: Properties<'a>,
}

impl<'a> PubAck<'a> {
    /// A successful acknowledgement of `packet_id` with no properties.
    pub const fn new(packet_id: u16) -> Self {
        Self {
            packet_id,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::NONE,
        }
    }

    pub(crate) fn decode(
        packet_type: PacketType,
        body: &'a [u8],
        version: ProtocolVersion,
    ) -> Result<Self, Violation> {
        let mut r = Reader::new(body);
        let packet_id = r.u16()?;
        if packet_id == 0 {
            return Err(Violation::ZeroPacketId);
        }
        let mut ack = Self::new(packet_id);
        if version.is_v5() && !r.is_empty() {
            ack.reason_code = ReasonCode(r.u8()?);
            check_code(ack.reason_code, packet_type, version)?;
            if !r.is_empty() {
                ack.properties = Properties::decode(&mut r, PropertyContext::Packet(packet_type))?;
            }
        }
        r.finish()?;
        Ok(ack)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() {
            2
        } else if !self.properties.is_empty() {
            3 + self.properties.encoded_len()
        } else if self.reason_code != ReasonCode::SUCCESS {
            3
        } else {
            2
        }
    }

    pub(crate) fn write_body(
        &self,
        w: &mut Writer<'_>,
        packet_type: PacketType,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        if self.packet_id == 0 {
            return Err(Violation::ZeroPacketId.into());
        }
        check_code(self.reason_code, packet_type, version)?;
        no_properties_in_v311(&self.properties, version)?;
        w.u16(self.packet_id)?;
        let len = self.body_len(version);
        if len > 2 {
            w.u8(self.reason_code.0)?;
        }
        if len > 3 {
            self.properties
                .write(w, PropertyContext::Packet(packet_type))?;
        }
        Ok(())
    }
}

pub(crate) fn check_code(
    code: ReasonCode,
    packet_type: PacketType,
    version: ProtocolVersion,
) -> Result<(), Violation> {
    if !code.is_valid_for(packet_type, version) {
        return Err(Violation::InvalidReasonCode { code, packet_type });
    }
    Ok(())
}
