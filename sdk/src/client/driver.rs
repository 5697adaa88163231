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
use core::task::Poll;

use embassy_futures::select::{Either, Either3, select, select3};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embedded_io_async::{Error as _, Read, Write};

use super::state::Outcome;
use super::{Backoff, ClientError, ClientState, Event, EventHandler, TRACKED_COMPLETIONS};
use crate::clock::Clock;
use crate::session::{self, CloseReason, Incoming};
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

/// How one link ended. Deliberately not generic over the connector's
/// error, so no type naming `C::Error` is held across the link's awaits
/// (it only makes rustc's `Send` reasoning harder).
enum LinkEnd {
    /// The link closed (by either side, or on an I/O error); the session
    /// has been told. `accepted`: CONNACK had accepted it.
    Closed {
        accepted: bool,
        failure: ClientError,
        /// The session closed the link (DISCONNECT sent where there was
        /// one) and the transport still works: end it politely.
        polite: bool,
    },
    /// Unrecoverable: the lent buffers cannot carry the traffic.
    Fatal(ClientError),
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
) -> Drained {
    let mut drained = Drained::default();
    loop {
        let event = state.with(|sh| {
            let event = sh.session.poll_event()?;
            match event {
                session::Event::PublishComplete { token, result } => {
                    sh.completions.complete(token.0, Outcome::Publish(result));
                }
                session::Event::Subscribed { token, results }
                | session::Event::Unsubscribed { token, results } => {
                    sh.completions.complete(token.0, Outcome::Filters(results));
                }
                _ => {}
            }
            Some(event)
        });
        let Some(event) = event else { break };
        drained.events = drained.events.saturating_add(1);
        match event {
            session::Event::Connected { .. } => drained.accepted = true,
            session::Event::Disconnected { reason } => drained.closed = Some(reason),
            _ => {}
        }
        handler.on_event(Event::from_session(event)).await;
    }
    state.with(|sh| sh.outbox_waiters.wake());
    if St::DURABLE {
        remove_stored(state).await;
        replay_stored(state).await;
    }
    drained
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

/// What [`drain_events`] saw.
#[derive(Default)]
struct Drained {
    /// CONNACK accepted the link.
    accepted: bool,
    /// The session reported the link over, with this reason.
    closed: Option<CloseReason>,
    /// How many events were handed over.
    events: u32,
}

/// Writes everything the session has to send: as many packets as fit the
/// transmit buffer go out in one write, and one flush ends it all. A write
/// or flush that makes no progress for the session's
/// [`write_stall_timeout`](crate::session::Session::write_stall_timeout)
/// gives the link up ([`LinkError::Stalled`]).
async fn transmit<
    M: RawMutex,
    T: Write,
    K: Clock,
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
    tx: &mut [u8],
) -> Result<bool, LinkError> {
    let mut wrote = false;
    loop {
        let (next, stall) = state.with(|sh| {
            (
                sh.session.poll_transmit_batch(clock.now(), tx),
                sh.session.write_stall_timeout(),
            )
        });
        match next {
            Ok(0) => break,
            Ok(n) => {
                let bytes = tx.get(..n).unwrap_or(&[]);
                write_all_within(transport, clock, bytes, stall).await?;
                wrote = true;
            }
            Err(e) => return Err(LinkError::Fatal(ClientError::Session(e))),
        }
    }
    if wrote {
        let stall = state.with(|sh| sh.session.write_stall_timeout());
        match select(transport.flush(), clock.sleep_until(clock.now() + stall)).await {
            Either::First(result) => result.map_err(|e| LinkError::Io(e.kind()))?,
            Either::Second(()) => return Err(LinkError::Stalled),
        }
        state.with(|sh| sh.session.confirm_transmitted());
    }
    Ok(wrote)
}

/// Writes all of `bytes`, giving up when one write call takes none of
/// them for `stall` (the peer stopped reading: without a bound, keepalive
/// and a stop request would wait behind the write for ever). The write
/// future is dropped then, so the transport may hold part of a frame: the
/// link is abandoned anyway.
async fn write_all_within<T: Write, K: Clock>(
    transport: &mut T,
    clock: &K,
    mut bytes: &[u8],
    stall: Duration,
) -> Result<(), LinkError> {
    while !bytes.is_empty() {
        let deadline = clock.now() + stall;
        match select(transport.write(bytes), clock.sleep_until(deadline)).await {
            Either::First(Ok(0)) => {
                return Err(LinkError::Io(embedded_io_async::ErrorKind::WriteZero));
            }
            Either::First(Ok(n)) => bytes = bytes.get(n..).unwrap_or(&[]),
            Either::First(Err(e)) => return Err(LinkError::Io(e.kind())),
            Either::Second(()) => return Err(LinkError::Stalled),
        }
    }
    Ok(())
}

enum LinkError {
    Io(embedded_io_async::ErrorKind),
    /// A write made no progress for the write-stall timeout.
    Stalled,
    Fatal(ClientError),
}

/// Takes `n` bytes just read into `rx[filled..]`: the first `skip` of them
/// belong to a packet being skipped and are dropped (the rest moves down
/// over them). Returns the new fill level.
fn absorb(rx: &mut [u8], filled: usize, n: usize, skip: &mut usize) -> usize {
    let end = filled.saturating_add(n).min(rx.len());
    let dropped = (*skip).min(end.saturating_sub(filled));
    *skip -= dropped;
    if dropped > 0 {
        rx.copy_within(filled + dropped..end, filled);
    }
    end - dropped
}

/// How many reads [`serve`] makes without waiting, after handling received
/// packets, before it sends the answers: with the byte bound
/// ([`session::BATCH_BYTES`] handled), it keeps a flood of incoming
/// messages from holding back what we have to send, and large messages
/// from holding back their acknowledgements.
const EAGER_READS: u32 = 16;

/// Serves one open transport until it closes.
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
    if let Err(e) = state.with(|sh| sh.session.handle_connected(clock.now())) {
        return LinkEnd::Fatal(ClientError::Session(e));
    }
    let mut accepted = false;
    // Received bytes are `rx[start..filled]`: handled packets advance
    // `start`, and the rest moves to the front once, before the next read.
    let mut filled = 0usize;
    let mut start = 0usize;
    // Bytes of a skipped (oversized) packet still to come: read and
    // dropped, never buffered.
    let mut skip = 0usize;
    // Why the link ended: an I/O error, else what the session said.
    let mut io_failure = None;
    // The session ended the link, which still works (see `LinkEnd`).
    let mut polite = false;
    let mut closed = None;
    'link: loop {
        let wrote = match transmit(state, transport, clock, tx).await {
            Ok(wrote) => wrote,
            Err(LinkError::Io(kind)) => {
                io_failure = Some(kind);
                break;
            }
            Err(LinkError::Stalled) => {
                warn!("closing the link: the peer stopped reading");
                state.with(|sh| sh.session.handle_write_stalled());
                closed = Some(CloseReason::WriteStalled);
                break;
            }
            Err(LinkError::Fatal(e)) => return LinkEnd::Fatal(e),
        };
        let drained = drain_events(state, handler).await;
        accepted |= drained.accepted;
        closed = drained.closed.or(closed);
        let (wants_close, stop, up) =
            state.with(|sh| (sh.session.wants_close(), sh.stop, sh.session.is_connected()));
        if wants_close {
            polite = true;
            break;
        }
        if stop {
            // A polite DISCONNECT (or none before CONNACK), then close.
            if state.with(|sh| sh.session.disconnect()).is_err() || !up {
                polite = true;
                break;
            }
            continue;
        }
        // Completions wait in the outbox while the session's event queue
        // is full: once drained, more may be due without any input or
        // queued work to wake the wait below.
        if wrote && drained.events > 0 {
            continue;
        }
        // Handle every complete packet received, reading on while more
        // bytes are already here, so that the answers to all of them go
        // out together (one write) before the next wait.
        let mut handled = false;
        let mut handled_bytes = 0usize;
        let mut eager_reads = EAGER_READS;
        loop {
            while start < filled {
                let bytes = rx.get(start..filled).unwrap_or(&[]);
                match state.with(|sh| sh.session.handle_incoming(bytes, clock.now())) {
                    Ok(Incoming::Packet { len, message, .. }) => {
                        if let Some(mut message) = message {
                            // Events queued before this message (CONNACK's
                            // Connected, completions) come first.
                            if state.with(|sh| sh.session.has_events()) {
                                let drained = drain_events(state, handler).await;
                                accepted |= drained.accepted;
                                closed = drained.closed.or(closed);
                            }
                            // 5.0 §3.3.2.3.4: a PUBLISH that carries only a
                            // Topic Alias gets the topic the alias stands for.
                            let mut aliased = heapless::String::<F>::new();
                            if message.topic.is_empty()
                                && let Some(alias) = message.topic_alias
                            {
                                state.with(|sh| {
                                    if let Some(topic) = sh.session.inbound_alias_topic(alias) {
                                        let _ = aliased.push_str(topic);
                                    }
                                });
                                message.topic = aliased.as_str();
                            }
                            handler.on_event(Event::Message(message)).await;
                        }
                        start = start.saturating_add(len).min(filled);
                        handled_bytes = handled_bytes.saturating_add(len);
                        handled = true;
                    }
                    Ok(Incoming::Skipped {
                        len,
                        topic,
                        qos,
                        duplicate,
                    }) => {
                        if state.with(|sh| sh.session.has_events()) {
                            let drained = drain_events(state, handler).await;
                            accepted |= drained.accepted;
                            closed = drained.closed.or(closed);
                        }
                        warn!(
                            "skipped a message of {} bytes: larger than the receive buffer",
                            len
                        );
                        handler
                            .on_event(Event::MessageSkipped {
                                topic,
                                len,
                                qos,
                                duplicate,
                            })
                            .await;
                        // Consume what is here; stream past the rest.
                        let here = filled.saturating_sub(start);
                        skip = len.saturating_sub(here);
                        start = start.saturating_add(len).min(filled);
                        handled_bytes = handled_bytes.saturating_add(len.min(here));
                        handled = true;
                    }
                    // Transmit and drain, then parse again.
                    Ok(Incoming::Backpressure) => continue 'link,
                    Ok(Incoming::Incomplete { needed }) => {
                        if start == 0 && filled == rx.len() {
                            let e = ClientError::RxBufferTooSmall {
                                needed: filled.saturating_add(needed),
                                capacity: rx.len(),
                            };
                            // 5.0: DISCONNECT 0x95 (Packet too large) tells the
                            // broker why and keeps the will; a normal DISCONNECT
                            // would make it discard the will.
                            state.with(|sh| {
                                sh.session
                                    .close_with_error(crate::codec::ReasonCode::PACKET_TOO_LARGE)
                            });
                            let _ = transmit(state, transport, clock, tx).await;
                            return LinkEnd::Fatal(e);
                        }
                        break;
                    }
                    Err(_e) => {
                        // The session has moved to closing (5.0: a DISCONNECT
                        // with the reason is queued); the loop sends it and
                        // closes.
                        warn!("closing the link: received packet rejected");
                        continue 'link;
                    }
                }
            }
            if start > 0 {
                rx.copy_within(start..filled, 0);
                filled -= start;
                start = 0;
            }
            if !handled || eager_reads == 0 || handled_bytes >= session::BATCH_BYTES {
                break;
            }
            eager_reads -= 1;
            // Only what is ready now: a pending read is dropped (reads are
            // cancel-safe, as the wait below needs too).
            let free = rx.get_mut(filled..).unwrap_or(&mut []);
            let ended = match embassy_futures::poll_once(transport.read(free)) {
                Poll::Ready(Ok(0)) => None,
                Poll::Ready(Ok(n)) => {
                    filled = absorb(rx, filled, n, &mut skip);
                    continue;
                }
                Poll::Ready(Err(e)) => Some(e.kind()),
                Poll::Pending => break,
            };
            // The link ended behind what was just handled (a refusing
            // CONNACK, a DISCONNECT): its events say why.
            io_failure = ended;
            let drained = drain_events(state, handler).await;
            accepted |= drained.accepted;
            closed = drained.closed.or(closed);
            break 'link;
        }
        if handled {
            // Answer what was handled before waiting.
            continue;
        }
        // Wait for bytes, the session's deadline, or queued work.
        let deadline = state.with(|sh| sh.session.poll_timeout());
        let timer = async {
            match deadline {
                Some(at) => clock.sleep_until(at).await,
                None => core::future::pending().await,
            }
        };
        let free = rx.get_mut(filled..).unwrap_or(&mut []);
        match select3(transport.read(free), timer, state.work.wait()).await {
            Either3::First(Ok(0)) => break,
            Either3::First(Ok(n)) => {
                filled = absorb(rx, filled, n, &mut skip);
                // `select3` polls the read first: while input is always
                // ready (a flood), the timer branch would never win, and
                // no PINGREQ would go out. A lapsed deadline is handled
                // here as well.
                let now = clock.now();
                if deadline.is_some_and(|at| now >= at) {
                    state.with(|sh| sh.session.handle_timeout(now));
                }
            }
            Either3::First(Err(e)) => {
                io_failure = Some(e.kind());
                break;
            }
            Either3::Second(()) => state.with(|sh| sh.session.handle_timeout(clock.now())),
            Either3::Third(()) => {}
        }
    }
    let failure = match (io_failure, closed) {
        (Some(kind), _) => ClientError::Io(kind),
        (None, Some(reason)) => ClientError::Link(reason),
        (None, None) => ClientError::Link(CloseReason::TransportClosed),
    };
    LinkEnd::Closed {
        accepted,
        failure,
        polite: polite && io_failure.is_none(),
    }
}
