//! The outbox seen from the session: its limits and overflow policies, a
//! publish too large for the transmit buffer, DISCONNECT keeping the
//! session, topic aliases (5.0 §3.3.2.3.4), and payload writers. Same broker
//! model and virtual time as the tests beside it.

use super::*;

#[test]
fn outbox_full_is_a_typed_error_naming_the_limit() {
    let mut p = Pair::with_outbox(config(ProtocolChoice::V5), None, 64);
    let m = OutgoingMessage::new("t", &[0u8; 20], QoS::AtLeastOnce);
    p.s.publish(&m).unwrap();
    let err = p.s.publish(&m).unwrap_err();
    assert_eq!(
        err,
        SessionError::OutboxFull {
            needed: 48,
            free: 16,
            capacity: 64
        }
    );
    assert!(alloc::format!("{err}").contains("48 bytes"));
}

#[test]
fn overflow_policy_drop_oldest_qos0() {
    let mut p = Pair::with_outbox(config(ProtocolChoice::V5), None, 100);
    let q0 = OutgoingMessage::new("t", &[0u8; 20], QoS::AtMostOnce);
    let q1 = OutgoingMessage::new("t", &[0u8; 20], QoS::AtLeastOnce);
    let a = p.s.publish(&q0).unwrap();
    let b = p.s.publish(&q1).unwrap();
    assert!(p.s.publish(&q1).is_err());
    let c =
        p.s.publish_with_policy(&q1, OverflowPolicy::DropOldestQos0)
            .unwrap();
    p.drain_events();
    assert_eq!(p.completions(a), vec![Err(PublishFailure::Dropped)]);
    // No QoS 0 left to drop: refused even under the policy.
    assert!(matches!(
        p.s.publish_with_policy(&q1, OverflowPolicy::DropOldestQos0),
        Err(SessionError::OutboxFull { .. })
    ));
    p.connect();
    assert_eq!(p.completions(b), vec![Ok(())]);
    assert_eq!(p.completions(c), vec![Ok(())]);
}

#[test]
fn publish_larger_than_the_transmit_buffer_fails_alone_and_the_outbox_moves_on() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    let big =
        p.s.publish(&OutgoingMessage::new("t", &[1u8; 100], QoS::AtLeastOnce))
            .unwrap();
    let small =
        p.s.publish(&OutgoingMessage::new("s", b"ok", QoS::AtLeastOnce))
            .unwrap();
    let mut tx = [0u8; 32];
    let n = p.s.poll_transmit(p.now, &mut tx).unwrap().unwrap();
    assert_eq!(tx[0] & 0xF0, 0x30);
    assert_eq!(&tx[4..5], b"s");
    assert!(n < 32);
    p.drain_events();
    assert_eq!(
        p.completions(big),
        vec![Err(PublishFailure::TransmitBufferTooSmall {
            size: 108,
            capacity: 32
        })]
    );
    assert!(p.completions(small).is_empty());
    assert_eq!(p.s.outbox_len(), 1);
}

#[test]
fn publish_larger_than_the_announced_transmit_buffer_is_refused_at_once() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.s.set_transmit_capacity(64);
    let err =
        p.s.publish(&OutgoingMessage::new("t", &[1u8; 100], QoS::AtLeastOnce))
            .unwrap_err();
    assert_eq!(
        err,
        SessionError::PacketTooLarge {
            size: 108,
            max: 64,
            limit: crate::session::SizeLimit::TransmitBuffer
        }
    );
    // A control packet that does not fit is still an error (nothing to
    // fail alone): CONNECT into 4 bytes.
    p.s.handle_connected(p.now).unwrap();
    assert!(matches!(
        p.s.poll_transmit(p.now, &mut [0u8; 4]),
        Err(SessionError::Encode(
            crate::codec::EncodeError::InsufficientSize { .. }
        ))
    ));
}

#[test]
fn disconnect_sends_disconnect_and_keeps_the_session() {
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    p.connect();
    p.b.hold_acks = true;
    let t = p.publish("k", b"v", QoS::AtLeastOnce);
    p.s.disconnect().unwrap();
    p.pump();
    assert_eq!(p.b.client_disconnect, Some(ReasonCode::SUCCESS));
    assert!(p.events.contains(&Event::Disconnected {
        reason: CloseReason::ClientRequested
    }));
    p.b.hold_acks = false;
    p.b.unacked.clear();
    p.connect();
    assert_eq!(p.completions(t), vec![Ok(())]);
}

#[test]
fn memory_budget() {
    use core::mem::size_of;
    let small = size_of::<Session<'static, 4, 8>>();
    let mid = size_of::<Session<'static, 16, 16, 64>>();
    let big = size_of::<Session<'static, 64, 32>>();
    std::println!("size_of Session<4, 8, 128> = {small} bytes");
    std::println!("size_of Session<16, 16, 64> = {mid} bytes");
    std::println!("size_of Session<64, 32, 128> = {big} bytes");
    let aliases = size_of::<Session<'static, 4, 8, 64, 4>>();
    std::println!("size_of Session<4, 8, 64, 4> = {aliases} bytes");
    std::println!("size_of Event = {} bytes", size_of::<Event>());
    assert!(small < mid && mid < big);
}

#[test]
fn mqtt_3_3_2_3_4_outbound_topic_alias_set_up_then_reused() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.topic_alias_maximum = Some(1);
    p.connect();
    assert_eq!(
        p.b.last_connect.clone().unwrap().topic_alias_maximum,
        Some(2)
    );
    for _ in 0..3 {
        p.publish("a/rather/long/topic/name", b"x", QoS::AtLeastOnce);
    }
    p.publish("other", b"y", QoS::AtMostOnce);
    let wire: Vec<_> =
        p.b.publishes
            .iter()
            .map(|s| (s.alias, s.topic_on_wire))
            .collect();
    // Set up (topic + alias), then alias only; the broker allows one alias,
    // so "other" goes without.
    assert_eq!(
        wire,
        vec![
            (Some(1), true),
            (Some(1), false),
            (Some(1), false),
            (None, true)
        ]
    );
    assert_eq!(
        p.b.delivered_topics(),
        vec!["a/rather/long/topic/name"; 3]
            .into_iter()
            .chain(["other"])
            .collect::<Vec<_>>()
    );
    // Aliases do not outlive the connection: set up again after reconnect.
    p.cut();
    p.connect();
    p.publish("a/rather/long/topic/name", b"z", QoS::AtMostOnce);
    let last = p.b.publishes.last().unwrap();
    assert_eq!((last.alias, last.topic_on_wire), (Some(1), true));
}

#[test]
fn mqtt_3_3_2_3_4_no_outbound_alias_without_broker_topic_alias_maximum() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.publish("t", b"x", QoS::AtMostOnce);
    p.publish("t", b"x", QoS::AtMostOnce);
    assert!(
        p.b.publishes
            .iter()
            .all(|s| s.alias.is_none() && s.topic_on_wire)
    );
}

#[test]
fn mqtt_3_3_2_3_4_inbound_topic_alias_resolved() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    static SET: PropertyFields<'static> = PropertyFields {
        topic_alias: Some(2),
        ..PropertyFields::NONE
    };
    for topic in ["in/aliased", ""] {
        p.b.send_raw(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: Properties::from_fields(&SET),
            payload: b"v",
        }));
    }
    p.pump();
    let topics: Vec<_> = p.got.iter().map(|g| g.topic.as_str()).collect();
    assert_eq!(topics, vec!["in/aliased", "in/aliased"]);
    assert_eq!(p.s.inbound_alias_topic(2), Some("in/aliased"));
    // An alias never set up on this connection is a protocol error.
    p.cut();
    p.connect();
    p.b.send_raw(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "",
        packet_id: None,
        properties: Properties::from_fields(&SET),
        payload: b"v",
    }));
    p.pump();
    assert_eq!(
        p.errors,
        vec![SessionError::Protocol(ProtocolViolation::TopicAliasInvalid)]
    );
}

#[test]
fn mqtt_3_2_2_2_session_present_after_clean_start_is_a_protocol_error() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.lie_session_present = true;
    p.connect();
    assert_eq!(
        p.errors,
        vec![SessionError::Protocol(
            ProtocolViolation::SessionPresentOnCleanStart
        )]
    );
    assert!(!p.s.is_connected());
    assert_eq!(
        p.events,
        vec![Event::Disconnected {
            reason: CloseReason::ProtocolError(ReasonCode::PROTOCOL_ERROR)
        }]
    );
}

#[test]
fn publish_with_writes_the_payload_in_place_across_remaining_length_sizes() {
    // Remaining Length crosses 1→2 bytes (127/128) and 2→3 (16383/16384).
    for len in [0usize, 1, 100, 115, 116, 117, 200, 16_360, 16_380, 20_000] {
        let mut p = Pair::with_outbox(config(ProtocolChoice::V5), None, 64 * 1024);
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let msg = OutgoingMessage::new("w/x", &[], QoS::AtLeastOnce);
        let t =
            p.s.publish_with(&msg, |buf| {
                buf.get_mut(..len)?.copy_from_slice(&payload);
                Some(len)
            })
            .unwrap();
        // The same record as a plain publish of that payload.
        let plain =
            p.s.publish(&OutgoingMessage::new("w/x", &payload, QoS::AtLeastOnce))
                .unwrap();
        assert!(p.s.hold_for_store(t) && p.s.hold_for_store(plain));
        assert_eq!(
            p.s.held_record(t).unwrap(),
            p.s.held_record(plain).unwrap(),
            "len {len}"
        );
        p.s.release_held(t, 1);
        p.s.release_held(plain, 2);
        if len < 1_000 {
            // The pair's transmit buffer is 2 KiB.
            p.connect();
            assert_eq!(p.b.delivered.len(), 2, "len {len}");
            assert_eq!(p.b.delivered[0].payload, payload, "len {len}");
        }
    }
}

#[test]
fn publish_with_a_payload_that_does_not_fit_names_the_room_it_had() {
    let mut p = Pair::with_outbox(config(ProtocolChoice::V5), None, 128);
    let msg = OutgoingMessage::new("t", &[], QoS::AtMostOnce);
    let err =
        p.s.publish_with(&msg, |buf| {
            let room = buf.len();
            (room >= 500).then_some(500)
        })
        .unwrap_err();
    // 128 - 20 (record header) - 1 - 4 (type, longest Remaining Length)
    // - 4 (topic "t" with its length, empty properties).
    assert_eq!(
        err,
        SessionError::PayloadDoesNotFit {
            room: 99,
            capacity: 128
        }
    );
    assert!(alloc::format!("{err}").contains("99 bytes"));
    assert_eq!(p.s.outbox_usage().0, 0, "nothing left behind");
    // A writer that claims more than it was given is refused too.
    assert!(p.s.publish_with(&msg, |buf| Some(buf.len() + 1)).is_err());
    assert_eq!(p.s.outbox_usage().0, 0);
}
