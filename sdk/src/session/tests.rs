//! Deterministic session tests: a client [`Session`] and an in-test broker
//! model stepped through virtual time.
//!
//! The broker model is a hand-written peer built on the codec. It is used
//! instead of a real broker because these tests must lose, duplicate and
//! forge packets at exact protocol steps, which no real broker does; the
//! integration tests against mosquitto / rumqttd / aedes come with the
//! async client.

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::codec::{
    Connack, Disconnect, Packet, PacketType, Properties, PropertyFields, ProtocolVersion, PubAck,
    Publish, QoS, ReasonCode, ReasonCodes, Suback, Subscription, SubscriptionOptions, Will,
};
use crate::time::{Duration, Instant};

mod auth;
mod backlog;
mod batch;
mod broker;
mod durable;
mod event_queue;
mod expiry;
mod hardening;
mod held;
mod outbox;
mod proptests;

use broker::{Broker, Dir};

type TestSession<const EVENTS: usize = EVENT_QUEUE_LEN> =
    Session<'static, 4, 8, 128, 2, DEFAULT_V311_QOS2_RUNS, EVENTS>;

/// The event queue of a simulated device (`cli/src/sim/fleet.rs`): the
/// smallest useful one, one slot beyond the headroom.
const SMALL_EVENTS: usize = EVENT_HEADROOM + 1;

fn outbox(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn config(version: ProtocolChoice) -> SessionConfig<'static> {
    SessionConfig {
        protocol: version,
        keep_alive_secs: 10,
        ..SessionConfig::new("dev-1")
    }
}

/// A message the application received, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
}

/// The session, the broker model and the wire between them.
struct Pair<const EVENTS: usize = EVENT_QUEUE_LEN> {
    s: TestSession<EVENTS>,
    b: Broker,
    now: Instant,
    rx: Vec<u8>,
    events: Vec<Event>,
    got: Vec<Got>,
    errors: Vec<SessionError>,
    /// Reason strings seen in handle_incoming's properties.
    reason_strings: Vec<String>,
    link_up: bool,
    /// Store keys the session asked to remove, in order.
    removed: Vec<u32>,
}

impl Pair {
    fn new(cfg: SessionConfig<'static>, broker_version: Option<ProtocolVersion>) -> Self {
        Self::with_outbox(cfg, broker_version, 4096)
    }

    fn with_outbox(
        cfg: SessionConfig<'static>,
        broker_version: Option<ProtocolVersion>,
        outbox_len: usize,
    ) -> Self {
        Self::build(cfg, broker_version, outbox_len)
    }
}

impl<const EVENTS: usize> Pair<EVENTS> {
    /// A pair whose session has an event queue of `EVENTS`.
    fn build(
        cfg: SessionConfig<'static>,
        broker_version: Option<ProtocolVersion>,
        outbox_len: usize,
    ) -> Self {
        Self {
            s: Session::new(cfg, outbox(outbox_len)),
            b: Broker::new(broker_version),
            now: Instant::ZERO,
            rx: Vec::new(),
            events: Vec::new(),
            got: Vec::new(),
            errors: Vec::new(),
            reason_strings: Vec::new(),
            link_up: false,
            removed: Vec::new(),
        }
    }

    fn connect(&mut self) {
        self.s.handle_connected(self.now).unwrap();
        self.b.accept();
        self.link_up = true;
        self.pump();
    }

    /// The transport breaks (both sides notice).
    fn cut(&mut self) {
        self.b.link_lost();
        self.rx.clear();
        self.s.handle_disconnected(self.now);
        self.link_up = false;
        self.drain_events();
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.s.poll_event() {
            self.events.push(e);
        }
        while let Some(key) = self.s.poll_store_removal() {
            self.removed.push(key);
        }
    }

    /// Moves bytes both ways until nothing moves.
    fn pump(&mut self) {
        let mut tx = [0u8; 2048];
        self.b.now = self.now;
        for _ in 0..10_000 {
            let mut progress = false;
            if self.link_up {
                while let Some(n) = self.s.poll_transmit(self.now, &mut tx).unwrap() {
                    self.b.receive(&tx[..n]);
                    progress = true;
                }
            }
            self.drain_events();
            if self.link_up {
                while let Some(bytes) = self.b.out.pop_front() {
                    self.rx.extend_from_slice(&bytes);
                    progress = true;
                }
                while !self.rx.is_empty() && self.link_up {
                    let rx = core::mem::take(&mut self.rx);
                    let r = self.s.handle_incoming(&rx, self.now);
                    let consumed = match r {
                        Ok(Incoming::Packet {
                            len,
                            message,
                            properties,
                            ..
                        }) => {
                            if let Some(m) = message {
                                let topic = match m.topic_alias {
                                    Some(a) if m.topic.is_empty() => {
                                        self.s.inbound_alias_topic(a).unwrap().to_string()
                                    }
                                    _ => m.topic.to_string(),
                                };
                                self.got.push(Got {
                                    topic,
                                    payload: m.payload.to_vec(),
                                    qos: m.qos,
                                });
                            }
                            if let Some(r) = properties.reason_string() {
                                self.reason_strings.push(r.to_string());
                            }
                            len
                        }
                        Ok(Incoming::Incomplete { .. }) => {
                            self.rx = rx;
                            break;
                        }
                        Ok(Incoming::Backpressure) => {
                            self.rx = rx;
                            break;
                        }
                        // The model's messages fit: skipping is tested in
                        // machine/oversized.rs.
                        Ok(Incoming::Skipped { len, .. }) => len.min(rx.len()),
                        Err(e) => {
                            self.errors.push(e);
                            rx.len()
                        }
                    };
                    self.rx = rx[consumed..].to_vec();
                    progress = true;
                    if !self.errors.is_empty() {
                        break;
                    }
                }
            }
            self.drain_events();
            if self.link_up && self.s.wants_close() {
                while let Some(n) = self.s.poll_transmit(self.now, &mut tx).unwrap() {
                    self.b.receive(&tx[..n]);
                }
                self.cut();
                progress = true;
            }
            if self.link_up && self.b.closed {
                self.cut();
                progress = true;
            }
            if !progress {
                return;
            }
        }
        panic!("pump did not settle");
    }

    /// Advances virtual time to the session's next deadline (if it is
    /// before `limit`) and handles it. Returns whether a deadline was hit.
    fn step_until(&mut self, limit: Instant) -> bool {
        match self.s.poll_timeout() {
            Some(t) if t <= limit => {
                self.now = self.now.max(t);
                self.s.handle_timeout(self.now);
                self.pump();
                true
            }
            _ => {
                self.now = limit;
                false
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step_until(end) {}
        self.pump();
    }

    fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) -> PublishToken {
        let t = self
            .s
            .publish(&OutgoingMessage::new(topic, payload, qos))
            .unwrap();
        self.pump();
        t
    }

    fn completions(&self, token: PublishToken) -> Vec<Result<(), PublishFailure>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::PublishComplete { token: t, result } if *t == token => Some(*result),
                _ => None,
            })
            .collect()
    }

    fn take_events(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.events)
    }

    fn connected_events(&self) -> Vec<bool> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Connected {
                    session_present, ..
                } => Some(*session_present),
                _ => None,
            })
            .collect()
    }
}

fn persistent(version: ProtocolChoice) -> SessionConfig<'static> {
    SessionConfig {
        clean_start: false,
        session_expiry_secs: Some(3600),
        ..config(version)
    }
}

// ------------------------------------------------------------- CONNECT

#[test]
fn mqtt_3_1_connect_fields_and_connack_in_both_versions() {
    static WILL_FIELDS: PropertyFields<'static> = PropertyFields {
        will_delay_interval: Some(5),
        ..PropertyFields::NONE
    };
    for (choice, version) in [
        (ProtocolChoice::V311, ProtocolVersion::V311),
        (ProtocolChoice::V5, ProtocolVersion::V5),
    ] {
        let cfg = SessionConfig {
            username: Some("user"),
            password: Some(b"secret"),
            will: Some(Will {
                topic: "dev-1/status",
                payload: b"gone",
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::from_fields(&WILL_FIELDS),
            }),
            ..config(choice)
        };
        let mut p = Pair::new(cfg, None);
        p.connect();
        let c = p.b.last_connect.clone().unwrap();
        assert_eq!(c.version, version);
        assert_eq!(c.client_id, "dev-1");
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 10);
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(c.will_topic.as_deref(), Some("dev-1/status"));
        assert_eq!(
            c.will_delay,
            if version == ProtocolVersion::V5 {
                Some(5)
            } else {
                None
            }
        );
        if version == ProtocolVersion::V5 {
            assert_eq!(
                c.receive_maximum,
                Some(4),
                "our Receive Maximum is INFLIGHT"
            );
            assert_eq!(c.maximum_packet_size, Some(65_536));
        }
        assert_eq!(
            p.events,
            vec![Event::Connected {
                session_present: false,
                version
            }],
            "{version}"
        );
        assert!(p.s.is_connected());
    }
}

#[test]
fn mqtt_3_2_2_connack_refusal_is_an_event_and_closes() {
    for (choice, bv) in [
        (ProtocolChoice::V5, ProtocolVersion::V5),
        (ProtocolChoice::V311, ProtocolVersion::V311),
    ] {
        let mut p = Pair::new(config(choice), Some(bv));
        p.b.refuse_with = Some(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        p.connect();
        assert_eq!(
            p.events,
            vec![
                Event::ConnectRefused {
                    reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                    falling_back_to_v311: false
                },
                Event::Disconnected {
                    reason: CloseReason::ConnectRefused(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
                },
            ]
        );
        assert!(!p.link_up);
        assert_eq!(p.s.version(), bv);
    }
}

#[test]
fn mqtt_5_3_2_2_unsupported_version_falls_back_to_v311() {
    // A 3.1.1-only broker answers a 5.0 CONNECT with return code 1.
    let mut p = Pair::new(
        config(ProtocolChoice::V5WithFallback),
        Some(ProtocolVersion::V311),
    );
    p.connect();
    assert_eq!(
        p.take_events()[0],
        Event::ConnectRefused {
            reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            falling_back_to_v311: true
        }
    );
    assert_eq!(p.s.version(), ProtocolVersion::V311);
    p.connect();
    assert_eq!(
        p.events,
        vec![Event::Connected {
            session_present: false,
            version: ProtocolVersion::V311
        }]
    );
    // Without the fall-back option the version stays.
    let mut p = Pair::new(config(ProtocolChoice::V5), Some(ProtocolVersion::V311));
    p.connect();
    assert_eq!(p.s.version(), ProtocolVersion::V5);
}

#[test]
fn connack_timeout_closes_the_link() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.mute_connack = true;
    p.connect();
    assert_eq!(p.s.poll_timeout(), Some(Instant::from_millis(10_000)));
    p.run_for(Duration::from_secs(11));
    assert_eq!(
        p.events,
        vec![Event::Disconnected {
            reason: CloseReason::ConnackTimeout
        }]
    );
    assert_eq!(p.now, Instant::from_millis(11_000));
}

#[test]
fn handle_connected_twice_is_an_invalid_state_error() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    assert!(matches!(
        p.s.handle_connected(p.now),
        Err(SessionError::InvalidState { state: "connected" })
    ));
}

// ------------------------------------------------------------ keepalive

#[test]
fn mqtt_3_1_2_10_pingreq_only_after_a_keepalive_without_sending() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    // Sending every 6 s keeps the link busy: no PINGREQ in 60 s.
    for _ in 0..10 {
        p.run_for(Duration::from_secs(6));
        p.publish("t", b"x", QoS::AtMostOnce);
    }
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pingreq), 0);
    // Idle: the first PINGREQ goes exactly one keepalive after the last send.
    let last_send = p.now;
    p.run_for(Duration::from_secs(25));
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pingreq), 2);
    assert_eq!(
        p.b.first_time(PacketType::Pingreq),
        Some(last_send + Duration::from_secs(10))
    );
    assert!(p.s.is_connected());
}

#[test]
fn mqtt_3_1_2_10_missing_pingresp_closes_within_1_5_keepalive() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.b.mute_pingresp = true;
    p.run_for(Duration::from_secs(30));
    let closes: Vec<_> = p
        .events
        .iter()
        .filter(|e| matches!(e, Event::Disconnected { .. }))
        .collect();
    assert_eq!(
        closes,
        vec![&Event::Disconnected {
            reason: CloseReason::KeepaliveTimeout
        }]
    );
    assert!(!p.link_up);
    // PINGREQ at 10 s, no PINGRESP, closed at 15 s = 1.5 x keepalive.
    assert_eq!(p.b.disconnected_at, Some(Instant::from_millis(15_000)));
}

#[test]
fn mqtt_5_3_2_2_21_server_keep_alive_replaces_ours() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.server_keep_alive = Some(4);
    p.connect();
    assert_eq!(p.s.keep_alive(), Duration::from_secs(4));
    p.run_for(Duration::from_secs(5));
    assert_eq!(
        p.b.first_time(PacketType::Pingreq),
        Some(Instant::from_millis(4_000))
    );
}

#[test]
fn keepalive_zero_never_pings() {
    let cfg = SessionConfig {
        keep_alive_secs: 0,
        ..config(ProtocolChoice::V5)
    };
    let mut p = Pair::new(cfg, None);
    p.connect();
    assert_eq!(p.s.poll_timeout(), None);
    p.run_for(Duration::from_secs(1000));
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pingreq), 0);
}

// -------------------------------------------------------- outbound flows

#[test]
fn mqtt_4_3_outbound_qos0_1_2_complete() {
    for v in [ProtocolChoice::V311, ProtocolChoice::V5] {
        let mut p = Pair::new(config(v), None);
        p.connect();
        let t0 = p.publish("a/0", b"zero", QoS::AtMostOnce);
        let t1 = p.publish("a/1", b"one", QoS::AtLeastOnce);
        let t2 = p.publish("a/2", b"two", QoS::ExactlyOnce);
        for t in [t0, t1, t2] {
            assert_eq!(p.completions(t), vec![Ok(())]);
        }
        assert_eq!(p.b.delivered_topics(), vec!["a/0", "a/1", "a/2"]);
        assert_eq!(p.s.outbox_usage().0, 0);
        assert_eq!(p.s.inflight(), 0);
    }
}

#[test]
fn messages_queued_while_disconnected_go_out_after_connack() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    let t =
        p.s.publish(&OutgoingMessage::new("q", b"early", QoS::AtLeastOnce))
            .unwrap();
    p.connect();
    assert_eq!(p.completions(t), vec![Ok(())]);
    assert_eq!(p.b.delivered_topics(), vec!["q"]);
}

#[test]
fn mqtt_4_9_window_bounded_by_inflight_and_receive_maximum() {
    // Our INFLIGHT is 4; the broker's Receive Maximum is 2.
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.receive_maximum = Some(2);
    p.b.hold_acks = true;
    p.connect();
    for i in 0..6u8 {
        p.s.publish(&OutgoingMessage::new("w", &[i], QoS::AtLeastOnce))
            .unwrap();
    }
    p.pump();
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Publish), 2);
    assert_eq!(p.s.inflight(), 2);
    p.b.release_acks();
    p.pump();
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Publish), 4);
    p.b.hold_acks = false;
    p.b.release_acks();
    p.pump();
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Publish), 6);
    assert_eq!(p.b.max_unacked, 2);
    // Without a broker limit our own INFLIGHT (4) bounds it.
    let mut p = Pair::new(config(ProtocolChoice::V311), None);
    p.b.hold_acks = true;
    p.connect();
    for i in 0..6u8 {
        p.s.publish(&OutgoingMessage::new("w", &[i], QoS::ExactlyOnce))
            .unwrap();
    }
    p.pump();
    assert_eq!(p.s.inflight(), 4);
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Publish), 4);
}

#[test]
fn mqtt_2_2_1_packet_ids_not_reused_while_in_use() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.hold_acks = true;
    p.connect();
    let mut seen = BTreeSet::new();
    for i in 0..4u8 {
        p.s.publish(&OutgoingMessage::new("id", &[i], QoS::AtLeastOnce))
            .unwrap();
    }
    p.pump();
    let ids: Vec<u16> = p.b.unacked.iter().map(|(id, _)| *id).collect();
    for id in &ids {
        assert!(seen.insert(*id), "id {id} used twice");
    }
    // Ack only the second; the next publishes must avoid the other three
    // even after the counter wraps.
    p.b.release_one(ids[1]);
    p.pump();
    for round in 0..70_000u32 {
        p.s.publish(&OutgoingMessage::new("id", b"r", QoS::AtLeastOnce))
            .unwrap();
        p.pump();
        let (id, _) = *p.b.unacked.last().unwrap();
        assert!(
            ![ids[0], ids[2], ids[3]].contains(&id),
            "id {id} reused while in use (round {round})"
        );
        p.b.release_one(id);
        p.pump();
    }
}

#[test]
fn mqtt_3_4_puback_error_code_fails_the_publish() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.ack_code = ReasonCode::NOT_AUTHORIZED;
    p.connect();
    let t = p.publish("secret", b"x", QoS::AtLeastOnce);
    assert_eq!(
        p.completions(t),
        vec![Err(PublishFailure::Rejected(ReasonCode::NOT_AUTHORIZED))]
    );
    let t = p.publish("secret", b"x", QoS::ExactlyOnce);
    assert_eq!(
        p.completions(t),
        vec![Err(PublishFailure::Rejected(ReasonCode::NOT_AUTHORIZED))]
    );
    assert_eq!(
        p.b.count(Dir::ToBroker, PacketType::Pubrel),
        0,
        "no PUBREL after a failed PUBREC"
    );
}

#[test]
fn mqtt_3_2_2_11_qos_above_maximum_qos_fails_that_message_only() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.maximum_qos = Some(QoS::AtLeastOnce);
    p.b.retain_available = Some(false);
    p.connect();
    let t = p.publish("q", b"2", QoS::ExactlyOnce);
    assert_eq!(p.completions(t), vec![Err(PublishFailure::QosNotSupported)]);
    let mut m = OutgoingMessage::new("r", b"1", QoS::AtLeastOnce);
    m.retain = true;
    let t = p.s.publish(&m).unwrap();
    p.pump();
    assert_eq!(
        p.completions(t),
        vec![Err(PublishFailure::RetainNotSupported)]
    );
    let t = p.publish("q", b"1", QoS::AtLeastOnce);
    assert_eq!(p.completions(t), vec![Ok(())]);
    assert!(p.s.is_connected());
}

// --------------------------------------------------------- inbound flows

#[test]
fn mqtt_4_3_2_inbound_qos1_acked_and_delivered() {
    let mut p = Pair::new(config(ProtocolChoice::V311), None);
    p.connect();
    p.b.send_publish("in/1", b"hello", QoS::AtLeastOnce, 7, false);
    p.pump();
    assert_eq!(
        p.got,
        vec![Got {
            topic: "in/1".into(),
            payload: b"hello".to_vec(),
            qos: QoS::AtLeastOnce
        }]
    );
    assert_eq!(p.b.acked_by_client, vec![(PacketType::Puback, 7)]);
}

#[test]
fn mqtt_4_3_3_inbound_qos2_delivered_once_despite_redelivery() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.b.send_publish("in/2", b"once", QoS::ExactlyOnce, 9, false);
    // The broker did not see PUBREC (say) and sends it again with DUP.
    p.b.send_publish("in/2", b"once", QoS::ExactlyOnce, 9, true);
    p.pump();
    assert_eq!(p.got.len(), 1);
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pubrec), 2);
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pubcomp), 1);
    // After PUBCOMP the id is free: a new message with id 9 is delivered.
    p.b.send_publish("in/2", b"again", QoS::ExactlyOnce, 9, false);
    p.pump();
    assert_eq!(p.got.len(), 2);
}

#[test]
fn mqtt_4_3_3_2_held_id_reused_for_a_different_message_is_delivered_not_lost() {
    // A broker that lost its state (mosquitto restored from an older
    // snapshot after kill -9 does this) sends a new message, DUP=0, under a
    // packet id we still hold awaiting PUBREL. It is not a redelivery
    // [MQTT-3.3.1-1: a redelivery carries DUP=1 and the same message], so it
    // must reach the application; an identical redelivery still must not
    // [MQTT-4.3.3-2].
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    // Our PUBREC for "first" is lost, so the broker never sends PUBREL and
    // id 11 stays held on our side.
    p.b.drop_next(Dir::ToBroker, PacketType::Pubrec);
    p.b.send_publish("in/q2", b"first", QoS::ExactlyOnce, 11, false);
    p.pump();
    assert_eq!(p.got.len(), 1);
    // The broker reuses id 11 for a different message.
    p.b.drop_next(Dir::ToBroker, PacketType::Pubrec);
    p.b.send_publish("in/q2", b"second", QoS::ExactlyOnce, 11, false);
    p.pump();
    assert_eq!(
        p.got.len(),
        2,
        "a different message under the held id is delivered"
    );
    assert_eq!(p.got[1].payload, b"second".to_vec());
    // Its own redelivery (same message, DUP=1) is still suppressed.
    p.b.send_publish("in/q2", b"second", QoS::ExactlyOnce, 11, true);
    p.pump();
    assert_eq!(
        p.got.len(),
        2,
        "an identical redelivery is not handed out again"
    );
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pubcomp), 1);
}

#[test]
fn mqtt_4_3_3_inbound_qos2_pubrec_lost_then_reconnect_delivers_once() {
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    p.connect();
    p.b.drop_next(Dir::ToBroker, PacketType::Pubrec);
    p.b.send_publish("in/3", b"x", QoS::ExactlyOnce, 3, false);
    p.pump();
    p.cut();
    p.connect();
    p.pump();
    assert_eq!(p.connected_events(), vec![false, true]);
    assert_eq!(p.got.len(), 1, "redelivered PUBLISH not handed out again");
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pubcomp), 1);
}

#[test]
fn mqtt_4_3_3_pubrel_for_unknown_id_answered_with_pubcomp() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.b.send_raw(Packet::Pubrel(PubAck::new(42)));
    p.pump();
    assert_eq!(p.b.acked_by_client, vec![(PacketType::Pubcomp, 42)]);
    assert!(p.s.is_connected());
}

// ---------------------------------------- QoS 2 loss at each step, resume

fn qos2_loss_case(drop: (Dir, PacketType)) {
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    p.connect();
    p.b.drop_next(drop.0, drop.1);
    let t = p.publish("exactly/once", b"payload", QoS::ExactlyOnce);
    assert!(
        p.completions(t).is_empty(),
        "{drop:?}: not complete before the loss is repaired"
    );
    p.cut();
    p.connect();
    assert_eq!(p.connected_events(), vec![false, true]);
    assert_eq!(p.completions(t), vec![Ok(())], "{drop:?}");
    assert_eq!(
        p.b.delivered_topics(),
        vec!["exactly/once"],
        "{drop:?}: delivered once"
    );
    assert_eq!(p.s.outbox_len(), 0);
    assert!(p.b.session_qos2_empty(), "{drop:?}: broker state cleared");
}

#[test]
fn mqtt_4_3_3_qos2_publish_lost_resent_with_dup_delivered_once() {
    qos2_loss_case((Dir::ToBroker, PacketType::Publish));
}

#[test]
fn mqtt_4_3_3_qos2_pubrec_lost_resent_with_dup_delivered_once() {
    qos2_loss_case((Dir::ToClient, PacketType::Pubrec));
}

#[test]
fn mqtt_4_3_3_qos2_pubrel_lost_pubrel_resent_delivered_once() {
    qos2_loss_case((Dir::ToBroker, PacketType::Pubrel));
}

#[test]
fn mqtt_4_3_3_qos2_pubcomp_lost_pubrel_resent_delivered_once() {
    qos2_loss_case((Dir::ToClient, PacketType::Pubcomp));
}

#[test]
fn mqtt_4_4_0_1_unacked_publish_resent_with_dup_on_session_resume() {
    for v in [ProtocolChoice::V311, ProtocolChoice::V5] {
        let mut p = Pair::new(persistent(v), None);
        p.connect();
        p.b.drop_next(Dir::ToClient, PacketType::Puback);
        let t = p.publish("dup/1", b"m", QoS::AtLeastOnce);
        let first = p.b.publishes.last().cloned().unwrap();
        assert!(!first.dup);
        p.cut();
        p.connect();
        let again = p.b.publishes.last().cloned().unwrap();
        assert!(again.dup, "resent with DUP=1");
        assert_eq!(again.packet_id, first.packet_id, "same packet identifier");
        assert_eq!(p.completions(t), vec![Ok(())]);
    }
}

#[test]
fn mqtt_4_4_0_1_pubrel_resent_on_session_resume() {
    let mut p = Pair::new(persistent(ProtocolChoice::V311), None);
    p.connect();
    p.b.drop_next(Dir::ToBroker, PacketType::Pubrel);
    let t = p.publish("rel", b"m", QoS::ExactlyOnce);
    p.cut();
    let publishes_before = p.b.count(Dir::ToBroker, PacketType::Publish);
    p.connect();
    assert_eq!(
        p.b.count(Dir::ToBroker, PacketType::Publish),
        publishes_before,
        "no PUBLISH resent"
    );
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pubrel), 2);
    assert_eq!(p.completions(t), vec![Ok(())]);
}

#[test]
fn session_lost_every_unacked_message_sent_again_as_new() {
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    p.connect();
    p.b.hold_acks = true;
    let tokens: Vec<_> = (0..3u8)
        .map(|i| {
            p.s.publish(&OutgoingMessage::new("keep", &[i], QoS::AtLeastOnce))
                .unwrap()
        })
        .collect();
    p.pump();
    p.cut();
    p.b.forget_session();
    p.b.hold_acks = false;
    p.b.unacked.clear();
    p.connect();
    assert_eq!(p.connected_events(), vec![false, false]);
    for t in tokens {
        assert_eq!(p.completions(t), vec![Ok(())]);
    }
    let resent: Vec<_> = p.b.publishes.iter().skip(3).collect();
    assert_eq!(resent.len(), 3);
    assert!(
        resent.iter().all(|p| !p.dup),
        "sent as new publishes, DUP=0"
    );
}

// ---------------------------------------------------------- subscriptions

fn sub(filter: &'static str, qos: QoS) -> Subscription<'static> {
    Subscription {
        filter,
        options: SubscriptionOptions::qos(qos),
    }
}

#[test]
fn mqtt_3_9_3_per_filter_subscribe_results() {
    for v in [ProtocolChoice::V311, ProtocolChoice::V5] {
        let mut p = Pair::new(config(v), None);
        p.connect();
        p.take_events();
        let t =
            p.s.subscribe(&[
                sub("a/+", QoS::ExactlyOnce),
                sub("deny/#", QoS::AtLeastOnce),
                sub("c", QoS::AtMostOnce),
            ])
            .unwrap();
        p.pump();
        let Event::Subscribed { token, results } = p.events[0] else {
            panic!("{:?}", p.events)
        };
        assert_eq!(token, t);
        let failure = if v == ProtocolChoice::V5 {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode(0x80)
        };
        assert_eq!(results.codes(), &[ReasonCode(2), failure, ReasonCode(0)]);
        let filters: Vec<_> =
            p.s.subscriptions()
                .map(|(f, _, active)| (f.to_string(), active))
                .collect();
        assert_eq!(
            filters,
            vec![("a/+".to_string(), true), ("c".to_string(), true)]
        );
        let t = p.s.unsubscribe(&["a/+"]).unwrap();
        p.pump();
        assert!(
            matches!(p.events[1], Event::Unsubscribed { token, results } if token == t && results.codes() == [ReasonCode::SUCCESS])
        );
        assert_eq!(p.s.subscriptions().count(), 1);
    }
}

#[test]
fn subscribe_limits_are_typed_errors() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    assert!(matches!(
        p.s.subscribe(&[]),
        Err(SessionError::FilterCount { given: 0, max: 8 })
    ));
    let nine = [sub("x", QoS::AtMostOnce); 9];
    assert!(matches!(
        p.s.subscribe(&nine),
        Err(SessionError::FilterCount { given: 9, .. })
    ));
    assert!(matches!(
        p.s.subscribe(&[sub("a/#/b", QoS::AtMostOnce)]),
        Err(SessionError::Topic(_))
    ));
    let long: &'static str = Box::leak("l".repeat(200).into_boxed_str());
    assert!(matches!(
        p.s.subscribe(&[sub(long, QoS::AtMostOnce)]),
        Err(SessionError::FilterTooLong { len: 200, max: 128 })
    ));
    let names: Vec<&'static str> = (0..9)
        .map(|i| &*Box::leak(alloc::format!("f/{i}").into_boxed_str()))
        .collect();
    for n in &names[..8] {
        p.s.subscribe(&[sub(n, QoS::AtMostOnce)]).unwrap();
    }
    assert!(matches!(
        p.s.subscribe(&[sub(names[8], QoS::AtMostOnce)]),
        Err(SessionError::SubscriptionTableFull { capacity: 8 })
    ));
}

#[test]
fn subscriptions_restored_when_the_session_was_lost() {
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    p.connect();
    p.s.subscribe(&[sub("r/1", QoS::AtLeastOnce), sub("r/2", QoS::AtMostOnce)])
        .unwrap();
    p.pump();
    // Session present: nothing re-sent.
    p.cut();
    p.connect();
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Subscribe), 1);
    // Session lost: re-subscribed, and reported.
    p.cut();
    p.b.forget_session();
    p.take_events();
    p.connect();
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Subscribe), 2);
    assert_eq!(
        p.b.subscriptions(),
        vec![
            ("r/1".to_string(), QoS::AtLeastOnce),
            ("r/2".to_string(), QoS::AtMostOnce)
        ]
    );
    assert_eq!(
        p.events,
        vec![
            Event::Connected {
                session_present: false,
                version: ProtocolVersion::V5
            },
            Event::SubscriptionsRestored { refused: 0 }
        ]
    );
}

#[test]
fn subscribe_sent_before_connack_lost_is_sent_again() {
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    p.connect();
    p.b.drop_next(Dir::ToClient, PacketType::Suback);
    let t = p.s.subscribe(&[sub("s", QoS::AtLeastOnce)]).unwrap();
    p.pump();
    p.cut();
    p.connect();
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, Event::Subscribed { token, .. } if *token == t))
    );
}

// ------------------------------------------------------------ MQTT 5.0

#[test]
fn mqtt_3_1_2_24_message_over_broker_maximum_packet_size_fails_alone() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.maximum_packet_size = Some(64);
    // Queued before the broker's limit is known: it fails alone at send.
    let big = [7u8; 100];
    let t_big = p.publish("big", &big, QoS::AtLeastOnce);
    let t_small = p.publish("small", b"ok", QoS::AtLeastOnce);
    p.connect();
    assert_eq!(
        p.completions(t_big),
        vec![Err(PublishFailure::PacketTooLarge { size: 110, max: 64 })]
    );
    assert_eq!(p.completions(t_small), vec![Ok(())]);
    assert!(p.s.is_connected());
    assert_eq!(p.b.delivered_topics(), vec!["small"]);
}

#[test]
fn mqtt_3_1_2_24_publish_over_the_known_broker_maximum_is_refused_at_once() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.maximum_packet_size = Some(64);
    p.connect();
    let err =
        p.s.publish(&OutgoingMessage::new("big", &[7u8; 100], QoS::AtLeastOnce))
            .unwrap_err();
    assert_eq!(
        err,
        SessionError::PacketTooLarge {
            size: 110,
            max: 64,
            limit: crate::session::SizeLimit::BrokerMaximumPacketSize
        }
    );
    assert!(alloc::format!("{err}").contains("Maximum Packet Size"));
    assert_eq!(p.s.outbox_len(), 0);
}

#[test]
fn mqtt_3_1_2_25_inbound_packet_over_our_maximum_is_an_error_and_disconnect_0x95() {
    let cfg = SessionConfig {
        max_incoming_packet_size: 32,
        ..config(ProtocolChoice::V5)
    };
    let mut p = Pair::new(cfg, None);
    p.connect();
    p.b.send_publish("big", &[0u8; 64], QoS::AtMostOnce, 0, false);
    p.pump();
    assert!(matches!(
        p.errors[..],
        [SessionError::Decode(
            crate::codec::DecodeError::PacketTooLarge { max: 32, .. }
        )]
    ));
    assert_eq!(p.b.client_disconnect, Some(ReasonCode::PACKET_TOO_LARGE));
    assert!(p.events.contains(&Event::Disconnected {
        reason: CloseReason::ProtocolError(ReasonCode::PACKET_TOO_LARGE)
    }));
    assert!(p.got.is_empty());
}

#[test]
fn mqtt_5_3_2_2_16_assigned_client_id_used_on_reconnect() {
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    p.s = Session::new(
        SessionConfig {
            client_id: "",
            ..persistent(ProtocolChoice::V5)
        },
        outbox(256),
    );
    p.b.assign_id = Some("auto-42");
    p.connect();
    assert_eq!(p.s.assigned_client_id(), Some("auto-42"));
    p.cut();
    p.connect();
    assert_eq!(p.b.last_connect.clone().unwrap().client_id, "auto-42");
    assert_eq!(p.connected_events(), vec![false, true]);
}

#[test]
fn mqtt_5_3_14_server_disconnect_reported_with_reason_and_string() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    static FIELDS: PropertyFields<'static> = PropertyFields {
        reason_string: Some("maintenance"),
        ..PropertyFields::NONE
    };
    p.b.send_raw(Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
        properties: Properties::from_fields(&FIELDS),
    }));
    p.pump();
    assert_eq!(
        p.events.last(),
        Some(&Event::Disconnected {
            reason: CloseReason::ServerDisconnect(ReasonCode::SERVER_SHUTTING_DOWN)
        })
    );
    assert_eq!(p.reason_strings, vec!["maintenance".to_string()]);
    assert_eq!(p.b.client_disconnect, None, "no DISCONNECT sent back");
}

#[test]
fn mqtt_5_3_3_publish_properties_carried_through() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    let users = [crate::codec::UserProperty {
        name: "k",
        value: "v",
    }];
    let fields = PropertyFields {
        message_expiry_interval: Some(30),
        response_topic: Some("reply/here"),
        correlation_data: Some(b"abc"),
        user_properties: &users,
        ..PropertyFields::NONE
    };
    let msg = OutgoingMessage {
        properties: Properties::from_fields(&fields),
        ..OutgoingMessage::new("req", b"?", QoS::AtLeastOnce)
    };
    p.s.publish(&msg).unwrap();
    p.pump();
    let got = p.b.publishes.last().unwrap();
    assert_eq!(got.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(got.correlation_data.as_deref(), Some(&b"abc"[..]));
    assert_eq!(got.message_expiry, Some(30));
    assert_eq!(
        got.user_properties,
        vec![("k".to_string(), "v".to_string())]
    );
    // The same message over 3.1.1 goes without properties.
    let mut p = Pair::new(config(ProtocolChoice::V311), None);
    p.connect();
    p.s.publish(&msg).unwrap();
    p.pump();
    assert_eq!(p.b.publishes.last().unwrap().response_topic, None);
    assert_eq!(p.b.delivered_topics(), vec!["req"]);
}

#[test]
fn mqtt_3_3_2_3_4_inbound_topic_alias_above_our_maximum_is_a_protocol_error() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    static FIELDS: PropertyFields<'static> = PropertyFields {
        topic_alias: Some(3),
        ..PropertyFields::NONE
    };
    p.b.send_raw(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        packet_id: None,
        properties: Properties::from_fields(&FIELDS),
        payload: b"",
    }));
    p.pump();
    assert_eq!(
        p.errors,
        vec![SessionError::Protocol(ProtocolViolation::TopicAliasInvalid)]
    );
    assert_eq!(p.b.client_disconnect, Some(ReasonCode::TOPIC_ALIAS_INVALID));
}

// ------------------------------------------- fault injection (hand-forged)

#[test]
fn ack_for_unknown_packet_id_is_an_event_not_a_failure() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.take_events();
    p.b.send_raw(Packet::Puback(PubAck::new(999)));
    p.b.send_raw(Packet::Pubcomp(PubAck::new(998)));
    p.b.send_raw(Packet::Suback(Suback {
        packet_id: 997,
        properties: Properties::NONE,
        reason_codes: ReasonCodes::from_slice(&[ReasonCode::SUCCESS]),
    }));
    p.pump();
    assert_eq!(
        p.events,
        vec![
            Event::UnexpectedAck {
                packet_type: PacketType::Puback,
                packet_id: 999
            },
            Event::UnexpectedAck {
                packet_type: PacketType::Pubcomp,
                packet_id: 998
            },
            Event::UnexpectedAck {
                packet_type: PacketType::Suback,
                packet_id: 997
            },
        ]
    );
    assert!(p.s.is_connected());
}

#[test]
fn pubrec_for_unknown_id_answered_with_pubrel_0x92() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.b.send_raw(Packet::Pubrec(PubAck::new(5)));
    p.pump();
    assert_eq!(
        p.b.pubrel_codes,
        vec![(5, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)]
    );
}

#[test]
fn mqtt_3_3_2_2_publish_to_wildcard_topic_is_an_error_value() {
    let mut p = Pair::new(config(ProtocolChoice::V311), None);
    p.connect();
    // PUBLISH QoS 0 to "a/#", forged by hand (the codec refuses to encode it).
    p.b.send_bytes(vec![0x30, 0x06, 0x00, 0x03, b'a', b'/', b'#', b'!']);
    p.pump();
    assert!(matches!(p.errors[..], [SessionError::Decode(_)]));
    assert!(!p.link_up);
    assert_eq!(
        p.b.client_disconnect, None,
        "3.1.1 closes without DISCONNECT"
    );
}

#[test]
fn unexpected_packet_types_are_protocol_errors() {
    for forged in [
        Packet::Pingreq,
        Packet::Connack(Connack {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::NONE,
        }),
    ] {
        let mut p = Pair::new(config(ProtocolChoice::V5), None);
        p.connect();
        let packet_type = forged.packet_type();
        p.b.send_raw(forged);
        p.pump();
        assert_eq!(
            p.errors,
            vec![SessionError::Protocol(
                ProtocolViolation::UnexpectedPacket { packet_type }
            )]
        );
        assert_eq!(p.b.client_disconnect, Some(ReasonCode::PROTOCOL_ERROR));
    }
}

#[test]
fn suback_with_wrong_number_of_codes_is_a_protocol_error() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.b.suback_extra_code = true;
    p.s.subscribe(&[sub("x", QoS::AtMostOnce)]).unwrap();
    p.pump();
    assert_eq!(
        p.errors,
        vec![SessionError::Protocol(
            ProtocolViolation::ReasonCodeCountMismatch {
                expected: 1,
                received: 2
            }
        )]
    );
}

#[test]
fn malformed_bytes_are_an_error_never_a_panic() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.b.send_bytes(vec![0x40, 0x02, 0x00, 0x00]); // PUBACK with packet id 0
    p.pump();
    assert!(matches!(p.errors[..], [SessionError::Decode(_)]));
}

#[test]
fn unacked_inbound_backpressure_instead_of_overflow() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    let mut s = p.s;
    // Feed 20 QoS 1 publishes without ever transmitting.
    let mut bytes = Vec::new();
    for id in 1..=20u16 {
        let mut buf = [0u8; 32];
        let n = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "b",
            packet_id: Some(id),
            properties: Properties::NONE,
            payload: b"",
        })
        .encode(&mut buf, ProtocolVersion::V5)
        .unwrap();
        bytes.extend_from_slice(&buf[..n]);
    }
    let mut off = 0;
    let mut delivered = 0;
    loop {
        match s.handle_incoming(&bytes[off..], p.now).unwrap() {
            Incoming::Packet { len, message, .. } => {
                off += len;
                delivered += usize::from(message.is_some());
            }
            Incoming::Backpressure => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delivered, CONTROL_QUEUE_LEN - 1);
    let mut tx = [0u8; 64];
    while s.poll_transmit(p.now, &mut tx).unwrap().is_some() {}
    assert!(matches!(
        s.handle_incoming(&bytes[off..], p.now),
        Ok(Incoming::Packet { .. })
    ));
}

#[test]
fn mqtt_3_1_2_4_clean_start_at_boot_then_resume_on_reconnect() {
    let cfg = SessionConfig {
        clean_start: true,
        resume_on_reconnect: true,
        session_expiry_secs: Some(600),
        ..config(ProtocolChoice::V5)
    };
    let mut p = Pair::new(cfg, None);
    p.connect();
    assert!(p.b.last_connect.clone().unwrap().clean_start);
    p.b.drop_next(Dir::ToClient, PacketType::Puback);
    let t = p.publish("r", b"1", QoS::AtLeastOnce);
    p.cut();
    p.connect();
    assert!(!p.b.last_connect.clone().unwrap().clean_start);
    assert_eq!(p.connected_events(), vec![false, true]);
    assert!(p.b.publishes.last().unwrap().dup);
    assert_eq!(p.completions(t), vec![Ok(())]);
}

// ------------------------------------- helpers of the tests beside it

/// Queues `payload` as a held QoS 1 publish and returns its token and the
/// bytes a store would persist.
fn publish_held(p: &mut Pair, topic: &str, payload: &[u8]) -> (PublishToken, Vec<u8>) {
    let t =
        p.s.publish(&OutgoingMessage::new(topic, payload, QoS::AtLeastOnce))
            .unwrap();
    assert!(p.s.hold_for_store(t));
    let record = p.s.held_record(t).unwrap().to_vec();
    (t, record)
}

/// The 5.0 properties of a message expiring in `secs`, and its topic.
fn expiring(topic: &str, secs: u32) -> (PropertyFields<'static>, String) {
    (
        PropertyFields {
            message_expiry_interval: Some(secs),
            ..PropertyFields::NONE
        },
        topic.to_string(),
    )
}
