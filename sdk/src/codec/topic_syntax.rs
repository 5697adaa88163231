//! The codec's use of [`crate::topic`]: topic names in PUBLISH, Will Topic
//! and Response Topic, topic filters in SUBSCRIBE and UNSUBSCRIBE, mapped
//! onto [`Violation`]s.
//!
//! Name errors the codec reports as its own variants (empty
//! [MQTT-4.7.3-1], wildcard [MQTT-3.3.2-2], U+0000); filter errors are
//! wrapped whole in [`Violation::InvalidTopicFilter`].
//!
//! Valid names and unshared filters are recognised by one-pass yes/no
//! tests (16-byte blocks the compiler vectorises, SWAR words below 16
//! bytes), the same rules as `topic::validate_name` and
//! `topic::validate_filter`, which the tests check them against; anything
//! those tests refuse, and shared subscriptions, goes to [`crate::topic`],
//! which names the error. It does not match topics.
//!
//! On targets without an OS (`target_os = "none"`: devices, built for
//! size) the yes/no tests are [`crate::topic`]'s own checks: the one-pass
//! scans are host speed paths and would only add flash there.

use super::error::Violation;
use crate::topic::{self, TopicError};

/// Whether `b` is U+0000, `+` or `#`.
#[cfg(not(target_os = "none"))]
#[inline]
fn hit(b: u8) -> bool {
    (b == 0) | (b == b'+') | (b == b'#')
}

/// Whether `bytes` hold U+0000, `+` or `#`: one pass over 16-byte blocks
/// the compiler vectorises (three byte-vector compares and one mask test
/// each), the first block taken with the last, which overlaps it or the
/// blocks between; 8 to 15 bytes as two overlapping `u64` words (SWAR).
/// This sits on every PUBLISH, both ways.
///
/// The loop is written so that the compiler keeps each block whole: an
/// `any` over blocks, or an early return inside one, makes it split blocks
/// into 8-, 4- and 2-byte pieces (twice the instructions).
#[cfg(not(target_os = "none"))]
#[inline(always)]
fn has_nul_or_wildcard(bytes: &[u8]) -> bool {
    #[inline(always)]
    fn block(block: &[u8; 16]) -> bool {
        block.iter().fold(false, |acc, &b| acc | hit(b))
    }
    /// Whether a byte of `x` is zero: exact as a yes/no (a false mark can
    /// only sit above a true one).
    #[inline(always)]
    fn word_has_zero(x: u64) -> bool {
        x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080 != 0
    }
    #[inline(always)]
    fn word_hit(word: &[u8; 8]) -> bool {
        let x = u64::from_le_bytes(*word);
        word_has_zero(x)
            | word_has_zero(x ^ 0x2b2b_2b2b_2b2b_2b2b) // '+'
            | word_has_zero(x ^ 0x2323_2323_2323_2323) // '#'
    }
    let (Some(first), Some(last)) = (bytes.first_chunk::<16>(), bytes.last_chunk::<16>()) else {
        if let (Some(first), Some(last)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            return word_hit(first) | word_hit(last);
        }
        return bytes.iter().fold(false, |acc, &b| acc | hit(b));
    };
    let mut found = block(first) | block(last);
    let (blocks, _) = bytes.as_chunks::<16>();
    let mut rest = blocks.get(1..).unwrap_or_default();
    while let (false, Some((b, tail))) = (found, rest.split_first()) {
        found = block(b);
        rest = tail;
    }
    found
}

/// Whether `name` is a valid topic name: not empty, at most 65 535 bytes,
/// no U+0000, `+` or `#` (the rules of `topic::validate_name`, as a yes/no
/// in one pass).
#[cfg(not(target_os = "none"))]
#[inline(always)]
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= topic::MAX_TOPIC_LEN && !has_nul_or_wildcard(name.as_bytes())
}

/// Whether `name` is a valid topic name (devices: `topic::validate_name`).
#[cfg(target_os = "none")]
pub(crate) fn is_valid_name(name: &str) -> bool {
    topic::validate_name(name).is_ok()
}

/// A topic name as PUBLISH, Will Topic and Response Topic carry it,
/// U+0000 included.
#[inline]
pub(crate) fn check_name(name: &str) -> Result<(), Violation> {
    // Fast path for the valid case; `topic::validate_name` names the error.
    if cfg!(not(target_os = "none")) && is_valid_name(name) {
        return Ok(());
    }
    name_error(name)
}

/// The error for a name the fast path refused (kept out of line).
#[cfg_attr(not(target_os = "none"), cold)]
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

/// Whether the byte pair `prev`, `b` (adjacent in a filter) breaks a
/// level rule: a wildcard not right after `/`, `+` followed by anything but
/// `/`, anything after `#` [MQTT-4.7.1-2/-3], or `b` U+0000.
#[cfg(not(target_os = "none"))]
#[inline(always)]
fn pair_breaks_rule(prev: u8, b: u8) -> bool {
    (((b == b'+') | (b == b'#')) & (prev != b'/'))
        | ((prev == b'+') & (b != b'/'))
        | (prev == b'#')
        | (b == 0)
}

/// Whether any of the `N` pairs `prevs[i]`, `bytes[i]` breaks a level rule:
/// a fold the compiler turns into byte-vector compares and one mask test.
#[cfg(not(target_os = "none"))]
#[inline(always)]
fn block_breaks_rule<const N: usize>(prevs: &[u8; N], bytes: &[u8; N]) -> bool {
    prevs
        .iter()
        .zip(bytes)
        .fold(false, |acc, (&p, &b)| acc | pair_breaks_rule(p, b))
}

/// Whether any pair `prevs[i]`, `bytes[i]` (slices of one length) breaks a
/// level rule: 16 pairs at a time, the last block overlapping the one
/// before (each pair is judged on its own, so judging one twice changes
/// nothing); 8 to 15 pairs as two overlapping blocks of 8.
///
/// Kept out of line on purpose: inlined where the caller splits one filter
/// into `prevs` and `bytes`, the compiler sees that the two overlap (one
/// filter shifted by a byte) and trades the two plain loads per block for
/// shuffles that cost three times as much.
#[cfg(not(target_os = "none"))]
#[inline(never)]
fn pairs_break_rule(prevs: &[u8], bytes: &[u8]) -> bool {
    #[inline(always)]
    fn ends<const N: usize>(prevs: &[u8], bytes: &[u8]) -> Option<bool> {
        let first = block_breaks_rule(prevs.first_chunk::<N>()?, bytes.first_chunk::<N>()?);
        Some(first | block_breaks_rule(prevs.last_chunk::<N>()?, bytes.last_chunk::<N>()?))
    }
    let n = bytes.len();
    let found = if n > 32 {
        let (prev_blocks, _) = prevs.as_chunks::<16>();
        let (blocks, _) = bytes.as_chunks::<16>();
        let whole = prev_blocks
            .iter()
            .zip(blocks)
            .any(|(p, b)| block_breaks_rule(p, b));
        match (prevs.last_chunk::<16>(), bytes.last_chunk::<16>()) {
            (Some(p), Some(b)) => Some(whole || block_breaks_rule(p, b)),
            _ => None,
        }
    } else if n >= 16 {
        ends::<16>(prevs, bytes)
    } else if n >= 8 {
        ends::<8>(prevs, bytes)
    } else {
        None
    };
    // Fewer than 8 pairs (or slices of unequal length, not passed here).
    found.unwrap_or_else(|| {
        prevs
            .iter()
            .zip(bytes)
            .fold(false, |acc, (&p, &b)| acc | pair_breaks_rule(p, b))
    })
}

/// Whether `filter` is a valid topic filter that is not a shared
/// subscription: not empty, at most 65 535 bytes, no U+0000, every `+` and
/// `#` alone in its level and `#` last [MQTT-4.7.1-2/-3], the rules of
/// `topic::validate_filter` as a yes/no. The level rules are judged on
/// adjacent byte pairs, the start of the filter standing for a `/` before
/// it and its end for a `/` after it (which also ends a `#`). A filter
/// starting with `$share/` is refused here (the caller takes the slow
/// path, which knows shared subscriptions).
#[cfg(not(target_os = "none"))]
#[inline(always)]
pub(crate) fn is_plain_filter(filter: &str) -> bool {
    let bytes = filter.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };
    let prevs = bytes.get(..rest.len()).unwrap_or_default();
    bytes.len() <= topic::MAX_TOPIC_LEN
        && first != 0
        && (first != b'$' || !filter.starts_with(topic::SHARE_PREFIX))
        && !pairs_break_rule(prevs, rest)
}

/// Whether `filter` is a valid topic filter that is not a shared
/// subscription (devices: `topic::validate_filter`).
#[cfg(target_os = "none")]
pub(crate) fn is_plain_filter(filter: &str) -> bool {
    !is_shared(filter) && topic::validate_filter(filter).is_ok()
}

/// A topic filter as SUBSCRIBE and UNSUBSCRIBE carry it.
#[inline(always)]
pub(crate) fn check_filter(filter: &str) -> Result<(), Violation> {
    // Fast path for the valid, unshared case; `topic::validate_filter`
    // names the error otherwise (and accepts shared subscriptions).
    if cfg!(not(target_os = "none")) && is_plain_filter(filter) {
        return Ok(());
    }
    filter_error(filter)
}

/// The outcome for a filter the fast path did not accept (kept out of
/// line; shared subscriptions come here too).
#[cfg_attr(not(target_os = "none"), cold)]
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

    /// [MQTT-4.7.1-2/-3], [MQTT-1.5.3-2]: the pairwise filter check at every
    /// length from 0 to 80 (each block path: scalar, two blocks of 8, two
    /// of 16, whole blocks plus an overlapping last one), with a `+`, `#`
    /// or U+0000 planted at every position, agrees with
    /// `topic::validate_filter`.
    #[test]
    fn mqtt_4_7_1_2_filter_fast_path_agrees_at_every_length_and_position() {
        extern crate alloc;
        for len in 0..80usize {
            let levels: alloc::vec::Vec<u8> = (0..len)
                .map(|i| if i % 4 == 3 { b'/' } else { b'a' })
                .collect();
            for at in 0..len {
                for planted in [b'+', b'#', 0, b'/'] {
                    for neighbours_are_separators in [false, true] {
                        let mut bytes = levels.clone();
                        bytes[at] = planted;
                        if neighbours_are_separators {
                            if at > 0 {
                                bytes[at - 1] = b'/';
                            }
                            if at + 1 < len {
                                bytes[at + 1] = b'/';
                            }
                        }
                        let filter = core::str::from_utf8(&bytes).unwrap();
                        assert_eq!(
                            check_filter(filter),
                            topic::validate_filter(filter).map_err(Violation::InvalidTopicFilter),
                            "{filter:?}"
                        );
                        assert_eq!(
                            check_name(filter).is_ok(),
                            topic::validate_name(filter).is_ok(),
                            "{filter:?}"
                        );
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// The filter fast path agrees with `topic::validate_filter`, long
        /// filters (past two 16-byte blocks) included.
        #[test]
        fn check_filter_agrees_with_topic_validate_filter_long(
            filter in "(\\$share/)?[a+/#\x00é]{0,90}",
        ) {
            proptest::prop_assert_eq!(
                check_filter(&filter),
                topic::validate_filter(&filter).map_err(Violation::InvalidTopicFilter)
            );
            proptest::prop_assert_eq!(
                check_name(&filter).is_ok(),
                topic::validate_name(&filter).is_ok()
            );
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
