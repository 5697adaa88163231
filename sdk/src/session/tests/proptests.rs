//! Random sequences of operations and losses against the broker model,
//! checking the session's invariants.

extern crate alloc;

use alloc::vec::Vec;

use proptest::prelude::*;

use super::broker::Dir;
use super::*;

#[derive(Debug, Clone)]
enum Op {
    Publish(u8),
    Drop(bool, u8),
    Cut,
    ForgetSession,
    Wait(u16),
    Inbound(u8, u16),
    HoldAcks(bool),
    Subscribe(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3).prop_map(Op::Publish),
        2 => (any::<bool>(), 0u8..4).prop_map(|(d, t)| Op::Drop(d, t)),
        1 => Just(Op::Cut),
        1 => Just(Op::ForgetSession),
        1 => (0u16..20_000).prop_map(Op::Wait),
        2 => (0u8..3, 1u16..6).prop_map(|(q, id)| Op::Inbound(q, id)),
        2 => any::<bool>().prop_map(Op::HoldAcks),
        1 => (0u8..4).prop_map(Op::Subscribe),
    ]
}

fn qos(n: u8) -> QoS {
    QoS::from_bits(n).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn session_invariants_hold_under_loss_and_reconnect(ops in proptest::collection::vec(op(), 1..60)) {
        let mut p = Pair::new(persistent(ProtocolChoice::V5), None);
        p.connect();
        let mut tokens: Vec<(PublishToken, QoS, Vec<u8>)> = Vec::new();
        let mut next_payload = 0u32;
        let mut session_lost = false;
        let mut inbound_qos2_sent = BTreeSet::new();
        for op in ops {
            match op {
                Op::Publish(q) => {
                    let payload = next_payload.to_be_bytes();
                    next_payload += 1;
                    if let Ok(t) = p.s.publish(&OutgoingMessage::new("p", &payload, qos(q))) {
                        tokens.push((t, qos(q), payload.to_vec()));
                    }
                }
                Op::Drop(to_broker, t) => {
                    let t = [PacketType::Publish, PacketType::Pubrec, PacketType::Pubrel, PacketType::Pubcomp][usize::from(t)];
                    let dir = if to_broker { Dir::ToBroker } else { Dir::ToClient };
                    // Only on-link losses: mark for the next packet of that type.
                    p.b.drop_next(dir, t);
                }
                Op::Cut => {
                    if p.link_up { p.cut(); }
                }
                Op::ForgetSession => {
                    if !p.link_up {
                        p.b.forget_session();
                        session_lost = true;
                    }
                }
                Op::HoldAcks(hold) => {
                    p.b.hold_acks = hold;
                    if !hold {
                        p.b.release_acks();
                    }
                }
                Op::Subscribe(n) => {
                    let filter = ["s/0", "s/1", "s/+", "s/#"][usize::from(n)];
                    let _ = p.s.subscribe(&[Subscription {
                        filter,
                        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
                    }]);
                }
                Op::Wait(ms) => p.run_for(Duration::from_millis(u64::from(ms))),
                Op::Inbound(q, id) => {
                    // Only fresh QoS 2 ids: the model's own id reuse after a
                    // forgotten session is not what is tested here.
                    if p.link_up && p.s.is_connected() && (q != 2 || inbound_qos2_sent.insert(id)) {
                        p.b.send_publish("in", &id.to_be_bytes(), qos(q), id, false);
                    }
                }
            }
            if !p.link_up {
                p.connect();
            }
            p.pump();
            // No packet identifier held twice at once.
            let ids: Vec<u16> = p.s.packet_ids_in_use().collect();
            let unique: BTreeSet<u16> = ids.iter().copied().collect();
            prop_assert_eq!(ids.len(), unique.len());
            prop_assert!(p.s.inflight() <= 4);
        }
        // Let everything settle on a clean link.
        p.b.drops_clear();
        p.b.hold_acks = false;
        if p.link_up { p.cut(); }
        p.connect();
        p.run_for(Duration::from_secs(1));
        for (t, q, payload) in &tokens {
            let delivered = p.b.delivered.iter().filter(|d| &d.payload == payload).count();
            if *q != QoS::AtMostOnce {
                // At least once, whatever was lost.
                prop_assert!(delivered >= 1, "token {:?} qos {:?} never delivered", t, q);
            }
            if *q == QoS::ExactlyOnce && !session_lost {
                prop_assert_eq!(delivered, 1, "QoS 2 token {:?} delivered {} times", t, delivered);
            }
            let done = p.completions(*t);
            // Every publish completed exactly once, none silently dropped.
            prop_assert_eq!(done.len(), 1, "token {:?} qos {:?}", t, q);
            prop_assert_eq!(done[0], Ok(()));
        }
        prop_assert_eq!(p.s.outbox_len(), 0);
        // Inbound QoS 2 handed to the application at most once per id.
        let q2: Vec<_> = p.got.iter().filter(|g| g.qos == QoS::ExactlyOnce).map(|g| g.payload.clone()).collect();
        let unique: BTreeSet<_> = q2.iter().cloned().collect();
        prop_assert_eq!(q2.len(), unique.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes from the network: an error value or progress, never
    /// a panic and never a loop without progress.
    #[test]
    fn arbitrary_input_never_panics(
        v5 in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let choice = if v5 { ProtocolChoice::V5 } else { ProtocolChoice::V311 };
        let mut p = Pair::new(config(choice), None);
        p.connect();
        let mut off = 0;
        let mut tx = [0u8; 512];
        for _ in 0..bytes.len() + 1 {
            match p.s.handle_incoming(&bytes[off..], p.now) {
                Ok(Incoming::Packet { len, .. }) => {
                    prop_assert!(len > 0 && off + len <= bytes.len());
                    off += len;
                }
                Ok(Incoming::Skipped { len, .. }) => {
                    prop_assert!(len > 0);
                    off = (off + len).min(bytes.len());
                }
                Ok(Incoming::Incomplete { needed }) => {
                    prop_assert!(needed > 0);
                    break;
                }
                Ok(Incoming::Backpressure) => {
                    while p.s.poll_transmit(p.now, &mut tx).unwrap().is_some() {}
                    while p.s.poll_event().is_some() {}
                }
                Err(_) => {
                    prop_assert!(p.s.wants_close());
                    break;
                }
            }
            if p.s.wants_close() {
                break;
            }
        }
        while p.s.poll_transmit(p.now, &mut tx).unwrap().is_some() {}
    }
}
