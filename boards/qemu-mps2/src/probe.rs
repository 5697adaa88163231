//! The `probe` build: the MQTT stack alone on the real network stack, for
//! docs/footprint.md and for the 3.1.1-only test.
//!
//! In place of embermq-board-app's application (JSON telemetry, commands,
//! the outbox in flash) it runs the smallest program that uses the whole
//! stack: the embermq client (reconnect, the outbox in RAM, completion
//! tokens) over `WsConnector` over `EmbassyTcpConnector`, with the same
//! buffers the board application lends. It subscribes to its own echo
//! topic, publishes [`ROUNDS`] messages at each of QoS 0, 1 and 2 to it,
//! waits for every completion and every echo, logs the tally and ends the
//! run with exit code 0 (or [`code::CLIENT_STOPPED`] when the echoes do
//! not all come back within [`DEADLINE`]).
//!
//! Its log lines format integers only: the errors' `Display` and `Debug`
//! would charge `core::fmt` code to the stack's figure.
//!
//! `scripts/footprint` builds it with and without the sdk's `v5` feature
//! (`--no-default-features`: MQTT 3.1.1 only) against the `baseline`
//! build (a TCP connection, no MQTT); `tests/tests/qemu_boards.rs` boots
//! both against mosquitto. It does not keep anything across a reset.

use core::cell::Cell;

use embassy_futures::select::{Either, select};
use embassy_net::Stack;
use embassy_time::{Duration, Timer};
use embermq::client::{ClientConfig, ClientState, Connection, Event, NoopRawMutex};
use embermq::clock::EmbassyClock;
use embermq::codec::{QoS, Subscription, SubscriptionOptions};
use embermq::session::OutgoingMessage;
use embermq::transport::{EmbassyTcpConnector, WsConnector};
use embermq_board_app::{Broker, Settings};
use embermq_ws::Buffers;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use static_cell::ConstStaticCell;

use crate::semihost::{self, code};
use crate::{fail, log};

/// Messages published at each QoS.
pub const ROUNDS: u32 = 5;
/// How long the probe waits for its echoes once everything was published.
pub const DEADLINE: Duration = Duration::from_secs(20);

const TCP: usize = 2048;
const WS: usize = 1024;
const MQTT_RX: usize = 2048;
const MQTT_TX: usize = 1024;
const OUTBOX: usize = 4096;
const INFLIGHT: usize = 8;
const SUBS: usize = 2;

/// The buffers the probe lends: the board application's sizes.
struct Memory {
    tcp_rx: [u8; TCP],
    tcp_tx: [u8; TCP],
    ws_rx: [u8; WS],
    ws_tx: [u8; WS],
    mqtt_rx: [u8; MQTT_RX],
    mqtt_tx: [u8; MQTT_TX],
    outbox: [u8; OUTBOX],
}

static MEMORY: ConstStaticCell<Memory> = ConstStaticCell::new(Memory {
    tcp_rx: [0; TCP],
    tcp_tx: [0; TCP],
    ws_rx: [0; WS],
    ws_tx: [0; WS],
    mqtt_rx: [0; MQTT_RX],
    mqtt_tx: [0; MQTT_TX],
    outbox: [0; OUTBOX],
});

/// Publishes, waits for the echoes, exits.
pub async fn run(
    stack: Stack<'static>,
    broker: Broker,
    mut rng: ChaCha20Rng,
    settings: &Settings<'static>,
) -> ! {
    let Memory {
        tcp_rx,
        tcp_tx,
        ws_rx,
        ws_tx,
        mqtt_rx,
        mqtt_tx,
        outbox,
    } = MEMORY.take();
    let mut topic = heapless::String::<64>::new();
    if topic.push_str(settings.device_id).is_err() || topic.push_str("/probe").is_err() {
        fail(code::SETUP, format_args!("probe: device id too long"));
    }
    let tcp = EmbassyTcpConnector::new(stack, broker.host, broker.port, tcp_rx, tcp_tx);
    let ws_rng = ChaCha20Rng::seed_from_u64(rng.next_u64());
    let ws = WsConnector::new(
        tcp,
        broker.host,
        Some(broker.port),
        broker.path,
        Buffers {
            rx: ws_rx,
            tx: ws_tx,
        },
        ws_rng,
    );
    // In a static, built in place: as a local of this task it would be
    // built on the call stack first and then moved into the task's future.
    static STATE: static_cell::StaticCell<ClientState<'static, NoopRawMutex, INFLIGHT, SUBS>> =
        static_cell::StaticCell::new();
    let state: &'static ClientState<'static, NoopRawMutex, INFLIGHT, SUBS> =
        STATE.init_with(|| ClientState::new(settings.session_config(MQTT_RX), outbox));
    let connection = Connection::new(
        state,
        ws,
        EmbassyClock::new(),
        rng,
        mqtt_rx,
        mqtt_tx,
        ClientConfig::DEFAULT,
    );
    let echoed = Cell::new(0u32);
    let handler = |event: Event<'_>| match event {
        Event::Connected { version, .. } => {
            log!("probe: connected, MQTT level {}", version.level())
        }
        Event::Message(m) if m.topic == topic.as_str() => echoed.set(echoed.get() + 1),
        Event::Disconnected { .. } => log!("probe: disconnected"),
        _ => {}
    };
    let client = state.client();
    let app = async {
        let filters = [Subscription {
            filter: topic.as_str(),
            options: SubscriptionOptions::qos(QoS::ExactlyOnce),
        }];
        if client.subscribe(&filters).await.is_err() {
            fail(
                code::CLIENT_STOPPED,
                format_args!("probe: subscribe failed"),
            );
        }
        let mut acknowledged = 0;
        for round in 0..ROUNDS {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let payload = [b'0' + round as u8, b'0' + qos as u8];
                let message = OutgoingMessage::new(topic.as_str(), &payload, qos);
                let done = match client.publish(&message).await {
                    Ok(token) => client.completion(token).await,
                    Err(e) => Err(e),
                };
                match done {
                    Ok(()) => acknowledged += 1,
                    Err(_) => log!("probe: publish at QoS {} failed", qos as u8),
                }
            }
        }
        let waited = select(
            async {
                while echoed.get() < 3 * ROUNDS {
                    Timer::after(Duration::from_millis(50)).await;
                }
            },
            Timer::after(DEADLINE),
        )
        .await;
        let total = 3 * ROUNDS;
        log!(
            "probe: {acknowledged}/{total} completed, {}/{total} echoed",
            echoed.get()
        );
        matches!(waited, Either::First(())) && acknowledged == total
    };
    match select(connection.run(handler), app).await {
        Either::First(_) => fail(
            code::CLIENT_STOPPED,
            format_args!("probe: the client stopped"),
        ),
        Either::Second(round_trips) => {
            let (used, size) = crate::stack::high_water();
            log!("stack: {used} of {size} bytes used at most");
            if !round_trips {
                fail(
                    code::CLIENT_STOPPED,
                    format_args!("probe: not every message made the round trip"),
                );
            }
            semihost::exit(code::OK)
        }
    }
}
