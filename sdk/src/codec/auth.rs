//! AUTH (5.0 §3.15): extended authentication exchange. MQTT 3.1.1 has no
//! AUTH; its packet type 15 is reserved and refused by the fixed header.
//!
//! It carries the exchange's bytes and does not run any authentication
//! method.

use super::ack::check_code;
use super::error::{EncodeError, Violation};
use super::fixed_header::PacketType;
use super::packet::ProtocolVersion;
use super::properties::{Properties, PropertyContext};
use super::reason_code::ReasonCode;
use super::wire::{Reader, Writer};

const CTX: PropertyContext = PropertyContext::Packet(PacketType::Auth);

/// An AUTH packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Auth<'a> {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Authentication Method / Data, Reason String, User Properties.
    pub properties: Properties<'a>,
}

impl<'a> Auth<'a> {
    pub(crate) fn decode(body: &'a [u8], version: ProtocolVersion) -> Result<Self, Violation> {
        if !version.is_v5() {
            return Err(Violation::ReservedPacketType {
                value: PacketType::Auth as u8,
            });
        }
        let mut r = Reader::new(body);
        let mut packet = Self {
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::NONE,
        };
        if !r.is_empty() {
            packet.reason_code = ReasonCode(r.u8()?);
            check_code(packet.reason_code, PacketType::Auth, version)?;
            // 5.0 §3.15.2.2.1 allows omitting only both fields; a lone reason
            // code is accepted like DISCONNECT's (lenient, never emitted).
            if !r.is_empty() {
                packet.properties = Properties::decode(&mut r, CTX)?;
            }
        }
        r.finish()?;
        Ok(packet)
    }

    pub(crate) fn body_len(&self) -> usize {
        if self.reason_code == ReasonCode::SUCCESS && self.properties.is_empty() {
            0
        } else {
            1 + self.properties.encoded_len()
        }
    }

    pub(crate) fn write_body(
        &self,
        w: &mut Writer<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::NotInVersion {
                what: "AUTH",
                version,
            });
        }
        check_code(self.reason_code, PacketType::Auth, version)?;
        if self.body_len() > 0 {
            w.u8(self.reason_code.0)?;
            self.properties.write(w, CTX)?;
        }
        Ok(())
    }
}
