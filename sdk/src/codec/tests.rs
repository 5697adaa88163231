//! Packet-level tests: literal byte vectors per packet and version (the
//! specification's own examples where it gives them), one test per
//! validation rule named for its statement, truncation at every prefix, and
//! the property tests (emit → decode round trip, arbitrary bytes).

extern crate alloc;

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::strategies;
use super::*;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn decode(bytes: &[u8], version: ProtocolVersion) -> Result<Packet<'_>, DecodeError> {
    match Packet::decode(bytes, &DecodeOptions::new(version))? {
        Decoded::Complete { value, len } => {
            assert_eq!(len, bytes.len(), "decode consumed {len} of {}", bytes.len());
            Ok(value)
        }
        Decoded::Incomplete { needed } => panic!("incomplete, needs {needed}"),
    }
}

fn invalid(bytes: &[u8], version: ProtocolVersion) -> Violation {
    match decode(bytes, version) {
        Err(DecodeError::Invalid(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

fn encode(packet: &Packet<'_>, version: ProtocolVersion) -> Result<Vec<u8>, EncodeError> {
    let mut buf = vec![0u8; packet.encoded_len(version)];
    let len = packet.encode(&mut buf, version)?;
    assert_eq!(len, buf.len());
    Ok(buf)
}

fn encode_err(packet: &Packet<'_>, version: ProtocolVersion) -> EncodeError {
    let mut buf = vec![0u8; packet.encoded_len(version) + 16];
    packet
        .encode(&mut buf, version)
        .expect_err("encode should fail")
}

/// Decodes `bytes`, checks the packet, and that encoding it gives `bytes`
/// back (for canonical encodings) and that every prefix is Incomplete.
fn check_canonical(bytes: &[u8], version: ProtocolVersion, expected: Packet<'_>) {
    let packet = decode(bytes, version).unwrap();
    assert_eq!(packet, expected);
    assert_eq!(encode(&expected, version).unwrap(), bytes);
    check_prefixes(bytes, version);
}

/// Every strict prefix of a valid packet is Incomplete, never an error.
fn check_prefixes(bytes: &[u8], version: ProtocolVersion) {
    let opts = DecodeOptions::new(version);
    for cut in 0..bytes.len() {
        match Packet::decode(&bytes[..cut], &opts) {
            Ok(Decoded::Incomplete { needed }) => {
                assert!(
                    needed >= 1 && cut + needed <= bytes.len(),
                    "cut {cut}: needs {needed}"
                );
                // Once the header is complete, `needed` is exact.
                if let Ok(Decoded::Complete { value: header, .. }) =
                    FixedHeader::decode(&bytes[..cut], &opts)
                {
                    assert_eq!(cut + needed, header.packet_len());
                }
            }
            other => panic!("prefix of {cut} bytes gave {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- CONNECT

/// 3.1.1 §3.1.2.10 example variable header (level 4, flags 0xCE, keep
/// alive 10) with a payload of client id, will, user name and password.
#[test]
fn mqtt_3_1_2_10_connect_example_v311() {
    let bytes = [
        0x10, 0x1f, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xce, 0x00, 0x0a, // header
        0x00, 0x03, b'c', b'i', b'd', // client id
        0x00, 0x03, b'w', b'/', b't', 0x00, 0x03, b'b', b'y', b'e', // will
        0x00, 0x01, b'u', 0x00, 0x01, b'p', // user name, password
    ];
    check_canonical(
        &bytes,
        V3,
        Packet::Connect(Connect {
            protocol_version: V3,
            clean_start: true,
            keep_alive: 10,
            client_id: "cid",
            will: Some(Will {
                topic: "w/t",
                payload: b"bye",
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties::NONE,
            }),
            username: Some("u"),
            password: Some(b"p"),
            properties: Properties::NONE,
        }),
    );
}

/// 5.0 §3.1.2.11 example: level 5, flags 0xC2, keep alive 10, properties
/// of length 5 holding Session Expiry Interval 10.
#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_1_2_11_connect_example_v5() {
    let bytes = [
        0x10, 0x19, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xc2, 0x00, 0x0a, // header
        0x05, 0x11, 0x00, 0x00, 0x00, 0x0a, // properties
        0x00, 0x01, b'c', 0x00, 0x01, b'u', 0x00, 0x01, b'p',
    ];
    let fields = PropertyFields {
        session_expiry_interval: Some(10),
        ..PropertyFields::NONE
    };
    let expected = Packet::Connect(Connect {
        protocol_version: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: "c",
        will: None,
        username: Some("u"),
        password: Some(b"p"),
        properties: Properties::from_fields(&fields),
    });
    check_canonical(&bytes, V5, expected);
    // CONNECT carries its own version: decoding with 3.1.1 options gives 5.0.
    assert_eq!(decode(&bytes, V3).unwrap(), expected);
}

fn connect_bytes(name: &[u8], level: u8, flags: u8) -> Vec<u8> {
    let mut body = vec![0x00, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0x00, 0x3c]);
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(&[0x00, 0x01, b'c']);
    let mut out = vec![0x10, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn mqtt_3_1_2_1_protocol_name_other_than_mqtt_rejected() {
    assert_eq!(
        invalid(&connect_bytes(b"MQIsdp", 3, 0x02), V3),
        Violation::InvalidProtocolName
    );
    assert_eq!(
        invalid(&connect_bytes(b"mqtt", 4, 0x02), V3),
        Violation::InvalidProtocolName
    );
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_rejected() {
    let v = invalid(&connect_bytes(b"MQTT", 3, 0x02), V3);
    assert_eq!(v, Violation::UnsupportedProtocolLevel { level: 3 });
    assert_eq!(v.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
}

#[test]
fn mqtt_3_1_2_3_reserved_connect_flag_rejected() {
    assert_eq!(
        invalid(&connect_bytes(b"MQTT", 4, 0x03), V3),
        Violation::ReservedConnectFlag
    );
    assert_eq!(
        invalid(&connect_bytes(b"MQTT", 5, 0x03), V5),
        Violation::ReservedConnectFlag
    );
}

#[test]
fn mqtt_3_1_2_13_will_qos_without_will_flag_rejected() {
    assert_eq!(
        invalid(&connect_bytes(b"MQTT", 4, 0x0a), V3),
        Violation::WillFlagsWithoutWill
    );
}

#[test]
fn mqtt_3_1_2_15_will_retain_without_will_flag_rejected() {
    assert_eq!(
        invalid(&connect_bytes(b"MQTT", 4, 0x22), V3),
        Violation::WillFlagsWithoutWill
    );
}

#[test]
fn mqtt_3_1_2_14_will_qos_3_rejected() {
    assert_eq!(
        invalid(&connect_bytes(b"MQTT", 4, 0x1e), V3),
        Violation::InvalidQos
    );
}

#[test]
fn mqtt_3_1_2_22_password_without_username_rejected_in_v311() {
    let mut bytes = connect_bytes(b"MQTT", 4, 0x42);
    bytes.extend_from_slice(&[0x00, 0x01, b'p']);
    bytes[1] += 3;
    assert_eq!(invalid(&bytes, V3), Violation::PasswordWithoutUsername);
    // 5.0 allows it (§3.1.2.9).
    let mut bytes = connect_bytes(b"MQTT", 5, 0x42);
    bytes.extend_from_slice(&[0x00, 0x01, b'p']);
    bytes[1] += 3;
    assert!(decode(&bytes, V5).is_ok());
    // And emit refuses it in 3.1.1.
    let connect = Packet::Connect(Connect {
        protocol_version: V3,
        clean_start: true,
        keep_alive: 0,
        client_id: "",
        will: None,
        username: None,
        password: Some(b"p"),
        properties: Properties::NONE,
    });
    assert_eq!(
        encode_err(&connect, V3),
        EncodeError::Invalid(Violation::PasswordWithoutUsername)
    );
}

#[test]
fn mqtt_3_1_3_11_will_topic_with_wildcard_rejected() {
    // Will flag, will topic "a/#", empty will payload.
    let bytes = [
        0x10, 0x14, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x06, 0x00, 0x00, 0x00, 0x01, b'c',
        0x00, 0x03, b'a', b'/', b'#', 0x00, 0x00,
    ];
    assert_eq!(invalid(&bytes, V3), Violation::WildcardInTopicName);
}

#[test]
fn connect_trailing_bytes_rejected() {
    let mut bytes = connect_bytes(b"MQTT", 4, 0x02);
    bytes.push(0);
    bytes[1] += 1;
    assert_eq!(invalid(&bytes, V3), Violation::TrailingBytes);
}

// ---------------------------------------------------------------- CONNACK

#[test]
fn mqtt_3_2_2_connack_v311() {
    check_canonical(
        &[0x20, 0x02, 0x01, 0x00],
        V3,
        Packet::Connack(Connack {
            session_present: true,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::NONE,
        }),
    );
    // Return code 5 (not authorized) maps to 0x87.
    check_canonical(
        &[0x20, 0x02, 0x00, 0x05],
        V3,
        Packet::Connack(Connack {
            session_present: false,
            reason_code: ReasonCode::NOT_AUTHORIZED,
            properties: Properties::NONE,
        }),
    );
}

#[test]
fn mqtt_3_2_2_3_connack_return_code_above_5_rejected() {
    assert_eq!(
        invalid(&[0x20, 0x02, 0x00, 0x06], V3),
        Violation::InvalidReasonCode {
            code: ReasonCode(6),
            packet_type: PacketType::Connack
        }
    );
    // A 5.0 code without a 3.1.1 equivalent cannot be emitted in 3.1.1.
    let connack = Packet::Connack(Connack {
        session_present: false,
        reason_code: ReasonCode::SERVER_BUSY,
        properties: Properties::NONE,
    });
    assert!(matches!(
        encode_err(&connack, V3),
        EncodeError::Invalid(Violation::InvalidReasonCode { .. })
    ));
}

#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_2_2_connack_with_properties() {
    let fields = PropertyFields {
        receive_maximum: Some(10),
        maximum_qos: Some(QoS::AtLeastOnce),
        ..PropertyFields::NONE
    };
    check_canonical(
        &[0x20, 0x08, 0x00, 0x00, 0x05, 0x21, 0x00, 0x0a, 0x24, 0x01],
        V5,
        Packet::Connack(Connack {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::from_fields(&fields),
        }),
    );
    let p = decode(
        &[0x20, 0x08, 0x00, 0x00, 0x05, 0x21, 0x00, 0x0a, 0x24, 0x01],
        V5,
    )
    .unwrap();
    let Packet::Connack(c) = p else { panic!() };
    assert_eq!(c.properties.receive_maximum(), Some(10));
    assert_eq!(c.properties.maximum_qos(), Some(QoS::AtLeastOnce));
}

#[test]
fn mqtt5_3_2_2_1_reserved_connack_flags_rejected() {
    assert_eq!(
        invalid(&[0x20, 0x03, 0x02, 0x00, 0x00], V5),
        Violation::ReservedConnackFlags
    );
    assert_eq!(
        invalid(&[0x20, 0x02, 0x80, 0x00], V3),
        Violation::ReservedConnackFlags
    );
}

#[test]
fn mqtt_3_2_2_4_session_present_with_error_rejected() {
    assert_eq!(
        invalid(&[0x20, 0x02, 0x01, 0x05], V3),
        Violation::SessionPresentWithError
    );
    assert_eq!(
        invalid(&[0x20, 0x03, 0x01, 0x87, 0x00], V5),
        Violation::SessionPresentWithError
    );
}

#[test]
fn mqtt5_3_2_2_2_connack_reason_code_not_allowed_rejected() {
    // 0x04 (Disconnect with Will) is a DISCONNECT code.
    assert_eq!(
        invalid(&[0x20, 0x03, 0x00, 0x04, 0x00], V5),
        Violation::InvalidReasonCode {
            code: ReasonCode(4),
            packet_type: PacketType::Connack
        }
    );
}

// ---------------------------------------------------------------- PUBLISH

#[test]
fn mqtt_3_3_publish_qos1_v311() {
    check_canonical(
        &[
            0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, b'h', b'i',
        ],
        V3,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a/b",
            packet_id: Some(10),
            properties: Properties::NONE,
            payload: b"hi",
        }),
    );
}

#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_3_publish_qos2_dup_retain_with_topic_alias() {
    let fields = PropertyFields {
        topic_alias: Some(1),
        ..PropertyFields::NONE
    };
    check_canonical(
        &[
            0x3d, 0x0a, 0x00, 0x01, b't', 0x00, 0x05, 0x03, 0x23, 0x00, 0x01, b'x',
        ],
        V5,
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: "t",
            packet_id: Some(5),
            properties: Properties::from_fields(&fields),
            payload: b"x",
        }),
    );
}

#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_3_2_3_4_empty_topic_with_alias_accepted() {
    let p = decode(&[0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x07], V5).unwrap();
    let Packet::Publish(p) = p else { panic!() };
    assert_eq!((p.topic, p.properties.topic_alias()), ("", Some(7)));
}

#[test]
fn mqtt_4_7_3_1_empty_publish_topic_rejected() {
    assert_eq!(
        invalid(&[0x30, 0x02, 0x00, 0x00], V3),
        Violation::EmptyTopicName
    );
    assert_eq!(
        invalid(&[0x30, 0x03, 0x00, 0x00, 0x00], V5),
        Violation::EmptyTopicName
    );
}

#[test]
fn mqtt_3_3_2_2_wildcard_in_publish_topic_rejected() {
    assert_eq!(
        invalid(&[0x30, 0x03, 0x00, 0x01, b'+'], V3),
        Violation::WildcardInTopicName
    );
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a/#",
        packet_id: None,
        properties: Properties::NONE,
        payload: b"",
    });
    assert_eq!(
        encode_err(&publish, V3),
        EncodeError::Invalid(Violation::WildcardInTopicName)
    );
}

#[test]
fn mqtt_3_3_1_4_publish_qos3_rejected() {
    assert_eq!(
        invalid(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01], V3),
        Violation::InvalidQos
    );
}

#[test]
fn mqtt_3_3_1_2_dup_on_qos0_rejected() {
    assert_eq!(
        invalid(&[0x38, 0x03, 0x00, 0x01, b'a'], V3),
        Violation::DupWithQos0
    );
}

#[test]
fn mqtt_2_3_1_1_zero_packet_id_rejected() {
    assert_eq!(
        invalid(&[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00], V3),
        Violation::ZeroPacketId
    );
    assert_eq!(
        invalid(&[0x40, 0x02, 0x00, 0x00], V3),
        Violation::ZeroPacketId
    );
    assert_eq!(
        invalid(&[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], V3),
        Violation::ZeroPacketId
    );
    assert_eq!(
        invalid(&[0xa2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'], V3),
        Violation::ZeroPacketId
    );
}

#[test]
fn mqtt_2_3_1_5_packet_id_presence_checked_on_emit() {
    let mut publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a",
        packet_id: Some(1),
        properties: Properties::NONE,
        payload: b"",
    };
    assert_eq!(
        encode_err(&Packet::Publish(publish), V3),
        EncodeError::Invalid(Violation::PacketIdMismatch)
    );
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = None;
    assert_eq!(
        encode_err(&Packet::Publish(publish), V3),
        EncodeError::Invalid(Violation::PacketIdMismatch)
    );
    publish.packet_id = Some(0);
    assert_eq!(
        encode_err(&Packet::Publish(publish), V3),
        EncodeError::Invalid(Violation::ZeroPacketId)
    );
}

#[test]
fn mqtt_1_5_3_1_ill_formed_utf8_topic_rejected() {
    assert_eq!(
        invalid(&[0x30, 0x05, 0x00, 0x03, 0xed, 0xa0, 0x80], V3),
        Violation::InvalidUtf8
    );
}

#[test]
fn mqtt_1_5_3_2_null_in_topic_rejected() {
    assert_eq!(
        invalid(&[0x30, 0x04, 0x00, 0x02, b'a', 0x00], V3),
        Violation::NullCharacter
    );
}

#[test]
fn mqtt_1_5_3_string_longer_than_65535_refused_on_emit() {
    let long = "a".repeat(65_536);
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: &long,
        packet_id: None,
        properties: Properties::NONE,
        payload: b"",
    });
    assert_eq!(
        encode_err(&publish, V3),
        EncodeError::Invalid(Violation::StringTooLong { len: 65_536 })
    );
}

#[test]
fn mqtt_2_2_3_string_past_remaining_length_rejected() {
    // Topic length 5, but only 3 bytes follow within the packet.
    assert_eq!(
        invalid(&[0x30, 0x05, 0x00, 0x05, b'a', b'b', b'c'], V3),
        Violation::Truncated
    );
}

#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_3_2_3_property_not_allowed_in_publish_rejected() {
    // Session Expiry Interval in a PUBLISH.
    assert_eq!(
        invalid(
            &[
                0x30, 0x09, 0x00, 0x01, b'a', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01
            ],
            V5
        ),
        Violation::PropertyNotAllowed {
            id: 0x11,
            packet_type: PacketType::Publish
        }
    );
}

#[test]
fn publish_properties_refused_in_v311() {
    let fields = PropertyFields {
        message_expiry_interval: Some(1),
        ..PropertyFields::NONE
    };
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a",
        packet_id: None,
        properties: Properties::from_fields(&fields),
        payload: b"",
    });
    assert_eq!(
        encode_err(&publish, V3),
        EncodeError::NotInVersion {
            what: "properties",
            version: V3
        }
    );
}

// ------------------------------------------- PUBACK PUBREC PUBREL PUBCOMP

#[test]
fn mqtt_3_4_to_3_7_acks_v311() {
    let ack = PubAck::new(1);
    check_canonical(&[0x40, 0x02, 0x00, 0x01], V3, Packet::Puback(ack));
    check_canonical(&[0x50, 0x02, 0x00, 0x01], V3, Packet::Pubrec(ack));
    check_canonical(&[0x62, 0x02, 0x00, 0x01], V3, Packet::Pubrel(ack));
    check_canonical(&[0x70, 0x02, 0x00, 0x01], V3, Packet::Pubcomp(ack));
    assert_eq!(
        invalid(&[0x40, 0x03, 0x00, 0x01, 0x00], V3),
        Violation::TrailingBytes
    );
}

#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_4_2_1_ack_short_forms() {
    check_canonical(
        &[0x40, 0x02, 0x00, 0x01],
        V5,
        Packet::Puback(PubAck::new(1)),
    );
    let no_match = PubAck {
        packet_id: 1,
        reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        properties: Properties::NONE,
    };
    check_canonical(
        &[0x40, 0x03, 0x00, 0x01, 0x10],
        V5,
        Packet::Puback(no_match),
    );
    // The long form with an empty property block decodes to the same.
    assert_eq!(
        decode(&[0x40, 0x04, 0x00, 0x01, 0x10, 0x00], V5).unwrap(),
        Packet::Puback(no_match)
    );
    let fields = PropertyFields {
        reason_string: Some("no"),
        ..PropertyFields::NONE
    };
    check_canonical(
        &[
            0x70, 0x09, 0x00, 0x02, 0x92, 0x05, 0x1f, 0x00, 0x02, b'n', b'o',
        ],
        V5,
        Packet::Pubcomp(PubAck {
            packet_id: 2,
            reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            properties: Properties::from_fields(&fields),
        }),
    );
}

#[test]
fn mqtt5_3_6_2_1_pubrel_reason_code_not_allowed_rejected() {
    assert_eq!(
        invalid(&[0x62, 0x03, 0x00, 0x01, 0x10], V5),
        Violation::InvalidReasonCode {
            code: ReasonCode(0x10),
            packet_type: PacketType::Pubrel
        }
    );
    let ack = PubAck {
        packet_id: 1,
        reason_code: ReasonCode(0x10),
        properties: Properties::NONE,
    };
    assert!(matches!(
        encode_err(&Packet::Pubrel(ack), V5),
        EncodeError::Invalid(Violation::InvalidReasonCode { .. })
    ));
}

#[test]
fn mqtt_3_6_1_1_pubrel_flags_must_be_0010() {
    assert_eq!(
        invalid(&[0x60, 0x02, 0x00, 0x01], V3),
        Violation::InvalidFixedHeaderFlags {
            packet_type: PacketType::Pubrel,
            flags: 0
        }
    );
}

// ------------------------------------------------------ SUBSCRIBE SUBACK

/// 3.1.1 §3.8.3 example: packet id 10, "a/b" QoS 1, "c/d" QoS 2.
#[test]
fn mqtt_3_8_3_subscribe_example_v311() {
    let subs = [
        Subscription {
            filter: "a/b",
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        },
        Subscription {
            filter: "c/d",
            options: SubscriptionOptions::qos(QoS::ExactlyOnce),
        },
    ];
    let bytes = [
        0x82, 0x0e, 0x00, 0x0a, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd',
        0x02,
    ];
    check_canonical(
        &bytes,
        V3,
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            properties: Properties::NONE,
            subscriptions: Subscriptions::from_slice(&subs),
        }),
    );
    let Packet::Subscribe(s) = decode(&bytes, V3).unwrap() else {
        panic!()
    };
    assert_eq!(
        s.subscriptions.iter().map(|s| s.filter).collect::<Vec<_>>(),
        ["a/b", "c/d"]
    );
    assert_eq!(s.subscriptions.len(), 2);
}

#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_8_3_1_subscribe_options_v5() {
    let subs = [Subscription {
        filter: "a/+",
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        },
    }];
    let fields = PropertyFields {
        subscription_identifiers: &[3],
        ..PropertyFields::NONE
    };
    check_canonical(
        &[
            0x82, 0x0b, 0x00, 0x01, 0x02, 0x0b, 0x03, 0x00, 0x03, b'a', b'/', b'+', 0x2d,
        ],
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::from_fields(&fields),
            subscriptions: Subscriptions::from_slice(&subs),
        }),
    );
}

#[test]
fn mqtt_3_8_3_3_subscribe_without_filters_rejected() {
    assert_eq!(
        invalid(&[0x82, 0x02, 0x00, 0x01], V3),
        Violation::NoTopicFilters
    );
    assert_eq!(
        invalid(&[0x82, 0x03, 0x00, 0x01, 0x00], V5),
        Violation::NoTopicFilters
    );
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::NONE,
        subscriptions: Subscriptions::from_slice(&[]),
    });
    assert_eq!(
        encode_err(&subscribe, V3),
        EncodeError::Invalid(Violation::NoTopicFilters)
    );
}

#[test]
fn mqtt_3_8_3_4_reserved_subscription_options_rejected_v311() {
    // No Local bit is reserved in 3.1.1.
    assert_eq!(
        invalid(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04], V3),
        Violation::ReservedSubscriptionOptions
    );
    assert_eq!(
        invalid(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03], V3),
        Violation::InvalidQos
    );
}

#[test]
fn mqtt5_3_8_3_5_reserved_subscription_options_rejected() {
    assert_eq!(
        invalid(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40], V5),
        Violation::ReservedSubscriptionOptions
    );
}

#[test]
fn mqtt5_3_8_3_1_retain_handling_3_rejected() {
    assert_eq!(
        invalid(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30], V5),
        Violation::InvalidRetainHandling
    );
}

#[test]
fn mqtt5_3_8_3_4_no_local_on_shared_subscription_rejected() {
    let mut bytes = vec![0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0a];
    bytes.extend_from_slice(b"$share/g/a");
    bytes.push(0x04);
    assert_eq!(invalid(&bytes, V5), Violation::NoLocalOnSharedSubscription);
    *bytes.last_mut().unwrap() = 0x00;
    assert!(decode(&bytes, V5).is_ok());
}

#[test]
fn mqtt_4_7_1_2_invalid_filter_in_subscribe_rejected() {
    assert_eq!(
        invalid(
            &[0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b'a', b'#', b'b', 0x00],
            V3
        ),
        Violation::InvalidTopicFilter(crate::topic::TopicError::MisplacedMultiLevelWildcard)
    );
}

#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_8_2_1_two_subscription_identifiers_rejected() {
    assert_eq!(
        invalid(
            &[
                0x82, 0x0a, 0x00, 0x01, 0x04, 0x0b, 0x01, 0x0b, 0x02, 0x00, 0x01, b'a', 0x00
            ],
            V5
        ),
        Violation::DuplicateProperty { id: 0x0b }
    );
}

#[test]
fn mqtt_3_9_suback_v311_and_v5() {
    let codes = [ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR];
    check_canonical(
        &[0x90, 0x04, 0x00, 0x0a, 0x01, 0x80],
        V3,
        Packet::Suback(Suback {
            packet_id: 10,
            properties: Properties::NONE,
            reason_codes: ReasonCodes::from_slice(&codes),
        }),
    );
    let codes = [ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED];
    check_canonical(
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0xa2],
        V5,
        Packet::Suback(Suback {
            packet_id: 1,
            properties: Properties::NONE,
            reason_codes: ReasonCodes::from_slice(&codes),
        }),
    );
}

#[test]
fn mqtt_3_9_3_suback_code_invalid_rejected() {
    assert_eq!(
        invalid(&[0x90, 0x03, 0x00, 0x01, 0x03], V3),
        Violation::InvalidReasonCode {
            code: ReasonCode(3),
            packet_type: PacketType::Suback
        }
    );
    // 0xA2 is a 5.0 code only.
    assert_eq!(
        invalid(&[0x90, 0x03, 0x00, 0x01, 0xa2], V3),
        Violation::InvalidReasonCode {
            code: ReasonCode(0xa2),
            packet_type: PacketType::Suback
        }
    );
}

#[test]
fn mqtt_3_9_3_1_suback_without_codes_rejected() {
    assert_eq!(
        invalid(&[0x90, 0x02, 0x00, 0x01], V3),
        Violation::NoReasonCodes
    );
}

// -------------------------------------------------- UNSUBSCRIBE UNSUBACK

#[cfg(feature = "v5")]
#[test]
fn mqtt_3_10_unsubscribe_v311_and_v5() {
    let filters = ["a/b", "#"];
    let bytes = [
        0xa2, 0x0a, 0x00, 0x01, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, b'#',
    ];
    check_canonical(
        &bytes,
        V3,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 1,
            properties: Properties::NONE,
            filters: TopicFilters::from_slice(&filters),
        }),
    );
    let Packet::Unsubscribe(u) = decode(&bytes, V3).unwrap() else {
        panic!()
    };
    assert_eq!(u.filters.iter().collect::<Vec<_>>(), ["a/b", "#"]);
    let users = [UserProperty {
        name: "k",
        value: "v",
    }];
    let fields = PropertyFields {
        user_properties: &users,
        ..PropertyFields::NONE
    };
    check_canonical(
        &[
            0xa2, 0x0d, 0x00, 0x01, 0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', 0x00, 0x01,
            b'#',
        ],
        V5,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 1,
            properties: Properties::from_fields(&fields),
            filters: TopicFilters::from_slice(&["#"]),
        }),
    )
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters_rejected() {
    assert_eq!(
        invalid(&[0xa2, 0x02, 0x00, 0x01], V3),
        Violation::NoTopicFilters
    );
}

#[test]
fn mqtt_3_11_unsuback_v311_and_v5() {
    check_canonical(
        &[0xb0, 0x02, 0x00, 0x01],
        V3,
        Packet::Unsuback(Unsuback {
            packet_id: 1,
            properties: Properties::NONE,
            reason_codes: ReasonCodes::EMPTY,
        }),
    );
    let codes = [ReasonCode::NO_SUBSCRIPTION_EXISTED];
    check_canonical(
        &[0xb0, 0x04, 0x00, 0x01, 0x00, 0x11],
        V5,
        Packet::Unsuback(Unsuback {
            packet_id: 1,
            properties: Properties::NONE,
            reason_codes: ReasonCodes::from_slice(&codes),
        }),
    );
    assert_eq!(
        invalid(&[0xb0, 0x03, 0x00, 0x01, 0x00], V5),
        Violation::NoReasonCodes
    );
    assert_eq!(
        encode_err(
            &Packet::Unsuback(Unsuback {
                packet_id: 1,
                properties: Properties::NONE,
                reason_codes: ReasonCodes::from_slice(&codes),
            }),
            V3
        ),
        EncodeError::NotInVersion {
            what: "UNSUBACK reason codes",
            version: V3
        }
    );
}

// ----------------------------------------- PINGREQ PINGRESP DISCONNECT AUTH

#[test]
fn mqtt_3_12_3_13_ping() {
    check_canonical(&[0xc0, 0x00], V3, Packet::Pingreq);
    check_canonical(&[0xd0, 0x00], V5, Packet::Pingresp);
    assert_eq!(invalid(&[0xc0, 0x01, 0x00], V3), Violation::TrailingBytes);
}

#[cfg(feature = "v5")]
#[test]
fn mqtt_3_14_disconnect_v311_and_v5() {
    check_canonical(&[0xe0, 0x00], V3, Packet::Disconnect(Disconnect::NORMAL));
    check_canonical(&[0xe0, 0x00], V5, Packet::Disconnect(Disconnect::NORMAL));
    let with_will = Disconnect {
        reason_code: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
        properties: Properties::NONE,
    };
    check_canonical(&[0xe0, 0x01, 0x04], V5, Packet::Disconnect(with_will));
    assert_eq!(
        decode(&[0xe0, 0x02, 0x04, 0x00], V5).unwrap(),
        Packet::Disconnect(with_will)
    );
    assert_eq!(invalid(&[0xe0, 0x01, 0x04], V3), Violation::TrailingBytes);
    assert_eq!(
        invalid(&[0xe0, 0x01, 0x18], V5),
        Violation::InvalidReasonCode {
            code: ReasonCode(0x18),
            packet_type: PacketType::Disconnect
        }
    );
    let fields = PropertyFields {
        server_reference: Some("b"),
        ..PropertyFields::NONE
    };
    check_canonical(
        &[0xe0, 0x06, 0x9c, 0x04, 0x1c, 0x00, 0x01, b'b'],
        V5,
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::USE_ANOTHER_SERVER,
            properties: Properties::from_fields(&fields),
        }),
    );
}

#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_15_auth() {
    check_canonical(
        &[0xf0, 0x00],
        V5,
        Packet::Auth(Auth {
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::NONE,
        }),
    );
    let fields = PropertyFields {
        authentication_method: Some("AB"),
        ..PropertyFields::NONE
    };
    check_canonical(
        &[0xf0, 0x07, 0x18, 0x05, 0x15, 0x00, 0x02, b'A', b'B'],
        V5,
        Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties::from_fields(&fields),
        }),
    );
    let auth = Packet::Auth(Auth {
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::NONE,
    });
    assert_eq!(
        encode_err(&auth, V3),
        EncodeError::NotInVersion {
            what: "AUTH",
            version: V3
        }
    );
}

#[test]
fn mqtt_2_2_1_auth_is_reserved_in_v311() {
    assert_eq!(
        invalid(&[0xf0, 0x00], V3),
        Violation::ReservedPacketType { value: 15 }
    );
}

// ------------------------------------------------------ framing, limits

#[test]
fn decode_leaves_following_bytes_alone() {
    let bytes = [0xc0, 0x00, 0xd0, 0x00, 0xe0];
    let opts = DecodeOptions::new(V3);
    assert_eq!(
        Packet::decode(&bytes, &opts),
        Ok(Decoded::Complete {
            value: Packet::Pingreq,
            len: 2
        })
    );
    assert_eq!(
        Packet::decode(&bytes[2..], &opts),
        Ok(Decoded::Complete {
            value: Packet::Pingresp,
            len: 2
        })
    );
    assert_eq!(
        Packet::decode(&bytes[4..], &opts),
        Ok(Decoded::Incomplete { needed: 1 })
    );
}

#[test]
fn mqtt5_3_1_2_11_4_packet_too_large_rejected_before_body() {
    // A PUBLISH announcing 200 000 000 bytes, of which only the header came.
    let opts = DecodeOptions::new(V5).with_max_packet_size(4096);
    let header = [0x30, 0x80, 0x84, 0xaf, 0x5f];
    let err = Packet::decode(&header, &opts).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 200_000_005,
            max: 4096
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    // At the limit exactly is fine.
    let opts = DecodeOptions::new(V5).with_max_packet_size(4);
    assert!(matches!(
        Packet::decode(&[0x40, 0x02, 0x00, 0x01], &opts),
        Ok(Decoded::Complete { .. })
    ));
    assert!(matches!(
        Packet::decode(&[0x40, 0x03, 0x00, 0x01, 0x10], &opts),
        Err(DecodeError::PacketTooLarge { size: 5, max: 4 })
    ));
}

#[test]
fn encode_reports_insufficient_size() {
    let packet = Packet::Puback(PubAck::new(1));
    let mut buf = [0u8; 3];
    assert_eq!(
        packet.encode(&mut buf, V3),
        Err(EncodeError::InsufficientSize { required: 4 })
    );
}

#[test]
fn display_messages_are_readable() {
    let e = DecodeError::Invalid(Violation::WildcardInTopicName);
    assert_eq!(
        format!("{e}"),
        "invalid packet: wildcard character in a topic name"
    );
    let e = EncodeError::InsufficientSize { required: 9 };
    assert_eq!(format!("{e}"), "buffer too small: the packet needs 9 bytes");
}

// ------------------------------------------------------ property tests

fn round_trip(packet: &Packet<'_>, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let bytes = encode(packet, version).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let opts = DecodeOptions::new(version);
    match Packet::decode(&bytes, &opts) {
        Ok(Decoded::Complete { value, len }) => {
            prop_assert_eq!(len, bytes.len());
            prop_assert_eq!(&value, packet);
            // The decoded view re-encodes to the same bytes.
            prop_assert_eq!(encode(&value, version).unwrap(), bytes.clone());
        }
        other => return Err(TestCaseError::fail(format!("{other:?}"))),
    }
    // Every prefix is Incomplete.
    for cut in 0..bytes.len() {
        let got = Packet::decode(&bytes[..cut], &opts);
        prop_assert!(matches!(got, Ok(Decoded::Incomplete { .. })), "{:?}", got);
    }
    Ok(())
}

/// After a successful decode the packet is encodable and round-trips: the
/// decoder accepts nothing the encoder would refuse.
fn decoded_is_encodable(bytes: &[u8], version: ProtocolVersion) -> Result<(), TestCaseError> {
    let opts = DecodeOptions::new(version).with_max_packet_size(1 << 16);
    if let Ok(Decoded::Complete { value, len }) = Packet::decode(bytes, &opts) {
        prop_assert!(len <= bytes.len());
        let again =
            encode(&value, version).map_err(|e| TestCaseError::fail(format!("{value:?}: {e}")))?;
        match Packet::decode(&again, &opts) {
            Ok(Decoded::Complete { value: back, .. }) => prop_assert_eq!(back, value),
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_v311_emit_then_decode_round_trips(p in strategies::packet(V3)) {
        round_trip(&p, V3)?;
    }

    #[cfg(feature = "v5")]
    #[test]
    fn prop_v5_emit_then_decode_round_trips(p in strategies::packet(V5)) {
        round_trip(&p, V5)?;
    }

    #[test]
    fn prop_decode_of_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        for version in [V3, V5] {
            decoded_is_encodable(&bytes, version)?;
            let _ = FixedHeader::decode(&bytes, &DecodeOptions::new(version));
        }
    }

    #[test]
    fn prop_decode_of_mutated_v311_packets_never_panics(
        p in strategies::packet(V3),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&p, V3).unwrap();
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        decoded_is_encodable(&bytes, V3)?;
        decoded_is_encodable(&bytes, V5)?;
    }

    #[cfg(feature = "v5")]
    #[test]
    fn prop_decode_of_mutated_packets_never_panics(
        p in strategies::packet(V5),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&p, V5).unwrap();
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        decoded_is_encodable(&bytes, V5)?;
        decoded_is_encodable(&bytes, V3)?;
    }
}

// ------------------------------------------------------ more shapes

/// 5.0 CONNECT with a Will carrying properties (Will Delay Interval, Content
/// Type) between client id and Will Topic (§3.1.3.2).
#[cfg(feature = "v5")]
#[test]
fn mqtt5_3_1_3_2_connect_with_will_properties() {
    let bytes = [
        0x10, 0x1f, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x2e, 0x00, 0x00, 0x00, // hdr
        0x00, 0x01, b'c', // client id
        0x0a, 0x18, 0x00, 0x00, 0x00, 0x05, 0x03, 0x00, 0x02, b't', b'x', // will props
        0x00, 0x01, b'w', 0x00, 0x01, b'!', // will topic, payload
    ];
    let fields = PropertyFields {
        content_type: Some("tx"),
        will_delay_interval: Some(5),
        ..PropertyFields::NONE
    };
    let mut connect = Connect::new(V5, "c");
    connect.clean_start = true;
    connect.will = Some(Will {
        topic: "w",
        payload: b"!",
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::from_fields(&fields),
    });
    // Fields emit in identifier order (0x03 before 0x18), so compare the
    // decoded packet and re-decode the emitted one rather than the bytes.
    assert_eq!(decode(&bytes, V5).unwrap(), Packet::Connect(connect));
    let emitted = encode(&Packet::Connect(connect), V5).unwrap();
    assert_eq!(emitted.len(), bytes.len());
    assert_eq!(decode(&emitted, V5).unwrap(), Packet::Connect(connect));
    check_prefixes(&bytes, V5);
    // Received properties iterate in wire order.
    let Packet::Connect(c) = decode(&bytes, V5).unwrap() else {
        panic!()
    };
    let ids: Vec<u8> = c.will.unwrap().properties.iter().map(|p| p.id()).collect();
    assert_eq!(ids, [0x18, 0x03]);
}

#[test]
fn mqtt5_3_2_2_3_connack_without_property_length_rejected() {
    assert_eq!(invalid(&[0x20, 0x02, 0x00, 0x00], V5), Violation::Truncated);
}

#[test]
fn mqtt5_2_2_2_1_property_length_past_packet_rejected() {
    // PUBLISH "a" QoS 0 whose property length (9) runs past the packet.
    assert_eq!(
        invalid(&[0x30, 0x05, 0x00, 0x01, b'a', 0x09, 0x01], V5),
        Violation::Truncated
    );
}

#[cfg(feature = "v5")]
#[test]
fn mqtt5_2_2_2_2_property_not_allowed_refused_on_emit() {
    let fields = PropertyFields {
        topic_alias: Some(1),
        ..PropertyFields::NONE
    };
    let ack = PubAck {
        properties: Properties::from_fields(&fields),
        ..PubAck::new(1)
    };
    assert_eq!(
        encode_err(&Packet::Puback(ack), V5),
        EncodeError::Invalid(Violation::PropertyNotAllowed {
            id: 0x23,
            packet_type: PacketType::Puback
        })
    );
    let fields = PropertyFields {
        receive_maximum: Some(0),
        ..PropertyFields::NONE
    };
    let mut connect = Connect::new(V5, "c");
    connect.properties = Properties::from_fields(&fields);
    assert_eq!(
        encode_err(&Packet::Connect(connect), V5),
        EncodeError::Invalid(Violation::InvalidPropertyValue { id: 0x21 })
    );
}

#[test]
fn framing_with_fixed_header_then_body() {
    let bytes = [
        0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, b'h', b'i',
    ];
    let opts = DecodeOptions::new(V3);
    let Decoded::Complete { value: header, len } = FixedHeader::decode(&bytes, &opts).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (header.packet_type, header.remaining_length, len),
        (PacketType::Publish, 9, 2)
    );
    assert_eq!(header.packet_len(), bytes.len());
    let packet = Packet::decode_body(&header, &bytes[len..], V3).unwrap();
    let mut expected = Publish::new("a/b", b"hi");
    expected.qos = QoS::AtLeastOnce;
    expected.packet_id = Some(10);
    assert_eq!(packet, Packet::Publish(expected));
    // A body of the wrong length is refused rather than misread.
    assert_eq!(
        Packet::decode_body(&header, &bytes[len..bytes.len() - 1], V3),
        Err(DecodeError::Invalid(Violation::Truncated))
    );
}

#[test]
fn views_iterate_lazily_and_compare_semantically() {
    let bytes = [0x90, 0x05, 0x00, 0x07, 0x00, 0x01, 0x80];
    let Packet::Suback(s) = decode(&bytes, V3).unwrap() else {
        panic!()
    };
    assert_eq!(s.reason_codes.len(), 3);
    assert_eq!(
        s.reason_codes.iter().collect::<Vec<_>>(),
        [
            ReasonCode::SUCCESS,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::UNSPECIFIED_ERROR
        ]
    );
    let codes = [ReasonCode(0), ReasonCode(1), ReasonCode(0x80)];
    assert_eq!(s, Suback::new(7, &codes));
    assert_ne!(s, Suback::new(7, &codes[..2]));
}

#[test]
fn violations_map_to_v5_reason_codes() {
    assert_eq!(
        Violation::TrailingBytes.reason_code(),
        ReasonCode::MALFORMED_PACKET
    );
    assert_eq!(
        Violation::DuplicateProperty { id: 1 }.reason_code(),
        ReasonCode::PROTOCOL_ERROR
    );
    assert_eq!(
        Violation::WildcardInTopicName.reason_code(),
        ReasonCode::TOPIC_NAME_INVALID
    );
    for code in [
        ReasonCode::MALFORMED_PACKET,
        ReasonCode::PROTOCOL_ERROR,
        ReasonCode::TOPIC_NAME_INVALID,
        ReasonCode::TOPIC_FILTER_INVALID,
        ReasonCode::PACKET_TOO_LARGE,
    ] {
        assert!(code.is_valid_for(PacketType::Disconnect, V5));
    }
}

/// 3.1.1 §3.9.3: a SUBACK return code 0x80 (Failure) decodes as
/// `ReasonCode(0x80)`, which is `ReasonCode::UNSPECIFIED_ERROR` and an error;
/// granted QoS 0/1/2 decode as `ReasonCode(0..=2)`. The same codes encode
/// back to the same bytes.
#[test]
fn mqtt_3_9_3_v311_suback_failure_0x80_is_reason_code_0x80() {
    let bytes = [0x90, 0x06, 0x00, 0x07, 0x00, 0x01, 0x02, 0x80];
    let Packet::Suback(suback) = decode(&bytes, V3).unwrap() else {
        panic!("not a SUBACK");
    };
    let codes: Vec<ReasonCode> = suback.reason_codes.iter().collect();
    assert_eq!(
        codes,
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode(0x80),
        ]
    );
    assert_eq!(codes[3], ReasonCode::UNSPECIFIED_ERROR);
    assert!(codes[3].is_error() && !codes[2].is_error());
    let built = Packet::Suback(Suback::new(7, &codes));
    assert_eq!(encode(&built, V3).unwrap(), bytes);
    // Any other failure code is 5.0 only.
    let bad = [ReasonCode::NOT_AUTHORIZED];
    assert!(matches!(
        encode_err(&Packet::Suback(Suback::new(7, &bad)), V3),
        EncodeError::Invalid(Violation::InvalidReasonCode { .. })
    ));
}

/// 3.1.1 §3.2.2.3 Table 3.1: return codes 0-5 decode as their 5.0 reason
/// codes (0x00, 0x84, 0x85, 0x88, 0x86, 0x87) and encode back to 0-5.
#[test]
fn mqtt_3_2_2_3_v311_connack_return_codes_map_to_v5_codes() {
    let table = [
        (0u8, ReasonCode::SUCCESS),
        (1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        (2, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        (3, ReasonCode::SERVER_UNAVAILABLE),
        (4, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        (5, ReasonCode::NOT_AUTHORIZED),
    ];
    let v5_bytes = [0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
    for ((code, reason), v5_byte) in table.into_iter().zip(v5_bytes) {
        assert_eq!(reason.0, v5_byte);
        let bytes = [0x20, 0x02, 0x00, code];
        let expected = Packet::Connack(Connack {
            session_present: false,
            reason_code: reason,
            properties: Properties::NONE,
        });
        assert_eq!(decode(&bytes, V3).unwrap(), expected, "return code {code}");
        assert_eq!(encode(&expected, V3).unwrap(), bytes, "return code {code}");
    }
}

/// 5.0 §2.2.2: decoded properties turned into fields (no allocation: user
/// properties and subscription identifiers stay a view) compare equal,
/// encode to the same block, and can be changed and re-encoded.
#[cfg(feature = "v5")]
#[test]
fn mqtt5_2_2_2_decoded_properties_to_fields_and_back() {
    // PUBLISH QoS 0 "a", properties: Topic Alias 5, Subscription Identifier
    // 1, User Property k=v, Subscription Identifier 300, Content Type "t".
    let props: &[u8] = &[
        0x23, 0x00, 0x05, 0x0b, 0x01, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', 0x0b, 0xac, 0x02,
        0x03, 0x00, 0x01, b't',
    ];
    let mut bytes = vec![0x30, 0, 0x00, 0x01, b'a', props.len() as u8];
    bytes.extend_from_slice(props);
    bytes.extend_from_slice(b"hi");
    bytes[1] = (bytes.len() - 2) as u8;
    let Packet::Publish(publish) = decode(&bytes, V5).unwrap() else {
        panic!("not a PUBLISH");
    };
    let fields = publish.properties.to_fields();
    assert_eq!(fields.topic_alias, Some(5));
    assert_eq!(fields.content_type, Some("t"));
    assert!(fields.user_properties.is_empty() && fields.subscription_identifiers.is_empty());
    assert_eq!(
        fields.carried.user_properties().collect::<Vec<_>>(),
        [UserProperty {
            name: "k",
            value: "v"
        }]
    );
    assert_eq!(
        fields
            .carried
            .subscription_identifiers()
            .collect::<Vec<_>>(),
        [1, 300]
    );
    let rebuilt = Properties::from_fields(&fields);
    assert_eq!(rebuilt, publish.properties);
    assert_eq!(rebuilt.encoded_len(), publish.properties.encoded_len());
    // The whole packet re-encodes from the fields and decodes the same.
    let again = Packet::Publish(Publish {
        properties: rebuilt,
        ..publish
    });
    let wire = encode(&again, V5).unwrap();
    assert_eq!(decode(&wire, V5).unwrap(), Packet::Publish(publish));
    // Changed: the Topic Alias dropped, one more user property in front.
    let extra = [UserProperty {
        name: "x",
        value: "y",
    }];
    let changed = PropertyFields {
        topic_alias: None,
        user_properties: &extra,
        ..fields
    };
    let changed = Properties::from_fields(&changed);
    assert_eq!(changed.topic_alias(), None);
    assert_eq!(
        changed.user_properties().collect::<Vec<_>>(),
        [
            extra[0],
            UserProperty {
                name: "k",
                value: "v"
            }
        ]
    );
    assert_eq!(
        changed.subscription_identifiers().collect::<Vec<_>>(),
        [1, 300]
    );
    // Fields-built properties give back their own fields.
    assert_eq!(changed.to_fields().user_properties, &extra[..]);
    assert_eq!(Properties::NONE.to_fields(), PropertyFields::NONE);
}

/// 5.0 §2.2.2.1: a property block encoded on its own is its length (a VBI)
/// and the properties; a decoded block encodes to the same bytes.
#[cfg(feature = "v5")]
#[test]
fn mqtt5_2_2_2_1_property_block_encoded_alone() {
    let users = [UserProperty {
        name: "unit",
        value: "C",
    }];
    let fields = PropertyFields {
        message_expiry_interval: Some(60),
        user_properties: &users,
        ..PropertyFields::NONE
    };
    let props = Properties::from_fields(&fields);
    let mut buf = [0u8; 32];
    let n = props.encode(&mut buf).unwrap();
    assert_eq!(n, props.encoded_len());
    let expected = [
        15, 0x02, 0, 0, 0, 60, 0x26, 0, 4, b'u', b'n', b'i', b't', 0, 1, b'C',
    ];
    assert_eq!(&buf[..n], &expected[..]);
    assert_eq!(Properties::NONE.encode(&mut buf), Ok(1));
    assert_eq!(buf[0], 0);
    assert_eq!(Properties::NONE.encoded_len(), 1);
    // Too short a buffer is reported, with the size needed.
    assert_eq!(
        props.encode(&mut buf[..5]),
        Err(EncodeError::InsufficientSize { required: 6 })
    );
    // A decoded block (inside a PUBLISH) encodes to its own bytes.
    let mut packet = vec![0x30, 0, 0x00, 0x01, b'a'];
    packet.extend_from_slice(&expected);
    packet[1] = (packet.len() - 2) as u8;
    let Packet::Publish(publish) = decode(&packet, V5).unwrap() else {
        panic!("not a PUBLISH");
    };
    let n = publish.properties.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], &expected[..]);
}

/// 5.0 §3.3.2.3.4 and §3.1.2.11.10: the packet-independent checks still
/// apply to a block encoded alone.
#[cfg(feature = "v5")]
#[test]
fn mqtt5_2_2_2_property_block_alone_still_checked() {
    let mut buf = [0u8; 32];
    let zero_alias = PropertyFields {
        topic_alias: Some(0),
        ..PropertyFields::NONE
    };
    assert_eq!(
        Properties::from_fields(&zero_alias).encode(&mut buf),
        Err(EncodeError::Invalid(Violation::InvalidPropertyValue {
            id: property_id::TOPIC_ALIAS
        }))
    );
    let data_alone = PropertyFields {
        authentication_data: Some(b"x"),
        ..PropertyFields::NONE
    };
    assert_eq!(
        Properties::from_fields(&data_alone).encode(&mut buf),
        Err(EncodeError::Invalid(
            Violation::AuthenticationDataWithoutMethod
        ))
    );
    let users = [UserProperty {
        name: "a\0",
        value: "",
    }];
    let nul = PropertyFields {
        user_properties: &users,
        ..PropertyFields::NONE
    };
    assert_eq!(
        Properties::from_fields(&nul).encode(&mut buf),
        Err(EncodeError::Invalid(Violation::NullCharacter))
    );
}

/// The properties a packet carries (its own block, not a Will's).
#[cfg(feature = "v5")]
fn properties_of<'a>(p: &Packet<'a>) -> Properties<'a> {
    match p {
        Packet::Connect(p) => p.properties,
        Packet::Connack(p) => p.properties,
        Packet::Publish(p) => p.properties,
        Packet::Puback(p) | Packet::Pubrec(p) | Packet::Pubrel(p) | Packet::Pubcomp(p) => {
            p.properties
        }
        Packet::Subscribe(p) => p.properties,
        Packet::Suback(p) => p.properties,
        Packet::Unsubscribe(p) => p.properties,
        Packet::Unsuback(p) => p.properties,
        Packet::Disconnect(p) => p.properties,
        Packet::Auth(p) => p.properties,
        Packet::Pingreq | Packet::Pingresp => Properties::NONE,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// 5.0 §2.2.2: for every generated packet, its decoded properties turned
    /// into fields are the same properties, encode alone to the same length,
    /// and the packet rebuilt from them decodes equal.
    #[cfg(feature = "v5")]
    #[test]
    fn prop_v5_decoded_properties_to_fields_round_trip(p in strategies::packet(V5)) {
        let bytes = encode(&p, V5).unwrap();
        let decoded = decode(&bytes, V5).unwrap();
        let props = properties_of(&decoded);
        let fields = props.to_fields();
        let rebuilt = Properties::from_fields(&fields);
        prop_assert_eq!(rebuilt, props);
        prop_assert_eq!(rebuilt.encoded_len(), props.encoded_len());
        let mut a = vec![0u8; props.encoded_len()];
        let mut b = vec![0u8; rebuilt.encoded_len()];
        let na = props.encode(&mut a).unwrap();
        let nb = rebuilt.encode(&mut b).unwrap();
        prop_assert_eq!(na, a.len());
        prop_assert_eq!(nb, b.len());
        // The packet rebuilt from the fields encodes and decodes equal.
        let again = match decoded {
            Packet::Publish(x) => Packet::Publish(Publish { properties: rebuilt, ..x }),
            Packet::Connack(x) => Packet::Connack(Connack { properties: rebuilt, ..x }),
            Packet::Disconnect(x) => Packet::Disconnect(Disconnect { properties: rebuilt, ..x }),
            other => other,
        };
        let wire = encode(&again, V5).unwrap();
        prop_assert_eq!(decode(&wire, V5).unwrap(), decoded);
    }
}

/// A 3.1.1-only build (no `v5`) still frames a 5.0 PUBLISH, as its outbox
/// records and a store written by a 5.0 build hold them: the property
/// block is skipped unread, the payload is intact; and properties are
/// refused on emit rather than silently dropped.
#[cfg(not(feature = "v5"))]
#[test]
fn without_v5_a_property_block_is_skipped_on_decode_and_refused_on_emit() {
    // QoS 1, topic "t", id 1, Message Expiry Interval 60, payload "x".
    let bytes = [0x32, 12, 0, 1, b't', 0, 1, 5, 0x02, 0, 0, 0, 60, b'x'];
    let Packet::Publish(p) = decode(&bytes, V5).unwrap() else {
        panic!("a PUBLISH");
    };
    assert_eq!((p.topic, p.packet_id, p.payload), ("t", Some(1), &b"x"[..]));
    assert!(p.properties.is_empty());
    assert_eq!(p.properties.message_expiry_interval(), None);

    // Without properties the 5.0 layout is written (an empty block).
    let plain = Publish {
        properties: Properties::NONE,
        ..p
    };
    assert_eq!(
        encode(&Packet::Publish(plain), V5).unwrap(),
        [0x32, 7, 0, 1, b't', 0, 1, 0, b'x']
    );
    let fields = PropertyFields {
        message_expiry_interval: Some(60),
        ..PropertyFields::default()
    };
    let with = Publish {
        properties: Properties::from(&fields),
        ..p
    };
    assert!(matches!(
        encode_err(&Packet::Publish(with), V5),
        EncodeError::NotInVersion { .. }
    ));
}
