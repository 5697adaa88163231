//! The [`Packet`] enum tying the packet types together, the decode entry
//! point and the encode entry point, with the small value types every packet
//! shares ([`ProtocolVersion`], [`QoS`], [`DecodeOptions`], [`Decoded`]).

use core::fmt;

use super::ack::PubAck;
use super::auth::Auth;
use super::connack::Connack;
use super::connect::Connect;
use super::disconnect::Disconnect;
use super::error::{DecodeError, EncodeError, Violation};
use super::fixed_header::{FixedHeader, PacketType};
use super::publish::Publish;
use super::subscribe::{Suback, Subscribe};
use super::unsubscribe::{Unsuback, Unsubscribe};
use super::wire::{self, Reader, Writer};

/// The MQTT protocol version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte CONNECT carries: 4 or 5.
    pub const fn level(self) -> u8 {
        match self {
            Self::V311 => 4,
            Self::V5 => 5,
        }
    }

    pub(crate) const fn is_v5(self) -> bool {
        matches!(self, Self::V5)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V311 => "MQTT 3.1.1",
            Self::V5 => "MQTT 5.0",
        })
    }
}

/// Quality of service of a message (3.1.1 §4.3, 5.0 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum QoS {
    /// At most once (0).
    #[default]
    AtMostOnce = 0,
    /// At least once (1).
    AtLeastOnce = 1,
    /// Exactly once (2).
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit value; 3 is invalid.
    pub const fn from_bits(bits: u8) -> Result<Self, Violation> {
        match bits {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            2 => Ok(Self::ExactlyOnce),
            _ => Err(Violation::InvalidQos),
        }
    }
}

/// What decoding needs to know besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The negotiated version. CONNECT carries its own and ignores this;
    /// a server decoding the first packet of a connection passes
    /// [`ProtocolVersion::V5`], whose packet types are a superset.
    pub version: ProtocolVersion,
    /// The largest packet accepted, fixed header included. Larger packets
    /// fail with [`DecodeError::PacketTooLarge`] from their fixed header.
    pub max_packet_size: u32,
}

impl DecodeOptions {
    /// The largest packet MQTT can express: 5 header bytes + 268 435 455.
    pub const PROTOCOL_MAX_PACKET_SIZE: u32 = wire::MAX_VARINT + 5;

    /// Options for `version` with no limit below the protocol's own.
    pub const fn new(version: ProtocolVersion) -> Self {
        Self {
            version,
            max_packet_size: Self::PROTOCOL_MAX_PACKET_SIZE,
        }
    }

    /// The same options with a maximum packet size.
    pub const fn with_max_packet_size(self, max_packet_size: u32) -> Self {
        Self {
            max_packet_size,
            ..self
        }
    }
}

/// The outcome of a decode that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A complete value, and how many bytes of the input it took.
    Complete {
        /// The decoded value, borrowing from the input.
        value: T,
        /// Bytes consumed from the start of the input.
        len: usize,
    },
    /// The input is a valid prefix but too short; nothing was consumed.
    /// At least `needed` more bytes are required (exact once the fixed
    /// header is complete, a lower bound before).
    Incomplete {
        /// How many more bytes are needed at least.
        needed: usize,
    },
}

/// Any MQTT control packet, borrowing from the bytes it was decoded from (or
/// from the caller's values, for emit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// CONNECT (3.1.1 §3.1, 5.0 §3.1).
    Connect(Connect<'a>),
    /// CONNACK (§3.2).
    Connack(Connack<'a>),
    /// PUBLISH (§3.3).
    Publish(Publish<'a>),
    /// PUBACK (§3.4).
    Puback(PubAck<'a>),
    /// PUBREC (§3.5).
    Pubrec(PubAck<'a>),
    /// PUBREL (§3.6).
    Pubrel(PubAck<'a>),
    /// PUBCOMP (§3.7).
    Pubcomp(PubAck<'a>),
    /// SUBSCRIBE (§3.8).
    Subscribe(Subscribe<'a>),
    /// SUBACK (§3.9).
    Suback(Suback<'a>),
    /// UNSUBSCRIBE (§3.10).
    Unsubscribe(Unsubscribe<'a>),
    /// UNSUBACK (§3.11).
    Unsuback(Unsuback<'a>),
    /// PINGREQ (§3.12).
    Pingreq,
    /// PINGRESP (§3.13).
    Pingresp,
    /// DISCONNECT (§3.14; 3.1.1 has no reason code or properties).
    Disconnect(Disconnect<'a>),
    /// AUTH (5.0 §3.15 only).
    Auth(Auth<'a>),
}

impl<'a> Packet<'a> {
    /// Decodes one packet from the start of `buf`.
    ///
    /// A buffer holding less than a whole packet gives
    /// [`Decoded::Incomplete`] (never an error, nothing consumed); a complete
    /// packet gives the packet and its length, and bytes after it are left
    /// alone. The maximum packet size is enforced from the fixed header.
    pub fn decode(buf: &'a [u8], opts: &DecodeOptions) -> Result<Decoded<Self>, DecodeError> {
        Self::decode_framed(buf, opts, Self::decode_body)
    }

    /// Decodes one packet a server sends to a client, from the start of
    /// `buf`: what a client uses in place of [`Packet::decode`].
    ///
    /// The same as [`Packet::decode`] for CONNACK, PUBLISH, the
    /// acknowledgements, PINGRESP, DISCONNECT and AUTH. The four packet
    /// types that flow only from client to server (CONNECT, SUBSCRIBE,
    /// UNSUBSCRIBE, PINGREQ) are refused, once complete, with
    /// [`Violation::NotSentByServer`] and their bodies are not decoded, so
    /// a client's firmware does not carry their decoders.
    pub fn decode_from_server(
        buf: &'a [u8],
        opts: &DecodeOptions,
    ) -> Result<Decoded<Self>, DecodeError> {
        Self::decode_framed(buf, opts, Self::decode_body_from_server)
    }

    /// The framing both decoders share: the fixed header, the maximum
    /// packet size, a short buffer as `Incomplete`, then `body` on exactly
    /// the packet's body.
    #[inline(always)]
    fn decode_framed(
        buf: &'a [u8],
        opts: &DecodeOptions,
        decode_body: fn(&FixedHeader, &'a [u8], ProtocolVersion) -> Result<Self, DecodeError>,
    ) -> Result<Decoded<Self>, DecodeError> {
        let header = match FixedHeader::decode(buf, opts)? {
            Decoded::Complete { value, .. } => value,
            Decoded::Incomplete { needed } => return Ok(Decoded::Incomplete { needed }),
        };
        let total = header.packet_len();
        let Some(packet) = buf.get(..total) else {
            return Ok(Decoded::Incomplete {
                needed: total.saturating_sub(buf.len()),
            });
        };
        let body = packet
            .get(usize::from(header.header_len)..)
            .ok_or(Violation::Truncated)?;
        let value = decode_body(&header, body, opts.version)?;
        Ok(Decoded::Complete { value, len: total })
    }

    /// [`Packet::decode_body`] for the packets a server sends; see
    /// [`Packet::decode_from_server`].
    fn decode_body_from_server(
        header: &FixedHeader,
        body: &'a [u8],
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        Self::decode_body_of::<false>(header, body, version)
    }

    /// Decodes the body (the `header.remaining_length` bytes after the fixed
    /// header) of a packet whose header was decoded with
    /// [`FixedHeader::decode`]. `body` must be exactly the body.
    #[inline]
    pub fn decode_body(
        header: &FixedHeader,
        body: &'a [u8],
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        Self::decode_body_of::<true>(header, body, version)
    }

    /// The body decoder; without `TO_SERVER` the packets only a client
    /// sends are refused before any of their decoders is reached, so a
    /// client build does not carry them.
    #[inline]
    fn decode_body_of<const TO_SERVER: bool>(
        header: &FixedHeader,
        body: &'a [u8],
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        if body.len() != header.remaining_length as usize {
            return Err(Violation::Truncated.into());
        }
        let flags = header.flags;
        let t = header.packet_type;
        if !TO_SERVER
            && matches!(
                t,
                PacketType::Connect
                    | PacketType::Subscribe
                    | PacketType::Unsubscribe
                    | PacketType::Pingreq
            )
        {
            return Err(Violation::NotSentByServer { packet_type: t }.into());
        }
        Ok(match t {
            PacketType::Connect => Self::Connect(Connect::decode(body)?),
            PacketType::Connack => Self::Connack(Connack::decode(body, version)?),
            PacketType::Publish => Self::Publish(Publish::decode(flags, body, version)?),
            PacketType::Puback => Self::Puback(PubAck::decode(t, body, version)?),
            PacketType::Pubrec => Self::Pubrec(PubAck::decode(t, body, version)?),
            PacketType::Pubrel => Self::Pubrel(PubAck::decode(t, body, version)?),
            PacketType::Pubcomp => Self::Pubcomp(PubAck::decode(t, body, version)?),
            PacketType::Subscribe => Self::Subscribe(Subscribe::decode(body, version)?),
            PacketType::Suback => Self::Suback(Suback::decode(body, version)?),
            PacketType::Unsubscribe => Self::Unsubscribe(Unsubscribe::decode(body, version)?),
            PacketType::Unsuback => Self::Unsuback(Unsuback::decode(body, version)?),
            PacketType::Pingreq => {
                Reader::new(body).finish()?;
                Self::Pingreq
            }
            PacketType::Pingresp => {
                Reader::new(body).finish()?;
                Self::Pingresp
            }
            PacketType::Disconnect => Self::Disconnect(Disconnect::decode(body, version)?),
            PacketType::Auth => Self::Auth(Auth::decode(body, version)?),
        })
    }

    /// The packet's type.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::Connack(_) => PacketType::Connack,
            Self::Publish(_) => PacketType::Publish,
            Self::Puback(_) => PacketType::Puback,
            Self::Pubrec(_) => PacketType::Pubrec,
            Self::Pubrel(_) => PacketType::Pubrel,
            Self::Pubcomp(_) => PacketType::Pubcomp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::Suback(_) => PacketType::Suback,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::Unsuback(_) => PacketType::Unsuback,
            Self::Pingreq => PacketType::Pingreq,
            Self::Pingresp => PacketType::Pingresp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// The version CONNECT is written in is its own; others use `version`.
    const fn wire_version(&self, version: ProtocolVersion) -> ProtocolVersion {
        match self {
            Self::Connect(c) => c.protocol_version,
            _ => version,
        }
    }

    #[inline]
    fn body_len(&self, version: ProtocolVersion) -> usize {
        match self {
            Self::Connect(p) => p.body_len(),
            Self::Connack(p) => p.body_len(version),
            Self::Publish(p) => p.body_len(version),
            Self::Puback(p) | Self::Pubrec(p) | Self::Pubrel(p) | Self::Pubcomp(p) => {
                p.body_len(version)
            }
            Self::Subscribe(p) => p.body_len(version),
            Self::Suback(p) => p.body_len(version),
            Self::Unsubscribe(p) => p.body_len(version),
            Self::Unsuback(p) => p.body_len(version),
            Self::Pingreq | Self::Pingresp => 0,
            Self::Disconnect(p) => p.body_len(version),
            Self::Auth(p) => p.body_len(),
        }
    }

    /// The number of bytes [`Packet::encode`] writes for `version` (for
    /// CONNECT, its own `protocol_version`). Saturates for packets too large
    /// to encode, which [`Packet::encode`] refuses.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(self.wire_version(version));
        body.saturating_add(1 + wire::varint_len(body))
    }

    /// Writes the packet into `buf` and returns its length.
    ///
    /// `version` is the negotiated version; CONNECT is written in its own
    /// `protocol_version`. The packet is checked by the rules the decoder
    /// applies; what cannot be said in `version` (AUTH, properties or reason
    /// codes in 3.1.1) is [`EncodeError::NotInVersion`]. A buffer shorter
    /// than [`Packet::encoded_len`] is [`EncodeError::InsufficientSize`];
    /// its contents are then unspecified.
    #[inline]
    pub fn encode(&self, buf: &mut [u8], version: ProtocolVersion) -> Result<usize, EncodeError> {
        // One dispatch into one small encoder per packet type, each kept
        // out of line: a single function with every arm inlined saves and
        // restores every register and sets up a large frame on every call,
        // whichever packet it writes.
        match self {
            Self::Connect(p) => encode_connect(p, buf),
            Self::Connack(p) => encode_connack(p, buf, version),
            Self::Publish(p) => p.encode(buf, version),
            Self::Puback(p) | Self::Pubrec(p) | Self::Pubrel(p) | Self::Pubcomp(p) => {
                encode_ack(p, self.packet_type(), buf, version)
            }
            Self::Subscribe(p) => encode_subscribe(p, buf, version),
            Self::Suback(p) => encode_suback(p, buf, version),
            Self::Unsubscribe(p) => encode_unsubscribe(p, buf, version),
            Self::Unsuback(p) => encode_unsuback(p, buf, version),
            Self::Pingreq => encode_empty(buf, PacketType::Pingreq),
            Self::Pingresp => encode_empty(buf, PacketType::Pingresp),
            Self::Disconnect(p) => encode_disconnect(p, buf, version),
            Self::Auth(p) => encode_auth(p, buf, version),
        }
    }
}

/// Each encoder measures its body once; `header` writes the fixed header
/// and hands back a writer over exactly the rest of the packet.
macro_rules! encoder {
    ($(#[$attr:meta])* $name:ident, $ty:ident, $t:ident, |$p:ident, $w:ident, $version:ident| len: $len:expr, write: $write:expr) => {
        $(#[$attr])*
        pub(crate) fn $name(
            $p: &$ty<'_>,
            buf: &mut [u8],
            $version: ProtocolVersion,
        ) -> Result<usize, EncodeError> {
            let (mut $w, total) = header(buf, PacketType::$t, fixed(PacketType::$t), $len)?;
            $write?;
            debug_assert_eq!($w.position(), total, "encoded_len disagrees with encode");
            Ok(total)
        }
    };
}

encoder!(#[inline(never)] encode_connack, Connack, Connack, |p, w, version|
    len: p.body_len(version), write: p.write_body(&mut w, version));
encoder!(
    // A client (on a device) has one caller, which lends a slice: inlined
    // there, the re-encoding of a decoded list drops out.
    #[cfg_attr(target_os = "none", inline)]
    #[cfg_attr(not(target_os = "none"), inline(never))]
    encode_subscribe, Subscribe, Subscribe, |p, w, version|
    len: p.body_len(version), write: p.write_body(&mut w, version));
encoder!(#[inline(never)] encode_suback, Suback, Suback, |p, w, version|
    len: p.body_len(version), write: p.write_body(&mut w, version));
encoder!(
    // A client (on a device) has one caller, which lends a slice: inlined
    // there, the re-encoding of a decoded list drops out.
    #[cfg_attr(target_os = "none", inline)]
    #[cfg_attr(not(target_os = "none"), inline(never))]
    encode_unsubscribe, Unsubscribe, Unsubscribe, |p, w, version|
    len: p.body_len(version), write: p.write_body(&mut w, version));
encoder!(#[inline(never)] encode_unsuback, Unsuback, Unsuback, |p, w, version|
    len: p.body_len(version), write: p.write_body(&mut w, version));
encoder!(#[inline(never)] encode_disconnect, Disconnect, Disconnect, |p, w, version|
    len: p.body_len(version), write: p.write_body(&mut w, version));
encoder!(#[inline(never)] encode_auth, Auth, Auth, |p, w, version|
    len: p.body_len(), write: p.write_body(&mut w, version));

/// CONNECT is measured and written in its own version.
#[inline(never)]
pub(crate) fn encode_connect(p: &Connect<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let (mut w, total) = header(
        buf,
        PacketType::Connect,
        fixed(PacketType::Connect),
        p.body_len(),
    )?;
    p.write_body(&mut w)?;
    debug_assert_eq!(w.position(), total, "encoded_len disagrees with encode");
    Ok(total)
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share a layout.
#[inline(never)]
pub(crate) fn encode_ack(
    p: &PubAck<'_>,
    t: PacketType,
    buf: &mut [u8],
    version: ProtocolVersion,
) -> Result<usize, EncodeError> {
    let (mut w, total) = header(buf, t, fixed(t), p.body_len(version))?;
    p.write_body(&mut w, t, version)?;
    debug_assert_eq!(w.position(), total, "encoded_len disagrees with encode");
    Ok(total)
}

/// PINGREQ and PINGRESP: a fixed header with no body.
#[inline(never)]
pub(crate) fn encode_empty(buf: &mut [u8], t: PacketType) -> Result<usize, EncodeError> {
    let (_, total) = header(buf, t, 0, 0)?;
    Ok(total)
}

/// The fixed-header flags of a packet type other than PUBLISH.
#[inline(always)]
const fn fixed(packet_type: PacketType) -> u8 {
    match packet_type.fixed_flags() {
        Some(flags) => flags,
        None => 0,
    }
}

/// Writes the fixed header of a packet with a body of `body` bytes into
/// `buf`, and returns a writer for the body over exactly the rest of the
/// packet, with the packet's total length. The one bounds check that can
/// fail is here, up front: every later write stays inside `buf[..total]`.
/// Inlined on hosts; shared by every encoder on devices (built for size).
#[cfg_attr(target_os = "none", inline(never))]
#[cfg_attr(not(target_os = "none"), inline(always))]
pub(crate) fn header(
    buf: &mut [u8],
    packet_type: PacketType,
    flags: u8,
    body: usize,
) -> Result<(Writer<'_>, usize), EncodeError> {
    let Some(body32) = u32::try_from(body).ok().filter(|b| *b <= wire::MAX_VARINT) else {
        return Err(Violation::RemainingLengthTooLarge { len: body }.into());
    };
    let (varint, varint_len) = wire::varint_bytes(body32);
    let total = 1 + varint_len + body;
    let buf = buf
        .get_mut(..total)
        .ok_or(EncodeError::InsufficientSize { required: total })?;
    let mut w = Writer::new(buf);
    let first = ((packet_type as u8) << 4) | flags;
    // Devices: two plain writes (one shared copy of this function).
    #[cfg(target_os = "none")]
    write_header_plain(&mut w, first, &varint, varint_len)?;
    #[cfg(not(target_os = "none"))]
    write_header_wide(&mut w, first, varint, varint_len)?;
    Ok((w, total))
}

/// The hosts' fixed-header write: one fixed-size store per length.
#[cfg(any(not(target_os = "none"), test))]
#[inline(always)]
fn write_header_wide(
    w: &mut Writer<'_>,
    first: u8,
    varint: [u8; 4],
    varint_len: usize,
) -> Result<(), EncodeError> {
    let [v0, v1, v2, v3] = varint;
    match varint_len {
        1 => w.array([first, v0])?,
        2 => w.array([first, v0, v1])?,
        3 => w.array([first, v0, v1, v2])?,
        _ => w.array([first, v0, v1, v2, v3])?,
    }
    Ok(())
}

/// The devices' fixed-header write (compared with the hosts' in the tests).
#[cfg(any(target_os = "none", test))]
#[inline(always)]
fn write_header_plain(
    w: &mut Writer<'_>,
    first: u8,
    varint: &[u8; 4],
    varint_len: usize,
) -> Result<(), EncodeError> {
    w.u8(first)?;
    w.bytes(varint.get(..varint_len).unwrap_or_default())
}

macro_rules! from_packet {
    ($($ty:ident => $variant:ident),*) => {
        $(impl<'a> From<$ty<'a>> for Packet<'a> {
            fn from(p: $ty<'a>) -> Self {
                Self::$variant(p)
            }
        })*
    };
}

from_packet!(
    Connect => Connect,
    Connack => Connack,
    Publish => Publish,
    Subscribe => Subscribe,
    Suback => Suback,
    Unsubscribe => Unsubscribe,
    Unsuback => Unsuback,
    Disconnect => Disconnect,
    Auth => Auth
);

/// Checks that 3.1.1 is not asked to carry properties.
#[inline]
pub(crate) fn no_properties_in_v311(
    properties: &super::properties::Properties<'_>,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    if !version.is_v5() && !properties.is_empty() {
        return Err(EncodeError::NotInVersion {
            what: "properties",
            version,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Connack, Subscription, SubscriptionOptions, Unsubscribe};

    /// 3.1.1 §2.2 / 5.0 §2.1.1: the fixed header's first byte and the
    /// Remaining Length, at every length edge of the Variable Byte Integer
    /// and in buffers one byte too short: the devices' plain write and the
    /// hosts' wide write give the same results, and the same bytes when
    /// they succeed.
    #[test]
    fn mqtt_2_2_device_and_host_fixed_header_writes_agree() {
        for body in [
            0u32,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            wire::MAX_VARINT,
        ] {
            let (varint, varint_len) = wire::varint_bytes(body);
            for room in [varint_len, varint_len + 1] {
                let (mut wide, mut plain) = ([0u8; 6], [0u8; 6]);
                let a = write_header_wide(
                    &mut Writer::new(&mut wide[..room]),
                    0x30,
                    varint,
                    varint_len,
                );
                let b = write_header_plain(
                    &mut Writer::new(&mut plain[..room]),
                    0x30,
                    &varint,
                    varint_len,
                );
                assert_eq!(a, b, "{body} {room}");
                // After an error the bytes are unspecified (`Packet::encode`).
                if a.is_ok() {
                    assert_eq!(wide, plain, "{body} {room}");
                }
            }
        }
    }

    /// 3.1.1 §2.2.1 Table 2.1, 5.0 §2.1.2 Table 2-1 (direction of flow):
    /// a client's decoder refuses the four client-to-server packet types
    /// with an error value, whatever their body, and decodes what a server
    /// sends exactly as `Packet::decode` does, `Incomplete` included.
    #[test]
    fn mqtt_2_1_2_client_decoder_refuses_client_to_server_packets() {
        let opts = DecodeOptions::new(ProtocolVersion::V5);
        let subs = [Subscription {
            filter: "a/+",
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }];
        let mut buf = [0u8; 64];
        let refused = [
            Packet::Connect(Connect::new(ProtocolVersion::V5, "c")),
            Packet::Subscribe(Subscribe::new(7, &subs)),
            Packet::Unsubscribe(Unsubscribe::new(8, &["a/+"])),
            Packet::Pingreq,
        ];
        for packet in refused {
            let n = packet.encode(&mut buf, ProtocolVersion::V5).unwrap();
            let bytes = &buf[..n];
            assert!(matches!(
                Packet::decode(bytes, &opts),
                Ok(Decoded::Complete { .. })
            ));
            assert_eq!(
                Packet::decode_from_server(bytes, &opts),
                Err(Violation::NotSentByServer {
                    packet_type: packet.packet_type()
                }
                .into()),
            );
            // Refused only once complete; a prefix is still Incomplete.
            assert!(matches!(
                Packet::decode_from_server(&bytes[..n - 1], &opts),
                Ok(Decoded::Incomplete { .. })
            ));
        }
        let accepted = [
            Packet::Connack(Connack {
                session_present: false,
                reason_code: crate::codec::ReasonCode::SUCCESS,
                properties: crate::codec::Properties::NONE,
            }),
            Packet::Publish(Publish::new("a/b", b"x")),
            Packet::Puback(PubAck::new(3)),
            Packet::Pubrel(PubAck::new(4)),
            Packet::Suback(Suback::new(7, &[crate::codec::ReasonCode::GRANTED_QOS_1])),
            Packet::Unsuback(Unsuback::new(8, &[crate::codec::ReasonCode::SUCCESS])),
            Packet::Pingresp,
            Packet::Disconnect(Disconnect::NORMAL),
        ];
        for packet in accepted {
            let n = packet.encode(&mut buf, ProtocolVersion::V5).unwrap();
            let bytes = &buf[..n];
            assert_eq!(
                Packet::decode_from_server(bytes, &opts),
                Packet::decode(bytes, &opts),
                "{packet:?}"
            );
            assert_eq!(
                Packet::decode_from_server(bytes, &opts),
                Ok(Decoded::Complete {
                    value: packet,
                    len: n
                })
            );
        }
    }
}
