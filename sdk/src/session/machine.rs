//! The [`Session`] state machine itself: its state, the link's life cycle
//! (connect, timeouts, disconnect), packet dispatch, and the outputs
//! (`poll_*`).
//!
//! The flows live beside it, each an `impl Session` block of its own:
//! `connect` (CONNECT, CONNACK, 5.0 enhanced authentication), `inbound`
//! (the broker's PUBLISH and PUBREL), `outbound` (publishing, the outbox,
//! message expiry, PUBACK / PUBREC / PUBCOMP) and `requests` (SUBSCRIBE /
//! UNSUBSCRIBE and the resubscription after a session loss). No I/O, no
//! clock, no allocation here or there.

mod connect;
mod held;
mod inbound;
mod outbound;
mod oversized;
mod requests;

#[cfg(all(test, feature = "v5"))]
pub(crate) use outbound::stored_packet_id;

use heapless::{Deque, String, Vec};

use self::held::{HeldQos2, HeldRuns};
use super::auth::{Authenticator, Credentials};
use super::config::SessionConfig;
use super::error::{ProtocolViolation, SessionError};
use super::event::{
    CloseReason, Event, FilterResults, Incoming, Message, PublishFailure, PublishToken,
};
use super::outbox::{Outbox, RecordMeta, RecordState};
use crate::codec::{
    self, DecodeError, DecodeOptions, Decoded, Disconnect, FixedHeader, Packet, PacketType,
    Properties, ProtocolVersion, PubAck, QoS, ReasonCode, SubscriptionOptions, Violation,
};
use crate::time::{Duration, Instant};

/// Capacity of the queue of small control packets to send (acks of inbound
/// messages, PINGREQ). `handle_incoming` answers
/// [`Incoming::Backpressure`] rather than overflow it.
pub const CONTROL_QUEUE_LEN: usize = 16;
/// The default capacity of the event queue (the `EVENTS` parameter of
/// [`Session`]). `handle_incoming` answers [`Incoming::Backpressure`] while
/// fewer than [`EVENT_HEADROOM`] slots are free; publish completions wait
/// in the outbox while it is full.
pub const EVENT_QUEUE_LEN: usize = 16;
/// Event slots kept free for the events one input can raise.
pub const EVENT_HEADROOM: usize = 3;
/// Capacity of the queue of store keys to remove (see
/// [`Session::poll_store_removal`]); `handle_incoming` answers
/// [`Incoming::Backpressure`] rather than overflow it.
pub const STORE_REMOVAL_QUEUE_LEN: usize = 16;
/// The default of [`Session`]'s `V311_QOS2_RUNS`: runs of consecutive
/// packet identifiers of inbound QoS 2 messages a 3.1.1 session holds
/// beyond `INFLIGHT` until their PUBREL (4 bytes each).
pub const DEFAULT_V311_QOS2_RUNS: usize = 8;
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
    /// The options the broker granted (or asked for, until it answers).
    options: SubscriptionOptions,
    /// The options of the SUBSCRIBE in flight for this filter: they replace
    /// `options` only when the broker grants them.
    requested: SubscriptionOptions,
    /// Acknowledged by the broker (and to be restored after a session loss).
    active: bool,
    /// The request in flight for this filter, if any.
    pending: Option<(u16, RequestKind)>,
}

/// The lent [`Authenticator`] and the buffer its steps write into.
struct EnhancedAuth<'b> {
    authenticator: &'b mut (dyn Authenticator + Send),
    step: &'b mut [u8],
    /// The length of the data in `step` for the next CONNECT or AUTH;
    /// `None`: no data.
    len: Option<u16>,
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
    /// Topic Alias Maximum it accepts (5.0; 0 in 3.1.1). Outbound topic
    /// aliases are set up for the first `min(this, ALIASES)` distinct
    /// topics of a connection; 0 means none are sent.
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
/// - `V311_QOS2_RUNS`: under 3.1.1 only, inbound QoS 2 messages held
///   (delivered, awaiting PUBREL) beyond `INFLIGHT` are remembered as runs
///   of consecutive packet identifiers, at most this many runs (4 bytes
///   each). 3.1.1 cannot tell the broker a Receive Maximum, and a broker
///   with a stored backlog may send all of it before the first PUBREL; it
///   numbers the messages one after the other, so one run holds any such
///   burst. See docs/session.md, "Inbound QoS 2 under 3.1.1".
/// - `EVENTS`: capacity of the event queue, more than [`EVENT_HEADROOM`]
///   (checked when the session is built; default [`EVENT_QUEUE_LEN`]).
///   A full queue loses nothing: `handle_incoming` answers
///   [`Incoming::Backpressure`] until [`poll_event`](Self::poll_event)
///   makes room, and finished publishes wait in the outbox for their
///   completion's slot. A smaller queue costs one `poll_event` round more
///   per burst; a driver that drains the queue after every input, as the
///   client's does, needs little more than the headroom (a simulated
///   device runs with 4; an event is 24 bytes on 64-bit targets).
pub struct Session<
    'b,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize = 128,
    const ALIASES: usize = 0,
    const V311_QOS2_RUNS: usize = DEFAULT_V311_QOS2_RUNS,
    const EVENTS: usize = EVENT_QUEUE_LEN,
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
    events: Deque<Event, EVENTS>,
    /// Inbound QoS 2 messages delivered and awaiting PUBREL: the packet id
    /// and a fingerprint of the message (see `inbound::message_fingerprint`).
    inbound_qos2: Vec<HeldQos2, INFLIGHT>,
    /// 3.1.1 only: the identifiers of such messages beyond `INFLIGHT`.
    inbound_qos2_runs: HeldRuns<V311_QOS2_RUNS>,
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
    /// The driver's receive buffer size, once it said: it caps the
    /// Maximum Packet Size we announce (5.0) and accept.
    rx_capacity: Option<u32>,
    /// Inside [`Session::poll_transmit_batch`], behind packets already
    /// written: a publish that does not fit what is left of the buffer
    /// waits for the next batch instead of failing.
    batch_tail: bool,
    /// With transmit confirmation on (a driver that says when its writes
    /// succeeded): QoS 0 publishes handed out but not yet confirmed
    /// written; their completions wait here (counted against the event
    /// queue) and fail with [`PublishFailure::LinkLost`] if the link ends
    /// first.
    confirm_transmit: bool,
    /// QoS 0 records in state `Written`: each holds an event slot.
    unconfirmed: u8,
    /// Some record may carry a Message Expiry Interval (the expiry scans
    /// are skipped while none does).
    expiring: bool,
    /// Some record carries a session-loss notice not yet applied.
    session_lost_notices: bool,
    /// The broker refused a durable publish with a transient reason code:
    /// no new publish goes out before this instant (see `retry_later`).
    retry_at: Option<Instant>,
    /// The pause after the next transient refusal (doubles per refusal,
    /// back to the base after an accepted publish).
    retry_backoff: Duration,
    /// The `now` of the last `handle_incoming`.
    rx_at: Instant,
    /// 5.0 enhanced authentication, if the application lent an
    /// authenticator (with its step buffer).
    auth: Option<EnhancedAuth<'b>>,
    /// Renewed user name and password, replacing the configuration's.
    credentials: Option<&'b mut (dyn Credentials + Send)>,
    /// An AUTH to send, with this reason code.
    auth_pending: Option<ReasonCode>,
    /// A re-authentication is under way.
    reauthenticating: bool,
}

impl<
    'b,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
    const V311_QOS2_RUNS: usize,
    const EVENTS: usize,
> Session<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES, V311_QOS2_RUNS, EVENTS>
{
    /// A session that has never connected, queuing publishes in `outbox`.
    ///
    /// `EVENTS` must exceed [`EVENT_HEADROOM`]: a smaller queue is a
    /// compile-time error where the session is built.
    pub fn new(config: SessionConfig<'b>, outbox: &'b mut [u8]) -> Self {
        const {
            assert!(
                EVENTS > EVENT_HEADROOM,
                "Session's EVENTS must exceed EVENT_HEADROOM"
            );
        }
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
            inbound_qos2_runs: HeldRuns::new(),
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
            rx_capacity: None,
            batch_tail: false,
            confirm_transmit: false,
            unconfirmed: 0,
            expiring: false,
            session_lost_notices: false,
            retry_at: None,
            retry_backoff: outbound::RETRY_BASE,
            rx_at: Instant::ZERO,
            auth: None,
            credentials: None,
            auth_pending: None,
            reauthenticating: false,
        }
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

    /// Lends the [`Credentials`] whose user name and password every
    /// CONNECT carries from now on (instead of the configuration's); they
    /// are refreshed when each new transport is up
    /// ([`handle_connected`](Self::handle_connected)).
    pub fn set_credentials(&mut self, credentials: &'b mut (dyn Credentials + Send)) {
        self.credentials = Some(credentials);
    }

    /// Reports QoS 0 completions only once the driver confirms the bytes
    /// were written ([`confirm_transmitted`](Self::confirm_transmitted));
    /// until then they wait, and a link that ends first fails them with
    /// [`PublishFailure::LinkLost`]. Off by default: a QoS 0 publish then
    /// completes when it is handed out by `poll_transmit`.
    pub fn set_transmit_confirmation(&mut self, on: bool) {
        self.confirm_transmit = on;
    }

    /// Everything handed out by `poll_transmit` so far was written to the
    /// transport: the QoS 0 completions waiting for it are reported.
    pub fn confirm_transmitted(&mut self) {
        self.finish_written(Ok(()));
    }

    /// Completes every `Written` QoS 0 record with `result`.
    fn finish_written(&mut self, result: Result<(), PublishFailure>) {
        let mut off = 0;
        while self.unconfirmed > 0
            && let Some(m) = self.outbox.meta(off)
        {
            if m.state == RecordState::Written {
                self.unconfirmed -= 1;
                self.finish(off, m, result);
                continue;
            }
            off += m.len;
        }
        self.unconfirmed = 0;
    }

    /// The driver's receive buffer holds packets up to `capacity` bytes.
    /// The largest packet the session accepts is then the smaller of this
    /// and the configuration's `max_incoming_packet_size`: a 5.0 CONNECT
    /// announces it as Maximum Packet Size (so the broker never sends more,
    /// 5.0 §3.1.2.11.4), and a 3.1.1 PUBLISH above it (3.1.1 has no way to
    /// say so) is skipped rather than ending the link
    /// ([`Incoming::Skipped`]).
    pub fn set_receive_capacity(&mut self, capacity: usize) {
        self.rx_capacity = Some(u32::try_from(capacity).unwrap_or(u32::MAX));
    }

    /// The largest incoming packet accepted: the configured maximum, capped
    /// by the receive buffer once the driver said its size.
    pub fn max_incoming_packet_size(&self) -> u32 {
        let rx = self.rx_capacity.unwrap_or(u32::MAX);
        self.config.max_incoming_packet_size.min(rx)
    }

    // ----------------------------------------------------------------- state

    /// The protocol version of the current (or next) connection. Without
    /// the `v5` feature it is 3.1.1, a constant the compiler folds into
    /// every codec call so that the 5.0 paths drop out of the image.
    #[inline(always)]
    pub fn version(&self) -> ProtocolVersion {
        #[cfg(feature = "v5")]
        {
            self.version
        }
        #[cfg(not(feature = "v5"))]
        {
            ProtocolVersion::V311
        }
    }

    /// Whether the current (or next) connection speaks 5.0: always false
    /// without the `v5` feature.
    #[inline(always)]
    pub(crate) fn is_v5(&self) -> bool {
        self.version() == ProtocolVersion::V5
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

    /// Record headers the outbox has read so far (the tests' measure of
    /// lookup cost).
    #[cfg(all(test, feature = "v5"))]
    pub(crate) fn outbox_reads(&self) -> u64 {
        self.outbox.reads.get()
    }

    /// Bytes the outbox has moved so far (compaction, removals).
    #[cfg(all(test, feature = "v5"))]
    pub(crate) fn outbox_moved(&self) -> u64 {
        self.outbox.moved
    }

    /// Messages in the outbox (queued or in flight).
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// QoS 1/2 publishes holding a packet identifier (in flight).
    pub fn inflight(&self) -> usize {
        self.outbox.with_packet_id()
    }

    /// The remembered filters: filter, options, and whether the broker
    /// acknowledged it.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, SubscriptionOptions, bool)> + '_ {
        self.subs
            .iter()
            .map(|s| (s.filter.as_str(), s.options, s.active))
    }

    /// Every packet identifier the session holds (outbox and requests).
    #[cfg(all(test, feature = "v5"))]
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
        DecodeOptions::new(self.version()).with_max_packet_size(self.max_incoming_packet_size())
    }

    pub(super) fn push_event(&mut self, event: Event) {
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
        EVENTS
            .saturating_sub(self.events.len())
            .saturating_sub(usize::from(self.unconfirmed))
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

    /// A QoS 0 record was handed out to be written: removed from the
    /// outbox, and its completion reported now, or (with transmit
    /// confirmation) once the driver confirms the write.
    fn finish_sent_qos0(&mut self, off: usize, m: RecordMeta) {
        if !self.confirm_transmit {
            self.finish(off, m, Ok(()));
            return;
        }
        // Callers checked `can_finish`: its event slot is held for it.
        self.outbox.set(off, m.packet_id, RecordState::Written);
        self.unconfirmed = self.unconfirmed.saturating_add(1);
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
        if self.is_v5() && matches!(self.link, Link::Up) {
            self.pending_disconnect = Some(code);
        }
        self.close(CloseReason::ProtocolError(code));
    }

    /// `id` is held by a record or a request in flight, or is the one a
    /// durable record's key reserves for it (see `stored_packet_id`).
    fn packet_id_in_use(&self, id: u16) -> bool {
        self.packet_id_taken(id)
            || self.outbox.durable() > 0
                && self.outbox.offsets().any(|off| {
                    self.outbox
                        .meta(off)
                        .is_some_and(|m| m.key != 0 && outbound::stored_packet_id(m.key) == id)
                })
    }

    /// `id` is held by a record or a request in flight.
    fn packet_id_taken(&self, id: u16) -> bool {
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
        if let Some(credentials) = self.credentials.as_deref_mut() {
            credentials.refresh(now);
        }
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
        self.clear_auth_data();
        if self.is_v5() {
            self.auth_step(None, true);
        }
        Ok(())
    }

    /// The transport closed (whoever closed it). Raises
    /// [`Event::Disconnected`] unless the session already did for this
    /// link. Unacknowledged work stays queued for the next connection.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        if self.link == Link::Down {
            return;
        }
        // A link lost before CONNACK keeps the version: only the broker's
        // refusal of it (handle_connack) switches to 3.1.1.
        //
        // QoS 0 messages handed out but never confirmed written are lost
        // (at most once: they are not sent again).
        self.finish_written(Err(PublishFailure::LinkLost));
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
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
        }
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
        self.rx_at = now;
        if matches!(self.link, Link::Down | Link::Closing) {
            return Err(SessionError::InvalidState {
                state: self.link.name(),
            });
        }
        let mut opts = self.decode_options();
        // A 3.1.1 broker answers a 5.0 CONNECT with a 3.1.1 CONNACK (two
        // bytes, return code 1): decode that one as 3.1.1.
        if self.is_v5()
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
            Err(DecodeError::PacketTooLarge { size, .. })
                if opts.version == ProtocolVersion::V311 && self.link == Link::Up =>
            {
                if let Some(skipped) = self.skip_oversized_publish(bytes, size)? {
                    return Ok(skipped);
                }
                self.fail(ReasonCode::PACKET_TOO_LARGE);
                return Err(DecodeError::PacketTooLarge {
                    size,
                    max: opts.max_packet_size,
                }
                .into());
            }
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
                self.handle_pubrel(a.packet_id);
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
                let count = if self.is_v5() {
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
                if self.is_v5()
                    && self.auth.is_some()
                    && (matches!(self.link, Link::AwaitConnack(_)) || self.reauthenticating) =>
            {
                self.handle_auth(&a)?;
                Ok((None, a.properties))
            }
            Packet::Disconnect(d) if self.is_v5() => {
                self.close(CloseReason::ServerDisconnect(d.reason_code));
                Ok((None, d.properties))
            }
            other => Err(unexpected(&other)),
        }
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
        [link, self.next_expiry(), self.retry_at]
            .into_iter()
            .flatten()
            .min()
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
                    let len = codec::encode_disconnect(&d, buf, self.version())?;
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

    fn transmit_up(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, SessionError> {
        if let Some(len) = self.transmit_auth(buf)? {
            return Ok(Some(len));
        }
        let version = self.version();
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
}

fn ack_with(packet_id: u16, code: ReasonCode, version: ProtocolVersion) -> PubAck<'static> {
    let mut ack = PubAck::new(packet_id);
    if version == ProtocolVersion::V5 {
        ack.reason_code = code;
    }
    ack
}
