//! Commands: what they change on the device ([`Controls::apply`]), what a
//! refused one is answered with ([`refusal`]) and where the answer goes
//! ([`reply_route`]).
//!
//! The wire forms are [`crate::model`]'s (`{"cmd":"led","on":true}`,
//! `{"cmd":"interval","secs":5}`, `{"cmd":"ping"}`, `{"cmd":"label",...}`).
//! A reply goes to the command's MQTT 5.0 Response Topic with its
//! Correlation Data copied (5.0 §3.3.2.3.5, §3.3.2.3.6, §4.10), else to the
//! device's `replies` topic (3.1.1 has no properties). No I/O here; the
//! driver loop in `device.rs` decodes, applies and publishes.

use core::fmt::Write as _;

use crate::model::{Command, CommandReply, MAX_LABEL_LEN, ModelError};
use embermq::session::Message;
use embermq::time::Duration;

use crate::board::Board;
use crate::settings::Topics;

/// The longest refusal text a reply carries (longer ones are cut).
pub const REFUSAL_MAX_LEN: usize = 96;

/// The device state commands act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controls {
    interval_secs: u32,
    label: heapless::String<MAX_LABEL_LEN>,
    led: bool,
}

impl Controls {
    /// LED off, no label, readings every `interval_secs`.
    pub fn new(interval_secs: u32) -> Self {
        Self {
            interval_secs,
            label: heapless::String::new(),
            led: false,
        }
    }

    /// Seconds between readings.
    pub fn interval_secs(&self) -> u32 {
        self.interval_secs
    }

    /// The status label set by `{"cmd":"label"}`, if any.
    pub fn label(&self) -> Option<&str> {
        (!self.label.is_empty()).then_some(self.label.as_str())
    }

    /// Whether the last LED command switched it on.
    pub fn led(&self) -> bool {
        self.led
    }

    /// Carries out `command` (the LED through `board`) and returns the
    /// reply; `uptime` answers a ping.
    pub fn apply<B: Board + ?Sized>(
        &mut self,
        command: &Command<'_>,
        board: &mut B,
        uptime: Duration,
    ) -> CommandReply<'static> {
        match *command {
            Command::Led { on } => {
                board.set_led(on);
                self.led = on;
            }
            // The decoder already checked INTERVAL_SECS.
            Command::Interval { secs } => self.interval_secs = secs,
            Command::Ping => {
                return CommandReply {
                    uptime_ms: Some(uptime.as_millis()),
                    ..CommandReply::ok(command)
                };
            }
            Command::Label { text } => {
                self.label.clear();
                // The decoder bounded it to MAX_LABEL_LEN bytes.
                if self.label.push_str(text).is_err() {
                    return CommandReply::failed("label", "label too long");
                }
            }
            Command::Reboot => {
                return CommandReply::failed("reboot", "not supported on this board");
            }
        }
        CommandReply::ok(command)
    }
}

/// The reply to a command payload that did not decode: the command's name
/// where the error tells it (else `"invalid"`) and the error's text,
/// written into `text`.
pub fn refusal<'t>(
    error: &ModelError,
    text: &'t mut heapless::String<REFUSAL_MAX_LEN>,
) -> CommandReply<'t> {
    let cmd = match error {
        ModelError::MissingField { cmd, .. } => cmd,
        ModelError::OutOfRange { field: "secs", .. } => "interval",
        ModelError::TooLong { field: "text", .. } => "label",
        ModelError::UnknownCommand => "unknown",
        _ => "invalid",
    };
    text.clear();
    // A full buffer cuts the text; the reply still goes out.
    let _ = write!(text, "{error}");
    CommandReply::failed(cmd, text.as_str())
}

/// Where the reply to `message` goes: its Response Topic and Correlation
/// Data (5.0 §4.10), else the device's replies topic without correlation.
pub fn reply_route<'m>(message: &Message<'m>, topics: &'m Topics) -> (&'m str, Option<&'m [u8]>) {
    match message.properties.response_topic() {
        Some(topic) => (topic, message.properties.correlation_data()),
        None => (topics.replies(), None),
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use crate::model::decode_command;
    use alloc::vec::Vec;
    use embermq::codec::{Properties, PropertyFields, QoS};

    #[derive(Default)]
    struct Leds(Vec<bool>);
    impl Board for Leds {
        fn set_led(&mut self, on: bool) {
            self.0.push(on);
        }
    }

    #[test]
    fn led_command_switches_the_board_led_and_replies_ok() {
        let mut controls = Controls::new(10);
        let mut board = Leds::default();
        let on = decode_command(br#"{"cmd":"led","on":true}"#).unwrap();
        let reply = controls.apply(&on, &mut board, Duration::ZERO);
        assert_eq!((reply.cmd, reply.ok), ("led", true));
        let off = decode_command(br#"{"cmd":"led","on":false}"#).unwrap();
        controls.apply(&off, &mut board, Duration::ZERO);
        assert_eq!(board.0, [true, false]);
        assert!(!controls.led());
    }

    #[test]
    fn interval_and_label_commands_change_the_controls() {
        let mut controls = Controls::new(10);
        let mut board = Leds::default();
        let interval = decode_command(br#"{"cmd":"interval","secs":3}"#).unwrap();
        assert!(controls.apply(&interval, &mut board, Duration::ZERO).ok);
        assert_eq!(controls.interval_secs(), 3);
        assert_eq!(controls.label(), None);
        let label = decode_command(br#"{"cmd":"label","text":"kitchen"}"#).unwrap();
        assert!(controls.apply(&label, &mut board, Duration::ZERO).ok);
        assert_eq!(controls.label(), Some("kitchen"));
        assert!(board.0.is_empty());
    }

    #[test]
    fn ping_is_answered_with_the_uptime_and_reboot_refused() {
        let mut controls = Controls::new(10);
        let mut board = Leds::default();
        let reply = controls.apply(&Command::Ping, &mut board, Duration::from_millis(1234));
        assert_eq!(reply.uptime_ms, Some(1234));
        let reply = controls.apply(&Command::Reboot, &mut board, Duration::ZERO);
        assert!(!reply.ok);
        assert_eq!(reply.cmd, "reboot");
    }

    #[test]
    fn refusal_names_the_command_and_the_reason() {
        let mut text = heapless::String::new();
        let e = decode_command(br#"{"cmd":"interval","secs":0}"#).unwrap_err();
        let reply = refusal(&e, &mut text);
        assert_eq!((reply.cmd, reply.ok), ("interval", false));
        assert!(reply.error.unwrap().contains("secs"), "{reply:?}");
        let e = decode_command(br#"{"cmd":"dance"}"#).unwrap_err();
        assert_eq!(refusal(&e, &mut text).cmd, "unknown");
        let e = decode_command(b"not json").unwrap_err();
        assert_eq!(refusal(&e, &mut text).cmd, "invalid");
    }

    fn message<'a>(properties: Properties<'a>) -> Message<'a> {
        Message {
            topic: "devices/d/commands",
            payload: b"{}",
            qos: QoS::AtLeastOnce,
            retain: false,
            topic_alias: None,
            dup: false,
            properties,
        }
    }

    #[test]
    fn mqtt5_4_10_reply_goes_to_the_response_topic_with_the_correlation_data() {
        let topics = Topics::for_device("d").unwrap();
        let fields = PropertyFields {
            response_topic: Some("apps/1/answers"),
            correlation_data: Some(b"req-9"),
            ..PropertyFields::default()
        };
        let m = message(Properties::from_fields(&fields));
        assert_eq!(
            reply_route(&m, &topics),
            ("apps/1/answers", Some(&b"req-9"[..]))
        );
    }

    #[test]
    fn without_a_response_topic_the_reply_goes_to_the_replies_topic() {
        let topics = Topics::for_device("d").unwrap();
        // Correlation Data without a Response Topic has nowhere to go.
        let fields = PropertyFields {
            correlation_data: Some(b"x"),
            ..PropertyFields::default()
        };
        let m = message(Properties::from_fields(&fields));
        assert_eq!(reply_route(&m, &topics), ("devices/d/replies", None));
        assert_eq!(
            reply_route(&message(Properties::NONE), &topics),
            ("devices/d/replies", None)
        );
    }
}
