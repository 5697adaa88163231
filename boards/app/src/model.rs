//! The JSON device model every embermq firmware speaks, and the simulator,
//! the demo, the examples and the tests with it: what a device reports
//! ([`Readings`]), what it is told ([`Command`]) and what it answers
//! ([`CommandReply`]). One model, so that a simulated fleet and a real one
//! look the same to a backend.
//!
//! JSON (RFC 8259) goes through serde-json-core: encoding writes straight
//! into a buffer the caller lends (or, through the SDK's
//! `Client::publish_json`, into the client's outbox), decoding borrows its
//! strings from the received payload. Nothing allocates, and no input
//! panics or recurses without bound: the nesting depth is checked before
//! parsing ([`MAX_DEPTH`]).
//!
//! Wire forms:
//!
//! ```text
//! readings: {"device":"sim-0001","seq":42,"ts_ms":1700000000000,"uptime_ms":5000,
//!            "temp_c":21.5,"count":7,"rssi_dbm":-61,"status":"ok"}
//! commands: {"cmd":"led","on":true}  {"cmd":"interval","secs":5}  {"cmd":"ping"}
//!           {"cmd":"reboot"}         {"cmd":"label","text":"kitchen"}
//! replies:  {"cmd":"ping","ok":true,"uptime_ms":5000}  {"cmd":"led","ok":false,"error":"..."}
//! ```
//!
//! Commands are internally tagged by `"cmd"`. Serde's derive for internally
//! tagged enums buffers the content in an allocated `Content` tree, which a
//! `no_std`, allocator-free build does not have; so the command is read
//! into one flat struct of optional fields and dispatched on `cmd` by hand,
//! which also gives a precise error for a missing or out-of-range field.
//! Unknown fields are ignored, so newer senders stay compatible.
//!
//! Deliberately not done: unescaping strings. Borrowed string fields that
//! contain a JSON escape (`\"`, `\u00e9`, ...) are refused with
//! [`ModelError::EscapedString`] rather than handed over still escaped.
//! Encoding escapes properly; only decoding is zero-copy. A non-finite
//! temperature is encoded as `null` and decodes as `None`.

use core::fmt;

use embermq::json::{JsonError, encode_json};
use serde::{Deserialize, Serialize};

/// The deepest nesting of JSON objects and arrays accepted on decode. The
/// model is flat (depth 1); a little room is left for unknown fields.
pub const MAX_DEPTH: usize = 4;

/// The longest label text a [`Command::Label`] may carry, in bytes.
pub const MAX_LABEL_LEN: usize = 32;

/// The reporting interval range a [`Command::Interval`] may set, seconds.
pub const INTERVAL_SECS: core::ops::RangeInclusive<u32> = 1..=86_400;

/// One telemetry sample from a device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Readings<'a> {
    /// The device's id (its MQTT client id, typically).
    #[serde(rename = "device")]
    pub device_id: &'a str,
    /// Sequence number, +1 per sample; gaps show lost messages.
    pub seq: u32,
    /// When the sample was sent: Unix time in milliseconds, or the
    /// device's own clock when it has no wall time.
    #[serde(rename = "ts_ms")]
    pub sent_at_ms: u64,
    /// Milliseconds since the device booted.
    pub uptime_ms: u64,
    /// Temperature in °C, if the device has a sensor.
    #[serde(rename = "temp_c", default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f32>,
    /// A free-running event counter (button presses, pulses, ...).
    #[serde(rename = "count")]
    pub counter: u32,
    /// Received signal strength in dBm, if the radio reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssi_dbm: Option<i16>,
    /// A short free-form status label (set by [`Command::Label`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a str>,
}

/// A command sent to a device, decoded from `{"cmd":"<name>", ...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `{"cmd":"led","on":true}`: switch the LED.
    Led {
        /// On or off.
        on: bool,
    },
    /// `{"cmd":"interval","secs":5}`: set the reporting interval, within
    /// [`INTERVAL_SECS`].
    Interval {
        /// Seconds between readings.
        secs: u32,
    },
    /// `{"cmd":"ping"}`: answer at once (a liveness and latency probe).
    Ping,
    /// `{"cmd":"reboot"}`: restart the device.
    Reboot,
    /// `{"cmd":"label","text":"kitchen"}`: set the status label reported
    /// in [`Readings::status`], at most [`MAX_LABEL_LEN`] bytes.
    Label {
        /// The new label.
        text: &'a str,
    },
}

impl Command<'_> {
    /// The command's name as it appears in `"cmd"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Led { .. } => "led",
            Self::Interval { .. } => "interval",
            Self::Ping => "ping",
            Self::Reboot => "reboot",
            Self::Label { .. } => "label",
        }
    }
}

/// A device's answer to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply<'a> {
    /// The name of the command answered.
    pub cmd: &'a str,
    /// Whether it was carried out.
    pub ok: bool,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// The device's uptime, in the answer to a ping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
}

impl<'a> CommandReply<'a> {
    /// A success reply to `command`.
    pub fn ok(command: &Command<'_>) -> Self {
        Self {
            cmd: command.name(),
            ok: true,
            error: None,
            uptime_ms: None,
        }
    }

    /// A failure reply to the command named `cmd`, with a reason.
    pub fn failed(cmd: &'a str, error: &'a str) -> Self {
        Self {
            cmd,
            ok: false,
            error: Some(error),
            uptime_ms: None,
        }
    }
}

/// What went wrong encoding or decoding the model's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelError {
    /// The JSON could not be written (it does not fit in the buffer lent
    /// for it).
    Encode(JsonError),
    /// The input is not JSON of the expected shape.
    Malformed(serde_json_core::de::Error),
    /// Objects or arrays nest deeper than [`MAX_DEPTH`].
    TooDeep {
        /// The limit, [`MAX_DEPTH`].
        limit: usize,
    },
    /// A string field holds a JSON escape, which this zero-copy decoder
    /// does not unescape.
    EscapedString {
        /// The JSON name of the field.
        field: &'static str,
    },
    /// `"cmd"` names no command this model knows.
    UnknownCommand,
    /// A command lacks a field it needs.
    MissingField {
        /// The command.
        cmd: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A numeric field is outside its allowed range.
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The smallest value allowed.
        min: u32,
        /// The largest value allowed.
        max: u32,
    },
    /// A string field is longer than its limit.
    TooLong {
        /// The field.
        field: &'static str,
        /// The most bytes allowed.
        max: usize,
    },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode(e) => e.fmt(f),
            Self::Malformed(e) => write!(f, "malformed JSON: {e}"),
            Self::TooDeep { limit } => {
                write!(
                    f,
                    "JSON objects/arrays nest deeper than the limit of {limit}"
                )
            }
            Self::EscapedString { field } => write!(
                f,
                "string field `{field}` contains a JSON escape, which the zero-copy decoder does not unescape"
            ),
            Self::UnknownCommand => write!(
                f,
                "unknown command (known: led, interval, ping, reboot, label)"
            ),
            Self::MissingField { cmd, field } => {
                write!(f, "command `{cmd}` needs the field `{field}`")
            }
            Self::OutOfRange { field, min, max } => {
                write!(f, "`{field}` must be within {min}..={max}")
            }
            Self::TooLong { field, max } => {
                write!(f, "`{field}` is longer than its limit of {max} bytes")
            }
        }
    }
}

impl core::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Malformed(e) => Some(e),
            Self::Encode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<JsonError> for ModelError {
    fn from(error: JsonError) -> Self {
        Self::Encode(error)
    }
}

/// Serializes readings as JSON into `buf`, returning the length.
///
/// # Errors
///
/// [`ModelError::Encode`] if the JSON does not fit (a full
/// sample with a 16-byte id and label is under 200 bytes).
pub fn encode_readings(readings: &Readings<'_>, buf: &mut [u8]) -> Result<usize, ModelError> {
    Ok(encode_json(readings, buf)?)
}

/// Serializes a command reply as JSON into `buf`, returning the length.
///
/// # Errors
///
/// [`ModelError::Encode`] if the JSON does not fit.
pub fn encode_reply(reply: &CommandReply<'_>, buf: &mut [u8]) -> Result<usize, ModelError> {
    Ok(encode_json(reply, buf)?)
}

/// The flat wire form of every command: the tag and the union of the
/// variants' fields.
#[derive(Serialize, Deserialize)]
struct WireCommand<'a> {
    cmd: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

/// Serializes a command as JSON into `buf` (the sending side: CLI,
/// simulator, tests), returning the length.
///
/// # Errors
///
/// [`ModelError::Encode`] if the JSON does not fit.
pub fn encode_command(command: &Command<'_>, buf: &mut [u8]) -> Result<usize, ModelError> {
    let mut wire = WireCommand {
        cmd: command.name(),
        on: None,
        secs: None,
        text: None,
    };
    match *command {
        Command::Led { on } => wire.on = Some(on),
        Command::Interval { secs } => wire.secs = Some(secs),
        Command::Label { text } => wire.text = Some(text),
        Command::Ping | Command::Reboot => {}
    }
    Ok(encode_json(&wire, buf)?)
}

/// Refuses input nested deeper than [`MAX_DEPTH`], before the recursive
/// parser sees it (a payload of ten thousand `[` must not exhaust a
/// device's stack).
fn check_depth(json: &[u8]) -> Result<(), ModelError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth = depth.saturating_add(1);
                if depth > MAX_DEPTH {
                    return Err(ModelError::TooDeep { limit: MAX_DEPTH });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn unescaped(field: &'static str, value: &str) -> Result<(), ModelError> {
    if value.contains('\\') {
        return Err(ModelError::EscapedString { field });
    }
    Ok(())
}

fn decode<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, ModelError> {
    check_depth(json)?;
    serde_json_core::from_slice(json)
        .map(|(value, _)| value)
        .map_err(ModelError::Malformed)
}

/// Decodes a command from a received payload; strings borrow from it.
///
/// # Errors
///
/// [`ModelError::Malformed`] for input that is not a JSON object with
/// a string `cmd` (or has a field of the wrong type);
/// [`ModelError::TooDeep`]; [`ModelError::UnknownCommand`];
/// [`ModelError::MissingField`]; [`ModelError::OutOfRange`] for an
/// interval outside [`INTERVAL_SECS`]; [`ModelError::TooLong`] for a
/// label over [`MAX_LABEL_LEN`]; [`ModelError::EscapedString`].
pub fn decode_command(json: &[u8]) -> Result<Command<'_>, ModelError> {
    let wire: WireCommand<'_> = decode(json)?;
    unescaped("cmd", wire.cmd)?;
    let missing = |cmd, field| ModelError::MissingField { cmd, field };
    match wire.cmd {
        "led" => Ok(Command::Led {
            on: wire.on.ok_or(missing("led", "on"))?,
        }),
        "interval" => {
            let secs = wire.secs.ok_or(missing("interval", "secs"))?;
            if !INTERVAL_SECS.contains(&secs) {
                return Err(ModelError::OutOfRange {
                    field: "secs",
                    min: *INTERVAL_SECS.start(),
                    max: *INTERVAL_SECS.end(),
                });
            }
            Ok(Command::Interval { secs })
        }
        "ping" => Ok(Command::Ping),
        "reboot" => Ok(Command::Reboot),
        "label" => {
            let text = wire.text.ok_or(missing("label", "text"))?;
            unescaped("text", text)?;
            if text.len() > MAX_LABEL_LEN {
                return Err(ModelError::TooLong {
                    field: "text",
                    max: MAX_LABEL_LEN,
                });
            }
            Ok(Command::Label { text })
        }
        _ => Err(ModelError::UnknownCommand),
    }
}

/// Decodes readings from a received payload (the subscriber side: the
/// demo's statistics, tests); strings borrow from it.
///
/// # Errors
///
/// [`ModelError::Malformed`], [`ModelError::TooDeep`],
/// [`ModelError::EscapedString`].
pub fn decode_readings(json: &[u8]) -> Result<Readings<'_>, ModelError> {
    let readings: Readings<'_> = decode(json)?;
    unescaped("device", readings.device_id)?;
    if let Some(status) = readings.status {
        unescaped("status", status)?;
    }
    Ok(readings)
}

/// Decodes a command reply from a received payload.
///
/// # Errors
///
/// As [`decode_readings`].
pub fn decode_reply(json: &[u8]) -> Result<CommandReply<'_>, ModelError> {
    let reply: CommandReply<'_> = decode(json)?;
    unescaped("cmd", reply.cmd)?;
    if let Some(error) = reply.error {
        unescaped("error", error)?;
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    extern crate alloc;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn sample() -> Readings<'static> {
        Readings {
            device_id: "sim-0001",
            seq: 42,
            sent_at_ms: 1_700_000_000_000,
            uptime_ms: 5000,
            temperature_c: Some(21.5),
            counter: 7,
            rssi_dbm: Some(-61),
            status: Some("ok"),
        }
    }

    #[test]
    fn readings_encode_to_the_documented_wire_form() {
        let mut buf = [0u8; 256];
        let n = encode_readings(&sample(), &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"device":"sim-0001","seq":42,"ts_ms":1700000000000,"uptime_ms":5000,"temp_c":21.5,"count":7,"rssi_dbm":-61,"status":"ok"}"#
        );
        assert_eq!(decode_readings(&buf[..n]).unwrap(), sample());
        let bare = Readings {
            temperature_c: None,
            rssi_dbm: None,
            status: None,
            ..sample()
        };
        let n = encode_readings(&bare, &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"device":"sim-0001","seq":42,"ts_ms":1700000000000,"uptime_ms":5000,"count":7}"#
        );
        assert_eq!(decode_readings(&buf[..n]).unwrap(), bare);
    }

    #[test]
    fn readings_into_short_buffer_report_capacity() {
        let mut buf = [0u8; 40];
        let err = encode_readings(&sample(), &mut buf).unwrap_err();
        assert_eq!(
            err,
            ModelError::Encode(JsonError::BufferTooSmall { capacity: 40 })
        );
        assert!(alloc::format!("{err}").contains("40-byte"));
    }

    #[test]
    fn non_finite_temperature_is_sent_as_null_and_reads_back_as_none() {
        let mut buf = [0u8; 256];
        let r = Readings {
            temperature_c: Some(f32::NAN),
            ..sample()
        };
        let n = encode_readings(&r, &mut buf).unwrap();
        let text = core::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.contains(r#""temp_c":null"#), "{text}");
        assert_eq!(decode_readings(&buf[..n]).unwrap().temperature_c, None);
    }

    #[test]
    fn commands_decode_from_their_wire_forms() {
        assert_eq!(
            decode_command(br#"{"cmd":"led","on":true}"#),
            Ok(Command::Led { on: true })
        );
        assert_eq!(
            decode_command(br#" { "secs" : 5 , "cmd" : "interval" } "#),
            Ok(Command::Interval { secs: 5 })
        );
        assert_eq!(decode_command(br#"{"cmd":"ping"}"#), Ok(Command::Ping));
        assert_eq!(decode_command(br#"{"cmd":"reboot"}"#), Ok(Command::Reboot));
        assert_eq!(
            decode_command(br#"{"cmd":"label","text":"kitchen"}"#),
            Ok(Command::Label { text: "kitchen" })
        );
        // Unknown fields are ignored, whatever their type.
        assert_eq!(
            decode_command(br#"{"id":7,"cmd":"ping","meta":{"a":[1,2]},"s":"x","n":null}"#),
            Ok(Command::Ping)
        );
    }

    #[test]
    fn bad_commands_are_typed_errors() {
        assert_eq!(
            decode_command(br#"{"cmd":"dance"}"#),
            Err(ModelError::UnknownCommand)
        );
        assert_eq!(
            decode_command(br#"{"cmd":"led"}"#),
            Err(ModelError::MissingField {
                cmd: "led",
                field: "on"
            })
        );
        assert_eq!(
            decode_command(br#"{"cmd":"interval","secs":0}"#),
            Err(ModelError::OutOfRange {
                field: "secs",
                min: 1,
                max: 86_400
            })
        );
        assert_eq!(
            decode_command(br#"{"cmd":"label","text":"a\"b"}"#),
            Err(ModelError::EscapedString { field: "text" })
        );
        assert!(matches!(
            decode_command(br#"{"cmd":"label","text":"0123456789012345678901234567890123"}"#),
            Err(ModelError::TooLong { field: "text", .. })
        ));
        assert!(matches!(
            decode_command(br#"{"cmd":"led","on":"yes"}"#),
            Err(ModelError::Malformed(_))
        ));
        assert!(matches!(decode_command(b""), Err(ModelError::Malformed(_))));
        assert!(matches!(
            decode_command(br#"{"on":true}"#),
            Err(ModelError::Malformed(_))
        ));
    }

    #[test]
    fn deeply_nested_input_is_refused_before_parsing() {
        let mut deep = Vec::new();
        deep.extend_from_slice(br#"{"cmd":"ping","x":"#);
        deep.extend(core::iter::repeat_n(b'[', 100_000));
        assert_eq!(
            decode_command(&deep),
            Err(ModelError::TooDeep { limit: MAX_DEPTH })
        );
        // Brackets inside strings do not count.
        assert_eq!(
            decode_command(br#"{"cmd":"ping","x":"[[[[[[[[[[[[\"[[["}"#),
            Ok(Command::Ping)
        );
    }

    #[test]
    fn replies_round_trip() {
        let mut buf = [0u8; 128];
        let reply = CommandReply {
            uptime_ms: Some(5000),
            ..CommandReply::ok(&Command::Ping)
        };
        let n = encode_reply(&reply, &mut buf).unwrap();
        assert_eq!(&buf[..n], br#"{"cmd":"ping","ok":true,"uptime_ms":5000}"#);
        assert_eq!(decode_reply(&buf[..n]), Ok(reply));
        let failed = CommandReply::failed("led", "no led on this board");
        let n = encode_reply(&failed, &mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            br#"{"cmd":"led","ok":false,"error":"no led on this board"}"#
        );
        assert_eq!(decode_reply(&buf[..n]), Ok(failed));
    }

    fn any_command() -> impl Strategy<Value = (u8, bool, u32, String)> {
        (0u8..5, any::<bool>(), INTERVAL_SECS, "[a-z0-9 _-]{0,32}")
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_into_decode_command_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_command(&bytes);
            let _ = decode_readings(&bytes);
            let _ = decode_reply(&bytes);
        }

        #[test]
        fn json_shaped_noise_into_decode_command_never_panics(text in r#"[{}\[\]":,0-9a-z .eE+\\-]{0,200}"#) {
            let _ = decode_command(text.as_bytes());
            let _ = decode_readings(text.as_bytes());
        }

        #[test]
        fn commands_round_trip((kind, on, secs, text) in any_command()) {
            let command = match kind {
                0 => Command::Led { on },
                1 => Command::Interval { secs },
                2 => Command::Ping,
                3 => Command::Reboot,
                _ => Command::Label { text: &text },
            };
            let mut buf = [0u8; 128];
            let n = encode_command(&command, &mut buf).unwrap();
            prop_assert_eq!(decode_command(&buf[..n]), Ok(command));
        }

        /// Readings → JSON (serde-json-core) → serde_json (std) gives the
        /// same values, escapes in strings included.
        #[test]
        fn readings_round_trip_through_serde_json(
            device_id in "\\PC{0,24}",
            seq in any::<u32>(),
            sent_at_ms in any::<u64>(),
            uptime_ms in any::<u64>(),
            temperature_c in proptest::option::of(-1.0e6f32..1.0e6f32),
            counter in any::<u32>(),
            rssi_dbm in proptest::option::of(any::<i16>()),
            status in proptest::option::of("\\PC{0,16}"),
        ) {
            let r = Readings {
                device_id: &device_id,
                seq,
                sent_at_ms,
                uptime_ms,
                temperature_c,
                counter,
                rssi_dbm,
                status: status.as_deref(),
            };
            let mut buf = [0u8; 512];
            let n = encode_readings(&r, &mut buf).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
            prop_assert_eq!(v["device"].as_str(), Some(device_id.as_str()));
            prop_assert_eq!(v["seq"].as_u64(), Some(u64::from(seq)));
            prop_assert_eq!(v["ts_ms"].as_u64(), Some(sent_at_ms));
            prop_assert_eq!(v["uptime_ms"].as_u64(), Some(uptime_ms));
            prop_assert_eq!(v["count"].as_u64(), Some(u64::from(counter)));
            prop_assert_eq!(v.get("rssi_dbm").and_then(|x| x.as_i64()), rssi_dbm.map(i64::from));
            prop_assert_eq!(v.get("status").and_then(|x| x.as_str()), status.as_deref());
            // serde_json agrees there is a number; its text, read as f32,
            // is the same f32 (serde_json would widen it to f64 first).
            prop_assert_eq!(v.get("temp_c").is_some_and(serde_json::Value::is_f64) || v.get("temp_c").is_some_and(serde_json::Value::is_i64) || v.get("temp_c").is_some_and(serde_json::Value::is_u64), temperature_c.is_some());
            let text = core::str::from_utf8(&buf[..n]).unwrap();
            let temp_text = text.split_once(r#""temp_c":"#).map(|(_, rest)| {
                rest.split([',', '}']).next().unwrap()
            });
            prop_assert_eq!(temp_text.map(|t| t.parse::<f32>().unwrap()), temperature_c);
            // And our own decoder reads it back whenever no escape was
            // needed.
            if !device_id.contains(['"', '\\']) && !device_id.chars().any(char::is_control)
                && !status.as_deref().unwrap_or("").contains(['"', '\\'])
                && !status.as_deref().unwrap_or("").chars().any(char::is_control)
            {
                prop_assert_eq!(decode_readings(&buf[..n]), Ok(r));
            }
        }
    }
}
