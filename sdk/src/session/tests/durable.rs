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
