//! Session model tests for the field defects of issue 11: the protocol
//! fall-back, message expiry of sent messages, QoS 2 across a session loss,
//! refused re-subscriptions and 3.1.1 inbound QoS 2 beyond `INFLIGHT`. Same
//! broker model and virtual time as the tests beside it.

use super::*;

// ------------------------------------------------ 5.0 → 3.1.1 fall-back

#[test]
fn mqtt_5_v5_with_fallback_keeps_5_0_when_the_link_drops_before_connack() {
    // A link lost between CONNECT and CONNACK says nothing about the
    // broker's version: the next connect is 5.0 again.
    let mut p = Pair::new(config(ProtocolChoice::V5WithFallback), None);
    p.b.close_on_connect = true;
    p.connect();
    assert_eq!(
        p.take_events(),
        vec![Event::Disconnected {
            reason: CloseReason::TransportClosed
        }]
    );
    assert_eq!(p.s.version(), ProtocolVersion::V5);
    p.b.close_on_connect = false;
    p.connect();
    assert_eq!(
        p.take_events(),
        vec![Event::Connected {
            session_present: false,
            version: ProtocolVersion::V5
        }]
    );
    assert_eq!(
        p.b.last_connect.as_ref().map(|c| c.version),
        Some(ProtocolVersion::V5)
    );
    // After 5.0 was accepted, another early drop keeps 5.0 too.
    p.cut();
    p.b.close_on_connect = true;
    p.connect();
    assert_eq!(p.s.version(), ProtocolVersion::V5);
}

#[test]
fn mqtt_3_2_2_2_v5_refusal_0x84_in_5_0_form_falls_back_to_v311() {
    // A broker that reads 5.0 CONNACKs but refuses the version with 0x84.
    let mut p = Pair::new(config(ProtocolChoice::V5WithFallback), None);
    p.b.refuse_with = Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    p.connect();
    assert_eq!(
        p.take_events()[0],
        Event::ConnectRefused {
            reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            falling_back_to_v311: true
        }
    );
    assert_eq!(p.s.version(), ProtocolVersion::V311);
    // Another refusal (not the version) does not switch.
    let mut p = Pair::new(config(ProtocolChoice::V5WithFallback), None);
    p.b.refuse_with = Some(ReasonCode::NOT_AUTHORIZED);
    p.connect();
    assert_eq!(p.s.version(), ProtocolVersion::V5);
}

// ------------------------------------------- message expiry once sent

fn expiring_message<'a>(
    fields: &'a PropertyFields<'a>,
    topic: &'a str,
    qos: QoS,
) -> OutgoingMessage<'a> {
    OutgoingMessage {
        properties: Properties::from_fields(fields),
        ..OutgoingMessage::new(topic, b"x", qos)
    }
}

#[test]
fn mqtt_4_3_3_3_sent_message_is_not_expired_while_the_broker_may_hold_its_id() {
    // 5.0 §3.3.2.3.3 lets a message lapse while it waits; once sent, the
    // broker may hold its packet identifier (QoS 2: until PUBREL), so the
    // message is finished by the broker's acks, never by expiry, and its
    // identifier is not freed early ([MQTT-4.3.3-3], [MQTT-2.2.1-3]).
    for qos in [QoS::ExactlyOnce, QoS::AtLeastOnce] {
        let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
        p.connect();
        let ack = if qos == QoS::ExactlyOnce {
            PacketType::Pubrec
        } else {
            PacketType::Puback
        };
        p.b.drop_next(Dir::ToClient, ack);
        let (fields, topic) = expiring("e/sent", 5);
        let t =
            p.s.publish(&expiring_message(&fields, &topic, qos))
                .unwrap();
        p.pump();
        assert_eq!(p.b.delivered_topics(), vec!["e/sent"], "{qos:?}");
        p.cut();
        // Down for longer than the interval.
        p.now = p.now + Duration::from_secs(20);
        p.s.handle_timeout(p.now);
        assert!(
            p.s.poll_timeout().is_none_or(|t| t > p.now),
            "{qos:?}: no deadline in the past for a sent message"
        );
        p.connect();
        assert_eq!(p.completions(t), vec![Ok(())], "{qos:?}");
        if qos == QoS::ExactlyOnce {
            assert_eq!(p.b.delivered_topics(), vec!["e/sent"], "exactly once");
        } else {
            // QoS 1: the DUP resend may be delivered again (at least once).
            assert_eq!(p.b.publishes.last().map(|m| m.dup), Some(true));
        }
        assert!(p.b.session_qos2_empty(), "{qos:?}: broker released the id");
        assert_eq!(p.s.outbox_len(), 0);
    }
}

// ------------------------------------------ refused re-subscription

#[test]
fn mqtt_3_8_4_refused_resubscribe_keeps_the_subscription_granted_before() {
    for version in [ProtocolChoice::V5, ProtocolChoice::V311] {
        let mut p = Pair::new(persistent(version), None);
        p.connect();
        p.s.subscribe(&[sub("a/b", QoS::AtLeastOnce)]).unwrap();
        p.pump();
        p.b.refuse_subscribe = true;
        let t = p.s.subscribe(&[sub("a/b", QoS::ExactlyOnce)]).unwrap();
        p.pump();
        let refused = p.events.iter().any(|e| {
            matches!(e, Event::Subscribed { token, results }
                if *token == t && results.codes().iter().all(|c| c.is_error()))
        });
        assert!(refused, "{version:?}: the refusal is reported");
        // The broker kept the old subscription; so does the session.
        assert_eq!(
            p.s.subscriptions()
                .map(|(f, o, a)| (f.to_string(), o.qos, a))
                .collect::<Vec<_>>(),
            vec![("a/b".to_string(), QoS::AtLeastOnce, true)],
            "{version:?}"
        );
        // And restores it after a session loss.
        p.b.refuse_subscribe = false;
        p.cut();
        p.b.forget_session();
        p.take_events();
        p.connect();
        assert_eq!(
            p.b.subscriptions(),
            vec![("a/b".to_string(), QoS::AtLeastOnce)],
            "{version:?}"
        );
        assert!(
            p.events
                .contains(&Event::SubscriptionsRestored { refused: 0 }),
            "{version:?}"
        );
    }
}

#[test]
fn refused_restore_after_a_session_loss_forgets_the_filter() {
    // After a session loss the broker has no subscription left: a refused
    // restore is not kept.
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    p.connect();
    p.s.subscribe(&[sub("a/b", QoS::AtLeastOnce)]).unwrap();
    p.pump();
    p.cut();
    p.b.forget_session();
    p.b.refuse_subscribe = true;
    p.take_events();
    p.connect();
    assert!(
        p.events
            .contains(&Event::SubscriptionsRestored { refused: 1 })
    );
    assert_eq!(p.s.subscriptions().count(), 0);
}

// ------------------------------------------- QoS 2 across a session loss

/// Publishes one QoS 2 message per step the session may be at when the
/// broker loses the session, and loses it there: `AwaitAck` (PUBLISH sent,
/// its PUBREC lost), `AwaitPubcomp` (PUBREL sent, its PUBCOMP lost) and
/// `PubrelQueued` after a cut (PUBREC seen, PUBREL not sent yet). Returns
/// the three tokens; the link is down and the broker's session is gone.
fn qos2_sent_then_session_lost(p: &mut Pair) -> Vec<PublishToken> {
    p.connect();
    p.b.drop_next(Dir::ToClient, PacketType::Pubrec);
    let before_pubrec = p.publish("lost/a", b"a", QoS::ExactlyOnce);
    p.b.drop_next(Dir::ToClient, PacketType::Pubcomp);
    let after_pubrel = p.publish("lost/b", b"b", QoS::ExactlyOnce);
    p.cut();
    p.b.forget_session();
    assert_eq!(p.s.inflight(), 2);
    vec![before_pubrec, after_pubrel]
}

#[test]
fn mqtt_4_3_3_session_lost_past_pubrec_republished_and_reported() {
    // SessionLostPolicy::Republish (default): at least once, and the
    // application is told which publish lost its exactly-once guarantee,
    // before it goes out again.
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    let tokens = qos2_sent_then_session_lost(&mut p);
    let untouched =
        p.s.publish(&OutgoingMessage::new("lost/new", b"n", QoS::ExactlyOnce))
            .unwrap();
    p.take_events();
    p.connect();
    let republished: Vec<PublishToken> = p
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Republished { token } => Some(*token),
            _ => None,
        })
        .collect();
    assert_eq!(
        republished, tokens,
        "one event per affected publish, in order"
    );
    for t in &tokens {
        assert_eq!(p.completions(*t), vec![Ok(())]);
    }
    assert_eq!(p.completions(untouched), vec![Ok(())]);
    // The broker got both again as new messages (DUP=0).
    let again: Vec<_> =
        p.b.publishes
            .iter()
            .skip(2)
            .map(|m| (m.topic.as_str(), m.dup))
            .collect();
    assert_eq!(
        again,
        vec![("lost/a", false), ("lost/b", false), ("lost/new", false)]
    );
    // The reports came before the republished messages went out.
    let first_republished = p
        .events
        .iter()
        .position(|e| matches!(e, Event::Republished { .. }))
        .unwrap();
    let first_completion = p
        .events
        .iter()
        .position(|e| matches!(e, Event::PublishComplete { .. }))
        .unwrap();
    assert!(first_republished < first_completion);
}

#[test]
fn mqtt_4_3_3_session_lost_past_pubrec_abandoned_with_session_lost() {
    // SessionLostPolicy::Abandon: at most once; each affected publish
    // completes with SessionLost and is not sent again.
    let cfg = SessionConfig {
        session_lost_policy: SessionLostPolicy::Abandon,
        ..persistent(ProtocolChoice::V5)
    };
    let mut p = Pair::new(cfg, None);
    let tokens = qos2_sent_then_session_lost(&mut p);
    let qos1 =
        p.s.publish(&OutgoingMessage::new("lost/q1", b"1", QoS::AtLeastOnce))
            .unwrap();
    p.take_events();
    p.connect();
    for t in &tokens {
        assert_eq!(p.completions(*t), vec![Err(PublishFailure::SessionLost)]);
    }
    assert!(
        !p.events
            .iter()
            .any(|e| matches!(e, Event::Republished { .. }))
    );
    assert_eq!(p.completions(qos1), vec![Ok(())]);
    let again: Vec<_> =
        p.b.publishes
            .iter()
            .skip(2)
            .map(|m| m.topic.as_str())
            .collect();
    assert_eq!(
        again,
        vec!["lost/q1"],
        "the abandoned ones are not sent again"
    );
    assert_eq!(p.s.outbox_len(), 0);
    assert!(p.s.packet_ids_in_use().next().is_none());
}

#[test]
fn session_lost_reports_wait_for_room_in_the_event_queue() {
    session_lost_reports_wait_at::<EVENT_QUEUE_LEN>();
    session_lost_reports_wait_at::<SMALL_EVENTS>();
}

fn session_lost_reports_wait_at<const EVENTS: usize>() {
    // More affected publishes than the event queue has room for: each is
    // still reported once, and nothing is republished before its report.
    let mut p = Pair::<EVENTS>::build(persistent(ProtocolChoice::V5), None, 4096);
    p.connect();
    p.b.hold_acks = true;
    let tokens: Vec<_> = (0..4u8)
        .map(|i| {
            p.s.publish(&OutgoingMessage::new("many", &[i], QoS::ExactlyOnce))
                .unwrap()
        })
        .collect();
    p.pump();
    p.cut();
    p.b.forget_session();
    p.b.hold_acks = false;
    p.b.unacked.clear();
    p.events.clear();
    // Reconnect by hand, with only EVENT_HEADROOM slots free at CONNACK.
    let mut tx = [0u8; 512];
    p.s.handle_connected(p.now).unwrap();
    p.b.accept();
    let n = p.s.poll_transmit(p.now, &mut tx).unwrap().unwrap();
    p.b.receive(&tx[..n]);
    for _ in 0..EVENTS - EVENT_HEADROOM {
        p.s.push_event(Event::Reauthenticated);
    }
    let connack = p.b.out.pop_front().unwrap();
    assert!(matches!(
        p.s.handle_incoming(&connack, p.now),
        Ok(Incoming::Packet { .. })
    ));
    // Room for two reports only: no PUBLISH may go out yet.
    assert_eq!(p.s.poll_transmit(p.now, &mut tx).unwrap(), None);
    let mut republished = Vec::new();
    while let Some(e) = p.s.poll_event() {
        if let Event::Republished { token } = e {
            republished.push(token);
        }
    }
    assert_eq!(republished.len(), 2);
    // Drained: the other two are reported, then the four go out again.
    p.link_up = true;
    p.pump();
    republished.extend(p.events.iter().filter_map(|e| match e {
        Event::Republished { token } => Some(*token),
        _ => None,
    }));
    assert_eq!(republished, tokens);
    for t in tokens {
        assert_eq!(p.completions(t), vec![Ok(())]);
    }
}

// ------------------------------- 3.1.1 inbound QoS 2 beyond INFLIGHT

/// The broker sends `n` QoS 2 messages back to back (as mosquitto does with
/// its in-flight window of 20) before any PUBREL can reach the client.
fn qos2_burst(p: &mut Pair, n: u16, first_id: u16) {
    for i in 0..n {
        let payload = alloc::format!("m{}", first_id + i);
        p.b.send_publish(
            "burst",
            payload.as_bytes(),
            QoS::ExactlyOnce,
            first_id + i,
            false,
        );
    }
    p.pump();
}

#[test]
fn mqtt_4_3_3_v311_inbound_qos2_burst_beyond_inflight_delivered_once_on_one_link() {
    // 3.1.1 has no Receive Maximum: a broker with a stored backlog may send
    // all of it before the first PUBREL (mosquitto 2.0.11 does, whatever
    // its max_inflight_messages). INFLIGHT = 4 here; the identifiers beyond
    // are held as one run until their PUBREL.
    let mut p = Pair::new(persistent(ProtocolChoice::V311), None);
    p.connect();
    qos2_burst(&mut p, 200, 100);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert!(p.s.is_connected());
    assert_eq!(p.got.len(), 200);
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pubcomp), 200);
    assert_eq!(p.connected_events().len(), 1);
    // The ids are free again: the next burst is delivered too.
    qos2_burst(&mut p, 200, 300);
    assert_eq!(p.got.len(), 400);
    assert!(p.s.is_connected());
}

#[test]
fn mqtt_4_3_3_v311_redelivery_of_a_message_held_beyond_inflight_is_not_delivered_twice() {
    let mut p = Pair::new(persistent(ProtocolChoice::V311), None);
    p.connect();
    // Our PUBRECs for ids 1..=10 are lost: all ten stay held, six of them
    // beyond INFLIGHT.
    for _ in 0..10 {
        p.b.drop_next(Dir::ToBroker, PacketType::Pubrec);
    }
    qos2_burst(&mut p, 10, 1);
    assert_eq!(p.got.len(), 10);
    // The broker resends them all on the resumed session (DUP=1).
    p.cut();
    p.b.drops_clear();
    p.connect();
    assert_eq!(p.connected_events(), vec![false, true]);
    assert_eq!(p.got.len(), 10, "redeliveries are not handed out again");
    assert_eq!(p.b.count(Dir::ToBroker, PacketType::Pubcomp), 10);
}

#[test]
fn mqtt_3_3_1_1_v311_new_message_under_an_id_held_beyond_inflight_is_delivered() {
    // Beyond INFLIGHT no fingerprint is kept: DUP tells a redelivery (DUP=1,
    // [MQTT-3.3.1-1]) from a new message that reuses a held identifier
    // (DUP=0: a broker that lost its state), which must not be lost.
    let mut p = Pair::new(persistent(ProtocolChoice::V311), None);
    p.connect();
    for _ in 0..6 {
        p.b.drop_next(Dir::ToBroker, PacketType::Pubrec);
    }
    qos2_burst(&mut p, 6, 1);
    assert_eq!(p.got.len(), 6);
    p.b.drop_next(Dir::ToBroker, PacketType::Pubrec);
    p.b.send_publish("burst", b"other", QoS::ExactlyOnce, 6, false);
    p.pump();
    assert_eq!(p.got.len(), 7, "DUP=0 under held id 6: delivered");
    p.b.send_publish("burst", b"other", QoS::ExactlyOnce, 6, true);
    p.pump();
    assert_eq!(p.got.len(), 7, "DUP=1 under held id 6: a redelivery");
}

#[test]
fn v311_inbound_qos2_ids_scattered_beyond_the_runs_is_a_typed_error_naming_the_bound() {
    let mut p = Pair::new(persistent(ProtocolChoice::V311), None);
    p.connect();
    // 4 fill INFLIGHT; then every other id starts a run of its own.
    let ids: Vec<u16> = (1..=4)
        .chain((0..=DEFAULT_V311_QOS2_RUNS as u16).map(|i| 10 + 2 * i))
        .collect();
    for &id in &ids {
        p.b.drop_next(Dir::ToBroker, PacketType::Pubrec);
        p.b.send_publish("scattered", b"x", QoS::ExactlyOnce, id, false);
    }
    p.pump();
    assert_eq!(p.got.len(), ids.len() - 1);
    assert_eq!(
        p.errors,
        vec![SessionError::Protocol(
            ProtocolViolation::InboundQos2TableFull {
                runs: DEFAULT_V311_QOS2_RUNS
            }
        )]
    );
}

#[test]
fn mqtt_3_3_4_v5_inbound_qos2_beyond_our_receive_maximum_is_still_0x93() {
    // 5.0 told the broker Receive Maximum = INFLIGHT: the extra 3.1.1 table
    // is not used, and a broker that ignores it breaks the protocol.
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    p.connect();
    for _ in 0..5 {
        p.b.drop_next(Dir::ToBroker, PacketType::Pubrec);
    }
    qos2_burst(&mut p, 5, 1);
    assert_eq!(p.got.len(), 4);
    assert_eq!(
        p.errors,
        vec![SessionError::Protocol(
            ProtocolViolation::ReceiveMaximumExceeded
        )]
    );
}
