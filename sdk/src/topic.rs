//! Topic names and topic filters: validation and matching.
//!
//! Implements MQTT 3.1.1 §4.7 and MQTT 5.0 §4.7 (topic names, topic filters,
//! the `+` and `#` wildcards, `$`-topics) and MQTT 5.0 §4.8.2 (shared
//! subscriptions, `$share/{ShareName}/{filter}`). Both protocol versions use
//! the same rules, so one set of functions serves both.
//!
//! - [`validate_name`] checks a topic name as it appears in PUBLISH (and in a
//!   will): non-empty, at most 65 535 bytes, no U+0000, no wildcard.
//! - [`validate_filter`] / [`TopicFilter::parse`] check a topic filter as it
//!   appears in SUBSCRIBE and UNSUBSCRIBE, and split a shared subscription
//!   into its share name and its filter.
//! - [`matches()`] / [`TopicFilter::matches`] decide whether a topic name
//!   matches a filter, level by level.
//!
//! Everything here borrows its input, allocates nothing and never indexes.
//! Matching walks levels with `str::split('/')`; validation, which the codec
//! runs on every SUBSCRIBE, UNSUBSCRIBE and PUBLISH, is a single scan for the
//! few bytes that matter (`+`, `#`, U+0000), looking at a wildcard's
//! neighbours with `get` only when one is found.
//!
//! Deliberately not done here: well-formedness of the UTF-8 encoding itself
//! and the "SHOULD NOT" code points of §1.5.3 (control characters,
//! non-characters) are the codec's business, since a `&str` is already valid
//! UTF-8 by the time it reaches this module. `$share/` is recognised in both
//! protocol versions: MQTT 3.1.1 has no shared subscriptions, but the brokers
//! that offer them to 3.1.1 clients use the same syntax. The price is
//! deliberate: a filter such as `$share/+/x`, legal as an ordinary 3.1.1
//! filter, is refused here.

use core::fmt;

/// The largest topic name or filter in bytes: the length prefix of an MQTT
/// UTF-8 string is 16 bits [MQTT-4.7.3-3].
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The prefix that marks a shared subscription (MQTT 5.0 §4.8.2).
pub const SHARE_PREFIX: &str = "$share/";

/// Why a topic name or topic filter is not valid.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// The name or filter is the empty string [MQTT-4.7.3-1].
    Empty,
    /// The name or filter is longer than [`MAX_TOPIC_LEN`] bytes
    /// [MQTT-4.7.3-3].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name or filter contains U+0000 [MQTT-4.7.3-2].
    NullCharacter,
    /// A topic name contains `+` or `#`; wildcards belong in filters only
    /// [MQTT-3.3.2-2], [MQTT-4.7.1-1].
    WildcardInName,
    /// `#` is not alone in its level, or not in the last level of the filter
    /// [MQTT-4.7.1-2].
    MisplacedMultiLevelWildcard,
    /// `+` is not alone in its level [MQTT-4.7.1-3].
    MisplacedSingleLevelWildcard,
    /// A shared subscription `$share//…` has an empty share name
    /// [MQTT-4.8.2-1].
    EmptyShareName,
    /// A shared subscription's share name contains `+` or `#`
    /// [MQTT-4.8.2-2].
    WildcardInShareName,
    /// A shared subscription has no topic filter after its share name
    /// (`$share/group` or `$share/group/`) [MQTT-4.8.2-2].
    MissingSharedFilter,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("topic is empty [MQTT-4.7.3-1]"),
            Self::TooLong { len } => write!(
                f,
                "topic is {len} bytes long, the limit is {MAX_TOPIC_LEN} [MQTT-4.7.3-3]"
            ),
            Self::NullCharacter => f.write_str("topic contains U+0000 [MQTT-4.7.3-2]"),
            Self::WildcardInName => {
                f.write_str("topic name contains a wildcard ('+' or '#') [MQTT-3.3.2-2]")
            }
            Self::MisplacedMultiLevelWildcard => {
                f.write_str("'#' must be alone in the last level of a topic filter [MQTT-4.7.1-2]")
            }
            Self::MisplacedSingleLevelWildcard => {
                f.write_str("'+' must be alone in its level of a topic filter [MQTT-4.7.1-3]")
            }
            Self::EmptyShareName => {
                f.write_str("shared subscription has an empty share name [MQTT-4.8.2-1]")
            }
            Self::WildcardInShareName => {
                f.write_str("shared subscription's share name contains '+' or '#' [MQTT-4.8.2-2]")
            }
            Self::MissingSharedFilter => f.write_str(
                "shared subscription has no topic filter after its share name [MQTT-4.8.2-2]",
            ),
        }
    }
}

impl core::error::Error for TopicError {}

/// Checks what names and filters have in common that needs no scan:
/// non-empty [MQTT-4.7.3-1] and bounded [MQTT-4.7.3-3].
fn validate_length(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: topic.len() });
    }
    Ok(())
}

/// Validates a topic name (the topic of a PUBLISH or of a will message).
///
/// A topic name is non-empty [MQTT-4.7.3-1], at most [`MAX_TOPIC_LEN`] bytes
/// [MQTT-4.7.3-3], contains no U+0000 [MQTT-4.7.3-2] and no wildcard
/// [MQTT-3.3.2-2]. Empty levels (`a//b`, `/a`, `a/`, `/`) are valid, and
/// names are case sensitive (§4.7.3).
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    validate_length(name)?;
    // One pass without early exit (the compiler vectorises it); NUL is
    // reported first whatever the order in the name.
    let (nul, wildcard) = name.bytes().fold((false, false), |(nul, wildcard), b| {
        (nul | (b == 0), wildcard | (b == b'+') | (b == b'#'))
    });
    if nul {
        return Err(TopicError::NullCharacter);
    }
    if wildcard {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Validates a topic filter (as in SUBSCRIBE and UNSUBSCRIBE), shared
/// subscriptions included. See [`TopicFilter::parse`] for the rules.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    TopicFilter::parse(filter).map(|_| ())
}

/// Whether `text` holds a `+` or `#` byte. Both are ASCII, so they never
/// occur inside a multi-byte UTF-8 sequence and a byte scan is exact.
fn has_wildcard_byte(text: &str) -> bool {
    text.bytes().any(|b| b == b'+' || b == b'#')
}

/// Validates the levels of a filter that is not (or no longer) prefixed by
/// `$share/{ShareName}/`; its length is checked by the caller.
///
/// This sits on the codec's SUBSCRIBE path, so it is one tight scan for the
/// (rare) wildcard and NUL bytes, looking at a wildcard's neighbours only
/// when one is found: no U+0000 [MQTT-4.7.3-2], a wildcard must start its
/// level, `+` must end it [MQTT-4.7.1-3], and `#` must end the filter
/// [MQTT-4.7.1-2]. The first offending byte decides which statement is cited
/// (the caller ranks a NUL anywhere above the rest).
fn validate_filter_levels(filter: &str) -> Result<(), TopicError> {
    let bytes = filter.as_bytes();
    let hits = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'+' || b == b'#' || b == 0);
    for (at, &wildcard) in hits {
        if wildcard == 0 {
            return Err(TopicError::NullCharacter);
        }
        let starts_level = match at.checked_sub(1) {
            None => true,
            Some(before) => bytes.get(before) == Some(&b'/'),
        };
        let next = at.checked_add(1).and_then(|after| bytes.get(after));
        if wildcard == b'#' && (!starts_level || next.is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if wildcard == b'+' && (!starts_level || next.is_some_and(|&n| n != b'/')) {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// A validated topic filter, borrowed from its text.
///
/// For a shared subscription (`$share/{ShareName}/{filter}`, MQTT 5.0
/// §4.8.2) the share name and the filter proper are kept apart; matching uses
/// the filter proper only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopicFilter<'a> {
    full: &'a str,
    share_group: Option<&'a str>,
    filter: &'a str,
}

impl<'a> TopicFilter<'a> {
    /// Parses and validates a topic filter.
    ///
    /// The filter is non-empty [MQTT-4.7.3-1], at most [`MAX_TOPIC_LEN`]
    /// bytes [MQTT-4.7.3-3] and contains no U+0000 [MQTT-4.7.3-2]; `#` stands
    /// alone in the last level [MQTT-4.7.1-2]; `+` stands alone in its level
    /// [MQTT-4.7.1-3]. A filter starting with `$share/` is a shared
    /// subscription: its share name is at least one character long
    /// [MQTT-4.8.2-1], contains no `/`, `+` or `#`, and is followed by `/` and
    /// a non-empty topic filter that obeys the rules above [MQTT-4.8.2-2].
    pub fn parse(text: &'a str) -> Result<Self, TopicError> {
        validate_length(text)?;
        // One scan does the rest. A NUL anywhere outranks the other
        // findings; only the (rare) error path looks for one again.
        Self::parse_bounded(text).map_err(|e| {
            if e != TopicError::NullCharacter && text.as_bytes().contains(&0) {
                TopicError::NullCharacter
            } else {
                e
            }
        })
    }

    /// [`TopicFilter::parse`] after the length checks.
    fn parse_bounded(text: &'a str) -> Result<Self, TopicError> {
        match text.strip_prefix(SHARE_PREFIX) {
            Some(rest) => {
                let (group, filter) = rest
                    .split_once('/')
                    .ok_or(TopicError::MissingSharedFilter)?;
                if group.is_empty() {
                    return Err(TopicError::EmptyShareName);
                }
                match group.bytes().find(|&b| b == b'+' || b == b'#' || b == 0) {
                    Some(0) => return Err(TopicError::NullCharacter),
                    Some(_) => return Err(TopicError::WildcardInShareName),
                    None => {}
                }
                if filter.is_empty() {
                    return Err(TopicError::MissingSharedFilter);
                }
                validate_filter_levels(filter)?;
                Ok(Self {
                    full: text,
                    share_group: Some(group),
                    filter,
                })
            }
            None => {
                validate_filter_levels(text)?;
                Ok(Self {
                    full: text,
                    share_group: None,
                    filter: text,
                })
            }
        }
    }

    /// The whole filter as it was parsed (with any `$share/…/` prefix).
    pub fn as_str(&self) -> &'a str {
        self.full
    }

    /// The share name of a shared subscription, `None` for an ordinary one.
    pub fn share_group(&self) -> Option<&'a str> {
        self.share_group
    }

    /// Whether this is a shared subscription (`$share/{ShareName}/…`).
    pub fn is_shared(&self) -> bool {
        self.share_group.is_some()
    }

    /// The filter that topic names are matched against: the whole filter, or
    /// for a shared subscription the part after `$share/{ShareName}/`.
    pub fn filter(&self) -> &'a str {
        self.filter
    }

    /// Whether the filter contains a `+` or `#` wildcard (share name aside).
    pub fn has_wildcards(&self) -> bool {
        has_wildcard_byte(self.filter)
    }

    /// Whether the topic name `name` matches this filter (§4.7.1, §4.7.2).
    ///
    /// `name` is expected to be a valid topic name (see [`validate_name`]);
    /// this method does not check it again, and for an invalid name its
    /// answer is unspecified (but it never panics). Use [`matches()`] when the
    /// name has not been validated.
    pub fn matches(&self, name: &str) -> bool {
        levels_match(self.filter, name)
    }
}

impl fmt::Display for TopicFilter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.full)
    }
}

/// Whether the topic name `name` matches the topic filter `filter`.
///
/// Both are validated first: an invalid filter or an invalid name matches
/// nothing. A shared subscription's `$share/{ShareName}/` prefix is stripped
/// before matching (MQTT 5.0 §4.8.2). The rules (§4.7.1, §4.7.2):
///
/// - levels are compared exactly, case sensitive;
/// - `+` matches exactly one level, which may be empty;
/// - `#` matches any number of levels, including none: `sport/#` matches
///   `sport`;
/// - a name starting with `$` is not matched by a filter starting with `+`
///   or `#` [MQTT-4.7.2-1].
pub fn matches(filter: &str, name: &str) -> bool {
    match (TopicFilter::parse(filter), validate_name(name)) {
        (Ok(filter), Ok(())) => filter.matches(name),
        _ => false,
    }
}

/// Level-by-level matching of a filter proper (no `$share/` prefix) against
/// a name.
fn levels_match(filter: &str, name: &str) -> bool {
    // [MQTT-4.7.2-1]: a leading wildcard does not match a `$` topic.
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            // '#' matches the parent level and any number of children.
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    extern crate alloc;
    use alloc::{
        format,
        string::{String, ToString},
        vec::Vec,
    };

    fn assert_match(filter: &str, name: &str) {
        assert!(matches(filter, name), "{filter:?} should match {name:?}");
    }

    fn assert_no_match(filter: &str, name: &str) {
        assert!(
            !matches(filter, name),
            "{filter:?} should not match {name:?}"
        );
    }

    // §4.7.1.2 Multi-level wildcard, the spec's own examples.

    #[test]
    fn mqtt_4_7_1_2_example_multi_level_matches_parent_and_children() {
        for name in [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ] {
            assert_match("sport/tennis/player1/#", name);
        }
        assert_no_match("sport/tennis/player1/#", "sport/tennis/player2");
        assert_no_match("sport/tennis/player1/#", "sport/tennis");
    }

    #[test]
    fn mqtt_4_7_1_2_example_sport_hash_matches_sport() {
        assert_match("sport/#", "sport");
        assert_match("sport/#", "sport/");
        assert_no_match("sport/#", "sports");
    }

    #[test]
    fn mqtt_4_7_1_2_example_hash_alone_valid_and_matches_every_topic() {
        assert_eq!(validate_filter("#"), Ok(()));
        for name in ["sport", "/", "a/b/c", "/finance", "sport/tennis/player1"] {
            assert_match("#", name);
        }
    }

    #[test]
    fn mqtt_4_7_1_2_example_sport_tennis_hash_valid() {
        assert_eq!(validate_filter("sport/tennis/#"), Ok(()));
    }

    #[test]
    fn mqtt_4_7_1_2_hash_not_alone_in_level_rejected() {
        assert_eq!(
            validate_filter("sport/tennis#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            validate_filter("#sport"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            validate_filter("sport/#/"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
    }

    #[test]
    fn mqtt_4_7_1_2_hash_not_last_rejected() {
        assert_eq!(
            validate_filter("sport/tennis/#/ranking"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            validate_filter("#/#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
    }

    // §4.7.1.3 Single-level wildcard, the spec's own examples.

    #[test]
    fn mqtt_4_7_1_3_example_plus_matches_one_level_only() {
        assert_match("sport/tennis/+", "sport/tennis/player1");
        assert_match("sport/tennis/+", "sport/tennis/player2");
        assert_no_match("sport/tennis/+", "sport/tennis/player1/ranking");
    }

    #[test]
    fn mqtt_4_7_1_3_example_sport_plus_matches_empty_level_not_parent() {
        assert_no_match("sport/+", "sport");
        assert_match("sport/+", "sport/");
    }

    #[test]
    fn mqtt_4_7_1_3_example_valid_filters() {
        for filter in ["+", "+/tennis/#", "sport/+/player1", "+/+", "/+", "+/"] {
            assert_eq!(validate_filter(filter), Ok(()), "{filter:?}");
        }
    }

    #[test]
    fn mqtt_4_7_1_3_plus_not_alone_in_level_rejected() {
        assert_eq!(
            validate_filter("sport+"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
        assert_eq!(
            validate_filter("+sport"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
        assert_eq!(
            validate_filter("a/++/b"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
        assert_eq!(
            validate_filter("a/+#"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
    }

    #[test]
    fn mqtt_4_7_1_3_example_slash_finance_matches_plus_plus_and_slash_plus_not_plus() {
        assert_match("+/+", "/finance");
        assert_match("/+", "/finance");
        assert_no_match("+", "/finance");
    }

    #[test]
    fn mqtt_4_7_1_3_plus_combines_with_hash() {
        assert_match("+/tennis/#", "sport/tennis");
        assert_match("+/tennis/#", "sport/tennis/player1/ranking");
        assert_no_match("+/tennis/#", "sport/golf");
        assert_match("sport/+/player1", "sport/tennis/player1");
        assert_no_match("sport/+/player1", "sport/tennis/player2");
    }

    // §4.7.2 Topics beginning with $.

    #[test]
    fn mqtt_4_7_2_1_hash_does_not_match_dollar_topics() {
        assert_no_match("#", "$SYS");
        assert_no_match("#", "$SYS/broker/uptime");
        assert_no_match("#", "$");
    }

    #[test]
    fn mqtt_4_7_2_1_leading_plus_does_not_match_dollar_topics() {
        assert_no_match("+/monitor/Clients", "$SYS/monitor/Clients");
        assert_match("+/monitor/Clients", "SYS/monitor/Clients");
        assert_no_match("+", "$SYS");
        assert_no_match("+/#", "$SYS/x");
    }

    #[test]
    fn mqtt_4_7_2_example_dollar_sys_hash_matches_sys_topics() {
        assert_match("$SYS/#", "$SYS/");
        assert_match("$SYS/#", "$SYS/broker/clients/connected");
        assert_match("$SYS/#", "$SYS");
        assert_match("$SYS/monitor/+", "$SYS/monitor/Clients");
        assert_no_match("$SYS/#", "SYS/x");
    }

    #[test]
    fn mqtt_4_7_2_example_both_hash_and_dollar_sys_hash_needed_for_everything() {
        let names = ["$SYS/broker/load", "sport/tennis"];
        for name in names {
            assert!(["#", "$SYS/#"].iter().any(|f| matches(f, name)));
        }
        assert!(!names.iter().all(|n| matches("#", n)));
        assert!(!names.iter().all(|n| matches("$SYS/#", n)));
    }

    #[test]
    fn mqtt_4_7_2_dollar_not_at_start_is_ordinary() {
        assert_match("#", "a/$SYS");
        assert_match("a/+", "a/$x");
    }

    // §4.7.3 Topic semantic and usage.

    #[test]
    fn mqtt_4_7_3_1_empty_name_and_filter_rejected() {
        assert_eq!(validate_name(""), Err(TopicError::Empty));
        assert_eq!(validate_filter(""), Err(TopicError::Empty));
        assert!(!matches("#", ""));
    }

    #[test]
    fn mqtt_4_7_3_2_null_character_rejected() {
        assert_eq!(validate_name("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(validate_filter("a/\0/#"), Err(TopicError::NullCharacter));
        assert_eq!(
            validate_filter("$share/g\0/a"),
            Err(TopicError::NullCharacter)
        );
    }

    #[test]
    fn mqtt_4_7_3_3_length_limit_65535_bytes() {
        let max = "a".repeat(MAX_TOPIC_LEN);
        assert_eq!(validate_name(&max), Ok(()));
        assert_eq!(validate_filter(&max), Ok(()));
        let over = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(
            validate_name(&over),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1
            })
        );
        assert_eq!(
            validate_filter(&over),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1
            })
        );
        // The limit is in bytes, not characters: 'é' is two bytes.
        let wide = "é".repeat(MAX_TOPIC_LEN / 2 + 1);
        assert_eq!(
            validate_name(&wide),
            Err(TopicError::TooLong { len: wide.len() })
        );
    }

    #[test]
    fn mqtt_3_3_2_2_wildcard_in_topic_name_rejected() {
        for name in ["+", "#", "a/+", "a/#", "a+b", "sport/tennis#"] {
            assert_eq!(
                validate_name(name),
                Err(TopicError::WildcardInName),
                "{name:?}"
            );
        }
        assert_no_match("a/+", "a/+");
    }

    #[test]
    fn mqtt_4_7_3_names_are_case_sensitive_and_may_hold_spaces() {
        assert_no_match("ACCOUNTS", "Accounts");
        assert_match("Accounts payable", "Accounts payable");
        assert_eq!(validate_name("Accounts payable"), Ok(()));
    }

    #[test]
    fn mqtt_4_7_3_leading_and_trailing_slash_are_distinct_levels() {
        assert_no_match("finance", "/finance");
        assert_no_match("/finance", "finance");
        assert_no_match("finance", "finance/");
        assert_eq!(validate_name("/"), Ok(()));
        assert_match("/", "/");
        assert_match("+/+", "/");
        assert_no_match("+", "/");
        assert_match("a//b", "a//b");
        assert_match("a/+/b", "a//b");
    }

    // §4.8.2 Shared subscriptions.

    #[test]
    fn mqtt_4_8_2_example_shared_filters_split_into_group_and_filter() {
        let one = TopicFilter::parse("$share/consumer1/sport/tennis/+").unwrap();
        assert_eq!(one.share_group(), Some("consumer1"));
        assert_eq!(one.filter(), "sport/tennis/+");
        assert!(one.is_shared());
        assert!(one.matches("sport/tennis/player1"));
        assert_eq!(one.as_str(), "$share/consumer1/sport/tennis/+");
        let two = TopicFilter::parse("$share/consumer2/sport/tennis/+").unwrap();
        assert_eq!(two.share_group(), Some("consumer2"));
        assert_eq!(two.filter(), one.filter());
    }

    #[test]
    fn mqtt_4_8_2_example_shared_filter_with_leading_slash() {
        let f = TopicFilter::parse("$share/consumer1//finance").unwrap();
        assert_eq!(f.share_group(), Some("consumer1"));
        assert_eq!(f.filter(), "/finance");
        assert_match("$share/consumer1//finance", "/finance");
        assert_no_match("$share/consumer1//finance", "finance");
    }

    #[test]
    fn mqtt_4_8_2_1_empty_share_name_rejected() {
        assert_eq!(
            validate_filter("$share//a"),
            Err(TopicError::EmptyShareName)
        );
        assert_eq!(
            validate_filter("$share/"),
            Err(TopicError::MissingSharedFilter)
        );
    }

    #[test]
    fn mqtt_4_8_2_2_wildcard_in_share_name_rejected() {
        assert_eq!(
            validate_filter("$share/+/a"),
            Err(TopicError::WildcardInShareName)
        );
        assert_eq!(
            validate_filter("$share/#/a"),
            Err(TopicError::WildcardInShareName)
        );
        assert_eq!(
            validate_filter("$share/g+/a"),
            Err(TopicError::WildcardInShareName)
        );
    }

    #[test]
    fn mqtt_4_8_2_2_share_name_must_be_followed_by_slash_and_filter() {
        assert_eq!(
            validate_filter("$share/group"),
            Err(TopicError::MissingSharedFilter)
        );
        assert_eq!(
            validate_filter("$share/group/"),
            Err(TopicError::MissingSharedFilter)
        );
        assert_eq!(
            validate_filter("$share/group/a/#/b"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            validate_filter("$share/group/a+"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
    }

    #[test]
    fn mqtt_4_8_2_shared_hash_still_excludes_dollar_topics() {
        assert_match("$share/g/#", "a/b");
        assert_no_match("$share/g/#", "$SYS/x");
        assert_match("$share/g/$SYS/#", "$SYS/x");
    }

    #[test]
    fn mqtt_4_8_2_share_prefix_needs_its_slash() {
        // "$share" and "$sharex/..." are ordinary filters.
        let f = TopicFilter::parse("$share").unwrap();
        assert!(!f.is_shared());
        assert_match("$share", "$share");
        assert!(!TopicFilter::parse("$shared/g/a").unwrap().is_shared());
    }

    #[test]
    fn topic_filter_reports_wildcards_and_displays_itself() {
        assert!(TopicFilter::parse("a/+").unwrap().has_wildcards());
        assert!(!TopicFilter::parse("$share/g/a/b").unwrap().has_wildcards());
        assert_eq!(
            format!("{}", TopicFilter::parse("$share/g/a").unwrap()),
            "$share/g/a"
        );
    }

    #[test]
    fn topic_error_display_cites_the_statement() {
        let all = [
            (TopicError::Empty, "MQTT-4.7.3-1"),
            (TopicError::TooLong { len: 70_000 }, "MQTT-4.7.3-3"),
            (TopicError::NullCharacter, "MQTT-4.7.3-2"),
            (TopicError::WildcardInName, "MQTT-3.3.2-2"),
            (TopicError::MisplacedMultiLevelWildcard, "MQTT-4.7.1-2"),
            (TopicError::MisplacedSingleLevelWildcard, "MQTT-4.7.1-3"),
            (TopicError::EmptyShareName, "MQTT-4.8.2-1"),
            (TopicError::WildcardInShareName, "MQTT-4.8.2-2"),
            (TopicError::MissingSharedFilter, "MQTT-4.8.2-2"),
        ];
        for (error, statement) in all {
            let text = format!("{error}");
            assert!(text.contains(statement), "{text}");
        }
        assert!(format!("{}", TopicError::TooLong { len: 70_000 }).contains("70000"));
    }

    /// The level-by-level reading of §4.7.1, kept as the reference the
    /// one-pass validator is checked against.
    fn reference_filter_levels(filter: &str) -> Result<(), TopicError> {
        let levels: Vec<&str> = filter.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            let last = i + 1 == levels.len();
            match *level {
                "#" if last => {}
                "+" => {}
                _ => match level.find(['+', '#']) {
                    Some(at) if level[at..].starts_with('#') => {
                        return Err(TopicError::MisplacedMultiLevelWildcard);
                    }
                    Some(_) => return Err(TopicError::MisplacedSingleLevelWildcard),
                    None => {}
                },
            }
        }
        Ok(())
    }

    #[test]
    fn mqtt_4_7_1_one_pass_validator_agrees_with_reference_exhaustively() {
        // Every string over {a, +, #, /} up to 7 bytes (21 844 filters).
        let alphabet = ['a', '+', '#', '/'];
        let mut current: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
        for _ in 1..7 {
            for filter in &current {
                assert_eq!(
                    validate_filter_levels(filter),
                    reference_filter_levels(filter),
                    "{filter:?}"
                );
            }
            current = current
                .iter()
                .flat_map(|f| alphabet.iter().map(move |c| format!("{f}{c}")))
                .collect();
        }
        for filter in &current {
            assert_eq!(
                validate_filter_levels(filter),
                reference_filter_levels(filter)
            );
        }
    }

    // Properties.

    /// One level of a topic name: no wildcard, no '/', no NUL; may be empty.
    fn name_level() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 $é_-]{0,6}"
    }

    /// A valid topic name of 1..6 levels.
    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(name_level(), 1..6)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("non-empty, not a shared subscription", |n| {
                !n.is_empty() && !n.starts_with(SHARE_PREFIX)
            })
    }

    proptest! {
        #[test]
        fn prop_name_matches_itself(name in name()) {
            prop_assert_eq!(validate_name(&name), Ok(()));
            prop_assert!(matches(&name, &name));
        }

        #[test]
        fn prop_plus_replacing_levels_matches(name in name(), mask in any::<u8>()) {
            let filter: Vec<&str> = name
                .split('/')
                .enumerate()
                .map(|(i, level)| if mask >> (i % 8) & 1 == 1 { "+" } else { level })
                .collect();
            let filter = filter.join("/");
            prop_assert_eq!(validate_filter(&filter), Ok(()));
            let blocked = name.starts_with('$') && filter.starts_with('+');
            prop_assert_eq!(matches(&filter, &name), !blocked, "{} / {}", filter, name);
        }

        #[test]
        fn prop_hash_matches_every_non_dollar_name(name in name()) {
            prop_assert_eq!(matches("#", &name), !name.starts_with('$'));
        }

        #[test]
        fn prop_prefix_hash_matches_name_and_children(name in name(), extra in name()) {
            let filter = format!("{name}/#");
            prop_assert!(matches(&filter, &name));
            let child = format!("{name}/{extra}");
            prop_assert!(matches(&filter, &child));
        }

        #[test]
        fn prop_plus_never_matches_a_different_level_count(name in name(), extra in name()) {
            let filter: Vec<&str> = name.split('/').map(|_| "+").collect();
            let longer = format!("{name}/{extra}");
            prop_assert!(!matches(&filter.join("/"), &longer));
        }

        #[test]
        fn prop_shared_prefix_does_not_change_matching(
            group in "[a-z0-9]{1,5}", filter_name in name(), name in name()
        ) {
            let shared = format!("$share/{group}/{filter_name}");
            prop_assert_eq!(matches(&shared, &name), matches(&filter_name, &name));
            let parsed = TopicFilter::parse(&shared).unwrap();
            prop_assert_eq!(parsed.share_group(), Some(group.as_str()));
        }

        #[test]
        fn prop_validation_and_matching_never_panic(filter in ".{0,20}", name in ".{0,20}") {
            let _ = validate_filter(&filter);
            let _ = validate_name(&name);
            let _ = matches(&filter, &name);
        }

        #[test]
        fn prop_mqtt_4_7_1_one_pass_validator_agrees_with_level_reference(
            filter in "[a+#/]{1,10}"
        ) {
            prop_assert_eq!(validate_filter_levels(&filter), reference_filter_levels(&filter));
        }

        #[test]
        fn prop_mqtt_4_7_3_2_nul_anywhere_is_reported_as_such(
            prefix in "(\\$share/)?[a+#/]{0,6}", suffix in "[a+#/]{0,6}"
        ) {
            let text = format!("{prefix}\0{suffix}");
            prop_assert_eq!(validate_filter(&text), Err(TopicError::NullCharacter));
            prop_assert_eq!(validate_name(&text), Err(TopicError::NullCharacter));
        }

        #[test]
        fn prop_valid_name_without_wildcards_is_a_valid_filter(name in name()) {
            prop_assert_eq!(validate_filter(&name), Ok(()));
        }
    }
}
