//! The state the application tasks and the driver share, and the
//! [`Client`] handle the application tasks hold.
//!
//! The [`Session`] lives in an `embassy_sync` blocking mutex around a
//! `RefCell`; every access is one short synchronous closure, never held
//! across an `.await`, so a publishing task and the driver task cannot
//! deadlock on it. A task that must wait (outbox full, completion not yet
//! in) registers its waker under the same lock and is woken by the driver.
//! The driver itself is woken by a [`Signal`] when work is queued.
//!
//! The durable [`Store`] (if any) sits behind an `embassy_sync` async
//! mutex: a publisher holds it across the `persist` await, the driver
//! across a `remove`; neither waits for the other while holding it.

use core::cell::RefCell;
use core::convert::Infallible;
use core::future::poll_fn;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::mutex::Mutex as AsyncMutex;
use embassy_sync::signal::Signal;
use embassy_sync::waitqueue::{MultiWakerRegistration, WakerRegistration};

use super::ClientError;
use crate::codec::{QoS, Subscription};
use crate::session::{
    Authenticator, DEFAULT_V311_QOS2_RUNS, EVENT_QUEUE_LEN, FilterResults, OutgoingMessage,
    OverflowPolicy, PublishFailure, PublishState, PublishToken, Session, SessionConfig,
    SessionError,
};
use crate::store::{NoStore, Store};

/// The default size of the completion table (the `TOKENS` parameter of
/// [`ClientState`]): how many QoS 1/2 publishes, subscribes and
/// unsubscribes can be unfinished, or finished with their outcome not yet
/// taken, at once. See [`ClientState`] for what happens when it is full.
pub const TRACKED_COMPLETIONS: usize = 16;

/// Tasks that can wait for outbox room at once without being woken
/// spuriously (more still work: the registration then wakes all).
const OUTBOX_WAITERS: usize = 4;

/// What a tracked token completed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Publish(Result<(), PublishFailure>),
    Filters(FilterResults),
}

/// How firmly a slot holds its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// A QoS 1/2 publish, a subscribe or an unsubscribe: kept until its
    /// outcome is taken, or (finished, nobody awaiting) until the table
    /// needs the slot.
    Firm,
    /// A QoS 0 publish: takes a slot only when one is free and gives it up
    /// to anyone who needs it while nobody awaits it.
    Loose,
}

struct Slot {
    /// The token this slot tracks; meaningful while `used`.
    token: u32,
    used: bool,
    hold: Hold,
    /// A caller is awaiting this token (its future is alive).
    awaited: bool,
    done: Option<Outcome>,
    waker: WakerRegistration,
}

impl Slot {
    /// Whether the table may give this slot to a new token held `hold`:
    /// never while someone awaits it. A finished outcome nobody awaits may
    /// go to anyone; an unfinished QoS 0 token too; an unfinished QoS 1/2
    /// token (still in the outbox, so it can be tracked again when someone
    /// awaits it) only to another QoS 1/2 token, as the last resort.
    fn evictable_for(&self, hold: Hold) -> bool {
        self.used
            && !self.awaited
            && (self.done.is_some() || self.hold == Hold::Loose || hold == Hold::Firm)
    }
}

/// A fixed table of `N` tokens some caller may await.
pub(crate) struct Completions<const N: usize> {
    slots: [Slot; N],
}

impl<const N: usize> Completions<N> {
    fn new() -> Self {
        Self {
            slots: core::array::from_fn(|_| Slot {
                token: 0,
                used: false,
                hold: Hold::Loose,
                awaited: false,
                done: None,
                waker: WakerRegistration::new(),
            }),
        }
    }

    /// The slot a new token held `hold` would take: a free one, else the
    /// oldest finished one nobody awaits, else the oldest unfinished QoS 0
    /// one, else (for QoS 1/2) the oldest unfinished QoS 1/2 one nobody
    /// awaits.
    ///
    /// One pass (issue 13: this runs for every publish, over a full table
    /// once finished tokens fill it): a free slot ends it at once.
    fn room(&self, hold: Hold) -> Option<usize> {
        // The key orders finished before unfinished, QoS 0 before QoS 1/2,
        // then older tokens first, in one integer.
        let mut best: Option<(usize, u64)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if !s.used {
                return Some(i);
            }
            if s.evictable_for(hold) {
                let key = (u64::from(s.done.is_none()) << 33)
                    | (u64::from(s.hold == Hold::Firm) << 32)
                    | u64::from(s.token);
                if best.is_none_or(|(_, k)| key < k) {
                    best = Some((i, key));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// Whether a QoS 1/2 publish, a subscribe or an unsubscribe would find
    /// a slot now: `false` only while every slot is awaited. Stops at the
    /// first slot that would do.
    pub(crate) fn has_room(&self) -> bool {
        self.slots
            .iter()
            .any(|s| !s.used || s.evictable_for(Hold::Firm))
    }

    /// Starts tracking `token`; `false` when no slot can be had for it.
    fn track(&mut self, token: u32, hold: Hold) -> bool {
        let Some(slot) = self.room(hold).and_then(|i| self.slots.get_mut(i)) else {
            return false;
        };
        slot.token = token;
        slot.used = true;
        slot.hold = hold;
        slot.awaited = false;
        slot.done = None;
        slot.waker.wake();
        true
    }

    /// Marks `token` as awaited before its waiter first polls.
    fn mark_awaited(&mut self, token: u32) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.used && s.token == token) {
            slot.awaited = true;
        }
    }

    /// Whether `token` is in the table.
    fn tracks(&self, token: u32) -> bool {
        self.slots.iter().any(|s| s.used && s.token == token)
    }

    /// Records the outcome of `token` if a caller tracks it.
    pub(crate) fn complete(&mut self, token: u32, outcome: Outcome) {
        if let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.used && s.token == token && s.done.is_none())
        {
            slot.done = Some(outcome);
            slot.waker.wake();
        }
    }

    /// Stops tracking `token` (its publish was withdrawn).
    fn untrack(&mut self, token: u32) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.used && s.token == token) {
            slot.used = false;
            slot.awaited = false;
            slot.done = None;
            slot.waker.wake();
        }
    }

    /// A caller stopped awaiting `token` (its future was dropped): the
    /// slot keeps the outcome, but may be given away once finished.
    fn unawait(&mut self, token: u32) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.used && s.token == token) {
            slot.awaited = false;
        }
    }

    /// The outcome of `token` if it is tracked and finished, without
    /// taking it.
    fn peek(&self, token: u32) -> Option<Option<Outcome>> {
        self.slots
            .iter()
            .find(|s| s.used && s.token == token)
            .map(|s| s.done)
    }

    fn poll(&mut self, token: u32, cx: &mut Context<'_>) -> Poll<Result<Outcome, ClientError>> {
        let Some(slot) = self.slots.iter_mut().find(|s| s.used && s.token == token) else {
            return Poll::Ready(Err(ClientError::TokenNotTracked));
        };
        match slot.done.take() {
            Some(outcome) => {
                slot.used = false;
                slot.awaited = false;
                Poll::Ready(Ok(outcome))
            }
            None => {
                slot.awaited = true;
                slot.waker.register(cx.waker());
                Poll::Pending
            }
        }
    }
}

/// Everything behind the lock.
pub(crate) struct Shared<
    'b,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
    const TOKENS: usize,
    const EVENTS: usize,
> {
    pub(crate) session:
        Session<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES, DEFAULT_V311_QOS2_RUNS, EVENTS>,
    pub(crate) completions: Completions<TOKENS>,
    pub(crate) outbox_waiters: MultiWakerRegistration<OUTBOX_WAITERS>,
    /// The application asked the client to stop.
    pub(crate) stop: bool,
    /// Stored records that could not be decoded, removed from the store.
    pub(crate) quarantined: u32,
    /// Stored records wait for a replay pass (mirrors
    /// `StoreSlot::replay_pending`, readable without the store lock).
    pub(crate) replay_pending: bool,
}

/// The state shared by the [`Client`] handles and the driver
/// ([`Connection`](super::Connection)): the session with its lent outbox,
/// the completion table and the wake-ups.
///
/// Place it where both tasks can reach it: on the stack of a function that
/// joins them, or in a `static` through `static_cell::StaticCell`. With
/// `M = CriticalSectionRawMutex` it is `Sync`, so the handles may be used
/// from any thread of a multi-threaded runtime; with `NoopRawMutex` it is
/// for one executor thread only.
///
/// `St` is the durable [`Store`] of the outbox's QoS 1/2 messages
/// ([`NoStore`] by default: RAM only; see [`with_store`](Self::with_store)).
///
/// `TOKENS` is the size of the completion table ([`TRACKED_COMPLETIONS`]
/// by default), the tokens [`Client::completion`], `subscribe` and
/// `unsubscribe` can be waited on with:
///
/// - a token a caller is awaiting is never given away: nothing another
///   task does pushes it out;
/// - a QoS 1/2 publish that is still in the outbox can always be awaited:
///   if its slot went to a newer token while nobody awaited it, awaiting
///   it tracks it again;
/// - when every slot is awaited, [`Client::publish`] (QoS 1/2),
///   `subscribe` and `unsubscribe` wait for a slot, and
///   [`Client::try_publish`] answers [`ClientError::CompletionTableFull`];
///   a publish nobody awaits never waits for a slot, so an offline device
///   queues as many messages as its outbox holds;
/// - a new token takes a free slot, else the oldest finished outcome nobody
///   awaits, else the oldest unfinished QoS 0 token, else (QoS 1/2 only) the
///   oldest unfinished QoS 1/2 token nobody awaits. An outcome whose slot
///   was given away before anyone awaited it is still an
///   [`Event::PublishComplete`](super::Event::PublishComplete), but
///   [`Client::completion`] answers [`ClientError::TokenNotTracked`];
/// - a QoS 0 publish never takes a slot from a QoS 1/2 token.
///
/// `EVENTS` is the capacity of the session's event queue
/// ([`EVENT_QUEUE_LEN`] by default, more than
/// [`EVENT_HEADROOM`](crate::session::EVENT_HEADROOM)): the driver hands
/// the events to its handler after every input, so a full queue only makes
/// it drain more often (see [`Session`]'s `EVENTS`); an event is 24 bytes
/// on 64-bit targets.
pub struct ClientState<
    'b,
    M: RawMutex,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize = 128,
    const ALIASES: usize = 0,
    St: Store = NoStore,
    const TOKENS: usize = TRACKED_COMPLETIONS,
    const EVENTS: usize = EVENT_QUEUE_LEN,
> {
    pub(crate) shared:
        Mutex<M, RefCell<Shared<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES, TOKENS, EVENTS>>>,
    /// Work was queued (or stop requested): the driver should look.
    pub(crate) work: Signal<M, ()>,
    pub(crate) store: AsyncMutex<M, StoreSlot<St>>,
}

/// Undecodable records one replay pass quarantines; more wait for the next
/// pass (the one after the outbox drains).
const QUARANTINE_BATCH: usize = 8;

/// The store and what the client knows about it.
pub(crate) struct StoreSlot<St> {
    pub(crate) store: St,
    /// A replay pass completed: the highest stored key is known.
    replayed: bool,
    /// Records above `cursor` did not fit the outbox: a pass replays them
    /// once acknowledgements free room.
    more: bool,
    /// The key of the last record replayed (or quarantined, or skipped as
    /// larger than the outbox); 0: none.
    cursor: u32,
    /// The key of the next persist.
    next_key: u32,
    /// A persist under this key was interrupted (its future dropped): the
    /// store may hold the record of a publish that never returned `Ok`.
    /// 0: none (keys start at 1).
    unsettled: u32,
}

impl<St> StoreSlot<St> {
    /// Stored records still wait for a replay pass.
    pub(crate) fn replay_pending(&self) -> bool {
        !self.replayed || self.more
    }
}

impl<St: Store> StoreSlot<St> {
    /// Removes the record of an interrupted persist, if there is one, so
    /// that a publish dropped during its persist is not sent after a
    /// restart. Called by every holder of the store lock before its own
    /// work. A failed removal is logged (the record may then be sent after
    /// a restart).
    pub(crate) async fn settle(&mut self) {
        if self.unsettled != 0 {
            if self.store.remove(self.unsettled).await.is_err() {
                warn!("store: removing the record of a cancelled publish failed");
            }
            self.unsettled = 0;
        }
    }
}

impl<
    'b,
    M: RawMutex,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
    const TOKENS: usize,
    const EVENTS: usize,
> ClientState<'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES, NoStore, TOKENS, EVENTS>
{
    /// A client state for `config`, queuing publishes in the lent `outbox`
    /// (its size bounds the bytes of queued and in-flight messages). The
    /// outbox lives in RAM only; see [`with_store`](Self::with_store).
    pub fn new(config: SessionConfig<'b>, outbox: &'b mut [u8]) -> Self {
        Self::with_store(config, outbox, NoStore)
    }
}

impl<
    'b,
    M: RawMutex,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
    St: Store,
    const TOKENS: usize,
    const EVENTS: usize,
> ClientState<'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES, St, TOKENS, EVENTS>
{
    /// A client state whose QoS 1/2 messages are also kept in `store`, so
    /// that a restarted process (or a reset device) resumes sending what
    /// the broker had not acknowledged. The stored records are replayed
    /// into `outbox` before the first connect or the first QoS 1/2
    /// publish, whichever comes first (see [`crate::store`]).
    pub fn with_store(config: SessionConfig<'b>, outbox: &'b mut [u8], store: St) -> Self {
        Self {
            shared: Mutex::new(RefCell::new(Shared {
                session: Session::new(config, outbox),
                completions: Completions::new(),
                outbox_waiters: MultiWakerRegistration::new(),
                stop: false,
                quarantined: 0,
                replay_pending: St::DURABLE,
            })),
            work: Signal::new(),
            store: AsyncMutex::new(StoreSlot {
                store,
                replayed: !St::DURABLE,
                more: false,
                cursor: 0,
                next_key: 1,
                unsettled: 0,
            }),
        }
    }

    /// Lends a 5.0 enhanced-authentication [`Authenticator`] to the
    /// session, with the buffer its steps write into (see
    /// [`Session::set_authenticator`]): the next CONNECT carries its
    /// method and data, and the broker's AUTH challenges are answered with
    /// its steps.
    pub fn set_authenticator(
        &self,
        authenticator: &'b mut (dyn Authenticator + Send),
        step: &'b mut [u8],
    ) {
        self.with(|sh| sh.session.set_authenticator(authenticator, step));
    }

    /// Lends the [`Credentials`](crate::session::Credentials) every CONNECT
    /// takes its user name and password from, refreshed before each
    /// connect attempt (see [`Session::set_credentials`]): for tokens that
    /// expire while the client runs (an Azure IoT Hub SAS token).
    pub fn set_credentials(&self, credentials: &'b mut (dyn crate::session::Credentials + Send)) {
        self.with(|sh| sh.session.set_credentials(credentials));
    }

    /// A handle for publishing, subscribing and stopping; copy it freely.
    pub fn client(
        &self,
    ) -> Client<'_, 'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES, St, TOKENS, EVENTS> {
        Client { state: self }
    }

    /// Runs a replay pass unless none is pending (the caller holds the
    /// store lock): the stored records above the cursor go into the
    /// outbox in key order until one does not fit; that one and the rest
    /// wait for the next pass (run when acknowledgements free room), so
    /// every record is sent in one run, in key order.
    ///
    /// A record that cannot be decoded is quarantined: removed from the
    /// store, counted ([`Client::quarantined_records`]) and logged; the
    /// others go on. A record larger than the whole outbox is left in the
    /// store (logged) and passed over. A store error undoes the pass and is
    /// returned; the next pass tries again.
    pub(crate) async fn ensure_replayed(&self, slot: &mut StoreSlot<St>) -> Result<(), St::Error> {
        slot.settle().await;
        if !slot.replay_pending() {
            return Ok(());
        }
        let cursor = slot.cursor;
        let mut last = cursor;
        let mut max_key = 0u32;
        let mut stopped = false;
        let mut too_large = 0u32;
        let mut bad: heapless::Vec<u32, QUARANTINE_BATCH> = heapless::Vec::new();
        let replay = slot.store.replay(|key, record| {
            max_key = max_key.max(key);
            if key <= cursor || stopped {
                return;
            }
            match self.with(|sh| sh.session.restore(key, record)) {
                Ok(_) => last = key,
                Err(SessionError::OutboxFull {
                    needed, capacity, ..
                }) if needed > capacity => {
                    too_large = too_large.saturating_add(1);
                    last = key;
                }
                // It and the records after it wait for room, in order.
                Err(SessionError::OutboxFull { .. }) => stopped = true,
                Err(_) => {
                    if bad.push(key).is_ok() {
                        last = key;
                    } else {
                        stopped = true;
                    }
                }
            }
        });
        match replay.await {
            Ok(()) => {
                self.with(|sh| {
                    sh.replay_pending = stopped;
                    sh.session.release_restored();
                    sh.quarantined = sh
                        .quarantined
                        .saturating_add(u32::try_from(bad.len()).unwrap_or(u32::MAX));
                });
                slot.replayed = true;
                slot.more = stopped;
                slot.cursor = last;
                slot.next_key = max_key.saturating_add(1).max(slot.next_key);
                for key in bad {
                    warn!("store: record {} cannot be decoded; quarantined", key);
                    if slot.store.remove(key).await.is_err() {
                        warn!("store: removing quarantined record {} failed", key);
                    }
                }
                if too_large > 0 {
                    warn!(
                        "store: {} stored messages are larger than the outbox; left in the store",
                        too_large
                    );
                }
                self.work.signal(());
                Ok(())
            }
            Err(e) => {
                self.with(|sh| sh.session.cancel_restored());
                Err(e)
            }
        }
    }

    /// Runs `f` on the shared state under the lock (never across an await).
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut Shared<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES, TOKENS, EVENTS>) -> R,
    ) -> R {
        self.shared.lock(|cell| f(&mut cell.borrow_mut()))
    }
}

/// The application's handle: publish, subscribe, unsubscribe, await
/// completions, stop. `Copy`; `Send + Sync` when the mutex `M` is (e.g.
/// `CriticalSectionRawMutex`).
///
/// Nothing here does I/O: requests are queued in the session and the driver
/// ([`Connection::run`](super::Connection::run)) sends them. A request
/// queued while the link is down goes out after the next connect.
pub struct Client<
    's,
    'b,
    M: RawMutex,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize = 128,
    const ALIASES: usize = 0,
    St: Store = NoStore,
    const TOKENS: usize = TRACKED_COMPLETIONS,
    const EVENTS: usize = EVENT_QUEUE_LEN,
> {
    state: &'s ClientState<'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES, St, TOKENS, EVENTS>,
}

impl<
    M: RawMutex,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const T: usize,
    const E: usize,
> Clone for Client<'_, '_, M, I, S, F, A, St, T, E>
{
    fn clone(&self) -> Self {
        *self
    }
}

impl<
    M: RawMutex,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const T: usize,
    const E: usize,
> Copy for Client<'_, '_, M, I, S, F, A, St, T, E>
{
}

/// What [`Client::status`] knows about a publish token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenStatus {
    /// Still in the outbox: queued, in flight, or to be resent.
    Pending(PublishState),
    /// Acknowledged (QoS 1/2) or sent (QoS 0); the outcome is still in the
    /// completion table.
    Completed,
    /// Failed, for this reason; the outcome is still in the completion
    /// table.
    Failed(PublishFailure),
    /// Finished, but its outcome was already taken by
    /// [`Client::completion`] or evicted from the completion table, or not
    /// a token of this client.
    Unknown,
}

/// Whether a queue attempt should wait for room or give up.
enum Queued {
    Done(PublishToken),
    Wait,
    Failed(SessionError),
}

impl<
    's,
    'b,
    M: RawMutex,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
    St: Store,
    const TOKENS: usize,
    const EVENTS: usize,
> Client<'s, 'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES, St, TOKENS, EVENTS>
{
    /// Queues `msg`, waiting while the outbox has no room for it, and
    /// returns its token once queued (not once sent: await
    /// [`completion`](Self::completion) for that). With a durable
    /// [`Store`], a QoS 1/2 message is persisted before this returns (and
    /// before it is sent); a failed persist is [`ClientError::Store`] and
    /// the message is not queued.
    ///
    /// A message that can never be sent fails at once: larger than the
    /// whole outbox ([`SessionError::OutboxFull`] with `needed >
    /// capacity`), than the transmit buffer or than the broker's Maximum
    /// Packet Size ([`SessionError::PacketTooLarge`]).
    ///
    /// Cancel-safe: the message is queued only in the poll that returns
    /// `Ready(Ok)`; dropping the future earlier queues nothing (with a
    /// durable store, a drop during the persist takes the message back
    /// out of the outbox, and the next store operation removes the record
    /// if the store wrote it; only a restart before that can send it).
    pub async fn publish(
        &self,
        msg: &OutgoingMessage<'_>,
    ) -> Result<PublishToken, ClientError<Infallible, St::Error>> {
        self.publish_via(msg.qos, |session| match session.publish(msg) {
            Ok(token) => Queued::Done(token),
            Err(SessionError::OutboxFull {
                needed, capacity, ..
            }) if needed <= capacity => Queued::Wait,
            Err(e) => Queued::Failed(e),
        })
        .await
    }

    /// Queues a message whose payload `write` serializes straight into the
    /// outbox (see [`Session::publish_with`]): `write` gets the room left
    /// and returns the bytes written, or `None` if the payload does not
    /// fit. `msg.payload` is ignored. Waits for room while the outbox holds
    /// other messages; a payload that does not fit an empty outbox is
    /// [`SessionError::PayloadDoesNotFit`]. `write` may be called more
    /// than once (each time the outbox had new room). Durability and
    /// cancellation as for [`publish`](Self::publish).
    pub async fn publish_with(
        &self,
        msg: &OutgoingMessage<'_>,
        mut write: impl FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<PublishToken, ClientError<Infallible, St::Error>> {
        self.publish_via(msg.qos, |session| {
            let empty = session.outbox_len() == 0;
            match session.publish_with(msg, &mut write) {
                Ok(token) => Queued::Done(token),
                Err(SessionError::OutboxFull { .. } | SessionError::PayloadDoesNotFit { .. })
                    if !empty =>
                {
                    Queued::Wait
                }
                Err(e) => Queued::Failed(e),
            }
        })
        .await
    }

    /// Serializes `value` as JSON (serde-json-core) straight into the
    /// outbox record and queues it: no intermediate buffer, no allocator.
    /// A value whose JSON does not fit even an empty outbox is
    /// [`SessionError::PayloadDoesNotFit`] naming the room it had.
    /// Waiting, durability and cancellation as for
    /// [`publish`](Self::publish).
    #[cfg(feature = "json")]
    pub async fn publish_json<T: serde::Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
        qos: QoS,
    ) -> Result<PublishToken, ClientError<Infallible, St::Error>> {
        let msg = OutgoingMessage::new(topic, &[], qos);
        self.publish_with(&msg, |buf| serde_json_core::to_slice(value, buf).ok())
            .await
    }

    /// Queues through `queue` (waiting for room while it says so), then
    /// makes a QoS 1/2 message durable when there is a store.
    ///
    /// A durable message is queued and persisted in one tenure of the
    /// store lock, so store keys follow the queue order, which is the send
    /// order: a restart re-sends in key order, and [MQTT-4.6.0-1] asks for
    /// the order of the first sends, also with publishers on several
    /// threads.
    async fn publish_via(
        &self,
        qos: QoS,
        mut queue: impl FnMut(
            &mut Session<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES, DEFAULT_V311_QOS2_RUNS, EVENTS>,
        ) -> Queued,
    ) -> Result<PublishToken, ClientError<Infallible, St::Error>> {
        // QoS 1/2 needs a completion slot (it is never evicted while
        // unfinished), so wait for one before queuing; QoS 0 takes a slot
        // only if one is free.
        let hold = if qos == QoS::AtMostOnce {
            Hold::Loose
        } else {
            Hold::Firm
        };
        if !St::DURABLE || qos == QoS::AtMostOnce {
            let token = poll_fn(|cx| self.try_queue(cx, hold, false, &mut queue)).await?;
            self.state.work.signal(());
            return Ok(token);
        }
        loop {
            let mut slot = self.state.store.lock().await;
            // Replay first, so that stored messages go out before new ones
            // and new keys continue above the stored ones; while stored
            // records still wait for outbox room, new ones wait behind them.
            self.state
                .ensure_replayed(&mut slot)
                .await
                .map_err(ClientError::Store)?;
            if !slot.replay_pending() {
                let attempt = poll_fn(|cx| Poll::Ready(self.try_queue(cx, hold, true, &mut queue)));
                if let Poll::Ready(token) = attempt.await {
                    let token = token?;
                    self.persist(&mut slot, token).await?;
                    self.state.work.signal(());
                    return Ok(token);
                }
            }
            // Waiting for room without the store lock, which the driver
            // needs to remove acknowledged records.
            drop(slot);
            self.outbox_room().await;
        }
    }

    /// One attempt to queue through `queue`; `Pending` (with the waker
    /// registered, woken when completions or acknowledgements free room)
    /// while there is no room for it.
    fn try_queue(
        &self,
        cx: &mut Context<'_>,
        hold: Hold,
        durable: bool,
        queue: &mut impl FnMut(
            &mut Session<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES, DEFAULT_V311_QOS2_RUNS, EVENTS>,
        ) -> Queued,
    ) -> Poll<Result<PublishToken, ClientError<Infallible, St::Error>>> {
        self.state.with(|sh| {
            if hold == Hold::Firm && !sh.completions.has_room() {
                sh.outbox_waiters.register(cx.waker());
                return Poll::Pending;
            }
            match queue(&mut sh.session) {
                Queued::Done(token) => {
                    if durable {
                        sh.session.hold_for_store(token);
                    }
                    sh.completions.track(token.0, hold);
                    Poll::Ready(Ok(token))
                }
                Queued::Wait => {
                    sh.outbox_waiters.register(cx.waker());
                    Poll::Pending
                }
                Queued::Failed(e) => Poll::Ready(Err(ClientError::Session(e))),
            }
        })
    }

    /// Writes the held record of `token` to the store (the caller holds
    /// its lock), then lets it be sent, or takes it back out when the
    /// store failed.
    ///
    /// The key is taken before the write, so it is never reused, even when
    /// this future is dropped during the write; the store may then hold
    /// the record of a publish that did not return `Ok`, and the next
    /// holder of the store lock removes it ([`StoreSlot::settle`]).
    async fn persist(
        &self,
        slot: &mut StoreSlot<St>,
        token: PublishToken,
    ) -> Result<(), ClientError<Infallible, St::Error>> {
        // Taken back out if this future is dropped before the end.
        let guard = HeldGuard {
            state: self.state,
            token,
        };
        let key = slot.next_key;
        slot.next_key = key.saturating_add(1);
        slot.unsettled = key;
        let len = self
            .state
            .with(|sh| sh.session.held_record(token).map_or(0, <[u8]>::len));
        let result = slot
            .store
            .persist(key, len, |dst| {
                self.state.with(|sh| {
                    if let Some(record) = sh.session.held_record(token)
                        && let Some(dst) = dst.get_mut(..record.len())
                    {
                        dst.copy_from_slice(record);
                    }
                });
            })
            .await;
        slot.unsettled = 0;
        core::mem::forget(guard);
        match result {
            Ok(()) => {
                self.state.with(|sh| sh.session.release_held(token, key));
                Ok(())
            }
            Err(e) => {
                self.state.with(|sh| {
                    sh.session.cancel_held(token);
                    sh.completions.untrack(token.0);
                    // The room it took is free again.
                    sh.outbox_waiters.wake();
                });
                Err(ClientError::Store(e))
            }
        }
    }

    /// Queues `msg` without waiting. When the outbox has no room, `policy`
    /// decides: refuse the new message ([`SessionError::OutboxFull`]) or
    /// drop the oldest unsent QoS 0 messages (each completes with
    /// [`PublishFailure::Dropped`]).
    ///
    /// With a durable [`Store`] a QoS 1/2 message needs the `async`
    /// persist: it is refused with [`ClientError::StoreNeedsAwait`] (use
    /// [`publish`](Self::publish)).
    pub fn try_publish(
        &self,
        msg: &OutgoingMessage<'_>,
        policy: OverflowPolicy,
    ) -> Result<PublishToken, ClientError<Infallible, St::Error>> {
        if St::DURABLE && msg.qos != QoS::AtMostOnce {
            return Err(ClientError::StoreNeedsAwait);
        }
        let token = self.state.with(|sh| {
            if msg.qos != QoS::AtMostOnce && !sh.completions.has_room() {
                return Err(ClientError::CompletionTableFull);
            }
            let token = sh.session.publish_with_policy(msg, policy)?;
            let hold = if msg.qos == QoS::AtMostOnce {
                Hold::Loose
            } else {
                Hold::Firm
            };
            sh.completions.track(token.0, hold);
            Ok(token)
        })?;
        self.state.work.signal(());
        Ok(token)
    }

    /// Where the publish `token` is, without waiting and without taking
    /// its outcome (so [`completion`](Self::completion) still gets it).
    pub fn status(&self, token: PublishToken) -> TokenStatus {
        self.state.with(|sh| {
            if let Some(state) = sh.session.publish_state(token) {
                return TokenStatus::Pending(state);
            }
            match sh.completions.peek(token.0) {
                Some(Some(Outcome::Publish(Ok(())))) => TokenStatus::Completed,
                Some(Some(Outcome::Publish(Err(f)))) => TokenStatus::Failed(f),
                // Out of the outbox, outcome not drained yet by the driver.
                Some(None) => TokenStatus::Pending(PublishState::InFlight),
                Some(Some(Outcome::Filters(_))) | None => TokenStatus::Unknown,
            }
        })
    }

    /// Whether the publish `token` has not finished yet (see
    /// [`status`](Self::status)).
    pub fn is_pending(&self, token: PublishToken) -> bool {
        matches!(self.status(token), TokenStatus::Pending(_))
    }

    /// Waits until the publish `token` completed: sent (QoS 0), PUBACK
    /// (QoS 1) or PUBCOMP (QoS 2); a failure comes back as
    /// [`ClientError::Publish`] with its reason. The completion table
    /// (see [`ClientState`]) never gives away an awaited token, and a
    /// publish still in the outbox is tracked again when awaited; a token
    /// whose outcome was already taken, or that finished while its slot
    /// had gone to a newer token, gives [`ClientError::TokenNotTracked`]. Every completion is also an
    /// [`Event::PublishComplete`](super::Event::PublishComplete).
    ///
    /// Cancel-safe: dropping the future loses nothing; await it again.
    pub async fn completion(&self, token: PublishToken) -> Result<(), ClientError> {
        match self.wait(token.0).await? {
            Outcome::Publish(Ok(())) => Ok(()),
            Outcome::Publish(Err(failure)) => Err(ClientError::Publish(failure)),
            Outcome::Filters(_) => Err(ClientError::TokenNotTracked),
        }
    }

    /// Subscribes to up to [`MAX_FILTERS_PER_REQUEST`](crate::session::MAX_FILTERS_PER_REQUEST)
    /// filters and waits for the SUBACK: one reason code per filter (in
    /// 3.1.1 the granted QoS 0–2, or 0x80). The filters are remembered and
    /// restored by the session when a broker lost it.
    ///
    /// Not cancel-safe in effect: once the first poll queued the request,
    /// dropping the future does not withdraw it (the broker still
    /// subscribes; the result is then only an
    /// [`Event::Session`](super::Event::Session) `Subscribed` event).
    pub async fn subscribe(&self, subs: &[Subscription<'_>]) -> Result<FilterResults, ClientError> {
        self.request(|session| session.subscribe(subs)).await
    }

    /// Unsubscribes from up to [`MAX_FILTERS_PER_REQUEST`](crate::session::MAX_FILTERS_PER_REQUEST)
    /// filters and waits for the UNSUBACK (5.0: a reason code per filter;
    /// 3.1.1: all Success). Cancellation as for [`subscribe`](Self::subscribe).
    pub async fn unsubscribe(&self, filters: &[&str]) -> Result<FilterResults, ClientError> {
        self.request(|session| session.unsubscribe(filters)).await
    }

    /// Queues a SUBSCRIBE without waiting and without a completion slot:
    /// its SUBACK arrives only as the event
    /// [`Event::Session`](super::Event::Session)`(Subscribed { token, .. })`
    /// carrying the returned token. For a driver's handler that must not
    /// await (and for the host layer, which routes the results itself).
    pub fn try_subscribe(
        &self,
        subs: &[Subscription<'_>],
    ) -> Result<crate::session::RequestToken, ClientError> {
        let token = self.state.with(|sh| sh.session.subscribe(subs))?;
        self.state.work.signal(());
        Ok(token)
    }

    /// Queues an UNSUBSCRIBE without waiting; its UNSUBACK arrives only as
    /// [`Event::Session`](super::Event::Session)`(Unsubscribed { token, .. })`
    /// (see [`try_subscribe`](Self::try_subscribe)).
    pub fn try_unsubscribe(
        &self,
        filters: &[&str],
    ) -> Result<crate::session::RequestToken, ClientError> {
        let token = self.state.with(|sh| sh.session.unsubscribe(filters))?;
        self.state.work.signal(());
        Ok(token)
    }

    /// Queues a SUBSCRIBE or UNSUBSCRIBE through `queue` once the
    /// completion table has a slot, and waits for its acknowledgement. The
    /// token is tracked as awaited from the start, so no other task's
    /// publish can take its slot before this future first waits on it.
    async fn request(
        &self,
        mut queue: impl FnMut(
            &mut Session<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES, DEFAULT_V311_QOS2_RUNS, EVENTS>,
        ) -> Result<crate::session::RequestToken, SessionError>,
    ) -> Result<FilterResults, ClientError> {
        let token = poll_fn(|cx| {
            self.state.with(|sh| {
                if !sh.completions.has_room() {
                    sh.outbox_waiters.register(cx.waker());
                    return Poll::Pending;
                }
                let token = queue(&mut sh.session)?;
                sh.completions.track(token.0, Hold::Firm);
                sh.completions.mark_awaited(token.0);
                Poll::Ready(Ok::<_, SessionError>(token))
            })
        })
        .await?;
        self.state.work.signal(());
        match self.wait(token.0).await? {
            Outcome::Filters(results) => Ok(results),
            Outcome::Publish(_) => Err(ClientError::TokenNotTracked),
        }
    }

    /// Asks the driver to end: a polite DISCONNECT when the link is up,
    /// then [`Connection::run`](super::Connection::run) returns `Ok(())`.
    /// Queued messages stay in the outbox. Never waits.
    pub fn stop(&self) {
        self.state.with(|sh| sh.stop = true);
        self.state.work.signal(());
    }

    /// Starts a 5.0 re-authentication with the lent
    /// [`Authenticator`] (MQTT 5.0 §4.12.1); its success arrives as
    /// [`Event::Session`](super::Event::Session)`(Reauthenticated)`, a
    /// failure as the broker's DISCONNECT. Never waits.
    pub fn reauthenticate(&self) -> Result<(), ClientError> {
        self.state.with(|sh| sh.session.reauthenticate())?;
        self.state.work.signal(());
        Ok(())
    }

    /// Whether CONNACK accepted the current link.
    pub fn is_connected(&self) -> bool {
        self.state.with(|sh| sh.session.is_connected())
    }

    /// Messages in the outbox (queued or in flight).
    pub fn outbox_len(&self) -> usize {
        self.state.with(|sh| sh.session.outbox_len())
    }

    /// Stored records the replay found undecodable and removed from the
    /// store (each also logged): they are lost, the others were sent.
    pub fn quarantined_records(&self) -> u32 {
        self.state.with(|sh| sh.quarantined)
    }

    /// Waits until the driver reports that acknowledgements freed outbox
    /// room (or anything else woke the outbox waiters).
    async fn outbox_room(&self) {
        let mut registered = false;
        poll_fn(|cx| {
            if registered {
                return Poll::Ready(());
            }
            registered = true;
            self.state.with(|sh| sh.outbox_waiters.register(cx.waker()));
            Poll::Pending
        })
        .await;
    }

    async fn wait(&self, token: u32) -> Result<Outcome, ClientError> {
        // Marks the slot as no longer awaited if this future is dropped.
        let guard = AwaitGuard {
            state: self.state,
            token,
        };
        let outcome = poll_fn(|cx| {
            self.state.with(|sh| {
                // A publish still in the outbox whose slot went to a newer
                // token is tracked again now that someone awaits it.
                if !sh.completions.tracks(token)
                    && sh.session.publish_state(PublishToken(token)).is_some()
                    && !sh.completions.track(token, Hold::Firm)
                {
                    // Every slot is awaited: wait for one to come free.
                    sh.outbox_waiters.register(cx.waker());
                    return Poll::Pending;
                }
                let polled = sh.completions.poll(token, cx);
                if polled.is_ready() {
                    // A slot came free: a publisher may be waiting for one.
                    sh.outbox_waiters.wake();
                }
                polled
            })
        })
        .await;
        core::mem::forget(guard);
        outcome
    }
}

/// Takes a held record back out of the outbox if the publish future is
/// dropped while its durable copy is being written.
struct HeldGuard<
    's,
    'b,
    M: RawMutex,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const T: usize,
    const E: usize,
> {
    state: &'s ClientState<'b, M, I, S, F, A, St, T, E>,
    token: PublishToken,
}

impl<
    M: RawMutex,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const T: usize,
    const E: usize,
> Drop for HeldGuard<'_, '_, M, I, S, F, A, St, T, E>
{
    fn drop(&mut self) {
        let token = self.token;
        self.state.with(|sh| {
            sh.session.cancel_held(token);
            sh.completions.untrack(token.0);
            // The room it took is free again.
            sh.outbox_waiters.wake();
        });
    }
}

/// Tells the completion table that nobody awaits `token` any more when a
/// [`Client::completion`] (or subscribe) future is dropped before its
/// outcome came: the slot keeps the outcome for a later await, but may
/// be given to another token once finished.
struct AwaitGuard<
    's,
    'b,
    M: RawMutex,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const T: usize,
    const E: usize,
> {
    state: &'s ClientState<'b, M, I, S, F, A, St, T, E>,
    token: u32,
}

impl<
    M: RawMutex,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const T: usize,
    const E: usize,
> Drop for AwaitGuard<'_, '_, M, I, S, F, A, St, T, E>
{
    fn drop(&mut self) {
        let token = self.token;
        self.state.with(|sh| sh.completions.unawait(token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::task::Waker;

    fn poll<const N: usize>(
        c: &mut Completions<N>,
        token: u32,
    ) -> Poll<Result<Outcome, ClientError>> {
        c.poll(token, &mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn handle_is_copy_send_and_sync_with_a_critical_section_mutex() {
        use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
        fn shareable<T: Copy + Send + Sync>() {}
        shareable::<Client<'static, 'static, CriticalSectionRawMutex, 4, 2>>();
        fn sync<T: Sync>() {}
        sync::<ClientState<'static, CriticalSectionRawMutex, 4, 2>>();
    }

    #[test]
    fn completion_before_the_wait_is_kept_and_taken_once() {
        let mut c = Completions::<TRACKED_COMPLETIONS>::new();
        c.track(7, Hold::Firm);
        c.complete(7, Outcome::Publish(Ok(())));
        assert_eq!(poll(&mut c, 7), Poll::Ready(Ok(Outcome::Publish(Ok(())))));
        assert_eq!(
            poll(&mut c, 7),
            Poll::Ready(Err(ClientError::TokenNotTracked))
        );
    }

    #[test]
    fn peek_does_not_take_the_outcome_and_untrack_forgets_the_token() {
        let mut c = Completions::<TRACKED_COMPLETIONS>::new();
        c.track(3, Hold::Firm);
        assert_eq!(c.peek(3), Some(None));
        c.complete(3, Outcome::Publish(Ok(())));
        assert_eq!(c.peek(3), Some(Some(Outcome::Publish(Ok(())))));
        assert_eq!(poll(&mut c, 3), Poll::Ready(Ok(Outcome::Publish(Ok(())))));
        assert_eq!(c.peek(3), None);
        c.track(4, Hold::Firm);
        c.untrack(4);
        assert_eq!(c.peek(4), None);
        assert_eq!(
            poll(&mut c, 4),
            Poll::Ready(Err(ClientError::TokenNotTracked))
        );
    }

    #[test]
    fn pending_until_completed() {
        let mut c = Completions::<TRACKED_COMPLETIONS>::new();
        c.track(1, Hold::Firm);
        assert_eq!(poll(&mut c, 1), Poll::Pending);
        c.complete(1, Outcome::Publish(Err(PublishFailure::Dropped)));
        assert_eq!(
            poll(&mut c, 1),
            Poll::Ready(Ok(Outcome::Publish(Err(PublishFailure::Dropped))))
        );
    }

    #[test]
    fn a_full_table_gives_away_finished_slots_first_and_never_awaited_ones() {
        let mut c = Completions::<4>::new();
        for t in 1..=4 {
            assert!(c.track(t, Hold::Firm));
        }
        // 1 and 2 are awaited; 3 finished while nobody awaited it.
        assert_eq!(poll(&mut c, 1), Poll::Pending);
        assert_eq!(poll(&mut c, 2), Poll::Pending);
        c.complete(3, Outcome::Publish(Ok(())));
        // QoS 0 may take the finished slot, not an unfinished QoS 1/2 one.
        assert!(c.track(5, Hold::Loose));
        assert_eq!(
            poll(&mut c, 3),
            Poll::Ready(Err(ClientError::TokenNotTracked))
        );
        // QoS 1/2 takes the loose one first, then the oldest unawaited
        // unfinished QoS 1/2 one (4), never an awaited one.
        assert!(c.track(6, Hold::Firm));
        assert!(c.tracks(4));
        assert!(!c.track(7, Hold::Loose));
        assert!(c.track(7, Hold::Firm));
        assert!(!c.tracks(4));
        for t in [1, 2] {
            assert_eq!(poll(&mut c, t), Poll::Pending, "token {t}");
        }
        // With every slot awaited, there is no room at all.
        assert_eq!(poll(&mut c, 6), Poll::Pending);
        assert_eq!(poll(&mut c, 7), Poll::Pending);
        assert!(!c.has_room());
        assert!(!c.track(8, Hold::Firm));
    }

    #[test]
    fn an_awaited_token_is_never_evicted_even_when_finished() {
        let mut c = Completions::<2>::new();
        assert!(c.track(1, Hold::Firm));
        assert!(c.track(2, Hold::Firm));
        assert_eq!(poll(&mut c, 2), Poll::Pending);
        // 1 is awaited (polled), then finishes.
        assert_eq!(poll(&mut c, 1), Poll::Pending);
        c.complete(1, Outcome::Publish(Ok(())));
        assert!(!c.has_room(), "awaited outcome kept");
        assert_eq!(poll(&mut c, 1), Poll::Ready(Ok(Outcome::Publish(Ok(())))));
        assert!(c.has_room(), "taken outcome frees the slot");
        // A dropped await gives the finished slot back to the table.
        assert!(c.track(3, Hold::Firm));
        assert_eq!(poll(&mut c, 3), Poll::Pending);
        c.complete(3, Outcome::Publish(Ok(())));
        assert!(!c.has_room());
        c.unawait(3);
        assert!(c.has_room());
    }

    #[test]
    fn qos0_never_takes_a_slot_from_an_unfinished_qos1_token() {
        let mut c = Completions::<2>::new();
        assert!(c.track(1, Hold::Loose));
        assert!(c.track(2, Hold::Firm));
        // The loose QoS 0 slot goes to a QoS 1/2 token that needs it.
        assert!(c.track(3, Hold::Firm));
        assert_eq!(
            poll(&mut c, 1),
            Poll::Ready(Err(ClientError::TokenNotTracked))
        );
        // A table of unfinished QoS 1/2 tokens has no slot for QoS 0.
        assert!(!c.track(4, Hold::Loose));
        // An awaited QoS 0 token is kept like any other.
        let mut c = Completions::<1>::new();
        assert!(c.track(9, Hold::Loose));
        assert_eq!(poll(&mut c, 9), Poll::Pending);
        assert!(!c.track(10, Hold::Firm));
    }
}
