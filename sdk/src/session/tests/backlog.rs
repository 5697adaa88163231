//! The session's cost per message as the outbox backlog grows (issue 13):
//! draining a backlog must cost the same per message whether it holds a
//! hundred messages or thousands. The measures are the number of record
//! headers the session reads and the bytes the outbox moves (counts, not
//! times, so the tests are exact on a busy machine); the CPU figures are in
//! the `client_backlog` bench.

use super::*;

#[derive(Clone, Copy, Debug)]
enum Way {
    /// `publish`, as queued.
    Publish,
    /// A durable record: held, persisted and released as the client does.
    Durable,
    /// `publish_with`: the payload written straight into the outbox.
    Writer,
}

/// Queues `n` messages of `qos` the `way` says while disconnected,
/// connects, drains them through the broker model, and returns the record
/// headers read and the bytes moved per message, queueing included.
fn cost_per_message(n: usize, qos: QoS, way: Way) -> (f64, f64) {
    let mut p = Pair::with_outbox(config(ProtocolChoice::V5), None, n * 48);
    let (reads, moved) = (p.s.outbox_reads(), p.s.outbox_moved());
    let queue = |p: &mut Pair, i: usize| {
        let payload = u32::try_from(i).unwrap().to_be_bytes();
        let msg = OutgoingMessage::new("b/l", &payload, qos);
        match way {
            Way::Publish => {
                p.s.publish(&msg).unwrap();
            }
            Way::Durable => {
                let t = p.s.publish(&msg).unwrap();
                assert!(p.s.hold_for_store(t));
                assert!(p.s.held_record(t).is_some());
                assert!(p.s.release_held(t, u32::try_from(i).unwrap() + 1));
            }
            Way::Writer => {
                p.s.publish_with(&msg, |buf| {
                    buf.get_mut(..4)?.copy_from_slice(&payload);
                    Some(4)
                })
                .unwrap();
            }
        }
    };
    // Half queued offline, half while the first half drains (acks free
    // the front of the outbox as new records go in at the back).
    for i in 0..n / 2 {
        queue(&mut p, i);
    }
    assert_eq!(p.s.outbox_len(), n / 2);
    p.connect();
    for i in n / 2..n {
        queue(&mut p, i);
        if i % 8 == 0 {
            p.pump();
        }
    }
    while p.s.outbox_len() > 0 {
        p.pump();
        p.drain_events();
    }
    assert_eq!(p.b.publishes.len(), n, "each message sent once");
    let reads = (p.s.outbox_reads() - reads) as f64 / n as f64;
    let moved = (p.s.outbox_moved() - moved) as f64 / n as f64;
    (reads, moved)
}

fn assert_flat(qos: QoS, way: Way) {
    let (small_reads, small_moved) = cost_per_message(100, qos, way);
    let (large_reads, large_moved) = cost_per_message(4_000, qos, way);
    let figures = std::format!(
        "{qos:?} {way:?}: per message {small_reads:.1} header reads and {small_moved:.0} bytes \
         moved with 100 queued, {large_reads:.1} and {large_moved:.0} with 4,000"
    );
    std::println!("{figures}");
    assert!(large_reads <= small_reads * 1.2 + 1.0, "{figures}");
    assert!(large_moved <= small_moved * 1.2 + 64.0, "{figures}");
}

#[test]
fn draining_a_qos1_backlog_costs_the_same_per_message_at_any_size() {
    assert_flat(QoS::AtLeastOnce, Way::Publish);
}

#[test]
fn draining_a_qos2_backlog_costs_the_same_per_message_at_any_size() {
    assert_flat(QoS::ExactlyOnce, Way::Publish);
}

#[test]
fn draining_a_durable_backlog_costs_the_same_per_message_at_any_size() {
    assert_flat(QoS::AtLeastOnce, Way::Durable);
}

#[test]
fn draining_a_qos0_backlog_costs_the_same_per_message_at_any_size() {
    assert_flat(QoS::AtMostOnce, Way::Publish);
}

#[test]
fn draining_a_backlog_written_by_payload_writers_costs_the_same_per_message_at_any_size() {
    assert_flat(QoS::AtLeastOnce, Way::Writer);
}
