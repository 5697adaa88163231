//! The durable outbox's held and restored records (the store itself is
//! the client's): a held record is not sent before its key is known, a
//! restored one goes out with DUP under its key's packet identifier.

use super::*;

#[test]
fn held_record_is_not_sent_until_released_and_its_key_is_removed_on_puback() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    let (held, _) = publish_held(&mut p, "held", b"1");
    // A message queued behind a held one waits too: order is kept.
    let behind = p.publish("behind", b"2", QoS::AtMostOnce);
    assert!(p.b.delivered_topics().is_empty());
    assert_eq!(p.s.publish_state(held), Some(PublishState::Queued));
    assert!(p.s.release_held(held, 7));
    p.pump();
    assert_eq!(p.b.delivered_topics(), vec!["held", "behind"]);
    assert_eq!(p.completions(held), vec![Ok(())]);
    assert_eq!(p.completions(behind), vec![Ok(())]);
    assert_eq!(p.removed, vec![7], "only the durable record is removed");
    assert_eq!(p.s.publish_state(held), None);
}

#[test]
fn held_record_cancelled_leaves_the_outbox_without_an_event() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    let (held, _) = publish_held(&mut p, "held", b"1");
    assert!(p.s.cancel_held(held));
    p.pump();
    assert!(p.completions(held).is_empty());
    assert_eq!(p.s.outbox_len(), 0);
    assert!(p.removed.is_empty());
    // QoS 0 cannot be held (it is never stored).
    let q0 =
        p.s.publish(&OutgoingMessage::new("q0", b"", QoS::AtMostOnce))
            .unwrap();
    assert!(!p.s.hold_for_store(q0));
}

#[test]
fn restored_records_are_sent_with_dup_under_their_key_ids_in_store_order_and_removed_when_acked() {
    // The first run stores three records, then "crashes".
    let mut first = Pair::new(config(ProtocolChoice::V5), None);
    let records: Vec<(u32, Vec<u8>)> = (0..3u8)
        .map(|i| {
            let (t, r) = publish_held(&mut first, "r", &[i]);
            assert!(first.s.release_held(t, 10 + u32::from(i)));
            (10 + u32::from(i), r)
        })
        .collect();
    // A QoS 2 record too.
    let t2 = first
        .s
        .publish(&OutgoingMessage::new("r2", b"x", QoS::ExactlyOnce))
        .unwrap();
    assert!(first.s.hold_for_store(t2));
    let r2 = first.s.held_record(t2).unwrap().to_vec();
    // The second run replays them.
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    let new = p.publish("new", b"n", QoS::AtMostOnce);
    for (key, record) in &records {
        p.s.restore(*key, record).unwrap();
    }
    p.s.restore(20, &r2).unwrap();
    p.connect();
    // Held until released: only the QoS 0 message queued earlier went.
    assert_eq!(p.b.delivered_topics(), vec!["new"]);
    p.s.release_restored();
    p.pump();
    let payloads: Vec<Vec<u8>> = p.b.delivered.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(
        payloads,
        vec![b"n".to_vec(), vec![0], vec![1], vec![2], b"x".to_vec()]
    );
    // [MQTT-4.3.3-9]: each resumes under the identifier its key gives
    // (the one the first run sent it under), marked as a possible resend.
    let ids: Vec<(Option<u16>, bool)> = p.b.delivered[1..]
        .iter()
        .map(|m| (m.packet_id, m.dup))
        .collect();
    assert_eq!(
        ids,
        vec![
            (Some(10), true),
            (Some(11), true),
            (Some(12), true),
            (Some(20), true)
        ]
    );
    assert_eq!(p.removed, vec![10, 11, 12, 20]);
    let _ = new;
}

#[test]
fn restore_refuses_bytes_that_are_not_a_stored_qos1_or_qos2_publish() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    // A QoS 0 PUBLISH, a PINGREQ, garbage, a truncated record, key 0.
    let mut q0 = [0u8; 32];
    let n = Packet::Publish(Publish::new("t", b"p"))
        .encode(&mut q0, ProtocolVersion::V5)
        .unwrap();
    assert!(p.s.restore(1, &q0[..n]).is_err());
    assert!(p.s.restore(1, &[0xC0, 0x00]).is_err());
    assert!(p.s.restore(1, &[0xFF; 9]).is_err());
    let mut q = Pair::new(config(ProtocolChoice::V5), None);
    let (_, record) = publish_held(&mut q, "t", b"payload");
    assert!(p.s.restore(1, &record[..record.len() - 1]).is_err());
    assert!(p.s.restore(0, &record).is_err());
    assert!(p.s.restore(1, &record).is_ok());
    assert_eq!(p.s.outbox_len(), 1);
    // A replay that failed half-way is undone.
    p.s.cancel_restored();
    assert_eq!(p.s.outbox_len(), 0);
}

#[test]
fn publish_state_follows_the_message_from_queued_to_gone() {
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    let t = p.publish("s", b"1", QoS::AtLeastOnce);
    assert_eq!(p.s.publish_state(t), Some(PublishState::Queued));
    p.b.hold_acks = true;
    p.connect();
    assert_eq!(p.s.publish_state(t), Some(PublishState::InFlight));
    p.cut();
    assert_eq!(p.s.publish_state(t), Some(PublishState::InFlight));
    p.b.hold_acks = false;
    p.connect();
    assert_eq!(p.s.publish_state(t), None);
    assert_eq!(p.completions(t), vec![Ok(())]);
    assert_eq!(p.s.publish_state(PublishToken(999)), None);
}
