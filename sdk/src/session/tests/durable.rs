//! Session model tests for the durable outbox defects of issue 18: packet
//! identifiers of durable records follow their store keys, so a replayed
//! record resumes under the identifier a resumed broker session holds
//! [MQTT-4.3.3-9]. Same broker model and virtual time as the tests beside
//! it.

use super::*;

#[test]
fn mqtt_2_2_1_3_a_subscribe_never_takes_the_packet_id_a_durable_record_reserves() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    // Key 1 reserves packet identifier 1, before the record is sent.
    let (t, _) = publish_held(&mut p, "d", b"1");
    assert!(p.s.release_held(t, 1));
    let s = p.s.subscribe(&[sub("s", QoS::AtLeastOnce)]).unwrap();
    // The SUBACK is lost: the SUBSCRIBE keeps its identifier until the
    // next connection.
    p.b.drop_next(Dir::ToClient, PacketType::Suback);
    p.connect();
    assert_eq!(
        p.b.publishes
            .iter()
            .map(|m| m.packet_id)
            .collect::<Vec<_>>(),
        vec![Some(1)],
        "the durable record goes out under its key's identifier at once"
    );
    assert_eq!(p.completions(t), vec![Ok(())]);
    assert!(
        !p.events
            .iter()
            .any(|e| matches!(e, Event::Subscribed { token, .. } if *token == s))
    );
}

#[test]
fn durable_record_ids_follow_the_key_and_wrap_after_65535() {
    use crate::session::machine::stored_packet_id as id;
    assert_eq!(id(1), 1);
    assert_eq!(id(65_535), 65_535);
    assert_eq!(id(65_536), 1);
    assert_eq!(
        id(u32::MAX),
        u16::try_from((u32::MAX - 1) % 65_535 + 1).unwrap()
    );
}

/// A durable QoS `qos` publish under store key `key`, released to be sent.
fn durable(p: &mut Pair, key: u32, qos: QoS) -> PublishToken {
    let t = p.s.publish(&OutgoingMessage::new("d", b"x", qos)).unwrap();
    assert!(p.s.hold_for_store(t));
    assert!(p.s.release_held(t, key));
    t
}

#[test]
fn mqtt_4_3_2_transient_refusal_keeps_a_durable_publish_and_retries_it_with_backoff() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut p = Pair::new(config(ProtocolChoice::V5), None);
        p.connect();
        // 0x97 Quota exceeded, twice: kept, not removed, not completed.
        p.b.ack_code = ReasonCode(0x97);
        let t = durable(&mut p, 1, qos);
        p.pump();
        assert!(p.completions(t).is_empty(), "{qos:?}");
        assert!(p.removed.is_empty());
        assert_eq!(p.b.publishes.len(), 1);
        // Not before the pause (500 ms) is over.
        p.run_for(Duration::from_millis(400));
        assert_eq!(p.b.publishes.len(), 1);
        p.run_for(Duration::from_millis(200));
        assert_eq!(p.b.publishes.len(), 2, "retried after 500 ms");
        // The second refusal doubles the pause.
        p.b.ack_code = ReasonCode::SUCCESS;
        p.run_for(Duration::from_millis(800));
        assert_eq!(p.b.publishes.len(), 2);
        p.run_for(Duration::from_millis(200));
        assert_eq!(p.b.publishes.len(), 3);
        assert_eq!(p.completions(t), vec![Ok(())]);
        assert_eq!(p.removed, vec![1]);
        assert_eq!(p.b.delivered.len(), 1, "delivered once");
    }
}

#[test]
fn mqtt_4_3_2_permanent_refusal_fails_a_durable_publish_and_removes_it() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.b.ack_code = ReasonCode(0x87);
    let t = durable(&mut p, 5, QoS::AtLeastOnce);
    p.pump();
    assert_eq!(
        p.completions(t),
        vec![Err(PublishFailure::Rejected(ReasonCode(0x87)))]
    );
    assert_eq!(p.removed, vec![5]);
}
