//! Shared by the differential tests: an owned, version-neutral model of the
//! packets both codecs can express, proptest generators for it, and the
//! conversions between the model and mqttbytes 0.6.
//!
//! The model is the common ground: a test builds a packet in one codec from
//! a model value, runs the bytes through the other codec, converts the
//! result back to the model and compares. Generators only produce what the
//! spec allows *and* mqttbytes can represent; the cases where mqttbytes
//! cannot (or gets it wrong) are named tests in the differential files.
#![allow(dead_code, unreachable_pub, missing_docs)]

use bytes::{Bytes, BytesMut};
use mqttbytes::QoS;
use proptest::prelude::*;

/// A v5 user property list.
pub type UserProps = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProps {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub topic_alias: Option<u16>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub user_properties: UserProps,
    pub subscription_identifiers: Vec<u32>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    /// 0 for QoS 0.
    pub pkid: u16,
    pub payload: Vec<u8>,
    /// Always default in v3.1.1.
    pub props: PublishProps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProps {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub user_properties: UserProps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub keep_alive: u16,
    pub client_id: String,
    pub clean_session: bool,
    pub will: Option<Will>,
    pub username: Option<String>,
    /// UTF-8 only because mqttbytes stores it as a `String`.
    pub password: Option<String>,
    /// Always default in v3.1.1.
    pub props: ConnectProps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    pub filter: String,
    pub qos: u8,
    /// v5 only (false in v3.1.1).
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pkid: u16,
    pub filters: Vec<SubscribeFilter>,
    /// v5 only.
    pub subscription_identifier: Option<u32>,
    pub user_properties: UserProps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pkid: u16,
    pub filters: Vec<String>,
}

/// Which of the four acknowledgements (the variants are the packet names,
/// hence their shared prefix).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub kind: AckKind,
    pub pkid: u16,
    /// v5 only; 0 (Success) in v3.1.1.
    pub reason: u8,
    pub reason_string: Option<String>,
    pub user_properties: UserProps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pkid: u16,
    pub codes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: u8,
}

/// Every packet of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    Ack(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    /// UNSUBACK of v3.1.1 (no reason codes).
    UnsubAck(u16),
    /// UNSUBACK of 5.0, one reason code per filter.
    UnsubAckV5 {
        pkid: u16,
        reasons: Vec<u8>,
    },
    PingReq,
    PingResp,
    /// DISCONNECT; the reason code is v5 only (0 in v3.1.1).
    Disconnect(u8),
}

// ---------------------------------------------------------------- generators

/// A topic level: short, with a few non-ASCII characters.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9]{1,8}", "[a-zé€ 😀]{1,4}"]
}

/// A valid topic name: 1..5 levels, non-empty, no wildcard.
pub fn topic_name() -> impl Strategy<Value = String> {
    proptest::collection::vec(level(), 1..5)
        .prop_map(|l| l.join("/"))
        .prop_filter("non-empty", |t| !t.is_empty())
}

/// A valid, non-shared topic filter.
pub fn topic_filter() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(prop_oneof![level(), Just("+".to_owned())], 0..4),
        any::<bool>(),
    )
        .prop_map(|(mut l, hash)| {
            if hash || l.is_empty() {
                l.push("#".to_owned());
            }
            l.join("/")
        })
        .prop_filter("non-empty", |t| !t.is_empty())
}

/// A UTF-8 string without U+0000 (MQTT-1.5.3-2), possibly empty.
pub fn mqtt_string(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![8 => proptest::char::range('\u{1}', '\u{7e}'), 1 => Just('é'), 1 => Just('😀')],
        0..=max,
    )
    .prop_map(|c| c.into_iter().collect())
}

pub fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

fn pkid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn qos() -> impl Strategy<Value = u8> {
    0..=2u8
}

fn user_properties() -> impl Strategy<Value = UserProps> {
    proptest::collection::vec((mqtt_string(6), mqtt_string(6)), 0..3)
}

fn publish_props() -> impl Strategy<Value = PublishProps> {
    (
        proptest::option::of(0..=1u8),
        proptest::option::of(any::<u32>()),
        proptest::option::of(1..=u16::MAX),
        proptest::option::of(topic_name()),
        proptest::option::of(payload(8)),
        user_properties(),
        proptest::option::of(mqtt_string(8)),
    )
        .prop_map(|(pfi, mei, alias, rt, cd, up, ct)| PublishProps {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: alias,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            // A client never sends a subscription identifier in PUBLISH
            // [MQTT-3.3.4-6]; the server-to-client direction is covered
            // by the named tests.
            subscription_identifiers: Vec::new(),
            content_type: ct,
        })
}

pub fn publish(v5: bool) -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        pkid(),
        payload(64),
        publish_props(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, pkid, payload, props)| Publish {
                // DUP is 0 for QoS 0 [MQTT-3.3.1-2].
                dup: dup && qos > 0,
                qos,
                retain,
                topic,
                pkid: if qos == 0 { 0 } else { pkid },
                payload,
                props: if v5 { props } else { PublishProps::default() },
            },
        )
}

fn will() -> impl Strategy<Value = Will> {
    (topic_name(), payload(16), qos(), any::<bool>()).prop_map(|(topic, payload, qos, retain)| {
        Will {
            topic,
            payload,
            qos,
            retain,
        }
    })
}

fn connect_props() -> impl Strategy<Value = ConnectProps> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(1..=u16::MAX),
        proptest::option::of(1..=u32::MAX),
        proptest::option::of(any::<u16>()),
        user_properties(),
    )
        .prop_map(|(sei, rm, mps, tam, up)| ConnectProps {
            session_expiry_interval: sei,
            receive_maximum: rm,
            maximum_packet_size: mps,
            topic_alias_maximum: tam,
            user_properties: up,
        })
}

pub fn connect(v5: bool) -> impl Strategy<Value = Connect> {
    (
        any::<u16>(),
        "[0-9a-zA-Z]{1,23}",
        any::<bool>(),
        proptest::option::of(will()),
        // mqttbytes writes no username/password flag for an empty one, so
        // the generator keeps them non-empty (see the named tests).
        proptest::option::of((mqtt_string(12), proptest::option::of(mqtt_string(12)))),
        connect_props(),
    )
        .prop_map(
            move |(keep_alive, client_id, clean_session, will, login, props)| {
                let (username, password) = match login {
                    Some((u, p)) if !u.is_empty() => (Some(u), p.filter(|p| !p.is_empty())),
                    _ => (None, None),
                };
                Connect {
                    keep_alive,
                    client_id,
                    clean_session,
                    will,
                    username,
                    password,
                    props: if v5 { props } else { ConnectProps::default() },
                }
            },
        )
}

fn subscribe_filter(v5: bool) -> impl Strategy<Value = SubscribeFilter> {
    (topic_filter(), qos(), any::<bool>(), any::<bool>(), 0..=2u8).prop_map(
        move |(filter, qos, no_local, rap, rh)| SubscribeFilter {
            filter,
            qos,
            no_local: v5 && no_local,
            retain_as_published: v5 && rap,
            retain_handling: if v5 { rh } else { 0 },
        },
    )
}

pub fn subscribe(v5: bool) -> impl Strategy<Value = Subscribe> {
    (
        pkid(),
        proptest::collection::vec(subscribe_filter(v5), 1..4),
        proptest::option::of(1..=268_435_455u32),
        user_properties(),
    )
        .prop_map(move |(pkid, filters, id, up)| Subscribe {
            pkid,
            filters,
            subscription_identifier: if v5 { id } else { None },
            user_properties: if v5 { up } else { Vec::new() },
        })
}

pub fn unsubscribe() -> impl Strategy<Value = Unsubscribe> {
    (pkid(), proptest::collection::vec(topic_filter(), 1..4))
        .prop_map(|(pkid, filters)| Unsubscribe { pkid, filters })
}

fn ack_kind() -> impl Strategy<Value = AckKind> {
    prop_oneof![
        Just(AckKind::PubAck),
        Just(AckKind::PubRec),
        Just(AckKind::PubRel),
        Just(AckKind::PubComp)
    ]
}

/// v3.1.1 acks: packet identifier only.
pub fn ack_v311() -> impl Strategy<Value = Ack> {
    (ack_kind(), pkid()).prop_map(|(kind, pkid)| Ack {
        kind,
        pkid,
        reason: 0,
        reason_string: None,
        user_properties: Vec::new(),
    })
}

/// The v3.1.1 packets.
pub fn model_v311() -> impl Strategy<Value = Model> {
    prop_oneof![
        connect(false).prop_map(Model::Connect),
        (any::<bool>(), 0..=5u8).prop_map(|(session_present, code)| Model::ConnAck(ConnAck {
            // [MQTT-3.2.2-4]: session present is 0 with a non-zero code.
            session_present: session_present && code == 0,
            code
        })),
        publish(false).prop_map(Model::Publish),
        ack_v311().prop_map(Model::Ack),
        subscribe(false).prop_map(Model::Subscribe),
        (
            pkid(),
            proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0x80)], 1..5)
        )
            .prop_map(|(pkid, codes)| Model::SubAck(SubAck { pkid, codes })),
        unsubscribe().prop_map(Model::Unsubscribe),
        pkid().prop_map(Model::UnsubAck),
        Just(Model::PingReq),
        Just(Model::PingResp),
        Just(Model::Disconnect(0)),
    ]
}

// ------------------------------------------------------- mqttbytes, v3.1.1

fn mb_qos(q: u8) -> QoS {
    mqttbytes::qos(q).expect("model qos is 0..=2")
}

/// A model CONNECT as the `mb::Connect` in scope (`mqttbytes::v4` or `v5`,
/// alike in the fields written here), with the version's `protocol`, the
/// version's own fields of `LastWill` (`will: { .. }`) and of `Connect`.
macro_rules! mqttbytes_connect {
    ($c:expr, $protocol:expr, will: { $($will:tt)* } $($own:tt)*) => {{
        let c = $c;
        mb::Connect {
            protocol: $protocol,
            keep_alive: c.keep_alive,
            client_id: c.client_id.clone(),
            clean_session: c.clean_session,
            last_will: c.will.as_ref().map(|w| mb::LastWill {
                topic: w.topic.clone(),
                message: Bytes::from(w.payload.clone()),
                qos: mb_qos(w.qos),
                retain: w.retain,
                $($will)*
            }),
            login: c.username.as_ref().map(|u| mb::Login {
                username: u.clone(),
                password: c.password.clone().unwrap_or_default(),
            }),
            $($own)*
        }
    }};
}

/// A model PUBLISH as the `mb::Publish` in scope (v4 or v5), with the
/// version's own fields.
macro_rules! mqttbytes_publish {
    ($p:expr, $($own:tt)*) => {{
        let p = $p;
        mb::Publish {
            dup: p.dup,
            qos: mb_qos(p.qos),
            retain: p.retain,
            topic: p.topic.clone(),
            pkid: p.pkid,
            payload: Bytes::from(p.payload.clone()),
            $($own)*
        }
    }};
}

/// The model as a mqttbytes v4 (= MQTT 3.1.1) packet.
pub fn to_mqttbytes_v4(m: &Model) -> mqttbytes::v4::Packet {
    use mqttbytes::v4 as mb;
    match m {
        Model::Connect(c) => mb::Packet::Connect(mqttbytes_connect!(
            c,
            mqttbytes::Protocol::V4,
            will: {}
        )),
        Model::ConnAck(c) => mb::Packet::ConnAck(mb::ConnAck {
            session_present: c.session_present,
            code: match c.code {
                0 => mb::ConnectReturnCode::Success,
                1 => mb::ConnectReturnCode::RefusedProtocolVersion,
                2 => mb::ConnectReturnCode::BadClientId,
                3 => mb::ConnectReturnCode::ServiceUnavailable,
                4 => mb::ConnectReturnCode::BadUserNamePassword,
                _ => mb::ConnectReturnCode::NotAuthorized,
            },
        }),
        Model::Publish(p) => mb::Packet::Publish(mqttbytes_publish!(p,)),
        Model::Ack(a) => match a.kind {
            AckKind::PubAck => mb::Packet::PubAck(mb::PubAck { pkid: a.pkid }),
            AckKind::PubRec => mb::Packet::PubRec(mb::PubRec { pkid: a.pkid }),
            AckKind::PubRel => mb::Packet::PubRel(mb::PubRel { pkid: a.pkid }),
            AckKind::PubComp => mb::Packet::PubComp(mb::PubComp { pkid: a.pkid }),
        },
        Model::Subscribe(s) => mb::Packet::Subscribe(mb::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .iter()
                .map(|f| mb::SubscribeFilter {
                    path: f.filter.clone(),
                    qos: mb_qos(f.qos),
                })
                .collect(),
        }),
        Model::SubAck(s) => mb::Packet::SubAck(mb::SubAck {
            pkid: s.pkid,
            return_codes: s
                .codes
                .iter()
                .map(|&c| mb::SubscribeReasonCode::try_from(c).expect("model code"))
                .collect(),
        }),
        Model::Unsubscribe(u) => mb::Packet::Unsubscribe(mb::Unsubscribe {
            pkid: u.pkid,
            topics: u.filters.clone(),
        }),
        Model::UnsubAck(pkid) => mb::Packet::UnsubAck(mb::UnsubAck { pkid: *pkid }),
        Model::UnsubAckV5 { .. } => panic!("not in 3.1.1"),
        Model::PingReq => mb::Packet::PingReq,
        Model::PingResp => mb::Packet::PingResp,
        Model::Disconnect(_) => mb::Packet::Disconnect,
    }
}

/// A mqttbytes CONNECT (`v4::Connect` or `v5::Connect`: the fields read
/// here have the same names and meaning in both) in the model, with the
/// version's `props`.
macro_rules! model_connect {
    ($c:expr, $props:expr) => {{
        let c = $c;
        Connect {
            keep_alive: c.keep_alive,
            client_id: c.client_id.clone(),
            clean_session: c.clean_session,
            will: c.last_will.as_ref().map(|w| Will {
                topic: w.topic.clone(),
                payload: w.message.to_vec(),
                qos: w.qos as u8,
                retain: w.retain,
            }),
            username: c
                .login
                .as_ref()
                .map(|l| l.username.clone())
                .filter(|u| !u.is_empty()),
            password: c
                .login
                .as_ref()
                .map(|l| l.password.clone())
                .filter(|p| !p.is_empty()),
            props: $props,
        }
    }};
}

/// A mqttbytes PUBLISH (`v4::Publish` or `v5::Publish`, alike in the
/// fields read here) in the model, with the version's `props`.
macro_rules! model_publish {
    ($p:expr, $props:expr) => {{
        let p = $p;
        Publish {
            dup: p.dup,
            qos: p.qos as u8,
            retain: p.retain,
            topic: p.topic.clone(),
            pkid: p.pkid,
            payload: p.payload.to_vec(),
            props: $props,
        }
    }};
}

/// A mqttbytes v4 packet back in the model.
pub fn from_mqttbytes_v4(p: &mqttbytes::v4::Packet) -> Model {
    use mqttbytes::v4 as mb;
    match p {
        mb::Packet::Connect(c) => Model::Connect(model_connect!(c, ConnectProps::default())),
        mb::Packet::ConnAck(c) => Model::ConnAck(ConnAck {
            session_present: c.session_present,
            code: c.code as u8,
        }),
        mb::Packet::Publish(p) => Model::Publish(model_publish!(p, PublishProps::default())),
        mb::Packet::PubAck(a) => Model::Ack(v311_ack(AckKind::PubAck, a.pkid)),
        mb::Packet::PubRec(a) => Model::Ack(v311_ack(AckKind::PubRec, a.pkid)),
        mb::Packet::PubRel(a) => Model::Ack(v311_ack(AckKind::PubRel, a.pkid)),
        mb::Packet::PubComp(a) => Model::Ack(v311_ack(AckKind::PubComp, a.pkid)),
        mb::Packet::Subscribe(s) => Model::Subscribe(Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .iter()
                .map(|f| SubscribeFilter {
                    filter: f.path.clone(),
                    qos: f.qos as u8,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: 0,
                })
                .collect(),
            subscription_identifier: None,
            user_properties: Vec::new(),
        }),
        mb::Packet::SubAck(s) => Model::SubAck(SubAck {
            pkid: s.pkid,
            codes: s
                .return_codes
                .iter()
                .map(|c| match c {
                    mb::SubscribeReasonCode::Success(q) => *q as u8,
                    mb::SubscribeReasonCode::Failure => 0x80,
                })
                .collect(),
        }),
        mb::Packet::Unsubscribe(u) => Model::Unsubscribe(Unsubscribe {
            pkid: u.pkid,
            filters: u.topics.clone(),
        }),
        mb::Packet::UnsubAck(u) => Model::UnsubAck(u.pkid),
        mb::Packet::PingReq => Model::PingReq,
        mb::Packet::PingResp => Model::PingResp,
        mb::Packet::Disconnect => Model::Disconnect(0),
    }
}

fn v311_ack(kind: AckKind, pkid: u16) -> Ack {
    Ack {
        kind,
        pkid,
        reason: 0,
        reason_string: None,
        user_properties: Vec::new(),
    }
}

/// `pub fn $bytes(&Packet) -> Vec<u8>` (mqttbytes' encoding of a packet)
/// and `pub fn $decode(&[u8]) -> Result<Packet, _>` (its decoding of one
/// whole packet) for the mqttbytes module `$v` (`v4` or `v5`, whose packet
/// types differ but are written and read alike; DISCONNECT differs, hence
/// `$disconnect`, its arm).
macro_rules! mqttbytes_codec {
    ($v:ident, $bytes:ident, $decode:ident, $disconnect:pat => $write_disconnect:expr) => {
        #[doc = concat!("mqttbytes ", stringify!($v), " encoding of a packet.")]
        pub fn $bytes(p: &mqttbytes::$v::Packet) -> Vec<u8> {
            use mqttbytes::$v as mb;
            let mut buf = BytesMut::new();
            match p {
                mb::Packet::Connect(c) => c.write(&mut buf),
                mb::Packet::ConnAck(c) => c.write(&mut buf),
                mb::Packet::Publish(c) => c.write(&mut buf),
                mb::Packet::PubAck(c) => c.write(&mut buf),
                mb::Packet::PubRec(c) => c.write(&mut buf),
                mb::Packet::PubRel(c) => c.write(&mut buf),
                mb::Packet::PubComp(c) => c.write(&mut buf),
                mb::Packet::Subscribe(c) => c.write(&mut buf),
                mb::Packet::SubAck(c) => c.write(&mut buf),
                mb::Packet::Unsubscribe(c) => c.write(&mut buf),
                mb::Packet::UnsubAck(c) => c.write(&mut buf),
                mb::Packet::PingReq => mb::PingReq.write(&mut buf),
                mb::Packet::PingResp => mb::PingResp.write(&mut buf),
                $disconnect => $write_disconnect.write(&mut buf),
            }
            .expect("mqttbytes encodes the model");
            buf.to_vec()
        }

        #[doc = concat!("mqttbytes ", stringify!($v), " decoding of one whole packet.")]
        pub fn $decode(bytes: &[u8]) -> Result<mqttbytes::$v::Packet, mqttbytes::Error> {
            let mut buf = BytesMut::from(bytes);
            let p = mqttbytes::$v::read(&mut buf, 1 << 28)?;
            assert!(buf.is_empty(), "mqttbytes left {} bytes", buf.len());
            Ok(p)
        }
    };
}

mqttbytes_codec!(v4, mqttbytes_v4_bytes, mqttbytes_v4_decode, mb::Packet::Disconnect => mb::Disconnect);

// ------------------------------------------------------------ v5 generators

/// Reason codes valid for each ack (MQTT 5.0 §3.4.2.1, §3.5.2.1, §3.6.2.1,
/// §3.7.2.1).
pub fn ack_reasons(kind: AckKind) -> &'static [u8] {
    match kind {
        AckKind::PubAck | AckKind::PubRec => {
            &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
        }
        AckKind::PubRel | AckKind::PubComp => &[0x00, 0x92],
    }
}

pub fn ack_v5() -> impl Strategy<Value = Ack> {
    (
        ack_kind(),
        pkid(),
        any::<proptest::sample::Index>(),
        proptest::option::of(mqtt_string(10)),
        user_properties(),
    )
        .prop_map(|(kind, pkid, idx, reason_string, user_properties)| {
            let reasons = ack_reasons(kind);
            Ack {
                kind,
                pkid,
                reason: reasons[idx.index(reasons.len())],
                reason_string,
                user_properties,
            }
        })
}

/// SUBACK reason codes of MQTT 5.0 §3.9.3.
pub const SUBACK_V5_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];

/// CONNACK reason codes of MQTT 5.0 §3.2.2.2.
pub const CONNACK_V5_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];

/// UNSUBACK reason codes of MQTT 5.0 §3.11.3.
pub const UNSUBACK_V5_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];

/// The v5 packets the model covers. DISCONNECT is left to named tests
/// (mqttbytes cannot read a minimal v5 DISCONNECT; see differential_v5.rs).
pub fn model_v5() -> impl Strategy<Value = Model> {
    prop_oneof![
        connect(true).prop_map(Model::Connect),
        publish(true).prop_map(Model::Publish),
        ack_v5().prop_map(Model::Ack),
        subscribe(true).prop_map(Model::Subscribe),
        (
            pkid(),
            proptest::collection::vec(proptest::sample::select(SUBACK_V5_CODES), 1..5)
        )
            .prop_map(|(pkid, codes)| Model::SubAck(SubAck { pkid, codes })),
        unsubscribe().prop_map(Model::Unsubscribe),
        (
            pkid(),
            proptest::collection::vec(proptest::sample::select(UNSUBACK_V5_CODES), 1..5)
        )
            .prop_map(|(pkid, reasons)| Model::UnsubAckV5 { pkid, reasons }),
        (any::<bool>(), proptest::sample::select(CONNACK_V5_CODES)).prop_map(
            |(session_present, code)| Model::ConnAck(ConnAck {
                // [MQTT-3.2.2-6]: session present is 0 with a failure code.
                session_present: session_present && code == 0,
                code
            })
        ),
        Just(Model::PingReq),
        Just(Model::PingResp),
    ]
}

fn connack_v5_code(code: u8) -> mqttbytes::v5::ConnectReturnCode {
    use mqttbytes::v5::ConnectReturnCode as C;
    match code {
        0x00 => C::Success,
        0x80 => C::UnspecifiedError,
        0x81 => C::MalformedPacket,
        0x82 => C::ProtocolError,
        0x83 => C::ImplementationSpecificError,
        0x84 => C::UnsupportedProtocolVersion,
        0x85 => C::ClientIdentifierNotValid,
        0x86 => C::BadUserNamePassword,
        0x87 => C::NotAuthorized,
        0x88 => C::ServerUnavailable,
        0x89 => C::ServerBusy,
        0x8A => C::Banned,
        0x8C => C::BadAuthenticationMethod,
        0x90 => C::TopicNameInvalid,
        0x95 => C::PacketTooLarge,
        0x97 => C::QuotaExceeded,
        0x99 => C::PayloadFormatInvalid,
        0x9A => C::RetainNotSupported,
        0x9B => C::QoSNotSupported,
        0x9C => C::UseAnotherServer,
        0x9D => C::ServerMoved,
        _ => C::ConnectionRateExceeded,
    }
}

fn unsuback_v5_reason(r: u8) -> mqttbytes::v5::UnsubAckReason {
    use mqttbytes::v5::UnsubAckReason as R;
    match r {
        0x00 => R::Success,
        0x11 => R::NoSubscriptionExisted,
        0x80 => R::UnspecifiedError,
        0x83 => R::ImplementationSpecificError,
        0x87 => R::NotAuthorized,
        0x8F => R::TopicFilterInvalid,
        _ => R::PacketIdentifierInUse,
    }
}

// ---------------------------------------------------------- mqttbytes, v5

fn none_if_default<T: Default + PartialEq>(t: T) -> Option<T> {
    if t == T::default() { None } else { Some(t) }
}

/// The model as a mqttbytes v5 packet.
pub fn to_mqttbytes_v5(m: &Model) -> mqttbytes::v5::Packet {
    use mqttbytes::v5 as mb;
    match m {
        Model::Connect(c) => mb::Packet::Connect(mqttbytes_connect!(
            c,
            mqttbytes::Protocol::V5,
            will: { properties: None, }
            properties: none_if_default(c.props.clone()).map(|p| mb::ConnectProperties {
                session_expiry_interval: p.session_expiry_interval,
                receive_maximum: p.receive_maximum,
                max_packet_size: p.maximum_packet_size,
                topic_alias_max: p.topic_alias_maximum,
                request_response_info: None,
                request_problem_info: None,
                user_properties: p.user_properties,
                authentication_method: None,
                authentication_data: None,
            }),
        )),
        Model::Publish(p) => mb::Packet::Publish(mqttbytes_publish!(
            p,
            properties: none_if_default(p.props.clone()).map(|p| mb::PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                topic_alias: p.topic_alias,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data.map(Bytes::from),
                user_properties: p.user_properties,
                subscription_identifiers: p
                    .subscription_identifiers
                    .iter()
                    .map(|&i| i as usize)
                    .collect(),
                content_type: p.content_type,
            }),
        )),
        Model::Ack(a) => {
            let props = (a.reason_string.clone(), a.user_properties.clone());
            let has_props = props.0.is_some() || !props.1.is_empty();
            macro_rules! ack {
                ($variant:ident, $props:ident, $reasons:expr) => {
                    mb::Packet::$variant(mb::$variant {
                        pkid: a.pkid,
                        reason: $reasons,
                        properties: has_props.then(|| mb::$props {
                            reason_string: props.0.clone(),
                            user_properties: props.1.clone(),
                        }),
                    })
                };
            }
            match a.kind {
                AckKind::PubAck => ack!(PubAck, PubAckProperties, pub_ack_reason(a.reason)),
                AckKind::PubRec => ack!(PubRec, PubRecProperties, pub_rec_reason(a.reason)),
                AckKind::PubRel => ack!(
                    PubRel,
                    PubRelProperties,
                    if a.reason == 0 {
                        mb::PubRelReason::Success
                    } else {
                        mb::PubRelReason::PacketIdentifierNotFound
                    }
                ),
                AckKind::PubComp => ack!(
                    PubComp,
                    PubCompProperties,
                    if a.reason == 0 {
                        mb::PubCompReason::Success
                    } else {
                        mb::PubCompReason::PacketIdentifierNotFound
                    }
                ),
            }
        }
        Model::Subscribe(s) => mb::Packet::Subscribe(mb::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .iter()
                .map(|f| mb::SubscribeFilter {
                    path: f.filter.clone(),
                    qos: mb_qos(f.qos),
                    nolocal: f.no_local,
                    preserve_retain: f.retain_as_published,
                    retain_forward_rule: match f.retain_handling {
                        0 => mb::RetainForwardRule::OnEverySubscribe,
                        1 => mb::RetainForwardRule::OnNewSubscribe,
                        _ => mb::RetainForwardRule::Never,
                    },
                })
                .collect(),
            properties: (s.subscription_identifier.is_some() || !s.user_properties.is_empty())
                .then(|| mb::SubscribeProperties {
                    id: s.subscription_identifier.map(|i| i as usize),
                    user_properties: s.user_properties.clone(),
                }),
        }),
        Model::SubAck(s) => mb::Packet::SubAck(mb::SubAck {
            pkid: s.pkid,
            return_codes: s
                .codes
                .iter()
                .map(|&c| mb::SubscribeReasonCode::try_from(c).expect("model code"))
                .collect(),
            properties: None,
        }),
        Model::Unsubscribe(u) => mb::Packet::Unsubscribe(mb::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters.clone(),
            properties: None,
        }),
        Model::PingReq => mb::Packet::PingReq,
        Model::PingResp => mb::Packet::PingResp,
        Model::Disconnect(r) => mb::Packet::Disconnect(mb::Disconnect {
            reason_code: mb::DisconnectReasonCode::try_from(*r).expect("model reason"),
            properties: None,
        }),
        Model::ConnAck(c) => mb::Packet::ConnAck(mb::ConnAck {
            session_present: c.session_present,
            code: connack_v5_code(c.code),
            // Not `None`: mqttbytes then omits the property length, see
            // differential_v5.rs `divergence_mqtt5_3_2_2_3_1_...`.
            properties: Some(mb::ConnAckProperties::new()),
        }),
        Model::UnsubAckV5 { pkid, reasons } => mb::Packet::UnsubAck(mb::UnsubAck {
            pkid: *pkid,
            reasons: reasons.iter().map(|&r| unsuback_v5_reason(r)).collect(),
            properties: None,
        }),
        Model::UnsubAck(_) => panic!("not in the v5 model"),
    }
}

/// `fn $name(code) -> mqttbytes::v5::$reason` for PUBACK and PUBREC, whose
/// reason codes are the same (MQTT 5.0 §3.4.2.1, §3.5.2.1) in two types.
macro_rules! pub_ack_or_rec_reason {
    ($name:ident, $reason:ident) => {
        fn $name(r: u8) -> mqttbytes::v5::$reason {
            use mqttbytes::v5::$reason as R;
            match r {
                0x00 => R::Success,
                0x10 => R::NoMatchingSubscribers,
                0x80 => R::UnspecifiedError,
                0x83 => R::ImplementationSpecificError,
                0x87 => R::NotAuthorized,
                0x90 => R::TopicNameInvalid,
                0x91 => R::PacketIdentifierInUse,
                0x97 => R::QuotaExceeded,
                _ => R::PayloadFormatInvalid,
            }
        }
    };
}

pub_ack_or_rec_reason!(pub_ack_reason, PubAckReason);
pub_ack_or_rec_reason!(pub_rec_reason, PubRecReason);

/// A mqttbytes v5 packet back in the model.
pub fn from_mqttbytes_v5(p: &mqttbytes::v5::Packet) -> Model {
    use mqttbytes::v5 as mb;
    // The four acks are alike but for their types.
    macro_rules! ack {
        ($kind:ident, $a:expr) => {{
            let a = $a;
            let props = a.properties.as_ref();
            Model::Ack(Ack {
                kind: AckKind::$kind,
                pkid: a.pkid,
                reason: a.reason as u8,
                reason_string: props.and_then(|p| p.reason_string.clone()),
                user_properties: props.map(|p| p.user_properties.clone()).unwrap_or_default(),
            })
        }};
    }
    match p {
        mb::Packet::Connect(c) => Model::Connect(model_connect!(
            c,
            c.properties
                .as_ref()
                .map(|p| ConnectProps {
                    session_expiry_interval: p.session_expiry_interval,
                    receive_maximum: p.receive_maximum,
                    maximum_packet_size: p.max_packet_size,
                    topic_alias_maximum: p.topic_alias_max,
                    user_properties: p.user_properties.clone(),
                })
                .unwrap_or_default()
        )),
        mb::Packet::Publish(p) => Model::Publish(model_publish!(
            p,
            p.properties
                .as_ref()
                .map(|p| PublishProps {
                    payload_format_indicator: p.payload_format_indicator,
                    message_expiry_interval: p.message_expiry_interval,
                    topic_alias: p.topic_alias,
                    response_topic: p.response_topic.clone(),
                    correlation_data: p.correlation_data.as_ref().map(|b| b.to_vec()),
                    user_properties: p.user_properties.clone(),
                    subscription_identifiers: p
                        .subscription_identifiers
                        .iter()
                        .map(|&i| i as u32)
                        .collect(),
                    content_type: p.content_type.clone(),
                })
                .unwrap_or_default()
        )),
        mb::Packet::PubAck(a) => ack!(PubAck, a),
        mb::Packet::PubRec(a) => ack!(PubRec, a),
        mb::Packet::PubRel(a) => ack!(PubRel, a),
        mb::Packet::PubComp(a) => ack!(PubComp, a),
        mb::Packet::Subscribe(s) => Model::Subscribe(Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .iter()
                .map(|f| SubscribeFilter {
                    filter: f.path.clone(),
                    qos: f.qos as u8,
                    no_local: f.nolocal,
                    retain_as_published: f.preserve_retain,
                    retain_handling: match f.retain_forward_rule {
                        mb::RetainForwardRule::OnEverySubscribe => 0,
                        mb::RetainForwardRule::OnNewSubscribe => 1,
                        mb::RetainForwardRule::Never => 2,
                    },
                })
                .collect(),
            subscription_identifier: s.properties.as_ref().and_then(|p| p.id).map(|i| i as u32),
            user_properties: s
                .properties
                .as_ref()
                .map(|p| p.user_properties.clone())
                .unwrap_or_default(),
        }),
        mb::Packet::SubAck(s) => Model::SubAck(SubAck {
            pkid: s.pkid,
            codes: s.return_codes.iter().map(|&c| c as u8).collect(),
        }),
        mb::Packet::Unsubscribe(u) => Model::Unsubscribe(Unsubscribe {
            pkid: u.pkid,
            filters: u.filters.clone(),
        }),
        mb::Packet::PingReq => Model::PingReq,
        mb::Packet::PingResp => Model::PingResp,
        mb::Packet::Disconnect(d) => Model::Disconnect(d.reason_code as u8),
        mb::Packet::ConnAck(c) => Model::ConnAck(ConnAck {
            session_present: c.session_present,
            code: c.code as u8,
        }),
        mb::Packet::UnsubAck(u) => Model::UnsubAckV5 {
            pkid: u.pkid,
            reasons: u.reasons.iter().map(|&r| r as u8).collect(),
        },
    }
}

mqttbytes_codec!(v5, mqttbytes_v5_bytes, mqttbytes_v5_decode, mb::Packet::Disconnect(c) => c);

// ---------------------------------------------------------------- embermq

use embermq::codec::{
    DecodeOptions, Decoded, Packet, Properties, PropertyFields, ProtocolVersion, PubAck,
    ReasonCode, ReasonCodes, RetainHandling, Subscription, SubscriptionOptions, Subscriptions,
    UserProperty,
};

fn em_qos(q: u8) -> embermq::codec::QoS {
    embermq::codec::QoS::from_bits(q).expect("model qos is 0..=2")
}

fn em_user_props(up: &UserProps) -> Vec<UserProperty<'_>> {
    up.iter()
        .map(|(name, value)| UserProperty { name, value })
        .collect()
}

fn model_user_props(p: &Properties<'_>) -> UserProps {
    p.user_properties()
        .map(|u| (u.name.to_owned(), u.value.to_owned()))
        .collect()
}

/// Builds the embermq packet for a model value and hands it to `f` (the
/// packet borrows from locals here, hence the callback).
pub fn with_embermq<R>(m: &Model, version: ProtocolVersion, f: impl FnOnce(Packet<'_>) -> R) -> R {
    // Storage the packet borrows from.
    let user_props: Vec<UserProperty<'_>>;
    let mut fields = PropertyFields::NONE;
    let sub_ids: Vec<u32>;
    let subscriptions: Vec<Subscription<'_>>;
    let codes: Vec<ReasonCode>;
    let props = |fields: &PropertyFields<'_>| -> bool { *fields != PropertyFields::NONE };
    match m {
        Model::Connect(c) => {
            user_props = em_user_props(&c.props.user_properties);
            fields.session_expiry_interval = c.props.session_expiry_interval;
            fields.receive_maximum = c.props.receive_maximum;
            fields.maximum_packet_size = c.props.maximum_packet_size;
            fields.topic_alias_maximum = c.props.topic_alias_maximum;
            fields.user_properties = &user_props;
            let properties = if props(&fields) {
                Properties::from_fields(&fields)
            } else {
                Properties::NONE
            };
            f(Packet::Connect(embermq::codec::Connect {
                protocol_version: version,
                clean_start: c.clean_session,
                keep_alive: c.keep_alive,
                client_id: &c.client_id,
                will: c.will.as_ref().map(|w| embermq::codec::Will {
                    topic: &w.topic,
                    payload: &w.payload,
                    qos: em_qos(w.qos),
                    retain: w.retain,
                    properties: Properties::NONE,
                }),
                username: c.username.as_deref(),
                password: c.password.as_deref().map(str::as_bytes),
                properties,
            }))
        }
        Model::ConnAck(c) => f(Packet::Connack(embermq::codec::Connack {
            session_present: c.session_present,
            reason_code: if version == ProtocolVersion::V311 {
                ReasonCode::from_v311_connack(c.code).expect("model code")
            } else {
                ReasonCode(c.code)
            },
            properties: Properties::NONE,
        })),
        Model::Publish(p) => {
            user_props = em_user_props(&p.props.user_properties);
            sub_ids = p.props.subscription_identifiers.clone();
            fields.payload_format_indicator = p.props.payload_format_indicator.map(|v| v == 1);
            fields.message_expiry_interval = p.props.message_expiry_interval;
            fields.topic_alias = p.props.topic_alias;
            fields.response_topic = p.props.response_topic.as_deref();
            fields.correlation_data = p.props.correlation_data.as_deref();
            fields.content_type = p.props.content_type.as_deref();
            fields.user_properties = &user_props;
            fields.subscription_identifiers = &sub_ids;
            let properties = if props(&fields) {
                Properties::from_fields(&fields)
            } else {
                Properties::NONE
            };
            f(Packet::Publish(embermq::codec::Publish {
                dup: p.dup,
                qos: em_qos(p.qos),
                retain: p.retain,
                topic: &p.topic,
                packet_id: (p.qos > 0).then_some(p.pkid),
                properties,
                payload: &p.payload,
            }))
        }
        Model::Ack(a) => {
            user_props = em_user_props(&a.user_properties);
            fields.reason_string = a.reason_string.as_deref();
            fields.user_properties = &user_props;
            let properties = if props(&fields) {
                Properties::from_fields(&fields)
            } else {
                Properties::NONE
            };
            let ack = PubAck {
                packet_id: a.pkid,
                reason_code: ReasonCode(a.reason),
                properties,
            };
            f(match a.kind {
                AckKind::PubAck => Packet::Puback(ack),
                AckKind::PubRec => Packet::Pubrec(ack),
                AckKind::PubRel => Packet::Pubrel(ack),
                AckKind::PubComp => Packet::Pubcomp(ack),
            })
        }
        Model::Subscribe(s) => {
            user_props = em_user_props(&s.user_properties);
            sub_ids = s.subscription_identifier.into_iter().collect();
            fields.user_properties = &user_props;
            fields.subscription_identifiers = &sub_ids;
            subscriptions = s
                .filters
                .iter()
                .map(|f| Subscription {
                    filter: &f.filter,
                    options: SubscriptionOptions {
                        qos: em_qos(f.qos),
                        no_local: f.no_local,
                        retain_as_published: f.retain_as_published,
                        retain_handling: match f.retain_handling {
                            0 => RetainHandling::SendAtSubscribe,
                            1 => RetainHandling::SendAtSubscribeIfNew,
                            _ => RetainHandling::DoNotSend,
                        },
                    },
                })
                .collect();
            let properties = if props(&fields) {
                Properties::from_fields(&fields)
            } else {
                Properties::NONE
            };
            f(Packet::Subscribe(embermq::codec::Subscribe {
                packet_id: s.pkid,
                properties,
                subscriptions: Subscriptions::from_slice(&subscriptions),
            }))
        }
        Model::SubAck(s) => {
            codes = s.codes.iter().map(|&c| ReasonCode(c)).collect();
            f(Packet::Suback(embermq::codec::Suback {
                packet_id: s.pkid,
                properties: Properties::NONE,
                reason_codes: ReasonCodes::from_slice(&codes),
            }))
        }
        Model::Unsubscribe(u) => with_embermq_unsubscribe(u, f),
        Model::UnsubAck(pkid) => with_embermq_unsuback(*pkid, &[], f),
        Model::UnsubAckV5 { pkid, reasons } => with_embermq_unsuback(*pkid, reasons, f),
        Model::PingReq => f(Packet::Pingreq),
        Model::PingResp => f(Packet::Pingresp),
        Model::Disconnect(r) => with_embermq_disconnect(*r, f),
    }
}

/// embermq's encoding of a model value.
pub fn embermq_bytes(
    m: &Model,
    version: ProtocolVersion,
) -> Result<Vec<u8>, embermq::codec::EncodeError> {
    with_embermq(m, version, |p| {
        let mut buf = vec![0u8; p.encoded_len(version)];
        let n = p.encode(&mut buf, version)?;
        assert_eq!(n, buf.len(), "encoded_len disagrees with encode");
        Ok(buf)
    })
}

/// embermq's decoding of one whole packet, in the model.
pub fn embermq_decode(
    bytes: &[u8],
    version: ProtocolVersion,
) -> Result<Model, embermq::codec::DecodeError> {
    match Packet::decode(bytes, &DecodeOptions::new(version))? {
        Decoded::Complete { value, len } => {
            assert_eq!(
                len,
                bytes.len(),
                "embermq consumed {len} of {}",
                bytes.len()
            );
            Ok(from_embermq(&value, version))
        }
        Decoded::Incomplete { needed } => {
            panic!("embermq wants {needed} more bytes of a whole packet")
        }
    }
}

/// An embermq packet in the model.
pub fn from_embermq(p: &Packet<'_>, version: ProtocolVersion) -> Model {
    let ack = |kind, a: &PubAck<'_>| {
        Model::Ack(Ack {
            kind,
            pkid: a.packet_id,
            reason: a.reason_code.0,
            reason_string: a.properties.reason_string().map(str::to_owned),
            user_properties: model_user_props(&a.properties),
        })
    };
    match p {
        Packet::Connect(c) => Model::Connect(Connect {
            keep_alive: c.keep_alive,
            client_id: c.client_id.to_owned(),
            clean_session: c.clean_start,
            will: c.will.map(|w| Will {
                topic: w.topic.to_owned(),
                payload: w.payload.to_vec(),
                qos: w.qos as u8,
                retain: w.retain,
            }),
            username: c.username.map(str::to_owned),
            password: c
                .password
                .map(|p| String::from_utf8(p.to_vec()).expect("model passwords are UTF-8")),
            props: ConnectProps {
                session_expiry_interval: c.properties.session_expiry_interval(),
                receive_maximum: c.properties.receive_maximum(),
                maximum_packet_size: c.properties.maximum_packet_size(),
                topic_alias_maximum: c.properties.topic_alias_maximum(),
                user_properties: model_user_props(&c.properties),
            },
        }),
        Packet::Connack(c) => Model::ConnAck(ConnAck {
            session_present: c.session_present,
            code: if version == ProtocolVersion::V311 {
                c.reason_code.to_v311_connack().expect("3.1.1 code")
            } else {
                c.reason_code.0
            },
        }),
        Packet::Publish(p) => Model::Publish(Publish {
            dup: p.dup,
            qos: p.qos as u8,
            retain: p.retain,
            topic: p.topic.to_owned(),
            pkid: p.packet_id.unwrap_or(0),
            payload: p.payload.to_vec(),
            props: PublishProps {
                payload_format_indicator: p.properties.payload_format_indicator().map(u8::from),
                message_expiry_interval: p.properties.message_expiry_interval(),
                topic_alias: p.properties.topic_alias(),
                response_topic: p.properties.response_topic().map(str::to_owned),
                correlation_data: p.properties.correlation_data().map(<[u8]>::to_vec),
                user_properties: model_user_props(&p.properties),
                subscription_identifiers: p.properties.subscription_identifiers().collect(),
                content_type: p.properties.content_type().map(str::to_owned),
            },
        }),
        Packet::Puback(a) => ack(AckKind::PubAck, a),
        Packet::Pubrec(a) => ack(AckKind::PubRec, a),
        Packet::Pubrel(a) => ack(AckKind::PubRel, a),
        Packet::Pubcomp(a) => ack(AckKind::PubComp, a),
        Packet::Subscribe(s) => Model::Subscribe(Subscribe {
            pkid: s.packet_id,
            filters: s
                .subscriptions
                .iter()
                .map(|sub| SubscribeFilter {
                    filter: sub.filter.to_owned(),
                    qos: sub.options.qos as u8,
                    no_local: sub.options.no_local,
                    retain_as_published: sub.options.retain_as_published,
                    retain_handling: sub.options.retain_handling as u8,
                })
                .collect(),
            subscription_identifier: s.properties.subscription_identifiers().next(),
            user_properties: model_user_props(&s.properties),
        }),
        Packet::Suback(s) => Model::SubAck(SubAck {
            pkid: s.packet_id,
            codes: s.reason_codes.iter().map(|c| c.0).collect(),
        }),
        Packet::Pingreq => Model::PingReq,
        Packet::Pingresp => Model::PingResp,
        other => from_embermq_rest(other),
    }
}

fn with_embermq_unsubscribe<R>(u: &Unsubscribe, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let filters: Vec<&str> = u.filters.iter().map(String::as_str).collect();
    f(Packet::Unsubscribe(embermq::codec::Unsubscribe {
        packet_id: u.pkid,
        properties: Properties::NONE,
        filters: embermq::codec::TopicFilters::from_slice(&filters),
    }))
}

fn with_embermq_unsuback<R>(pkid: u16, reasons: &[u8], f: impl FnOnce(Packet<'_>) -> R) -> R {
    let codes: Vec<ReasonCode> = reasons.iter().map(|&r| ReasonCode(r)).collect();
    f(Packet::Unsuback(embermq::codec::Unsuback {
        packet_id: pkid,
        properties: Properties::NONE,
        reason_codes: ReasonCodes::from_slice(&codes),
    }))
}

fn with_embermq_disconnect<R>(reason: u8, f: impl FnOnce(Packet<'_>) -> R) -> R {
    f(Packet::Disconnect(embermq::codec::Disconnect {
        reason_code: ReasonCode(reason),
        properties: Properties::NONE,
    }))
}

fn from_embermq_rest(p: &Packet<'_>) -> Model {
    match p {
        Packet::Unsubscribe(u) => Model::Unsubscribe(Unsubscribe {
            pkid: u.packet_id,
            filters: u.filters.iter().map(str::to_owned).collect(),
        }),
        Packet::Unsuback(u) if u.reason_codes.is_empty() => Model::UnsubAck(u.packet_id),
        Packet::Unsuback(u) => Model::UnsubAckV5 {
            pkid: u.packet_id,
            reasons: u.reason_codes.iter().map(|c| c.0).collect(),
        },
        Packet::Disconnect(d) => Model::Disconnect(d.reason_code.0),
        other => panic!("not in the model: {other:?}"),
    }
}
