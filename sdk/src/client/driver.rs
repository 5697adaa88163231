//! The driver: [`Connection::run`] connects, pumps bytes between the
//! transport and the session, fires the session's timers, hands events to
//! the handler and reconnects with backoff.
//!
//! The polling order is the session's (see [`crate::session`]): transmit
//! everything, drain the events, close when the session asks, handle one
//! buffered packet, and only then wait for the transport, the deadline or
//! queued work. The clock is read here and nowhere else in the client.

use core::future::Future;
use core::pin::pin;

use embassy_futures::select::{Either, Either3, select, select3};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embedded_io_async::{Error as _, Read, Write};

use super::pump::{Io, LinkEnd, Pump, ReadEnd, Until, Wrote, next_event};
use super::{Backoff, ClientError, ClientState, Event, EventHandler, TRACKED_COMPLETIONS};
use crate::clock::Clock;
use crate::session::{self, CloseReason};
use crate::store::{NoStore, Store};
use crate::time::Duration;
use crate::transport::{Connector, Transport as _};

/// The driver's settings besides the session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Reconnect spacing and the number of attempts.
    pub backoff: Backoff,
    /// The longest one connect attempt (DNS, TCP, TLS, WebSocket upgrade)
    /// may take. CONNACK is bounded separately by the session's
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// The longest the polite end of a link may take once the session
    /// closed it (the WebSocket closing handshake: our Close and the
    /// peer's echo, RFC 6455 §7.1.1); see
    /// [`Transport::close`](crate::transport::Transport::close).
    pub close_timeout: Duration,
}

impl ClientConfig {
    /// [`Backoff::DEFAULT`], a 10 s connect timeout and a 1 s close
    /// timeout.
    pub const DEFAULT: ClientConfig = ClientConfig {
        backoff: Backoff::DEFAULT,
        connect_timeout: Duration::from_secs(10),
        close_timeout: Duration::from_secs(1),
    };
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The driver of one client: owns the connector, the clock, the RNG for
/// jitter and the lent receive and transmit buffers, and borrows the shared
/// [`ClientState`].
pub struct Connection<
    's,
    'b,
    M: RawMutex,
    C,
    K,
    R,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize = 128,
    const ALIASES: usize = 0,
    St: Store = NoStore,
    const TOKENS: usize = TRACKED_COMPLETIONS,
    const EVENTS: usize = { session::EVENT_QUEUE_LEN },
> {
    state: &'s ClientState<'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES, St, TOKENS, EVENTS>,
    connector: C,
    clock: K,
    rng: R,
    rx: &'s mut [u8],
    tx: &'s mut [u8],
    config: ClientConfig,
}

impl<
    's,
    'b,
    M: RawMutex,
    C: Connector,
    K: Clock,
    R: rand_core::RngCore,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
    St: Store,
    const TOKENS: usize,
    const EVENTS: usize,
> Connection<'s, 'b, M, C, K, R, INFLIGHT, SUBS, FILTER_LEN, ALIASES, St, TOKENS, EVENTS>
{
    /// A driver for `state` over `connector`.
    ///
    /// `rx` must hold the largest packet the broker may send (keep the
    /// session's `max_incoming_packet_size` at or below its length); `tx`
    /// the largest packet we send (CONNECT with its will, or a PUBLISH).
    ///
    /// The session is told `tx`'s size, so a publish that can never fit it
    /// is refused when queued, and a queued one that does not fit fails
    /// alone ([`PublishFailure::TransmitBufferTooSmall`](crate::session::PublishFailure::TransmitBufferTooSmall)).
    pub fn new(
        state: &'s ClientState<'b, M, INFLIGHT, SUBS, FILTER_LEN, ALIASES, St, TOKENS, EVENTS>,
        connector: C,
        clock: K,
        rng: R,
        rx: &'s mut [u8],
        tx: &'s mut [u8],
        config: ClientConfig,
    ) -> Self {
        state.with(|sh| {
            sh.session.set_transmit_capacity(tx.len());
            sh.session.set_receive_capacity(rx.len());
            // QoS 0 completes once its bytes are written, not when encoded.
            sh.session.set_transmit_confirmation(true);
        });
        Self {
            state,
            connector,
            clock,
            rng,
            rx,
            tx,
            config,
        }
    }

    /// The connector (e.g. to change its settings before [`run`](Self::run)).
    pub fn connector_mut(&mut self) -> &mut C {
        &mut self.connector
    }

    /// Runs the client until [`Client::stop`](super::Client::stop) (then
    /// `Ok(())`), until the [`Backoff::max_attempts`] reconnect attempts
    /// after a failure failed too (then the last failure), or until a lent
    /// buffer proves too small (then that error).
    ///
    /// Every event goes to `handler`, in order.
    ///
    /// With a durable [`Store`], its records are replayed into the outbox
    /// first (unless a publish did it already), as many as fit; the rest
    /// as acknowledgements free room. A failed replay (a store error) is
    /// logged and the client connects anyway; the replay is tried again
    /// before each connect attempt and before the next QoS 1/2 publish.
    /// Acknowledged messages are removed from the store as their
    /// acknowledgements arrive.
    ///
    /// On tokio's multi-threaded runtime, spawn the future `run` returns
    /// directly (`tokio::spawn(conn.run(handler))`): wrapped in another
    /// `async` block, rustc currently cannot prove it `Send` for a connector
    /// that carries a lifetime such as `WsConnector<'b, ..>` ("implementation
    /// of `Connector` is not general enough").
    ///
    /// Cancellation: dropping the future drops the link abruptly (no
    /// DISCONNECT, so the broker publishes the will). The session stays in
    /// the [`ClientState`], ready for a new `Connection`: unacknowledged
    /// messages stay in the outbox, subscriptions in their table.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would keep a second copy of `self` and `handler` in its future"
    )]
    pub fn run<H: EventHandler>(
        mut self,
        mut handler: H,
    ) -> impl Future<Output = Result<(), ClientError<C::Error, St::Error>>> {
        // An `async` block using `self` and `handler` in place: an `async
        // fn` moves its arguments into locals of its own, and a
        // destructured `self` is one more copy; each copy stays in the
        // future for the whole run (RAM per device: issue 13's fleet).
        async move {
            let state = self.state;
            let handler = &mut handler;
            // A run dropped mid-link left the session up: start from down.
            state.with(|sh| sh.session.handle_disconnected(self.clock.now()));
            let mut failures: u32 = 0;
            loop {
                if state.with(|sh| sh.stop) {
                    break;
                }
                if St::DURABLE {
                    replay_stored(state).await;
                }
                let deadline = self.clock.now() + self.config.connect_timeout;
                // The open transport has one place in the future: the
                // connect's output is moved straight in, and `serve`
                // borrows it (each move kept across an await would be one
                // more copy of it in the future).
                let mut link = None;
                // Connect, bounded by the timeout; a stop request abandons
                // it (`None`). `Ok`: the transport is in `link`.
                let connected = {
                    let mut connect = pin!(self.connector.connect());
                    loop {
                        match select3(
                            connect.as_mut(),
                            self.clock.sleep_until(deadline),
                            state.work.wait(),
                        )
                        .await
                        {
                            Either3::First(Ok(transport)) => {
                                link = Some(transport);
                                break Some(Ok(()));
                            }
                            Either3::First(Err(e)) => {
                                debug!("connect failed");
                                break Some(Err(ClientError::Connect(e)));
                            }
                            Either3::Second(()) => {
                                debug!("connect timed out");
                                break Some(Err(ClientError::ConnectTimeout));
                            }
                            Either3::Third(()) if state.with(|sh| sh.stop) => break None,
                            // Work queued meanwhile goes out once connected;
                            // messages with an expiry are stamped now.
                            Either3::Third(()) => {
                                state.with(|sh| sh.session.handle_timeout(self.clock.now()));
                            }
                        }
                    }
                };
                let Some(connected) = connected else {
                    break;
                };
                let failure = match (connected, link.as_mut()) {
                    (Err(failure), _) => failure,
                    // `Ok` comes with the transport in `link`.
                    (Ok(()), None) => ClientError::Link(CloseReason::TransportClosed),
                    (Ok(()), Some(transport)) => {
                        debug!("transport open");
                        let end = serve(
                            state,
                            transport,
                            &self.clock,
                            &mut *self.rx,
                            &mut *self.tx,
                            handler,
                        )
                        .await;
                        if let LinkEnd::Closed { polite: true, .. } = end {
                            let until = self.clock.now() + self.config.close_timeout;
                            select(transport.close(), self.clock.sleep_until(until)).await;
                        }
                        link = None;
                        state.with(|sh| sh.session.handle_disconnected(self.clock.now()));
                        drain_events(state, handler).await;
                        match end {
                            LinkEnd::Fatal(e) => {
                                return Err(e.with_connector_error().with_store_error());
                            }
                            LinkEnd::Closed {
                                accepted, failure, ..
                            } => {
                                if accepted {
                                    failures = 0;
                                }
                                failure.with_connector_error().with_store_error()
                            }
                        }
                    }
                };
                drop(link);
                if state.with(|sh| sh.stop) {
                    break;
                }
                failures = failures.saturating_add(1);
                if self
                    .config
                    .backoff
                    .max_attempts
                    .is_some_and(|max| failures > max)
                {
                    return Err(failure);
                }
                // Not held across the awaits below (see `LinkEnd`).
                drop(failure);
                let delay = self.config.backoff.delay(failures, &mut self.rng);
                info!(
                    "reconnecting in {} ms (attempt {})",
                    delay.as_millis(),
                    failures
                );
                handler
                    .on_event(Event::Reconnecting {
                        attempt: failures,
                        delay,
                    })
                    .await;
                let until = self.clock.now() + delay;
                // Sleep, but wake early for a stop request, and for the
                // session's deadlines (a queued message's expiry): new
                // messages are stamped and lapsed ones failed while down.
                loop {
                    let wake = state
                        .with(|sh| sh.session.poll_timeout())
                        .map_or(until, |at| at.min(until));
                    match select(self.clock.sleep_until(wake), state.work.wait()).await {
                        Either::First(()) if self.clock.now() >= until => break,
                        Either::Second(()) if state.with(|sh| sh.stop) => break,
                        Either::First(()) | Either::Second(()) => {
                            state.with(|sh| sh.session.handle_timeout(self.clock.now()));
                            drain_events(state, handler).await;
                        }
                    }
                }
            }
            // Stopped: the link (if any) was closed politely in `serve`.
            drain_events(state, handler).await;
            Ok(())
        }
    }
}

/// Hands every queued session event to the handler, completing tracked
/// tokens on the way, then wakes publishers waiting for outbox room.
async fn drain_events<
    M: RawMutex,
    H: EventHandler,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const TK: usize,
    const EV: usize,
>(
    state: &ClientState<'_, M, I, S, F, A, St, TK, EV>,
    handler: &mut H,
) {
    loop {
        let event = next_event(state);
        let Some(event) = event else { break };
        handler.on_event(Event::from_session(event)).await;
    }
    state.with(|sh| sh.outbox_waiters.wake());
    if St::DURABLE {
        remove_stored(state).await;
        replay_stored(state).await;
    }
}

/// Runs a replay pass if stored records still wait for one (the first, or
/// records that did not fit the outbox). A store error is logged, not
/// returned: the client keeps connecting, and the replay is tried again
/// later (and before the next QoS 1/2 publish, which fails with it).
async fn replay_stored<
    M: RawMutex,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const TK: usize,
    const EV: usize,
>(
    state: &ClientState<'_, M, I, S, F, A, St, TK, EV>,
) {
    if !state.with(|sh| sh.replay_pending) {
        return;
    }
    let mut slot = state.store.lock().await;
    if slot.replay_pending() && state.ensure_replayed(&mut slot).await.is_err() {
        warn!("store: replaying stored messages failed; retried later");
    }
}

/// Removes the durable copies of messages that finished. A failure is
/// logged: the message may then be sent again after a restart (a
/// duplicate, never a loss).
async fn remove_stored<
    M: RawMutex,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const TK: usize,
    const EV: usize,
>(
    state: &ClientState<'_, M, I, S, F, A, St, TK, EV>,
) {
    while let Some(key) = state.with(|sh| sh.session.poll_store_removal()) {
        let mut slot = state.store.lock().await;
        slot.settle().await;
        if slot.store.remove(key).await.is_err() {
            warn!("store: removing an acknowledged message failed");
        }
    }
}

/// Serves one open transport until it closes: the thin async half of the
/// serving loop. [`Pump`] decides everything; this performs the I/O it
/// asks for, one await per kind.
async fn serve<
    M: RawMutex,
    T: Read + Write,
    K: Clock,
    H: EventHandler,
    const I: usize,
    const S: usize,
    const F: usize,
    const A: usize,
    St: Store,
    const TK: usize,
    const EV: usize,
>(
    state: &ClientState<'_, M, I, S, F, A, St, TK, EV>,
    transport: &mut T,
    clock: &K,
    rx: &mut [u8],
    tx: &mut [u8],
    handler: &mut H,
) -> LinkEnd {
    let mut pump = Pump::new();
    let mut aliased = heapless::String::<F>::new();
    // The clock is read again only after an await: the synchronous steps
    // between two awaits take no time worth a clock read each (issue 13:
    // one read per step cost about 400 instructions per message on hosts).
    let mut now = clock.now();
    loop {
        match pump.step(state, &mut *rx, &mut *tx, &mut aliased, now) {
            Io::Continue => continue,
            // A write or flush that makes no progress for the session's
            // write-stall timeout gives the link up: without a bound,
            // keepalive and a stop request would wait behind it for ever.
            // The write is dropped then, so the transport may hold part
            // of a frame: the link is abandoned anyway.
            Io::Write { bytes, stall } => {
                let until = now + stall;
                let wrote = match select(transport.write(bytes), clock.sleep_until(until)).await {
                    Either::First(Ok(n)) => Wrote::Done(n),
                    Either::First(Err(e)) => Wrote::Failed(e.kind()),
                    Either::Second(()) => Wrote::Stalled,
                };
                pump.wrote(wrote);
            }
            Io::Flush { stall } => {
                let until = now + stall;
                let flushed = match select(transport.flush(), clock.sleep_until(until)).await {
                    Either::First(Ok(())) => Wrote::Done(0),
                    Either::First(Err(e)) => Wrote::Failed(e.kind()),
                    Either::Second(()) => Wrote::Stalled,
                };
                pump.flushed(flushed);
            }
            Io::Event(event) => handler.on_event(event).await,
            Io::Store => {
                remove_stored(state).await;
                replay_stored(state).await;
            }
            Io::Read { buf, until } => {
                let timer = async {
                    match until {
                        Until::Ready => {}
                        Until::Deadline(Some(at)) => clock.sleep_until(at).await,
                        Until::Deadline(None) => core::future::pending().await,
                    }
                };
                // Polled in this order: the read first, so `Until::Ready`
                // takes what is ready and drops a pending read.
                let read = match select3(transport.read(buf), timer, state.work.wait()).await {
                    Either3::First(Ok(n)) => ReadEnd::Data(n),
                    Either3::First(Err(e)) => ReadEnd::Failed(e.kind()),
                    Either3::Second(()) => ReadEnd::Timer,
                    Either3::Third(()) => ReadEnd::Work,
                };
                pump.read(read);
            }
            Io::End(end) => return end,
        }
        now = clock.now();
    }
}
