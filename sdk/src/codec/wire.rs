//! Wire primitives shared by every packet: the big-endian integers, the
//! Variable Byte Integer, length-prefixed UTF-8 strings and binary data
//! (MQTT 3.1.1 §1.5, §2.2.3; MQTT 5.0 §1.5).
//!
//! [`Reader`] walks a packet body that is already complete in memory: running
//! out of bytes there is a malformed packet ([`Violation::Truncated`]), not a
//! short read. [`Writer`] fills a lent buffer and never panics when it is too
//! short. Neither knows anything about packets.
//!
//! Two builds of the string and copy helpers: on hosts they are inlined
//! fast paths (block scans, overlapping fixed-size copies) that the codec
//! benchmarks measure; on targets without an OS (`target_os = "none"`: the
//! devices, built for size) each is one plain out-of-line function shared
//! by every field, which costs a few cycles per field and saves kilobytes
//! of flash. Both check and write exactly the same bytes.

use super::error::{EncodeError, Violation};

/// The largest value a Variable Byte Integer (and so a remaining length) can
/// carry: four bytes of seven bits (MQTT 3.1.1 §2.2.3, MQTT 5.0 §1.5.5).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

/// What reading a Variable Byte Integer from a possibly short buffer gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintRead {
    /// The integer is complete: its value and how many bytes it took.
    Value { value: u32, len: usize },
    /// The buffer ended inside the integer; the value is at least this.
    Incomplete { lower_bound: u32 },
}

/// Reads a Variable Byte Integer from the start of `buf`.
///
/// Rejects encodings longer than four bytes and non-minimal ones (a multi-byte
/// encoding whose last byte is zero).
pub(crate) fn read_varint(buf: &[u8]) -> Result<VarintRead, Violation> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(Violation::NonMinimalVarint);
            }
            return Ok(VarintRead::Value { value, len: i + 1 });
        }
    }
    if buf.len() >= 4 {
        return Err(Violation::VarintTooLong);
    }
    let lower_bound = if buf.is_empty() {
        0
    } else {
        // A minimal encoding's final byte is non-zero, so whatever follows adds
        // at least 128^len.
        value.saturating_add(1u32 << (7 * buf.len()))
    };
    Ok(VarintRead::Incomplete { lower_bound })
}

/// How many bytes `value` takes as a Variable Byte Integer.
pub(crate) const fn varint_len(value: usize) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Whether `bytes` hold a zero byte: 16-byte blocks the compiler
/// vectorises, the first block taken with the last, which overlaps it or
/// the blocks between (strings in MQTT are short, and a call into
/// `memchr` costs more than the scan); 8 to 15 bytes as two overlapping
/// `u64` words (SWAR). The loop keeps each block whole (see
/// `topic_syntax::has_nul_or_wildcard`).
#[cfg(not(target_os = "none"))]
#[inline(always)]
pub(crate) fn has_nul(bytes: &[u8]) -> bool {
    #[inline(always)]
    fn block(block: &[u8; 16]) -> bool {
        block.iter().fold(false, |acc, &b| acc | (b == 0))
    }
    /// The classic has-zero-byte test on a word: a byte borrows only if
    /// it was zero (or a lower byte borrowed, which needs a zero below).
    #[inline(always)]
    fn word_has_zero(x: u64) -> bool {
        x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080 != 0
    }
    let (Some(first), Some(last)) = (bytes.first_chunk::<16>(), bytes.last_chunk::<16>()) else {
        if let (Some(first), Some(last)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            return word_has_zero(u64::from_le_bytes(*first))
                | word_has_zero(u64::from_le_bytes(*last));
        }
        return bytes.iter().fold(false, |acc, &b| acc | (b == 0));
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

/// Whether `bytes` hold a zero byte (devices: a plain scan, out of line).
#[cfg(target_os = "none")]
#[inline(never)]
pub(crate) fn has_nul(bytes: &[u8]) -> bool {
    has_nul_plain(bytes)
}

/// The devices' zero-byte scan (compared with the hosts' in the tests).
#[cfg(any(target_os = "none", test))]
fn has_nul_plain(bytes: &[u8]) -> bool {
    bytes.contains(&0)
}

/// Checks that `bytes` are a well-formed UTF-8 string without U+0000.
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<&str, Violation> {
    let s = core::str::from_utf8(bytes).map_err(|_| Violation::InvalidUtf8)?;
    if has_nul(bytes) {
        return Err(Violation::NullCharacter);
    }
    Ok(s)
}

/// A cursor over a complete packet body.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) const fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails with [`Violation::TrailingBytes`] unless everything was read.
    pub(crate) const fn finish(&self) -> Result<(), Violation> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Violation::TrailingBytes)
        }
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Violation> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(Violation::Truncated)?;
        self.buf = tail;
        Ok(head)
    }

    #[inline]
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Violation> {
        let (&byte, tail) = self.buf.split_first().ok_or(Violation::Truncated)?;
        self.buf = tail;
        Ok(byte)
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, Violation> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<2>()
            .ok_or(Violation::Truncated)?;
        self.buf = tail;
        Ok(u16::from_be_bytes(*head))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Violation> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<4>()
            .ok_or(Violation::Truncated)?;
        self.buf = tail;
        Ok(u32::from_be_bytes(*head))
    }

    pub(crate) fn varint(&mut self) -> Result<u32, Violation> {
        match read_varint(self.buf)? {
            VarintRead::Value { value, len } => {
                self.take(len)?;
                Ok(value)
            }
            VarintRead::Incomplete { .. } => Err(Violation::Truncated),
        }
    }

    /// Two-byte length, then that many bytes (MQTT 5.0 §1.5.6, 3.1.1 §1.5.3
    /// for the prefix).
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<&'a [u8], Violation> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A length-prefixed UTF-8 string, validated.
    pub(crate) fn utf8(&mut self) -> Result<&'a str, Violation> {
        check_utf8(self.binary()?)
    }

    /// A length-prefixed string checked for well-formed UTF-8 only: the
    /// caller must check for U+0000 itself (topic names do, in the same pass
    /// as the wildcards).
    #[inline]
    pub(crate) fn utf8_allowing_nul(&mut self) -> Result<&'a str, Violation> {
        core::str::from_utf8(self.binary()?).map_err(|_| Violation::InvalidUtf8)
    }
}

/// The bytes of `value` as a Variable Byte Integer (low seven bits first)
/// and how many of the four are used. `value` must be at most
/// [`MAX_VARINT`]; larger values are cut to 28 bits (callers check first).
#[inline]
pub(crate) const fn varint_bytes(value: u32) -> ([u8; 4], usize) {
    let b0 = (value & 0x7f) as u8;
    let b1 = ((value >> 7) & 0x7f) as u8;
    let b2 = ((value >> 14) & 0x7f) as u8;
    let b3 = ((value >> 21) & 0x7f) as u8;
    if value < 1 << 7 {
        ([b0, 0, 0, 0], 1)
    } else if value < 1 << 14 {
        ([b0 | 0x80, b1, 0, 0], 2)
    } else if value < 1 << 21 {
        ([b0 | 0x80, b1 | 0x80, b2, 0], 3)
    } else {
        ([b0 | 0x80, b1 | 0x80, b2 | 0x80, b3], 4)
    }
}

/// Copies `src` into `dst` (of the same length). Strings and payloads in
/// MQTT are mostly short: from 8 to 64 bytes the copy is two overlapping
/// fixed-size moves inline, which costs less than the call into `memcpy`
/// (and its own dispatch on the length) that `copy_from_slice` makes.
#[cfg(not(target_os = "none"))]
#[inline(always)]
pub(crate) fn copy_into(dst: &mut [u8], src: &[u8]) {
    /// The first and the last `N` bytes (overlapping when `len < 2N`).
    /// Both halves are loaded before either is stored, as `memcpy` does:
    /// a load issued after a store to an address that matches it modulo
    /// 4 KiB waits for that store on x86 (4K aliasing), and whether the
    /// destination and source line up that way depends on where the
    /// allocator put them.
    #[inline(always)]
    fn ends<const N: usize>(dst: &mut [u8], src: &[u8]) {
        if let (Some(first), Some(last)) = (src.first_chunk::<N>(), src.last_chunk::<N>()) {
            let (first, last) = (*first, *last);
            if let Some(d) = dst.first_chunk_mut::<N>() {
                *d = first;
            }
            if let Some(d) = dst.last_chunk_mut::<N>() {
                *d = last;
            }
        }
    }
    let n = src.len();
    if n != dst.len() {
        // Not reached: callers pass a destination of the source's length.
        return;
    }
    match n {
        8..=15 => ends::<8>(dst, src),
        16..=32 => ends::<16>(dst, src),
        33..=64 => ends::<32>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// Copies `src` into `dst` (of the same length): devices call `memcpy`.
#[cfg(target_os = "none")]
#[inline(always)]
pub(crate) fn copy_into(dst: &mut [u8], src: &[u8]) {
    copy_into_plain(dst, src);
}

/// The devices' copy (compared with the hosts' in the tests).
#[cfg(any(target_os = "none", test))]
#[inline(always)]
fn copy_into_plain(dst: &mut [u8], src: &[u8]) {
    copy_prefix(dst, src);
}

/// Copies `min(dst.len(), src.len())` bytes from the start of `src` to the
/// start of `dst` (with `memcpy`) and returns that count. One out-of-line
/// copy: `copy_from_slice` inlined at each call site brings its own
/// length-mismatch panic path (a branch, a panic location and its file name
/// in flash) where the optimizer for size does not prove it dead.
#[inline(never)]
pub(crate) fn copy_prefix(dst: &mut [u8], src: &[u8]) -> usize {
    let n = dst.len().min(src.len());
    if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
    n
}

/// Moves `buf[src]` to `buf[dest..]` (the ranges may overlap); does nothing
/// when either range is out of `buf`. One out-of-line copy of the checks
/// `copy_within` would otherwise inline, with a panic location, into each
/// caller.
#[inline(never)]
pub(crate) fn move_within(buf: &mut [u8], src: core::ops::Range<usize>, dest: usize) {
    let len = buf.len();
    if src.start <= src.end && src.end <= len && dest <= len - (src.end - src.start) {
        buf.copy_within(src, dest);
    }
}

/// A cursor filling a lent buffer.
///
/// Each write checks once that its whole chunk fits (one comparison) and
/// then copies it; nothing indexes. The packet encoders size the buffer up
/// front, so in practice only that first check can fail.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    rest: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    #[inline(always)]
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { rest: buf, pos: 0 }
    }

    #[inline(always)]
    pub(crate) const fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes of the buffer, or the size the write needed.
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a mut [u8], EncodeError> {
        let rest = core::mem::take(&mut self.rest);
        if rest.len() < n {
            self.rest = rest;
            return Err(EncodeError::InsufficientSize {
                required: self.pos.saturating_add(n),
            });
        }
        match rest.split_at_mut_checked(n) {
            Some((head, tail)) => {
                self.rest = tail;
                self.pos += n;
                Ok(head)
            }
            // Cannot happen after the length check; reported, not panicked.
            None => Err(EncodeError::InsufficientSize {
                required: self.pos.saturating_add(n),
            }),
        }
    }

    /// The next `N` bytes as an array.
    #[inline(always)]
    fn chunk<const N: usize>(&mut self) -> Result<&'a mut [u8; N], EncodeError> {
        let rest = core::mem::take(&mut self.rest);
        if rest.len() < N {
            self.rest = rest;
            return Err(EncodeError::InsufficientSize {
                required: self.pos.saturating_add(N),
            });
        }
        match rest.split_first_chunk_mut::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                self.pos += N;
                Ok(head)
            }
            // Cannot happen after the length check; reported, not panicked.
            None => Err(EncodeError::InsufficientSize {
                required: self.pos.saturating_add(N),
            }),
        }
    }

    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        copy_into(self.take(bytes.len())?, bytes);
        Ok(())
    }

    /// A fixed-size group of bytes, copied without a call to `memcpy`
    /// (the hosts' fixed-header write).
    #[cfg(any(not(target_os = "none"), test))]
    #[inline(always)]
    pub(crate) fn array<const N: usize>(&mut self, bytes: [u8; N]) -> Result<(), EncodeError> {
        *self.chunk::<N>()? = bytes;
        Ok(())
    }

    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) fn u8(&mut self, value: u8) -> Result<(), EncodeError> {
        *self.chunk::<1>()? = [value];
        Ok(())
    }

    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) fn u16(&mut self, value: u16) -> Result<(), EncodeError> {
        *self.chunk::<2>()? = value.to_be_bytes();
        Ok(())
    }

    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) fn u32(&mut self, value: u32) -> Result<(), EncodeError> {
        *self.chunk::<4>()? = value.to_be_bytes();
        Ok(())
    }

    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) fn varint(&mut self, value: usize) -> Result<(), EncodeError> {
        let value = u32::try_from(value)
            .ok()
            .filter(|v| *v <= MAX_VARINT)
            .ok_or(Violation::RemainingLengthTooLarge { len: value })?;
        let (bytes, len) = varint_bytes(value);
        self.bytes(bytes.get(..len).unwrap_or(&bytes))
    }

    /// Two-byte length, then the bytes, with one bounds check.
    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) fn binary(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(bytes.len())
            .map_err(|_| Violation::StringTooLong { len: bytes.len() })?;
        let dst = self.take(2 + bytes.len())?;
        if let Some((prefix, body)) = dst.split_first_chunk_mut::<2>() {
            *prefix = len.to_be_bytes();
            copy_into(body, bytes);
        }
        Ok(())
    }

    /// Two-byte length, the bytes, then one more byte (a SUBSCRIBE filter
    /// and its options), with one bounds check.
    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) fn binary_then_u8(&mut self, bytes: &[u8], last: u8) -> Result<(), EncodeError> {
        let len = u16::try_from(bytes.len())
            .map_err(|_| Violation::StringTooLong { len: bytes.len() })?;
        let dst = self.take(3 + bytes.len())?;
        if let Some((prefix, rest)) = dst.split_first_chunk_mut::<2>() {
            *prefix = len.to_be_bytes();
            if let Some((body, [tail])) = rest.split_last_chunk_mut::<1>() {
                copy_into(body, bytes);
                *tail = last;
            }
        }
        Ok(())
    }

    /// A length-prefixed string; refuses U+0000 as the receiver would (a
    /// `&str` is well-formed UTF-8 already, so it is not checked again).
    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) fn utf8(&mut self, s: &str) -> Result<(), EncodeError> {
        if has_nul(s.as_bytes()) {
            return Err(Violation::NullCharacter.into());
        }
        self.binary(s.as_bytes())
    }

    /// A length-prefixed string the caller has checked for U+0000 already
    /// (topic names, in the same pass as their wildcards).
    #[inline(always)]
    pub(crate) fn utf8_checked(&mut self, s: &str) -> Result<(), EncodeError> {
        self.binary(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;

    /// [MQTT-1.5.4-2] (U+0000 refused): the devices' plain scan and the
    /// hosts' block scan agree at every length up to 80 with a zero byte at
    /// every position (and none), and the two copies write the same bytes.
    #[test]
    fn mqtt_1_5_4_2_device_and_host_string_helpers_agree() {
        for len in 0..80usize {
            let clean: alloc::vec::Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(has_nul(&clean), has_nul_plain(&clean), "{len}");
            assert!(!has_nul(&clean));
            for at in 0..len {
                let mut with = clean.clone();
                with[at] = 0;
                assert!(has_nul(&with), "{len} {at}");
                assert!(has_nul_plain(&with), "{len} {at}");
            }
            let mut host = alloc::vec![0xAAu8; len];
            let mut device = alloc::vec![0x55u8; len];
            copy_into(&mut host, &clean);
            copy_into_plain(&mut device, &clean);
            assert_eq!(host, device, "{len}");
            assert_eq!(host, clean, "{len}");
        }
    }

    /// MQTT 3.1.1 §2.2.3 Table 2.4 / MQTT 5.0 §1.5.5 Table 1-1: the edges of
    /// each Variable Byte Integer length.
    #[test]
    fn mqtt_2_2_3_remaining_length_table() {
        let table: &[(u32, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xff, 0xff, 0xff, 0x7f]),
        ];
        for &(value, bytes) in table {
            assert_eq!(
                read_varint(bytes),
                Ok(VarintRead::Value {
                    value,
                    len: bytes.len()
                }),
                "{value}"
            );
            let mut out = [0u8; 4];
            let mut w = Writer::new(&mut out);
            w.varint(value as usize).unwrap();
            let n = w.position();
            assert_eq!(&out[..n], bytes, "{value}");
            assert_eq!(varint_len(value as usize), bytes.len());
        }
    }

    #[test]
    fn mqtt_1_5_5_varint_of_five_bytes_rejected() {
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(Violation::VarintTooLong)
        );
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80]),
            Err(Violation::VarintTooLong)
        );
    }

    #[test]
    fn mqtt_1_5_5_1_non_minimal_varint_rejected() {
        assert_eq!(read_varint(&[0x80, 0x00]), Err(Violation::NonMinimalVarint));
        assert_eq!(
            read_varint(&[0xff, 0x80, 0x00]),
            Err(Violation::NonMinimalVarint)
        );
    }

    #[test]
    fn varint_too_large_for_emit_rejected() {
        let mut out = [0u8; 8];
        assert_eq!(
            Writer::new(&mut out).varint(268_435_456),
            Err(EncodeError::Invalid(Violation::RemainingLengthTooLarge {
                len: 268_435_456
            }))
        );
    }

    #[test]
    fn mqtt_1_5_3_1_ill_formed_utf8_rejected() {
        // An encoded surrogate (U+D800) and an overlong '/'.
        assert_eq!(check_utf8(&[0xed, 0xa0, 0x80]), Err(Violation::InvalidUtf8));
        assert_eq!(check_utf8(&[0xc0, 0xaf]), Err(Violation::InvalidUtf8));
    }

    #[test]
    fn mqtt_1_5_3_2_null_character_rejected() {
        assert_eq!(check_utf8(b"a\0b"), Err(Violation::NullCharacter));
        let mut out = [0u8; 8];
        assert_eq!(
            Writer::new(&mut out).utf8("a\0"),
            Err(EncodeError::Invalid(Violation::NullCharacter))
        );
    }

    /// [MQTT-1.5.3-2]: the U+0000 scan finds a zero byte at every position
    /// of every length up to 40 (each path: bytes, words, blocks), and
    /// only a zero byte (0x80 and 0x01 neighbours included).
    #[test]
    fn mqtt_1_5_3_2_nul_found_at_every_position() {
        for len in 0..40usize {
            for fill in [b'a', 0x80, 0x01, 0xff] {
                let clean = alloc::vec![fill; len];
                assert!(!has_nul(&clean), "len {len} fill {fill:#x}");
                for at in 0..len {
                    let mut bytes = clean.clone();
                    bytes[at] = 0;
                    assert!(has_nul(&bytes), "len {len} at {at} fill {fill:#x}");
                }
            }
        }
    }

    /// The inline copy gives the source back at every length of each of
    /// its paths (bytes, two words, two 16- and 32-byte blocks, `memcpy`).
    #[test]
    fn copy_into_copies_every_length() {
        for len in 0..140usize {
            let src: alloc::vec::Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            let mut dst = alloc::vec![0u8; len];
            copy_into(&mut dst, &src);
            assert_eq!(dst, src, "len {len}");
        }
    }

    #[test]
    fn writer_reports_insufficient_size() {
        let mut out = [0u8; 2];
        let mut w = Writer::new(&mut out);
        assert_eq!(w.u32(1), Err(EncodeError::InsufficientSize { required: 4 }));
    }
}
