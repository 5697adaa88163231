//! Proptest strategies generating every packet type of both versions, valid
//! by construction (what a strict decoder accepts). Owned data is leaked to
//! give `Packet<'static>` values: test-only, small, and it keeps the
//! strategies usable as plain `Strategy<Value = Packet<'static>>`.

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::properties::PropertyContext;
use super::{
    Auth, Connack, Connect, Disconnect, Packet, PacketType, Properties, Property, PropertyFields,
    ProtocolVersion, PubAck, Publish, QoS, ReasonCode, ReasonCodes, RetainHandling, Suback,
    Subscribe, Subscription, SubscriptionOptions, Subscriptions, TopicFilters, Unsuback,
    Unsubscribe, UserProperty, Will, property_id as id,
};

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_bytes(b: Vec<u8>) -> &'static [u8] {
    Box::leak(b.into_boxed_slice())
}

fn leak_slice<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

/// Any UTF-8 string without U+0000 (and without other control characters).
pub(crate) fn string() -> impl Strategy<Value = &'static str> + Clone {
    "\\PC{0,12}".prop_map(leak_str)
}

/// Arbitrary bytes.
pub(crate) fn bytes() -> impl Strategy<Value = &'static [u8]> + Clone {
    prop::collection::vec(any::<u8>(), 0..40).prop_map(leak_bytes)
}

/// A non-empty topic name without wildcards.
pub(crate) fn topic_name() -> impl Strategy<Value = &'static str> + Clone {
    "[a-zA-Z0-9_$/ é€-]{1,24}".prop_map(leak_str)
}

/// A valid topic filter: levels of text or `+`, optionally ending in `#`.
pub(crate) fn topic_filter() -> impl Strategy<Value = &'static str> + Clone {
    (
        prop::collection::vec(prop_oneof![Just(String::from("+")), "[a-z0-9 ]{0,6}"], 1..5),
        any::<bool>(),
    )
        .prop_map(|(levels, hash)| {
            let mut s = levels.join("/");
            if s.is_empty() {
                s.push('x');
            }
            if hash {
                s.push_str("/#");
            }
            leak_str(s)
        })
}

/// A reason code valid for `packet_type` in `version`.
pub(crate) fn reason_code(
    packet_type: PacketType,
    version: ProtocolVersion,
) -> impl Strategy<Value = ReasonCode> + Clone {
    let valid: Vec<ReasonCode> = (0..=255u8)
        .map(ReasonCode)
        .filter(|c| c.is_valid_for(packet_type, version))
        .collect();
    prop::sample::select(valid)
}

fn packet_id() -> impl Strategy<Value = u16> + Clone {
    1..=u16::MAX
}

fn qos() -> impl Strategy<Value = QoS> + Clone {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn property(id: u8) -> BoxedStrategy<Property<'static>> {
    use Property as P;
    match id {
        id::PAYLOAD_FORMAT_INDICATOR => any::<bool>().prop_map(P::PayloadFormatIndicator).boxed(),
        id::MESSAGE_EXPIRY_INTERVAL => any::<u32>().prop_map(P::MessageExpiryInterval).boxed(),
        id::CONTENT_TYPE => string().prop_map(P::ContentType).boxed(),
        id::RESPONSE_TOPIC => topic_name().prop_map(P::ResponseTopic).boxed(),
        id::CORRELATION_DATA => bytes().prop_map(P::CorrelationData).boxed(),
        id::SUBSCRIPTION_IDENTIFIER => (1..=268_435_455u32)
            .prop_map(P::SubscriptionIdentifier)
            .boxed(),
        id::SESSION_EXPIRY_INTERVAL => any::<u32>().prop_map(P::SessionExpiryInterval).boxed(),
        id::ASSIGNED_CLIENT_IDENTIFIER => string().prop_map(P::AssignedClientIdentifier).boxed(),
        id::SERVER_KEEP_ALIVE => any::<u16>().prop_map(P::ServerKeepAlive).boxed(),
        id::AUTHENTICATION_METHOD => string().prop_map(P::AuthenticationMethod).boxed(),
        id::AUTHENTICATION_DATA => bytes().prop_map(P::AuthenticationData).boxed(),
        id::REQUEST_PROBLEM_INFORMATION => {
            any::<bool>().prop_map(P::RequestProblemInformation).boxed()
        }
        id::WILL_DELAY_INTERVAL => any::<u32>().prop_map(P::WillDelayInterval).boxed(),
        id::REQUEST_RESPONSE_INFORMATION => any::<bool>()
            .prop_map(P::RequestResponseInformation)
            .boxed(),
        id::RESPONSE_INFORMATION => string().prop_map(P::ResponseInformation).boxed(),
        id::SERVER_REFERENCE => string().prop_map(P::ServerReference).boxed(),
        id::REASON_STRING => string().prop_map(P::ReasonString).boxed(),
        id::RECEIVE_MAXIMUM => (1..=u16::MAX).prop_map(P::ReceiveMaximum).boxed(),
        id::TOPIC_ALIAS_MAXIMUM => any::<u16>().prop_map(P::TopicAliasMaximum).boxed(),
        id::TOPIC_ALIAS => (1..=u16::MAX).prop_map(P::TopicAlias).boxed(),
        id::MAXIMUM_QOS => prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]
            .prop_map(P::MaximumQos)
            .boxed(),
        id::RETAIN_AVAILABLE => any::<bool>().prop_map(P::RetainAvailable).boxed(),
        id::USER_PROPERTY => (string(), string())
            .prop_map(|(name, value)| P::UserProperty(UserProperty { name, value }))
            .boxed(),
        id::MAXIMUM_PACKET_SIZE => (1..=u32::MAX).prop_map(P::MaximumPacketSize).boxed(),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => any::<bool>()
            .prop_map(P::WildcardSubscriptionAvailable)
            .boxed(),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => any::<bool>()
            .prop_map(P::SubscriptionIdentifierAvailable)
            .boxed(),
        _ => any::<bool>()
            .prop_map(P::SharedSubscriptionAvailable)
            .boxed(),
    }
}

/// Folds generated properties into fields: later single values win, user
/// properties and subscription identifiers accumulate.
fn fields_from(props: Vec<Property<'static>>, ctx: PropertyContext) -> PropertyFields<'static> {
    let mut f = PropertyFields::NONE;
    let mut users = Vec::new();
    let mut sub_ids = Vec::new();
    for p in props {
        match p {
            Property::PayloadFormatIndicator(v) => f.payload_format_indicator = Some(v),
            Property::MessageExpiryInterval(v) => f.message_expiry_interval = Some(v),
            Property::ContentType(v) => f.content_type = Some(v),
            Property::ResponseTopic(v) => f.response_topic = Some(v),
            Property::CorrelationData(v) => f.correlation_data = Some(v),
            Property::SubscriptionIdentifier(v) => sub_ids.push(v),
            Property::SessionExpiryInterval(v) => f.session_expiry_interval = Some(v),
            Property::AssignedClientIdentifier(v) => f.assigned_client_identifier = Some(v),
            Property::ServerKeepAlive(v) => f.server_keep_alive = Some(v),
            Property::AuthenticationMethod(v) => f.authentication_method = Some(v),
            Property::AuthenticationData(v) => f.authentication_data = Some(v),
            Property::RequestProblemInformation(v) => f.request_problem_information = Some(v),
            Property::WillDelayInterval(v) => f.will_delay_interval = Some(v),
            Property::RequestResponseInformation(v) => f.request_response_information = Some(v),
            Property::ResponseInformation(v) => f.response_information = Some(v),
            Property::ServerReference(v) => f.server_reference = Some(v),
            Property::ReasonString(v) => f.reason_string = Some(v),
            Property::ReceiveMaximum(v) => f.receive_maximum = Some(v),
            Property::TopicAliasMaximum(v) => f.topic_alias_maximum = Some(v),
            Property::TopicAlias(v) => f.topic_alias = Some(v),
            Property::MaximumQos(v) => f.maximum_qos = Some(v),
            Property::RetainAvailable(v) => f.retain_available = Some(v),
            Property::UserProperty(v) => users.push(v),
            Property::MaximumPacketSize(v) => f.maximum_packet_size = Some(v),
            Property::WildcardSubscriptionAvailable(v) => {
                f.wildcard_subscription_available = Some(v);
            }
            Property::SubscriptionIdentifierAvailable(v) => {
                f.subscription_identifier_available = Some(v);
            }
            Property::SharedSubscriptionAvailable(v) => f.shared_subscription_available = Some(v),
        }
    }
    if f.authentication_data.is_some() && f.authentication_method.is_none() {
        f.authentication_method = Some("method");
    }
    if ctx == PropertyContext::Packet(PacketType::Subscribe) {
        sub_ids.truncate(1);
    }
    f.user_properties = leak_slice(users);
    f.subscription_identifiers = leak_slice(sub_ids);
    f
}

fn allowed_ids(ctx: PropertyContext) -> Vec<u8> {
    (0u8..=0x2a).filter(|&i| ctx.allows(i)).collect()
}

/// Properties valid for `ctx` in `version` (always empty in 3.1.1).
pub(crate) fn properties(
    ctx: PropertyContext,
    version: ProtocolVersion,
) -> BoxedStrategy<Properties<'static>> {
    let ids = allowed_ids(ctx);
    if version == ProtocolVersion::V311 || ids.is_empty() {
        return Just(Properties::NONE).boxed();
    }
    prop::collection::vec(prop::sample::select(ids).prop_flat_map(property), 0..6)
        .prop_map(move |props| {
            let fields: &'static PropertyFields<'static> =
                Box::leak(Box::new(fields_from(props, ctx)));
            Properties::from_fields(fields)
        })
        .boxed()
}

fn ctx(t: PacketType) -> PropertyContext {
    PropertyContext::Packet(t)
}

fn will(version: ProtocolVersion) -> impl Strategy<Value = Will<'static>> {
    (
        topic_name(),
        bytes(),
        qos(),
        any::<bool>(),
        properties(PropertyContext::Will, version),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        prop::option::of(will(version)),
        prop::option::of(string()),
        prop::option::of(bytes()),
        properties(ctx(PacketType::Connect), version),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.1.1 needs a user name with a password [MQTT-3.1.2-22].
                let username = match (version, username, password) {
                    (ProtocolVersion::V311, None, Some(_)) => Some("user"),
                    (_, u, _) => u,
                };
                Packet::Connect(Connect {
                    protocol_version: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                })
            },
        )
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        any::<bool>(),
        reason_code(PacketType::Connack, version),
        properties(ctx(PacketType::Connack), version),
    )
        .prop_map(|(session_present, reason_code, properties)| {
            Packet::Connack(Connack {
                session_present: session_present && reason_code == ReasonCode::SUCCESS,
                reason_code,
                properties,
            })
        })
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        properties(ctx(PacketType::Publish), version),
        bytes(),
        any::<bool>(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, id, properties, payload, empty_topic)| {
                // 5.0: an empty topic is valid with a Topic Alias.
                let topic = if empty_topic && properties.topic_alias().is_some() {
                    ""
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic,
                    packet_id: (qos != QoS::AtMostOnce).then_some(id),
                    properties,
                    payload,
                })
            },
        )
}

fn pub_ack(t: PacketType, version: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        packet_id(),
        reason_code(t, version),
        properties(ctx(t), version),
    )
        .prop_map(move |(packet_id, reason_code, properties)| {
            let ack = PubAck {
                packet_id,
                reason_code,
                properties,
            };
            match t {
                PacketType::Puback => Packet::Puback(ack),
                PacketType::Pubrec => Packet::Pubrec(ack),
                PacketType::Pubrel => Packet::Pubrel(ack),
                _ => Packet::Pubcomp(ack),
            }
        })
}

fn subscription(version: ProtocolVersion) -> impl Strategy<Value = Subscription<'static>> {
    (topic_filter(), qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        move |(filter, qos, no_local, retain_as_published, rh)| {
            let v5 = version == ProtocolVersion::V5;
            Subscription {
                filter,
                options: SubscriptionOptions {
                    qos,
                    no_local: v5 && no_local,
                    retain_as_published: v5 && retain_as_published,
                    retain_handling: match (v5, rh) {
                        (true, 1) => RetainHandling::SendAtSubscribeIfNew,
                        (true, 2) => RetainHandling::DoNotSend,
                        _ => RetainHandling::SendAtSubscribe,
                    },
                },
            }
        },
    )
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        packet_id(),
        properties(ctx(PacketType::Subscribe), version),
        prop::collection::vec(subscription(version), 1..5),
    )
        .prop_map(|(packet_id, properties, subs)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions: Subscriptions::from_slice(leak_slice(subs)),
            })
        })
}

fn codes(t: PacketType, version: ProtocolVersion) -> impl Strategy<Value = ReasonCodes<'static>> {
    prop::collection::vec(reason_code(t, version), 1..5)
        .prop_map(|codes| ReasonCodes::from_slice(leak_slice(codes)))
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        packet_id(),
        properties(ctx(PacketType::Suback), version),
        codes(PacketType::Suback, version),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::Suback(Suback {
                packet_id,
                properties,
                reason_codes,
            })
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        packet_id(),
        properties(ctx(PacketType::Unsubscribe), version),
        prop::collection::vec(topic_filter(), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters: TopicFilters::from_slice(leak_slice(filters)),
            })
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        packet_id(),
        properties(ctx(PacketType::Unsuback), version),
        codes(PacketType::Unsuback, version),
    )
        .prop_map(move |(packet_id, properties, reason_codes)| {
            let reason_codes = if version == ProtocolVersion::V5 {
                reason_codes
            } else {
                ReasonCodes::EMPTY
            };
            Packet::Unsuback(Unsuback {
                packet_id,
                properties,
                reason_codes,
            })
        })
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        reason_code(PacketType::Disconnect, version),
        properties(ctx(PacketType::Disconnect), version),
    )
        .prop_map(|(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        })
}

fn auth() -> impl Strategy<Value = Packet<'static>> {
    (
        reason_code(PacketType::Auth, ProtocolVersion::V5),
        properties(ctx(PacketType::Auth), ProtocolVersion::V5),
    )
        .prop_map(|(reason_code, properties)| {
            Packet::Auth(Auth {
                reason_code,
                properties,
            })
        })
}

/// Any packet valid in `version` (AUTH only in 5.0).
pub(crate) fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet<'static>> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        pub_ack(PacketType::Puback, version),
        pub_ack(PacketType::Pubrec, version),
        pub_ack(PacketType::Pubrel, version),
        pub_ack(PacketType::Pubcomp, version),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::Pingreq),
        Just(Packet::Pingresp),
        disconnect(version),
    ];
    match version {
        ProtocolVersion::V311 => common.boxed(),
        ProtocolVersion::V5 => prop_oneof![14 => common, 1 => auth()].boxed(),
    }
}
