//! What the session hands back: events, inbound messages, tokens.

use core::fmt;

use crate::codec::{PacketType, Properties, ProtocolVersion, QoS, ReasonCode};

/// The most topic filters one SUBSCRIBE or UNSUBSCRIBE request may carry
/// (the size of [`FilterResults`]).
pub const MAX_FILTERS_PER_REQUEST: usize = 8;

/// Identifies one publish from [`Session::publish`](super::Session::publish)
/// to its [`Event::PublishComplete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishToken(pub u32);

/// Where a publish still in the outbox is
/// ([`Session::publish_state`](super::Session::publish_state)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishState {
    /// Queued, not sent yet (or to be sent again as a new publish after
    /// the broker lost the session).
    Queued,
    /// Sent; to be sent again with DUP on the resumed session.
    Resending,
    /// Sent and waiting for PUBACK, PUBREC or PUBCOMP.
    InFlight,
}

/// Identifies one subscribe or unsubscribe request to its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestToken(pub u32);

/// The per-filter reason codes of a SUBACK or UNSUBACK, in request order.
/// In 3.1.1 a SUBACK's granted QoS is given as reason code 0, 1 or 2 and
/// failure as 0x80; UNSUBACK carries none (all [`ReasonCode::SUCCESS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterResults {
    codes: [ReasonCode; MAX_FILTERS_PER_REQUEST],
    len: u8,
}

impl FilterResults {
    pub(crate) const EMPTY: Self = Self {
        codes: [ReasonCode::SUCCESS; MAX_FILTERS_PER_REQUEST],
        len: 0,
    };

    pub(crate) fn push(&mut self, code: ReasonCode) {
        if let Some(slot) = self.codes.get_mut(usize::from(self.len)) {
            *slot = code;
            self.len = self.len.saturating_add(1);
        }
    }

    /// The reason codes, one per filter.
    pub fn codes(&self) -> &[ReasonCode] {
        self.codes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Whether every filter succeeded (code below 0x80).
    pub fn all_succeeded(&self) -> bool {
        self.codes().iter().all(|c| !c.is_error())
    }
}

/// Why a publish did not complete successfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishFailure {
    /// The broker answered PUBACK / PUBREC / PUBCOMP with an error reason
    /// code (5.0).
    Rejected(ReasonCode),
    /// The encoded PUBLISH exceeds the broker's Maximum Packet Size
    /// (5.0 §3.2.2.3.6, [MQTT-3.1.2-24]); it was not sent.
    PacketTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The broker's limit.
        max: u32,
    },
    /// The QoS exceeds the broker's Maximum QoS [MQTT-3.2.2-11].
    QosNotSupported,
    /// Retain was requested but the broker has Retain Available = 0
    /// [MQTT-3.2.2-14].
    RetainNotSupported,
    /// Dropped from the outbox by [`OverflowPolicy::DropOldestQos0`](super::OverflowPolicy::DropOldestQos0).
    Dropped,
    /// The encoded PUBLISH does not fit the driver's transmit buffer; it
    /// was not sent (the messages behind it go on).
    TransmitBufferTooSmall {
        /// Its size in bytes.
        size: usize,
        /// The transmit buffer's size.
        capacity: u32,
    },
    /// Its 5.0 Message Expiry Interval lapsed while it waited in the
    /// outbox (§3.3.2.3.3); it was not sent.
    Expired,
    /// Stored in a format this version cannot read (a durable record from
    /// another version); it was not sent.
    Unreadable,
    /// A QoS 0 message was handed to the transport, but the link failed
    /// before the write was confirmed; QoS 0 is at most once, so it is
    /// not sent again.
    LinkLost,
    /// A QoS 2 publish already sent when the broker lost the session
    /// (CONNACK Session Present 0), dropped by
    /// [`SessionLostPolicy::Abandon`](super::SessionLostPolicy::Abandon):
    /// the broker may or may not have delivered it; it is not sent again.
    SessionLost,
}

impl fmt::Display for PublishFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(code) => write!(f, "rejected by the broker: {code:?}"),
            Self::PacketTooLarge { size, max } => {
                write!(
                    f,
                    "PUBLISH of {size} bytes exceeds the broker's maximum of {max}"
                )
            }
            Self::QosNotSupported => f.write_str("QoS above the broker's Maximum QoS"),
            Self::RetainNotSupported => f.write_str("broker does not support retained messages"),
            Self::Dropped => f.write_str("dropped from a full outbox"),
            Self::TransmitBufferTooSmall { size, capacity } => write!(
                f,
                "PUBLISH of {size} bytes does not fit the {capacity}-byte transmit buffer"
            ),
            Self::Expired => f.write_str("message expiry interval lapsed before it was sent"),
            Self::Unreadable => f.write_str("stored message could not be read back"),
            Self::LinkLost => f.write_str("the link failed before the message was written"),
            Self::SessionLost => f.write_str(
                "the broker lost the session after this QoS 2 message was sent: \
                 it may or may not have been delivered, and is not sent again",
            ),
        }
    }
}

/// Why a link ended (or must be ended by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The transport closed without the session asking for it.
    TransportClosed,
    /// The application called [`Session::disconnect`](super::Session::disconnect).
    ClientRequested,
    /// No PINGRESP within the ping timeout (3.1.1 §3.1.2.10, 5.0 §3.1.2.10).
    KeepaliveTimeout,
    /// The transport took none of our bytes for the write-stall timeout
    /// ([`Session::write_stall_timeout`](super::Session::write_stall_timeout)):
    /// the peer stopped reading, so the link is dead (the driver reports
    /// it through [`Session::handle_write_stalled`](super::Session::handle_write_stalled)).
    WriteStalled,
    /// No CONNACK within the connect timeout.
    ConnackTimeout,
    /// CONNACK refused the connection with this reason code.
    ConnectRefused(ReasonCode),
    /// The broker sent DISCONNECT (5.0) with this reason code.
    ServerDisconnect(ReasonCode),
    /// The broker broke the protocol; we disconnected with this reason code.
    ProtocolError(ReasonCode),
}

/// Something the application or the driver should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// CONNACK accepted the connection.
    Connected {
        /// Whether the broker resumed a stored session.
        session_present: bool,
        /// The version in use.
        version: ProtocolVersion,
    },
    /// CONNACK refused the connection. The driver should close the link.
    ConnectRefused {
        /// Why (3.1.1 return codes are mapped to 5.0 reason codes).
        reason: ReasonCode,
        /// Whether the next connect will try 3.1.1 instead of 5.0.
        falling_back_to_v311: bool,
    },
    /// The link is over (or must be closed by the driver now).
    Disconnected {
        /// Why.
        reason: CloseReason,
    },
    /// A publish finished: sent (QoS 0), acknowledged (QoS 1: PUBACK,
    /// QoS 2: PUBCOMP), or failed.
    PublishComplete {
        /// The token [`Session::publish`](super::Session::publish) returned.
        token: PublishToken,
        /// The outcome.
        result: Result<(), PublishFailure>,
    },
    /// SUBACK for an application request.
    Subscribed {
        /// The request.
        token: RequestToken,
        /// One reason code per filter.
        results: FilterResults,
    },
    /// UNSUBACK for an application request.
    Unsubscribed {
        /// The request.
        token: RequestToken,
        /// One reason code per filter (all Success in 3.1.1).
        results: FilterResults,
    },
    /// Every remembered subscription was sent again after the broker lost
    /// the session, and acknowledged.
    SubscriptionsRestored {
        /// How many filters the broker refused this time (they are dropped
        /// from the table).
        refused: u16,
    },
    /// The broker lost the session (CONNACK Session Present 0) after this
    /// QoS 2 publish was sent (and possibly received: PUBREC), so exactly
    /// once cannot be kept: with
    /// [`SessionLostPolicy::Republish`](super::SessionLostPolicy::Republish)
    /// it is sent again as a new publish and may arrive twice. Raised
    /// before it goes out again; its [`Event::PublishComplete`] follows as
    /// usual.
    Republished {
        /// The token [`Session::publish`](super::Session::publish) returned.
        token: PublishToken,
    },
    /// A 5.0 re-authentication
    /// ([`Session::reauthenticate`](super::Session::reauthenticate))
    /// succeeded.
    Reauthenticated,
    /// A PUBACK, PUBCOMP, SUBACK or UNSUBACK for a packet identifier we do
    /// not have in use. Ignored (the link stays up).
    UnexpectedAck {
        /// The packet type.
        packet_type: PacketType,
        /// The identifier.
        packet_id: u16,
    },
}

/// An inbound application message, borrowing topic and payload from the
/// bytes given to [`Session::handle_incoming`](super::Session::handle_incoming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS it was delivered with.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// 5.0 Topic Alias, if the PUBLISH carried one. When the broker sent
    /// only the alias, `topic` is empty: look it up with
    /// [`Session::inbound_alias_topic`](super::Session::inbound_alias_topic).
    pub topic_alias: Option<u16>,
    /// DUP flag as received (for QoS 2 the session already filtered
    /// redeliveries; QoS 1 may repeat).
    pub dup: bool,
    /// 5.0 properties: user properties, response topic, correlation data,
    /// message expiry, content type, subscription identifiers.
    pub properties: Properties<'a>,
}

/// A message to publish. Topic, payload and properties are copied into
/// the outbox; the borrow ends with the call.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingMessage<'m> {
    /// Topic name (no wildcards).
    pub topic: &'m str,
    /// Payload.
    pub payload: &'m [u8],
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// 5.0 properties (message expiry, user properties, response topic,
    /// correlation data, content type...). Dropped when the link speaks
    /// 3.1.1. Must not contain a Topic Alias.
    pub properties: Properties<'m>,
}

impl<'m> OutgoingMessage<'m> {
    /// A message without properties.
    pub const fn new(topic: &'m str, payload: &'m [u8], qos: QoS) -> Self {
        Self {
            topic,
            payload,
            qos,
            retain: false,
            properties: Properties::NONE,
        }
    }
}

/// What [`Session::handle_incoming`](super::Session::handle_incoming) did
/// with the front of the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The buffer holds less than one packet; read at least `needed` more
    /// bytes. Nothing was consumed.
    Incomplete {
        /// Lower bound of the bytes still missing.
        needed: usize,
    },
    /// Nothing was consumed because the session's internal queues are
    /// full: drain [`poll_transmit`](super::Session::poll_transmit) and
    /// [`poll_event`](super::Session::poll_event) first, then call again.
    Backpressure,
    /// One packet was consumed.
    Packet {
        /// Bytes consumed from the front of the buffer.
        len: usize,
        /// Its type.
        packet_type: PacketType,
        /// An application message to deliver (exactly once for QoS 2).
        message: Option<Message<'a>>,
        /// The packet's 5.0 properties (reason string, assigned client
        /// identifier, server reference, user properties...), borrowed
        /// from the input. For a PUBLISH they are also in `message`.
        properties: Properties<'a>,
    },
    /// A 3.1.1 PUBLISH larger than the session accepts
    /// ([`Session::max_incoming_packet_size`](super::Session::max_incoming_packet_size)):
    /// its acknowledgement (PUBACK, or PUBREC with the packet identifier
    /// held until PUBREL) is queued, and it is not delivered. The driver
    /// discards `len` bytes from the front of the input, reading past the
    /// ones that have not arrived yet without buffering them.
    Skipped {
        /// The whole packet's length, header included.
        len: usize,
        /// Its topic, when it arrived whole with the packet's start.
        topic: Option<&'a str>,
        /// Its QoS.
        qos: QoS,
        /// A QoS 2 redelivery of a message already skipped (same packet
        /// identifier, topic and size, not yet released).
        duplicate: bool,
    },
}
