//! The board application (`embermq_board_app::run`) on the host, under
//! tokio, against a real mosquitto started on free loopback ports: the very
//! code the boards run, over the same `WsConnector` (here over tokio TCP
//! instead of embassy-net), with a mock [`Board`] that records its LED.
//!
//! An observer (an embermq client over plain TCP, MQTT 5.0) watches the
//! device's topics and sends it commands, as an operator's application
//! would. Every test runs under an overall time limit.

extern crate alloc;

use alloc::rc::Rc;
use core::cell::RefCell;
use core::net::SocketAddr;
use core::time::Duration as StdDuration;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant as StdInstant;

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashErrorKind, ReadNorFlash,
};
use embermq::client::{Backoff, Client, ClientConfig, ClientState, Connection, Event};
use embermq::clock::TokioClock;
use embermq::codec::{Properties, PropertyFields, QoS, Subscription, SubscriptionOptions};
use embermq::session::{OutgoingMessage, SessionConfig};
use embermq::store::{NoStore, Store};
use embermq::time::Duration;
use embermq::transport::TokioTcpConnector;
use embermq::transport::WsConnector;
use embermq_board_app::{AppEvent, Board, FlashStore, Settings};
use embermq_ws::Buffers;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// `{prefix}-{pid}`: a client id (and topic level) no other run shares.
fn unique_id(prefix: &str) -> &'static str {
    leak_str(format!("{prefix}-{}", std::process::id()))
}

/// A client state for `config` with a 4096-byte outbox kept in `store`
/// (`NoStore`: RAM only), alive for the rest of the test.
fn leak_state<St: Store>(
    config: SessionConfig<'static>,
    store: St,
) -> &'static ClientState<'static, NoopRawMutex, 8, 4, 128, 0, St> {
    Box::leak(Box::new(ClientState::with_store(config, leak(4096), store)))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// mosquitto with an MQTT/TCP and an MQTT/WebSocket listener on loopback;
/// killed (and its directory removed) on drop.
struct Mosquitto {
    tcp_port: u16,
    ws_port: u16,
    child: Child,
    dir: PathBuf,
}

impl Mosquitto {
    fn start() -> Self {
        Self::start_on(free_port(), free_port())
    }

    /// Starts mosquitto on these ports, spawning it again while a port is
    /// still taken (after a restart, a client's reconnect attempt may hold
    /// it for a moment: a loopback connect can even meet itself). Blocks:
    /// call it from `spawn_blocking` while clients run.
    fn start_on(tcp_port: u16, ws_port: u16) -> Self {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .expect("mosquitto installed (Debian package `mosquitto`)");
        let dir = std::env::temp_dir().join(format!(
            "embermq-board-app-{}-{tcp_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\n\
                 listener {tcp_port} 127.0.0.1\nprotocol mqtt\n\
                 listener {ws_port} 127.0.0.1\nprotocol websockets\n"
            ),
        )
        .expect("config written");
        let start = StdInstant::now();
        'spawn: loop {
            assert!(
                start.elapsed() < StdDuration::from_secs(15),
                "mosquitto could not listen on {tcp_port} and {ws_port}"
            );
            let mut child = Command::new(binary)
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto started");
            for port in [tcp_port, ws_port] {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                while TcpStream::connect_timeout(&addr, StdDuration::from_millis(100)).is_err() {
                    if child.try_wait().unwrap().is_some() {
                        // A port was taken; try again shortly.
                        std::thread::sleep(StdDuration::from_millis(100));
                        continue 'spawn;
                    }
                    std::thread::sleep(StdDuration::from_millis(20));
                }
            }
            return Self {
                tcp_port,
                ws_port,
                child,
                dir,
            };
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The board: records LED switches, reports events to a channel, has a
/// thermometer stuck at 21.5 °C.
#[derive(Clone)]
struct MockBoard {
    led: Rc<RefCell<Vec<bool>>>,
    events: UnboundedSender<String>,
}

impl MockBoard {
    /// A board with its LED never switched, and the receiver of the
    /// events it reports.
    fn new() -> (Self, UnboundedReceiver<String>) {
        let (events, events_rx) = unbounded_channel();
        let board = Self {
            led: Rc::default(),
            events,
        };
        (board, events_rx)
    }
}

impl Board for MockBoard {
    fn set_led(&mut self, on: bool) {
        self.led.borrow_mut().push(on);
    }

    fn temperature_c(&mut self) -> Option<f32> {
        Some(21.5)
    }

    fn report(&mut self, event: AppEvent<'_>) {
        let _ = self.events.send(event.to_string());
    }
}

/// A message the observer received.
#[derive(Debug)]
struct Seen {
    topic: String,
    json: serde_json::Value,
    correlation: Option<Vec<u8>>,
    at: StdInstant,
}

/// Reconnects within half a second, so a restarted broker is found fast.
const FAST: ClientConfig = ClientConfig {
    backoff: Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(500),
        max_attempts: None,
    },
    connect_timeout: Duration::from_secs(5),
    close_timeout: embermq::time::Duration::from_secs(1),
};

/// Settings for device `id`, a reading every `interval_secs`, reconnecting
/// as [`FAST`].
fn fast_settings(id: &'static str, interval_secs: u32) -> Settings<'static> {
    let mut settings = Settings::new(id, interval_secs).unwrap();
    settings.client = FAST;
    settings
}

fn observer_handler(tx: UnboundedSender<Seen>) -> impl FnMut(Event<'_>) {
    move |event| {
        if let Event::Message(m) = event {
            let _ = tx.send(Seen {
                topic: m.topic.to_owned(),
                json: serde_json::from_slice(m.payload).expect("JSON payload"),
                correlation: m.properties.correlation_data().map(<[u8]>::to_vec),
                at: StdInstant::now(),
            });
        }
    }
}

async fn next_on(rx: &mut UnboundedReceiver<Seen>, topic: &str) -> Seen {
    loop {
        let seen = rx.recv().await.expect("observer running");
        if seen.topic == topic {
            return seen;
        }
    }
}

async fn wait_for_event(rx: &mut UnboundedReceiver<String>, wanted: &str) {
    loop {
        let line = rx.recv().await.expect("device running");
        if line == wanted {
            return;
        }
    }
}

async fn within<T>(secs: u64, f: impl core::future::Future<Output = T>) -> T {
    tokio::time::timeout(StdDuration::from_secs(secs), f)
        .await
        .expect("test exceeded its time limit")
}

fn device_connector(port: u16) -> WsConnector<'static, TokioTcpConnector, StdRng> {
    WsConnector::new(
        TokioTcpConnector::new("127.0.0.1", port),
        "127.0.0.1",
        Some(port),
        "/mqtt",
        Buffers {
            rx: leak(2048),
            tx: leak(2048),
        },
        StdRng::seed_from_u64(1),
    )
}

/// The board application on `state` with `board`, over WebSocket to the
/// broker's `ws_port` (the client's RNG seeded with `seed`), until stopped.
async fn run_device<St: Store>(
    state: &'static ClientState<'static, NoopRawMutex, 8, 4, 128, 0, St>,
    ws_port: u16,
    seed: u64,
    board: MockBoard,
    settings: &Settings<'_>,
) -> Result<(), impl core::fmt::Debug> {
    let connection = Connection::new(
        state,
        device_connector(ws_port),
        TokioClock::new(),
        StdRng::seed_from_u64(seed),
        leak(2048),
        leak(2048),
        settings.client,
    );
    embermq_board_app::run(state, connection, TokioClock::new(), board, settings).await
}

/// An observer named `{name}-{pid}` (MQTT 5.0 over TCP to the broker's
/// `tcp_port`, RNG seeded with `seed`): its client, the messages it
/// receives, and its driver to run beside the test.
fn observer(
    name: &str,
    tcp_port: u16,
    seed: u64,
) -> (
    Client<'static, 'static, NoopRawMutex, 8, 4>,
    UnboundedReceiver<Seen>,
    impl core::future::Future<Output = Result<(), impl core::fmt::Debug>>,
) {
    let state = leak_state(SessionConfig::new(unique_id(name)), NoStore);
    let (seen_tx, seen) = unbounded_channel();
    let driver = Connection::new(
        state,
        TokioTcpConnector::new("127.0.0.1", tcp_port),
        TokioClock::new(),
        StdRng::seed_from_u64(seed),
        leak(4096),
        leak(4096),
        FAST,
    )
    .run(observer_handler(seen_tx));
    (state.client(), seen, driver)
}

fn command<'a>(
    topic: &'a str,
    json: &'a [u8],
    fields: &'a PropertyFields<'a>,
) -> OutgoingMessage<'a> {
    OutgoingMessage {
        properties: Properties::from_fields(fields),
        ..OutgoingMessage::new(topic, json, QoS::AtLeastOnce)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn telemetry_arrives_and_commands_change_the_interval_switch_the_led_and_are_answered() {
    let broker = Mosquitto::start();
    let id = unique_id("app-test");
    // 30 s: a second reading within the test's few seconds proves the
    // interval command took effect.
    let settings = fast_settings(id, 30);
    let topics = settings.topics().clone();

    let device_state = leak_state(settings.session_config(2048), NoStore);
    let device_client = device_state.client();
    let (board, mut events) = MockBoard::new();
    let led = board.led.clone();
    let ready = tokio::sync::Notify::new();
    let device = async {
        ready.notified().await;
        run_device(device_state, broker.ws_port, 2, board, &settings).await
    };

    let (observer, mut seen, observer_driver) = observer("app-observer", broker.tcp_port, 3);

    let answers = leak_str(format!("test/answers/{id}"));
    let body = async {
        let filters = [topics.telemetry(), topics.replies(), answers].map(|filter| Subscription {
            filter,
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        });
        assert!(observer.subscribe(&filters).await.unwrap().all_succeeded());
        ready.notify_one();

        // The first reading, at once after the connect.
        let first = next_on(&mut seen, topics.telemetry()).await;
        assert_eq!(first.json["device"], id);
        assert_eq!(first.json["seq"], 0);
        assert_eq!(first.json["temp_c"], 21.5);
        wait_for_event(&mut events, "commands subscribed").await;

        // interval → 1 s, asked with a 5.0 Response Topic + Correlation Data.
        let fields = PropertyFields {
            response_topic: Some(answers),
            correlation_data: Some(b"corr-1"),
            ..PropertyFields::default()
        };
        let json = br#"{"cmd":"interval","secs":1}"#;
        let token = observer
            .publish(&command(topics.commands(), json, &fields))
            .await
            .unwrap();
        observer.completion(token).await.unwrap();
        let reply = next_on(&mut seen, answers).await;
        assert_eq!(reply.json, serde_json::json!({"cmd":"interval","ok":true}));
        assert_eq!(reply.correlation.as_deref(), Some(&b"corr-1"[..]));
        let second = next_on(&mut seen, topics.telemetry()).await;
        let third = next_on(&mut seen, topics.telemetry()).await;
        assert_eq!(second.json["seq"], 1);
        assert_eq!(third.json["seq"], 2);
        let gap = third.at - second.at;
        assert!(
            gap > StdDuration::from_millis(700) && gap < StdDuration::from_millis(2500),
            "readings 1 s apart, got {gap:?}"
        );
        // The count is of acknowledged publishes: the first reading at least.
        assert!(
            third.json["count"].as_u64().unwrap() >= 1,
            "{:?}",
            third.json
        );

        // LED on, without a Response Topic: the reply goes to .../replies.
        let none = PropertyFields::default();
        let json = br#"{"cmd":"led","on":true}"#;
        observer
            .publish(&command(topics.commands(), json, &none))
            .await
            .unwrap();
        let reply = next_on(&mut seen, topics.replies()).await;
        assert_eq!(reply.json, serde_json::json!({"cmd":"led","ok":true}));
        assert_eq!(reply.correlation, None);
        assert_eq!(*led.borrow(), [true]);

        // An out-of-range interval is refused, and says why.
        let json = br#"{"cmd":"interval","secs":0}"#;
        observer
            .publish(&command(topics.commands(), json, &fields))
            .await
            .unwrap();
        let reply = next_on(&mut seen, answers).await;
        assert_eq!(reply.json["ok"], false);
        assert_eq!(reply.json["cmd"], "interval");
        assert!(reply.json["error"].as_str().unwrap().contains("secs"));

        device_client.stop();
        observer.stop();
    };
    let (device, observer, ()) =
        within(30, async { tokio::join!(device, observer_driver, body) }).await;
    device.expect("device client stopped cleanly");
    observer.expect("observer stopped cleanly");
}

#[tokio::test(flavor = "current_thread")]
async fn after_a_broker_restart_the_device_reconnects_resubscribes_and_keeps_reporting() {
    let broker = Mosquitto::start();
    let (tcp_port, ws_port) = (broker.tcp_port, broker.ws_port);
    let broker = RefCell::new(Some(broker));
    let id = unique_id("app-restart");
    let settings = fast_settings(id, 1);
    let topics = settings.topics().clone();

    let device_state = leak_state(settings.session_config(2048), NoStore);
    let device_client = device_state.client();
    let (board, mut events) = MockBoard::new();
    let led = board.led.clone();
    let device = run_device(device_state, ws_port, 4, board, &settings);

    let (observer, mut seen, observer_driver) = observer("app-restart-observer", tcp_port, 5);

    let body = async {
        let filters = [topics.telemetry(), topics.replies()].map(|filter| Subscription {
            filter,
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        });
        assert!(observer.subscribe(&filters).await.unwrap().all_succeeded());
        wait_for_event(&mut events, "commands subscribed").await;
        next_on(&mut seen, topics.telemetry()).await;

        // The broker goes away (losing every session) and comes back on
        // the same ports.
        drop(broker.borrow_mut().take());
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        let restarted = tokio::task::spawn_blocking(move || Mosquitto::start_on(tcp_port, ws_port));
        *broker.borrow_mut() = Some(restarted.await.expect("broker restarted"));
        wait_for_event(&mut events, "mqtt connected (V5, session present: false)").await;

        // Readings flow again, and commands are still subscribed.
        let after = next_on(&mut seen, topics.telemetry()).await;
        assert!(after.json["seq"].as_u64().unwrap() >= 1);
        let none = PropertyFields::default();
        let json = br#"{"cmd":"led","on":false}"#;
        // The device re-subscribes after its CONNACK; retry until it did.
        let reply = loop {
            observer
                .publish(&command(topics.commands(), json, &none))
                .await
                .unwrap();
            let wait = tokio::time::timeout(
                StdDuration::from_millis(500),
                next_on(&mut seen, topics.replies()),
            );
            if let Ok(reply) = wait.await {
                break reply;
            }
        };
        assert_eq!(reply.json, serde_json::json!({"cmd":"led","ok":true}));
        assert_eq!(led.borrow().first(), Some(&false));

        device_client.stop();
        observer.stop();
    };
    let (device, observer, ()) =
        within(40, async { tokio::join!(device, observer_driver, body) }).await;
    device.expect("device client stopped cleanly");
    observer.expect("observer stopped cleanly");
}

/// NOR flash in RAM that outlives the store using it (the bytes are shared),
/// standing in for the board's flash across a reset: erase sets 0xFF, a
/// write clears bits.
#[derive(Clone)]
struct SharedFlash(Rc<RefCell<Vec<u8>>>);

const FLASH_PAGE: usize = 4096;
const FLASH_PAGES: usize = 4;

impl SharedFlash {
    fn new() -> Self {
        Self(Rc::new(RefCell::new(vec![0xFF; FLASH_PAGE * FLASH_PAGES])))
    }

    fn store(&self) -> FlashStore<'static, SharedFlash> {
        FlashStore::new(
            self.clone(),
            0..(FLASH_PAGE * FLASH_PAGES) as u32,
            leak(4100),
        )
        .expect("whole pages")
    }
}

impl ErrorType for SharedFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for SharedFlash {
    const READ_SIZE: usize = 4;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let start = offset as usize;
        bytes.copy_from_slice(&self.0.borrow()[start..start + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        FLASH_PAGE * FLASH_PAGES
    }
}

impl NorFlash for SharedFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = FLASH_PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.borrow_mut()[from as usize..to as usize].fill(0xFF);
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let mut flash = self.0.borrow_mut();
        for (i, byte) in bytes.iter().enumerate() {
            flash[offset as usize + i] &= byte;
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for SharedFlash {}

#[tokio::test(flavor = "current_thread")]
async fn readings_kept_in_flash_while_the_broker_is_away_arrive_after_a_reset() {
    // The broker's ports, held (listening, never accepting) until it starts,
    // so no other test takes them meanwhile.
    let hold = [0, 1].map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"));
    let [tcp_port, ws_port] = hold.each_ref().map(|l| l.local_addr().unwrap().port());
    let id = unique_id("app-durable");
    let flash = SharedFlash::new();
    let (board, mut events) = MockBoard::new();

    // First boot: no broker. Readings every second go into the outbox and
    // the flash; then the device is reset (its RAM state dropped).
    let settings = fast_settings(id, 1);
    let state = leak_state(settings.session_config(2048), flash.store());
    let first_boot = run_device(state, ws_port, 6, board.clone(), &settings);
    let client = state.client();
    let offline = async {
        wait_for_event(&mut events, "reading 2 queued").await;
        client.stop();
    };
    let (stopped, ()) = within(20, async { tokio::join!(first_boot, offline) }).await;
    stopped.expect("stopped cleanly");

    // The broker is back; an observer watches the telemetry.
    drop(hold);
    let broker = Mosquitto::start_on(tcp_port, ws_port);
    let (observer, mut seen, observer_driver) =
        observer("app-durable-observer", broker.tcp_port, 7);

    // Second boot, on the same flash; one reading a day of its own, so
    // readings 1 and 2 can only be the first boot's, replayed from flash.
    let settings = &*Box::leak(Box::new(fast_settings(id, 86_400)));
    let state = leak_state(settings.session_config(2048), flash.store());
    let ready = tokio::sync::Notify::new();
    let second_boot = async {
        ready.notified().await;
        run_device(state, ws_port, 8, board, settings).await
    };
    let device = state.client();
    let topic = settings.topics().telemetry();
    let body = async {
        let filters = [Subscription {
            filter: topic,
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }];
        assert!(observer.subscribe(&filters).await.unwrap().all_succeeded());
        ready.notify_one();
        let mut seqs = Vec::new();
        while !(seqs.contains(&1) && seqs.contains(&2)) {
            let reading = next_on(&mut seen, topic).await;
            seqs.push(reading.json["seq"].as_u64().unwrap());
        }
        // Acknowledged records are removed from the flash.
        while device.outbox_len() > 0 {
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        device.stop();
        observer.stop();
    };
    let (device, observer, ()) = within(30, async {
        tokio::join!(second_boot, observer_driver, body)
    })
    .await;
    device.expect("device stopped cleanly");
    observer.expect("observer stopped cleanly");
    let mut left = 0;
    flash
        .store()
        .replay(|_, _| left += 1)
        .await
        .expect("flash readable");
    assert_eq!(left, 0, "acknowledged readings are removed from flash");
}
