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
