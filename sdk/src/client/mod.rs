//! The async client: one driver over the sans-IO [`Session`](crate::session::Session)
//! for embassy and tokio alike, on any [`Connector`](crate::transport::Connector),
//! with every byte of memory lent by the caller.
//!
//! # Parts
//!
//! - [`ClientState`]: the session (with the lent outbox), the completion
//!   table and the wake-ups, behind an `embassy_sync` blocking mutex that is
//!   never held across an `.await`. Put it on the stack or in a `static`.
//! - [`Client`]: a `Copy` handle for any number of tasks:
//!   [`publish`](Client::publish) (waits for outbox room),
//!   [`publish_with`](Client::publish_with) and `publish_json` (feature
//!   `json`; the payload is written straight into the outbox),
//!   [`try_publish`](Client::try_publish) (never waits; explicit
//!   [`OverflowPolicy`](crate::session::OverflowPolicy)),
//!   [`completion`](Client::completion) (PUBACK / PUBCOMP or the failure),
//!   [`status`](Client::status) / [`is_pending`](Client::is_pending)
//!   (without waiting), [`subscribe`](Client::subscribe) /
//!   [`unsubscribe`](Client::unsubscribe) (per-filter results),
//!   [`stop`](Client::stop).
//! - MQTT 5.0 enhanced authentication: an
//!   [`Authenticator`](crate::session::Authenticator) lent with
//!   [`ClientState::set_authenticator`], re-authentication with
//!   [`Client::reauthenticate`].
//! - A durable [`Store`](crate::store::Store) for the outbox's QoS 1/2
//!   messages ([`ClientState::with_store`]): persisted before they are sent,
//!   removed when acknowledged, replayed into the outbox after a restart.
//! - [`Connection`]: the driver. [`Connection::run`] owns the connector, the
//!   [`Clock`](crate::clock::Clock), the RNG and the lent receive and
//!   transmit buffers; it connects (each attempt bounded by
//!   [`ClientConfig::connect_timeout`]), feeds the session, writes what it
//!   hands out, hands every [`Event`] to an [`EventHandler`] (messages
//!   borrow topic and payload from the receive buffer), and reconnects with
//!   exponential backoff and full jitter ([`Backoff`]).
//!
//! # Why a handler rather than `next_event()`
//!
//! A [`Connector`](crate::transport::Connector)'s transport may borrow the
//! connector (a WebSocket stream borrows its buffers), so the transport can
//! only live in the driver's own future, across reconnects; a
//! `next_event(&mut self)` method would need a struct holding both the
//! connector and the transport that borrows it (self-referential: `unsafe`
//! or an allocator, both forbidden here), and a queue in between would copy
//! every payload out of the receive buffer. `run` therefore calls the
//! handler (taken by value) with each event, topic and payload borrowed
//! from the receive buffer; the handler may `.await` (a type implementing
//! [`EventHandler`]) or be a plain closure `FnMut(Event<'_>)`. A pull API
//! is a channel filled by the handler.
//!
//! # Waking and deadlock freedom
//!
//! The driver waits with `embassy_futures::select` on three things at
//! once: the transport read, the session's next deadline
//! ([`Session::poll_timeout`](crate::session::Session::poll_timeout)) and a
//! `Signal` raised by every [`Client`] call that queued work. A publisher
//! waiting for outbox room is woken by the driver when acknowledgements
//! free it. The one rule: the handler must not `.await`
//! [`Client::publish`] or a completion, because the driver that would make
//! progress is the one awaiting the handler; use
//! [`Client::try_publish`] there, or publish from another task.
//!
//! The transport's `read` must be cancel-safe (bytes are never lost when
//! the future is dropped): the tokio adapter, embassy-net's `TcpSocket`
//! and `embermq_ws::WsStream` are.
//!
//! # Timers
//!
//! Keepalive and the half-open link are the session's: PINGREQ after an
//! idle keepalive and, without the PINGRESP within half of it (by
//! default), the link is closed, so a dead link is found within
//! 1.5 × keepalive. A connect attempt (TCP, TLS, WebSocket) is bounded by
//! [`ClientConfig::connect_timeout`], the CONNACK by the session's
//! `connect_timeout`.
//!
//! # Spec
//!
//! The protocol is the session's; the driver supplies what it asks of its
//! driver: the polling order of [`crate::session`], keepalive timing
//! (MQTT 3.1.1 and 5.0 §3.1.2.10), closing the network connection when
//! the session says so (§4.13, §3.14), reconnecting so that unacknowledged
//! messages are retried (§4.4), and MQTT over WebSocket (§6) through
//! `embermq::transport::WsConnector`.
//!
//! # Not here (yet)
//!
//! Sending while a read is in progress (the driver alternates; a queued request
//! interrupts the read, which is cancel-safe); `try_publish` of QoS 1/2
//! into a durable store (it needs the awaited persist).

mod backoff;
mod driver;
mod pump;
mod state;

use core::fmt;

pub use backoff::Backoff;
pub use driver::{ClientConfig, Connection};
pub use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex, RawMutex};
pub use state::{Client, ClientState, TRACKED_COMPLETIONS, TokenStatus};

use crate::codec::ProtocolVersion;
use crate::session::{self, CloseReason, Message, PublishFailure, PublishToken, SessionError};
use crate::time::Duration;

/// What the driver hands to the [`EventHandler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// An application message; topic, payload and properties borrow the
    /// receive buffer until the handler returns. A 5.0 topic alias is
    /// already resolved into `topic`.
    Message(Message<'a>),
    /// CONNACK accepted the link.
    Connected {
        /// Whether the broker resumed a stored session.
        session_present: bool,
        /// The protocol version in use.
        version: ProtocolVersion,
    },
    /// A link that had been opened ended.
    Disconnected {
        /// Why.
        reason: CloseReason,
    },
    /// The driver waits `delay` before connect attempt `attempt` (1 for the
    /// first attempt after a link ended or a connect failed).
    Reconnecting {
        /// The attempt about to be made (consecutive failures + 1).
        attempt: u32,
        /// The jittered delay before it.
        delay: Duration,
    },
    /// The broker had lost the session and every remembered subscription
    /// was sent again and acknowledged.
    SubscriptionsRestored {
        /// Filters the broker refused this time (dropped from the table).
        refused: u16,
    },
    /// A message larger than the receive buffer (3.1.1 only: 5.0 tells the
    /// broker the limit in CONNECT) was acknowledged per its QoS and
    /// skipped without buffering it: it is not delivered, and the link
    /// stays up.
    MessageSkipped {
        /// Its topic, when it arrived whole with the packet's start.
        topic: Option<&'a str>,
        /// The packet's length in bytes.
        len: usize,
        /// Its QoS.
        qos: crate::codec::QoS,
        /// A QoS 2 redelivery of a message already skipped.
        duplicate: bool,
    },
    /// A publish finished (also delivered to [`Client::completion`]).
    PublishComplete {
        /// Its token.
        token: PublishToken,
        /// Success, or why not.
        result: Result<(), PublishFailure>,
    },
    /// Any other session event (SUBACK / UNSUBACK results, a refused
    /// CONNACK, an acknowledgement for an unknown packet id).
    Session(session::Event),
}

impl Event<'_> {
    fn from_session(event: session::Event) -> Self {
        match event {
            session::Event::Connected {
                session_present,
                version,
            } => Event::Connected {
                session_present,
                version,
            },
            session::Event::Disconnected { reason } => Event::Disconnected { reason },
            session::Event::SubscriptionsRestored { refused } => {
                Event::SubscriptionsRestored { refused }
            }
            session::Event::PublishComplete { token, result } => {
                Event::PublishComplete { token, result }
            }
            other => Event::Session(other),
        }
    }
}

/// Receives the driver's events. Implemented for every
/// `FnMut(Event<'_>)` closure; implement it on a type for a handler that
/// `.await`s (then do not await [`Client::publish`] in it: see the
/// module doc).
pub trait EventHandler {
    /// Handles one event. The driver does nothing else until it returns.
    fn on_event(&mut self, event: Event<'_>) -> impl core::future::Future<Output = ()>;
}

impl<F: FnMut(Event<'_>)> EventHandler for F {
    fn on_event(&mut self, event: Event<'_>) -> impl core::future::Future<Output = ()> {
        self(event);
        core::future::ready(())
    }
}

/// Why a client call or the driver failed. `E` is the connector's error
/// (it appears only from [`Connection::run`]; the [`Client`] handle's
/// calls use the default, uninhabited `E`); `S` is the durable
/// [`Store`](crate::store::Store)'s error (uninhabited without a store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError<E = core::convert::Infallible, S = core::convert::Infallible> {
    /// The connector could not open a transport (returned as the last
    /// failure once the [`Backoff::max_attempts`] retries failed too).
    Connect(E),
    /// Opening the transport took longer than
    /// [`ClientConfig::connect_timeout`].
    ConnectTimeout,
    /// Reading or writing the transport failed (the link is then closed).
    Io(embedded_io_async::ErrorKind),
    /// The link ended before CONNACK accepted it (refused, timed out,
    /// closed); the last failure once the attempts are exhausted.
    Link(CloseReason),
    /// The session refused the call or could not encode a packet.
    Session(SessionError),
    /// A packet does not fit the lent receive buffer.
    RxBufferTooSmall {
        /// Bytes the packet needs at least.
        needed: usize,
        /// The buffer's size.
        capacity: usize,
    },
    /// The publish failed (see the reason).
    Publish(PublishFailure),
    /// This token is not (or no longer) in the completion table: its
    /// outcome was already taken, or it finished after its slot had gone
    /// to a newer token while nobody awaited it (see [`ClientState`]).
    TokenNotTracked,
    /// [`Client::try_publish`] of a QoS 1/2 message while every slot of
    /// the completion table is awaited (the table's size is
    /// `ClientState`'s `TOKENS`); [`Client::publish`] waits for a slot
    /// instead.
    CompletionTableFull,
    /// The durable store failed: replaying it, or persisting this message
    /// (which was then not queued: nothing is lost silently).
    Store(S),
    /// [`Client::try_publish`] cannot persist a QoS 1/2 message in a
    /// durable store without waiting: use [`Client::publish`].
    StoreNeedsAwait,
}

impl<E, S> From<SessionError> for ClientError<E, S> {
    fn from(e: SessionError) -> Self {
        Self::Session(e)
    }
}

impl<E> ClientError<E> {
    /// The same error with a store error type (errors that carry none).
    pub fn with_store_error<S>(self) -> ClientError<E, S> {
        match self {
            Self::Connect(e) => ClientError::Connect(e),
            Self::ConnectTimeout => ClientError::ConnectTimeout,
            Self::Io(k) => ClientError::Io(k),
            Self::Link(r) => ClientError::Link(r),
            Self::Session(e) => ClientError::Session(e),
            Self::RxBufferTooSmall { needed, capacity } => {
                ClientError::RxBufferTooSmall { needed, capacity }
            }
            Self::Publish(p) => ClientError::Publish(p),
            Self::TokenNotTracked => ClientError::TokenNotTracked,
            Self::CompletionTableFull => ClientError::CompletionTableFull,
            Self::Store(never) => match never {},
            Self::StoreNeedsAwait => ClientError::StoreNeedsAwait,
        }
    }
}

impl<S> ClientError<core::convert::Infallible, S> {
    /// The same error with a connector error type (the handle's errors
    /// never carry one).
    pub fn with_connector_error<E>(self) -> ClientError<E, S> {
        match self {
            Self::Connect(never) => match never {},
            Self::ConnectTimeout => ClientError::ConnectTimeout,
            Self::Io(k) => ClientError::Io(k),
            Self::Link(r) => ClientError::Link(r),
            Self::Session(e) => ClientError::Session(e),
            Self::RxBufferTooSmall { needed, capacity } => {
                ClientError::RxBufferTooSmall { needed, capacity }
            }
            Self::Publish(p) => ClientError::Publish(p),
            Self::TokenNotTracked => ClientError::TokenNotTracked,
            Self::CompletionTableFull => ClientError::CompletionTableFull,
            Self::Store(e) => ClientError::Store(e),
            Self::StoreNeedsAwait => ClientError::StoreNeedsAwait,
        }
    }
}

impl<E: fmt::Display, S: fmt::Display> fmt::Display for ClientError<E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::ConnectTimeout => f.write_str("connect attempt timed out"),
            Self::Io(kind) => write!(f, "transport I/O failed: {kind:?}"),
            Self::Link(reason) => write!(f, "link ended before it was accepted: {reason:?}"),
            Self::Session(e) => write!(f, "session: {e}"),
            Self::RxBufferTooSmall { needed, capacity } => write!(
                f,
                "a packet needs at least {needed} bytes; the receive buffer has {capacity}"
            ),
            Self::Publish(p) => write!(f, "publish failed: {p}"),
            Self::TokenNotTracked => f.write_str("token not in the completion table"),
            Self::CompletionTableFull => f.write_str(
                "every slot of the completion table is awaited \
                 (raise ClientState's TOKENS)",
            ),
            Self::Store(e) => write!(f, "durable store failed: {e}"),
            Self::StoreNeedsAwait => f.write_str(
                "a QoS 1/2 message needs the awaited publish to be persisted in the store",
            ),
        }
    }
}

impl<E: core::error::Error + 'static, S: core::error::Error + 'static> core::error::Error
    for ClientError<E, S>
{
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::Session(e) => Some(e),
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory budget in docs/client.md: `size_of` of the client's
    /// parts for typical const parameters (run with `--nocapture` to see
    /// them). The lent buffers come on top. Fails if a part outgrows its
    /// documented budget.
    #[test]
    fn memory_budget_of_the_client_parts() {
        use crate::session::Session;
        use core::mem::size_of;
        type Cs = CriticalSectionRawMutex;
        let rows = [
            (
                "Session<16, 8>",
                size_of::<Session<'static, 16, 8>>(),
                2_700,
            ),
            (
                "Session<4, 2, 64>",
                size_of::<Session<'static, 4, 2, 64>>(),
                1_500,
            ),
            (
                "ClientState<Cs, 16, 8>",
                size_of::<ClientState<'static, Cs, 16, 8>>(),
                3_500,
            ),
            (
                "ClientState<Cs, 4, 2, 64>",
                size_of::<ClientState<'static, Cs, 4, 2, 64>>(),
                2_300,
            ),
            // The fleet simulator's device: 4 completions, 4 events.
            (
                "ClientState<Cs, 4, 1, 64, 0, NoStore, 4, 4>",
                size_of::<ClientState<'static, Cs, 4, 1, 64, 0, crate::store::NoStore, 4, 4>>(),
                1_400,
            ),
            (
                "Client<Cs, 16, 8> (handle)",
                size_of::<Client<'static, 'static, Cs, 16, 8>>(),
                8,
            ),
            // Zero-sized connector, clock and RNG: the driver's own fields.
            (
                "Connection<Cs, (), (), (), 16, 8>",
                size_of::<Connection<'static, 'static, Cs, (), (), (), 16, 8>>(),
                80,
            ),
        ];
        // The outbox's lookup counters exist in test builds only.
        let test_only = crate::session::outbox::TEST_COUNTER_BYTES;
        for (name, size, budget) in rows {
            let size = if name.starts_with("Session") || name.starts_with("ClientState") {
                size - test_only
            } else {
                size
            };
            std::println!("{name:<32} {size:>6} bytes (budget {budget})");
            assert!(size <= budget, "{name} is {size} bytes, budget {budget}");
        }
    }

    #[test]
    fn errors_display_and_chain_their_source() {
        use core::error::Error;
        let e: ClientError<SessionError> = ClientError::Connect(SessionError::PacketIdsExhausted);
        assert!(std::format!("{e}").contains("connect failed"));
        assert!(e.source().is_some());
        let handle_error: ClientError = ClientError::Publish(PublishFailure::Dropped);
        assert_eq!(
            handle_error.with_connector_error::<SessionError>(),
            ClientError::Publish(PublishFailure::Dropped)
        );
        let small = ClientError::<core::convert::Infallible>::RxBufferTooSmall {
            needed: 10,
            capacity: 4,
        };
        assert!(std::format!("{small}").contains("10"));
    }
}
