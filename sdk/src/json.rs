//! JSON payloads (RFC 8259) for any serde type, written straight into a
//! buffer the caller lends: the building block of `Client::publish_json`,
//! which serializes into the outbox record itself (no intermediate buffer,
//! no allocator).
//!
//! Encoding goes through serde-json-core, which escapes strings as RFC 8259
//! §7 asks and writes a non-finite float as `null`. The only failure is a
//! buffer too short, reported with its length ([`JsonError`]).
//!
//! Deliberately not here: any message schema. The JSON device model the
//! boards, the simulator and the demo share (readings, commands, replies)
//! is the board application's (`embermq-board-app`, module `model`); an
//! application brings its own `Serialize` types.

use core::fmt;

use serde::Serialize;

/// What went wrong encoding JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// The JSON does not fit in the buffer lent for it.
    BufferTooSmall {
        /// The length of the buffer that was lent.
        capacity: usize,
    },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { capacity } => write!(
                f,
                "the JSON does not fit in the {capacity}-byte buffer lent for it"
            ),
        }
    }
}

impl core::error::Error for JsonError {}

/// Serializes any `Serialize` value as JSON into `buf`, returning the
/// number of bytes written.
///
/// # Errors
///
/// [`JsonError::BufferTooSmall`] if the JSON does not fit.
pub fn encode_json<T: Serialize + ?Sized>(value: &T, buf: &mut [u8]) -> Result<usize, JsonError> {
    let capacity = buf.len();
    serde_json_core::to_slice(value, buf).map_err(|_| JsonError::BufferTooSmall { capacity })
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate alloc;

    #[derive(Serialize)]
    struct Sample<'a> {
        name: &'a str,
        value: f32,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'a str>,
    }

    #[test]
    fn any_serialize_type_is_written_into_the_lent_buffer() {
        let mut buf = [0u8; 64];
        let n = encode_json(
            &Sample {
                name: "a\"b",
                value: 1.5,
                note: None,
            },
            &mut buf,
        )
        .unwrap();
        assert_eq!(&buf[..n], br#"{"name":"a\"b","value":1.5}"#);
        let n = encode_json(&[1u8, 2, 3][..], &mut buf).unwrap();
        assert_eq!(&buf[..n], b"[1,2,3]");
    }

    #[test]
    fn rfc8259_6_non_finite_float_is_written_as_null() {
        let mut buf = [0u8; 64];
        let n = encode_json(
            &Sample {
                name: "x",
                value: f32::INFINITY,
                note: Some("n"),
            },
            &mut buf,
        )
        .unwrap();
        assert_eq!(&buf[..n], br#"{"name":"x","value":null,"note":"n"}"#);
    }

    #[test]
    fn a_short_buffer_is_an_error_naming_its_length() {
        let mut buf = [0u8; 10];
        let sample = Sample {
            name: "longer than ten",
            value: 0.0,
            note: None,
        };
        let err = encode_json(&sample, &mut buf).unwrap_err();
        assert_eq!(err, JsonError::BufferTooSmall { capacity: 10 });
        assert!(alloc::format!("{err}").contains("10-byte"));
    }
}
