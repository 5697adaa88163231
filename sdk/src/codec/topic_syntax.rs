//! The codec's use of [`crate::topic`]: topic names in PUBLISH, Will Topic
//! and Response Topic, topic filters in SUBSCRIBE and UNSUBSCRIBE, mapped
//! onto [`Violation`]s.
//!
//! Name errors the codec reports as its own variants (empty
//! [MQTT-4.7.3-1], wildcard [MQTT-3.3.2-2], U+0000); filter errors are
//! wrapped whole in [`Violation::InvalidTopicFilter`]. It does not match
//! topics.

use super::error::Violation;
use crate::topic::{self, TopicError};

/// Whether `b` is U+0000, `+` or `#`.
#[inline]
fn hit(b: u8) -> bool {
    (b == 0) | (b == b'+') | (b == b'#')
}

/// Whether `bytes` hold U+0000, `+` or `#`: one pass over 16-byte blocks
/// the compiler vectorises, the last block overlapping the one before (this
/// sits on every PUBLISH, both ways).
#[inline]
fn has_nul_or_wildcard(bytes: &[u8]) -> bool {
    fn block(block: &[u8; 16]) -> bool {
        block.iter().fold(false, |acc, &b| acc | hit(b))
    }
    let Some(last) = bytes.last_chunk::<16>() else {
        return bytes.iter().any(|&b| hit(b));
    };
    let (blocks, _) = bytes.as_chunks::<16>();
    blocks.iter().any(block) || block(last)
}

/// A topic name as PUBLISH, Will Topic and Response Topic carry it,
/// U+0000 included.
#[inline]
pub(crate) fn check_name(name: &str) -> Result<(), Violation> {
    // Fast path for the valid case: the same rules as
    // `topic::validate_name`, in one pass; that function names the error.
    if !name.is_empty()
        && name.len() <= topic::MAX_TOPIC_LEN
        && !has_nul_or_wildcard(name.as_bytes())
    {
        return Ok(());
    }
    name_error(name)
}

/// The error for a name the fast path refused (kept out of line).
#[cold]
#[inline(never)]
fn name_error(name: &str) -> Result<(), Violation> {
    topic::validate_name(name).map_err(|e| match e {
        TopicError::Empty => Violation::EmptyTopicName,
        TopicError::WildcardInName => Violation::WildcardInTopicName,
        TopicError::NullCharacter => Violation::NullCharacter,
        TopicError::TooLong { len } => Violation::StringTooLong { len },
        other => Violation::InvalidTopicFilter(other),
    })
}

/// Whether every `+` and `#` in `bytes` stands alone in its level and `#`
/// ends the filter [MQTT-4.7.1-2/-3], and no byte is U+0000: the level
/// rules of `topic::validate_filter` for a filter without `$share/`, as a
/// yes/no in one pass.
#[inline]
fn wildcards_well_placed(bytes: &[u8]) -> bool {
    let mut prev = b'/';
    for (i, &b) in bytes.iter().enumerate() {
        if hit(b) {
            let next = bytes.get(i + 1).copied();
            let placed = match b {
                b'+' => prev == b'/' && matches!(next, None | Some(b'/')),
                b'#' => prev == b'/' && next.is_none(),
                _ => false,
            };
            if !placed {
                return false;
            }
        }
        prev = b;
    }
    true
}

/// A topic filter as SUBSCRIBE and UNSUBSCRIBE carry it.
#[inline]
pub(crate) fn check_filter(filter: &str) -> Result<(), Violation> {
    // Fast path for the valid, unshared case: the same rules as
    // `topic::validate_filter`, which names the error otherwise.
    let bytes = filter.as_bytes();
    if !filter.is_empty()
        && filter.len() <= topic::MAX_TOPIC_LEN
        && !filter.starts_with(topic::SHARE_PREFIX)
        && (!has_nul_or_wildcard(bytes) || wildcards_well_placed(bytes))
    {
        return Ok(());
    }
    filter_error(filter)
}

/// The outcome for a filter the fast path did not accept (kept out of
/// line; shared subscriptions come here too).
#[cold]
#[inline(never)]
fn filter_error(filter: &str) -> Result<(), Violation> {
    topic::validate_filter(filter).map_err(Violation::InvalidTopicFilter)
}

/// Whether `filter` names a shared subscription (5.0 §4.8.2).
pub(crate) fn is_shared(filter: &str) -> bool {
    filter.starts_with(topic::SHARE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_3_3_2_2_wildcard_in_topic_name_rejected() {
        assert_eq!(check_name("a/+/b"), Err(Violation::WildcardInTopicName));
        assert_eq!(check_name("a/#"), Err(Violation::WildcardInTopicName));
        assert_eq!(check_name("a/b c/$x"), Ok(()));
    }

    proptest::proptest! {
        /// The fast path agrees with `topic::validate_name` on every string.
        #[test]
        fn check_name_agrees_with_topic_validate_name(
            name in "[a-z/+#\\x00é]{0,40}",
        ) {
            proptest::prop_assert_eq!(check_name(&name).is_ok(), topic::validate_name(&name).is_ok());
        }
    }

    proptest::proptest! {
        /// The filter fast path agrees with `topic::validate_filter`.
        #[test]
        fn check_filter_agrees_with_topic_validate_filter(
            filter in "(\\$share/)?[a+/#\x00é]{0,24}",
        ) {
            proptest::prop_assert_eq!(
                check_filter(&filter),
                topic::validate_filter(&filter).map_err(Violation::InvalidTopicFilter)
            );
        }
    }

    #[test]
    fn mqtt_4_7_3_1_empty_topic_rejected() {
        assert_eq!(check_name(""), Err(Violation::EmptyTopicName));
        assert_eq!(
            check_filter(""),
            Err(Violation::InvalidTopicFilter(TopicError::Empty))
        );
    }

    #[test]
    fn mqtt_4_7_1_2_misplaced_wildcards_rejected() {
        for bad in ["a/#/b", "a#", "a/b#", "+a", "a/+b/c", "##", "$share//a"] {
            assert!(
                matches!(check_filter(bad), Err(Violation::InvalidTopicFilter(_))),
                "{bad}"
            );
        }
        for good in [
            "#",
            "+",
            "a/#",
            "+/+/#",
            "/",
            "a//b",
            "$SYS/#",
            "$share/g/a/+",
        ] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
    }
}
