//! The state the application tasks and the driver share, and the
//! [`Client`] handle the application tasks hold.
//!
//! The [`Session`] lives in an `embassy_sync` blocking mutex around a
//! `RefCell`; every access is one short synchronous closure, never held
//! across an `.await`, so a publishing task and the driver task cannot
//! deadlock on it. A task that must wait (outbox full, completion not yet
//! in) registers its waker under the same lock and is woken by the driver.
//! The driver itself is woken by a [`Signal`] when work is queued.

use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::signal::Signal;
use embassy_sync::waitqueue::{MultiWakerRegistration, WakerRegistration};

use super::ClientError;
use crate::codec::Subscription;
use crate::session::{
    FilterResults, OutgoingMessage, OverflowPolicy, PublishFailure, PublishToken, Session,
    SessionConfig, SessionError,
};

/// Completions (publish or subscribe/unsubscribe results) kept for awaiting
/// callers. A caller that awaits more tokens at once than this sees the
/// oldest ones answered with [`ClientError::TokenNotTracked`].
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

struct Slot {
    /// The token this slot tracks; meaningful while `used`.
    token: u32,
    used: bool,
    done: Option<Outcome>,
    waker: WakerRegistration,
}

/// A fixed table of tokens some caller may await.
pub(crate) struct Completions {
    slots: [Slot; TRACKED_COMPLETIONS],
}

impl Completions {
    fn new() -> Self {
        Self {
            slots: core::array::from_fn(|_| Slot {
                token: 0,
                used: false,
                done: None,
                waker: WakerRegistration::new(),
            }),
        }
    }

    /// Starts tracking `token`, evicting the oldest finished slot, else the
    /// oldest pending one (whose waiter then learns it is untracked).
    fn track(&mut self, token: u32) {
        let index = self
            .slots
            .iter()
            .position(|s| !s.used)
            .or_else(|| Self::oldest(&self.slots, |s| s.done.is_some()))
            .or_else(|| Self::oldest(&self.slots, |_| true));
        if let Some(slot) = index.and_then(|i| self.slots.get_mut(i)) {
            slot.waker.wake();
            slot.token = token;
            slot.used = true;
            slot.done = None;
        }
    }

    fn oldest(slots: &[Slot], filter: impl Fn(&Slot) -> bool) -> Option<usize> {
        slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.used && filter(s))
            .min_by_key(|(_, s)| s.token)
            .map(|(i, _)| i)
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

    fn poll(&mut self, token: u32, cx: &mut Context<'_>) -> Poll<Result<Outcome, ClientError>> {
        let Some(slot) = self.slots.iter_mut().find(|s| s.used && s.token == token) else {
            return Poll::Ready(Err(ClientError::TokenNotTracked));
        };
        match slot.done.take() {
            Some(outcome) => {
                slot.used = false;
                Poll::Ready(Ok(outcome))
            }
            None => {
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
> {
    pub(crate) session: Session<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES>,
    pub(crate) completions: Completions,
    pub(crate) outbox_waiters: MultiWakerRegistration<OUTBOX_WAITERS>,
    /// The application asked the client to stop.
    pub(crate) stop: bool,
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
pub struct ClientState<
    'b,
    M: RawMutex,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize = 128,
    const ALIASES: usize = 0,
> {
    pub(crate) shared: Mutex<M, RefCell<Shared<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES>>>,
    /// Work was queued (or stop requested): the driver should look.
    pub(crate) work: Signal<M, ()>,
}

impl<
    'b,
    M: RawMutex,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
> ClientState<'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES>
{
    /// A client state for `config`, queuing publishes in the lent `outbox`
    /// (its size bounds the bytes of queued and in-flight messages).
    pub fn new(config: SessionConfig<'b>, outbox: &'b mut [u8]) -> Self {
        Self {
            shared: Mutex::new(RefCell::new(Shared {
                session: Session::new(config, outbox),
                completions: Completions::new(),
                outbox_waiters: MultiWakerRegistration::new(),
                stop: false,
            })),
            work: Signal::new(),
        }
    }

    /// A handle for publishing, subscribing and stopping; copy it freely.
    pub fn client(&self) -> Client<'_, 'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES> {
        Client { state: self }
    }

    /// Runs `f` on the shared state under the lock (never across an await).
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut Shared<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES>) -> R,
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
> {
    state: &'s ClientState<'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES>,
}

impl<M: RawMutex, const I: usize, const S: usize, const F: usize, const A: usize> Clone
    for Client<'_, '_, M, I, S, F, A>
{
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: RawMutex, const I: usize, const S: usize, const F: usize, const A: usize> Copy
    for Client<'_, '_, M, I, S, F, A>
{
}

impl<
    's,
    'b,
    M: RawMutex,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
> Client<'s, 'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES>
{
    /// Queues `msg`, waiting while the outbox has no room for it, and
    /// returns its token once queued (not once sent: await
    /// [`completion`](Self::completion) for that).
    ///
    /// Cancel-safe: the message is queued only in the poll that returns
    /// `Ready(Ok)`; dropping the future earlier queues nothing. A message
    /// larger than the whole outbox fails at once with
    /// [`SessionError::OutboxFull`].
    pub async fn publish(&self, msg: &OutgoingMessage<'_>) -> Result<PublishToken, ClientError> {
        poll_fn(|cx| {
            let queued = self.state.with(|sh| {
                match sh.session.publish(msg) {
                    Ok(token) => {
                        sh.completions.track(token.0);
                        Poll::Ready(Ok(token))
                    }
                    Err(SessionError::OutboxFull {
                        needed, capacity, ..
                    }) if needed <= capacity => {
                        // Woken by the driver when acknowledgements free room.
                        sh.outbox_waiters.register(cx.waker());
                        Poll::Pending
                    }
                    Err(e) => Poll::Ready(Err(ClientError::Session(e))),
                }
            });
            if matches!(queued, Poll::Ready(Ok(_))) {
                self.state.work.signal(());
            }
            queued
        })
        .await
    }

    /// Queues `msg` without waiting. When the outbox has no room, `policy`
    /// decides: refuse the new message ([`SessionError::OutboxFull`]) or
    /// drop the oldest unsent QoS 0 messages (each completes with
    /// [`PublishFailure::Dropped`]).
    pub fn try_publish(
        &self,
        msg: &OutgoingMessage<'_>,
        policy: OverflowPolicy,
    ) -> Result<PublishToken, ClientError> {
        let token = self.state.with(|sh| {
            let token = sh.session.publish_with_policy(msg, policy)?;
            sh.completions.track(token.0);
            Ok::<_, SessionError>(token)
        })?;
        self.state.work.signal(());
        Ok(token)
    }

    /// Waits until the publish `token` completed: sent (QoS 0), PUBACK
    /// (QoS 1) or PUBCOMP (QoS 2); a failure comes back as
    /// [`ClientError::Publish`] with its reason. Only the latest
    /// [`TRACKED_COMPLETIONS`] tokens are kept; an older one, or one already
    /// awaited, gives [`ClientError::TokenNotTracked`]. Every completion is
    /// also an [`Event::PublishComplete`](super::Event::PublishComplete).
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
        let token = self.state.with(|sh| {
            let token = sh.session.subscribe(subs)?;
            sh.completions.track(token.0);
            Ok::<_, SessionError>(token)
        })?;
        self.state.work.signal(());
        match self.wait(token.0).await? {
            Outcome::Filters(results) => Ok(results),
            Outcome::Publish(_) => Err(ClientError::TokenNotTracked),
        }
    }

    /// Unsubscribes from up to [`MAX_FILTERS_PER_REQUEST`](crate::session::MAX_FILTERS_PER_REQUEST)
    /// filters and waits for the UNSUBACK (5.0: a reason code per filter;
    /// 3.1.1: all Success). Cancellation as for [`subscribe`](Self::subscribe).
    pub async fn unsubscribe(&self, filters: &[&str]) -> Result<FilterResults, ClientError> {
        let token = self.state.with(|sh| {
            let token = sh.session.unsubscribe(filters)?;
            sh.completions.track(token.0);
            Ok::<_, SessionError>(token)
        })?;
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

    /// Whether CONNACK accepted the current link.
    pub fn is_connected(&self) -> bool {
        self.state.with(|sh| sh.session.is_connected())
    }

    /// Messages in the outbox (queued or in flight).
    pub fn outbox_len(&self) -> usize {
        self.state.with(|sh| sh.session.outbox_len())
    }

    async fn wait(&self, token: u32) -> Result<Outcome, ClientError> {
        poll_fn(|cx| self.state.with(|sh| sh.completions.poll(token, cx))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::task::Waker;

    fn poll(c: &mut Completions, token: u32) -> Poll<Result<Outcome, ClientError>> {
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
        let mut c = Completions::new();
        c.track(7);
        c.complete(7, Outcome::Publish(Ok(())));
        assert_eq!(poll(&mut c, 7), Poll::Ready(Ok(Outcome::Publish(Ok(())))));
        assert_eq!(
            poll(&mut c, 7),
            Poll::Ready(Err(ClientError::TokenNotTracked))
        );
    }

    #[test]
    fn pending_until_completed() {
        let mut c = Completions::new();
        c.track(1);
        assert_eq!(poll(&mut c, 1), Poll::Pending);
        c.complete(1, Outcome::Publish(Err(PublishFailure::Dropped)));
        assert_eq!(
            poll(&mut c, 1),
            Poll::Ready(Ok(Outcome::Publish(Err(PublishFailure::Dropped))))
        );
    }

    #[test]
    fn a_full_table_evicts_finished_slots_before_pending_ones() {
        let mut c = Completions::new();
        for t in 1..=TRACKED_COMPLETIONS as u32 {
            c.track(t);
        }
        c.complete(5, Outcome::Publish(Ok(())));
        c.track(100);
        // 5 was finished and is gone; 1 (oldest pending) is still tracked.
        assert_eq!(
            poll(&mut c, 5),
            Poll::Ready(Err(ClientError::TokenNotTracked))
        );
        assert_eq!(poll(&mut c, 1), Poll::Pending);
        c.track(101);
        assert_eq!(
            poll(&mut c, 1),
            Poll::Ready(Err(ClientError::TokenNotTracked))
        );
        assert_eq!(poll(&mut c, 100), Poll::Pending);
    }
}
