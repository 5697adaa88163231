//! The driver's timers under load: keepalive while input never stops, and
//! a write that the peer never takes (issue 11, item 7).
//!
//! Two cases run against mosquitto (a real flood through a real broker;
//! a proxy in front of it that stops reading). One case uses a fault
//! injector, because no real peer can promise what it needs: a transport
//! whose read is *always* ready, so that a driver that prefers the read
//! over its timer never fires the timer at all.

extern crate alloc;

mod support;
use support::*;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embermq::client::{ClientError, Connection, Event};
use embermq::clock::TokioClock;
use embermq::codec::QoS;
use embermq::session::{CloseReason, OutgoingMessage, ProtocolChoice, SessionConfig};
use embermq::transport::Connector;
use embermq_tests::peers::Mosquitto;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(id: &str, keep_alive_secs: u16) -> SessionConfig<'static> {
    let mut cfg = SessionConfig::new(leak_str(format!("{id}-{}", std::process::id())));
    cfg.protocol = ProtocolChoice::V311;
    cfg.keep_alive_secs = keep_alive_secs;
    cfg
}

/// A PUBLISH (QoS 0) to `topic` with `payload`, 3.1.1 wire form.
fn publish_qos0(topic: &str, payload: &[u8]) -> Vec<u8> {
    let body = 2 + topic.len() + payload.len();
    assert!(body < 128, "one-byte remaining length");
    let mut p = vec![0x30, body as u8, 0, topic.len() as u8];
    p.extend_from_slice(topic.as_bytes());
    p.extend_from_slice(payload);
    p
}

/// Counts the PINGREQ packets in a client-to-broker byte stream, walking
/// the fixed headers (type nibble, variable-length remaining length).
#[derive(Default)]
struct PacketWalker {
    buf: Vec<u8>,
    pingreqs: u64,
}

impl PacketWalker {
    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        loop {
            let Some(&first) = self.buf.first() else {
                return;
            };
            let (mut len, mut shift, mut at) = (0usize, 0u32, 1usize);
            loop {
                let Some(&b) = self.buf.get(at) else { return };
                len |= usize::from(b & 0x7F) << shift;
                at += 1;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            if self.buf.len() < at + len {
                return;
            }
            if first >> 4 == 12 {
                self.pingreqs += 1;
            }
            self.buf.drain(..at + len);
        }
    }
}

/// Fault injector in front of mosquitto: forwards both ways, counts the
/// client's PINGREQs, and on request stops reading from the client (while
/// keeping the connection open), like a peer whose receive window closed.
struct CountingProxy {
    port: u16,
    pingreqs: Arc<AtomicU64>,
    stop_reading: Arc<AtomicBool>,
}

impl CountingProxy {
    async fn start(broker_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let pingreqs = Arc::new(AtomicU64::new(0));
        let stop_reading = Arc::new(AtomicBool::new(false));
        let (count, stop) = (pingreqs.clone(), stop_reading.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut br, mut bw) = broker.into_split();
                let (count, stop) = (count.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut walker = PacketWalker::default();
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        if stop.load(Ordering::SeqCst) {
                            // Read nothing more, close nothing.
                            core::future::pending::<()>().await;
                        }
                        let n = match tokio::time::timeout(
                            Duration::from_millis(50),
                            cr.read(&mut buf),
                        )
                        .await
                        {
                            Ok(Ok(0)) | Ok(Err(_)) => return,
                            Ok(Ok(n)) => n,
                            Err(_) => continue,
                        };
                        walker.feed(&buf[..n]);
                        count.store(walker.pingreqs, Ordering::SeqCst);
                        if bw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = br.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            port,
            pingreqs,
            stop_reading,
        }
    }
}

/// A raw MQTT 3.1.1 publisher that writes QoS 0 PUBLISH packets to
/// `topic` as fast as mosquitto takes them, until `until`.
async fn flood(broker_port: u16, topic: &str, until: std::time::Instant) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", broker_port))
        .await
        .unwrap();
    // CONNECT: "MQTT" level 4, clean session, keepalive 0, client id "flooder".
    let id = format!("flooder-{}", std::process::id());
    let mut connect = vec![0x10, (10 + 2 + id.len()) as u8];
    connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0]);
    connect.extend_from_slice(&[0, id.len() as u8]);
    connect.extend_from_slice(id.as_bytes());
    s.write_all(&connect).await.unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "flooder accepted");
    let one = publish_qos0(topic, b"0123456789abcdef0123456789abcdef");
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 256).collect();
    let mut sent = 0u64;
    while std::time::Instant::now() < until {
        s.write_all(&batch).await.unwrap();
        sent += 256;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_10_keepalive_holds_under_an_inbound_flood() {
    let broker = Mosquitto::start().unwrap();
    let proxy = CountingProxy::start(broker.tcp_port).await;
    let st = state(config("flooded", 2), 4096);
    let (driver, mut events) = spawn_driver!(st, tcp(proxy.port), 16 * 1024);
    within(40, async {
        connected(&mut events).await;
        st.client()
            .subscribe(&[sub("flood", QoS::AtMostOnce)])
            .await
            .unwrap();
        // 3 × keepalive of QoS 0 messages flooding at the client.
        let until = std::time::Instant::now() + Duration::from_secs(6);
        let sent = flood(broker.tcp_port, "flood", until).await;
        let mut received = 0u64;
        while let Ok(seen) = events.try_recv() {
            match seen {
                Seen::Message { .. } => received += 1,
                Seen::Disconnected(reason) => panic!("link dropped under the flood: {reason:?}"),
                _ => {}
            }
        }
        let pings = proxy.pingreqs.load(Ordering::SeqCst);
        println!("flood: {sent} sent, {received} received so far, {pings} PINGREQs");
        assert!(received > 1000, "the flood reached the client ({received})");
        // Idle on our side for 6 s at keepalive 2 s: a PINGREQ every 2 s.
        assert!(pings >= 2, "only {pings} PINGREQs in 3 × keepalive");
        assert!(st.client().is_connected());
        stop(st.client(), driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_makes_no_progress_for_the_ping_timeout_ends_the_link_as_dead() {
    let broker = Mosquitto::start().unwrap();
    let proxy = CountingProxy::start(broker.tcp_port).await;
    // Keepalive 2 s: the write-stall timeout is the ping timeout, 1 s.
    let st = state(config("stalled", 2), 64 * 1024);
    let (driver, mut events) = spawn_driver!(st, tcp(proxy.port), 16 * 1024);
    within(40, async {
        connected(&mut events).await;
        proxy.stop_reading.store(true, Ordering::SeqCst);
        // Fill the socket buffers: QoS 0 messages of 8 KiB until the
        // driver's write stalls (the outbox then stays full).
        let payload = vec![0x5Au8; 8 * 1024];
        let client = st.client();
        let publisher = tokio::spawn(async move {
            let msg = OutgoingMessage::new("stall", &payload, QoS::AtMostOnce);
            for _ in 0..4096 {
                if client.publish(&msg).await.is_err() {
                    break;
                }
            }
        });
        let started = std::time::Instant::now();
        let reason = next_matching(&mut events, |s| match s {
            Seen::Disconnected(r) => Some(*r),
            _ => None,
        })
        .await;
        assert_eq!(reason, CloseReason::WriteStalled);
        println!("write stall found after {:?}", started.elapsed());
        // A stop request during a stall is not held behind the write.
        st.client().stop();
        let ended = tokio::time::timeout(Duration::from_secs(5), driver)
            .await
            .expect("run ends after stop")
            .unwrap();
        assert!(ended.is_ok(), "{ended:?}");
        publisher.abort();
    })
    .await;
}

/// Fault injector: a transport whose read is always ready. After the
/// CONNECT it yields a CONNACK, then an endless run of QoS 0 PUBLISH
/// packets; a PINGREQ the client writes is answered with a PINGRESP at
/// the next packet boundary. No real broker can guarantee that input is
/// ready at every poll, which is the condition that starves a driver that
/// always prefers its read.
struct Firehose {
    pattern: Vec<u8>,
    offset: usize,
    connack_sent: bool,
    pingresps_owed: u32,
    pingreqs: Arc<AtomicU64>,
    walker: PacketWalker,
}

impl ErrorType for Firehose {
    type Error = ErrorKind;
}

impl Read for Firehose {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut n = 0;
        if !self.connack_sent {
            self.connack_sent = true;
            buf[..4].copy_from_slice(&[0x20, 2, 0, 0]);
            return Ok(4);
        }
        while n < buf.len() {
            if self.offset == 0 && self.pingresps_owed > 0 {
                if buf.len() - n < 2 {
                    break;
                }
                buf[n..n + 2].copy_from_slice(&[0xD0, 0]);
                n += 2;
                self.pingresps_owed -= 1;
                continue;
            }
            let take = (self.pattern.len() - self.offset).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&self.pattern[self.offset..self.offset + take]);
            n += take;
            self.offset = (self.offset + take) % self.pattern.len();
        }
        Ok(n)
    }
}

impl embermq::transport::Transport for Firehose {}

impl Write for Firehose {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let before = self.walker.pingreqs;
        self.walker.feed(buf);
        let new = self.walker.pingreqs - before;
        self.pingresps_owed += new as u32;
        self.pingreqs.store(self.walker.pingreqs, Ordering::SeqCst);
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

struct FirehoseConnector {
    pingreqs: Arc<AtomicU64>,
}

impl Connector for FirehoseConnector {
    type Transport<'a> = Firehose;
    type Error = ClientError;

    async fn connect(&mut self) -> Result<Firehose, ClientError> {
        Ok(Firehose {
            pattern: publish_qos0("f", b"x"),
            offset: 0,
            connack_sent: false,
            pingresps_owed: 0,
            pingreqs: self.pingreqs.clone(),
            walker: PacketWalker::default(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_10_pingreq_goes_out_while_input_is_always_ready() {
    let st = state(config("firehose", 1), 4096);
    let pingreqs = Arc::new(AtomicU64::new(0));
    let messages = Arc::new(AtomicU64::new(0));
    let disconnects = Arc::new(AtomicU64::new(0));
    let (m, d) = (messages.clone(), disconnects.clone());
    let driver = tokio::spawn(
        Connection::new(
            st,
            FirehoseConnector {
                pingreqs: pingreqs.clone(),
            },
            TokioClock::new(),
            StdRng::seed_from_u64(3),
            leak(4096),
            leak(4096),
            fast_reconnect(),
        )
        .run(move |event: Event<'_>| match event {
            Event::Message(_) => {
                m.fetch_add(1, Ordering::Relaxed);
            }
            Event::Disconnected { .. } => {
                d.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }),
    );
    // Keepalive 1 s for 3.5 s: at least 3 PINGREQs are due.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let pings = pingreqs.load(Ordering::SeqCst);
    let got = messages.load(Ordering::Relaxed);
    let dropped = disconnects.load(Ordering::Relaxed);
    st.client().stop();
    let ended = tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("run ends after stop")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    println!("firehose: {got} messages, {pings} PINGREQs");
    assert!(got > 10_000, "input flowed ({got} messages)");
    assert!(
        pings >= 2,
        "only {pings} PINGREQs while input was always ready"
    );
    assert_eq!(dropped, 0, "the link never dropped before stop");
}
