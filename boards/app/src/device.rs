//! [`run`]: the client's driver, the telemetry loop and the command
//! subscription, side by side in one task.
//!
//! The driver ([`Connection::run`]) hands every event to a handler here:
//! commands are decoded, applied and answered at QoS 0 with
//! [`Client::try_publish`] (the handler must not await a publish: the
//! driver that would make room is the one running it); link events go to
//! the board's log. Readings go out at QoS 1 through
//! [`Client::publish`], which also keeps them in the client's durable
//! store when it has one. The telemetry loop publishes a reading, then sleeps
//! until the interval has passed since it, woken early when a command
//! changes the interval. The state both sides touch lives in `RefCell`s
//! and `Cell`s borrowed only between awaits, which is sound because the
//! three futures run in one task (`embassy_futures::join`/`select`, no
//! threads).

use core::cell::{Cell, RefCell};
use core::convert::Infallible;

use crate::model::{CommandReply, Readings, decode_command, encode_readings, encode_reply};
use embassy_futures::join::join;
use embassy_futures::select::{Either, select};
use embassy_sync::blocking_mutex::raw::{NoopRawMutex, RawMutex};
use embassy_sync::signal::Signal;
use embermq::client::{Client, ClientError, ClientState, Connection, Event};
use embermq::clock::Clock;
use embermq::codec::{Properties, PropertyFields, QoS, Subscription, SubscriptionOptions};
use embermq::session::{Message, OutgoingMessage, OverflowPolicy};
use embermq::store::Store;
use embermq::time::{Duration, Instant};
use embermq::transport::Connector;

use crate::board::{AppEvent, Board};
use crate::command::{Controls, refusal, reply_route};
use crate::settings::{Settings, Topics};

/// Room for one reading's JSON (a full sample with a 32-byte id and label
/// is under 250 bytes).
const READING_JSON_LEN: usize = 256;
/// Room for one reply's JSON (the refusal text is bounded).
const REPLY_JSON_LEN: usize = 192;

/// What the handler and the telemetry loop share (one task; see the module
/// doc).
struct Shared<B> {
    board: RefCell<B>,
    controls: RefCell<Controls>,
    interval_changed: Signal<NoopRawMutex, ()>,
    /// Publishes the broker acknowledged (the readings' `count`).
    acknowledged: Cell<u32>,
    booted: Instant,
}

impl<B: Board> Shared<B> {
    fn report(&self, event: AppEvent<'_>) {
        self.board.borrow_mut().report(event);
    }
}

/// Runs the application on a client: the driver `connection` (built on
/// `state` with [`Settings::client`]), the telemetry loop and the command
/// subscription, until the client is stopped ([`Client::stop`], then
/// `Ok(())`) or the driver gives up (its error). `clock` is the one the
/// driver was given (readings carry its time).
#[allow(clippy::type_complexity)] // the client's own generics, spelled out once
pub async fn run<'s, 'b, M, C, KC, R, K, B, St, const INFLIGHT: usize, const SUBS: usize>(
    state: &'s ClientState<'b, M, INFLIGHT, SUBS, 128, 0, St>,
    connection: Connection<'s, 'b, M, C, KC, R, INFLIGHT, SUBS, 128, 0, St>,
    clock: K,
    board: B,
    settings: &Settings<'_>,
) -> Result<(), ClientError<C::Error, St::Error>>
where
    M: RawMutex,
    St: Store,
    C: Connector,
    KC: Clock,
    R: rand_core::RngCore,
    K: Clock + Copy,
    B: Board,
{
    let shared = Shared {
        board: RefCell::new(board),
        controls: RefCell::new(Controls::new(settings.interval_secs)),
        interval_changed: Signal::new(),
        acknowledged: Cell::new(0),
        booted: clock.now(),
    };
    let client = state.client();
    let topics = settings.topics();
    let handler = |event: Event<'_>| on_event(&shared, client, topics, clock.now(), event);
    let subscribe = async {
        let commands = [Subscription {
            filter: topics.commands(),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }];
        let granted = client
            .subscribe(&commands)
            .await
            .is_ok_and(|results| results.all_succeeded());
        shared.report(AppEvent::Subscribed { granted });
    };
    let telemetry = publish_readings(&shared, client, topics, clock, settings.device_id);
    match select(connection.run(handler), join(subscribe, telemetry)).await {
        Either::First(result) => result,
        Either::Second(((), never)) => match never {},
    }
}

/// The driver's event handler.
fn on_event<B: Board, M: RawMutex, St: Store, const I: usize, const S: usize>(
    shared: &Shared<B>,
    client: Client<'_, '_, M, I, S, 128, 0, St>,
    topics: &Topics,
    now: Instant,
    event: Event<'_>,
) {
    match event {
        Event::Message(message) if message.topic == topics.commands() => {
            answer(shared, client, topics, now, &message);
        }
        Event::Connected {
            session_present,
            version,
        } => shared.report(AppEvent::Connected {
            version,
            session_present,
        }),
        Event::Disconnected { reason } => shared.report(AppEvent::Disconnected { reason }),
        Event::Reconnecting { attempt, delay } => {
            shared.report(AppEvent::Reconnecting { attempt, delay });
        }
        Event::PublishComplete { result: Ok(()), .. } => shared
            .acknowledged
            .set(shared.acknowledged.get().wrapping_add(1)),
        Event::PublishComplete {
            result: Err(failure),
            ..
        } => shared.report(AppEvent::PublishRejected { failure }),
        _ => {}
    }
}

/// Decodes and applies one command and queues its reply.
fn answer<B: Board, M: RawMutex, St: Store, const I: usize, const S: usize>(
    shared: &Shared<B>,
    client: Client<'_, '_, M, I, S, 128, 0, St>,
    topics: &Topics,
    now: Instant,
    message: &Message<'_>,
) {
    let mut refusal_text = heapless::String::new();
    let reply: CommandReply<'_> = match decode_command(message.payload) {
        Ok(command) => {
            let uptime = now.saturating_since(shared.booted);
            let reply = shared.controls.borrow_mut().apply(
                &command,
                &mut *shared.board.borrow_mut(),
                uptime,
            );
            if reply.ok {
                if let crate::model::Command::Interval { .. } = command {
                    shared.interval_changed.signal(());
                }
                shared.report(AppEvent::Command {
                    name: command.name(),
                });
            }
            reply
        }
        Err(error) => {
            shared.report(AppEvent::CommandRefused { error: &error });
            refusal(&error, &mut refusal_text)
        }
    };
    let mut json = [0u8; REPLY_JSON_LEN];
    let Ok(len) = encode_reply(&reply, &mut json) else {
        shared.report(AppEvent::ReplyNotQueued);
        return;
    };
    let (topic, correlation_data) = reply_route(message, topics);
    let fields = PropertyFields {
        correlation_data,
        content_type: Some("application/json"),
        ..PropertyFields::default()
    };
    // QoS 0: a reply only matters now (and the handler cannot await the
    // durable store a QoS 1 message would need).
    let reply = OutgoingMessage {
        topic,
        payload: json.get(..len).unwrap_or(&[]),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::from_fields(&fields),
    };
    if client
        .try_publish(&reply, OverflowPolicy::RejectNew)
        .is_err()
    {
        shared.report(AppEvent::ReplyNotQueued);
    }
}

/// The telemetry loop: a reading, then the interval, for ever.
async fn publish_readings<
    B: Board,
    M: RawMutex,
    K: Clock,
    St: Store,
    const I: usize,
    const S: usize,
>(
    shared: &Shared<B>,
    client: Client<'_, '_, M, I, S, 128, 0, St>,
    topics: &Topics,
    clock: K,
    device_id: &str,
) -> Infallible {
    let mut seq: u32 = 0;
    let mut json = [0u8; READING_JSON_LEN];
    loop {
        let sent_at = clock.now();
        let encoded = {
            let controls = shared.controls.borrow();
            let mut board = shared.board.borrow_mut();
            let readings = Readings {
                device_id,
                seq,
                sent_at_ms: sent_at.as_millis(),
                uptime_ms: sent_at.saturating_since(shared.booted).as_millis(),
                temperature_c: board.temperature_c(),
                counter: shared.acknowledged.get(),
                rssi_dbm: board.rssi_dbm(),
                status: controls.label(),
            };
            encode_readings(&readings, &mut json)
        };
        let queued = match encoded {
            Ok(len) => {
                let payload = json.get(..len).unwrap_or(&[]);
                let reading = OutgoingMessage::new(topics.telemetry(), payload, QoS::AtLeastOnce);
                // Waits while the outbox is full (link down for long).
                client.publish(&reading).await.is_ok()
            }
            Err(_) => false,
        };
        shared.report(if queued {
            AppEvent::ReadingQueued { seq }
        } else {
            AppEvent::PublishFailed
        });
        seq = seq.wrapping_add(1);
        // Until the interval (as it is now) has passed since this reading.
        loop {
            let secs = shared.controls.borrow().interval_secs();
            let next = sent_at.saturating_add(Duration::from_secs(u64::from(secs)));
            match select(clock.sleep_until(next), shared.interval_changed.wait()).await {
                Either::First(()) => break,
                Either::Second(()) => {}
            }
        }
    }
}
