//! CONNACK (3.1.1 §3.2, 5.0 §3.2): acknowledge flags, a return code
//! (3.1.1, mapped to the 5.0 reason codes) or reason code, and 5.0
//! properties.
//!
//! It does not act on the server's limits (Receive Maximum, Maximum QoS...);
//! the session does.

use super::error::{EncodeError, Violation};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, no_properties_in_v311};
use super::properties::{Properties, PropertyContext};
use super::reason_code::ReasonCode;
use super::wire::{Reader, Writer};

const CTX: PropertyContext = PropertyContext::Packet(PacketType::Connack);

/// A CONNACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Connack<'a> {
    /// Whether the server resumed a session.
    pub session_present: bool,
    /// The outcome; in 3.1.1 the return code mapped to its 5.0 equivalent
    /// ([`ReasonCode::from_v311_connack`]).
    pub reason_code: ReasonCode,
    /// 5.0 CONNACK properties.
    pub properties: Properties<'a>,
}

impl<'a> Connack<'a> {
    pub(crate) fn decode(body: &'a [u8], version: ProtocolVersion) -> Result<Self, Violation> {
        let mut r = Reader::new(body);
        let flags = r.u8()?;
        if flags & 0xfe != 0 {
            return Err(Violation::ReservedConnackFlags);
        }
        let code = r.u8()?;
        let reason_code = if version.is_v5() {
            ReasonCode(code)
        } else {
            ReasonCode::from_v311_connack(code).ok_or(Violation::InvalidReasonCode {
                code: ReasonCode(code),
                packet_type: PacketType::Connack,
            })?
        };
        check_code(reason_code, version)?;
        let session_present = flags & 0x01 != 0;
        if session_present && reason_code != ReasonCode::SUCCESS {
            return Err(Violation::SessionPresentWithError);
        }
        let properties = if version.is_v5() {
            Properties::decode(&mut r, CTX)?
        } else {
            Properties::NONE
        };
        r.finish()?;
        Ok(Self {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        2 + if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        }
    }

    pub(crate) fn write_body(
        &self,
        w: &mut Writer<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        check_code(self.reason_code, version)?;
        if self.session_present && self.reason_code != ReasonCode::SUCCESS {
            return Err(Violation::SessionPresentWithError.into());
        }
        no_properties_in_v311(&self.properties, version)?;
        w.u8(u8::from(self.session_present))?;
        if version.is_v5() {
            w.u8(self.reason_code.0)?;
            self.properties.write(w, CTX)
        } else {
            let code = self
                .reason_code
                .to_v311_connack()
                .ok_or(Violation::InvalidReasonCode {
                    code: self.reason_code,
                    packet_type: PacketType::Connack,
                })?;
            w.u8(code)
        }
    }
}

fn check_code(code: ReasonCode, version: ProtocolVersion) -> Result<(), Violation> {
    if !code.is_valid_for(PacketType::Connack, version) {
        return Err(Violation::InvalidReasonCode {
            code,
            packet_type: PacketType::Connack,
        });
    }
    Ok(())
}
