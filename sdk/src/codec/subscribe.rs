//! SUBSCRIBE and SUBACK (3.1.1 §3.8-3.9, 5.0 §3.8-3.9).
//!
//! A received SUBSCRIBE's filters and options are validated once and then
//! read lazily from its bytes through [`Subscriptions::iter`]; for emit the
//! same type wraps a caller's `&[Subscription]`. SUBACK codes likewise
//! ([`ReasonCodes`]). It does not check filters against server capabilities
//! (wildcard or shared subscriptions available): the session does.

use core::fmt;

use super::error::{EncodeError, Violation};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, QoS, no_properties_in_v311};
use super::properties::{Properties, PropertyContext};
use super::reason_code::{ReasonCode, ReasonCodes};
use super::topic_syntax;
use super::wire::{Reader, Writer};

/// 5.0 Retain Handling (§3.8.3.1): when retained messages are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send retained messages at subscribe time (0; 3.1.1 behaviour).
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not exist (1).
    SendAtSubscribeIfNew = 1,
    /// Do not send them (2).
    DoNotSend = 2,
}

/// Subscription options (3.1.1: requested QoS only; 5.0 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// The maximum QoS requested.
    pub qos: QoS,
    /// 5.0 No Local: do not receive one's own publications.
    pub no_local: bool,
    /// 5.0 Retain As Published: keep the RETAIN flag when forwarding.
    pub retain_as_published: bool,
    /// 5.0 Retain Handling.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options requesting `qos`, everything else default.
    pub const fn qos(qos: QoS) -> Self {
        Self {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }

    fn parse(byte: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        let reserved = if version.is_v5() {
            0b1100_0000
        } else {
            0b1111_1100
        };
        if byte & reserved != 0 {
            return Err(Violation::ReservedSubscriptionOptions);
        }
        Ok(Self {
            qos: QoS::from_bits(byte & 0b11)?,
            no_local: byte & 0b0100 != 0,
            retain_as_published: byte & 0b1000 != 0,
            retain_handling: match (byte >> 4) & 0b11 {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendAtSubscribeIfNew,
                2 => RetainHandling::DoNotSend,
                _ => return Err(Violation::InvalidRetainHandling),
            },
        })
    }

    #[inline(always)]
    fn to_byte(self, version: ProtocolVersion) -> Result<u8, EncodeError> {
        if !version.is_v5() {
            // 3.1.1 carries the QoS alone: the other options must be at
            // their defaults (the 3.1.1 behaviour).
            if self.no_local
                || self.retain_as_published
                || self.retain_handling != RetainHandling::SendAtSubscribe
            {
                return Err(EncodeError::NotInVersion {
                    what: "5.0 subscription options",
                    version,
                });
            }
            return Ok(self.qos as u8);
        }
        let byte = (self.qos as u8)
            | (u8::from(self.no_local) << 2)
            | (u8::from(self.retain_as_published) << 3)
            | ((self.retain_handling as u8) << 4);
        Ok(byte)
    }
}

/// One topic filter and its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subscription<'a> {
    /// The topic filter.
    pub filter: &'a str,
    /// The options.
    pub options: SubscriptionOptions,
}

impl Subscription<'_> {
    /// [MQTT-4.7.1-*], 5.0 [MQTT-3.8.3-4].
    #[inline(always)]
    fn check(&self) -> Result<(), Violation> {
        topic_syntax::check_filter(self.filter)?;
        if self.options.no_local && topic_syntax::is_shared(self.filter) {
            return Err(Violation::NoLocalOnSharedSubscription);
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum SubsRepr<'a> {
    /// The validated payload of a received SUBSCRIBE.
    Raw {
        bytes: &'a [u8],
        version: ProtocolVersion,
    },
    /// Subscriptions lent by the caller for emit.
    Slice(&'a [Subscription<'a>]),
}

/// The subscriptions of a SUBSCRIBE, in order. Equality compares them.
#[derive(Clone, Copy)]
pub struct Subscriptions<'a>(SubsRepr<'a>);

impl Default for Subscriptions<'_> {
    fn default() -> Self {
        Self::from_slice(&[])
    }
}

impl<'a> Subscriptions<'a> {
    /// Subscriptions lent by the caller, for emit.
    pub const fn from_slice(subscriptions: &'a [Subscription<'a>]) -> Self {
        Self(SubsRepr::Slice(subscriptions))
    }

    /// The subscriptions, read lazily.
    pub fn iter(&self) -> SubscriptionIter<'a> {
        SubscriptionIter(match self.0 {
            SubsRepr::Raw { bytes, version } => IterRepr::Raw(Reader::new(bytes), version),
            SubsRepr::Slice(s) => IterRepr::Slice(s),
        })
    }

    /// Whether there are none (never true for a decoded SUBSCRIBE).
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// How many there are (counts by walking them).
    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

impl<'a> From<&'a [Subscription<'a>]> for Subscriptions<'a> {
    fn from(s: &'a [Subscription<'a>]) -> Self {
        Self::from_slice(s)
    }
}

impl<'a> IntoIterator for Subscriptions<'a> {
    type Item = Subscription<'a>;
    type IntoIter = SubscriptionIter<'a>;
    fn into_iter(self) -> SubscriptionIter<'a> {
        self.iter()
    }
}

impl PartialEq for Subscriptions<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Subscriptions<'_> {}

impl fmt::Debug for Subscriptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[derive(Clone)]
enum IterRepr<'a> {
    Raw(Reader<'a>, ProtocolVersion),
    Slice(&'a [Subscription<'a>]),
}

/// Iterator over [`Subscriptions`].
#[derive(Clone)]
pub struct SubscriptionIter<'a>(IterRepr<'a>);

impl fmt::Debug for SubscriptionIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubscriptionIter")
    }
}

fn read_subscription<'a>(
    r: &mut Reader<'a>,
    version: ProtocolVersion,
) -> Result<Subscription<'a>, Violation> {
    let filter = r.utf8()?;
    let options = SubscriptionOptions::parse(r.u8()?, version)?;
    let subscription = Subscription { filter, options };
    subscription.check()?;
    Ok(subscription)
}

impl<'a> Iterator for SubscriptionIter<'a> {
    type Item = Subscription<'a>;

    fn next(&mut self) -> Option<Subscription<'a>> {
        match &mut self.0 {
            IterRepr::Raw(r, version) => {
                if r.is_empty() {
                    return None;
                }
                // Validated at decode; a failure would end the iteration.
                read_subscription(r, *version).ok()
            }
            IterRepr::Slice(s) => {
                let (first, rest) = s.split_first()?;
                *s = rest;
                Some(*first)
            }
        }
    }
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// The packet identifier (non-zero).
    pub packet_id: u16,
    /// 5.0 properties (Subscription Identifier, User Properties).
    pub properties: Properties<'a>,
    /// The subscriptions (at least one).
    pub subscriptions: Subscriptions<'a>,
}

const SUBSCRIBE: PropertyContext = PropertyContext::Packet(PacketType::Subscribe);
const SUBACK: PropertyContext = PropertyContext::Packet(PacketType::Suback);

impl<'a> Subscribe<'a> {
    /// A SUBSCRIBE of `subscriptions` without properties.
    pub const fn new(packet_id: u16, subscriptions: &'a [Subscription<'a>]) -> Self {
        Self {
            packet_id,
            properties: Properties::NONE,
            subscriptions: Subscriptions::from_slice(subscriptions),
        }
    }

    pub(crate) fn decode(body: &'a [u8], version: ProtocolVersion) -> Result<Self, Violation> {
        let mut r = Reader::new(body);
        let packet_id = nonzero_id(&mut r)?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, SUBSCRIBE)?
        } else {
            Properties::NONE
        };
        let bytes = r.rest();
        if bytes.is_empty() {
            return Err(Violation::NoTopicFilters);
        }
        let mut payload = Reader::new(bytes);
        while !payload.is_empty() {
            read_subscription(&mut payload, version)?;
        }
        Ok(Self {
            packet_id,
            properties,
            subscriptions: Subscriptions(SubsRepr::Raw { bytes, version }),
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        let subs: usize = match self.subscriptions.0 {
            SubsRepr::Raw { bytes, .. } => bytes.len(),
            SubsRepr::Slice(s) => s.iter().map(|s| 3 + s.filter.len()).sum(),
        };
        2 + props + subs
    }

    pub(crate) fn write_body(
        &self,
        w: &mut Writer<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        if self.packet_id == 0 {
            return Err(Violation::ZeroPacketId.into());
        }
        let empty = match self.subscriptions.0 {
            SubsRepr::Slice(s) => s.is_empty(),
            SubsRepr::Raw { bytes, .. } => bytes.is_empty(),
        };
        if empty {
            return Err(Violation::NoTopicFilters.into());
        }
        no_properties_in_v311(&self.properties, version)?;
        w.u16(self.packet_id)?;
        if version.is_v5() {
            self.properties.write(w, SUBSCRIBE)?;
        }
        let write = |w: &mut Writer<'_>, s: &Subscription<'_>| {
            s.check()?;
            // `check` has refused U+0000 (and `&str` is UTF-8).
            w.binary_then_u8(s.filter.as_bytes(), s.options.to_byte(version)?)
        };
        match self.subscriptions.0 {
            // What an application builds: walked as a plain slice.
            SubsRepr::Slice(subs) => {
                for s in subs {
                    // Devices check every filter in full (no fast path).
                    if cfg!(target_os = "none") || !topic_syntax::is_plain_filter(s.filter) {
                        // A shared subscription, or an error to name.
                        s.check()?;
                    }
                    // Checked for U+0000 (and `&str` is UTF-8).
                    w.binary_then_u8(s.filter.as_bytes(), s.options.to_byte(version)?)?;
                }
                Ok(())
            }
            SubsRepr::Raw { .. } => self.subscriptions.iter().try_for_each(|s| write(w, &s)),
        }
    }
}

/// A SUBACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suback<'a> {
    /// The SUBSCRIBE's packet identifier.
    pub packet_id: u16,
    /// 5.0 properties (Reason String, User Properties).
    pub properties: Properties<'a>,
    /// One code per subscription: granted QoS or a failure.
    pub reason_codes: ReasonCodes<'a>,
}

impl<'a> Suback<'a> {
    /// A SUBACK with `reason_codes` and no properties.
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
        let properties = if version.is_v5() {
            Properties::decode(&mut r, SUBACK)?
        } else {
            Properties::NONE
        };
        let codes = r.rest();
        check_codes(codes, PacketType::Suback, version)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes: ReasonCodes::from_raw(codes),
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        2 + props + self.reason_codes.len()
    }

    pub(crate) fn write_body(
        &self,
        w: &mut Writer<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_ack_with_codes(
            w,
            self.packet_id,
            &self.properties,
            &self.reason_codes,
            PacketType::Suback,
            version,
        )
    }
}

pub(crate) fn nonzero_id(r: &mut Reader<'_>) -> Result<u16, Violation> {
    match r.u16()? {
        0 => Err(Violation::ZeroPacketId),
        id => Ok(id),
    }
}

/// Every code valid for the packet, and at least one.
pub(crate) fn check_codes(
    codes: &[u8],
    packet_type: PacketType,
    version: ProtocolVersion,
) -> Result<(), Violation> {
    if codes.is_empty() {
        return Err(Violation::NoReasonCodes);
    }
    for &code in codes {
        let code = ReasonCode(code);
        if !code.is_valid_for(packet_type, version) {
            return Err(Violation::InvalidReasonCode { code, packet_type });
        }
    }
    Ok(())
}

/// SUBACK and 5.0 UNSUBACK: identifier, properties, codes.
pub(crate) fn write_ack_with_codes(
    w: &mut Writer<'_>,
    packet_id: u16,
    properties: &Properties<'_>,
    codes: &ReasonCodes<'_>,
    packet_type: PacketType,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    if packet_id == 0 {
        return Err(Violation::ZeroPacketId.into());
    }
    if codes.is_empty() {
        return Err(Violation::NoReasonCodes.into());
    }
    no_properties_in_v311(properties, version)?;
    w.u16(packet_id)?;
    if version.is_v5() {
        properties.write(w, PropertyContext::Packet(packet_type))?;
    }
    for code in codes.iter() {
        if !code.is_valid_for(packet_type, version) {
            return Err(Violation::InvalidReasonCode { code, packet_type }.into());
        }
        w.u8(code.0)?;
    }
    Ok(())
}
