//! Fuzz target: topic filter/name validation and matching.
//!
//! The input is split at its first 0xFF byte (never valid UTF-8) into a
//! filter and a name. Both are validated; when both are valid, `matches` must
//! not panic and must agree with the deliberately naive reference matcher
//! below, which walks the levels recursively.
#![no_main]

use embermq::topic::{self, TopicFilter};
use libfuzzer_sys::fuzz_target;

/// Reference matcher over level lists (MQTT §4.7.1, §4.7.2), written
/// independently of the SDK's iterative one.
fn reference_levels(filter: &[&str], name: &[&str]) -> bool {
    match (filter.split_first(), name.split_first()) {
        (Some((&"#", _)), _) => true,
        (Some((&"+", f_rest)), Some((_, n_rest))) => reference_levels(f_rest, n_rest),
        (Some((f, f_rest)), Some((n, n_rest))) => f == n && reference_levels(f_rest, n_rest),
        (None, None) => true,
        _ => false,
    }
}

fn reference_matches(filter: &str, name: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => match rest.find('/') {
            Some(at) => &rest[at + 1..],
            None => return false,
        },
        None => filter,
    };
    let f: Vec<&str> = filter.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    if name.starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    reference_levels(&f, &n)
}

fuzz_target!(|data: &[u8]| {
    let (filter, name) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[..0]),
    };
    let (Ok(filter), Ok(name)) = (core::str::from_utf8(filter), core::str::from_utf8(name)) else {
        return;
    };
    let filter_ok = topic::validate_filter(filter).is_ok();
    let name_ok = topic::validate_name(name).is_ok();
    let got = topic::matches(filter, name);
    if !(filter_ok && name_ok) {
        assert!(!got, "invalid input matched: {filter:?} {name:?}");
        return;
    }
    assert_eq!(
        got,
        reference_matches(filter, name),
        "filter {filter:?} name {name:?}"
    );
    let parsed = TopicFilter::parse(filter).expect("validated");
    assert_eq!(parsed.matches(name), got);
    assert_eq!(parsed.as_str(), filter);
    // A valid name is a valid filter too, and it matches itself unless it
    // is read as a shared subscription.
    if !name.starts_with("$share/") {
        assert!(topic::matches(name, name), "{name:?} does not match itself");
    }
});
