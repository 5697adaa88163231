//! The [`Session`] state machine itself: inputs (`handle_*` and the
//! application requests), outputs (`poll_*`).

use heapless::{Deque, String, Vec};

use super::auth::{Authenticator, MAX_AUTH_DATA};
use super::config::{OverflowPolicy, ProtocolChoice, SessionConfig};
use super::error::SizeLimit;
use super::error::{ProtocolViolation, SessionError};
use super::event::{
    CloseReason, Event, FilterResults, Incoming, MAX_FILTERS_PER_REQUEST, Message, OutgoingMessage,
    PublishFailure, PublishState, PublishToken, RequestToken,
};
use super::outbox::{EXPIRY_UNSTAMPED, HEADER_LEN, Outbox, RecordMeta, RecordState};
use crate::codec::{
    self, Auth, Connack, Connect, DecodeError, DecodeOptions, Decoded, Disconnect, FixedHeader,
    Packet, PacketType, Properties, Property, PropertyFields, ProtocolVersion, PubAck, Publish,
    QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions, Subscriptions, TopicFilters,
    Unsubscribe, UserProperty, Violation, Will,
};
use crate::time::{Duration, Instant};
use crate::topic;

/// Capacity of the queue of small control packets to send (acks of inbound
/// messages, PINGREQ). `handle_incoming` answers
/// [`Incoming::Backpressure`] rather than overflow it.
pub const CONTROL_QUEUE_LEN: usize = 16;
/// Capacity of the event queue. `handle_incoming` answers
/// [`Incoming::Backpressure`] while fewer than [`EVENT_HEADROOM`] slots are
/// free; publish completions wait in the outbox while it is full.
pub const EVENT_QUEUE_LEN: usize = 16;
/// Event slots kept free for the events one input can raise.
pub const EVENT_HEADROOM: usize = 3;
/// Capacity of the queue of store keys to remove (see
/// [`Session::poll_store_removal`]); `handle_incoming` answers
/// [`Incoming::Backpressure`] rather than overflow it.
pub const STORE_REMOVAL_QUEUE_LEN: usize = 16;
/// The longest broker-assigned client identifier kept for reconnects.
pub const MAX_ASSIGNED_CLIENT_ID_LEN: usize = 64;

/// A control packet waiting to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Puback(u16),
    Pubrec(u16),
    Pubrel(u16, ReasonCode),
    Pubcomp(u16, ReasonCode),
    Pingreq,
}

/// Where the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No transport.
    Down,
    /// Transport up, CONNECT not handed out yet.
    ConnectQueued,
    /// CONNECT handed out at the instant, no CONNACK yet.
    AwaitConnack(Instant),
    /// CONNACK accepted.
    Up,
    /// The session wants the driver to close the transport (after sending
    /// a pending DISCONNECT, if any).
    Closing,
}

impl Link {
    const fn name(self) -> &'static str {
        match self {
            Self::Down => "disconnected",
            Self::ConnectQueued | Self::AwaitConnack(_) => "connecting",
            Self::Up => "connected",
            Self::Closing => "closing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ping {
    Idle,
    Queued,
    Sent(Instant),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Subscribe,
    Unsubscribe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    packet_id: u16,
    token: u32,
    kind: RequestKind,
    /// Re-subscription after the broker lost the session.
    restore: bool,
    sent: bool,
}

/// One remembered topic filter.
#[derive(Debug, Clone)]
struct SubEntry<const FILTER_LEN: usize> {
    filter: String<FILTER_LEN>,
    options: SubscriptionOptions,
    /// Acknowledged by the broker (and to be restored after a session loss).
    active: bool,
    /// The request in flight for this filter, if any.
    pending: Option<(u16, RequestKind)>,
}

/// What the broker told us in CONNACK (defaults for 3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerLimits {
    /// Receive Maximum: QoS 1/2 publishes it accepts unacknowledged.
    pub receive_maximum: u16,
    /// Maximum Packet Size it accepts.
    pub maximum_packet_size: u32,
    /// Maximum QoS it supports.
    pub maximum_qos: QoS,
    /// Whether it supports retained messages.
    pub retain_available: bool,
    /// Topic Alias Maximum it accepts (not used yet: aliases are not sent).
    pub topic_alias_maximum: u16,
}

impl BrokerLimits {
    const DEFAULT: Self = Self {
        receive_maximum: u16::MAX,
        maximum_packet_size: u32::MAX,
        maximum_qos: QoS::ExactlyOnce,
        retain_available: true,
        topic_alias_maximum: 0,
    };
}

/// [`Session::poll_transmit_batch`] adds no packet once this many bytes
/// are written: large batches only delay the peer, which parses a
/// WebSocket frame when all of it has arrived.
pub const BATCH_BYTES: usize = 16 * 1024;

/// Outcome of trying to send one outbox record.
enum RecordOutcome {
    Sent {
        len: usize,
        packet_id: u16,
    },
    Failed(PublishFailure),
    /// It does not fit behind the packets already batched: next batch.
    NoRoom,
}

/// The sans-IO MQTT client session: bytes and `now` in; bytes, events and
/// the next deadline out. See the [module documentation](super) for the
/// polling order.
///
/// - `INFLIGHT`: size of the inbound QoS 2 table and upper bound of the
///   outbound window (also sent as our 5.0 Receive Maximum).
/// - `SUBS`: remembered topic filters (and concurrent subscribe /
///   unsubscribe requests).
/// - `FILTER_LEN`: the longest topic filter (and aliased topic) stored.
/// - `ALIASES`: 5.0 topic aliases in each direction (0: none; we then
///   never send one and advertise Topic Alias Maximum 0).
pub struct Session<
    'b,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize = 128,
    const ALIASES: usize = 0,
> {
    config: SessionConfig<'b>,
    outbox: Outbox<'b>,
    link: Link,
    version: ProtocolVersion,
    /// Disconnected already reported for the current link.
    close_reported: bool,
    /// A CONNACK accepted a connection at least once.
    accepted_once: bool,
    /// A Disconnected event that found the queue full.
    deferred_close: Option<Event>,
    pending_disconnect: Option<ReasonCode>,
    control: Deque<Control, CONTROL_QUEUE_LEN>,
    events: Deque<Event, EVENT_QUEUE_LEN>,
    /// Inbound QoS 2 messages delivered and awaiting PUBREL: the packet id
    /// and a fingerprint of the message (see [`message_fingerprint`]).
    inbound_qos2: Vec<(u16, u32), INFLIGHT>,
    subs: Vec<SubEntry<FILTER_LEN>, SUBS>,
    requests: Vec<Request, SUBS>,
    next_packet_id: u16,
    next_token: u32,
    broker: BrokerLimits,
    keep_alive: Duration,
    last_tx: Instant,
    ping: Ping,
    restoring: u16,
    restore_refused: u16,
    assigned_client_id: String<MAX_ASSIGNED_CLIENT_ID_LEN>,
    /// Topic aliases we set up on this connection: alias = index + 1.
    out_aliases: Vec<String<FILTER_LEN>, ALIASES>,
    /// Topic aliases the broker set up on this connection.
    in_aliases: Vec<(u16, String<FILTER_LEN>), ALIASES>,
    /// Store keys of durable records that finished (acknowledged or
    /// failed for good), for the driver to remove from its store.
    store_removals: Deque<u32, STORE_REMOVAL_QUEUE_LEN>,
    /// The driver's transmit buffer size, once it said.
    tx_capacity: Option<usize>,
    /// Inside [`Session::poll_transmit_batch`], behind packets already
    /// written: a publish that does not fit what is left of the buffer
    /// waits for the next batch instead of failing.
    batch_tail: bool,
    /// Some record may carry a Message Expiry Interval (the expiry scans
    /// are skipped while none does).
    expiring: bool,
    /// 5.0 enhanced authentication, if the application lent one.
    authenticator: Option<&'b mut (dyn Authenticator + Send)>,
    /// Authentication Data of the next CONNECT or AUTH.
    auth_data: Option<Vec<u8, MAX_AUTH_DATA>>,
    /// An AUTH to send, with this reason code.
    auth_pending: Option<ReasonCode>,
    /// A re-authentication is under way.
    reauthenticating: bool,
}

impl<'b, const INFLIGHT: usize, const SUBS: usize, const FILTER_LEN: usize, const ALIASES: usize>
    Session<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES>
{
    /// A session that has never connected, queuing publishes in `outbox`.
    pub fn new(config: SessionConfig<'b>, outbox: &'b mut [u8]) -> Self {
        Self {
            version: config.protocol.first(),
            config,
            outbox: Outbox::new(outbox),
            link: Link::Down,
            close_reported: false,
            deferred_close: None,
            accepted_once: false,
            pending_disconnect: None,
            control: Deque::new(),
            events: Deque::new(),
            inbound_qos2: Vec::new(),
            subs: Vec::new(),
            requests: Vec::new(),
            next_packet_id: 1,
            next_token: 1,
            broker: BrokerLimits::DEFAULT,
            keep_alive: Duration::from_secs(u64::from(config.keep_alive_secs)),
            last_tx: Instant::ZERO,
            ping: Ping::Idle,
            restoring: 0,
            restore_refused: 0,
            assigned_client_id: String::new(),
            out_aliases: Vec::new(),
            in_aliases: Vec::new(),
            store_removals: Deque::new(),
            tx_capacity: None,
            batch_tail: false,
            expiring: false,
            authenticator: None,
            auth_data: None,
            auth_pending: None,
            reauthenticating: false,
        }
    }

    /// Lends an [`Authenticator`]: CONNECT (5.0 only) then carries its
    /// Authentication Method and first data, and the broker's AUTH
    /// Continue packets are answered with its steps until CONNACK
    /// (MQTT 5.0 §4.12). [`reauthenticate`](Self::reauthenticate) starts
    /// a re-authentication on a connected link.
    pub fn set_authenticator(&mut self, authenticator: &'b mut (dyn Authenticator + Send)) {
        self.authenticator = Some(authenticator);
    }

    /// Starts a 5.0 re-authentication (AUTH 0x19 with the authenticator's
    /// first step, §4.12.1); [`Event::Reauthenticated`] reports its
    /// success, a failed one ends with the broker's DISCONNECT.
    pub fn reauthenticate(&mut self) -> Result<(), SessionError> {
        if self.link != Link::Up
            || self.version != ProtocolVersion::V5
            || self.authenticator.is_none()
            || self.reauthenticating
        {
            return Err(SessionError::InvalidState {
                state: "not a 5.0 link with an authenticator and no exchange under way",
            });
        }
        self.auth_data = self.auth_step(None, true);
        self.auth_pending = Some(ReasonCode::RE_AUTHENTICATE);
        self.reauthenticating = true;
        Ok(())
    }

    /// Runs one authenticator step into a fresh buffer. `None` when there
    /// is no data (a `start`) or the authenticator gave up (`respond`).
    fn auth_step(&mut self, data: Option<&[u8]>, start: bool) -> Option<Vec<u8, MAX_AUTH_DATA>> {
        let auth = self.authenticator.as_mut()?;
        let mut out = [0u8; MAX_AUTH_DATA];
        let n = if start {
            auth.start(&mut out)
        } else {
            auth.respond(data, &mut out)
        }?;
        Vec::from_slice(out.get(..n)?).ok()
    }

    fn auth_method(&self) -> Option<&str> {
        self.authenticator.as_ref().map(|a| a.method())
    }

    /// The driver's transmit buffer holds packets up to `capacity` bytes: a
    /// publish larger than that is refused at once with
    /// [`SessionError::PacketTooLarge`], and a queued one that turns out
    /// larger (3.1.1 vs 5.0 encodings differ) fails alone with
    /// [`PublishFailure::TransmitBufferTooSmall`] instead of stalling the
    /// outbox.
    pub fn set_transmit_capacity(&mut self, capacity: usize) {
        self.tx_capacity = Some(capacity);
    }

    // ----------------------------------------------------------------- state

    /// The protocol version of the current (or next) connection.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Whether CONNACK accepted the current link.
    pub fn is_connected(&self) -> bool {
        self.link == Link::Up
    }

    /// Whether the session wants the driver to close the transport (after
    /// draining [`poll_transmit`](Self::poll_transmit)).
    pub fn wants_close(&self) -> bool {
        self.link == Link::Closing
    }

    /// The limits from the last CONNACK.
    pub fn broker_limits(&self) -> BrokerLimits {
        self.broker
    }

    /// The effective keepalive (the broker's Server Keep Alive wins).
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// The client identifier the broker assigned, if any (5.0).
    pub fn assigned_client_id(&self) -> Option<&str> {
        (!self.assigned_client_id.is_empty()).then_some(self.assigned_client_id.as_str())
    }

    /// Bytes of the outbox in use and its capacity.
    pub fn outbox_usage(&self) -> (usize, usize) {
        (self.outbox.used(), self.outbox.capacity())
    }

    /// Messages in the outbox (queued or in flight).
    pub fn outbox_len(&self) -> usize {
        self.outbox.offsets().count()
    }

    /// QoS 1/2 publishes holding a packet identifier (in flight).
    pub fn inflight(&self) -> usize {
        self.outbox
            .offsets()
            .filter(|&off| self.outbox.meta(off).is_some_and(|m| m.packet_id != 0))
            .count()
    }

    /// The remembered filters: filter, options, and whether the broker
    /// acknowledged it.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, SubscriptionOptions, bool)> + '_ {
        self.subs
            .iter()
            .map(|s| (s.filter.as_str(), s.options, s.active))
    }

    /// Every packet identifier the session holds (outbox and requests).
    #[cfg(test)]
    pub(crate) fn packet_ids_in_use(&self) -> impl Iterator<Item = u16> + '_ {
        let publishes = self
            .outbox
            .offsets()
            .filter_map(|off| self.outbox.meta(off));
        publishes
            .map(|m| m.packet_id)
            .filter(|&id| id != 0)
            .chain(self.requests.iter().map(|r| r.packet_id))
    }

    /// The Clean Start flag of the next (or current) CONNECT.
    fn clean_start_flag(&self) -> bool {
        self.config.clean_start && !(self.config.resume_on_reconnect && self.accepted_once)
    }

    fn window(&self) -> usize {
        let ours = usize::from(self.config.max_inflight).min(INFLIGHT);
        ours.min(usize::from(self.broker.receive_maximum))
    }

    fn ping_timeout(&self) -> Duration {
        self.config
            .ping_timeout
            .unwrap_or(self.keep_alive.mul_div(1, 2))
    }

    fn decode_options(&self) -> DecodeOptions {
        DecodeOptions::new(self.version).with_max_packet_size(self.config.max_incoming_packet_size)
    }

    fn push_event(&mut self, event: Event) {
        // Inputs keep EVENT_HEADROOM slots free before raising events; the
        // ones that cannot wait (timeouts, transport loss) may find the
        // queue full, and then the link's end is kept aside, never lost.
        if let Err(event) = self.events.push_back(event)
            && matches!(event, Event::Disconnected { .. })
        {
            self.deferred_close = Some(event);
        }
    }

    fn events_free(&self) -> usize {
        EVENT_QUEUE_LEN.saturating_sub(self.events.len())
    }

    /// Whether a record can be finished now: its event and its store
    /// removal both have room.
    fn can_finish(&self) -> bool {
        self.events_free() > 0 && !self.store_removals.is_full()
    }

    /// Removes the record at `off` and reports its outcome; a durable one
    /// is queued for removal from the store.
    fn finish(&mut self, off: usize, m: RecordMeta, result: Result<(), PublishFailure>) {
        self.outbox.remove(off);
        if m.key != 0 {
            // Callers checked `can_finish` (or the backpressure headroom).
            let _ = self.store_removals.push_back(m.key);
        }
        self.push_event(Event::PublishComplete {
            token: PublishToken(m.token),
            result,
        });
    }

    fn close(&mut self, reason: CloseReason) {
        if matches!(self.link, Link::Down | Link::Closing) {
            return;
        }
        self.link = Link::Closing;
        if !self.close_reported {
            self.close_reported = true;
            self.push_event(Event::Disconnected { reason });
        }
    }

    /// Closes the link because the broker broke the protocol; 5.0 says why.
    fn fail(&mut self, code: ReasonCode) {
        if self.version == ProtocolVersion::V5 && matches!(self.link, Link::Up) {
            self.pending_disconnect = Some(code);
        }
        self.close(CloseReason::ProtocolError(code));
    }

    fn packet_id_in_use(&self, id: u16) -> bool {
        self.outbox.find_packet_id(id).is_some() || self.requests.iter().any(|r| r.packet_id == id)
    }

    fn allocate_packet_id(&mut self) -> Result<u16, SessionError> {
        for _ in 0..u16::MAX {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.packet_id_in_use(id) {
                return Ok(id);
            }
        }
        Err(SessionError::PacketIdsExhausted)
    }

    fn next_token(&mut self) -> u32 {
        let t = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        t
    }

    // ---------------------------------------------------------------- inputs

    /// The transport is up: CONNECT is queued for
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn handle_connected(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.link != Link::Down {
            return Err(SessionError::InvalidState {
                state: self.link.name(),
            });
        }
        self.link = Link::ConnectQueued;
        self.close_reported = false;
        self.pending_disconnect = None;
        self.control.clear();
        self.ping = Ping::Idle;
        self.last_tx = now;
        // Topic aliases live for one network connection (5.0 §3.3.2.3.4).
        self.out_aliases.clear();
        self.in_aliases.clear();
        self.auth_pending = None;
        self.reauthenticating = false;
        self.auth_data = if self.version == ProtocolVersion::V5 {
            self.auth_step(None, true)
        } else {
            None
        };
        Ok(())
    }

    /// The transport closed (whoever closed it). Raises
    /// [`Event::Disconnected`] unless the session already did for this
    /// link. Unacknowledged work stays queued for the next connection.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        if self.link == Link::Down {
            return;
        }
        if matches!(self.link, Link::AwaitConnack(_))
            && self.config.protocol == ProtocolChoice::V5WithFallback
        {
            self.version = ProtocolVersion::V311;
        }
        if !self.close_reported {
            self.close_reported = true;
            self.push_event(Event::Disconnected {
                reason: CloseReason::TransportClosed,
            });
        }
        self.link = Link::Down;
        self.pending_disconnect = None;
        self.control.clear();
        self.ping = Ping::Idle;
    }

    /// Time has passed: sends PINGREQ when the link has been idle in the
    /// send direction for the keepalive, declares the link dead when
    /// PINGRESP or CONNACK is late.
    ///
    /// Also stamps newly queued messages that carry a Message Expiry
    /// Interval with `now` and fails those whose interval lapsed before
    /// they were sent ([`PublishFailure::Expired`]). A driver calls it
    /// when [`poll_timeout`](Self::poll_timeout) is reached, and may call it
    /// at any time (it does so while the link is down, so waiting messages
    /// are stamped when queued).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        match self.link {
            Link::AwaitConnack(since) if now >= since + self.config.connect_timeout => {
                self.close(CloseReason::ConnackTimeout);
            }
            Link::Up if self.keep_alive > Duration::ZERO => match self.ping {
                Ping::Sent(at) if now >= at + self.ping_timeout() => {
                    self.close(CloseReason::KeepaliveTimeout);
                }
                Ping::Idle
                    if now >= self.last_tx + self.keep_alive
                        && self.control.push_back(Control::Pingreq).is_ok() =>
                {
                    self.ping = Ping::Queued;
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Decodes and handles ONE packet from the front of `bytes`.
    ///
    /// An error means the link must be closed: the session has moved to
    /// closing (5.0: a DISCONNECT with the reason is queued) and raised
    /// [`Event::Disconnected`].
    #[inline(never)]
    pub fn handle_incoming<'a>(
        &mut self,
        bytes: &'a [u8],
        now: Instant,
    ) -> Result<Incoming<'a>, SessionError> {
        let _ = now;
        if matches!(self.link, Link::Down | Link::Closing) {
            return Err(SessionError::InvalidState {
                state: self.link.name(),
            });
        }
        let mut opts = self.decode_options();
        // A 3.1.1 broker answers a 5.0 CONNECT with a 3.1.1 CONNACK (two
        // bytes, return code 1): decode that one as 3.1.1.
        if self.version == ProtocolVersion::V5
            && matches!(self.link, Link::AwaitConnack(_))
            && let Ok(Decoded::Complete { value: h, .. }) = FixedHeader::decode(bytes, &opts)
            && h.packet_type == PacketType::Connack
            && h.remaining_length == 2
        {
            opts.version = ProtocolVersion::V311;
        }
        let (packet, len) = match Packet::decode_from_server(bytes, &opts) {
            Ok(Decoded::Complete { value, len }) => (value, len),
            Ok(Decoded::Incomplete { needed }) => return Ok(Incoming::Incomplete { needed }),
            Err(DecodeError::Invalid(Violation::NotSentByServer { packet_type })) => {
                let v = ProtocolViolation::UnexpectedPacket { packet_type };
                self.fail(v.reason_code());
                return Err(v.into());
            }
            Err(e) => {
                self.fail(e.reason_code());
                return Err(e.into());
            }
        };
        if self.control.len() + 2 > CONTROL_QUEUE_LEN
            || self.events_free() < EVENT_HEADROOM
            || self.store_removals.is_full()
        {
            return Ok(Incoming::Backpressure);
        }
        let packet_type = packet.packet_type();
        match self.handle_packet(packet, opts.version, now) {
            Ok((message, properties)) => Ok(Incoming::Packet {
                len,
                packet_type,
                message,
                properties,
            }),
            Err(v) => {
                self.fail(v.reason_code());
                Err(v.into())
            }
        }
    }

    fn handle_packet<'a>(
        &mut self,
        packet: Packet<'a>,
        decoded_as: ProtocolVersion,
        now: Instant,
    ) -> Result<(Option<Message<'a>>, Properties<'a>), ProtocolViolation> {
        let up = self.link == Link::Up;
        let unexpected = |p: &Packet<'_>| ProtocolViolation::UnexpectedPacket {
            packet_type: p.packet_type(),
        };
        match packet {
            Packet::Connack(c) if matches!(self.link, Link::AwaitConnack(_)) => {
                // [MQTT-3.2.2-2] (5.0) / [MQTT-3.2.2-1] (3.1.1): a clean
                // start never resumes a session.
                if self.clean_start_flag() && c.session_present {
                    return Err(ProtocolViolation::SessionPresentOnCleanStart);
                }
                self.handle_connack(&c, decoded_as, now);
                Ok((None, c.properties))
            }
            Packet::Publish(p) if up => self.handle_publish(p).map(|m| (m, p.properties)),
            Packet::Puback(a) if up => {
                self.handle_puback(&a);
                Ok((None, a.properties))
            }
            Packet::Pubrec(a) if up => {
                self.handle_pubrec(&a);
                Ok((None, a.properties))
            }
            Packet::Pubrel(a) if up => {
                let code = match self
                    .inbound_qos2
                    .iter()
                    .position(|&(id, _)| id == a.packet_id)
                {
                    Some(i) => {
                        self.inbound_qos2.swap_remove(i);
                        ReasonCode::SUCCESS
                    }
                    None => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                };
                let _ = self.control.push_back(Control::Pubcomp(a.packet_id, code));
                Ok((None, a.properties))
            }
            Packet::Pubcomp(a) if up => {
                self.handle_pubcomp(&a);
                Ok((None, a.properties))
            }
            Packet::Suback(s) if up => {
                let codes = s.reason_codes;
                let mut results = FilterResults::EMPTY;
                for code in codes.iter() {
                    results.push(code);
                }
                self.handle_request_ack(
                    RequestKind::Subscribe,
                    s.packet_id,
                    codes.len(),
                    &results,
                )?;
                Ok((None, s.properties))
            }
            Packet::Unsuback(u) if up => {
                let mut results = FilterResults::EMPTY;
                let count = if self.version == ProtocolVersion::V5 {
                    for code in u.reason_codes.iter() {
                        results.push(code);
                    }
                    Some(u.reason_codes.len())
                } else {
                    None
                };
                self.handle_request_ack(
                    RequestKind::Unsubscribe,
                    u.packet_id,
                    count.unwrap_or(usize::MAX),
                    &results,
                )?;
                Ok((None, u.properties))
            }
            Packet::Pingresp if up => {
                self.ping = Ping::Idle;
                Ok((None, Properties::NONE))
            }
            Packet::Auth(a)
                if self.version == ProtocolVersion::V5
                    && self.authenticator.is_some()
                    && (matches!(self.link, Link::AwaitConnack(_)) || self.reauthenticating) =>
            {
                self.handle_auth(&a)?;
                Ok((None, a.properties))
            }
            Packet::Disconnect(d) if self.version == ProtocolVersion::V5 => {
                self.close(CloseReason::ServerDisconnect(d.reason_code));
                Ok((None, d.properties))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// 5.0 §4.12: the broker's AUTH during the CONNECT exchange or a
    /// re-authentication.
    fn handle_auth(&mut self, a: &Auth<'_>) -> Result<(), ProtocolViolation> {
        let unexpected = ProtocolViolation::UnexpectedPacket {
            packet_type: PacketType::Auth,
        };
        // [MQTT-4.12.0-5]: the same method throughout.
        if a.properties.authentication_method() != self.auth_method() {
            return Err(unexpected);
        }
        match a.reason_code {
            ReasonCode::CONTINUE_AUTHENTICATION => {
                match self.auth_step(a.properties.authentication_data(), false) {
                    Some(answer) => {
                        self.auth_data = Some(answer);
                        self.auth_pending = Some(ReasonCode::CONTINUE_AUTHENTICATION);
                    }
                    None => {
                        self.reauthenticating = false;
                        self.fail(ReasonCode::NOT_AUTHORIZED);
                    }
                }
                Ok(())
            }
            ReasonCode::SUCCESS if self.reauthenticating => {
                self.reauthenticating = false;
                self.push_event(Event::Reauthenticated);
                Ok(())
            }
            _ => Err(unexpected),
        }
    }

    fn handle_connack(&mut self, c: &Connack<'_>, decoded_as: ProtocolVersion, now: Instant) {
        if c.reason_code != ReasonCode::SUCCESS {
            let fallback = self.config.protocol == ProtocolChoice::V5WithFallback
                && self.version == ProtocolVersion::V5
                && (c.reason_code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
                    || decoded_as == ProtocolVersion::V311);
            if fallback {
                self.version = ProtocolVersion::V311;
            }
            self.push_event(Event::ConnectRefused {
                reason: c.reason_code,
                falling_back_to_v311: fallback,
            });
            self.close(CloseReason::ConnectRefused(c.reason_code));
            return;
        }
        // One pass over the properties (each appears at most once, checked
        // when decoded), absent ones keeping their defaults.
        let mut broker = BrokerLimits::DEFAULT;
        let mut keep_alive = self.config.keep_alive_secs;
        for p in c.properties.iter() {
            match p {
                Property::ReceiveMaximum(v) => broker.receive_maximum = v,
                Property::MaximumPacketSize(v) => broker.maximum_packet_size = v,
                Property::MaximumQos(v) => broker.maximum_qos = v,
                Property::RetainAvailable(v) => broker.retain_available = v,
                Property::TopicAliasMaximum(v) => broker.topic_alias_maximum = v,
                Property::ServerKeepAlive(v) => keep_alive = v,
                Property::AssignedClientIdentifier(id) => {
                    self.assigned_client_id.clear();
                    // Longer identifiers are not kept (documented limit).
                    let _ = self.assigned_client_id.push_str(id);
                }
                _ => {}
            }
        }
        self.broker = broker;
        self.keep_alive = Duration::from_secs(u64::from(keep_alive));
        self.link = Link::Up;
        self.accepted_once = true;
        self.last_tx = now.max(self.last_tx);
        self.ping = Ping::Idle;
        let mut off = 0;
        while let Some(m) = self.outbox.meta(off) {
            if c.session_present {
                // [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (with DUP,
                // same id) and PUBREL.
                match m.state {
                    RecordState::AwaitAck => self.outbox.set(off, m.packet_id, RecordState::Queued),
                    RecordState::AwaitPubcomp => {
                        self.outbox.set(off, m.packet_id, RecordState::PubrelQueued);
                    }
                    RecordState::Queued | RecordState::PubrelQueued | RecordState::Held => {}
                }
            } else if m.state != RecordState::Held {
                // The broker has no state: everything unacknowledged is
                // sent again as a new publish, nothing is dropped.
                self.outbox.set(off, 0, RecordState::Queued);
            }
            off += m.len;
        }
        for r in self.requests.iter_mut() {
            r.sent = false;
        }
        if !c.session_present {
            self.inbound_qos2.clear();
            self.queue_restore();
        }
        self.push_event(Event::Connected {
            session_present: c.session_present,
            version: self.version,
        });
    }

    /// Queues SUBSCRIBE requests for every acknowledged filter with no
    /// request in flight.
    fn queue_restore(&mut self) {
        self.restore_refused = 0;
        loop {
            let waiting = self.subs.iter().any(|s| s.active && s.pending.is_none());
            if !waiting || self.requests.is_full() {
                break;
            }
            let Ok(packet_id) = self.allocate_packet_id() else {
                break;
            };
            let mut n = 0;
            for s in self.subs.iter_mut() {
                if n < MAX_FILTERS_PER_REQUEST && s.active && s.pending.is_none() {
                    s.pending = Some((packet_id, RequestKind::Subscribe));
                    n += 1;
                }
            }
            if n == 0 {
                break;
            }
            let token = self.next_token();
            let request = Request {
                packet_id,
                token,
                kind: RequestKind::Subscribe,
                restore: true,
                sent: false,
            };
            if self.requests.push(request).is_ok() {
                self.restoring = self.restoring.saturating_add(1);
            }
        }
    }

    fn handle_publish<'a>(
        &mut self,
        p: Publish<'a>,
    ) -> Result<Option<Message<'a>>, ProtocolViolation> {
        let topic_alias = p.properties.topic_alias();
        if let Some(alias) = topic_alias {
            self.learn_inbound_alias(alias, p.topic)?;
        }
        let message = Message {
            topic: p.topic,
            topic_alias,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            dup: p.dup,
            properties: p.properties,
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                let _ = self.control.push_back(Control::Puback(id));
                Ok(Some(message))
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // Exactly once: deliver on first receipt, remember the id
                // until PUBREL (5.0 §4.3.3 method B) [MQTT-4.3.3-2].
                //
                // A PUBLISH under a held id is a redelivery only if it is
                // the same message. A broker that lost its state (mosquitto
                // restored from an older snapshot after kill -9) can reuse
                // a held id for a different message; suppressing that one
                // would lose it. The fingerprint tells the two apart, so a
                // redelivery is still delivered once and a new message
                // under a reused id is delivered too.
                let resolved_topic = match (p.topic, topic_alias) {
                    ("", Some(alias)) => self.inbound_alias_topic(alias).unwrap_or(""),
                    (topic, _) => topic,
                };
                let fingerprint = message_fingerprint(resolved_topic, p.payload);
                let deliver = match self.inbound_qos2.iter_mut().find(|(held, _)| *held == id) {
                    Some((_, held)) if *held == fingerprint => false,
                    Some((_, held)) => {
                        *held = fingerprint;
                        true
                    }
                    None => {
                        if self.inbound_qos2.push((id, fingerprint)).is_err() {
                            return Err(ProtocolViolation::ReceiveMaximumExceeded);
                        }
                        true
                    }
                };
                let _ = self.control.push_back(Control::Pubrec(id));
                Ok(deliver.then_some(message))
            }
            _ => Ok(Some(message)),
        }
    }

    /// 5.0 §3.3.2.3.4: a PUBLISH with a Topic Alias and a topic sets the
    /// alias; with an empty topic it uses one set before.
    fn learn_inbound_alias(&mut self, alias: u16, topic: &str) -> Result<(), ProtocolViolation> {
        if alias == 0 || usize::from(alias) > ALIASES {
            return Err(ProtocolViolation::TopicAliasInvalid);
        }
        let known = self.in_aliases.iter().position(|(a, _)| *a == alias);
        if topic.is_empty() {
            return known
                .map(|_| ())
                .ok_or(ProtocolViolation::TopicAliasInvalid);
        }
        let Ok(stored) = String::try_from(topic) else {
            // Longer than FILTER_LEN: cannot be remembered (documented limit).
            return Err(ProtocolViolation::TopicAliasInvalid);
        };
        match known.and_then(|i| self.in_aliases.get_mut(i)) {
            Some(slot) => slot.1 = stored,
            None => {
                let _ = self.in_aliases.push((alias, stored));
            }
        }
        Ok(())
    }

    /// The topic the broker bound to an inbound Topic Alias on this
    /// connection: for a [`Message`] whose `topic` is empty.
    pub fn inbound_alias_topic(&self, alias: u16) -> Option<&str> {
        self.in_aliases
            .iter()
            .find(|(a, _)| *a == alias)
            .map(|(_, t)| t.as_str())
    }

    fn complete(&mut self, off: usize, m: RecordMeta, code: ReasonCode) {
        let result = if code.is_error() {
            Err(PublishFailure::Rejected(code))
        } else {
            Ok(())
        };
        self.finish(off, m, result);
    }

    fn unexpected_ack(&mut self, packet_type: PacketType, packet_id: u16) {
        self.push_event(Event::UnexpectedAck {
            packet_type,
            packet_id,
        });
    }

    fn handle_puback(&mut self, a: &PubAck<'_>) {
        match self.outbox.find_packet_id(a.packet_id) {
            Some((off, m)) if m.state == RecordState::AwaitAck && m.qos == QoS::AtLeastOnce => {
                self.complete(off, m, a.reason_code);
            }
            _ => self.unexpected_ack(PacketType::Puback, a.packet_id),
        }
    }

    fn handle_pubrec(&mut self, a: &PubAck<'_>) {
        match self.outbox.find_packet_id(a.packet_id) {
            Some((off, m))
                if m.qos == QoS::ExactlyOnce
                    && !matches!(m.state, RecordState::Queued | RecordState::Held) =>
            {
                if a.reason_code.is_error() {
                    self.complete(off, m, a.reason_code);
                } else {
                    self.outbox.set(off, m.packet_id, RecordState::PubrelQueued);
                }
            }
            _ => {
                // 5.0 §4.3.3: answer with PUBREL 0x92 so the broker can
                // clear its state.
                let _ = self.control.push_back(Control::Pubrel(
                    a.packet_id,
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                ));
                self.unexpected_ack(PacketType::Pubrec, a.packet_id);
            }
        }
    }

    fn handle_pubcomp(&mut self, a: &PubAck<'_>) {
        match self.outbox.find_packet_id(a.packet_id) {
            Some((off, m))
                if matches!(
                    m.state,
                    RecordState::AwaitPubcomp | RecordState::PubrelQueued
                ) =>
            {
                self.complete(off, m, a.reason_code);
            }
            _ => self.unexpected_ack(PacketType::Pubcomp, a.packet_id),
        }
    }

    fn handle_request_ack(
        &mut self,
        kind: RequestKind,
        packet_id: u16,
        received: usize,
        results: &FilterResults,
    ) -> Result<(), ProtocolViolation> {
        let Some(index) = self
            .requests
            .iter()
            .position(|r| r.packet_id == packet_id && r.kind == kind)
        else {
            let packet_type = match kind {
                RequestKind::Subscribe => PacketType::Suback,
                RequestKind::Unsubscribe => PacketType::Unsuback,
            };
            self.unexpected_ack(packet_type, packet_id);
            return Ok(());
        };
        let key = Some((packet_id, kind));
        let expected = self.subs.iter().filter(|s| s.pending == key).count();
        // 3.1.1 UNSUBACK carries no codes (`usize::MAX`): all succeeded.
        let mut results = *results;
        if received == usize::MAX {
            for _ in 0..expected {
                results.push(ReasonCode::SUCCESS);
            }
        } else if received != expected {
            return Err(ProtocolViolation::ReasonCodeCountMismatch { expected, received });
        }
        let request = self.requests.remove(index);
        let mut codes = results.codes().iter();
        let mut refused = 0u16;
        self.subs.retain_mut(|s| {
            if s.pending != key {
                return true;
            }
            s.pending = None;
            let code = codes.next().copied().unwrap_or(ReasonCode::SUCCESS);
            match kind {
                RequestKind::Subscribe if !code.is_error() => {
                    s.active = true;
                    s.options.qos = QoS::from_bits(code.0).unwrap_or(s.options.qos);
                    true
                }
                RequestKind::Subscribe => {
                    refused = refused.saturating_add(1);
                    false
                }
                RequestKind::Unsubscribe => false,
            }
        });
        let token = RequestToken(request.token);
        if request.restore {
            self.restoring = self.restoring.saturating_sub(1);
            self.restore_refused = self.restore_refused.saturating_add(refused);
            if self.restoring == 0 {
                self.push_event(Event::SubscriptionsRestored {
                    refused: self.restore_refused,
                });
            }
        } else {
            self.push_event(match kind {
                RequestKind::Subscribe => Event::Subscribed { token, results },
                RequestKind::Unsubscribe => Event::Unsubscribed { token, results },
            });
        }
        Ok(())
    }

    // -------------------------------------------------- application requests

    /// Queues a message with [`OverflowPolicy::RejectNew`].
    pub fn publish(&mut self, msg: &OutgoingMessage<'_>) -> Result<PublishToken, SessionError> {
        self.publish_with_policy(msg, OverflowPolicy::RejectNew)
    }

    /// Queues a message in the outbox; it is sent by
    /// [`poll_transmit`](Self::poll_transmit) when the link and the window
    /// allow, and completes with [`Event::PublishComplete`].
    ///
    /// A message that can never be sent (larger than the transmit
    /// buffer the driver announced, or than the broker's last Maximum
    /// Packet Size) is refused with [`SessionError::PacketTooLarge`].
    pub fn publish_with_policy(
        &mut self,
        msg: &OutgoingMessage<'_>,
        policy: OverflowPolicy,
    ) -> Result<PublishToken, SessionError> {
        let publish = Self::stored_publish(msg)?;
        self.check_size(&publish)?;
        let body_len = publish.encoded_len(ProtocolVersion::V5);
        let needed = body_len.saturating_add(HEADER_LEN);
        if needed > self.outbox.free() && policy == OverflowPolicy::DropOldestQos0 {
            self.drop_oldest_qos0(needed);
        }
        let token = self.next_token;
        let pushed = self.outbox.push(token, msg.qos, body_len, |dst| {
            publish.encode(dst, ProtocolVersion::V5)
        })?;
        if !pushed {
            return Err(SessionError::OutboxFull {
                needed,
                free: self.outbox.free(),
                capacity: self.outbox.capacity(),
            });
        }
        self.after_push(token, &msg.properties);
        Ok(PublishToken(self.next_token()))
    }

    /// Queues a message whose payload `write` serializes straight into the
    /// outbox record: no intermediate copy, no allocation. `write` gets
    /// every byte the outbox has left for the payload and returns how many
    /// it wrote, or `None` when the payload does not fit
    /// ([`SessionError::PayloadDoesNotFit`] names the room it had).
    /// `msg.payload` is ignored. [`OverflowPolicy::RejectNew`] applies.
    ///
    /// The payload is written behind room for the longest Remaining Length
    /// field and moved down by at most 3 bytes once its length is known.
    pub fn publish_with(
        &mut self,
        msg: &OutgoingMessage<'_>,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<PublishToken, SessionError> {
        let empty = Publish {
            payload: &[],
            ..Self::stored_publish(msg)?
        };
        self.check_size(&empty)?;
        // [type][Remaining Length: 1..=4 bytes][variable header] [payload]
        let vh_len = variable_header_len(empty.encoded_len(ProtocolVersion::V5));
        let payload_at = 1 + 4 + vh_len;
        let capacity = self.outbox.capacity();
        let free = self.outbox.free();
        let room = free.saturating_sub(HEADER_LEN + payload_at);
        let token = self.next_token;
        let mut failure = None;
        let pushed = self
            .outbox
            .push_with(token, msg.qos, RecordState::Queued, |dst| {
                let Some(payload_dst) = dst.get_mut(payload_at..) else {
                    failure = Some(SessionError::PayloadDoesNotFit { room: 0, capacity });
                    return Ok(None);
                };
                let Some(n) = write(payload_dst).filter(|&n| n <= payload_dst.len()) else {
                    failure = Some(SessionError::PayloadDoesNotFit { room, capacity });
                    return Ok(None);
                };
                let remaining = vh_len + n;
                if remaining > MAX_REMAINING_LENGTH {
                    failure = Some(SessionError::PacketTooLarge {
                        size: remaining,
                        max: MAX_REMAINING_LENGTH,
                        limit: SizeLimit::Outbox,
                    });
                    return Ok(None);
                }
                let vl = varint_len(remaining);
                let start = 1 + vl + vh_len;
                dst.copy_within(payload_at..payload_at + n, start);
                // The empty PUBLISH ends exactly where the payload starts;
                // its own (shorter) Remaining Length is then overwritten.
                let vl0 = varint_len(vh_len);
                let at = vl - vl0;
                let Some(head) = dst.get_mut(at..start) else {
                    return Ok(None);
                };
                empty.encode(head, ProtocolVersion::V5)?;
                let first = head.first().copied().unwrap_or(0x30);
                if let Some(h) = dst.get_mut(..1 + vl) {
                    write_varint(h, first, remaining);
                }
                Ok(Some(start + n))
            })
            .map_err(SessionError::Encode)?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !pushed {
            return Err(SessionError::OutboxFull {
                needed: HEADER_LEN + payload_at,
                free,
                capacity,
            });
        }
        // The final size is known now: refuse what can never be sent.
        if let Some((off, _)) = self.outbox.find_token(token) {
            let size_check =
                match Publish::decode_packet(self.outbox.body(off), ProtocolVersion::V5) {
                    Ok(Some((p, _))) => self.check_size(&p),
                    _ => Err(SessionError::PayloadDoesNotFit { room, capacity }),
                };
            if let Err(e) = size_check {
                self.outbox.remove(off);
                return Err(e);
            }
        }
        self.after_push(token, &msg.properties);
        Ok(PublishToken(self.next_token()))
    }

    /// The PUBLISH as stored in the outbox (5.0 encoding, placeholder
    /// packet identifier), after the checks every publish gets.
    fn stored_publish<'m>(msg: &OutgoingMessage<'m>) -> Result<Publish<'m>, SessionError> {
        topic::validate_name(msg.topic)?;
        if msg.properties.topic_alias().is_some() {
            return Err(SessionError::Encode(
                crate::codec::EncodeError::NotInVersion {
                    what: "an application-chosen Topic Alias",
                    version: ProtocolVersion::V5,
                },
            ));
        }
        Ok(Publish {
            dup: false,
            qos: msg.qos,
            retain: msg.retain,
            topic: msg.topic,
            // A placeholder: the real identifier is chosen at transmit.
            packet_id: (msg.qos != QoS::AtMostOnce).then_some(u16::MAX),
            properties: msg.properties,
            payload: msg.payload,
        })
    }

    /// Refuses a PUBLISH that can never be sent: larger (in the current
    /// version's encoding) than the transmit buffer or the broker's last
    /// Maximum Packet Size.
    fn check_size(&self, publish: &Publish<'_>) -> Result<(), SessionError> {
        let size = if self.version == ProtocolVersion::V5 {
            publish.encoded_len(ProtocolVersion::V5)
        } else {
            let plain = Publish {
                properties: Properties::NONE,
                ..*publish
            };
            plain.encoded_len(ProtocolVersion::V311)
        };
        if let Some(max) = self.tx_capacity
            && size > max
        {
            return Err(SessionError::PacketTooLarge {
                size,
                max,
                limit: SizeLimit::TransmitBuffer,
            });
        }
        let broker = usize::try_from(self.broker.maximum_packet_size).unwrap_or(usize::MAX);
        if size > broker {
            return Err(SessionError::PacketTooLarge {
                size,
                max: broker,
                limit: SizeLimit::BrokerMaximumPacketSize,
            });
        }
        Ok(())
    }

    /// Marks a new record that carries a Message Expiry Interval.
    fn after_push(&mut self, token: u32, properties: &Properties<'_>) {
        if properties.message_expiry_interval().is_some()
            && let Some((off, _)) = self.outbox.find_token(token)
        {
            self.outbox.set_expires(off, EXPIRY_UNSTAMPED);
            self.expiring = true;
        }
    }

    // ------------------------------------------------- durable outbox (store)

    /// Holds the queued publish `token` back: it is not sent until
    /// [`release_held`](Self::release_held) (its durable copy is being
    /// written) or taken out by [`cancel_held`](Self::cancel_held). Call
    /// it right after the publish, before any
    /// [`poll_transmit`](Self::poll_transmit). False if `token` is not a
    /// queued, unsent QoS 1/2 publish.
    pub fn hold_for_store(&mut self, token: PublishToken) -> bool {
        match self.outbox.find_token(token.0) {
            Some((off, m))
                if m.qos != QoS::AtMostOnce
                    && m.state == RecordState::Queued
                    && m.packet_id == 0 =>
            {
                self.outbox.set(off, 0, RecordState::Held);
                true
            }
            _ => false,
        }
    }

    /// The stored bytes of the held publish `token` (what a store
    /// persists and later hands to [`restore`](Self::restore)).
    pub fn held_record(&self, token: PublishToken) -> Option<&[u8]> {
        match self.outbox.find_token(token.0) {
            Some((off, m)) if m.state == RecordState::Held => Some(self.outbox.body(off)),
            _ => None,
        }
    }

    /// Its durable copy is written under store `key` (non-zero): the held
    /// publish `token` may be sent, and `key` comes out of
    /// [`poll_store_removal`](Self::poll_store_removal) once it finished.
    pub fn release_held(&mut self, token: PublishToken, key: u32) -> bool {
        match self.outbox.find_token(token.0) {
            Some((off, m)) if m.state == RecordState::Held && key != 0 => {
                self.outbox.set(off, 0, RecordState::Queued);
                self.outbox.set_key(off, key);
                true
            }
            _ => false,
        }
    }

    /// Its durable copy could not be written: the held publish `token` is
    /// taken back out of the outbox (no event; the publisher is told).
    pub fn cancel_held(&mut self, token: PublishToken) -> bool {
        match self.outbox.find_token(token.0) {
            Some((off, m)) if m.state == RecordState::Held => {
                self.outbox.remove(off);
                true
            }
            _ => false,
        }
    }

    /// Puts a record replayed from a store (bytes from
    /// [`held_record`](Self::held_record) of an earlier run) back in the
    /// outbox under its store `key`, held until
    /// [`release_restored`](Self::release_restored) (so that a replay that
    /// fails half-way can be undone with
    /// [`cancel_restored`](Self::cancel_restored)). It is sent as a new
    /// publish. A Message Expiry Interval counts again from the release
    /// (time spent before the restart is unknown).
    pub fn restore(&mut self, key: u32, record: &[u8]) -> Result<PublishToken, SessionError> {
        let stored = match Publish::decode_packet(record, ProtocolVersion::V5)? {
            Some((p, len)) if len == record.len() && p.qos != QoS::AtMostOnce && key != 0 => p,
            _ => {
                return Err(SessionError::InvalidState {
                    state: "restoring a record that is not a stored QoS 1/2 PUBLISH",
                });
            }
        };
        let token = self.next_token;
        let pushed = self.outbox.push(token, stored.qos, record.len(), |dst| {
            dst.copy_from_slice(record);
            Ok::<_, SessionError>(record.len())
        })?;
        if !pushed {
            return Err(SessionError::OutboxFull {
                needed: record.len().saturating_add(HEADER_LEN),
                free: self.outbox.free(),
                capacity: self.outbox.capacity(),
            });
        }
        if let Some((off, _)) = self.outbox.find_token(token) {
            self.outbox.set(off, 0, RecordState::Held);
            self.outbox.set_key(off, key);
        }
        self.after_push(token, &stored.properties);
        Ok(PublishToken(self.next_token()))
    }

    /// Lets every restored record be sent.
    pub fn release_restored(&mut self) {
        let mut off = 0;
        while let Some(m) = self.outbox.meta(off) {
            if m.state == RecordState::Held && m.key != 0 {
                self.outbox.set(off, 0, RecordState::Queued);
            }
            off += m.len;
        }
    }

    /// Takes every restored record (not yet released) back out.
    pub fn cancel_restored(&mut self) {
        let mut off = 0;
        while let Some(m) = self.outbox.meta(off) {
            if m.state == RecordState::Held && m.key != 0 {
                self.outbox.remove(off);
            } else {
                off += m.len;
            }
        }
    }

    /// The store key of a durable record that finished (acknowledged, or
    /// failed for good): the driver removes it from its store. Drain it
    /// with the events.
    pub fn poll_store_removal(&mut self) -> Option<u32> {
        self.store_removals.pop_front()
    }

    /// Where the publish `token` is, if it is still in the outbox.
    pub fn publish_state(&self, token: PublishToken) -> Option<PublishState> {
        let (_, m) = self.outbox.find_token(token.0)?;
        Some(match m.state {
            RecordState::Held | RecordState::Queued if m.packet_id == 0 => PublishState::Queued,
            RecordState::Held | RecordState::Queued => PublishState::Resending,
            RecordState::AwaitAck | RecordState::PubrelQueued | RecordState::AwaitPubcomp => {
                PublishState::InFlight
            }
        })
    }

    // ---------------------------------------------------- message expiry

    /// Stamps records that carry a Message Expiry Interval with `now`, and
    /// fails the queued ones whose interval lapsed (5.0 §3.3.2.3.3).
    fn expire(&mut self, now: Instant) {
        if !self.expiring {
            return;
        }
        let mut found = false;
        let now_s = now_secs(now);
        // Stamped from the next whole second, so a message lives at least
        // its interval (and at most a second more).
        let stamp_s = u32::try_from(now.as_secs_ceil()).unwrap_or(EXPIRY_UNSTAMPED - 2);
        let mut off = 0;
        while let Some(m) = self.outbox.meta(off) {
            found |= m.expires != 0;
            if m.expires == EXPIRY_UNSTAMPED {
                let interval = self.stored_expiry_interval(off).unwrap_or(0);
                let deadline = stamp_s.saturating_add(interval).saturating_add(1);
                self.outbox
                    .set_expires(off, deadline.min(EXPIRY_UNSTAMPED - 1));
            } else if m.expires != 0
                && m.state == RecordState::Queued
                && now_s.saturating_add(1) >= m.expires
                && self.can_finish()
            {
                self.finish(off, m, Err(PublishFailure::Expired));
                continue;
            }
            off += m.len;
        }
        self.expiring = found;
    }

    fn stored_expiry_interval(&self, off: usize) -> Option<u32> {
        match Publish::decode_packet(self.outbox.body(off), ProtocolVersion::V5) {
            Ok(Some((p, _))) => p.properties.message_expiry_interval(),
            _ => None,
        }
    }

    /// The earliest second a queued message lapses, if any.
    fn next_expiry(&self) -> Option<Instant> {
        if !self.expiring {
            return None;
        }
        self.outbox
            .offsets()
            .filter_map(|off| self.outbox.meta(off))
            .filter(|m| m.state == RecordState::Queued && m.expires != 0)
            .map(|m| {
                if m.expires == EXPIRY_UNSTAMPED {
                    Instant::ZERO
                } else {
                    Instant::from_millis(u64::from(m.expires - 1).saturating_mul(1000))
                }
            })
            .min()
    }

    fn drop_oldest_qos0(&mut self, needed: usize) {
        let mut off = 0;
        while self.outbox.free() < needed && self.events_free() > EVENT_HEADROOM {
            let Some(m) = self.outbox.meta(off) else {
                break;
            };
            if m.qos == QoS::AtMostOnce && m.state == RecordState::Queued {
                self.finish(off, m, Err(PublishFailure::Dropped));
            } else {
                off += m.len;
            }
        }
    }

    /// Subscribes to up to [`MAX_FILTERS_PER_REQUEST`] filters. The filters
    /// are remembered and sent again when a broker has lost the session;
    /// the result comes as [`Event::Subscribed`].
    pub fn subscribe(&mut self, subs: &[Subscription<'_>]) -> Result<RequestToken, SessionError> {
        self.check_request(subs.iter().map(|s| s.filter))?;
        let new = subs
            .iter()
            .filter(|s| !self.subs.iter().any(|e| e.filter.as_str() == s.filter))
            .count();
        if self.subs.len() + new > SUBS {
            return Err(SessionError::SubscriptionTableFull { capacity: SUBS });
        }
        let packet_id = self.allocate_packet_id()?;
        let key = Some((packet_id, RequestKind::Subscribe));
        for s in subs {
            match self.subs.iter_mut().find(|e| e.filter.as_str() == s.filter) {
                Some(e) => {
                    e.options = s.options;
                    e.pending = key;
                }
                None => {
                    let filter =
                        String::try_from(s.filter).map_err(|_| SessionError::FilterTooLong {
                            len: s.filter.len(),
                            max: FILTER_LEN,
                        })?;
                    let entry = SubEntry {
                        filter,
                        options: s.options,
                        active: false,
                        pending: key,
                    };
                    let _ = self.subs.push(entry);
                }
            }
        }
        Ok(self.push_request(packet_id, RequestKind::Subscribe))
    }

    /// Unsubscribes from up to [`MAX_FILTERS_PER_REQUEST`] filters; the
    /// result comes as [`Event::Unsubscribed`] and the filters are forgotten.
    pub fn unsubscribe(&mut self, filters: &[&str]) -> Result<RequestToken, SessionError> {
        self.check_request(filters.iter().copied())?;
        let new = filters
            .iter()
            .filter(|f| !self.subs.iter().any(|e| e.filter.as_str() == **f))
            .count();
        if self.subs.len() + new > SUBS {
            return Err(SessionError::SubscriptionTableFull { capacity: SUBS });
        }
        let packet_id = self.allocate_packet_id()?;
        let key = Some((packet_id, RequestKind::Unsubscribe));
        for f in filters {
            match self.subs.iter_mut().find(|e| e.filter.as_str() == *f) {
                Some(e) => e.pending = key,
                None => {
                    let filter = String::try_from(*f).map_err(|_| SessionError::FilterTooLong {
                        len: f.len(),
                        max: FILTER_LEN,
                    })?;
                    let options = SubscriptionOptions::qos(QoS::AtMostOnce);
                    let _ = self.subs.push(SubEntry {
                        filter,
                        options,
                        active: false,
                        pending: key,
                    });
                }
            }
        }
        Ok(self.push_request(packet_id, RequestKind::Unsubscribe))
    }

    fn check_request<'f>(
        &self,
        filters: impl Iterator<Item = &'f str> + Clone,
    ) -> Result<(), SessionError> {
        let given = filters.clone().count();
        if given == 0 || given > MAX_FILTERS_PER_REQUEST {
            return Err(SessionError::FilterCount {
                given,
                max: MAX_FILTERS_PER_REQUEST,
            });
        }
        if self.requests.is_full() {
            return Err(SessionError::SubscriptionTableFull { capacity: SUBS });
        }
        for (i, f) in filters.clone().enumerate() {
            topic::validate_filter(f)?;
            if f.len() > FILTER_LEN {
                return Err(SessionError::FilterTooLong {
                    len: f.len(),
                    max: FILTER_LEN,
                });
            }
            let busy = self
                .subs
                .iter()
                .any(|e| e.filter.as_str() == f && e.pending.is_some());
            let repeated = filters.clone().take(i).any(|g| g == f);
            if busy || repeated {
                return Err(SessionError::InvalidState {
                    state: "a request for this topic filter is already in flight",
                });
            }
        }
        Ok(())
    }

    fn push_request(&mut self, packet_id: u16, kind: RequestKind) -> RequestToken {
        let token = self.next_token();
        let _ = self.requests.push(Request {
            packet_id,
            token,
            kind,
            restore: false,
            sent: false,
        });
        RequestToken(token)
    }

    /// Ends the link politely: a DISCONNECT (Normal disconnection) is
    /// queued, [`Event::Disconnected`] raised, and the driver closes the
    /// transport once [`poll_transmit`](Self::poll_transmit) is drained. The
    /// session (outbox, subscriptions) is kept for the next connect.
    pub fn disconnect(&mut self) -> Result<(), SessionError> {
        match self.link {
            Link::Up => {
                self.pending_disconnect = Some(ReasonCode::SUCCESS);
                self.close(CloseReason::ClientRequested);
                Ok(())
            }
            Link::ConnectQueued | Link::AwaitConnack(_) => {
                self.close(CloseReason::ClientRequested);
                Ok(())
            }
            Link::Down | Link::Closing => Err(SessionError::InvalidState {
                state: self.link.name(),
            }),
        }
    }

    /// The longest a write may make no progress (the transport accepts
    /// none of its bytes) before the driver gives the link up as dead: the
    /// ping timeout (half the keepalive unless configured), or the connect
    /// timeout while keepalive is off. A peer that stops reading would
    /// otherwise hold a write, and with it keepalive and a stop request,
    /// for ever.
    pub fn write_stall_timeout(&self) -> Duration {
        match self.config.ping_timeout {
            Some(t) => t,
            None if self.keep_alive > Duration::ZERO => self.ping_timeout(),
            None => self.config.connect_timeout,
        }
    }

    /// The driver's write made no progress for
    /// [`write_stall_timeout`](Self::write_stall_timeout): the link is
    /// dead. [`Event::Disconnected`] carries
    /// [`CloseReason::WriteStalled`]; the driver drops the transport (there
    /// is no way to send a DISCONNECT) and calls
    /// [`handle_disconnected`](Self::handle_disconnected).
    pub fn handle_write_stalled(&mut self) {
        self.close(CloseReason::WriteStalled);
    }

    /// Ends the link because this side cannot take what the broker sent
    /// (the driver's receive buffer is smaller than a packet): in 5.0 a
    /// DISCONNECT with `code` is queued (e.g. 0x95 Packet too large; not
    /// 0x00, which would make the broker discard the will), and
    /// [`Event::Disconnected`] carries [`CloseReason::ProtocolError`] with
    /// the same code. 3.1.1 has no reason to send: the link just closes.
    /// The session (outbox, subscriptions) is kept for the next connect.
    pub fn close_with_error(&mut self, code: ReasonCode) {
        self.fail(code);
    }

    // --------------------------------------------------------------- outputs

    /// Whether [`poll_event`](Self::poll_event) has an event to give: a
    /// driver that hands received messages straight to the application
    /// drains the queued events first, so they are seen in order.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events
            .pop_front()
            .or_else(|| self.deferred_close.take())
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called
    /// next, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let link = match self.link {
            Link::AwaitConnack(since) => Some(since + self.config.connect_timeout),
            Link::Up if self.keep_alive > Duration::ZERO => match self.ping {
                Ping::Idle => Some(self.last_tx + self.keep_alive),
                Ping::Sent(at) => Some(at + self.ping_timeout()),
                Ping::Queued => None,
            },
            _ => None,
        };
        match (link, self.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Writes the next packet to send into `buf` and returns its length, or
    /// `None` when there is nothing to send now. A buffer too small for the
    /// packet gives [`SessionError::Encode`] with
    /// [`EncodeError::InsufficientSize`](crate::codec::EncodeError::InsufficientSize)
    /// and leaves it queued.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        let sent = match self.link {
            Link::Down => None,
            Link::AwaitConnack(_) => self.transmit_auth(buf)?,
            Link::ConnectQueued => {
                let len = self.encode_connect(buf)?;
                self.link = Link::AwaitConnack(now);
                Some(len)
            }
            Link::Closing => match self.pending_disconnect {
                Some(reason_code) => {
                    let d = Disconnect {
                        reason_code,
                        properties: Properties::NONE,
                    };
                    let len = codec::encode_disconnect(&d, buf, self.version)?;
                    self.pending_disconnect = None;
                    Some(len)
                }
                None => None,
            },
            Link::Up => {
                self.expire(now);
                self.transmit_up(now, buf)?
            }
        };
        if sent.is_some() {
            self.last_tx = now;
        }
        Ok(sent)
    }

    /// Writes as many packets as are due and fit into `buf`, back to back
    /// in [`poll_transmit`](Self::poll_transmit)'s order, and returns the
    /// bytes written (0: nothing to send now). One write of the result
    /// replaces one write per packet: over WebSocket that is one frame and,
    /// on a host, one system call for a whole window of publishes and
    /// acknowledgements (MQTT 5.0 §6: a WebSocket data frame may carry
    /// several MQTT Control Packets).
    ///
    /// A packet that does not fit behind the ones already written stays
    /// queued for the next call, which starts in an empty buffer. The
    /// first packet is treated as [`poll_transmit`](Self::poll_transmit)
    /// treats it: an error there is returned, and a publish too large for
    /// the whole buffer fails alone. An error met after some packets were
    /// written ends the batch; those are returned, and the next call meets
    /// the error first.
    pub fn poll_transmit_batch(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<usize, SessionError> {
        let mut used = 0usize;
        loop {
            if used >= BATCH_BYTES {
                return Ok(used);
            }
            let rest = buf.get_mut(used..).unwrap_or_default();
            self.batch_tail = used > 0;
            let next = self.poll_transmit(now, rest);
            self.batch_tail = false;
            match next {
                Ok(Some(n)) if n > 0 => used = used.saturating_add(n),
                Ok(_) => return Ok(used),
                Err(_) if used > 0 => return Ok(used),
                Err(e) => return Err(e),
            }
        }
    }

    fn encode_connect(&self, buf: &mut [u8]) -> Result<usize, SessionError> {
        let v5 = self.version == ProtocolVersion::V5;
        let fields = PropertyFields {
            session_expiry_interval: self.config.session_expiry_secs,
            receive_maximum: u16::try_from(INFLIGHT)
                .ok()
                .filter(|&n| n > 0 && n < u16::MAX),
            maximum_packet_size: Some(self.config.max_incoming_packet_size),
            topic_alias_maximum: u16::try_from(ALIASES).ok().filter(|&n| n > 0),
            authentication_method: self.auth_method(),
            authentication_data: self.auth_data.as_deref(),
            ..PropertyFields::NONE
        };
        let will = self.config.will.map(|w| {
            if v5 {
                w
            } else {
                Will {
                    properties: Properties::NONE,
                    ..w
                }
            }
        });
        let connect = Connect {
            protocol_version: self.version,
            clean_start: self.clean_start_flag(),
            keep_alive: self.config.keep_alive_secs,
            client_id: self.assigned_client_id().unwrap_or(self.config.client_id),
            will,
            username: self.config.username,
            password: self.config.password,
            properties: if v5 {
                Properties::from_fields(&fields)
            } else {
                Properties::NONE
            },
        };
        Ok(codec::encode_connect(&connect, buf)?)
    }

    /// Sends the pending AUTH (5.0 §3.15), if any.
    fn transmit_auth(&mut self, buf: &mut [u8]) -> Result<Option<usize>, SessionError> {
        let Some(reason_code) = self.auth_pending else {
            return Ok(None);
        };
        let fields = PropertyFields {
            authentication_method: self.auth_method(),
            authentication_data: self.auth_data.as_deref(),
            ..PropertyFields::NONE
        };
        let auth = Auth {
            reason_code,
            properties: Properties::from_fields(&fields),
        };
        let len = codec::encode_auth(&auth, buf, self.version)?;
        self.auth_pending = None;
        Ok(Some(len))
    }

    fn transmit_up(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, SessionError> {
        if let Some(len) = self.transmit_auth(buf)? {
            return Ok(Some(len));
        }
        let version = self.version;
        if let Some(&control) = self.control.front() {
            let (packet_type, ack) = match control {
                Control::Puback(id) => (PacketType::Puback, PubAck::new(id)),
                Control::Pubrec(id) => (PacketType::Pubrec, PubAck::new(id)),
                Control::Pubrel(id, code) => (PacketType::Pubrel, ack_with(id, code, version)),
                Control::Pubcomp(id, code) => (PacketType::Pubcomp, ack_with(id, code, version)),
                Control::Pingreq => (PacketType::Pingreq, PubAck::new(0)),
            };
            let len = if packet_type == PacketType::Pingreq {
                codec::encode_empty(buf, PacketType::Pingreq)?
            } else {
                codec::encode_ack(&ack, packet_type, buf, version)?
            };
            self.control.pop_front();
            if control == Control::Pingreq {
                self.ping = Ping::Sent(now);
            }
            return Ok(Some(len));
        }
        if let Some(len) = self.transmit_request(buf)? {
            return Ok(Some(len));
        }
        self.transmit_record(now, buf)
    }

    fn transmit_request(&mut self, buf: &mut [u8]) -> Result<Option<usize>, SessionError> {
        let Some(index) = self.requests.iter().position(|r| !r.sent) else {
            return Ok(None);
        };
        let Some(&request) = self.requests.get(index) else {
            return Ok(None);
        };
        let key = Some((request.packet_id, request.kind));
        let len = match request.kind {
            RequestKind::Subscribe => {
                let mut list: Vec<Subscription<'_>, MAX_FILTERS_PER_REQUEST> = Vec::new();
                for s in self.subs.iter().filter(|s| s.pending == key) {
                    let _ = list.push(Subscription {
                        filter: s.filter.as_str(),
                        options: s.options,
                    });
                }
                let packet = Subscribe {
                    packet_id: request.packet_id,
                    properties: Properties::NONE,
                    subscriptions: Subscriptions::from_slice(&list),
                };
                codec::encode_subscribe(&packet, buf, self.version)?
            }
            RequestKind::Unsubscribe => {
                let mut list: Vec<&str, MAX_FILTERS_PER_REQUEST> = Vec::new();
                for s in self.subs.iter().filter(|s| s.pending == key) {
                    let _ = list.push(s.filter.as_str());
                }
                let packet = Unsubscribe {
                    packet_id: request.packet_id,
                    properties: Properties::NONE,
                    filters: TopicFilters::from_slice(&list),
                };
                codec::encode_unsubscribe(&packet, buf, self.version)?
            }
        };
        if let Some(r) = self.requests.get_mut(index) {
            r.sent = true;
        }
        Ok(Some(len))
    }

    /// Sends the first record that can go, in FIFO order: a PUBREL, a
    /// resend (DUP) or a new publish while the window has room. A new QoS
    /// 1/2 publish that does not fit the window stops the scan, so order is
    /// kept.
    fn transmit_record(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        let version = self.version;
        let mut inflight = self.inflight();
        let window = self.window();
        // A held record (its durable copy being written) keeps the new
        // publishes behind it back, so order is kept.
        let mut held = false;
        let mut off = 0;
        while let Some(m) = self.outbox.meta(off) {
            match m.state {
                RecordState::PubrelQueued => {
                    let ack = PubAck::new(m.packet_id);
                    let len = codec::encode_ack(&ack, PacketType::Pubrel, buf, version)?;
                    self.outbox.set(off, m.packet_id, RecordState::AwaitPubcomp);
                    return Ok(Some(len));
                }
                RecordState::AwaitAck | RecordState::AwaitPubcomp => {
                    off += m.len;
                    continue;
                }
                RecordState::Held => {
                    held = true;
                    off += m.len;
                    continue;
                }
                RecordState::Queued if held && m.packet_id == 0 => {
                    off += m.len;
                    continue;
                }
                RecordState::Queued => {}
            }
            if !self.can_finish() {
                // Completions need an event slot: wait for poll_event.
                return Ok(None);
            }
            let resend = m.packet_id != 0;
            let packet_id = if m.qos == QoS::AtMostOnce || resend {
                m.packet_id
            } else if inflight >= window {
                return Ok(None);
            } else {
                self.allocate_packet_id()?
            };
            let outcome = self.encode_record(off, m, packet_id, resend, now, buf)?;
            match outcome {
                RecordOutcome::Sent { len, packet_id } => {
                    if m.qos == QoS::AtMostOnce {
                        self.finish(off, m, Ok(()));
                    } else {
                        self.outbox.set(off, packet_id, RecordState::AwaitAck);
                    }
                    return Ok(Some(len));
                }
                RecordOutcome::Failed(failure) => {
                    if resend {
                        inflight = inflight.saturating_sub(1);
                    }
                    self.finish(off, m, Err(failure));
                }
                RecordOutcome::NoRoom => return Ok(None),
            }
        }
        Ok(None)
    }

    fn encode_record(
        &mut self,
        off: usize,
        m: RecordMeta,
        packet_id: u16,
        dup: bool,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<RecordOutcome, SessionError> {
        let version = self.version;
        let max = self.broker.maximum_packet_size;
        let capacity = buf.len();
        let fits = |size: usize| u32::try_from(size).is_ok_and(|s| s <= max) && size <= capacity;
        let stored = match Publish::decode_packet(self.outbox.body(off), ProtocolVersion::V5) {
            Ok(Some((p, _))) => p,
            // Our own encoding always decodes; a restored record that does
            // not is failed alone.
            _ => return Ok(RecordOutcome::Failed(PublishFailure::Unreadable)),
        };
        if stored.qos > self.broker.maximum_qos {
            return Ok(RecordOutcome::Failed(PublishFailure::QosNotSupported));
        }
        if stored.retain && !self.broker.retain_available {
            return Ok(RecordOutcome::Failed(PublishFailure::RetainNotSupported));
        }
        let v5 = version == ProtocolVersion::V5;
        // 5.0 §3.3.2.3.3: the Message Expiry Interval goes out as what is
        // left of it, not as queued.
        let remaining = (v5 && m.expires != 0 && m.expires != EXPIRY_UNSTAMPED).then(|| {
            let left = m.expires.saturating_sub(now_secs(now).saturating_add(1));
            left.min(stored.properties.message_expiry_interval().unwrap_or(left))
        });
        let plain = Publish {
            dup,
            packet_id: (stored.qos != QoS::AtMostOnce).then_some(packet_id),
            properties: if v5 {
                stored.properties
            } else {
                Properties::NONE
            },
            ..stored
        };
        // 5.0 outbound Topic Alias: reuse one, or set one up while the
        // table (ours and the broker's Topic Alias Maximum) has room.
        let limit = usize::from(self.broker.topic_alias_maximum).min(ALIASES);
        if v5 && limit > 0 {
            let known = self
                .out_aliases
                .iter()
                .position(|t| t.as_str() == stored.topic);
            let slot = match known {
                Some(i) => Some((i, false)),
                None if self.out_aliases.len() < limit && stored.topic.len() <= FILTER_LEN => {
                    Some((self.out_aliases.len(), true))
                }
                None => None,
            };
            let mut users: Vec<UserProperty<'_>, MAX_USER_PROPERTIES> = Vec::new();
            if let Some((index, set_up)) = slot
                && let Ok(alias) = u16::try_from(index + 1)
                && let Some(fields) =
                    rebuilt_fields(&stored.properties, Some(alias), remaining, &mut users)
            {
                let aliased = Publish {
                    topic: if set_up { stored.topic } else { "" },
                    properties: Properties::from_fields(&fields),
                    ..plain
                };
                if fits(aliased.encoded_len(version)) {
                    let len = aliased.encode(buf, version)?;
                    if set_up && let Ok(topic) = String::try_from(stored.topic) {
                        let _ = self.out_aliases.push(topic);
                    }
                    return Ok(RecordOutcome::Sent { len, packet_id });
                }
            }
        }
        let mut users: Vec<UserProperty<'_>, MAX_USER_PROPERTIES> = Vec::new();
        let fields = if remaining.is_some() {
            rebuilt_fields(&stored.properties, None, remaining, &mut users)
        } else {
            None
        };
        let packet = match &fields {
            Some(f) => Publish {
                properties: Properties::from_fields(f),
                ..plain
            },
            None => plain,
        };
        let size = packet.encoded_len(version);
        if u32::try_from(size).map_or(true, |s| s > max) {
            return Ok(RecordOutcome::Failed(PublishFailure::PacketTooLarge {
                size,
                max,
            }));
        }
        if size > capacity {
            if self.batch_tail {
                return Ok(RecordOutcome::NoRoom);
            }
            let capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
            return Ok(RecordOutcome::Failed(
                PublishFailure::TransmitBufferTooSmall { size, capacity },
            ));
        }
        let len = packet.encode(buf, version)?;
        Ok(RecordOutcome::Sent { len, packet_id })
    }
}

/// The most user properties a stored message may carry and still be sent
/// with a Topic Alias (they are re-lent from a stack array); messages with
/// more go without an alias.
const MAX_USER_PROPERTIES: usize = 16;

/// The properties of a stored PUBLISH with a Topic Alias added and the
/// Message Expiry Interval replaced by what is left of it, as fields for
/// emit. `None` if they cannot be rebuilt (too many user properties).
fn rebuilt_fields<'u, 'p: 'u>(
    props: &Properties<'p>,
    alias: Option<u16>,
    remaining_expiry: Option<u32>,
    users: &'u mut Vec<UserProperty<'p>, MAX_USER_PROPERTIES>,
) -> Option<PropertyFields<'u>> {
    let mut f = PropertyFields {
        topic_alias: alias,
        ..PropertyFields::NONE
    };
    for p in props.iter() {
        match p {
            Property::PayloadFormatIndicator(v) => f.payload_format_indicator = Some(v),
            Property::MessageExpiryInterval(v) => {
                f.message_expiry_interval = Some(remaining_expiry.unwrap_or(v));
            }
            Property::ContentType(v) => f.content_type = Some(v),
            Property::ResponseTopic(v) => f.response_topic = Some(v),
            Property::CorrelationData(v) => f.correlation_data = Some(v),
            Property::UserProperty(u) => users.push(u).ok()?,
            // Nothing else is valid in an outbound PUBLISH we stored.
            _ => return None,
        }
    }
    let users: &'u Vec<UserProperty<'p>, MAX_USER_PROPERTIES> = users;
    f.user_properties = users.as_slice();
    Some(f)
}

/// The largest Remaining Length (MQTT §1.5.5 / §2.1.4).
const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Bytes of the Variable Byte Integer encoding of `n` (§1.5.5).
const fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes the fixed header `first` byte and `remaining` as a Variable Byte
/// Integer into `out` (exactly `1 + varint_len(remaining)` bytes).
fn write_varint(out: &mut [u8], first: u8, remaining: usize) {
    let mut n = remaining;
    let mut bytes = out.iter_mut();
    if let Some(b) = bytes.next() {
        *b = first;
    }
    for b in bytes {
        let digit = (n % 128) as u8;
        n /= 128;
        *b = if n > 0 { digit | 0x80 } else { digit };
    }
}

/// The variable header's length in an encoded PUBLISH of `encoded_len`
/// bytes with an empty payload: `encoded_len = 1 + varint_len(vh) + vh`.
fn variable_header_len(encoded_len: usize) -> usize {
    (1..=4)
        .map(|vl| encoded_len.saturating_sub(1 + vl))
        .find(|&vh| 1 + varint_len(vh) + vh == encoded_len)
        .unwrap_or(0)
}

/// Whole seconds of the session's clock, as the outbox stores them.
fn now_secs(now: Instant) -> u32 {
    u32::try_from(now.as_secs()).unwrap_or(u32::MAX - 2)
}

fn ack_with(packet_id: u16, code: ReasonCode, version: ProtocolVersion) -> PubAck<'static> {
    let mut ack = PubAck::new(packet_id);
    if version == ProtocolVersion::V5 {
        ack.reason_code = code;
    }
    ack
}

/// A 32-bit FNV-1a fingerprint of an inbound message (topic, a separator
/// that cannot occur in a topic, payload), kept per held QoS 2 packet id so
/// that a redelivery can be told apart from a different message that reuses
/// the id. Four bytes per in-flight slot; not a cryptographic hash (a broker
/// gains nothing by forging a collision that makes us drop its message).
fn message_fingerprint(topic: &str, payload: &[u8]) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    topic
        .as_bytes()
        .iter()
        .chain(core::iter::once(&0u8))
        .chain(payload)
        .fold(OFFSET, |h, &b| (h ^ u32::from(b)).wrapping_mul(PRIME))
}
