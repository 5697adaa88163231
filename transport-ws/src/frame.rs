//! The WebSocket frame header codec and payload masking (RFC 6455 §5.2, §5.3).
//!
//! [`FrameHeader::decode`] is a pure function over a byte slice: it returns
//! `Ok(None)` when more bytes are needed (consuming nothing), the header and
//! its length when complete, or a [`ProtocolError`] carrying the close code
//! for a header that no conforming peer may send regardless of role or
//! state: reserved opcodes, RSV bits (no extension is ever negotiated), a
//! 64-bit length with the top bit set, a control frame that is fragmented or
//! longer than 125 bytes. Role checks (masked or not) and message-state
//! checks (continuation without a start) belong to the reader in
//! `message.rs`, which knows the role and the state.
//!
//! [`FrameHeader::encode`] always uses the minimal length encoding (§5.2).
//! [`mask_copy`] and [`apply_mask`] XOR a payload with the 4-byte key a word
//! at a time in safe Rust, resuming at any payload offset so a frame can be
//! masked piece by piece into a small transmit buffer.
//!
//! Deliberately not here: extensions (permessage-deflate is never offered, so
//! RSV bits are always an error), I/O, and message reassembly.

use core::ops::Range;

use crate::error::ProtocolError;

/// The largest encoded frame header: 2 bytes, 8 bytes of length, 4 of key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 §5.2, §11.8). Reserved values are not
/// representable: decoding them is a [`ProtocolError::ReservedOpcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// `0x0`: continues a fragmented message.
    Continuation,
    /// `0x1`: a text data frame (UTF-8 payload).
    Text,
    /// `0x2`: a binary data frame.
    Binary,
    /// `0x8`: connection close.
    Close,
    /// `0x9`: ping; answered with a pong carrying the same payload.
    Ping,
    /// `0xA`: pong.
    Pong,
}

impl Opcode {
    /// Maps the 4-bit wire value to an opcode; `None` for reserved values.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames (RFC 6455 §5.5).
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// One decoded or to-be-encoded frame header (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of its message.
    pub fin: bool,
    /// The frame opcode.
    pub opcode: Opcode,
    /// The masking key, present iff the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes (at most `2^63 - 1`).
    pub payload_len: u64,
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` does not yet hold the whole header,
    /// `Ok(Some((header, header_len)))` when it does. Never panics.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let Some(&[b0, b1]) = buf.first_chunk::<2>() else {
            return Ok(None);
        };
        // §5.2: "MUST be 0 unless an extension is negotiated"; we never
        // negotiate one.
        if b0 & 0x70 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let opcode_bits = b0 & 0x0F;
        let opcode =
            Opcode::from_bits(opcode_bits).ok_or(ProtocolError::ReservedOpcode(opcode_bits))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125
            // bytes or less and MUST NOT be fragmented."
            if len7 > 125 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                let Some(bytes) = buf.get(2..4).and_then(|s| s.first_chunk::<2>()) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes(*bytes)), 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10).and_then(|s| s.first_chunk::<8>()) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(*bytes);
                // §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBitSet);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            let Some(key) = buf.get(pos..pos + 4).and_then(|s| s.first_chunk::<4>()) else {
                return Ok(None);
            };
            pos += 4;
            Some(*key)
        } else {
            None
        };
        Ok(Some((
            Self {
                fin,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// The number of bytes [`encode`](Self::encode) writes: 2 to 14.
    pub const fn encoded_len(&self) -> usize {
        let len = if self.payload_len < 126 {
            2
        } else if self.payload_len <= 0xFFFF {
            4
        } else {
            10
        };
        if self.mask.is_some() { len + 4 } else { len }
    }

    /// Encodes the header with the minimal length encoding (§5.2) into the
    /// start of `out`, returning the number of bytes written, or `None` if
    /// `out` is shorter than [`encoded_len`](Self::encoded_len) or the
    /// length does not fit 63 bits.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        if self.payload_len >> 63 != 0 {
            return None;
        }
        let len = self.encoded_len();
        let out = out.get_mut(..len)?;
        let b0 = if self.fin { 0x80 } else { 0 } | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let (head, rest) = out.split_at_mut_checked(2)?;
        let rest = if self.payload_len < 126 {
            head.copy_from_slice(&[b0, mask_bit | self.payload_len as u8]);
            rest
        } else if self.payload_len <= 0xFFFF {
            head.copy_from_slice(&[b0, mask_bit | 126]);
            let (ext, rest) = rest.split_at_mut_checked(2)?;
            ext.copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            rest
        } else {
            head.copy_from_slice(&[b0, mask_bit | 127]);
            let (ext, rest) = rest.split_at_mut_checked(8)?;
            ext.copy_from_slice(&self.payload_len.to_be_bytes());
            rest
        };
        if let Some(key) = self.mask {
            rest.get_mut(..4)?.copy_from_slice(&key);
        }
        Some(len)
    }
}

/// The key rotated so that byte 0 of the result masks payload byte `offset`.
fn rotated_key(key: [u8; 4], offset: u64) -> [u8; 4] {
    let r = (offset % 4) as usize;
    let mut out = [0u8; 4];
    for (i, b) in out.iter_mut().enumerate() {
        *b = key.get((i + r) % 4).copied().unwrap_or(0);
    }
    out
}

/// XORs `data` in place with `key`, as if `data` started at payload byte
/// `offset` of its frame (RFC 6455 §5.3: octet i is XORed with key[i % 4]).
/// Unmasking is the same operation.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: u64) {
    let k = rotated_key(key, offset);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(k.iter().cycle()) {
        *b ^= m;
    }
}

/// Copies `src` into the start of `dst` while masking it, as if `src` started
/// at payload byte `offset` of its frame. Copies `min(src.len(), dst.len())`
/// bytes and returns that count. This is the only payload copy on the send
/// path of the client.
pub fn mask_copy(src: &[u8], dst: &mut [u8], key: [u8; 4], offset: u64) -> usize {
    let n = src.len().min(dst.len());
    let (Some(src), Some(dst)) = (src.get(..n), dst.get_mut(..n)) else {
        return 0;
    };
    let k = rotated_key(key, offset);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut s = src.chunks_exact(8);
    let mut d = dst.chunks_exact_mut(8);
    for (sc, dc) in (&mut s).zip(&mut d) {
        if let (Some(w), Some(dc)) = (sc.first_chunk::<8>(), dc.first_chunk_mut::<8>()) {
            *dc = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
        }
    }
    for ((db, sb), m) in d
        .into_remainder()
        .iter_mut()
        .zip(s.remainder())
        .zip(k.iter().cycle())
    {
        *db = sb ^ m;
    }
    n
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
pub(crate) fn move_within(buf: &mut [u8], src: Range<usize>, dest: usize) {
    let len = buf.len();
    if src.start <= src.end && src.end <= len && dest <= len - (src.end - src.start) {
        buf.copy_within(src, dest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_mask(data: &[u8], key: [u8; 4], offset: u64) -> alloc::vec::Vec<u8> {
        data.iter()
            .enumerate()
            .map(|(i, b)| b ^ key[((i as u64 + offset) % 4) as usize])
            .collect()
    }

    #[test]
    fn rfc6455_5_7_unmasked_hello_decodes() {
        // §5.7 example: a single-frame unmasked text message "Hello".
        let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = FrameHeader::decode(&bytes).unwrap().unwrap();
        assert_eq!(n, 2);
        assert_eq!(h.opcode, Opcode::Text);
        assert!(h.fin);
        assert_eq!(h.mask, None);
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn rfc6455_5_7_masked_hello_decodes_and_unmasks() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = FrameHeader::decode(&bytes).unwrap().unwrap();
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        let mut payload = bytes[6..].to_vec();
        apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn rfc6455_5_7_fragmented_and_ping_examples_decode() {
        let (h, _) = FrameHeader::decode(&[0x01, 0x03, b'H', b'e', b'l'])
            .unwrap()
            .unwrap();
        assert!(!h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        let (h, _) = FrameHeader::decode(&[0x80, 0x02, b'l', b'o'])
            .unwrap()
            .unwrap();
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Continuation);
        let (h, _) = FrameHeader::decode(&[0x89, 0x05]).unwrap().unwrap();
        assert_eq!(h.opcode, Opcode::Ping);
    }

    #[test]
    fn rfc6455_5_7_16_and_64_bit_lengths_decode() {
        let (h, n) = FrameHeader::decode(&[0x82, 0x7E, 0x01, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        let (h, n) = FrameHeader::decode(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn short_header_needs_more_bytes_at_every_cut() {
        let mut full = [0u8; 14];
        let h = FrameHeader {
            fin: true,
            opcode: Opcode::Binary,
            mask: Some([1, 2, 3, 4]),
            payload_len: 70_000,
        };
        let n = h.encode(&mut full).unwrap();
        assert_eq!(n, 14);
        for cut in 0..n {
            assert_eq!(
                FrameHeader::decode(&full[..cut]).unwrap(),
                None,
                "cut {cut}"
            );
        }
        assert_eq!(FrameHeader::decode(&full).unwrap(), Some((h, 14)));
    }

    #[test]
    fn rfc6455_5_2_rsv_bits_without_extension_rejected() {
        for b0 in [0xC2u8, 0xA2, 0x92] {
            let e = FrameHeader::decode(&[b0, 0x00]).unwrap_err();
            assert_eq!(e, ProtocolError::ReservedBits);
            assert_eq!(e.close_code(), 1002);
        }
    }

    #[test]
    fn rfc6455_5_2_reserved_opcodes_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let e = FrameHeader::decode(&[0x80 | op, 0x00]).unwrap_err();
            assert_eq!(e, ProtocolError::ReservedOpcode(op));
            assert_eq!(e.close_code(), 1002);
        }
    }

    #[test]
    fn rfc6455_5_5_control_frame_over_125_bytes_rejected() {
        let e = FrameHeader::decode(&[0x89, 0x7E, 0x00, 0x7E]).unwrap_err();
        assert_eq!(e, ProtocolError::ControlFrameTooLong);
        assert_eq!(e.close_code(), 1002);
    }

    #[test]
    fn rfc6455_5_5_fragmented_control_frame_rejected() {
        let e = FrameHeader::decode(&[0x09, 0x00]).unwrap_err();
        assert_eq!(e, ProtocolError::FragmentedControlFrame);
    }

    #[test]
    fn rfc6455_5_2_64_bit_length_with_top_bit_rejected() {
        let e = FrameHeader::decode(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e, ProtocolError::LengthTopBitSet);
    }

    #[test]
    fn rfc6455_5_2_minimal_length_encoding_on_send() {
        let mut out = [0u8; 14];
        for (len, expect) in [(0u64, 2usize), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let h = FrameHeader {
                fin: true,
                opcode: Opcode::Binary,
                mask: None,
                payload_len: len,
            };
            assert_eq!(h.encode(&mut out), Some(expect), "len {len}");
            assert_eq!(
                FrameHeader::decode(&out[..expect]).unwrap(),
                Some((h, expect))
            );
        }
    }

    #[test]
    fn encode_into_short_buffer_is_none() {
        let h = FrameHeader {
            fin: true,
            opcode: Opcode::Binary,
            mask: Some([0; 4]),
            payload_len: 1,
        };
        assert_eq!(h.encode(&mut [0u8; 5]), None);
    }

    #[test]
    fn rfc6455_5_3_masking_matches_definition_at_every_offset() {
        let data: alloc::vec::Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let key = [0xA1, 0x02, 0x7F, 0xE4];
        for offset in 0..8u64 {
            for len in [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 1000] {
                let expect = naive_mask(&data[..len], key, offset);
                let mut inplace = data[..len].to_vec();
                apply_mask(&mut inplace, key, offset);
                assert_eq!(inplace, expect);
                let mut out = alloc::vec![0u8; len];
                assert_eq!(mask_copy(&data[..len], &mut out, key, offset), len);
                assert_eq!(out, expect);
            }
        }
    }

    #[test]
    fn mask_in_pieces_equals_mask_in_one() {
        let data: alloc::vec::Vec<u8> = (0..100u8).collect();
        let key = [9, 8, 7, 6];
        let whole = naive_mask(&data, key, 0);
        let mut pieces = alloc::vec::Vec::new();
        let mut off = 0usize;
        for size in [3usize, 13, 1, 40, 43] {
            let mut out = alloc::vec![0u8; size];
            mask_copy(&data[off..off + size], &mut out, key, off as u64);
            pieces.extend_from_slice(&out);
            off += size;
        }
        assert_eq!(pieces, whole);
    }
}
