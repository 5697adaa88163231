//! The driver task [`connect`](super::connect) spawns: it owns the client
//! state, the outbox, the receive and transmit buffers and the connector,
//! and runs two things in one future:
//!
//! - the core driver ([`Connection::run`]) with a handler that turns each
//!   event into an owned [`Event`], completes publish tokens and
//!   subscribe results, and `.await`s room in the bounded event channel
//!   (which stops the driver reading the socket while the application
//!   does not read: TCP backpressure);
//! - the request loop, which queues each [`Request`] from the handles into
//!   the session (publish waits for outbox room here, not in the handle).
//!
//! Both run in the same task, so the maps of pending tokens are never
//! touched by two threads at once (the `Mutex` only satisfies `Send`).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::pin::pin;
use std::collections::HashMap;
use std::sync::Mutex;

use embassy_futures::select::{Either, select};
use rand::rngs::StdRng;
use tokio::sync::{mpsc, oneshot};

use super::Error;
use super::Topic;
use super::events::{Event, Message, MessageProperties};
use super::handle::{Publish, Request};
use super::link::LinkConnector;
use super::options::Options;
use super::request::Exchanges;
use crate::client::{
    self, Client, ClientConfig, ClientState, Connection, CriticalSectionRawMutex, EventHandler,
};
use crate::clock::TokioClock;
use crate::codec::{Properties, PropertyFields, Subscription, UserProperty, Will};
use crate::session::{self, FilterResults, OutgoingMessage, SessionConfig};
use crate::store::Store;
use crate::time::Duration;

/// The in-flight table ([`Options::max_inflight`](super::Options::max_inflight)
/// chooses the window below it).
const INFLIGHT: usize = super::options::MAX_INFLIGHT as usize;
/// Subscriptions remembered for restoring.
const SUBS: usize = 64;
/// Longest topic filter remembered.
const FILTER_LEN: usize = 256;

type State<'b, St> = ClientState<'b, CriticalSectionRawMutex, INFLIGHT, SUBS, FILTER_LEN, 0, St>;
type Handle<'s, 'b, St> =
    Client<'s, 'b, CriticalSectionRawMutex, INFLIGHT, SUBS, FILTER_LEN, 0, St>;

/// A store the host layer can drive: its errors become [`Error`]s.
pub(crate) trait HostStore: Store + Send + 'static {
    fn error(e: Self::Error) -> Error;
}

impl HostStore for crate::store::NoStore {
    fn error(e: core::convert::Infallible) -> Error {
        match e {}
    }
}

impl HostStore for crate::store::FileStore {
    fn error(e: crate::store::FileStoreError) -> Error {
        Error::Store(e)
    }
}

type Done<T> = oneshot::Sender<Result<T, Error>>;

/// Who waits for which token.
#[derive(Default)]
struct Pending {
    publishes: HashMap<u32, Done<()>>,
    requests: HashMap<u32, Done<FilterResults>>,
}

/// Everything the task needs, made by `connect`.
pub(crate) struct Setup {
    pub(crate) options: Options,
    pub(crate) client_id: String,
    pub(crate) connector: LinkConnector,
    pub(crate) rng: StdRng,
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) exchanges: Arc<Exchanges>,
}

fn millis(d: core::time::Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The task's body: runs until a disconnect, until every handle and the
/// event stream are gone, or until the driver gives up; then, with the
/// client state, the buffers and the store dropped (a `FileStore`'s lock
/// released), answers the disconnect and sends [`Event::Stopped`].
pub(crate) async fn run<St: HostStore>(setup: Setup, store: St) {
    let events = setup.events.clone();
    let (error, waiter) = drive(setup, store).await;
    if let Some(error) = &error {
        warn!("host client ended: {}", error);
    }
    drop(waiter);
    let _ = events.send(Event::Stopped { error }).await;
}

/// Runs the driver and the request loop until one of them ends the client:
/// the driver's error, if any, and the waiter of a disconnect request.
async fn drive<St: HostStore>(
    setup: Setup,
    store: St,
) -> (Option<Error>, Option<oneshot::Sender<()>>) {
    let Setup {
        mut options,
        client_id,
        connector,
        rng,
        requests,
        events,
        exchanges,
    } = setup;
    // Lent to the session for as long as the state lives (declared first,
    // dropped last).
    let mut authenticator = options.authenticator.take();
    let will_users = options
        .will
        .as_ref()
        .map(|w| user_properties(&w.properties))
        .unwrap_or_default();
    let will_fields = options.will.as_ref().map(|w| PropertyFields {
        will_delay_interval: w
            .delay
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
        ..property_fields(&w.properties, &will_users)
    });
    let will = options
        .will
        .as_ref()
        .zip(will_fields.as_ref())
        .map(|(w, fields)| Will {
            topic: &w.topic,
            payload: &w.payload,
            qos: w.qos,
            retain: w.retain,
            properties: if w.delay.is_none() && w.properties.is_empty() {
                Properties::NONE
            } else {
                Properties::from_fields(fields)
            },
        });
    let mut config = SessionConfig::new(&client_id);
    config.protocol = options.protocol;
    config.clean_start = options.clean_start;
    config.resume_on_reconnect = options.session_expiry.is_some();
    config.keep_alive_secs = u16::try_from(options.keep_alive.as_secs()).unwrap_or(u16::MAX);
    config.connect_timeout = millis(options.connect_timeout);
    config.username = options.username.as_deref();
    config.password = options.password.as_deref().map(str::as_bytes);
    config.will = will;
    config.session_expiry_secs = options
        .session_expiry
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    config.max_incoming_packet_size = options.max_packet_size;
    config.max_inflight = options.max_inflight;
    let driver_config = ClientConfig {
        backoff: options.backoff,
        connect_timeout: millis(options.connect_timeout),
        ..ClientConfig::DEFAULT
    };
    let packet = options.max_packet_size as usize;
    let (mut outbox, mut rx, mut tx) = (
        alloc::vec![0u8; options.outbox_bytes],
        alloc::vec![0u8; packet],
        alloc::vec![0u8; packet],
    );
    // The authenticator's step buffer, only with an authenticator.
    let mut auth_step =
        alloc::vec![0u8; if authenticator.is_some() { session::MAX_AUTH_DATA } else { 0 }];
    let state: State<'_, St> = ClientState::with_store(config, &mut outbox, store);
    if let Some(authenticator) = authenticator.as_deref_mut() {
        state.set_authenticator(authenticator, &mut auth_step);
    }
    let client = state.client();
    let pending = Mutex::new(Pending::default());
    let connection = Connection::new(
        &state,
        connector,
        TokioClock::new(),
        rng,
        &mut rx,
        &mut tx,
        driver_config,
    );
    let handler = Forward {
        events: events.clone(),
        pending: &pending,
        exchanges,
        last_topic: None,
    };
    let mut driver = pin!(connection.run(handler));
    let serve = pin!(serve(client, requests, &pending, &events, options.overflow));
    // The request loop first: on each wake-up every request already
    // waiting is queued before the driver transmits, so they share its
    // write.
    let (result, waiter) = match select(serve, driver.as_mut()).await {
        Either::First(waiter) => (driver.await, waiter),
        Either::Second(result) => (result, None),
    };
    // Tokens still pending complete with `Error::Stopped` once `pending`
    // is dropped on return.
    (
        result.err().map(|e| Error::from_client(e, St::error)),
        waiter,
    )
}

/// Queues each request into the session. Returns when a disconnect was
/// asked (with its waiter) or when every handle and the event stream are
/// gone; the driver has been told to stop either way.
async fn serve<St: HostStore>(
    client: Handle<'_, '_, St>,
    mut requests: mpsc::Receiver<Request>,
    pending: &Mutex<Pending>,
    events: &mpsc::Sender<Event>,
    overflow: session::OverflowPolicy,
) -> Option<oneshot::Sender<()>> {
    while let Some(request) = requests.recv().await {
        match request {
            Request::Publish { msg, now, done } => {
                publish(client, msg, now, done, pending, overflow).await;
            }
            Request::Subscribe { filters, done } => {
                let subs: Vec<Subscription<'_>> = filters
                    .iter()
                    .map(|(filter, options)| Subscription {
                        filter,
                        options: *options,
                    })
                    .collect();
                track(pending, client.try_subscribe(&subs), done);
            }
            Request::Unsubscribe { filters, done } => {
                let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
                track(pending, client.try_unsubscribe(&filters), done);
            }
            Request::Reauthenticate { done } => {
                let result = client
                    .reauthenticate()
                    .map_err(|e| Error::from_client(e, Error::from));
                let _ = done.send(result);
            }
            Request::Disconnect { done } => {
                client.stop();
                return Some(done);
            }
        }
    }
    // No handle left: run while someone reads the events.
    events.closed().await;
    client.stop();
    None
}

fn track(
    pending: &Mutex<Pending>,
    queued: Result<session::RequestToken, client::ClientError>,
    done: Done<FilterResults>,
) {
    match queued {
        Ok(token) => {
            lock(pending).requests.insert(token.0, done);
        }
        Err(e) => {
            let _ = done.send(Err(Error::from_client(e, Error::from)));
        }
    }
}

async fn publish<St: HostStore>(
    client: Handle<'_, '_, St>,
    msg: Publish,
    now: bool,
    done: Option<Done<()>>,
    pending: &Mutex<Pending>,
    overflow: session::OverflowPolicy,
) {
    let p = &msg.properties;
    // Without properties the session need not walk a property list per
    // publish (it looks for a Message Expiry in every one it queues).
    let empty = p.is_empty();
    let users = user_properties(p);
    let fields = property_fields(p, &users);
    let out = OutgoingMessage {
        retain: msg.retain,
        properties: if empty {
            Properties::NONE
        } else {
            Properties::from_fields(&fields)
        },
        ..OutgoingMessage::new(msg.topic.as_str(), &msg.payload, msg.qos)
    };
    let queued = if now {
        client.try_publish(&out, overflow)
    } else {
        client.publish(&out).await
    };
    match queued {
        // No await between queuing and this insert, and the driver runs in
        // this same task: the completion cannot come before it. A token
        // already dropped (the usual fate of a QoS 0 one) waits for
        // nothing: no entry.
        Ok(token) => {
            if let Some(done) = done.filter(|d| !d.is_closed()) {
                lock(pending).publishes.insert(token.0, done);
            }
        }
        Err(e) => {
            let e = Error::from_client(
                e.with_connector_error::<core::convert::Infallible>(),
                St::error,
            );
            match done {
                Some(done) => {
                    let _ = done.send(Err(e));
                }
                // Detached: nobody to tell but the log.
                None => warn!("detached publish not sent: {}", e),
            }
        }
    }
}

fn user_properties(p: &MessageProperties) -> Vec<UserProperty<'_>> {
    p.user_properties
        .iter()
        .map(|(name, value)| UserProperty { name, value })
        .collect()
}

/// The wire properties of a message (`subscription_ids` is not sent: a
/// client may not [MQTT-3.3.4-6]).
fn property_fields<'a>(
    p: &'a MessageProperties,
    users: &'a [UserProperty<'a>],
) -> PropertyFields<'a> {
    PropertyFields {
        payload_format_indicator: p.payload_is_utf8,
        message_expiry_interval: p.message_expiry_secs,
        content_type: p.content_type.as_deref(),
        response_topic: p.response_topic.as_deref(),
        correlation_data: p.correlation_data.as_deref(),
        user_properties: users,
        ..PropertyFields::default()
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // Never poisoned: nothing panics while it is held.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The driver's handler.
struct Forward<'p> {
    events: mpsc::Sender<Event>,
    pending: &'p Mutex<Pending>,
    exchanges: Arc<Exchanges>,
    /// The topic of the last message received, shared by the next one
    /// on the same topic (no allocation).
    last_topic: Option<Topic>,
}

impl EventHandler for Forward<'_> {
    async fn on_event(&mut self, event: client::Event<'_>) {
        use session::Event as S;
        let owned = match event {
            // Only a message on the response topic can be a reply; the
            // others are built straight into their event (no extra move).
            client::Event::Message(m) if m.topic == self.exchanges.response_topic => {
                match self
                    .exchanges
                    .route(Message::from_wire(&m, &mut self.last_topic))
                {
                    Some(m) => Event::Message(m),
                    // A reply, handed to the request that waits for it.
                    None => return,
                }
            }
            client::Event::Message(m) => {
                Event::Message(Message::from_wire(&m, &mut self.last_topic))
            }
            client::Event::Connected {
                session_present,
                version,
            } => {
                self.exchanges.connected(version);
                Event::Connected {
                    session_present,
                    version,
                }
            }
            client::Event::Disconnected { reason } => Event::Disconnected { reason },
            client::Event::Reconnecting { attempt, delay } => Event::Reconnecting {
                attempt,
                delay: core::time::Duration::from_millis(delay.as_millis()),
            },
            client::Event::SubscriptionsRestored { refused } => {
                Event::SubscriptionsRestored { refused }
            }
            client::Event::MessageSkipped {
                topic, len, qos, ..
            } => Event::MessageSkipped {
                topic: topic.map(String::from),
                len,
                qos,
            },
            client::Event::PublishComplete { token, result } => {
                let mut pending = lock(self.pending);
                // Nobody waits for most completions (detached publishes,
                // dropped tokens): no key to hash then.
                if !pending.publishes.is_empty()
                    && let Some(done) = pending.publishes.remove(&token.0)
                {
                    drop(pending);
                    let _ = done.send(result.map_err(Error::Publish));
                }
                return;
            }
            client::Event::Session(
                S::Subscribed { token, results } | S::Unsubscribed { token, results },
            ) => {
                if let Some(done) = lock(self.pending).requests.remove(&token.0) {
                    let _ = done.send(Ok(results));
                }
                return;
            }
            client::Event::Session(other) => Event::Session(other),
        };
        // Waits while the application has not read: the driver reads no
        // more from the socket meanwhile. A dropped stream is no error.
        // `try_send` first: no waiter to set up while there is room.
        if let Err(mpsc::error::TrySendError::Full(owned)) = self.events.try_send(owned) {
            let _ = self.events.send(owned).await;
        }
    }
}
