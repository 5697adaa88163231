//! The verdict of a run, in words: why a report is not clean, where the
//! trouble was, and what usually causes it. One sentence per finding, for
//! the text report, the JSON report (`reasons`) and the HTML report.
//!
//! - errors, by kind, with the first one's message (who saw it, when);
//! - loss at QoS 1 and 2, split into what the broker never acknowledged
//!   (the devices' side) and what it acknowledged but never delivered to
//!   the checker (the broker's side), with the broker setting that usually
//!   causes the second;
//! - duplicates at QoS 2, messages the checker could not attribute, and
//!   readings the outbox refused.
//!
//! Not here: the figures themselves (`super::report`).

use super::report::Report;

/// What an error kind means, for kinds counted without a message.
pub(crate) fn kind_meaning(kind: &str) -> &'static str {
    match kind {
        "undelivered_at_end" => {
            "readings still in the outboxes when the drain time ran out (raise --drain)"
        }
        "state_not_queued" => "the retained state message did not fit the outbox",
        "reply_not_queued" => "a command reply did not fit the outbox",
        "command_not_queued" => "a command did not fit the checker's outbox",
        "subscribe_refused" => "the broker refused a device's command subscription",
        "bad_command" => "a device received a command it could not decode",
        "reply_encode" => "a device's reply did not fit its buffer",
        "checker_link_lost" => "the checker's link ended during the run",
        "checker_failed" => "the checker's client ended with an error",
        "client_ended" => "a device's client ended with an error",
        "link_setup" => "a device could not build its link",
        _ => "see docs/simulator.md",
    }
}

/// What to look at for an error kind.
fn kind_hint(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "connect_failed_tls" => {
            "check --cafile (the CA that signed the broker's certificate) and that the \
             host in --broker is a name on that certificate"
        }
        "connect_failed_tcp" => {
            "is the broker listening there, and does it accept this many connections \
             (mosquitto: max_connections; the host: ulimit -n)?"
        }
        "connect_failed_websocket" => {
            "check the path in --broker (/mqtt for most brokers) and any proxy in between"
        }
        "connect_timeout" | "connack_timeout" => {
            "the broker (or this host) is overloaded: lower --ramp or the number of devices"
        }
        "connect_refused" => "the broker refused the CONNECT: its log says why",
        "link_lost" | "server_disconnect" => {
            "the broker closed established links: its log says why (a limit such as \
             max_connections, memory, or a restart)"
        }
        "keepalive_timeout" | "write_stalled" => {
            "the broker or this host stalled: lower the load or run more shards"
        }
        _ => return None,
    })
}

/// Why `r` is not clean; empty when it is.
pub(crate) fn reasons(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, count) in &r.errors {
        let mut line = format!("{count} × {kind}: ");
        match r.error_first.get(kind) {
            Some(first) => line.push_str(&format!("first {first}")),
            None => line.push_str(kind_meaning(kind)),
        }
        if let Some(hint) = kind_hint(kind) {
            line.push_str(&format!(" ({hint})"));
        }
        out.push(line);
    }
    if r.not_queued > 0 {
        out.push(format!(
            "{} readings not queued: the device's outbox was full (the broker acknowledges \
             slower than the devices publish; raise --outbox or --interval)",
            r.not_queued
        ));
    }
    if let Some(k) = &r.checker {
        let lost = k.lost.qos1 + k.lost.qos2;
        if lost > 0 {
            let mut line = format!(
                "lost {lost} readings at QoS 1/2 ({} / {}), {} at QoS 0; of all {} lost, \
                 {} were never acknowledged by the broker and {} were acknowledged and \
                 never delivered to the checker",
                k.lost.qos1,
                k.lost.qos2,
                k.lost.qos0,
                k.lost.total(),
                k.lost_never_acknowledged,
                k.lost_acknowledged
            );
            if k.lost_acknowledged > 0 {
                line.push_str(
                    ". Acknowledged and never delivered is the broker's side: a broker drops \
                     messages for a subscriber whose queue is full (mosquitto keeps \
                     max_queued_messages per client, 1000 by default: raise it in \
                     mosquitto.conf, or spread the checker over more connections with \
                     --checkers N)",
                );
            }
            if k.lost_never_acknowledged > 0 {
                line.push_str(
                    ". Never acknowledged is the devices' side: links lost or the outbox \
                     not drained by the end (see the errors; raise --drain)",
                );
            }
            if let Some((id, published, unique, _)) = k.worst_devices.first() {
                line.push_str(&format!(
                    ". First device with loss: {id} (published {published}, arrived {unique}; \
                     {} devices in all)",
                    k.devices_with_loss
                ));
            }
            out.push(line);
        }
        if k.duplicates.qos2 > 0 {
            out.push(format!(
                "{} duplicates at QoS 2 (exactly once broken: the broker delivered a \
                 message twice, or a device resent one it had completed)",
                k.duplicates.qos2
            ));
        }
        if k.unattributed > 0 {
            out.push(format!(
                "{} messages under the fleet's topics named no device of this run or had \
                 no seq/ts_us (another publisher on the same --topic-prefix?)",
                k.unattributed
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::report::{CheckerReport, PerQos};
    use super::*;

    #[test]
    fn a_clean_report_has_no_reasons() {
        let r = Report {
            checker: Some(CheckerReport::default()),
            ..Report::default()
        };
        assert!(reasons(&r).is_empty());
    }

    #[test]
    fn broker_side_loss_names_max_queued_messages_and_errors_their_first_message() {
        let mut r = Report {
            checker: Some(CheckerReport {
                lost: PerQos {
                    qos0: 0,
                    qos1: 5,
                    qos2: 0,
                },
                lost_acknowledged: 5,
                ..CheckerReport::default()
            }),
            ..Report::default()
        };
        r.errors.insert("connect_failed_tls".into(), 3);
        r.error_first.insert(
            "connect_failed_tls".into(),
            "dev-00001 at 0.1 s: TLS: invalid server certificate: x".into(),
        );
        r.judge_now();
        assert!(!r.clean);
        let text = r.reasons.join("\n");
        assert!(text.contains("max_queued_messages"), "{text}");
        assert!(text.contains("5 were acknowledged"), "{text}");
        assert!(
            text.contains("3 × connect_failed_tls: first dev-00001 at 0.1 s: TLS:"),
            "{text}"
        );
        assert!(text.contains("--cafile"), "{text}");
    }
}
