//! DISCONNECT (3.1.1 §3.14, 5.0 §3.14): empty in 3.1.1; in 5.0 an optional
//! reason code and properties (a remaining length of 0 means Normal
//! disconnection, of 1 no properties).
//!
//! It does not act on Session Expiry Interval or Server Reference.

use super::ack::check_code;
use super::error::{EncodeError, Violation};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, no_properties_in_v311};
use super::properties::{Properties, PropertyContext};
use super::reason_code::ReasonCode;
use super::wire::{Reader, Writer};

const CTX: PropertyContext = PropertyContext::Packet(PacketType::Disconnect);

/// A DISCONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Disconnect<'a> {
    /// Why; [`ReasonCode::SUCCESS`] (Normal disconnection) in 3.1.1.
    pub reason_code: ReasonCode,
    /// 5.0 properties.
    pub properties: Properties<'a>,
}

impl Disconnect<'_> {
    /// A normal disconnection without properties.
    pub const NORMAL: Self = Self {
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::NONE,
    };
}

impl<'a> Disconnect<'a> {
    pub(crate) fn decode(body: &'a [u8], version: ProtocolVersion) -> Result<Self, Violation> {
        let mut r = Reader::new(body);
        let mut packet = Self::NORMAL;
        if version.is_v5() && !r.is_empty() {
            packet.reason_code = ReasonCode(r.u8()?);
            check_code(packet.reason_code, PacketType::Disconnect, version)?;
            if !r.is_empty() {
                packet.properties = Properties::decode(&mut r, CTX)?;
            }
        }
        r.finish()?;
        Ok(packet)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() {
            0
        } else if !self.properties.is_empty() {
            1 + self.properties.encoded_len()
        } else if self.reason_code != ReasonCode::SUCCESS {
            1
        } else {
            0
        }
    }

    pub(crate) fn write_body(
        &self,
        w: &mut Writer<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        check_code(self.reason_code, PacketType::Disconnect, version)?;
        no_properties_in_v311(&self.properties, version)?;
        let len = self.body_len(version);
        if len > 0 {
            w.u8(self.reason_code.0)?;
        }
        if len > 1 {
            self.properties.write(w, CTX)?;
        }
        Ok(())
    }
}
