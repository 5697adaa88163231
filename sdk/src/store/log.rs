//! The [`FileStore`](super::FileStore) log format: entries, their
//! checksums, and the scan that reads a log back after a crash or a
//! corruption.
//!
//! # Version 2 (written today)
//!
//! ```text
//! magic "EMQ2" (4) | kind (1) | key (u32 LE) | len (u32 LE) | head CRC (4) | record (len) | CRC (4)
//! ```
//!
//! `kind` is 1 for a persisted record, 2 for its removal (`len` 0). The
//! head CRC-32 covers the 13 bytes before it, so a length is never trusted
//! unless its header checks; the last CRC-32 covers the whole entry before
//! it. Reading:
//!
//! - an entry whose header checks but whose body does not (a flipped bit
//!   in a record) is skipped exactly: its length is known, so only it is
//!   lost;
//! - a header that does not check (a flipped bit in it, a hole of zeros
//!   left by a power cut) is resynchronised past: the scan looks for the
//!   next offset holding the magic, a good header and a good body;
//! - a header that checks but runs past the end of the file, or bad bytes
//!   with no good entry after them, are a torn tail (the last write before
//!   a power cut), which the store cuts off.
//!
//! The scan never looks inside an entry it skipped whole, so a record
//! whose payload happens to contain an encoded entry cannot produce a
//! phantom then. It can after a damaged header: a resync that lands inside
//! that entry's record on bytes that form a complete, valid entry (magic,
//! both CRCs) would read them as one. A payload has to embed a well-formed
//! log entry for that, and the damage must hit the header in front of it.
//!
//! # Version 1 (read only)
//!
//! `kind (1) | key (u32 LE) | len (u32 LE) | record | CRC (4)`, without a
//! magic, read up to the first bad entry (it cannot be resynchronised).
//! A version 1 file starts with byte 1 or 2, a version 2 file with `E`;
//! [`FileStore`](super::FileStore) rewrites a version 1 log as version 2
//! when it opens it.
//!
//! What this module does not do: I/O. It encodes into and parses from
//! byte slices.

extern crate alloc;

use alloc::vec::Vec;

pub(super) const MAGIC: [u8; 4] = *b"EMQ2";
pub(super) const KIND_PUT: u8 = 1;
pub(super) const KIND_REMOVE: u8 = 2;
/// magic + kind + key + len + head CRC.
pub(super) const HEAD: usize = 17;
/// The trailing CRC.
pub(super) const TRAILER: usize = 4;
/// The largest record accepted (a corrupt length never makes us allocate
/// more than this).
pub(super) const MAX_RECORD: usize = 16 << 20;

/// Version 1: kind + key + len.
const V1_HEAD: usize = 9;

/// The bytes an entry with a record of `record_len` bytes takes.
pub(super) const fn entry_len(record_len: usize) -> usize {
    HEAD + record_len + TRAILER
}

/// Writes the entry into `out` (cleared first).
pub(super) fn encode(out: &mut Vec<u8>, kind: u8, key: u32, record: &[u8]) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(kind);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(record.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    let head_crc = crc32(out);
    out.extend_from_slice(&head_crc.to_le_bytes());
    out.extend_from_slice(record);
    let crc = crc32(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// One good entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    pub(super) kind: u8,
    pub(super) key: u32,
    pub(super) record: &'a [u8],
}

/// What is at an offset of a log.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed<'a> {
    /// A good entry of `len` bytes.
    Good(Entry<'a>, usize),
    /// A good header, a bad body: skip exactly `len` bytes.
    BadBody(usize),
    /// A good header whose entry runs past the end.
    Short,
    /// No good header here.
    BadHead,
}

/// Parses the entry at `off` of `bytes`.
pub(super) fn parse(bytes: &[u8], off: usize) -> Parsed<'_> {
    let Some(rest) = bytes.get(off..) else {
        return Parsed::BadHead;
    };
    let Some(head) = rest.first_chunk::<HEAD>() else {
        return Parsed::BadHead;
    };
    let [
        m0,
        m1,
        m2,
        m3,
        kind,
        k0,
        k1,
        k2,
        k3,
        l0,
        l1,
        l2,
        l3,
        c0,
        c1,
        c2,
        c3,
    ] = *head;
    if [m0, m1, m2, m3] != MAGIC
        || (kind != KIND_PUT && kind != KIND_REMOVE)
        || crc32(head.get(..HEAD - 4).unwrap_or_default()) != u32::from_le_bytes([c0, c1, c2, c3])
    {
        return Parsed::BadHead;
    }
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if len > MAX_RECORD || (kind == KIND_REMOVE && len != 0) {
        return Parsed::BadHead;
    }
    let body_end = HEAD + len;
    let Some((covered, tail)) = rest.split_at_checked(body_end) else {
        return Parsed::Short;
    };
    let Some(crc) = tail.first_chunk::<TRAILER>() else {
        return Parsed::Short;
    };
    if crc32(covered) != u32::from_le_bytes(*crc) {
        return Parsed::BadBody(body_end + TRAILER);
    }
    Parsed::Good(
        Entry {
            kind,
            key: u32::from_le_bytes([k0, k1, k2, k3]),
            record: covered.get(HEAD..).unwrap_or_default(),
        },
        body_end + TRAILER,
    )
}

/// The first offset at or after `from` holding a good entry.
fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let window = bytes.get(at..)?;
        let found = window.windows(MAGIC.len()).position(|w| w == MAGIC)?;
        at += found;
        if matches!(parse(bytes, at), Parsed::Good(..)) {
            return Some(at);
        }
        at += 1;
    }
}

/// What a scan found besides the good entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct ScanEnd {
    /// The end of the last good entry: what follows is a torn tail.
    pub(super) good_end: usize,
    /// Stretches of bad bytes with good entries after them (each is one
    /// lost entry, or a few lost in one damaged stretch).
    pub(super) skipped: u32,
}

/// Hands every good version 2 entry of `bytes` to `visit(offset, entry)`
/// in order, stepping past bad ones (see the module documentation).
pub(super) fn scan<'a>(bytes: &'a [u8], mut visit: impl FnMut(usize, Entry<'a>)) -> ScanEnd {
    let mut end = ScanEnd::default();
    let mut off = 0;
    let mut bad_since_good = 0;
    while off < bytes.len() {
        match parse(bytes, off) {
            Parsed::Good(entry, len) => {
                visit(off, entry);
                off += len;
                end.good_end = off;
                end.skipped += bad_since_good;
                bad_since_good = 0;
            }
            Parsed::BadBody(len) => {
                bad_since_good += 1;
                off += len;
            }
            Parsed::Short => break,
            Parsed::BadHead => match resync(bytes, off + 1) {
                Some(next) => {
                    bad_since_good += 1;
                    off = next;
                }
                None => break,
            },
        }
    }
    end
}

/// The format a log's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// Empty, or version 2 (possibly with a damaged or torn start).
    V2,
    /// Version 1: starts with a kind byte.
    V1,
    /// Not a log this store wrote.
    Unknown,
}

/// Which format `bytes` is in.
pub(super) fn detect(bytes: &[u8]) -> Format {
    let start = bytes.get(..MAGIC.len()).unwrap_or(bytes);
    match bytes.first() {
        None => Format::V2,
        // A version 1 start, unless only version 2 entries parse (a
        // single flipped bit cannot turn the magic's `E` into 1 or 2).
        Some(&KIND_PUT | &KIND_REMOVE)
            if scan_v1(bytes, |_| {}) > 0 || resync(bytes, 0).is_none() =>
        {
            Format::V1
        }
        _ if MAGIC.starts_with(start) || start.iter().all(|&b| b == 0) => Format::V2,
        // A damaged first header: still ours if a good entry follows.
        _ if resync(bytes, 0).is_some() => Format::V2,
        _ => Format::Unknown,
    }
}

/// Hands every version 1 entry up to the first bad one to `visit`;
/// returns the end of the last good one.
pub(super) fn scan_v1<'a>(bytes: &'a [u8], mut visit: impl FnMut(Entry<'a>)) -> usize {
    let mut off = 0;
    while let Some(rest) = bytes.get(off..)
        && let Some(&[kind, k0, k1, k2, k3, l0, l1, l2, l3]) = rest.first_chunk::<V1_HEAD>()
        && (kind == KIND_PUT || kind == KIND_REMOVE)
        && let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize
        && len <= MAX_RECORD
        && let Some((covered, tail)) = rest.split_at_checked(V1_HEAD + len)
        && let Some(crc) = tail.first_chunk::<4>()
        && crc32(covered) == u32::from_le_bytes(*crc)
    {
        visit(Entry {
            kind,
            key: u32::from_le_bytes([k0, k1, k2, k3]),
            record: covered.get(V1_HEAD..).unwrap_or_default(),
        });
        off += V1_HEAD + len + 4;
    }
    off
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bitwise: the log
/// is small and written once per publish, so no table.
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use alloc::vec;

    /// A version 1 entry, as FileStore wrote them before version 2.
    pub(in crate::store) fn encode_v1(out: &mut Vec<u8>, kind: u8, key: u32, record: &[u8]) {
        out.push(kind);
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(record);
        let from = out.len() - V1_HEAD - record.len();
        let crc = crc32(&out[from..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    fn log_of(entries: &[(u8, u32, &[u8])]) -> (Vec<u8>, Vec<usize>) {
        let mut log = Vec::new();
        let mut offsets = Vec::new();
        let mut e = Vec::new();
        for &(kind, key, record) in entries {
            encode(&mut e, kind, key, record);
            offsets.push(log.len());
            log.extend_from_slice(&e);
        }
        (log, offsets)
    }

    fn keys(bytes: &[u8]) -> (Vec<u32>, ScanEnd) {
        let mut keys = Vec::new();
        let end = scan(bytes, |_, e| keys.push(e.key));
        (keys, end)
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32 catalogue's check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn every_single_bit_flip_loses_at_most_the_entry_it_hits() {
        let (log, offsets) = log_of(&[
            (KIND_PUT, 1, b"first"),
            (KIND_PUT, 2, b"second record"),
            (KIND_REMOVE, 1, b""),
            (KIND_PUT, 3, b"third"),
        ]);
        for bit in 0..log.len() * 8 {
            let mut bad = log.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let hit = offsets.iter().rposition(|&o| o <= bit / 8).unwrap();
            let (got, end) = keys(&bad);
            let mut want = vec![1, 2, 1, 3];
            want.remove(hit);
            assert_eq!(got, want, "bit {bit}");
            if hit == offsets.len() - 1 {
                // The last entry: a torn tail, not a skip.
                assert_eq!((end.skipped, end.good_end), (0, offsets[hit]), "bit {bit}");
            } else {
                assert_eq!((end.skipped, end.good_end), (1, log.len()), "bit {bit}");
            }
        }
    }

    #[test]
    fn a_hole_of_zeros_is_stepped_over_and_a_short_tail_is_cut() {
        let (mut log, offsets) = log_of(&[
            (KIND_PUT, 1, &[9; 40]),
            (KIND_PUT, 2, &[8; 40]),
            (KIND_PUT, 3, &[7; 40]),
        ]);
        log[offsets[1]..offsets[2]].fill(0);
        assert_eq!(keys(&log).0, [1, 3]);
        let (got, end) = keys(&log[..log.len() - 1]);
        assert_eq!((got, end.good_end, end.skipped), (vec![1], offsets[1], 0));
    }

    #[test]
    fn a_payload_holding_an_entry_is_not_read_as_one() {
        let (inner, _) = log_of(&[(KIND_PUT, 99, b"phantom")]);
        let (mut log, offsets) = log_of(&[(KIND_PUT, 1, &inner), (KIND_PUT, 2, b"x")]);
        assert_eq!(keys(&log).0, [1, 2]);
        // A bad body is skipped whole, not searched.
        log[offsets[1] - 5] ^= 1;
        assert_eq!(keys(&log).0, [2]);
    }

    #[test]
    fn formats_are_told_apart_by_the_first_bytes() {
        let (v2, _) = log_of(&[(KIND_PUT, 1, b"a")]);
        let mut v1 = Vec::new();
        encode_v1(&mut v1, KIND_PUT, 1, b"a");
        assert_eq!(detect(&v2), Format::V2);
        assert_eq!(detect(&v2[..2]), Format::V2);
        assert_eq!(detect(&[]), Format::V2);
        assert_eq!(detect(&[0; 7]), Format::V2);
        assert_eq!(detect(&v1), Format::V1);
        assert_eq!(detect(b"#!/bin/sh\necho hello\n"), Format::Unknown);
        let mut damaged = vec![0x55; 3];
        damaged.extend_from_slice(&v2);
        assert_eq!(detect(&damaged), Format::V2);
        let mut got = Vec::new();
        assert_eq!(scan_v1(&v1, |e| got.push(e.key)), v1.len());
        assert_eq!(got, [1]);
    }
}
