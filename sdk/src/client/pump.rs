//! The serving loop's synchronous half: everything the driver does with
//! one open link except waiting. [`Pump::step`] advances by one small step
//! and says which I/O it needs next ([`Io`]); the driver performs it (one
//! await per kind of I/O, see `driver::serve`) and reports the result back
//! (`wrote`, `flushed`, `read`). Parsing, the session's calls, the batch
//! and buffer bookkeeping and every decision live here, in plain code over
//! the lent buffers, so the driver's future holds only the I/O in flight
//! and this struct (issue 15: async state machines cost flash for every
//! live local at every await point; issue 13: they cost RAM per device).
//!
//! The order is the session's (see [`crate::session`]): transmit
//! everything (as many packets as fit the transmit buffer per write, one
//! flush), hand over the events, close when the session asks, handle every
//! buffered packet (reading on while more bytes are already here), and
//! only then wait for the transport, the deadline or queued work.

use embassy_sync::blocking_mutex::raw::RawMutex;
use embedded_io_async::ErrorKind;

use super::state::Outcome;
use super::{ClientError, ClientState, Event};
use crate::codec::wire::move_within;
use crate::session::{self, CloseReason, Incoming};
use crate::store::Store;
use crate::time::{Duration, Instant};

/// How one link ended. Deliberately not generic over the connector's
/// error, so no type naming `C::Error` is held across the link's awaits
/// (it only makes rustc's `Send` reasoning harder).
pub(super) enum LinkEnd {
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

/// The I/O the pump needs next.
pub(super) enum Io<'a> {
    /// Nothing: call [`Pump::step`] again.
    Continue,
    /// Write (part of) `bytes`, giving up when the write takes none of
    /// them for `stall`; report with [`Pump::wrote`].
    Write { bytes: &'a [u8], stall: Duration },
    /// Flush the transport within `stall`; report with [`Pump::flushed`].
    Flush { stall: Duration },
    /// Hand the event to the handler.
    Event(Event<'a>),
    /// A durable store's work: remove the records that finished, replay
    /// the ones still waiting.
    Store,
    /// Read into `buf`, or stop waiting at `until`; report with
    /// [`Pump::read`].
    Read { buf: &'a mut [u8], until: Until },
    /// The link is over.
    End(LinkEnd),
}

/// How long a [`Io::Read`] may wait.
#[derive(Clone, Copy)]
pub(super) enum Until {
    /// Only what is ready now: a pending read is dropped (reads are
    /// cancel-safe), and that is [`ReadEnd::Timer`].
    Ready,
    /// Until the session's deadline (none: until input or queued work).
    Deadline(Option<Instant>),
}

/// How an [`Io::Read`] ended.
#[derive(Clone, Copy)]
pub(super) enum ReadEnd {
    /// `n` bytes arrived (0: the transport ended).
    Data(usize),
    /// The read failed.
    Failed(ErrorKind),
    /// The deadline came first (or, for [`Until::Ready`], nothing was
    /// ready).
    Timer,
    /// Work was queued by the application.
    Work,
}

/// How an [`Io::Write`] or [`Io::Flush`] ended.
#[derive(Clone, Copy)]
pub(super) enum Wrote {
    /// `n` bytes went out (a flush reports 0).
    Done(usize),
    /// The transport failed.
    Failed(ErrorKind),
    /// No progress for the write-stall timeout: the peer stopped reading.
    Stalled,
}

/// Where a pass of handing over events goes on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// To the decisions after a transmit pass.
    Decide,
    /// Back to the buffered packets (events queued before a message are
    /// delivered first).
    Parse,
    /// The link is over.
    End,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Tell the session the link is open.
    Open,
    /// Encode the next batch, or write the rest of this one.
    Transmit,
    /// Flush what was written.
    Flush,
    /// Hand over the session's events, then wake waiting publishers and
    /// run the store's work.
    Drain(Then),
    /// After a transmit pass and its events: close, stop, go on.
    Decide,
    /// Handle the next buffered packet.
    Parse,
    /// Move the unhandled rest to the front; read on or wait.
    Compact,
    /// Wait for input, the deadline or work.
    Wait,
    /// Take what the last read brought (`eager`: it was only what was
    /// ready).
    Absorb { eager: bool },
    /// The flush went through: tell the session (QoS 0 completes then).
    Flushed,
    /// A write or flush made no progress: tell the session, then end.
    Stalled,
    /// Report how the link ended.
    End,
}

/// How many reads the pump makes without waiting, after handling received
/// packets, before it sends the answers: with the byte bound
/// ([`session::BATCH_BYTES`] handled), it keeps a flood of incoming
/// messages from holding back what we have to send, and large messages
/// from holding back their acknowledgements.
const EAGER_READS: u8 = 16;

/// The state of one link's serving loop (see the module doc).
pub(super) struct Pump {
    /// Received bytes are `rx[start..filled]`: handled packets advance
    /// `start`, and the rest moves to the front once, before the next read.
    filled: usize,
    start: usize,
    /// Bytes of a skipped (oversized) packet still to come: read and
    /// dropped, never buffered.
    skip: usize,
    /// The batch being written is `tx[tx_off..tx_len]`.
    tx_off: usize,
    tx_len: usize,
    /// Bytes handled since the last transmit pass.
    handled_bytes: usize,
    /// The session's deadline the current wait was armed with.
    deadline: Option<Instant>,
    /// The last read's outcome, taken by [`Phase::Absorb`].
    last_read: ReadEnd,
    /// Why the link ended: an I/O error, else what the session said.
    io_failure: Option<ErrorKind>,
    closed: Option<CloseReason>,
    /// Unrecoverable; reported once the pending output went out.
    fatal: Option<ClientError>,
    /// Events handed over in this pass.
    drained: u16,
    phase: Phase,
    eager_reads: u8,
    /// This transmit pass wrote something.
    wrote: bool,
    /// Packets were handled since the last transmit pass.
    handled: bool,
    /// CONNACK accepted the link.
    accepted: bool,
    /// The session ended the link, which still works (see [`LinkEnd`]).
    polite: bool,
    /// This pass of handing over events woke the publishers (and ran the
    /// store's work).
    swept: bool,
}

impl Pump {
    pub(super) const fn new() -> Self {
        Self {
            filled: 0,
            start: 0,
            skip: 0,
            tx_off: 0,
            tx_len: 0,
            handled_bytes: 0,
            deadline: None,
            last_read: ReadEnd::Work,
            io_failure: None,
            closed: None,
            fatal: None,
            drained: 0,
            phase: Phase::Open,
            eager_reads: 0,
            wrote: false,
            handled: false,
            accepted: false,
            polite: false,
            swept: false,
        }
    }

    /// Reports how an [`Io::Write`] ended.
    pub(super) fn wrote(&mut self, wrote: Wrote) {
        match wrote {
            Wrote::Done(0) => self.io_failed(ErrorKind::WriteZero),
            Wrote::Done(n) => self.tx_off = self.tx_off.saturating_add(n).min(self.tx_len),
            Wrote::Failed(kind) => self.io_failed(kind),
            Wrote::Stalled => self.phase = Phase::Stalled,
        }
    }

    /// Reports how an [`Io::Flush`] ended.
    pub(super) fn flushed(&mut self, wrote: Wrote) {
        match wrote {
            Wrote::Done(_) => self.phase = Phase::Flushed,
            Wrote::Failed(kind) => self.io_failed(kind),
            Wrote::Stalled => self.phase = Phase::Stalled,
        }
    }

    /// Reports how an [`Io::Read`] ended.
    pub(super) fn read(&mut self, read: ReadEnd) {
        self.last_read = read;
        let eager = matches!(self.phase, Phase::Compact);
        self.phase = Phase::Absorb { eager };
    }

    fn io_failed(&mut self, kind: ErrorKind) {
        self.io_failure = Some(kind);
        self.phase = Phase::End;
    }

    /// Starts a transmit pass.
    fn transmit(&mut self) {
        self.wrote = false;
        self.phase = Phase::Transmit;
    }

    /// Starts handing over events, then goes on with `then`.
    fn drain(&mut self, then: Then) {
        self.swept = false;
        self.phase = Phase::Drain(then);
    }

    /// Advances by one step (see the module doc): returns the I/O needed
    /// next, or [`Io::Continue`] when the step needed none.
    #[allow(
        clippy::too_many_lines,
        reason = "one match over the phases, each arm a few lines"
    )]
    // Out of line: inlined into the driver's future it cost 1.3 KB more
    // flash on the emulated board's firmware (docs/footprint.md).
    #[inline(never)]
    pub(super) fn step<
        'a,
        M: RawMutex,
        const I: usize,
        const S: usize,
        const F: usize,
        const A: usize,
        St: Store,
        const TK: usize,
        const EV: usize,
    >(
        &mut self,
        state: &ClientState<'_, M, I, S, F, A, St, TK, EV>,
        rx: &'a mut [u8],
        tx: &'a mut [u8],
        aliased: &'a mut heapless::String<F>,
        now: Instant,
    ) -> Io<'a> {
        match self.phase {
            Phase::Open => match state.with(|sh| sh.session.handle_connected(now)) {
                Ok(()) => self.transmit(),
                Err(e) => return Io::End(LinkEnd::Fatal(ClientError::Session(e))),
            },
            Phase::Transmit => {
                if self.tx_off < self.tx_len {
                    let stall = state.with(|sh| sh.session.write_stall_timeout());
                    let bytes = tx.get(self.tx_off..self.tx_len).unwrap_or(&[]);
                    return Io::Write { bytes, stall };
                }
                match state.with(|sh| sh.session.poll_transmit_batch(now, tx)) {
                    Ok(0) => {
                        self.tx_off = 0;
                        self.tx_len = 0;
                        if self.wrote {
                            self.phase = Phase::Flush;
                        } else {
                            self.after_transmit();
                        }
                    }
                    Ok(n) => {
                        self.tx_off = 0;
                        self.tx_len = n.min(tx.len());
                        self.wrote = true;
                    }
                    Err(e) => {
                        self.fatal = Some(ClientError::Session(e));
                        self.phase = Phase::End;
                    }
                }
            }
            Phase::Flush => {
                let stall = state.with(|sh| sh.session.write_stall_timeout());
                return Io::Flush { stall };
            }
            Phase::Flushed => {
                state.with(|sh| sh.session.confirm_transmitted());
                self.after_transmit();
            }
            Phase::Stalled => {
                warn!("closing the link: the peer stopped reading");
                state.with(|sh| sh.session.handle_write_stalled());
                self.closed = Some(CloseReason::WriteStalled);
                self.phase = Phase::End;
            }
            Phase::Drain(then) => {
                let event = next_event(state);
                if let Some(event) = event {
                    self.drained = self.drained.saturating_add(1);
                    match event {
                        session::Event::Connected { .. } => self.accepted = true,
                        session::Event::Disconnected { reason } => self.closed = Some(reason),
                        _ => {}
                    }
                    return Io::Event(Event::from_session(event));
                }
                if !self.swept {
                    self.swept = true;
                    state.with(|sh| sh.outbox_waiters.wake());
                    if St::DURABLE {
                        return Io::Store;
                    }
                }
                self.phase = match then {
                    Then::Decide => Phase::Decide,
                    Then::Parse => Phase::Parse,
                    Then::End => Phase::End,
                };
            }
            Phase::Decide => {
                let (wants_close, stop, up) =
                    state.with(|sh| (sh.session.wants_close(), sh.stop, sh.session.is_connected()));
                if wants_close {
                    self.polite = true;
                    self.phase = Phase::End;
                } else if stop {
                    // A polite DISCONNECT (or none before CONNACK), then close.
                    if state.with(|sh| sh.session.disconnect()).is_err() || !up {
                        self.polite = true;
                        self.phase = Phase::End;
                    } else {
                        self.transmit();
                    }
                } else if self.wrote && self.drained > 0 {
                    // Completions wait in the outbox while the session's
                    // event queue is full: once drained, more may be due
                    // without any input or queued work to wake the wait.
                    self.transmit();
                } else {
                    self.handled = false;
                    self.handled_bytes = 0;
                    self.eager_reads = EAGER_READS;
                    self.phase = Phase::Parse;
                }
            }
            Phase::Parse => return self.parse(state, rx, aliased, now),
            Phase::Compact => {
                if self.start > 0 {
                    move_within(rx, self.start..self.filled, 0);
                    self.filled -= self.start;
                    self.start = 0;
                }
                if !self.handled
                    || self.eager_reads == 0
                    || self.handled_bytes >= session::BATCH_BYTES
                {
                    // Answer what was handled before waiting.
                    if self.handled {
                        self.transmit();
                    } else {
                        self.phase = Phase::Wait;
                    }
                } else {
                    // Read on, but only what is ready now.
                    self.eager_reads -= 1;
                    let buf = rx.get_mut(self.filled..).unwrap_or(&mut []);
                    return Io::Read {
                        buf,
                        until: Until::Ready,
                    };
                }
            }
            Phase::Wait => {
                self.deadline = state.with(|sh| sh.session.poll_timeout());
                let buf = rx.get_mut(self.filled..).unwrap_or(&mut []);
                return Io::Read {
                    buf,
                    until: Until::Deadline(self.deadline),
                };
            }
            Phase::Absorb { eager } => self.absorb(state, rx, eager, now),
            Phase::End => return Io::End(self.end()),
        }
        Io::Continue
    }

    /// Handles the packet at the front of the buffered input.
    fn parse<
        'a,
        M: RawMutex,
        const I: usize,
        const S: usize,
        const F: usize,
        const A: usize,
        St: Store,
        const TK: usize,
        const EV: usize,
    >(
        &mut self,
        state: &ClientState<'_, M, I, S, F, A, St, TK, EV>,
        rx: &'a [u8],
        aliased: &'a mut heapless::String<F>,
        now: Instant,
    ) -> Io<'a> {
        let bytes = rx.get(self.start..self.filled).unwrap_or(&[]);
        let Some(&first) = bytes.first() else {
            self.phase = Phase::Compact;
            return Io::Continue;
        };
        // Events queued before a message (CONNACK's Connected,
        // completions) come first. Handling a PUBLISH queues none itself.
        if first >> 4 == 3 && state.with(|sh| sh.session.has_events()) {
            self.drain(Then::Parse);
            return Io::Continue;
        }
        match state.with(|sh| sh.session.handle_incoming(bytes, now)) {
            Ok(Incoming::Packet { len, message, .. }) => {
                self.consumed(len, len);
                if let Some(mut message) = message {
                    // 5.0 §3.3.2.3.4: a PUBLISH that carries only a Topic
                    // Alias gets the topic the alias stands for.
                    if message.topic.is_empty()
                        && let Some(alias) = message.topic_alias
                    {
                        aliased.clear();
                        state.with(|sh| {
                            if let Some(topic) = sh.session.inbound_alias_topic(alias) {
                                let _ = aliased.push_str(topic);
                            }
                        });
                        let aliased: &'a heapless::String<F> = aliased;
                        message.topic = aliased.as_str();
                    }
                    return Io::Event(Event::Message(message));
                }
            }
            Ok(Incoming::Skipped {
                len,
                topic,
                qos,
                duplicate,
            }) => {
                warn!(
                    "skipped a message of {} bytes: larger than the receive buffer",
                    len
                );
                // Consume what is here; stream past the rest.
                let here = bytes.len();
                self.skip = len.saturating_sub(here);
                self.consumed(len, len.min(here));
                return Io::Event(Event::MessageSkipped {
                    topic,
                    len,
                    qos,
                    duplicate,
                });
            }
            // Transmit and hand over the events, then parse again.
            Ok(Incoming::Backpressure) => self.transmit(),
            Ok(Incoming::Incomplete { needed }) => {
                if self.start == 0 && self.filled == rx.len() {
                    self.fatal = Some(ClientError::RxBufferTooSmall {
                        needed: self.filled.saturating_add(needed),
                        capacity: rx.len(),
                    });
                    // 5.0: DISCONNECT 0x95 (Packet too large) tells the
                    // broker why and keeps the will; a normal DISCONNECT
                    // would make it discard the will. Sent, then the end.
                    state.with(|sh| {
                        sh.session
                            .close_with_error(crate::codec::ReasonCode::PACKET_TOO_LARGE)
                    });
                    self.transmit();
                } else {
                    self.phase = Phase::Compact;
                }
            }
            Err(_e) => {
                // The session has moved to closing (5.0: a DISCONNECT with
                // the reason is queued); the next pass sends it and closes.
                warn!("closing the link: received packet rejected");
                self.transmit();
            }
        }
        Io::Continue
    }

    /// `len` bytes of input were handled, of which `here` were buffered.
    fn consumed(&mut self, len: usize, here: usize) {
        self.start = self.start.saturating_add(len).min(self.filled);
        self.handled_bytes = self.handled_bytes.saturating_add(here);
        self.handled = true;
    }

    /// Takes what the last read brought.
    fn absorb<
        M: RawMutex,
        const I: usize,
        const S: usize,
        const F: usize,
        const A: usize,
        St: Store,
        const TK: usize,
        const EV: usize,
    >(
        &mut self,
        state: &ClientState<'_, M, I, S, F, A, St, TK, EV>,
        rx: &mut [u8],
        eager: bool,
        now: Instant,
    ) {
        match self.last_read {
            ReadEnd::Data(n) if n > 0 => {
                // The first `skip` bytes belong to a packet being skipped:
                // dropped (the rest moves down over them).
                let end = self.filled.saturating_add(n).min(rx.len());
                let dropped = self.skip.min(end.saturating_sub(self.filled));
                self.skip -= dropped;
                if dropped > 0 {
                    move_within(rx, self.filled + dropped..end, self.filled);
                }
                self.filled = end - dropped;
                if eager {
                    self.phase = Phase::Parse;
                    return;
                }
                // The read is polled before the timer: while input is
                // always ready (a flood), the timer would never win, and
                // no PINGREQ would go out. A lapsed deadline is handled
                // here as well.
                if self.deadline.is_some_and(|at| now >= at) {
                    state.with(|sh| sh.session.handle_timeout(now));
                }
                self.transmit();
            }
            ReadEnd::Data(_) | ReadEnd::Failed(_) => {
                if let ReadEnd::Failed(kind) = self.last_read {
                    self.io_failure = Some(kind);
                }
                if eager {
                    // The link ended behind what was just handled (a
                    // refusing CONNACK, a DISCONNECT): its events say why.
                    self.drain(Then::End);
                } else {
                    self.phase = Phase::End;
                }
            }
            // Nothing more was ready: answer what was handled.
            ReadEnd::Timer if eager => self.transmit(),
            ReadEnd::Timer => {
                state.with(|sh| sh.session.handle_timeout(now));
                self.transmit();
            }
            ReadEnd::Work => self.transmit(),
        }
    }

    /// A transmit pass is over: report a fatal error, else hand over the
    /// events.
    fn after_transmit(&mut self) {
        if self.fatal.is_some() {
            self.phase = Phase::End;
        } else {
            self.drained = 0;
            self.drain(Then::Decide);
        }
    }

    /// How the link ended.
    fn end(&mut self) -> LinkEnd {
        if let Some(e) = self.fatal.take() {
            return LinkEnd::Fatal(e);
        }
        let failure = match (self.io_failure, self.closed) {
            (Some(kind), _) => ClientError::Io(kind),
            (None, Some(reason)) => ClientError::Link(reason),
            (None, None) => ClientError::Link(CloseReason::TransportClosed),
        };
        LinkEnd::Closed {
            accepted: self.accepted,
            failure,
            polite: self.polite && self.io_failure.is_none(),
        }
    }
}

/// The session's next event, with the tracked token it finishes
/// completed on the way.
pub(super) fn next_event<
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
) -> Option<session::Event> {
    state.with(|sh| {
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
    })
}
