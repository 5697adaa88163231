//! The sans-IO MQTT client session: the protocol state machine between the
//! codec and the async client. Bytes and `now` go in; bytes to send, events
//! and the next deadline come out. No I/O, no clock, no allocation: the
//! outbox lives in a buffer the caller lends, every table is sized by const
//! generics, and every limit is reported with a typed error when hit.
//!
//! # What it implements
//!
//! - CONNECT / CONNACK in MQTT 3.1.1 or 5.0, chosen at run time, with an
//!   optional fall-back to 3.1.1 when the broker refuses 5.0
//!   ([`ProtocolChoice::V5WithFallback`]);
//!   clean start, session present, will, user name and password, refusals
//!   as [`Event::ConnectRefused`] (3.1.1 §3.1–3.2, 5.0 §3.1–3.2).
//! - Keepalive: PINGREQ only after the keepalive has passed with nothing
//!   sent; no PINGRESP within the ping timeout closes the link with
//!   [`CloseReason::KeepaliveTimeout`] (§3.1.2.10, §3.12, §3.13). The 5.0
//!   Server Keep Alive replaces ours.
//! - QoS 0/1/2 outbound flows (§4.3) with a window bounded by `INFLIGHT`,
//!   [`SessionConfig::max_inflight`] and the broker's Receive Maximum
//!   (5.0 §4.9); packet identifiers never reused while in use (§2.2.1).
//! - QoS 0/1/2 inbound flows; QoS 2 delivered exactly once (method B of
//!   5.0 §4.3.3: the identifier is remembered from PUBLISH to PUBREL; under
//!   3.1.1, which has no Receive Maximum, identifiers beyond `INFLIGHT` are
//!   kept as runs, so a broker's whole backlog fits on one link).
//! - SUBSCRIBE / UNSUBSCRIBE with per-filter results; filters remembered
//!   and sent again when the broker lost the session.
//! - Reconnect: with the session present, unacknowledged PUBLISH resent
//!   with DUP and PUBREL resent [MQTT-4.4.0-1]; without it, every
//!   unacknowledged message is sent again as a new publish, and a QoS 2
//!   one already sent follows [`SessionLostPolicy`] (republished with
//!   [`Event::Republished`], or failed with [`PublishFailure::SessionLost`]).
//! - MQTT 5.0: both Maximum Packet Sizes (an outbound message over the
//!   broker's is failed alone with [`PublishFailure::PacketTooLarge`]),
//!   Receive Maximum both ways, Maximum QoS, Retain Available, Server Keep
//!   Alive, Assigned Client Identifier (reused on reconnect), Session
//!   Expiry Interval, publish properties (message expiry, user properties,
//!   response topic, correlation data) carried through, reason codes in
//!   events, reason strings and other properties returned borrowed from the
//!   input by [`Session::handle_incoming`], server DISCONNECT.
//!
//! # Example
//!
//! ```
//! use embermq::codec::QoS;
//! use embermq::session::{Event, Incoming, OutgoingMessage, Session, SessionConfig};
//! use embermq::time::Instant;
//!
//! let mut outbox = [0u8; 1024];
//! // INFLIGHT = 8, SUBS = 4 (FILTER_LEN = 128, ALIASES = 0 by default).
//! let mut s: Session<'_, 8, 4> = Session::new(SessionConfig::new("dev-1"), &mut outbox);
//! let token = s.publish(&OutgoingMessage::new("sensors/t", b"21.5", QoS::AtLeastOnce))?;
//! let now = Instant::from_millis(0);
//! s.handle_connected(now)?;
//! let mut tx = [0u8; 256];
//! let n = s.poll_transmit(now, &mut tx)?.expect("CONNECT");
//! assert_eq!(tx[0], 0x10); // CONNECT; nothing else before CONNACK
//! assert_eq!(s.poll_transmit(now, &mut tx)?, None);
//! // The broker accepts (5.0 CONNACK, no properties) ...
//! let connack = [0x20, 0x03, 0x00, 0x00, 0x00];
//! assert!(matches!(s.handle_incoming(&connack, now)?, Incoming::Packet { len: 5, .. }));
//! assert!(matches!(s.poll_event(), Some(Event::Connected { session_present: false, .. })));
//! // ... then the queued PUBLISH goes out with packet id 1, and its PUBACK completes it.
//! let n = s.poll_transmit(now, &mut tx)?.expect("PUBLISH");
//! assert_eq!(tx[0], 0x32);
//! s.handle_incoming(&[0x40, 0x02, 0x00, 0x01], now)?;
//! assert_eq!(s.poll_event(), Some(Event::PublishComplete { token, result: Ok(()) }));
//! # let _ = n;
//! # Ok::<(), embermq::session::SessionError>(())
//! ```
//!
//! # Polling order for a driver
//!
//! ```text
//! on transport up:     handle_connected(now)
//! loop {
//!     while let Some(n) = poll_transmit(now, &mut tx)? { write tx[..n] }
//!     while let Some(ev) = poll_event() { deliver ev }
//!     if wants_close() { close transport; handle_disconnected(now); break }
//!     wait for: bytes readable | poll_timeout() | application request
//!     bytes:   loop handle_incoming(&rx[..filled], now):
//!                Packet { len, message, .. } => deliver message; drop len bytes
//!                Incomplete { .. }           => read more
//!                Backpressure                => drain poll_transmit/poll_event first
//!                Err(_)                      => drain poll_transmit (a 5.0 DISCONNECT
//!                                               may be queued), close, handle_disconnected
//!     timeout: handle_timeout(now)
//!     closed by peer: handle_disconnected(now); break
//! }
//! ```
//!
//! Transmit before reading again: acknowledgements of inbound messages are
//! queued and [`Incoming::Backpressure`] is answered once the queue is
//! nearly full.
//!
//! Batching: [`Session::poll_transmit_batch`] writes every due packet that
//! fits back to back (up to [`BATCH_BYTES`]), so a driver sends a window of
//! publishes and acknowledgements with one write; a packet that does not
//! fit behind the others waits for the next batch. The client's driver
//! also handles every packet already received (reading on while bytes are
//! ready) before it transmits, so the answers to all of them share one
//! write. A driver that delivers messages straight from `handle_incoming`
//! drains queued events first ([`Session::has_events`]) to keep the order.
//!
//! Topic aliases both ways when `ALIASES > 0` (see [`Session`]).
//!
//! # Durable outbox, payload writers, expiry
//!
//! - Records can be held while a driver writes their durable copy
//!   ([`Session::hold_for_store`], [`Session::held_record`],
//!   [`Session::release_held`] with the store key, [`Session::cancel_held`]);
//!   a held record and the new publishes behind it are not sent. Records
//!   replayed from a store come back with [`Session::restore`] and
//!   [`Session::release_restored`]. The key of every durable record that
//!   finished comes out of [`Session::poll_store_removal`]; drain it with
//!   the events. The store itself is the driver's ([`crate::store`]).
//! - [`Session::publish_with`] lets a closure write the payload straight
//!   into the outbox record.
//! - A PUBLISH that does not fit the transmit buffer fails alone
//!   ([`PublishFailure::TransmitBufferTooSmall`]); one that can never fit
//!   the announced transmit buffer ([`Session::set_transmit_capacity`]) or
//!   the broker's Maximum Packet Size is refused when queued
//!   ([`SessionError::PacketTooLarge`]).
//! - 5.0 Message Expiry (§3.3.2.3.3): a queued message is stamped at the
//!   first `handle_timeout` / `poll_transmit` after it was queued, fails
//!   with [`PublishFailure::Expired`] when its interval lapses before it is
//!   sent ([`Session::poll_timeout`] includes that deadline), and is sent
//!   (or resent with DUP) with what is left of its interval.
//!
//! # Enhanced authentication
//!
//! 5.0 §4.12 with an [`Authenticator`] lent through
//! [`Session::set_authenticator`]: CONNECT carries its Authentication
//! Method and first data, each AUTH Continue (0x18) from the broker is
//! answered with its next step until CONNACK, and
//! [`Session::reauthenticate`] runs a re-authentication (AUTH 0x19) on a
//! connected link, reported as [`Event::Reauthenticated`]. An AUTH without
//! an authenticator, with another method, or outside an exchange is a
//! protocol error.
//!
//! # What it does not do (yet)
//!
//! Replacement of outbound topic aliases
//! once the table is full, subscription identifiers, request/response
//! information, sending anything before CONNACK, and reconnect backoff (the
//! async client's job).

mod auth;
mod config;
mod error;
mod event;
mod machine;
pub(crate) mod outbox;

// The session's flows, 3.1.1 and 5.0 alike (most tests run both), need
// the full build; the 3.1.1-only build (no `v5`) runs the codec, outbox and
// oversized-packet tests here, and end to end on the emulated board
// (tests/tests/qemu_boards.rs).
#[cfg(all(test, feature = "v5"))]
mod tests;

pub use auth::{Authenticator, Credentials, MAX_AUTH_DATA};
pub use config::{OverflowPolicy, ProtocolChoice, SessionConfig, SessionLostPolicy};
pub use error::{ProtocolViolation, SessionError, SizeLimit};
pub use event::{
    CloseReason, Event, FilterResults, Incoming, MAX_FILTERS_PER_REQUEST, Message, OutgoingMessage,
    PublishFailure, PublishState, PublishToken, RequestToken,
};
pub use machine::{
    BATCH_BYTES, BrokerLimits, CONTROL_QUEUE_LEN, DEFAULT_V311_QOS2_RUNS, EVENT_HEADROOM,
    EVENT_QUEUE_LEN, MAX_ASSIGNED_CLIENT_ID_LEN, STORE_REMOVAL_QUEUE_LEN, Session,
};
