//! Differential tests: embermq's topic validation and matching against
//! mqttbytes 0.6 (`mqttbytes::{valid_topic, valid_filter, matches}`).
//!
//! Where the two agree the property tests say so over generated inputs; where
//! they disagree a named test pins the case down, cites the spec statement
//! that decides, and says which side the spec is on. None of the divergences
//! below is an embermq bug.

use embermq::topic::{self, TopicError};
use proptest::prelude::*;

/// A level of a name: a few short strings, so that collisions are frequent.
fn name_level() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[ab]", "[ab]{2}", "x y"]
}

/// A valid topic name of 1..5 levels; not starting with `$` so that the
/// mqttbytes `$` bug (below) stays out of the agreement property.
fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(name_level(), 1..5)
        .prop_map(|l| l.join("/"))
        .prop_filter("valid, no $", |n| !n.is_empty() && !n.starts_with('$'))
}

/// A valid, non-shared filter: name levels with some replaced by `+`, and
/// maybe a trailing `#`.
fn filter() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(prop_oneof![name_level(), Just("+".to_owned())], 0..5),
        any::<bool>(),
    )
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("non-empty", |f| !f.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Both accept every generated filter and name, and agree on matching
    /// (mqttbytes takes its arguments as (topic, filter)).
    #[test]
    fn agree_on_matching_valid_inputs(filter in filter(), name in name()) {
        prop_assert_eq!(topic::validate_filter(&filter), Ok(()));
        prop_assert!(mqttbytes::valid_filter(&filter));
        prop_assert_eq!(topic::validate_name(&name), Ok(()));
        prop_assert!(mqttbytes::valid_topic(&name));
        prop_assert_eq!(
            topic::matches(&filter, &name),
            mqttbytes::matches(&name, &filter),
            "filter {:?} name {:?}", filter, name
        );
    }

    /// Over arbitrary short strings of the interesting characters, the only
    /// filters mqttbytes accepts and embermq rejects are those of the named
    /// divergences below (a `+` sharing its level, NUL, `$share/` syntax);
    /// embermq never accepts a filter mqttbytes rejects.
    #[test]
    fn filter_validity_differs_only_in_documented_ways(filter in "[a+#/$\\x00]{0,8}") {
        let ours = topic::validate_filter(&filter);
        let theirs = mqttbytes::valid_filter(&filter);
        match (ours, theirs) {
            (Ok(()), false) => prop_assert!(false, "we accept {:?}, mqttbytes does not", filter),
            (Err(e), true) => prop_assert!(
                matches!(
                    e,
                    TopicError::MisplacedSingleLevelWildcard
                        | TopicError::NullCharacter
                        | TopicError::EmptyShareName
                        | TopicError::WildcardInShareName
                        | TopicError::MissingSharedFilter
                ),
                "undocumented divergence on {:?}: {:?}", filter, e
            ),
            _ => {}
        }
    }
}

/// §4.7.2: "A subscription to "$SYS/#" will receive messages published to
/// topics beginning with "$SYS/"". [MQTT-4.7.2-1] only forbids a *leading
/// wildcard* from matching a `$` topic; mqttbytes 0.6 refuses every `$` topic
/// whatever the filter. Verdict: mqttbytes bug; embermq follows the spec.
#[test]
fn divergence_mqtt_4_7_2_dollar_sys_filter_matches_dollar_topics_mqttbytes_refuses() {
    for (filter, name) in [
        ("$SYS/#", "$SYS/broker/uptime"),
        ("$SYS/monitor/+", "$SYS/monitor/Clients"),
    ] {
        assert!(topic::matches(filter, name));
        assert!(
            !mqttbytes::matches(name, filter),
            "mqttbytes fixed? {filter} {name}"
        );
    }
    // Where the rule does apply, both refuse.
    assert!(!topic::matches("#", "$SYS/x"));
    assert!(!mqttbytes::matches("$SYS/x", "#"));
    assert!(!topic::matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert!(!mqttbytes::matches(
        "$SYS/monitor/Clients",
        "+/monitor/Clients"
    ));
}

/// [MQTT-4.7.1-3]: "+" must occupy an entire level; §4.7.1.3 gives
/// "sport+" as not valid. mqttbytes 0.6 only checks `#`. Verdict: mqttbytes
/// accepts a malformed filter that a broker would answer by closing the
/// connection; embermq rejects it before it is sent.
#[test]
fn divergence_mqtt_4_7_1_3_plus_sharing_its_level_mqttbytes_accepts() {
    for filter in ["sport+", "sport/+tennis", "a/++"] {
        assert_eq!(
            topic::validate_filter(filter),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
        assert!(mqttbytes::valid_filter(filter), "mqttbytes fixed? {filter}");
    }
}

/// [MQTT-4.7.3-1] (topic names are at least one character long) and
/// [MQTT-4.7.3-2] (no U+0000): mqttbytes' `valid_topic` checks wildcards
/// only. Verdict: mqttbytes is lax; embermq follows the spec.
#[test]
fn divergence_mqtt_4_7_3_1_and_2_empty_or_nul_topic_name_mqttbytes_accepts() {
    assert_eq!(topic::validate_name(""), Err(TopicError::Empty));
    assert!(mqttbytes::valid_topic(""));
    assert_eq!(topic::validate_name("a\0b"), Err(TopicError::NullCharacter));
    assert!(mqttbytes::valid_topic("a\0b"));
    assert_eq!(
        topic::validate_filter("a\0b/#"),
        Err(TopicError::NullCharacter)
    );
    assert!(mqttbytes::valid_filter("a\0b/#"));
}

/// MQTT 5.0 §4.8.2: `$share/{ShareName}/{filter}` is matched on its filter
/// part. mqttbytes 0.6 has no notion of shared subscriptions (and would
/// refuse the match anyway, as the filter starts with `$`), nor does it check
/// the share name [MQTT-4.8.2-1], [MQTT-4.8.2-2]. Verdict: a missing feature
/// in mqttbytes rather than a bug; embermq implements §4.8.2.
#[test]
fn divergence_mqtt_4_8_2_shared_subscription_unknown_to_mqttbytes() {
    assert!(topic::matches("$share/g/sport/+", "sport/tennis"));
    assert!(!mqttbytes::matches("sport/tennis", "$share/g/sport/+"));
    assert_eq!(
        topic::validate_filter("$share//a"),
        Err(TopicError::EmptyShareName)
    );
    assert!(mqttbytes::valid_filter("$share//a"));
}

/// [MQTT-4.7.3-3]: a topic is at most 65 535 bytes (the string length
/// prefix). mqttbytes does not check it, and its encoder would truncate the
/// length prefix (`len as u16`). Verdict: mqttbytes bug; embermq rejects.
#[test]
fn divergence_mqtt_4_7_3_3_oversized_topic_mqttbytes_accepts() {
    let long = "a".repeat(topic::MAX_TOPIC_LEN + 1);
    assert_eq!(
        topic::validate_name(&long),
        Err(TopicError::TooLong { len: long.len() })
    );
    assert!(mqttbytes::valid_topic(&long));
}
