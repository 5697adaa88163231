//! Streaming UTF-8 validation for text messages that arrive in pieces:
//! across fragments and across partial reads (RFC 6455 §5.6, §8.1: invalid
//! UTF-8 in a text message fails the connection with 1007).
//!
//! Holds at most 3 bytes of an unfinished code point between pieces and
//! defers to `core::str::from_utf8` for everything else. Does not decode or
//! copy the text.

use crate::frame::copy_prefix;

/// Incremental UTF-8 validator state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Utf8Stream {
    pending: [u8; 4],
    pending_len: usize,
}

/// The length of the sequence a leading byte starts, or 0 if invalid.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

impl Utf8Stream {
    /// Forgets any state, for the start of a new message.
    pub(crate) fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Validates the next piece; `false` as soon as the text cannot be valid.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> bool {
        if self.pending_len > 0 {
            let need = sequence_len(self.pending[0]);
            while self.pending_len < need {
                let Some((&b, rest)) = data.split_first() else {
                    // Still unfinished: check what we have is a valid prefix.
                    return prefix_may_complete(self.pending.get(..self.pending_len));
                };
                if let Some(slot) = self.pending.get_mut(self.pending_len) {
                    *slot = b;
                }
                self.pending_len += 1;
                data = rest;
            }
            if core::str::from_utf8(self.pending.get(..need).unwrap_or_default()).is_err() {
                return false;
            }
            self.pending_len = 0;
        }
        match core::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let tail = data.get(e.valid_up_to()..).unwrap_or_default();
                self.pending_len = tail.len();
                copy_prefix(&mut self.pending, tail);
                prefix_may_complete(Some(tail))
            }
            Err(_) => false,
        }
    }

    /// True if the message may end here (no unfinished code point).
    pub(crate) fn is_complete(&self) -> bool {
        self.pending_len == 0
    }
}

/// True if `prefix` (1 to 3 bytes) can still be completed to a valid code
/// point (Unicode Table 3-7), so e.g. `ED A0` (a surrogate) fails at once
/// rather than when the next piece arrives.
fn prefix_may_complete(prefix: Option<&[u8]>) -> bool {
    let Some((&lead, rest)) = prefix.and_then(|p| p.split_first()) else {
        return false;
    };
    let need = sequence_len(lead);
    if need <= 1 || rest.len() + 1 >= need {
        return false;
    }
    let second = match lead {
        0xE0 => 0xA0..=0xBF,
        0xED => 0x80..=0x9F,
        0xF0 => 0x90..=0xBF,
        0xF4 => 0x80..=0x8F,
        _ => 0x80..=0xBF,
    };
    rest.iter().enumerate().all(|(i, b)| {
        if i == 0 {
            second.contains(b)
        } else {
            (0x80..=0xBF).contains(b)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_in_pieces(data: &[u8], cut: usize) -> bool {
        let mut s = Utf8Stream::default();
        s.feed(&data[..cut]) && s.feed(&data[cut..]) && s.is_complete()
    }

    #[test]
    fn rfc6455_8_1_valid_text_split_anywhere_is_valid() {
        let text = "ascii κόσμε 𝄞 end".as_bytes();
        for cut in 0..=text.len() {
            assert!(valid_in_pieces(text, cut), "cut {cut}");
        }
        let mut s = Utf8Stream::default();
        for b in text {
            assert!(s.feed(core::slice::from_ref(b)));
        }
        assert!(s.is_complete());
    }

    #[test]
    fn rfc6455_8_1_invalid_text_split_anywhere_is_invalid() {
        let cases: [&[u8]; 5] = [
            b"ab\xFFcd",
            b"\xED\xA0\x80",             // surrogate
            b"\xC0\xAF",                 // overlong
            b"\xF4\x90\x80\x80",         // above U+10FFFF
            b"\xCE\xBA\xE1\xBD\xB9\xCE", // truncated at the end
        ];
        for case in cases {
            for cut in 0..=case.len() {
                assert!(!valid_in_pieces(case, cut), "{case:?} cut {cut}");
            }
        }
    }

    #[test]
    fn surrogate_prefix_fails_before_the_rest_arrives() {
        let mut s = Utf8Stream::default();
        assert!(!s.feed(b"ok\xED\xA0"));
    }
}
