//! Credentials for the clouds' MQTT-over-WebSocket endpoints, computed on the
//! device without an allocator.
//!
//! - [`aws`] (feature `cloud-aws`): AWS Signature Version 4 (the general
//!   canonical request / string to sign / signing key chain) and the
//!   presigned `wss://<endpoint>/mqtt?X-Amz-...` URL AWS IoT Core accepts,
//!   with a temporary credential's session token appended after signing.
//! - [`azure`] (feature `cloud-azure`): the Azure IoT Hub shared access
//!   signature (SAS) token used as the MQTT password, and the WebSocket path
//!   and MQTT user name and client id that go with it.
//!
//! Every output is written into a buffer the caller lends; a buffer too small
//! is [`CloudError::BufferTooSmall`], never a truncated credential. The
//! current time is an argument (devices get it from SNTP or a cellular modem):
//! nothing here reads a clock or a random source.
//!
//! What this module deliberately does not do: fetch credentials (IMDS,
//! Cognito, STS, Azure DPS), verify server certificates (that is the TLS
//! connector's job), or open connections (the client layer does, with the URL
//! and password produced here).

use core::fmt;

use hmac::Hmac;
use hmac::digest::{KeyInit, Update};
use sha2::{Digest, Sha256};

#[cfg(feature = "cloud-aws")]
pub mod aws;
#[cfg(feature = "cloud-azure")]
pub mod azure;

/// What went wrong while producing a cloud credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloudError {
    /// The buffer lent for the output holds fewer bytes than the output
    /// needs.
    BufferTooSmall {
        /// The length of the buffer that was lent.
        capacity: usize,
    },
    /// A key given base64-encoded (Azure's shared access keys) is not valid
    /// standard base64, or decodes to more than [`MAX_KEY_LEN`] bytes.
    InvalidKey,
    /// An input, or a value built from inputs, is longer than the fixed
    /// room this module keeps for it on the stack.
    TooLong {
        /// The name of the value, e.g. `"X-Amz-Credential"`.
        field: &'static str,
        /// The most bytes it may have.
        max: usize,
    },
    /// An input holds a character the protocol cannot carry, or is empty
    /// where a value is required; `field` names the input.
    InvalidInput {
        /// The name of the offending input, e.g. `"region"`.
        field: &'static str,
    },
}

/// The longest decoded shared access key accepted, in bytes. Azure's keys
/// are 32 bytes (44 base64 characters); 64 leaves room for other HMAC keys
/// without letting an input choose the stack usage.
pub const MAX_KEY_LEN: usize = 64;

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { capacity } => write!(
                f,
                "the output does not fit in the {capacity}-byte buffer lent for it"
            ),
            Self::InvalidKey => write!(
                f,
                "the key is not standard base64 of at most {MAX_KEY_LEN} bytes"
            ),
            Self::TooLong { field, max } => {
                write!(f, "`{field}` is longer than its limit of {max} bytes")
            }
            Self::InvalidInput { field } => {
                write!(f, "`{field}` is empty or holds a character it cannot carry")
            }
        }
    }
}

impl core::error::Error for CloudError {}

/// A [`fmt::Write`] over a lent byte slice: writes go in order; a write that
/// does not fit fails (and the writer remembers it) instead of truncating.
pub(crate) struct SliceWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'b> SliceWriter<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            overflowed: false,
        }
    }

    /// The text written so far, borrowed for as long as the lent buffer, or
    /// `BufferTooSmall` if any write did not fit.
    pub(crate) fn finish(self) -> Result<&'b str, CloudError> {
        if self.overflowed {
            return Err(CloudError::BufferTooSmall {
                capacity: self.buf.len(),
            });
        }
        let capacity = self.buf.len();
        let written = self
            .buf
            .get(..self.len)
            .ok_or(CloudError::BufferTooSmall { capacity })?;
        // Only `&str`s were copied in, whole, so this cannot fail; the
        // error path exists to avoid a panic path.
        core::str::from_utf8(written).map_err(|_| CloudError::BufferTooSmall { capacity })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
            None => {
                self.overflowed = true;
                Err(fmt::Error)
            }
        }
    }
}

/// Streams formatted text into a hash or MAC.
pub(crate) struct DigestWriter<'a, D: Update>(pub(crate) &'a mut D);

impl<D: Update> fmt::Write for DigestWriter<'_, D> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// An HMAC-SHA256 keyed with `key` of any length (RFC 2104 §2: a key
/// longer than the 64-byte block is hashed first, a shorter one
/// zero-padded), built without a fallible constructor.
pub(crate) fn keyed_hmac(key: &[u8]) -> Hmac<Sha256> {
    let mut block = [0u8; 64];
    match block.get_mut(..key.len()) {
        Some(dst) => dst.copy_from_slice(key),
        None => {
            let digest: [u8; 32] = Sha256::digest(key).into();
            for (dst, src) in block.iter_mut().zip(digest) {
                *dst = src;
            }
        }
    }
    <Hmac<Sha256> as KeyInit>::new(&block.into())
}

/// Lower-case hexadecimal of a byte string, as a [`fmt::Display`].
#[derive(Debug, Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// RFC 3986 percent-encoding as AWS SigV4 and Azure's SAS tokens both define
/// it: the unreserved characters `A-Z a-z 0-9 - . _ ~` stay, every other
/// byte of the UTF-8 text becomes `%XX` with upper-case hex; `/` stays only
/// when `keep_slash` is set (SigV4 paths).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PercentEncoded<'a> {
    pub(crate) text: &'a str,
    pub(crate) keep_slash: bool,
}

#[cfg(feature = "cloud-aws")]
const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(feature = "cloud-aws")]
impl PercentEncoded<'_> {
    /// The encoded bytes, one by one (for comparing encoded forms without
    /// writing them anywhere).
    pub(crate) fn bytes(self) -> impl Iterator<Item = u8> + Clone {
        self.text.bytes().flat_map(move |byte| {
            let keep = is_unreserved(byte) || (self.keep_slash && byte == b'/');
            let hi = UPPER_HEX
                .get(usize::from(byte >> 4))
                .copied()
                .unwrap_or(b'0');
            let lo = UPPER_HEX
                .get(usize::from(byte & 0x0f))
                .copied()
                .unwrap_or(b'0');
            let triple = if keep { [byte, 0, 0] } else { [b'%', hi, lo] };
            let n = if keep { 1 } else { 3 };
            triple.into_iter().take(n)
        })
    }
}

impl fmt::Display for PercentEncoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.text.bytes() {
            if is_unreserved(byte) || (self.keep_slash && byte == b'/') {
                fmt::Write::write_char(f, char::from(byte))?;
            } else {
                write!(f, "%{byte:02X}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;
    extern crate alloc;
    use alloc::string::ToString;

    #[test]
    fn rfc3986_2_3_unreserved_kept_everything_else_percent_encoded() {
        let enc = PercentEncoded {
            text: "aZ09-._~ /+=ሴ",
            keep_slash: false,
        };
        assert_eq!(enc.to_string(), "aZ09-._~%20%2F%2B%3D%E1%88%B4");
        #[cfg(feature = "cloud-aws")]
        {
            let bytes: alloc::vec::Vec<u8> = enc.bytes().collect();
            assert_eq!(bytes, enc.to_string().into_bytes());
        }
        let path = PercentEncoded {
            text: "/a b/ሴ",
            keep_slash: true,
        };
        assert_eq!(path.to_string(), "/a%20b/%E1%88%B4");
    }

    #[test]
    fn slice_writer_reports_overflow_instead_of_truncating() {
        let mut buf = [0u8; 4];
        let mut w = SliceWriter::new(&mut buf);
        assert!(w.write_str("abc").is_ok());
        assert!(w.write_str("de").is_err());
        assert_eq!(w.finish(), Err(CloudError::BufferTooSmall { capacity: 4 }));
        let mut buf = [0u8; 5];
        let mut w = SliceWriter::new(&mut buf);
        write!(w, "ab{}", 12).unwrap();
        assert_eq!(w.finish(), Ok("ab12"));
    }
}
