//! The event queue when it is full, at the default size and at the
//! smallest (`SMALL_EVENTS`, a simulated device's): events wait, finished
//! publishes wait in the outbox for their completion's slot, the link's
//! end is never lost.

use super::*;

fn disconnected_event_never_lost_at<const EVENTS: usize>() {
    let mut p = Pair::<EVENTS>::build(config(ProtocolChoice::V5), None, 4096);
    p.connect();
    p.take_events();
    // Fill the event queue with QoS 0 completions nobody polls.
    for _ in 0..EVENTS {
        p.s.publish(&OutgoingMessage::new("t", b"x", QoS::AtMostOnce))
            .unwrap();
    }
    let mut tx = [0u8; 64];
    while p.s.poll_transmit(p.now, &mut tx).unwrap().is_some() {}
    assert_eq!(p.s.outbox_len(), 0, "sends wait only when no slot is free");
    p.s.handle_disconnected(p.now);
    let mut events = Vec::new();
    while let Some(e) = p.s.poll_event() {
        events.push(e);
    }
    assert_eq!(events.len(), EVENTS + 1);
    assert_eq!(
        events.last(),
        Some(&Event::Disconnected {
            reason: CloseReason::TransportClosed
        })
    );
}

#[test]
fn disconnected_event_never_lost_when_the_event_queue_is_full() {
    disconnected_event_never_lost_at::<EVENT_QUEUE_LEN>();
    disconnected_event_never_lost_at::<SMALL_EVENTS>();
}

/// With the smallest event queue, a burst of PUBACKs read before any
/// event is polled: the input waits (`Backpressure`) instead of
/// overflowing the queue, each acknowledged publish stays in the outbox
/// until its completion has a slot, and every completion arrives once, in
/// order.
#[test]
fn completions_wait_in_the_outbox_when_a_small_event_queue_is_full() {
    let mut p = Pair::<SMALL_EVENTS>::build(config(ProtocolChoice::V5), None, 4096);
    p.connect();
    p.take_events();
    let tokens: Vec<_> = (0..4u8)
        .map(|i| {
            p.s.publish(&OutgoingMessage::new("t", &[i], QoS::AtLeastOnce))
                .unwrap()
        })
        .collect();
    let mut tx = [0u8; 256];
    while let Some(n) = p.s.poll_transmit(p.now, &mut tx).unwrap() {
        p.b.receive(&tx[..n]);
    }
    let mut acks = Vec::new();
    while let Some(bytes) = p.b.out.pop_front() {
        acks.extend_from_slice(&bytes);
    }
    let mut completed = Vec::new();
    let mut off = 0;
    let mut waits = 0;
    while off < acks.len() {
        match p.s.handle_incoming(&acks[off..], p.now).unwrap() {
            Incoming::Packet { len, .. } => off += len,
            Incoming::Backpressure => {
                waits += 1;
                assert!(
                    p.s.outbox_len() > 0,
                    "an acknowledged publish waits in the outbox"
                );
                while let Some(e) = p.s.poll_event() {
                    completed.push(e);
                }
            }
            other => panic!("{other:?}"),
        }
    }
    while let Some(e) = p.s.poll_event() {
        completed.push(e);
    }
    assert!(waits > 0, "four completions do not fit one free slot");
    let expected: Vec<_> = tokens
        .iter()
        .map(|&token| Event::PublishComplete {
            token,
            result: Ok(()),
        })
        .collect();
    assert_eq!(completed, expected);
    assert_eq!(p.s.outbox_len(), 0);
}
