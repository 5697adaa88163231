//! The async client (`embermq::client`) against a fault injector: a
//! scripted broker on a tokio `TcpListener` (127.0.0.1:0) that reads the
//! client's CONNECT and answers with bytes built by embermq's codec or
//! written out literally. It exists because real brokers (mosquitto in
//! `client_mosquitto.rs`) never do these things: refuse with every CONNACK
//! code on demand, acknowledge packet identifiers that were never used,
//! send packets larger than the client allows, PUBLISH to a wildcard
//! topic, send malformed packets, or accept TCP and never answer CONNECT.
//!
//! Every case must end in a typed error value or event from the client,
//! never a panic or a hang: each test runs under an overall timeout of a
//! few seconds, and where the client should close the link the injector's
//! own task ends (it saw EOF) within that timeout too. The injector records
//! what the client sent after CONNECT, so the tests assert which
//! DISCONNECT (if any) the client sends.

extern crate alloc;

mod support;
use support::*;

use core::time::Duration;

use embermq::client::{Backoff, ClientConfig, ClientError, ClientState, Connection, Event};
use embermq::clock::TokioClock;
use embermq::codec::{
    Connack, DecodeOptions, Decoded, Packet, PacketType, Properties, ProtocolVersion, PubAck,
    Publish, QoS, ReasonCode, Suback, Subscription, SubscriptionOptions, Unsuback,
};
use embermq::session::{self, CloseReason, OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq::transport::{TokioTcpConnector, TokioTcpError};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

/// An event copied out of the driver.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Message(String),
    Connected,
    Disconnected(CloseReason),
    Reconnecting(u32),
    Refused {
        reason: ReasonCode,
        falling_back_to_v311: bool,
    },
    UnexpectedAck {
        packet_type: PacketType,
        packet_id: u16,
    },
    Other,
}

/// What the injector received from the client after its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Got {
    Disconnect(ReasonCode),
    Other(PacketType),
}

fn state(protocol: ProtocolChoice, max_incoming: u32) -> &'static State {
    let id: &'static str = Box::leak(format!("faults-{}", std::process::id()).into_boxed_str());
    let mut config = SessionConfig::new(id);
    config.protocol = protocol;
    config.max_incoming_packet_size = max_incoming;
    config.connect_timeout = embermq::time::Duration::from_millis(500);
    Box::leak(Box::new(ClientState::new(config, leak(4096))))
}

/// No retry: `run` returns the first link's failure.
fn give_up_at_once() -> ClientConfig {
    ClientConfig {
        backoff: Backoff {
            base: embermq::time::Duration::from_millis(10),
            cap: embermq::time::Duration::from_millis(10),
            max_attempts: Some(0),
        },
        connect_timeout: embermq::time::Duration::from_secs(2),
        close_timeout: embermq::time::Duration::from_secs(1),
    }
}

/// Spawns the driver over TCP to `port` with an rx buffer of `rx_len`;
/// events go to the returned channel.
macro_rules! spawn_driver {
    ($state:expr, $port:expr) => {
        spawn_driver!($state, $port, 4096)
    };
    ($state:expr, $port:expr, $rx_len:expr) => {{
        let (tx, rx) = unbounded_channel();
        let state: &'static State = $state;
        let driver = tokio::spawn(
            Connection::new(
                state,
                TokioTcpConnector::new("127.0.0.1", $port),
                TokioClock::new(),
                StdRng::seed_from_u64(7),
                leak($rx_len),
                leak(4096),
                give_up_at_once(),
            )
            .run(forward(tx)),
        );
        (driver, rx)
    }};
}

fn forward(tx: UnboundedSender<Seen>) -> impl FnMut(Event<'_>) + Send {
    move |event: Event<'_>| {
        let seen = match event {
            Event::Message(m) => Seen::Message(m.topic.to_owned()),
            Event::Connected { .. } => Seen::Connected,
            Event::Disconnected { reason } => Seen::Disconnected(reason),
            Event::Reconnecting { attempt, .. } => Seen::Reconnecting(attempt),
            Event::Session(session::Event::ConnectRefused {
                reason,
                falling_back_to_v311,
            }) => Seen::Refused {
                reason,
                falling_back_to_v311,
            },
            Event::Session(session::Event::UnexpectedAck {
                packet_type,
                packet_id,
            }) => Seen::UnexpectedAck {
                packet_type,
                packet_id,
            },
            _ => Seen::Other,
        };
        let _ = tx.send(seen);
    }
}

/// All events left once the driver has ended.
fn drain(events: &mut UnboundedReceiver<Seen>) -> Vec<Seen> {
    let mut all = Vec::new();
    while let Ok(seen) = events.try_recv() {
        all.push(seen);
    }
    all
}

fn encode(packet: &Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let n = packet.encode(&mut buf, version).unwrap();
    buf.truncate(n);
    buf
}

fn connack(code: ReasonCode, version: ProtocolVersion) -> Vec<u8> {
    encode(
        &Packet::Connack(Connack {
            session_present: false,
            reason_code: code,
            properties: Properties::NONE,
        }),
        version,
    )
}

fn accepted(version: ProtocolVersion) -> Vec<u8> {
    connack(ReasonCode::SUCCESS, version)
}

/// The fault injector: accepts one client, reads its CONNECT, writes
/// `script`, then answers like a minimal broker (PUBACK/PUBREC/PUBCOMP,
/// SUBACK granting the requested QoS, UNSUBACK, PINGRESP) and records
/// everything it receives until the client closes the link.
async fn fault_broker(version: ProtocolVersion, script: Vec<u8>) -> (u16, JoinHandle<Vec<Got>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut connected = false;
        let mut chunk = [0u8; 1024];
        loop {
            // Every complete packet in the buffer.
            loop {
                let opts = DecodeOptions::new(version);
                let (reply, len) = match Packet::decode(&buf, &opts).unwrap() {
                    Decoded::Incomplete { .. } => break,
                    Decoded::Complete { value, len } => {
                        let reply = if connected {
                            got.push(match value {
                                Packet::Disconnect(d) => Got::Disconnect(d.reason_code),
                                other => Got::Other(other.packet_type()),
                            });
                            answer(&value, version)
                        } else {
                            assert!(matches!(value, Packet::Connect(_)), "CONNECT first");
                            connected = true;
                            script.clone()
                        };
                        (reply, len)
                    }
                };
                buf.drain(..len);
                if !reply.is_empty() && s.write_all(&reply).await.is_err() {
                    return got;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    (port, task)
}

/// What a minimal broker answers to `packet`.
fn answer(packet: &Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    match packet {
        Packet::Publish(p) => match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => encode(&Packet::Puback(PubAck::new(id)), version),
            (QoS::ExactlyOnce, Some(id)) => encode(&Packet::Pubrec(PubAck::new(id)), version),
            _ => Vec::new(),
        },
        Packet::Pubrel(a) => encode(&Packet::Pubcomp(PubAck::new(a.packet_id)), version),
        Packet::Subscribe(s) => {
            let codes: Vec<ReasonCode> = s
                .subscriptions
                .iter()
                .map(|s| ReasonCode(s.options.qos as u8))
                .collect();
            encode(&Packet::Suback(Suback::new(s.packet_id, &codes)), version)
        }
        Packet::Unsubscribe(u) => {
            let codes: Vec<ReasonCode> = match version {
                ProtocolVersion::V5 => u.filters.iter().map(|_| ReasonCode::SUCCESS).collect(),
                _ => Vec::new(),
            };
            encode(
                &Packet::Unsuback(Unsuback::new(u.packet_id, &codes)),
                version,
            )
        }
        Packet::Pingreq => encode(&Packet::Pingresp, version),
        _ => Vec::new(),
    }
}

/// Runs the client against an injector sending `script` after CONNECT;
/// returns `run`'s error, the events, and what the client sent after
/// CONNECT. Awaiting the injector proves the client closed the link.
async fn run_against(
    protocol: ProtocolChoice,
    version: ProtocolVersion,
    script: Vec<u8>,
    max_incoming: u32,
    rx_len: usize,
) -> (ClientError<TokioTcpError>, Vec<Seen>, Vec<Got>) {
    let (port, broker) = fault_broker(version, script).await;
    let st = state(protocol, max_incoming);
    let (driver, mut events) = spawn_driver!(st, port, rx_len);
    within(5, async {
        let err = driver.await.unwrap().unwrap_err();
        let got = broker.await.unwrap();
        (err, drain(&mut events), got)
    })
    .await
}

/// What a refused CONNECT must come to: `run` ends with a link error
/// naming `reason`, the events are the refusal (with `falling_back_to_v311`)
/// then the close, and the client sent nothing after CONNECT (it just
/// closes). `what` names the case in failure messages.
fn assert_refused(
    (err, seen, got): (ClientError<TokioTcpError>, Vec<Seen>, Vec<Got>),
    reason: ReasonCode,
    falling_back_to_v311: bool,
    what: &str,
) {
    assert!(
        matches!(err, ClientError::Link(CloseReason::ConnectRefused(r)) if r == reason),
        "{what}: {err:?}"
    );
    assert_eq!(
        seen,
        [
            Seen::Refused {
                reason,
                falling_back_to_v311
            },
            Seen::Disconnected(CloseReason::ConnectRefused(reason)),
        ],
        "{what}"
    );
    assert_eq!(got, [], "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_3_connack_refusal_codes_surface() {
    for code in 1u8..=5 {
        let reason = ReasonCode::from_v311_connack(code).unwrap();
        // Literal bytes: a 3.1.1 CONNACK with return code `code`.
        let outcome = run_against(
            ProtocolChoice::V311,
            ProtocolVersion::V311,
            vec![0x20, 0x02, 0x00, code],
            4096,
            4096,
        )
        .await;
        assert_refused(outcome, reason, false, &format!("return code {code}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_3_2_2_2_connack_refusal_reason_codes_surface() {
    // 0x84 included: with `ProtocolChoice::V5` there is no fallback.
    for code in [
        0x80, 0x84, 0x85, 0x86, 0x87, 0x88, 0x8A, 0x8C, 0x95, 0x9C, 0x9F,
    ] {
        let reason = ReasonCode(code);
        let outcome = run_against(
            ProtocolChoice::V5,
            ProtocolVersion::V5,
            connack(reason, ProtocolVersion::V5),
            4096,
            4096,
        )
        .await;
        assert_refused(outcome, reason, false, &format!("reason code {code:#x}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_3_2_2_2_unsupported_protocol_version_with_fallback_reports_the_fallback() {
    let reason = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
    let outcome = run_against(
        ProtocolChoice::V5WithFallback,
        ProtocolVersion::V5,
        connack(reason, ProtocolVersion::V5),
        4096,
        4096,
    )
    .await;
    assert_refused(outcome, reason, true, "5.0 CONNACK 0x84 with fallback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_3_reserved_return_code_6_is_a_malformed_connack() {
    let (err, seen, got) = run_against(
        ProtocolChoice::V311,
        ProtocolVersion::V311,
        vec![0x20, 0x02, 0x00, 0x06],
        4096,
        4096,
    )
    .await;
    let reason = CloseReason::ProtocolError(ReasonCode::MALFORMED_PACKET);
    assert!(
        matches!(err, ClientError::Link(r) if r == reason),
        "{err:?}"
    );
    assert_eq!(seen, [Seen::Disconnected(reason)]);
    assert_eq!(got, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_for_unknown_packet_ids_are_reported_and_the_link_stays_usable() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let protocol = match version {
            ProtocolVersion::V5 => ProtocolChoice::V5,
            _ => ProtocolChoice::V311,
        };
        let five = version == ProtocolVersion::V5;
        let codes = [ReasonCode(1)];
        let unsuback_codes = if five {
            &[ReasonCode::SUCCESS][..]
        } else {
            &[][..]
        };
        let mut script = accepted(version);
        script.extend(encode(&Packet::Puback(PubAck::new(0x7001)), version));
        script.extend(encode(&Packet::Pubcomp(PubAck::new(0x7002)), version));
        script.extend(encode(
            &Packet::Suback(Suback::new(0x7003, &codes)),
            version,
        ));
        script.extend(encode(
            &Packet::Unsuback(Unsuback::new(0x7004, unsuback_codes)),
            version,
        ));
        let (port, broker) = fault_broker(version, script).await;
        let st = state(protocol, 4096);
        let (driver, mut events) = spawn_driver!(st, port);
        within(5, async {
            let mut unexpected = Vec::new();
            while unexpected.len() < 4 {
                match events.recv().await.expect("driver ended") {
                    Seen::UnexpectedAck {
                        packet_type,
                        packet_id,
                    } => unexpected.push((packet_type, packet_id)),
                    Seen::Connected | Seen::Other => {}
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(
                unexpected,
                [
                    (PacketType::Puback, 0x7001),
                    (PacketType::Pubcomp, 0x7002),
                    (PacketType::Suback, 0x7003),
                    (PacketType::Unsuback, 0x7004),
                ]
            );
            // The link still works: a QoS 1 and a QoS 2 publish complete,
            // a subscribe gets its SUBACK.
            let client = st.client();
            for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let token = client
                    .publish(&OutgoingMessage::new("still/up", b"yes", qos))
                    .await
                    .unwrap();
                client.completion(token).await.unwrap();
            }
            let results = client
                .subscribe(&[Subscription {
                    filter: "x/#",
                    options: SubscriptionOptions::qos(QoS::AtLeastOnce),
                }])
                .await
                .unwrap();
            assert_eq!(results.codes(), &[ReasonCode(1)]);
            client.stop();
            driver.await.unwrap().unwrap();
            let got = broker.await.unwrap();
            assert_eq!(got.last(), Some(&Got::Disconnect(ReasonCode::SUCCESS)));
        })
        .await;
    }
}

/// A QoS 0 PUBLISH to `topic` with `payload`.
fn publish(topic: &str, payload: &[u8], version: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0u8; payload.len() + topic.len() + 64];
    let n = Packet::Publish(Publish::new(topic, payload))
        .encode(&mut buf, version)
        .unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_24_packet_over_maximum_packet_size_is_a_protocol_error() {
    // The session allows 128 bytes; the receive buffer would hold 4096.
    let mut script = accepted(ProtocolVersion::V5);
    script.extend(publish("big", &[7u8; 1000], ProtocolVersion::V5));
    let (err, seen, got) =
        run_against(ProtocolChoice::V5, ProtocolVersion::V5, script, 128, 4096).await;
    let reason = CloseReason::ProtocolError(ReasonCode::PACKET_TOO_LARGE);
    assert!(
        matches!(err, ClientError::Link(r) if r == reason),
        "{err:?}"
    );
    assert_eq!(seen, [Seen::Connected, Seen::Disconnected(reason)]);
    assert_eq!(got, [Got::Disconnect(ReasonCode::PACKET_TOO_LARGE)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_3_1_2_11_4_a_packet_over_the_receive_buffer_is_a_protocol_error_not_a_fatal_one() {
    // The configuration would accept 64 KiB; the lent receive buffer holds
    // 256, so the CONNECT announced 256 and a larger packet breaks the
    // protocol: DISCONNECT 0x95 (which keeps the will; 0x00 would discard
    // it), and the link ends like any protocol error, so the driver
    // reconnects (here it gives up at once, so `run` returns the link's
    // failure instead of the old fatal `RxBufferTooSmall`). The 3.1.1 case
    // (skip and stay up) runs against mosquitto in client_oversized.rs.
    let mut script = accepted(ProtocolVersion::V5);
    script.extend(publish("big", &[7u8; 1000], ProtocolVersion::V5));
    let (err, seen, got) =
        run_against(ProtocolChoice::V5, ProtocolVersion::V5, script, 65_536, 256).await;
    let reason = CloseReason::ProtocolError(ReasonCode::PACKET_TOO_LARGE);
    assert!(
        matches!(err, ClientError::Link(r) if r == reason),
        "{err:?}"
    );
    assert_eq!(seen, [Seen::Connected, Seen::Disconnected(reason)]);
    assert_eq!(got, [Got::Disconnect(ReasonCode::PACKET_TOO_LARGE)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_2_2_wildcard_publish_from_broker_is_a_protocol_error() {
    for (version, protocol) in [
        (ProtocolVersion::V311, ProtocolChoice::V311),
        (ProtocolVersion::V5, ProtocolChoice::V5),
    ] {
        for topic in ["a/+", "a/#"] {
            // The codec's encoder refuses a wildcard topic: literal bytes.
            let mut body = vec![0x00, topic.len() as u8];
            body.extend_from_slice(topic.as_bytes());
            if version == ProtocolVersion::V5 {
                body.push(0x00); // no properties
            }
            body.extend_from_slice(b"x");
            let mut script = accepted(version);
            script.extend([0x30, body.len() as u8]);
            script.extend(body);
            let (err, seen, got) = run_against(protocol, version, script, 4096, 4096).await;
            let reason = CloseReason::ProtocolError(ReasonCode::TOPIC_NAME_INVALID);
            assert!(
                matches!(err, ClientError::Link(r) if r == reason),
                "{topic} {version:?}: {err:?}"
            );
            assert_eq!(seen, [Seen::Connected, Seen::Disconnected(reason)]);
            let sent: &[Got] = if version == ProtocolVersion::V5 {
                &[Got::Disconnect(ReasonCode::TOPIC_NAME_INVALID)]
            } else {
                &[]
            };
            assert_eq!(got, sent, "{topic} {version:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_13_malformed_packets_close_the_link_with_a_typed_error() {
    #[rustfmt::skip]
    let cases: [(&str, &[u8]); 4] = [
        // 3.1.1 §2.2.1, 5.0 §2.1.2: packet type 0 is reserved.
        ("reserved type 0", &[0x00, 0x00]),
        // §2.2.3 / §1.5.5: a remaining length longer than four bytes.
        ("remaining length 5 × 0xFF", &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        // §1.5.3: a topic that is not UTF-8 (0xC3 0x28).
        ("invalid UTF-8 topic", &[0x30, 0x06, 0x00, 0x02, 0xC3, 0x28, 0x00, b'x']),
        // §3.3.1.2: QoS 3 (both QoS bits set).
        ("QoS 3", &[0x36, 0x08, 0x00, 0x01, b't', 0x00, 0x01, 0x00, b'x', b'y']),
    ];
    for (version, protocol) in [
        (ProtocolVersion::V311, ProtocolChoice::V311),
        (ProtocolVersion::V5, ProtocolChoice::V5),
    ] {
        for (what, bytes) in cases {
            let mut script = accepted(version);
            script.extend_from_slice(bytes);
            let (err, seen, got) = run_against(protocol, version, script, 4096, 4096).await;
            let reason = CloseReason::ProtocolError(ReasonCode::MALFORMED_PACKET);
            assert!(
                matches!(err, ClientError::Link(r) if r == reason),
                "{what} {version:?}: {err:?}"
            );
            assert_eq!(
                seen,
                [Seen::Connected, Seen::Disconnected(reason)],
                "{what} {version:?}"
            );
            let sent: &[Got] = if version == ProtocolVersion::V5 {
                &[Got::Disconnect(ReasonCode::MALFORMED_PACKET)]
            } else {
                &[]
            };
            assert_eq!(got, sent, "{what} {version:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_connack_never_sent_ends_in_connack_timeout() {
    // Accepts TCP, reads CONNECT, answers nothing.
    let (port, broker) = fault_broker(ProtocolVersion::V5, Vec::new()).await;
    let st = state(ProtocolChoice::V5, 4096);
    let (driver, mut events) = spawn_driver!(st, port);
    within(5, async {
        let started = std::time::Instant::now();
        let err = driver.await.unwrap().unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, ClientError::Link(CloseReason::ConnackTimeout)),
            "{err:?}"
        );
        // The session's connect_timeout is 500 ms.
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
            "{took:?}"
        );
        assert_eq!(
            drain(&mut events),
            [Seen::Disconnected(CloseReason::ConnackTimeout)]
        );
        assert_eq!(broker.await.unwrap(), []);
    })
    .await;
}
