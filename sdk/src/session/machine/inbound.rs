//! Inbound application messages (MQTT 5.0 §4.3, §3.3; 3.1.1 §4.3): the
//! broker's PUBLISH at QoS 0/1/2, its PUBREL, and inbound topic aliases
//! (5.0 §3.3.2.3.4). QoS 2 is delivered on first receipt and its packet
//! identifier held until PUBREL (5.0 §4.3.3 method B).

use heapless::String;

use super::held::HeldQos2;
use super::{Control, Session};
use crate::codec::{Publish, QoS, ReasonCode};
use crate::session::error::ProtocolViolation;
use crate::session::event::Message;

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
    pub(super) fn handle_publish<'a>(
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
                let deliver = self.receive_qos2(id, fingerprint, p.dup)?;
                let _ = self.control.push_back(Control::Pubrec(id));
                Ok(deliver.then_some(message))
            }
            _ => Ok(Some(message)),
        }
    }

    /// A QoS 2 PUBLISH under `id` with `fingerprint` (and its DUP flag)
    /// arrived: whether it is new (deliver it) or the redelivery of the held
    /// one (do not). A different message under a held id replaces it and is
    /// new.
    pub(super) fn receive_qos2(
        &mut self,
        id: u16,
        fingerprint: u32,
        dup: bool,
    ) -> Result<bool, ProtocolViolation> {
        let held = self.inbound_qos2.iter_mut().find(|held| held.id() == id);
        match held {
            Some(held) if held.fingerprint() == fingerprint => Ok(false),
            Some(held) => {
                *held = HeldQos2::new(id, fingerprint);
                Ok(true)
            }
            // Held beyond INFLIGHT (3.1.1), without a fingerprint: a
            // redelivery carries DUP=1 ([MQTT-3.3.1-1]); DUP=0 under a held
            // id is a new message, delivered.
            None if self.inbound_qos2_runs.contains(id) => Ok(!dup),
            None => {
                self.hold_inbound_qos2(id, fingerprint)?;
                Ok(true)
            }
        }
    }

    /// Remembers a delivered QoS 2 message until its PUBREL. 5.0: at most
    /// `INFLIGHT`, the Receive Maximum we announced (§3.3.4, 0x93 beyond
    /// it). 3.1.1 announces none, so the broker decides: beyond `INFLIGHT`
    /// the identifiers are held as runs (see docs/session.md, "Inbound QoS
    /// 2 under 3.1.1").
    fn hold_inbound_qos2(&mut self, id: u16, fingerprint: u32) -> Result<(), ProtocolViolation> {
        let held = HeldQos2::new(id, fingerprint);
        if self.inbound_qos2.push(held).is_ok() {
            return Ok(());
        }
        if self.is_v5() {
            return Err(ProtocolViolation::ReceiveMaximumExceeded);
        }
        if self.inbound_qos2_runs.insert(id) {
            Ok(())
        } else {
            Err(ProtocolViolation::InboundQos2TableFull {
                runs: V311_QOS2_RUNS,
            })
        }
    }

    /// PUBREL: the message under `packet_id` is released; PUBCOMP (0x92 in
    /// 5.0 when we do not hold it).
    pub(super) fn handle_pubrel(&mut self, packet_id: u16) {
        let primary = self
            .inbound_qos2
            .iter()
            .position(|held| held.id() == packet_id);
        let released = match primary {
            Some(i) => {
                self.inbound_qos2.swap_remove(i);
                true
            }
            None => self.inbound_qos2_runs.remove(packet_id),
        };
        let code = if released {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        let _ = self.control.push_back(Control::Pubcomp(packet_id, code));
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
