//! `poll_transmit_batch`: due packets back to back, in order; a publish
//! that does not fit waits for the next batch.

use super::*;

/// Splits a batch into its packets' byte ranges, decoding each.
fn split_batch(bytes: &[u8]) -> Vec<(PacketType, core::ops::Range<usize>)> {
    let opts = crate::codec::DecodeOptions::new(ProtocolVersion::V5);
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match Packet::decode(&bytes[at..], &opts) {
            Ok(crate::codec::Decoded::Complete { value, len }) => {
                out.push((value.packet_type(), at..at + len));
                at += len;
            }
            other => panic!("batch holds an undecodable packet at {at}: {other:?}"),
        }
    }
    out
}

#[test]
fn mqtt_6_0_batch_carries_due_packets_back_to_back_in_order() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    let tokens = [
        p.s.publish(&OutgoingMessage::new("a", b"1", QoS::AtLeastOnce))
            .unwrap(),
        p.s.publish(&OutgoingMessage::new("b", b"2", QoS::AtMostOnce))
            .unwrap(),
        p.s.publish(&OutgoingMessage::new("c", b"3", QoS::ExactlyOnce))
            .unwrap(),
    ];
    let mut tx = [0u8; 256];
    let n = p.s.poll_transmit_batch(p.now, &mut tx).unwrap();
    let packets = split_batch(&tx[..n]);
    assert_eq!(
        packets.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        vec![PacketType::Publish; 3]
    );
    let topics: Vec<u8> = packets.iter().map(|(_, r)| tx[r.start + 4]).collect();
    assert_eq!(topics, b"abc");
    // Nothing more is due until the broker answers.
    assert_eq!(p.s.poll_transmit_batch(p.now, &mut tx).unwrap(), 0);
    for (_, r) in packets {
        p.b.receive(&tx[r]);
    }
    p.pump();
    for t in tokens {
        assert_eq!(p.completions(t), vec![Ok(())]);
    }
}

#[test]
fn batch_leaves_a_publish_that_does_not_fit_behind_others_queued() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    p.connect();
    p.s.set_transmit_capacity(64);
    let first =
        p.s.publish(&OutgoingMessage::new("a", &[1u8; 30], QoS::AtLeastOnce))
            .unwrap();
    let second =
        p.s.publish(&OutgoingMessage::new("b", &[2u8; 30], QoS::AtLeastOnce))
            .unwrap();
    let mut tx = [0u8; 64];
    let n = p.s.poll_transmit_batch(p.now, &mut tx).unwrap();
    let one = split_batch(&tx[..n]);
    assert_eq!(one.len(), 1, "the second does not fit behind the first");
    p.drain_events();
    assert!(p.completions(second).is_empty(), "not failed: next batch");
    p.b.receive(&tx[one[0].1.clone()]);
    let n = p.s.poll_transmit_batch(p.now, &mut tx).unwrap();
    let two = split_batch(&tx[..n]);
    assert_eq!(two.len(), 1);
    assert_eq!(tx[two[0].1.start + 4], b'b');
    p.b.receive(&tx[two[0].1.clone()]);
    p.pump();
    assert_eq!(p.completions(first), vec![Ok(())]);
    assert_eq!(p.completions(second), vec![Ok(())]);
}
