//! What the application reads: [`Events`], a bounded stream of owned
//! [`Event`]s. When the application stops reading and the stream is full,
//! the driver waits for room before it reads the socket again, so the
//! broker's TCP window closes (backpressure) and memory stays flat.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Error;
use super::owned::{PropertiesBox, Topic};
use crate::codec::{Properties, ProtocolVersion, QoS};
use crate::session::{self, CloseReason};

/// The 5.0 properties of a message, owned: those received, or those to
/// send with [`Publish::with_properties`](super::Publish::with_properties)
/// (build with `..MessageProperties::default()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// Payload Format Indicator: `Some(true)` for UTF-8.
    pub payload_is_utf8: Option<bool>,
    /// Message Expiry Interval left, in seconds.
    pub message_expiry_secs: Option<u32>,
    /// Content Type.
    pub content_type: Option<String>,
    /// Response Topic (request/response).
    pub response_topic: Option<String>,
    /// Correlation Data (request/response).
    pub correlation_data: Option<Bytes>,
    /// User Properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Subscription Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}

impl MessageProperties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn from_wire(p: &Properties<'_>) -> PropertiesBox {
        if p.is_empty() {
            return PropertiesBox::default();
        }
        PropertiesBox::from(Self {
            payload_is_utf8: p.payload_format_indicator(),
            message_expiry_secs: p.message_expiry_interval(),
            content_type: p.content_type().map(ToOwned::to_owned),
            response_topic: p.response_topic().map(ToOwned::to_owned),
            correlation_data: p.correlation_data().map(Bytes::copy_from_slice),
            user_properties: p
                .user_properties()
                .map(|u| (u.name.to_owned(), u.value.to_owned()))
                .collect(),
            subscription_ids: p.subscription_identifiers().collect(),
        })
    }
}

/// A received application message, owned: the payload is a [`Bytes`], so
/// passing it on to several consumers copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// Topic name (a 5.0 topic alias already resolved). Messages in a row
    /// on the same topic share one allocation.
    pub topic: Topic,
    /// Payload.
    pub payload: Bytes,
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// Retained.
    pub retain: bool,
    /// DUP flag as received (QoS 1 may repeat; QoS 2 redeliveries are
    /// filtered).
    pub dup: bool,
    /// 5.0 properties (empty on 3.1.1), boxed only when present; read
    /// them as a [`MessageProperties`].
    pub properties: PropertiesBox,
}

impl Message {
    /// Whether this is an MQTT 5.0 request (§4.10): it names a Response
    /// Topic, which [`Client::respond`](super::Client::respond) answers on.
    pub fn is_request(&self) -> bool {
        self.properties.response_topic.is_some()
    }

    /// `last`: the topic of the message before, reused (no allocation)
    /// when this one has the same; replaced otherwise.
    pub(crate) fn from_wire(m: &session::Message<'_>, last: &mut Option<Topic>) -> Self {
        let topic = match last {
            Some(t) if t.as_str() == m.topic => t.clone(),
            _ => last.insert(Topic::from(m.topic)).clone(),
        };
        Self {
            topic,
            payload: Bytes::copy_from_slice(m.payload),
            qos: m.qos,
            retain: m.retain,
            dup: m.dup,
            properties: MessageProperties::from_wire(&m.properties),
        }
    }
}

/// One thing that happened, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// An application message.
    Message(Message),
    /// CONNACK accepted a link.
    Connected {
        /// Whether the broker resumed a stored session.
        session_present: bool,
        /// The protocol version in use.
        version: ProtocolVersion,
    },
    /// A link that had been opened ended; the client reconnects.
    Disconnected {
        /// Why.
        reason: CloseReason,
    },
    /// The client waits `delay` before connect attempt `attempt`.
    Reconnecting {
        /// Consecutive failures + 1.
        attempt: u32,
        /// The jittered delay.
        delay: Duration,
    },
    /// The broker had lost the session; every subscription was sent again
    /// and acknowledged.
    SubscriptionsRestored {
        /// Filters the broker refused this time.
        refused: u16,
    },
    /// A 3.1.1 message larger than [`Options::max_packet_size`](super::Options::max_packet_size)
    /// was acknowledged and skipped.
    MessageSkipped {
        /// Its topic, when known.
        topic: Option<String>,
        /// Its length in bytes.
        len: usize,
        /// Its QoS.
        qos: QoS,
    },
    /// Any other session event (a refused CONNACK, a QoS 2 message sent
    /// again after a session loss, re-authentication, an unexpected
    /// acknowledgement).
    Session(session::Event),
    /// The client ended: after [`Client::disconnect`](super::Client::disconnect)
    /// (`error` `None`), or because it gave up (the
    /// [`Backoff::max_attempts`](crate::client::Backoff) were used up) or
    /// met an error it cannot recover from. The last event.
    Stopped {
        /// Why it ended, when not on request.
        error: Option<Error>,
    },
}

/// The events of one client, bounded (see
/// [`Options::event_capacity`](super::Options::event_capacity)). Dropping
/// it is fine: the client then discards events and never waits for room.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has ended and every event
    /// was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is buffered, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The next application message, skipping other events; `None` once
    /// the client has ended.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            match self.rx.recv().await? {
                Event::Message(m) => return Some(m),
                _ => continue,
            }
        }
    }
}
