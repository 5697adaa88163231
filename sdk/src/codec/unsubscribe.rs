//! UNSUBSCRIBE and UNSUBACK (3.1.1 §3.10-3.11, 5.0 §3.10-3.11).
//!
//! A received UNSUBSCRIBE's filters are validated once and read lazily
//! through [`TopicFilters::iter`]; for emit the same type wraps a caller's
//! `&[&str]`. A 3.1.1 UNSUBACK has no reason codes.

use core::fmt;

use super::error::{EncodeError, Violation};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, no_properties_in_v311};
use super::properties::{Properties, PropertyContext};
use super::reason_code::{ReasonCode, ReasonCodes};
use super::subscribe::{check_codes, nonzero_id, write_ack_with_codes};
use super::topic_syntax;
use super::wire::{Reader, Writer};

#[derive(Clone, Copy)]
enum FiltersRepr<'a> {
    /// The validated payload of a received UNSUBSCRIBE.
    Raw(&'a [u8]),
    /// Filters lent by the caller for emit.
    Slice(&'a [&'a str]),
}

/// The topic filters of an UNSUBSCRIBE, in order. Equality compares them.
#[derive(Clone, Copy)]
pub struct TopicFilters<'a>(FiltersRepr<'a>);

impl Default for TopicFilters<'_> {
    fn default() -> Self {
        Self::from_slice(&[])
    }
}

impl<'a> TopicFilters<'a> {
    /// Filters lent by the caller, for emit.
    pub const fn from_slice(filters: &'a [&'a str]) -> Self {
        Self(FiltersRepr::Slice(filters))
    }

    /// The filters, read lazily.
    pub fn iter(&self) -> TopicFilterIter<'a> {
        TopicFilterIter(match self.0 {
            FiltersRepr::Raw(bytes) => IterRepr::Raw(Reader::new(bytes)),
            FiltersRepr::Slice(s) => IterRepr::Slice(s),
        })
    }

    /// Whether there are none (never true for a decoded UNSUBSCRIBE).
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// How many there are (counts by walking them).
    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

impl<'a> From<&'a [&'a str]> for TopicFilters<'a> {
    fn from(s: &'a [&'a str]) -> Self {
        Self::from_slice(s)
    }
}

impl<'a> IntoIterator for TopicFilters<'a> {
    type Item = &'a str;
    type IntoIter = TopicFilterIter<'a>;
    fn into_iter(self) -> TopicFilterIter<'a> {
        self.iter()
    }
}

impl PartialEq for TopicFilters<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for TopicFilters<'_> {}

impl fmt::Debug for TopicFilters<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[derive(Clone)]
enum IterRepr<'a> {
    Raw(Reader<'a>),
    Slice(&'a [&'a str]),
}

/// Iterator over [`TopicFilters`].
#[derive(Clone)]
pub struct TopicFilterIter<'a>(IterRepr<'a>);

impl fmt::Debug for TopicFilterIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TopicFilterIter")
    }
}

fn read_filter<'a>(r: &mut Reader<'a>) -> Result<&'a str, Violation> {
    let filter = r.utf8()?;
    topic_syntax::check_filter(filter)?;
    Ok(filter)
}

impl<'a> Iterator for TopicFilterIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match &mut self.0 {
            IterRepr::Raw(r) => {
                if r.is_empty() {
                    return None;
                }
                // Validated at decode; a failure would end the iteration.
                read_filter(r).ok()
            }
            IterRepr::Slice(s) => {
                let (first, rest) = s.split_first()?;
                *s = rest;
                Some(*first)
            }
        }
    }
}

const UNSUBSCRIBE: PropertyContext = PropertyContext::Packet(PacketType::Unsubscribe);
const UNSUBACK: PropertyContext = PropertyContext::Packet(PacketType::Unsuback);

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    /// The packet identifier (non-zero).
    pub packet_id: u16,
    /// 5.0 properties (User Properties).
    pub properties: Properties<'a>,
    /// The topic filters (at least one).
    pub filters: TopicFilters<'a>,
}

impl<'a> Unsubscribe<'a> {
    /// An UNSUBSCRIBE of `filters` without properties.
    pub const fn new(packet_id: u16, filters: &'a [&'a str]) -> Self {
        Self {
            packet_id,
            properties: Properties::NONE,
            filters: TopicFilters::from_slice(filters),
        }
    }

    pub(crate) fn decode(body: &'a [u8], version: ProtocolVersion) -> Result<Self, Violation> {
        let mut r = Reader::new(body);
        let packet_id = nonzero_id(&mut r)?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, UNSUBSCRIBE)?
        } else {
            Properties::NONE
        };
        let bytes = r.rest();
        if bytes.is_empty() {
            return Err(Violation::NoTopicFilters);
        }
        let mut payload = Reader::new(bytes);
        while !payload.is_empty() {
            read_filter(&mut payload)?;
        }
        Ok(Self {
            packet_id,
            properties,
            filters: TopicFilters(FiltersRepr::Raw(bytes)),
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        let filters: usize = match self.filters.0 {
            FiltersRepr::Raw(bytes) => bytes.len(),
            FiltersRepr::Slice(s) => s.iter().map(|f| 2 + f.len()).sum(),
        };
        2 + props + filters
    }

    pub(crate) fn write_body(
        &self,
        w: &mut Writer<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        if self.packet_id == 0 {
            return Err(Violation::ZeroPacketId.into());
        }
        if self.filters.is_empty() {
            return Err(Violation::NoTopicFilters.into());
        }
        no_properties_in_v311(&self.properties, version)?;
        w.u16(self.packet_id)?;
        if version.is_v5() {
            self.properties.write(w, UNSUBSCRIBE)?;
        }
        for filter in self.filters.iter() {
            topic_syntax::check_filter(filter)?;
            // `check_filter` has refused U+0000.
            w.utf8_checked(filter)?;
        }
        Ok(())
    }
}

/// An UNSUBACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsuback<'a> {
    /// The UNSUBSCRIBE's packet identifier.
    pub packet_id: u16,
    /// 5.0 properties (Reason String, User Properties).
    pub properties: Properties<'a>,
    /// 5.0: one code per filter; 3.1.1: none ([`ReasonCodes::EMPTY`]).
    pub reason_codes: ReasonCodes<'a>,
}

impl<'a> Unsuback<'a> {
    /// An UNSUBACK with `reason_codes` (empty for 3.1.1) and no properties.
    pub const fn new(packet_id: u16, reason_codes: &'a [ReasonCode]) -> Self {
        Self {
            packet_id,
            properties: Properties::NONE,
            reason_codes: ReasonCodes::from_slice(reason_codes),
        }
    }

    pub(crate) fn decode(body: &'a [u8], version: ProtocolVersion) -> Result<Self, Violation> {
        let mut r = Reader::new(body);
        let packet_id = nonzero_id(&mut r)?;
        if !version.is_v5() {
            r.finish()?;
            return Ok(Self {
                packet_id,
                properties: Properties::NONE,
                reason_codes: ReasonCodes::EMPTY,
            });
        }
        let properties = Properties::decode(&mut r, UNSUBACK)?;
        let codes = r.rest();
        check_codes(codes, PacketType::Unsuback, version)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes: ReasonCodes::from_raw(codes),
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len() + self.reason_codes.len()
        } else {
            2
        }
    }

    pub(crate) fn write_body(
        &self,
        w: &mut Writer<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        if version.is_v5() {
            return write_ack_with_codes(
                w,
                self.packet_id,
                &self.properties,
                &self.reason_codes,
                PacketType::Unsuback,
                version,
            );
        }
        if self.packet_id == 0 {
            return Err(Violation::ZeroPacketId.into());
        }
        no_properties_in_v311(&self.properties, version)?;
        if !self.reason_codes.is_empty() {
            return Err(EncodeError::NotInVersion {
                what: "UNSUBACK reason codes",
                version,
            });
        }
        w.u16(self.packet_id)
    }
}
