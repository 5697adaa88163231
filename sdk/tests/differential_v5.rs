//! Differential tests, MQTT 5.0: embermq against mqttbytes 0.6 (`v5`).
//!
//! Properties over generated packets (generators and the model in
//! `support/`): what embermq emits mqttbytes decodes to the same fields, and
//! what mqttbytes emits embermq decodes to the same fields. Unlike 3.1.1 the
//! bytes may differ: property order is free (5.0 §2.2.2.2 fixes none), and
//! embermq writes properties in identifier order while mqttbytes uses its
//! own; both read either.
//!
//! Then one named test per disagreement, with the deciding statement and a
//! verdict. In each the spec sides with embermq, except where noted as a
//! missing feature of mqttbytes.
mod support;

use embermq::codec::{DecodeError, DecodeOptions, Decoded, Packet, ProtocolVersion, ReasonCode};
use proptest::prelude::*;
use support::*;

const V: ProtocolVersion = ProtocolVersion::V5;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Sanity of the harness itself: the model survives mqttbytes' own
    /// encode → decode.
    #[test]
    fn harness_model_round_trips_through_mqttbytes(m in model_v5()) {
        let bytes = mqttbytes_v5_bytes(&to_mqttbytes_v5(&m));
        let back = from_mqttbytes_v5(&mqttbytes_v5_decode(&bytes).unwrap());
        prop_assert_eq!(back, m);
    }

    #[test]
    fn embermq_emits_mqttbytes_decodes_same_fields(m in model_v5()) {
        let bytes = embermq_bytes(&m, V).unwrap();
        let theirs = mqttbytes_v5_decode(&bytes).unwrap();
        prop_assert_eq!(from_mqttbytes_v5(&theirs), m);
    }

    #[test]
    fn mqttbytes_emits_embermq_decodes_same_fields(m in model_v5()) {
        let bytes = mqttbytes_v5_bytes(&to_mqttbytes_v5(&m));
        prop_assert_eq!(embermq_decode(&bytes, V).unwrap(), m);
    }

    /// Valid packets with one byte changed: where both codecs still accept
    /// the bytes, they read the same fields (where only mqttbytes accepts,
    /// it is one of the named divergences below, or the test would not say
    /// so: this property only compares).
    #[test]
    fn mutated_packets_accepted_by_both_decode_the_same(
        m in model_v5(), at in any::<proptest::sample::Index>(), value in any::<u8>()
    ) {
        let mut bytes = mqttbytes_v5_bytes(&to_mqttbytes_v5(&m));
        let at = at.index(bytes.len());
        bytes[at] = value;
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        let Ok(theirs) = mqttbytes::v5::read(&mut buf, 1 << 28) else { return Ok(()) };
        if let Ok(Decoded::Complete { value, .. }) = Packet::decode(&bytes, &DecodeOptions::new(V)) {
            prop_assert_eq!(from_embermq(&value, V), from_mqttbytes_v5(&theirs), "bytes {:02x?}", bytes);
        }
    }

    /// Whatever mqttbytes accepts from random bytes, embermq either rejects
    /// (the named divergences below) or decodes to the same fields.
    #[test]
    fn random_bytes_accepted_by_both_decode_the_same(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        let Ok(theirs) = mqttbytes::v5::read(&mut buf, 1 << 28) else { return Ok(()) };
        if let Ok(Decoded::Complete { value, .. }) = Packet::decode(&bytes, &DecodeOptions::new(V)) {
            prop_assert_eq!(from_embermq(&value, V), from_mqttbytes_v5(&theirs));
        }
    }

    /// The two encodings have the same length (they differ at most in
    /// property order).
    #[test]
    fn both_emit_the_same_length(m in model_v5()) {
        let ours = embermq_bytes(&m, V).unwrap();
        let theirs = mqttbytes_v5_bytes(&to_mqttbytes_v5(&m));
        prop_assert_eq!(ours.len(), theirs.len());
    }
}

fn ours(bytes: &[u8]) -> Result<Model, DecodeError> {
    embermq_decode(bytes, V)
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut out = vec![first, body.len() as u8];
    out.extend_from_slice(body);
    out
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A v5 PUBLISH QoS 0 to "a" with the given property block, payload "p".
fn publish_with_properties(props: &[u8]) -> Vec<u8> {
    let mut body = string(b"a");
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.push(b'p');
    frame(0x30, &body)
}

/// §3.14.2.1: "The Reason Code and Property Length can
/// be omitted if the Reason Code is 0x00 (Normal disconnecton) and there are
/// no Properties. In this case the DISCONNECT has a Remaining Length of 0."
/// mqttbytes' `v5::read` refuses every zero-length body except PINGREQ and
/// PINGRESP, so it cannot read the most common DISCONNECT, the one its own
/// encoder writes for `Disconnect::new()`. Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt5_3_14_2_1_short_disconnect_mqttbytes_cannot_read() {
    let bytes = [0xe0, 0x00];
    assert_eq!(ours(&bytes).unwrap(), Model::Disconnect(0));
    assert!(mqttbytes_v5_decode(&bytes).is_err());
    let theirs = mqttbytes_v5_bytes(&mqttbytes::v5::Packet::Disconnect(
        mqttbytes::v5::Disconnect::new(),
    ));
    assert_eq!(theirs, bytes);
}

/// §3.14.2.2.1: "If the Remaining Length is less than 2, a value of 0 is
/// used" for the property length. mqttbytes demands the property length
/// after the reason code, so `E0 01 04` (Disconnect with Will Message) fails
/// there (and its encoder writes exactly that form for a non-normal reason
/// without properties). Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt5_3_14_2_2_1_disconnect_without_property_length() {
    let bytes = [0xe0, 0x01, 0x04];
    assert_eq!(ours(&bytes).unwrap(), Model::Disconnect(0x04));
    assert!(mqttbytes_v5_decode(&bytes).is_err());
    let theirs = mqttbytes_v5_bytes(&mqttbytes::v5::Packet::Disconnect(
        mqttbytes::v5::Disconnect {
            reason_code: mqttbytes::v5::DisconnectReasonCode::DisconnectWithWillMessage,
            properties: None,
        },
    ));
    assert_eq!(theirs, bytes);
}

/// §3.2.2.3.1: a 5.0 CONNACK always carries its Property Length (unlike
/// PUBACK or DISCONNECT, CONNACK has no short form). mqttbytes'
/// `ConnAck::new(..)` (properties `None`) writes `20 02 00 00`, which
/// neither a strict peer nor mqttbytes itself can read back. Verdict:
/// mqttbytes bug (emits a malformed packet); embermq reports the truncation,
/// and writes `20 03 00 00 00`.
#[test]
fn divergence_mqtt5_3_2_2_3_1_connack_without_property_length_mqttbytes_emits() {
    let theirs = mqttbytes_v5_bytes(&mqttbytes::v5::Packet::ConnAck(
        mqttbytes::v5::ConnAck::new(mqttbytes::v5::ConnectReturnCode::Success, false),
    ));
    assert_eq!(theirs, [0x20, 0x02, 0x00, 0x00]);
    assert!(mqttbytes_v5_decode(&theirs).is_err());
    assert!(ours(&theirs).is_err());
    let m = Model::ConnAck(ConnAck {
        session_present: false,
        code: 0,
    });
    assert_eq!(
        embermq_bytes(&m, V).unwrap(),
        [0x20, 0x03, 0x00, 0x00, 0x00]
    );
}

/// §3.3.2.3.3 (and the like for every single-valued property): "It is a
/// Protocol Error to include the Message Expiry Interval more than once."
/// mqttbytes keeps the last one. Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt5_3_3_2_3_duplicate_property_mqttbytes_keeps_last() {
    let bytes = publish_with_properties(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]);
    assert!(ours(&bytes).is_err());
    let Model::Publish(p) = from_mqttbytes_v5(&mqttbytes_v5_decode(&bytes).unwrap()) else {
        panic!()
    };
    assert_eq!(p.props.message_expiry_interval, Some(2));
}

/// §3.3.2.3.2: Payload Format Indicator is 0 or 1. mqttbytes stores any
/// byte. Verdict: mqttbytes is lax; embermq rejects 2.
#[test]
fn divergence_mqtt5_3_3_2_3_2_payload_format_indicator_out_of_range() {
    let bytes = publish_with_properties(&[0x01, 2]);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v5_decode(&bytes).is_ok());
}

/// [MQTT-3.3.2-8]: "A sender MUST NOT send a PUBLISH packet containing a
/// Topic Alias which has the value 0." mqttbytes accepts it. Verdict:
/// mqttbytes bug.
#[test]
fn divergence_mqtt5_3_3_2_8_topic_alias_zero_mqttbytes_accepts() {
    let bytes = publish_with_properties(&[0x23, 0, 0]);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v5_decode(&bytes).is_ok());
}

/// §3.8.2.1.2: "The Subscription Identifier can have the value of 1 to
/// 268,435,455. It is a Protocol Error if the Subscription Identifier has a
/// value of 0." mqttbytes accepts 0. Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt5_3_8_2_1_2_subscription_identifier_zero_mqttbytes_accepts() {
    let mut body = vec![0, 1, 2, 0x0b, 0x00];
    body.extend(string(b"a"));
    body.push(0x01);
    let bytes = frame(0x82, &body);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v5_decode(&bytes).is_ok());
}

/// [MQTT-3.8.3-4]: "It is a Protocol Error to set the No Local bit to 1 on a
/// Shared Subscription." mqttbytes does not know shared subscriptions.
/// Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt5_3_8_3_4_no_local_on_shared_subscription() {
    let mut body = vec![0, 1, 0];
    body.extend(string(b"$share/g/a"));
    body.push(0x05);
    let bytes = frame(0x82, &body);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v5_decode(&bytes).is_ok());
}

/// §3.8.3.1: bits 6 and 7 of the subscription options are reserved;
/// "The Server MUST treat a SUBSCRIBE packet as malformed if any of Reserved
/// bits in the Payload are non-zero" [MQTT-3.8.3-5]. mqttbytes does not
/// look at them. Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt5_3_8_3_5_subscribe_reserved_option_bits() {
    let mut body = vec![0, 1, 0];
    body.extend(string(b"a"));
    body.push(0xc1);
    let bytes = frame(0x82, &body);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v5_decode(&bytes).is_ok());
}

/// §3.15: AUTH (packet type 15) exists only in 5.0; mqttbytes 0.6 does not
/// implement it and rejects it as an invalid packet type. Verdict: a
/// missing feature of mqttbytes; embermq decodes it.
#[test]
fn divergence_mqtt5_3_15_auth_unknown_to_mqttbytes() {
    let mut props = vec![0x15];
    props.extend(string(b"SCRAM-SHA-1"));
    let mut body = vec![0x18, props.len() as u8];
    body.extend(props);
    let bytes = frame(0xf0, &body);
    match Packet::decode(&bytes, &DecodeOptions::new(V)).unwrap() {
        Decoded::Complete {
            value: Packet::Auth(a),
            ..
        } => {
            assert_eq!(a.reason_code, ReasonCode(0x18));
            assert_eq!(a.properties.authentication_method(), Some("SCRAM-SHA-1"));
        }
        other => panic!("{other:?}"),
    }
    assert!(mqttbytes_v5_decode(&bytes).is_err());
}

/// Server-to-client PUBLISH may carry several Subscription Identifiers
/// (§3.3.2.3.8); both codecs keep all of them, in order. Agreement.
#[test]
fn agreement_mqtt5_3_3_2_3_8_several_subscription_identifiers() {
    let bytes = publish_with_properties(&[0x0b, 0x81, 0x01, 0x0b, 0x02]);
    let Model::Publish(p) = ours(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(p.props.subscription_identifiers, vec![129, 2]);
    assert_eq!(
        from_mqttbytes_v5(&mqttbytes_v5_decode(&bytes).unwrap()),
        Model::Publish(p)
    );
}

/// Reason codes that do not belong to the packet (§3.4.2.1: 0x92 is not a
/// PUBACK code) are refused by both. Agreement.
#[test]
fn agreement_mqtt5_3_4_2_1_foreign_reason_code_refused_by_both() {
    let bytes = frame(0x40, &[0, 1, 0x92]);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v5_decode(&bytes).is_err());
}

/// A property that does not belong to the packet (Session Expiry Interval
/// in PUBLISH, §2.2.2.2 Table 2-4) is refused by both. Agreement.
#[test]
fn agreement_mqtt5_2_2_2_2_foreign_property_refused_by_both() {
    let bytes = publish_with_properties(&[0x11, 0, 0, 0, 1]);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v5_decode(&bytes).is_err());
}

/// §3.3.2.3.7: "The User Property is allowed to appear multiple times to
/// represent multiple name, value pairs. The same name is allowed to appear
/// more than once", and the receiver keeps their order ([MQTT-3.3.2-18]:
/// "The Server MUST maintain the order of User Properties when forwarding"). Both codecs keep duplicates in order. Agreement.
#[test]
fn agreement_mqtt5_user_properties_repeat_in_order() {
    let mut props = vec![0x26];
    props.extend(string(b"k"));
    props.extend(string(b"1"));
    props.push(0x26);
    props.extend(string(b"k"));
    props.extend(string(b"2"));
    let bytes = publish_with_properties(&props);
    let Model::Publish(p) = ours(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(
        p.props.user_properties,
        vec![("k".into(), "1".into()), ("k".into(), "2".into())]
    );
    assert_eq!(
        from_mqttbytes_v5(&mqttbytes_v5_decode(&bytes).unwrap()),
        Model::Publish(p)
    );
}
