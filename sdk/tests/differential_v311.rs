//! Differential tests, MQTT 3.1.1: embermq against mqttbytes 0.6 (`v4`).
//!
//! Properties over generated packets (generators and the model in
//! `support/`): what embermq emits mqttbytes decodes to the same fields,
//! what mqttbytes emits embermq decodes to the same fields, and for 3.1.1
//! (no properties, hence one canonical encoding) both emit the same bytes.
//!
//! Then one named test per disagreement found, each with the statement of
//! the specification that decides and a verdict. In every one of them the
//! spec sides with embermq; none is hidden from the properties by anything
//! but the generators' staying inside what mqttbytes can represent (non-empty
//! user name and password, UTF-8 passwords).
mod support;

use embermq::codec::{DecodeError, DecodeOptions, Decoded, Packet, ProtocolVersion};
use proptest::prelude::*;
use support::*;

const V: ProtocolVersion = ProtocolVersion::V311;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Sanity of the harness itself: the model survives mqttbytes' own
    /// encode → decode, so a disagreement below is a codec's, not the model's.
    #[test]
    fn harness_model_round_trips_through_mqttbytes(m in model_v311()) {
        let bytes = mqttbytes_v4_bytes(&to_mqttbytes_v4(&m));
        let back = from_mqttbytes_v4(&mqttbytes_v4_decode(&bytes).unwrap());
        prop_assert_eq!(back, m);
    }

    #[test]
    fn embermq_emits_mqttbytes_decodes_same_fields(m in model_v311()) {
        let bytes = embermq_bytes(&m, V).unwrap();
        let theirs = mqttbytes_v4_decode(&bytes).unwrap();
        prop_assert_eq!(from_mqttbytes_v4(&theirs), m);
    }

    #[test]
    fn mqttbytes_emits_embermq_decodes_same_fields(m in model_v311()) {
        let bytes = mqttbytes_v4_bytes(&to_mqttbytes_v4(&m));
        prop_assert_eq!(embermq_decode(&bytes, V).unwrap(), m);
    }

    /// 3.1.1 leaves no freedom in encoding a packet (field order is fixed,
    /// the remaining length is minimal), so the two must agree byte for byte.
    #[test]
    fn both_emit_identical_bytes(m in model_v311()) {
        let ours = embermq_bytes(&m, V).unwrap();
        let theirs = mqttbytes_v4_bytes(&to_mqttbytes_v4(&m));
        prop_assert_eq!(ours, theirs);
    }

    /// Valid packets with one byte changed: where both codecs still accept
    /// the bytes, they read the same fields (where only mqttbytes accepts,
    /// it is one of the named divergences below, or the test would not say
    /// so: this property only compares).
    #[test]
    fn mutated_packets_accepted_by_both_decode_the_same(
        m in model_v311(), at in any::<proptest::sample::Index>(), value in any::<u8>()
    ) {
        let mut bytes = mqttbytes_v4_bytes(&to_mqttbytes_v4(&m));
        let at = at.index(bytes.len());
        bytes[at] = value;
        let Ok(theirs) = mqttbytes_v4_decode_prefix(&bytes) else { return Ok(()) };
        if let Ok(Decoded::Complete { value, .. }) = Packet::decode(&bytes, &DecodeOptions::new(V)) {
            prop_assert_eq!(from_embermq(&value, V), from_mqttbytes_v4(&theirs), "bytes {:02x?}", bytes);
        }
    }

    /// Whatever mqttbytes accepts from random bytes, embermq either rejects
    /// (the named divergences below) or decodes to the same fields.
    #[test]
    fn random_bytes_accepted_by_both_decode_the_same(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let Ok(theirs) = mqttbytes_v4_decode_prefix(&bytes) else { return Ok(()) };
        if let Ok(Decoded::Complete { value, .. }) = Packet::decode(&bytes, &DecodeOptions::new(V)) {
            prop_assert_eq!(from_embermq(&value, V), from_mqttbytes_v4(&theirs));
        }
    }
}

/// mqttbytes decode of the first packet in `bytes` (tolerating trailing bytes).
fn mqttbytes_v4_decode_prefix(bytes: &[u8]) -> Result<mqttbytes::v4::Packet, mqttbytes::Error> {
    let mut buf = bytes::BytesMut::from(bytes);
    mqttbytes::v4::read(&mut buf, 1 << 28)
}

fn ours(bytes: &[u8]) -> Result<Model, DecodeError> {
    embermq_decode(bytes, V)
}

/// Prefixes a 3.1.1 CONNECT variable header ("MQTT", level 4, `flags`,
/// keep alive 60) to `payload` and frames it.
fn connect_bytes(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
    body.extend_from_slice(payload);
    frame(0x10, &body)
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

/// [MQTT-3.1.2-3]: "The Server MUST validate that the reserved flag in the
/// CONNECT Control Packet is set to zero and disconnect the Client if it is
/// not zero." mqttbytes ignores the bit. Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt_3_1_2_3_reserved_connect_flag_mqttbytes_accepts() {
    let bytes = connect_bytes(0x03, &string(b"id"));
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v4_decode(&bytes).is_ok());
}

/// [MQTT-3.1.2-22]: "If the User Name Flag is set to 0, the Password Flag
/// MUST be set to 0." mqttbytes decodes such a CONNECT, and its encoder
/// produces one from `Login { username: "", password: "pw" }` (an empty user
/// name is written as no user name). Verdict: mqttbytes bug on both sides;
/// embermq rejects the bytes.
#[test]
fn divergence_mqtt_3_1_2_22_password_without_user_name() {
    let mut payload = string(b"id");
    payload.extend(string(b"pw"));
    let bytes = connect_bytes(0x42, &payload);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v4_decode(&bytes).is_ok());

    let mut connect = mqttbytes::v4::Connect::new("id");
    connect.set_login("", "pw");
    let theirs = mqttbytes_v4_bytes(&mqttbytes::v4::Packet::Connect(connect));
    assert_eq!(theirs[9], 0x42, "password flag without user name flag");
    assert!(ours(&theirs).is_err());
}

/// §3.1.3.5: the password is Binary Data, any bytes. mqttbytes stores it as
/// a `String` and rejects a password that is not UTF-8. Verdict: mqttbytes
/// bug; embermq keeps the bytes.
#[test]
fn divergence_mqtt_3_1_3_5_binary_password_mqttbytes_rejects() {
    let mut payload = string(b"id");
    payload.extend(string(b"user"));
    payload.extend(string(&[0xff, 0x00, 0xfe]));
    let bytes = connect_bytes(0xc2, &payload);
    match Packet::decode(&bytes, &DecodeOptions::new(V)).unwrap() {
        Decoded::Complete {
            value: Packet::Connect(c),
            ..
        } => {
            assert_eq!(c.password, Some(&[0xff, 0x00, 0xfe][..]));
        }
        other => panic!("{other:?}"),
    }
    assert!(mqttbytes_v4_decode(&bytes).is_err());
}

/// §1.5.3 allows zero-length strings, so a user name flag with an empty user
/// name is a valid CONNECT. mqttbytes decodes it as no login at all (it
/// keys "present" on non-empty), and cannot emit it. Verdict: mqttbytes
/// loses information; embermq keeps `Some("")`.
#[test]
fn divergence_mqtt_1_5_3_empty_user_name_is_present_mqttbytes_drops_it() {
    let mut payload = string(b"id");
    payload.extend(string(b""));
    let bytes = connect_bytes(0x82, &payload);
    let Model::Connect(c) = ours(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(c.username.as_deref(), Some(""));
    let mqttbytes::v4::Packet::Connect(theirs) = mqttbytes_v4_decode(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(theirs.login, None);
}

/// [MQTT-3.1.3-6]/[MQTT-3.1.3-7]: a zero-length client identifier is a valid
/// CONNECT (the server assigns one or refuses with return code 0x02; that is
/// the server's decision, not the codec's). Both codecs agree: decoded.
#[test]
fn agreement_mqtt_3_1_3_6_empty_client_id_decodes_in_both() {
    let bytes = connect_bytes(0x02, &string(b""));
    let Model::Connect(c) = ours(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(c.client_id, "");
    assert_eq!(
        from_mqttbytes_v4(&mqttbytes_v4_decode(&bytes).unwrap()),
        Model::Connect(c)
    );
}

/// [MQTT-3.8.3-3]: "The payload of a SUBSCRIBE packet MUST contain at least
/// one Topic Filter / QoS pair"; [MQTT-3.10.3-2] the same for UNSUBSCRIBE.
/// mqttbytes decodes both empty, and emits them
/// (`Subscribe::empty_subscribe()`). Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt_3_8_3_3_and_3_10_3_2_no_filters_mqttbytes_accepts() {
    for first in [0x82, 0xa2] {
        let bytes = frame(first, &[0, 1]);
        assert!(ours(&bytes).is_err());
        assert!(mqttbytes_v4_decode(&bytes).is_ok());
    }
    let mut empty = mqttbytes::v4::Subscribe::empty_subscribe();
    empty.pkid = 1;
    let theirs = mqttbytes_v4_bytes(&mqttbytes::v4::Packet::Subscribe(empty));
    assert!(ours(&theirs).is_err());
}

/// [MQTT-3-8.3-4]: "The Server MUST treat a SUBSCRIBE packet as malformed
/// ... if any of Reserved bits in the payload are non-zero". mqttbytes reads
/// only the two QoS bits. Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt_3_8_3_4_subscribe_reserved_option_bits_mqttbytes_accepts() {
    let mut body = vec![0, 1];
    body.extend(string(b"a/b"));
    body.push(0x05);
    let bytes = frame(0x82, &body);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v4_decode(&bytes).is_ok());
}

/// [MQTT-3.8.1-1], [MQTT-3.6.1-1], [MQTT-3.10.1-1], [MQTT-2.2.2-2]: the
/// fixed-header flags of SUBSCRIBE, PUBREL and UNSUBSCRIBE are 0b0010, of
/// the others 0; anything else is malformed. mqttbytes never looks at them.
/// Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt_2_2_2_2_reserved_fixed_header_flags_mqttbytes_accepts() {
    let mut sub = vec![0, 1];
    sub.extend(string(b"a"));
    sub.push(0);
    for bytes in [
        frame(0x80, &sub),
        frame(0x60, &[0, 1]),
        frame(0x41, &[0, 1]),
        vec![0xc1, 0],
    ] {
        assert!(ours(&bytes).is_err(), "{bytes:02x?}");
        assert!(mqttbytes_v4_decode(&bytes).is_ok(), "{bytes:02x?}");
    }
}

/// [MQTT-3.3.2-2]: "The Topic Name in the PUBLISH Packet MUST NOT contain
/// wildcard characters." mqttbytes does not check. Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt_3_3_2_2_wildcard_in_publish_topic_mqttbytes_accepts() {
    for topic in [&b"a/+"[..], b"#"] {
        let bytes = frame(0x30, &string(topic));
        assert!(ours(&bytes).is_err());
        assert!(mqttbytes_v4_decode(&bytes).is_ok());
    }
}

/// [MQTT-3.3.1-2]: "The DUP flag MUST be set to 0 for all QoS 0 messages."
/// Verdict: mqttbytes accepts it (bug); embermq rejects.
#[test]
fn divergence_mqtt_3_3_1_2_dup_with_qos0_mqttbytes_accepts() {
    let bytes = frame(0x38, &string(b"a"));
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v4_decode(&bytes).is_ok());
}

/// [MQTT-1.5.3-2] (3.1.1 §1.5.3): "A UTF-8 encoded string MUST NOT include
/// an encoding of the null character U+0000." mqttbytes only checks UTF-8.
/// Verdict: mqttbytes bug.
#[test]
fn divergence_mqtt_1_5_3_2_nul_in_string_mqttbytes_accepts() {
    let bytes = frame(0x30, &string(b"a\0b"));
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v4_decode(&bytes).is_ok());
}

/// §3.2.2.1: CONNACK acknowledge flags bits 7-1 "are reserved and MUST be
/// set to 0". mqttbytes masks bit 0 and ignores the rest. Verdict: mqttbytes
/// is lax; embermq rejects.
#[test]
fn divergence_mqtt_3_2_2_1_connack_reserved_flags_mqttbytes_accepts() {
    let bytes = frame(0x20, &[0x02, 0x00]);
    assert!(ours(&bytes).is_err());
    assert!(mqttbytes_v4_decode(&bytes).is_ok());
}

/// §2.2.3 of 3.1.1 gives the encoding algorithm but, unlike 5.0
/// [MQTT-1.5.5-1], no statement that the encoding be minimal. embermq rejects
/// a non-minimal remaining length in both versions by choice (no conforming
/// sender writes one); mqttbytes accepts it. Verdict: not a mqttbytes bug in
/// 3.1.1; a deliberate strictness of embermq (see `Violation::NonMinimalVarint`).
#[test]
fn divergence_non_minimal_remaining_length_embermq_stricter_by_choice() {
    let bytes = [0xc0, 0x80, 0x00];
    assert!(ours(&bytes).is_err());
    assert_eq!(
        mqttbytes_v4_decode(&bytes).unwrap(),
        mqttbytes::v4::Packet::PingReq
    );
}

/// §1.5.3: a UTF-8 string is at most 65 535 bytes (two-byte length). The
/// mqttbytes encoder writes `len as u16`, so a 65 536-byte topic goes out
/// with length 0 and the packet is garbage; embermq refuses to encode it.
/// Verdict: mqttbytes bug (emits a malformed packet).
#[test]
fn divergence_mqtt_1_5_3_oversized_string_mqttbytes_truncates_length() {
    let topic = "a".repeat(65_536);
    let theirs = mqttbytes_v4_bytes(&mqttbytes::v4::Packet::Publish(
        mqttbytes::v4::Publish::new(topic.clone(), mqttbytes::QoS::AtMostOnce, vec![]),
    ));
    // Length prefix wrapped to 0: embermq reads an empty topic, which 3.1.1
    // forbids [MQTT-4.7.3-1].
    assert!(ours(&theirs).is_err());
    let m = Model::Publish(Publish {
        dup: false,
        qos: 0,
        retain: false,
        topic,
        pkid: 0,
        payload: vec![],
        props: PublishProps::default(),
    });
    assert!(embermq_bytes(&m, V).is_err());
}

/// Maximum packet size: mqttbytes compares its limit with the *remaining*
/// length, embermq with the whole packet, fixed header included (the 5.0
/// definition, §3.1.2.11.4: "the total number of bytes in an MQTT Control
/// Packet"; 3.1.1 has no such limit and embermq applies the same meaning).
/// A packet of 2 + 8 bytes under a limit of 9: mqttbytes lets it through.
/// Verdict: mqttbytes counts differently (off by the fixed header).
#[test]
fn divergence_maximum_packet_size_counts_the_fixed_header() {
    let bytes = frame(0x30, &[0, 1, b'a', 1, 2, 3, 4, 5]);
    assert_eq!(bytes.len(), 10);
    let opts = DecodeOptions::new(V).with_max_packet_size(9);
    assert!(matches!(
        Packet::decode(&bytes, &opts),
        Err(DecodeError::PacketTooLarge { .. })
    ));
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    assert!(mqttbytes::v4::read(&mut buf, 9).is_ok());
    // At exactly the packet's size both accept.
    let opts = DecodeOptions::new(V).with_max_packet_size(10);
    assert!(Packet::decode(&bytes, &opts).is_ok());
}
