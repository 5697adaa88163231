//! Message expiry in the outbox (5.0 §3.3.2.3.3): a lapsed message fails
//! `Expired`, a sent one carries what is left of its interval.

use super::*;

#[test]
fn mqtt_3_3_2_3_3_message_whose_expiry_lapses_in_the_outbox_fails_expired() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    let (fields, topic) = expiring("e", 5);
    let msg = OutgoingMessage {
        properties: Properties::from_fields(&fields),
        ..OutgoingMessage::new(&topic, b"x", QoS::AtLeastOnce)
    };
    let t = p.s.publish(&msg).unwrap();
    assert!(p.s.hold_for_store(t));
    assert!(p.s.release_held(t, 3));
    let keep = p.publish("keep", b"y", QoS::AtLeastOnce);
    // The driver stamps it while the link is down ...
    p.s.handle_timeout(p.now);
    assert_eq!(p.s.poll_timeout(), Some(Instant::from_millis(5_000)));
    // ... and the deadline fails it before any link comes up.
    p.now = p.now + Duration::from_secs(5);
    p.s.handle_timeout(p.now);
    p.drain_events();
    assert_eq!(p.completions(t), vec![Err(PublishFailure::Expired)]);
    assert_eq!(p.removed, vec![3], "its durable copy is removed");
    p.connect();
    assert_eq!(p.b.delivered_topics(), vec!["keep"]);
    assert_eq!(p.completions(keep), vec![Ok(())]);
}

#[test]
fn mqtt_3_3_2_3_3_interval_sent_is_what_is_left_of_it() {
    let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
    let (fields, topic) = expiring("e", 60);
    let msg = OutgoingMessage {
        properties: Properties::from_fields(&fields),
        ..OutgoingMessage::new(&topic, b"x", QoS::AtLeastOnce)
    };
    p.s.publish(&msg).unwrap();
    p.s.handle_timeout(p.now);
    p.now = p.now + Duration::from_secs(20);
    p.b.hold_acks = true;
    p.connect();
    assert_eq!(p.b.publishes.last().unwrap().message_expiry, Some(40));
    // Resent with DUP after a reconnect 15 s later: 25 s left.
    p.cut();
    p.now = p.now + Duration::from_secs(15);
    p.b.hold_acks = false;
    p.connect();
    let resent = p.b.publishes.last().unwrap();
    assert!(resent.dup);
    assert_eq!(resent.message_expiry, Some(25));
}

#[test]
fn mqtt_3_3_2_3_3_expiry_with_a_topic_alias_also_counts_down() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.b.topic_alias_maximum = Some(2);
    let (fields, topic) = expiring("alias/e", 30);
    let msg = OutgoingMessage {
        properties: Properties::from_fields(&fields),
        ..OutgoingMessage::new(&topic, b"x", QoS::AtMostOnce)
    };
    p.s.publish(&msg).unwrap();
    p.s.handle_timeout(p.now);
    p.now = p.now + Duration::from_secs(10);
    p.connect();
    let seen = p.b.publishes.last().unwrap();
    assert_eq!(seen.alias, Some(1));
    assert_eq!(seen.message_expiry, Some(20));
}
