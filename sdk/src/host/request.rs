//! MQTT 5.0 request/response (§4.10) for the host layer: the table of
//! requests waiting for their reply, shared by the handles (which add and
//! remove entries) and the driver task (which hands a reply to its waiter).
//!
//! A request goes out with the client's response topic and a fresh
//! Correlation Data (§3.3.2.3.5-6): 8 random bytes drawn once per client
//! and an 8-byte counter, so replies meant for an earlier process on the
//! same response topic are told apart. The response topic is subscribed
//! once, at the first request, before any request is published (so no
//! reply can come before the subscription). A message on that topic whose
//! Correlation Data nobody waits for (a reply after its request timed out)
//! is handed to the application as an ordinary event: nothing is dropped
//! silently.
//!
//! Not here: the handle's calls ([`Client::request`](super::Client::request),
//! [`Client::respond`](super::Client::respond)), and Request Response
//! Information (§3.1.2.11.7), which brokers rarely offer.

use alloc::string::String;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::{OnceCell, oneshot};

use super::events::Message;
use crate::codec::ProtocolVersion;

/// The version of the link last accepted: not yet known.
const VERSION_UNKNOWN: u8 = 0;
const VERSION_V311: u8 = 4;
const VERSION_V5: u8 = 5;

/// The requests of one client waiting for their replies.
#[derive(Debug)]
pub(crate) struct Exchanges {
    /// Where replies come back.
    pub(crate) response_topic: String,
    /// Set once the response topic's SUBACK came.
    pub(crate) subscribed: OnceCell<()>,
    prefix: [u8; 8],
    next: AtomicU64,
    waiting: Mutex<HashMap<Bytes, oneshot::Sender<Message>>>,
    version: AtomicU8,
}

impl Exchanges {
    pub(crate) fn new(response_topic: String, prefix: [u8; 8]) -> Self {
        Self {
            response_topic,
            subscribed: OnceCell::new(),
            prefix,
            next: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
            version: AtomicU8::new(VERSION_UNKNOWN),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, oneshot::Sender<Message>>> {
        // Never poisoned: nothing panics while it is held.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh Correlation Data and the entry that waits for its reply
    /// (removed when the returned guard is dropped: on the reply, on a
    /// timeout, or when the caller's future is dropped).
    pub(crate) fn wait(&self) -> (Waiting<'_>, oneshot::Receiver<Message>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut data = [0u8; 16];
        data[..8].copy_from_slice(&self.prefix);
        data[8..].copy_from_slice(&n.to_be_bytes());
        let key = Bytes::copy_from_slice(&data);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(key.clone(), tx);
        (
            Waiting {
                exchanges: self,
                key,
            },
            rx,
        )
    }

    /// The driver saw `msg`: a reply somebody waits for is handed over
    /// (`None`), anything else is given back.
    pub(crate) fn route(&self, msg: Message) -> Option<Message> {
        if msg.topic != self.response_topic {
            return Some(msg);
        }
        let Some(key) = &msg.properties.correlation_data else {
            return Some(msg);
        };
        let waiter = self.lock().remove(key);
        match waiter {
            // A waiter that just gave up gets nothing: the reply goes to
            // the application instead.
            Some(tx) => tx.send(msg).err(),
            None => Some(msg),
        }
    }

    /// The protocol version of the link CONNACK accepted.
    pub(crate) fn connected(&self, version: ProtocolVersion) {
        let v = match version {
            ProtocolVersion::V311 => VERSION_V311,
            ProtocolVersion::V5 => VERSION_V5,
        };
        self.version.store(v, Ordering::Relaxed);
    }

    /// Whether the last link accepted was MQTT 3.1.1 (which has no Response
    /// Topic or Correlation Data).
    pub(crate) fn on_v311(&self) -> bool {
        self.version.load(Ordering::Relaxed) == VERSION_V311
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().len()
    }
}

/// One request's entry in the table; dropping it removes the entry.
pub(crate) struct Waiting<'a> {
    exchanges: &'a Exchanges,
    pub(crate) key: Bytes,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.exchanges.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;

    fn reply(topic: &str, key: Option<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(b"r"),
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            properties: super::super::MessageProperties {
                correlation_data: key,
                ..Default::default()
            }
            .into(),
        }
    }

    #[test]
    fn mqtt_4_10_a_reply_goes_to_the_waiter_of_its_correlation_data_only() {
        let ex = Exchanges::new("r/me".into(), [7; 8]);
        let (a, mut rx_a) = ex.wait();
        let (b, mut rx_b) = ex.wait();
        assert_ne!(a.key, b.key);
        assert_eq!(&a.key[..8], &[7; 8]);
        assert!(ex.route(reply("r/me", Some(b.key.clone()))).is_none());
        assert_eq!(rx_b.try_recv().unwrap().payload, "r");
        assert!(rx_a.try_recv().is_err());
        // Another topic, no correlation, an unknown one: the application's.
        assert!(ex.route(reply("r/other", Some(a.key.clone()))).is_some());
        assert!(ex.route(reply("r/me", None)).is_some());
        assert!(
            ex.route(reply("r/me", Some(Bytes::from_static(b"x"))))
                .is_some()
        );
        drop((a, b));
        assert_eq!(ex.waiting(), 0);
    }

    #[test]
    fn a_reply_after_its_waiter_gave_up_reaches_the_application() {
        let ex = Exchanges::new("r/me".into(), [0; 8]);
        let (w, rx) = ex.wait();
        let key = w.key.clone();
        drop(rx);
        assert!(ex.route(reply("r/me", Some(key.clone()))).is_some());
        drop(w);
        assert!(ex.route(reply("r/me", Some(key))).is_some());
    }
}
