//! How `embermq sub` prints a received message (`--output`).
//!
//! - `raw`: the payload bytes as received, then a newline; with `-v` the
//!   topic and a space first (as mosquitto_sub -v).
//! - `json`: a JSON payload pretty-printed (other payloads as `raw`); with
//!   `-v` the topic on its own line first.
//! - `jsonl`: one JSON object per line:
//!   `{"topic":..,"qos":1,"retain":false,"payload":..}` where `payload` is
//!   the JSON value when the payload is JSON, else a string when it is
//!   UTF-8, else absent and `payload_base64` holds it. MQTT 5.0 request
//!   properties appear when present: `response_topic`, `correlation_data`
//!   (a string, or `correlation_data_base64`), `user_properties` (an array
//!   of `[name, value]`).
//!
//! Every message is flushed at once, so a pipe sees it immediately.

use std::io::{self, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::ValueEnum;
use serde_json::{Map, Value, json};

/// The `--output` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Payload bytes as received.
    Raw,
    /// JSON payloads pretty-printed.
    Json,
    /// One JSON object per message and line.
    Jsonl,
}

/// A received message, as the printer needs it.
#[derive(Debug, Clone)]
pub(crate) struct Received<'a> {
    /// Topic name.
    pub(crate) topic: &'a str,
    /// Payload.
    pub(crate) payload: &'a [u8],
    /// QoS as delivered (0-2).
    pub(crate) qos: u8,
    /// Retain flag.
    pub(crate) retain: bool,
    /// 5.0 Response Topic.
    pub(crate) response_topic: Option<&'a str>,
    /// 5.0 Correlation Data.
    pub(crate) correlation_data: Option<&'a [u8]>,
    /// 5.0 User Properties, in order.
    pub(crate) user_properties: Vec<(&'a str, &'a str)>,
}

/// Renders `msg` in `format` (with the topic when `verbose`), ending in a
/// newline.
pub(crate) fn render(format: OutputFormat, verbose: bool, msg: &Received<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.payload.len() + msg.topic.len() + 16);
    match format {
        OutputFormat::Raw => {
            if verbose {
                out.extend_from_slice(msg.topic.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(msg.payload);
        }
        OutputFormat::Json => {
            if verbose {
                out.extend_from_slice(msg.topic.as_bytes());
                out.push(b'\n');
            }
            match serde_json::from_slice::<Value>(msg.payload) {
                Ok(v) => out.extend_from_slice(
                    serde_json::to_string_pretty(&v)
                        .unwrap_or_default()
                        .as_bytes(),
                ),
                Err(_) => out.extend_from_slice(msg.payload),
            }
        }
        OutputFormat::Jsonl => {
            let mut obj = Map::new();
            obj.insert("topic".into(), json!(msg.topic));
            obj.insert("qos".into(), json!(msg.qos));
            obj.insert("retain".into(), json!(msg.retain));
            match serde_json::from_slice::<Value>(msg.payload) {
                Ok(v) => {
                    obj.insert("payload".into(), v);
                }
                Err(_) => match core::str::from_utf8(msg.payload) {
                    Ok(s) => {
                        obj.insert("payload".into(), json!(s));
                    }
                    Err(_) => {
                        obj.insert("payload_base64".into(), json!(BASE64.encode(msg.payload)));
                    }
                },
            }
            if let Some(topic) = msg.response_topic {
                obj.insert("response_topic".into(), json!(topic));
            }
            match msg.correlation_data.map(core::str::from_utf8) {
                Some(Ok(text)) => {
                    obj.insert("correlation_data".into(), json!(text));
                }
                Some(Err(_)) => {
                    let bytes = msg.correlation_data.unwrap_or_default();
                    obj.insert(
                        "correlation_data_base64".into(),
                        json!(BASE64.encode(bytes)),
                    );
                }
                None => {}
            }
            if !msg.user_properties.is_empty() {
                obj.insert("user_properties".into(), json!(msg.user_properties));
            }
            out.extend_from_slice(Value::Object(obj).to_string().as_bytes());
        }
    }
    out.push(b'\n');
    out
}

/// Writes and flushes one rendered message on stdout.
pub(crate) fn print(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: &[u8]) -> Received<'_> {
        Received {
            topic: "a/b",
            payload,
            qos: 1,
            retain: true,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }
    }

    #[test]
    fn raw_with_verbose_prints_topic_space_payload() {
        assert_eq!(render(OutputFormat::Raw, true, &msg(b"hi")), b"a/b hi\n");
        assert_eq!(render(OutputFormat::Raw, false, &msg(b"hi")), b"hi\n");
    }

    #[test]
    fn json_pretty_prints_json_and_passes_other_payloads() {
        let out = render(OutputFormat::Json, false, &msg(br#"{"t":1}"#));
        assert_eq!(out, b"{\n  \"t\": 1\n}\n");
        assert_eq!(render(OutputFormat::Json, false, &msg(b"x y")), b"x y\n");
    }

    #[test]
    fn jsonl_embeds_json_strings_and_base64() {
        let line = |p: &[u8]| {
            let out = render(OutputFormat::Jsonl, false, &msg(p));
            serde_json::from_slice::<Value>(&out).unwrap()
        };
        assert_eq!(
            line(br#"{"t":1}"#),
            json!({"topic":"a/b","qos":1,"retain":true,"payload":{"t":1}})
        );
        assert_eq!(line(b"plain")["payload"], json!("plain"));
        assert_eq!(line(&[0xff, 0, 1])["payload_base64"], json!("/wAB"));
        let mut request = msg(b"{}");
        request.response_topic = Some("r/1");
        request.correlation_data = Some(&[0xff]);
        request.user_properties = vec![("k", "v")];
        let out = render(OutputFormat::Jsonl, false, &request);
        let v = serde_json::from_slice::<Value>(&out).unwrap();
        assert_eq!(v["response_topic"], json!("r/1"));
        assert_eq!(v["correlation_data_base64"], json!("/w=="));
        assert_eq!(v["user_properties"], json!([["k", "v"]]));
    }
}
