//! The host layer's MQTT 5.0 extras against a real mosquitto: the Will
//! with its properties (Will Delay Interval, Message Expiry, Content Type,
//! Response Topic, Correlation Data, User Properties, Payload Format), and
//! request/response (§4.10: `Client::request` correlates each reply,
//! times out, a late reply still reaches the events; `Client::respond`).
//!
//! Enhanced authentication (§4.12) runs against a FAULT INJECTOR, not a
//! real broker: mosquitto does AUTH only through a plugin, and no broker
//! the tests start offers a challenge/response method. The injector is a
//! scripted broker speaking the real codec (CONNECT with Authentication
//! Method and Data, AUTH 0x18 both ways, CONNACK).
//!
//! The Will tests cut the link under the client with a loopback TCP relay
//! (its connections are dropped at once, so mosquitto sees the link end
//! without a DISCONNECT).

extern crate alloc;

mod host_support;

use alloc::sync::Arc;
use core::time::Duration;
use std::sync::Mutex;

use bytes::Bytes;
use embermq::codec::{
    Auth, Connack, DecodeOptions, Decoded, Packet, Properties, PropertyFields, ProtocolVersion,
    ReasonCode, Suback,
};
use embermq::host::{self, Authenticator, Error, Event, Events, Options, QoS, Will};
use embermq::session::{Event as SessionEvent, ProtocolChoice};
use embermq_tests::peers::Mosquitto;
use host_support::{connected, fast, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A loopback TCP relay to `target` whose connections can be cut: the
/// client behind it loses its link without a DISCONNECT, as when a cable
/// is pulled (the relay keeps accepting, so the client can come back).
struct Relay {
    port: u16,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let links = links.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Self {
            port,
            links,
            accept,
        }
    }

    /// Drops every link open now (both sockets close at once).
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A watcher subscribed to `filter` on `broker`.
async fn watcher(broker: &Mosquitto, filter: &str) -> (host::Client, Events) {
    let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
    let (client, events) = host::connect(url.as_str()).unwrap();
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    (client, events)
}

/// The next message within `wait`, if any.
async fn message_within(events: &mut Events, wait: Duration) -> Option<host::Message> {
    tokio::time::timeout(wait, events.next_message())
        .await
        .ok()
        .flatten()
}

/// MQTT 5.0 §3.1.3.2: the broker holds the Will for the Will Delay
/// Interval after the link ends [MQTT-3.1.3-9], then publishes it with
/// every Will property as given (§3.1.3.2.2-3.1.3.2.8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_3_2_will_delay_interval_holds_the_will_then_it_arrives_with_its_properties() {
    let broker = Mosquitto::start().unwrap();
    within(30, async {
        let (watch, mut seen) = watcher(&broker, "wills/#").await;
        let relay = Relay::start(broker.tcp_port).await;
        let will = Will::new("wills/dev-1", "{\"online\":false}", QoS::AtLeastOnce)
            .delay(Duration::from_secs(2))
            .message_expiry(Duration::from_secs(600))
            .content_type("application/json")
            .response_topic("wills/dev-1/ack")
            .correlation_data(Bytes::from_static(b"\x00corr\xff"))
            .user_property("site", "lab")
            .user_property("site", "bench 2")
            .payload_is_utf8(true);
        // A session that outlives the link: else the session's end, at
        // once, would publish the Will before its delay.
        let options = Options::new(&format!("mqtt://127.0.0.1:{}", relay.port))
            .unwrap()
            .session_expiry(Duration::from_secs(60))
            .will(will);
        let (_client, mut events) = host::connect(options).unwrap();
        assert_eq!(connected(&mut events).await.1, ProtocolVersion::V5);
        // Cut, and keep the client away (a new link would cancel the Will).
        relay.cut();
        drop(relay);
        let cut_at = tokio::time::Instant::now();
        assert!(
            message_within(&mut seen, Duration::from_millis(1000))
                .await
                .is_none(),
            "the Will came before its delay"
        );
        let m = message_within(&mut seen, Duration::from_secs(10))
            .await
            .expect("the Will never came");
        assert!(
            cut_at.elapsed() >= Duration::from_secs(2),
            "{:?}",
            cut_at.elapsed()
        );
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("wills/dev-1", &b"{\"online\":false}"[..])
        );
        let p = &m.properties;
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
        assert_eq!(p.response_topic.as_deref(), Some("wills/dev-1/ack"));
        assert_eq!(p.correlation_data.as_deref(), Some(&b"\x00corr\xff"[..]));
        assert_eq!(
            p.user_properties,
            vec![
                ("site".to_owned(), "lab".to_owned()),
                ("site".to_owned(), "bench 2".to_owned())
            ]
        );
        assert_eq!(p.payload_is_utf8, Some(true));
        // §3.3.2.3.3: the broker forwards the expiry less the time held.
        let left = p.message_expiry_secs.expect("no Message Expiry Interval");
        assert!((590..=600).contains(&left), "{left}");
        watch.disconnect().await.unwrap();
    })
    .await;
}

/// [MQTT-3.1.3-9]: a client back on its session within the Will Delay
/// Interval cancels the Will; a DISCONNECT (0x00) then discards it
/// [MQTT-3.1.2-10].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_3_9_a_client_back_within_the_will_delay_cancels_the_will() {
    let broker = Mosquitto::start().unwrap();
    within(30, async {
        let (watch, mut seen) = watcher(&broker, "wills/#").await;
        let relay = Relay::start(broker.tcp_port).await;
        let options = fast(&format!("mqtt://127.0.0.1:{}", relay.port))
            .session_expiry(Duration::from_secs(60))
            .will(Will::new("wills/dev-2", "gone", QoS::AtLeastOnce).delay(Duration::from_secs(3)));
        let (client, mut events) = host::connect(options).unwrap();
        connected(&mut events).await;
        relay.cut();
        // Back through the relay within ~200 ms, resuming the session.
        connected(&mut events).await;
        assert!(
            message_within(&mut seen, Duration::from_secs(5))
                .await
                .is_none(),
            "the Will came although the client was back within its delay"
        );
        client.disconnect().await.unwrap();
        assert!(
            message_within(&mut seen, Duration::from_secs(4))
                .await
                .is_none(),
            "the Will came after a normal DISCONNECT"
        );
        watch.disconnect().await.unwrap();
    })
    .await;
}

/// Serves requests on `filter`: collects `n`, then answers them in reverse
/// order (so only the Correlation Data can pair them), each with
/// `reply to <payload>`.
fn responder(client: host::Client, mut events: Events, n: usize) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut requests = Vec::new();
        while requests.len() < n {
            let m = events.next_message().await.unwrap();
            assert!(m.is_request(), "{m:?}");
            requests.push(m);
        }
        for m in requests.iter().rev() {
            let reply = format!("reply to {}", String::from_utf8_lossy(&m.payload));
            client.respond(m, reply).await.unwrap().await.unwrap();
        }
        // Anything else on the service topic: keep reading until the end.
        while events.recv().await.is_some() {}
    })
}

/// MQTT 5.0 §4.10: each request carries the Response Topic and its own
/// Correlation Data; the responder copies it; the requester pairs each
/// reply with its request, also when replies come in another order and
/// requests run concurrently from clones of the handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_10_request_response_pairs_each_reply_by_its_correlation_data() {
    const N: usize = 5;
    let broker = Mosquitto::start().unwrap();
    within(30, async {
        let ws = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        let (service, service_events) = host::connect(ws.as_str()).unwrap();
        service
            .subscribe("svc/echo", QoS::AtLeastOnce)
            .await
            .unwrap();
        let serving = responder(service.clone(), service_events, N);
        let options = Options::new(&format!("mqtt://127.0.0.1:{}", broker.tcp_port))
            .unwrap()
            .response_topic("replies/requester-1");
        let (client, _events) = host::connect(options).unwrap();
        let asks: Vec<_> = (0..N)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .request("svc/echo", format!("q{i}"), Duration::from_secs(10))
                        .await
                })
            })
            .collect();
        for (i, ask) in asks.into_iter().enumerate() {
            let reply = ask.await.unwrap().unwrap();
            assert_eq!(reply.topic, "replies/requester-1");
            assert_eq!(reply.payload, format!("reply to q{i}"));
            assert_eq!(
                reply.properties.correlation_data.as_ref().map(Bytes::len),
                Some(16)
            );
        }
        serving.abort();
        client.disconnect().await.unwrap();
        service.disconnect().await.unwrap();
    })
    .await;
}

/// A request without a reply in time is `Error::Timeout` (no sooner); the
/// reply that comes later is not lost: it arrives as an ordinary message.
/// A request built by hand (`Publish::request_reply_to`) is answered on
/// its own Response Topic with its Correlation Data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_10_a_request_times_out_and_its_late_reply_reaches_the_events() {
    let broker = Mosquitto::start().unwrap();
    within(30, async {
        let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
        let (service, mut service_events) = host::connect(url.as_str()).unwrap();
        service
            .subscribe("svc/slow", QoS::AtLeastOnce)
            .await
            .unwrap();
        let (client, mut events) = host::connect(url.as_str()).unwrap();
        let started = tokio::time::Instant::now();
        let asked = client.request("svc/slow", "late?", Duration::from_millis(500));
        let (answer, request) = tokio::join!(asked, service_events.next_message());
        let timeout = Duration::from_millis(500);
        assert!(
            matches!(answer, Err(Error::Timeout { after }) if after == timeout),
            "{answer:?}"
        );
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        let request = request.unwrap();
        service
            .respond(&request, "late")
            .await
            .unwrap()
            .await
            .unwrap();
        let late = events.next_message().await.unwrap();
        assert_eq!(late.payload, "late");
        assert_eq!(
            late.properties.correlation_data,
            request.properties.correlation_data
        );
        // A request built by hand, its reply collected from the events.
        client
            .subscribe("mine/replies", QoS::AtLeastOnce)
            .await
            .unwrap();
        let by_hand = host::Publish::new("svc/slow", "by hand", QoS::AtLeastOnce)
            .request_reply_to("mine/replies", "c-1");
        client.send(by_hand).await.unwrap().await.unwrap();
        let asked = service_events.next_message().await.unwrap();
        assert_eq!(
            asked.properties.response_topic.as_deref(),
            Some("mine/replies")
        );
        service
            .respond(&asked, "to you")
            .await
            .unwrap()
            .await
            .unwrap();
        let mine = events.next_message().await.unwrap();
        assert_eq!(
            (
                mine.topic.as_str(),
                &mine.payload[..],
                mine.properties.correlation_data.as_deref()
            ),
            ("mine/replies", &b"to you"[..], Some(&b"c-1"[..]))
        );
        // The client still works: the next request is answered in time.
        let again = client.request("svc/slow", "now", Duration::from_secs(5));
        let serve = async {
            let m = service_events.next_message().await.unwrap();
            service.respond(&m, "on time").await.unwrap().await.unwrap();
        };
        let (reply, ()) = tokio::join!(again, serve);
        assert_eq!(reply.unwrap().payload, "on time");
        client.disconnect().await.unwrap();
        service.disconnect().await.unwrap();
    })
    .await;
}

/// `respond` needs a Response Topic; `reauthenticate` an authenticator;
/// `request` needs 5.0 (3.1.1 has no Response Topic), and says so rather
/// than waiting for a reply that cannot come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_to_a_plain_message_reauthenticate_without_an_authenticator_and_request_over_3_1_1_are_errors()
 {
    let broker = Mosquitto::start().unwrap();
    within(20, async {
        let url = format!("mqtt://127.0.0.1:{}", broker.tcp_port);
        let (client, mut events) = host::connect(url.as_str()).unwrap();
        client.subscribe("plain", QoS::AtMostOnce).await.unwrap();
        drop(client.publish("plain", "x", QoS::AtMostOnce).await.unwrap());
        let m = events.next_message().await.unwrap();
        assert!(!m.is_request());
        assert!(matches!(
            client.respond(&m, "y").await,
            Err(Error::NotARequest)
        ));
        // No authenticator given: re-authentication is refused, not sent.
        let e = client.reauthenticate().await.unwrap_err();
        assert!(matches!(e, Error::Session(_)), "{e:?}");
        assert!(e.to_string().contains("authenticator"), "{e}");
        client.disconnect().await.unwrap();

        let options = Options::new(&url).unwrap().protocol(ProtocolChoice::V311);
        let (old, mut events) = host::connect(options).unwrap();
        assert_eq!(connected(&mut events).await.1, ProtocolVersion::V311);
        let e = old
            .request("svc/any", "q", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NeedsV5), "{e:?}");
        old.disconnect().await.unwrap();
    })
    .await;
}

/// The test's authentication method: the client's first data, the
/// broker's challenge, the client's proof.
const METHOD: &str = "EMBERMQ-TEST-CHALLENGE";

/// The client side of [`METHOD`]; records the challenges it was given.
struct ChallengeAnswerer {
    challenges: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Authenticator for ChallengeAnswerer {
    fn method(&self) -> &str {
        METHOD
    }

    fn start(&mut self, out: &mut [u8]) -> Option<usize> {
        out.get_mut(..12)?.copy_from_slice(b"client-first");
        Some(12)
    }

    fn respond(&mut self, data: Option<&[u8]>, out: &mut [u8]) -> Option<usize> {
        let data = data?;
        self.challenges.lock().unwrap().push(data.to_vec());
        // The proof: the challenge, reversed.
        let proof = out.get_mut(..data.len())?;
        proof.copy_from_slice(data);
        proof.reverse();
        Some(data.len())
    }
}

fn encode(packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let n = packet.encode(&mut buf, ProtocolVersion::V5).unwrap();
    buf.truncate(n);
    buf
}

/// What the injector saw: the CONNECT's method and data, then the AUTH's
/// data.
#[derive(Debug, Default, Clone, PartialEq)]
struct AuthSeen {
    method: Option<String>,
    connect_data: Option<Vec<u8>>,
    auth_data: Option<Vec<u8>>,
    subscribed: bool,
    /// The re-authentication's start (AUTH 0x19) and proof (AUTH 0x18).
    reauth: Vec<(u8, Option<Vec<u8>>)>,
}

/// The FAULT INJECTOR for §4.12 (no broker the tests start offers a
/// challenge/response method): one client; CONNECT must carry [`METHOD`];
/// it answers AUTH 0x18 with the challenge `nonce-42`, and a CONNACK
/// accepting the link once the client's AUTH proves it (the challenge
/// reversed), else CONNACK 0x87. Then SUBACK for a SUBSCRIBE; a
/// re-authentication (AUTH 0x19) gets the challenge `nonce-43` and, once
/// proven, AUTH 0x00; until the client leaves.
async fn auth_broker() -> (u16, JoinHandle<AuthSeen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = AuthSeen::default();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            loop {
                let opts = DecodeOptions::new(ProtocolVersion::V5);
                let (reply, len) = match Packet::decode(&buf, &opts).unwrap() {
                    Decoded::Incomplete { .. } => break,
                    Decoded::Complete { value, len } => (answer(&value, &mut seen), len),
                };
                buf.drain(..len);
                if s.write_all(&reply).await.is_err() {
                    return seen;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    (port, task)
}

fn answer(packet: &Packet<'_>, seen: &mut AuthSeen) -> Vec<u8> {
    let method = PropertyFields {
        authentication_method: Some(METHOD),
        ..PropertyFields::default()
    };
    match packet {
        Packet::Connect(c) => {
            seen.method = c.properties.authentication_method().map(str::to_owned);
            seen.connect_data = c.properties.authentication_data().map(<[u8]>::to_vec);
            let challenge = PropertyFields {
                authentication_data: Some(b"nonce-42"),
                ..method
            };
            encode(&Packet::Auth(Auth {
                reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: Properties::from_fields(&challenge),
            }))
        }
        Packet::Auth(a) if seen.auth_data.is_some() => {
            // Re-authentication on the live link (§4.12.1).
            let data = a.properties.authentication_data().map(<[u8]>::to_vec);
            seen.reauth.push((a.reason_code.0, data.clone()));
            let (code, fields) = if a.reason_code == ReasonCode::RE_AUTHENTICATE {
                let challenge = PropertyFields {
                    authentication_data: Some(b"nonce-43"),
                    ..method
                };
                (ReasonCode::CONTINUE_AUTHENTICATION, challenge)
            } else if data.as_deref() == Some(&b"34-ecnon"[..]) {
                (ReasonCode::SUCCESS, method)
            } else {
                return Vec::new();
            };
            encode(&Packet::Auth(Auth {
                reason_code: code,
                properties: Properties::from_fields(&fields),
            }))
        }
        Packet::Auth(a) => {
            let data = a.properties.authentication_data().map(<[u8]>::to_vec);
            let proven = data.as_deref() == Some(&b"24-ecnon"[..]);
            seen.auth_data = data;
            encode(&Packet::Connack(Connack {
                session_present: false,
                reason_code: if proven {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NOT_AUTHORIZED
                },
                properties: Properties::from_fields(&method),
            }))
        }
        Packet::Subscribe(sub) => {
            seen.subscribed = true;
            let codes: Vec<ReasonCode> = sub
                .subscriptions
                .iter()
                .map(|s| ReasonCode(s.options.qos as u8))
                .collect();
            encode(&Packet::Suback(Suback::new(sub.packet_id, &codes)))
        }
        Packet::Pingreq => encode(&Packet::Pingresp),
        _ => Vec::new(),
    }
}

/// MQTT 5.0 §4.12: CONNECT carries the Authentication Method and the
/// authenticator's first data [MQTT-3.1.2.11.9]; the broker's AUTH 0x18
/// challenge is answered with an AUTH 0x18 carrying the authenticator's
/// step and the same method [MQTT-4.12.0-2]; CONNACK then accepts the
/// link. `reauthenticate` then runs the exchange again on the live link
/// (§4.12.1: AUTH 0x19, the challenge, AUTH 0x00). Against the fault
/// injector above (no real broker offers it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_12_enhanced_authentication_answers_the_broker_s_challenge_through_the_authenticator()
 {
    within(20, async {
        let (port, broker) = auth_broker().await;
        let challenges = Arc::default();
        let options = Options::new(&format!("mqtt://127.0.0.1:{port}"))
            .unwrap()
            .protocol(ProtocolChoice::V5)
            .authenticator(ChallengeAnswerer {
                challenges: Arc::clone(&challenges),
            });
        let (client, mut events) = host::connect(options).unwrap();
        assert_eq!(connected(&mut events).await.1, ProtocolVersion::V5);
        client
            .subscribe("after/auth", QoS::AtLeastOnce)
            .await
            .unwrap();
        client.reauthenticate().await.unwrap();
        loop {
            match events.recv().await.unwrap() {
                Event::Session(SessionEvent::Reauthenticated) => break,
                Event::Stopped { error } => panic!("stopped: {error:?}"),
                _ => {}
            }
        }
        client.disconnect().await.unwrap();
        let seen = broker.await.unwrap();
        assert_eq!(
            seen,
            AuthSeen {
                method: Some(METHOD.to_owned()),
                connect_data: Some(b"client-first".to_vec()),
                auth_data: Some(b"24-ecnon".to_vec()),
                subscribed: true,
                reauth: vec![
                    (0x19, Some(b"client-first".to_vec())),
                    (0x18, Some(b"34-ecnon".to_vec())),
                ],
            }
        );
        assert_eq!(
            *challenges.lock().unwrap(),
            vec![b"nonce-42".to_vec(), b"nonce-43".to_vec()]
        );
    })
    .await;
}
