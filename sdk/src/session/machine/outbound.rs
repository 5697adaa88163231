//! Outbound application messages: queuing publishes in the outbox, the
//! durable-outbox hooks (hold, release, restore), Message Expiry (5.0
//! §3.3.2.3.3), sending records in FIFO order inside the window (5.0
//! §4.9), outbound topic aliases, and the broker's PUBACK / PUBREC /
//! PUBCOMP (§4.3.2, §4.3.3). A durable record (one with a store key) is
//! sent under the packet identifier its key gives, so that after a restart
//! it resumes the flow a resumed broker session holds [MQTT-4.3.3-9], and a
//! transient refusal of it (0x97, 0x89, 0x88, 0x93) queues it again after a
//! backoff instead of failing it. Aliases are never replaced once the table
//! is full (no LRU). Whether a durable record was sent or past PUBREC is not
//! known after a restart: it resumes at PUBLISH, never at PUBREL.

use heapless::{String, Vec};

use super::{Control, EVENT_HEADROOM, Session};
use crate::codec::wire;
use crate::codec::{
    self, PacketType, Properties, Property, PropertyFields, ProtocolVersion, PubAck, Publish, QoS,
    ReasonCode, UserProperty,
};
use crate::session::config::{OverflowPolicy, SessionLostPolicy};
use crate::session::error::{SessionError, SizeLimit};
use crate::session::event::{Event, OutgoingMessage, PublishFailure, PublishState, PublishToken};
use crate::session::outbox::{EXPIRY_UNSTAMPED, HEADER_LEN, RecordMeta, RecordState};
use crate::time::{Duration, Instant};
use crate::topic;

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
    pub(super) fn complete(&mut self, off: usize, m: RecordMeta, code: ReasonCode) {
        if m.key != 0 && is_transient(code) {
            self.retry_later(off);
            return;
        }
        let result = if code.is_error() {
            Err(PublishFailure::Rejected(code))
        } else {
            self.retry_backoff = RETRY_BASE;
            Ok(())
        };
        self.finish(off, m, result);
    }

    /// The broker refused the durable record at `off` for now (a transient
    /// reason code in PUBACK or PUBREC: the flow is over and its packet
    /// identifier free, 5.0 §4.3.2 and §4.3.3). It stays in the outbox and
    /// in the store, queued again in its place; no new publish goes out
    /// before a pause of [`RETRY_BASE`], doubling per refusal up to
    /// [`RETRY_CAP`] and back to the base once a publish is accepted.
    fn retry_later(&mut self, off: usize) {
        self.outbox.set(off, 0, RecordState::Queued);
        self.retry_at = Some(self.rx_at.saturating_add(self.retry_backoff));
        self.retry_backoff = Duration::from_millis(
            self.retry_backoff
                .as_millis()
                .saturating_mul(2)
                .min(RETRY_CAP.as_millis()),
        );
    }

    pub(super) fn unexpected_ack(&mut self, packet_type: PacketType, packet_id: u16) {
        self.push_event(Event::UnexpectedAck {
            packet_type,
            packet_id,
        });
    }

    pub(super) fn handle_puback(&mut self, a: &PubAck<'_>) {
        match self.outbox.find_packet_id(a.packet_id) {
            Some((off, m)) if m.state == RecordState::AwaitAck && m.qos == QoS::AtLeastOnce => {
                self.complete(off, m, a.reason_code);
            }
            _ => self.unexpected_ack(PacketType::Puback, a.packet_id),
        }
    }

    pub(super) fn handle_pubrec(&mut self, a: &PubAck<'_>) {
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

    pub(super) fn handle_pubcomp(&mut self, a: &PubAck<'_>) {
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
    ///
    /// `write` may be called twice: first with the room after the last
    /// record, then, only if the payload did not fit there, with every
    /// byte left (the records gathered at the front of the outbox, which
    /// costs a move of the whole backlog; the first try avoids it).
    pub fn publish_with(
        &mut self,
        msg: &OutgoingMessage<'_>,
        mut write: impl FnMut(&mut [u8]) -> Option<usize>,
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
                // Only the last try's failure counts.
                failure = None;
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
                let vl = wire::varint_len(remaining);
                let start = 1 + vl + vh_len;
                dst.copy_within(payload_at..payload_at + n, start);
                // The empty PUBLISH ends exactly where the payload starts;
                // its own (shorter) Remaining Length is then overwritten.
                let vl0 = wire::varint_len(vh_len);
                let at = vl - vl0;
                let Some(head) = dst.get_mut(at..start) else {
                    return Ok(None);
                };
                empty.encode(head, ProtocolVersion::V5)?;
                let first = head.first().copied().unwrap_or(0x30);
                // The remaining length is at most MAX_REMAINING_LENGTH
                // (checked above), so it fits the varint's 28 bits.
                let (varint, used) = wire::varint_bytes(remaining as u32);
                if let Some((f, rest)) = dst.get_mut(..1 + used).and_then(|h| h.split_first_mut())
                    && let Some(v) = varint.get(..rest.len())
                {
                    *f = first;
                    rest.copy_from_slice(v);
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
            // A 3.1.1-only build sends no properties, so it keeps none.
            properties: if cfg!(feature = "v5") {
                msg.properties
            } else {
                Properties::NONE
            },
            payload: msg.payload,
        })
    }

    /// Refuses a PUBLISH that can never be sent: larger (in the current
    /// version's encoding) than the transmit buffer or the broker's last
    /// Maximum Packet Size.
    fn check_size(&self, publish: &Publish<'_>) -> Result<(), SessionError> {
        let size = if self.is_v5() {
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
    /// [`cancel_restored`](Self::cancel_restored)). It is sent with DUP
    /// under the packet identifier `key` gives (the one an earlier run
    /// sent it under), starting at PUBLISH. A Message Expiry Interval counts again from the release
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
            // DUP: it may have been sent before the restart (under the
            // packet identifier its key gives, see `stored_packet_id`).
            if let Some(first) = dst.first_mut() {
                *first |= DUP_FLAG;
            }
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
            RecordState::AwaitAck
            | RecordState::PubrelQueued
            | RecordState::AwaitPubcomp
            | RecordState::Written => PublishState::InFlight,
        })
    }

    /// Stamps records that carry a Message Expiry Interval with `now`, and
    /// fails the queued ones whose interval lapsed (5.0 §3.3.2.3.3).
    ///
    /// Only a message never sent on the current session lapses: once sent
    /// (a packet identifier assigned), the broker may hold that identifier
    /// (QoS 2: until our PUBREL), so the record is finished by the broker's
    /// acks alone and its identifier is not freed early for another
    /// message the broker would take for a duplicate ([MQTT-4.3.3-3]: a
    /// QoS 2 PUBLISH stays unacknowledged until PUBREC; [MQTT-2.2.1-3]: a new
    /// PUBLISH takes an identifier that is currently unused).
    pub(super) fn expire(&mut self, now: Instant) {
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
                && m.packet_id == 0
                && !m.notice
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
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        if !self.expiring {
            return None;
        }
        self.outbox
            .offsets()
            .filter_map(|off| self.outbox.meta(off))
            .filter(|m| {
                m.state == RecordState::Queued && m.packet_id == 0 && !m.notice && m.expires != 0
            })
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

    /// Applies the [`SessionLostPolicy`] to each QoS 2 publish that was
    /// sent on a session the broker lost: reports it with
    /// [`Event::Republished`] (it then goes out as new), or finishes it with
    /// [`PublishFailure::SessionLost`]. Returns whether every one was
    /// handled (false: the event queue is full; poll_event first).
    fn apply_session_lost(&mut self) -> bool {
        let mut pending = false;
        let mut off = 0;
        while let Some(m) = self.outbox.meta(off) {
            if m.notice {
                match self.config.session_lost_policy {
                    SessionLostPolicy::Republish if self.events_free() > 0 => {
                        self.outbox.set_notice(off, false);
                        self.push_event(Event::Republished {
                            token: PublishToken(m.token),
                        });
                    }
                    SessionLostPolicy::Abandon if self.can_finish() => {
                        self.finish(off, m, Err(PublishFailure::SessionLost));
                        continue;
                    }
                    _ => pending = true,
                }
            }
            off += m.len;
        }
        self.session_lost_notices = pending;
        !pending
    }

    /// Sends the first record that can go, in FIFO order: a PUBREL, a
    /// resend (DUP) or a new publish while the window has room. A new QoS
    /// 1/2 publish that does not fit the window stops the scan, so order is
    /// kept.
    pub(super) fn transmit_record(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        if self.session_lost_notices && !self.apply_session_lost() {
            // Reports first, then the republished messages.
            return Ok(None);
        }
        let version = self.version();
        let mut inflight = self.inflight();
        let window = self.window();
        // Records before the prefix have nothing to send; those passed
        // from there that have nothing to send either join it.
        let mut off = self.outbox.sent_prefix();
        let mut in_prefix = true;
        while let Some(m) = self.outbox.meta(off) {
            match m.state {
                RecordState::PubrelQueued => {
                    let ack = PubAck::new(m.packet_id);
                    let len = codec::encode_ack(&ack, PacketType::Pubrel, buf, version)?;
                    self.outbox.set(off, m.packet_id, RecordState::AwaitPubcomp);
                    return Ok(Some(len));
                }
                RecordState::AwaitAck | RecordState::AwaitPubcomp | RecordState::Written => {
                    off += m.len;
                    if in_prefix {
                        self.outbox.pass_sent(off);
                    }
                    continue;
                }
                // A held record (its durable copy being written) keeps
                // the publishes behind it back, so order is kept. Nothing
                // behind it was ever sent (it went in last, and nothing
                // passes it), so nothing there waits to be resent or for a
                // PUBREL: the walk ends here.
                RecordState::Held => return Ok(None),
                // A transient refusal pauses new publishes, in order.
                RecordState::Queued
                    if m.packet_id == 0 && self.retry_at.is_some_and(|at| now < at) =>
                {
                    return Ok(None);
                }
                RecordState::Queued => {}
            }
            // A record to send ends the prefix.
            in_prefix = false;
            if !self.can_finish() {
                // Completions need an event slot: wait for poll_event.
                return Ok(None);
            }
            let resend = m.packet_id != 0;
            let packet_id = if m.qos == QoS::AtMostOnce || resend {
                m.packet_id
            } else if inflight >= window {
                return Ok(None);
            } else if m.key != 0 {
                // A durable record always goes out under the identifier
                // its store key gives, so that after a restart it resumes
                // the flow the broker may still hold [MQTT-4.3.3-9]. Taken
                // by a SUBSCRIBE or an older record 65 535 keys back: wait
                // for it, in order.
                let id = stored_packet_id(m.key);
                if self.packet_id_taken(id) {
                    return Ok(None);
                }
                id
            } else {
                self.allocate_packet_id()?
            };
            let outcome = self.encode_record(off, m, packet_id, resend, now, buf)?;
            match outcome {
                RecordOutcome::Sent { len, packet_id } => {
                    if m.qos == QoS::AtMostOnce {
                        self.finish_sent_qos0(off, m);
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
        let version = self.version();
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
            // A restored record carries DUP in its stored bytes.
            dup: dup || stored.dup,
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
const MAX_REMAINING_LENGTH: usize = wire::MAX_VARINT as usize;

/// The variable header's length in an encoded PUBLISH of `encoded_len`
/// bytes with an empty payload: `encoded_len = 1 + wire::varint_len(vh) + vh`.
/// The first pause after a transient refusal of a durable publish.
pub(crate) const RETRY_BASE: Duration = Duration::from_millis(500);
/// The longest pause between retries of a refused durable publish.
pub(crate) const RETRY_CAP: Duration = Duration::from_secs(30);

/// Reason codes in PUBACK or PUBREC after which a durable publish is sent
/// again later rather than failed and removed from the store: the broker
/// is short of something now, not refusing the message. 0x97 Quota
/// exceeded (mosquitto answers it in bulk after a restart), 0x89 Server
/// busy, 0x88 Server unavailable and 0x93 Receive Maximum exceeded (the
/// last three are defined for CONNACK or DISCONNECT; a broker that sends
/// them in an acknowledgement means the same). Every other code of 0x80 or
/// more (0x87 Not authorized, 0x90 Topic Name invalid, 0x99 Payload
/// format invalid, 0x80 Unspecified error, ...) fails the publish for good.
pub(crate) fn is_transient(code: ReasonCode) -> bool {
    matches!(code.0, 0x97 | 0x89 | 0x88 | 0x93)
}

/// The DUP bit of a PUBLISH's first byte (§3.3.1.1).
const DUP_FLAG: u8 = 0x08;

/// The packet identifier a durable record with store `key` (non-zero) is
/// sent under, on every connection and in every run of the process: keys
/// increase by one per persist, so the records in an outbox never share
/// one unless 65 535 persists apart. Nothing per send is written to the
/// store, yet a record replayed after a restart resumes under the
/// identifier the broker knows it by.
pub(crate) fn stored_packet_id(key: u32) -> u16 {
    // (key - 1) % 65 535 + 1 lies in 1..=65 535.
    u16::try_from(key.wrapping_sub(1) % u32::from(u16::MAX)).map_or(1, |id| id + 1)
}

fn variable_header_len(encoded_len: usize) -> usize {
    (1..=4)
        .map(|vl| encoded_len.saturating_sub(1 + vl))
        .find(|&vh| 1 + wire::varint_len(vh) + vh == encoded_len)
        .unwrap_or(0)
}

/// Whole seconds of the session's clock, as the outbox stores them.
fn now_secs(now: Instant) -> u32 {
    u32::try_from(now.as_secs()).unwrap_or(u32::MAX - 2)
}
