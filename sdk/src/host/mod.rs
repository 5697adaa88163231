//! The host layer (feature `host`, std + tokio): [`connect`] to a URL, get
//! a [`Client`] handle that is `Clone + Send + 'static` and a bounded
//! stream of owned [`Events`]. The layer owns its buffers and spawns the
//! driver on the current tokio runtime.
//!
//! ```no_run
//! use embermq::host::{self, QoS};
//! use std::time::Duration;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), host::Error> {
//!     let (client, mut events) = host::connect("wss://user:pass@broker.example/mqtt")?;
//!     client.subscribe("commands/#", QoS::AtLeastOnce).await?;
//!     tokio::spawn(async move {
//!         for n in 0u32.. {
//!             client.publish("readings", n.to_string(), QoS::AtLeastOnce).await?;
//!             tokio::time::sleep(Duration::from_secs(1)).await;
//!         }
//!         Ok::<_, host::Error>(())
//!     });
//!     while let Some(m) = events.next_message().await {
//!         println!("{} {:?}", m.topic, m.payload);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! `publish` returns a [`Token`]: `.await` it for the PUBACK / PUBCOMP, or
//! drop it. docs/host.md sets this program beside the same one in rumqttc
//! and maps rumqttc's calls onto these.
//!
//! # What it keeps from the core client
//!
//! Reconnect with exponential backoff and full jitter, subscriptions
//! restored when a broker lost the session, unacknowledged messages sent
//! again on reconnect, a bounded outbox with an explicit overflow policy
//! (optionally durable in a [`FileStore`](crate::store::FileStore)),
//! completion tokens per publish, per-filter results, MQTT 5.0 with a
//! fall-back to 3.1.1, and the same session and codec a device runs.
//!
//! # Memory and backpressure
//!
//! Everything is bounded: the outbox ([`Options::outbox_bytes`]), the
//! receive and transmit buffers ([`Options::max_packet_size`] each), the
//! WebSocket buffers (16 to 64 KiB each way), the requests on their way to the
//! driver ([`Options::request_capacity`]) and the events on their way to
//! the application ([`Options::event_capacity`]). When the application
//! does not read its events, the driver waits for room before it reads
//! the socket again: the broker's TCP window closes and nothing piles up.
//! While it waits the driver sends nothing either: acknowledgements for
//! our own publishes are not read, so a task that awaits a [`Token`] must
//! not be the one that reads the events (read them in their own task, as
//! above), and a reader that stalls longer than the keepalive loses the
//! link (the client then reconnects and QoS 1/2 messages are delivered
//! again). Dropping [`Events`] altogether is fine: events are then
//! discarded and the driver never waits.
//!
//! # Lifetime
//!
//! The driver task runs until [`Client::disconnect`], until every handle
//! and the [`Events`] are dropped, or until it gives up
//! ([`Backoff::max_attempts`](crate::client::Backoff)); the last event is
//! [`Event::Stopped`].
//!
//! # MQTT 5.0 extras
//!
//! A [`Will`] with its properties (Will Delay Interval, Message Expiry,
//! Content Type, Response Topic, Correlation Data, User Properties);
//! request/response (§4.10) with [`Client::request`] (subscribes to the
//! client's response topic once, correlates the reply, times out) and
//! [`Client::respond`] on the other side; enhanced authentication (§4.12)
//! with an [`Authenticator`] in [`Options::authenticator`] and
//! [`Client::reauthenticate`].
//!
//! # Not here
//!
//! Devices (use [`crate::client`] with lent buffers), subscription
//! identifiers on SUBSCRIBE (the core client has them), proxies.

mod events;
mod handle;
mod link;
mod options;
mod owned;
mod request;
mod task;
mod url;

use alloc::string::String;
use core::fmt;

use rand::{Rng, SeedableRng};

pub use crate::codec::QoS;
pub use crate::session::Authenticator;
pub use crate::session::{FilterResults, ProtocolChoice};
pub use events::{Event, Events, Message, MessageProperties};
pub use handle::{Client, Publish, Token};
pub use link::{LinkConnectError, LinkConnector, LinkOptions, LinkTransport, SetupError};
pub use options::{
    DEFAULT_EVENT_CAPACITY, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_PACKET_SIZE, DEFAULT_OUTBOX_BYTES,
    DEFAULT_REQUEST_CAPACITY, MAX_INFLIGHT, Options, Will,
};
pub use owned::{PropertiesBox, Topic};
pub use url::{BrokerUrl, DEFAULT_WS_PATH, Scheme, UrlError, masked};

use crate::client::ClientError;
use crate::session::{PublishFailure, SessionError};
use crate::store::FileStoreError;
use crate::topic::TopicError;

/// Why a host-layer call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL does not parse.
    Url(UrlError),
    /// An option is out of range (the message names it).
    Options(String),
    /// No connector could be built (TLS files, a TLS option on a plain
    /// URL).
    Setup(SetupError),
    /// `connect` was called outside a tokio runtime.
    NoRuntime,
    /// A topic name or filter is malformed.
    Topic(TopicError),
    /// The PUBLISH can never be sent: at least `size` bytes against the
    /// largest packet, `max`.
    TooLarge {
        /// Its smallest encoded size.
        size: usize,
        /// [`Options::max_packet_size`].
        max: u32,
    },
    /// The broker refused the publish, or it failed (see the reason).
    Publish(PublishFailure),
    /// The broker refused one or more filters: all the reason codes.
    Refused(FilterResults),
    /// The session refused the request (outbox full under
    /// [`Options::overflow_policy`], too many filters, ...).
    Session(SessionError),
    /// [`Client::try_publish`] found the request buffer full.
    RequestBufferFull,
    /// The durable store failed.
    Store(FileStoreError),
    /// The last connect attempt failed (the client gave up).
    Connect(LinkConnectError),
    /// The driver ended for this reason (connect timeout, I/O, a link
    /// refused ...).
    Client(ClientError),
    /// The client has ended (disconnected or gave up) before this request
    /// finished.
    Stopped,
    /// [`Client::request`] had no reply within its timeout.
    Timeout {
        /// The timeout given.
        after: core::time::Duration,
    },
    /// [`Client::respond`] was given a message without a Response Topic.
    NotARequest,
    /// The call needs MQTT 5.0 and the broker accepted 3.1.1.
    NeedsV5,
}

impl Error {
    pub(crate) fn from_client<E: Into<Error>, S>(
        e: ClientError<E, S>,
        store: fn(S) -> Error,
    ) -> Self {
        match e {
            ClientError::Connect(e) => e.into(),
            ClientError::Store(e) => store(e),
            ClientError::Publish(f) => Self::Publish(f),
            ClientError::Session(s) => Self::Session(s),
            ClientError::ConnectTimeout => Self::Client(ClientError::ConnectTimeout),
            ClientError::Io(k) => Self::Client(ClientError::Io(k)),
            ClientError::Link(r) => Self::Client(ClientError::Link(r)),
            ClientError::RxBufferTooSmall { needed, capacity } => {
                Self::Client(ClientError::RxBufferTooSmall { needed, capacity })
            }
            ClientError::TokenNotTracked => Self::Client(ClientError::TokenNotTracked),
            ClientError::CompletionTableFull => Self::Client(ClientError::CompletionTableFull),
            ClientError::StoreNeedsAwait => Self::Client(ClientError::StoreNeedsAwait),
        }
    }
}

impl From<core::convert::Infallible> for Error {
    fn from(e: core::convert::Infallible) -> Self {
        match e {}
    }
}

impl From<LinkConnectError> for Error {
    fn from(e: LinkConnectError) -> Self {
        Self::Connect(e)
    }
}

impl From<FileStoreError> for Error {
    fn from(e: FileStoreError) -> Self {
        Self::Store(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(e) => write!(f, "broker URL: {e}"),
            Self::Options(what) => write!(f, "options: {what}"),
            Self::Setup(e) => e.fmt(f),
            Self::NoRuntime => f.write_str("embermq::host::connect needs a tokio runtime"),
            Self::Topic(e) => write!(f, "topic: {e}"),
            Self::TooLarge { size, max } => write!(
                f,
                "a PUBLISH of at least {size} bytes exceeds the {max}-byte maximum packet size"
            ),
            Self::Publish(p) => write!(f, "publish failed: {p}"),
            Self::Refused(results) => write!(f, "refused by the broker: {:?}", results.codes()),
            Self::Session(e) => write!(f, "session: {e}"),
            Self::RequestBufferFull => f.write_str("the request buffer is full"),
            Self::Store(e) => write!(f, "durable store: {e}"),
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::Client(e) => e.fmt(f),
            Self::Stopped => f.write_str("the client has ended"),
            Self::Timeout { after } => write!(f, "no reply within {after:?}"),
            Self::NotARequest => {
                f.write_str("the message is not a request: it has no Response Topic")
            }
            Self::NeedsV5 => f.write_str("this needs MQTT 5.0; the broker speaks 3.1.1"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Url(e) => Some(e),
            Self::Setup(e) => Some(e),
            Self::Topic(e) => Some(e),
            Self::Session(e) => Some(e),
            Self::Store(e) => Some(e),
            Self::Connect(e) => Some(e),
            Self::Client(e) => Some(e),
            _ => None,
        }
    }
}

/// What [`connect`] takes: a URL (`&str`, `String`) or [`Options`].
pub trait IntoOptions {
    /// The options.
    fn into_options(self) -> Result<Options, Error>;
}

impl IntoOptions for Options {
    fn into_options(self) -> Result<Options, Error> {
        Ok(self)
    }
}

impl IntoOptions for &str {
    fn into_options(self) -> Result<Options, Error> {
        Options::new(self)
    }
}

impl IntoOptions for String {
    fn into_options(self) -> Result<Options, Error> {
        Options::new(&self)
    }
}

/// Starts a client for a URL or [`Options`] on the current tokio runtime
/// and returns at once (the link is opened in the background; watch for
/// [`Event::Connected`]). Requests made before the first connect wait in
/// the outbox.
///
/// Fails at once for a malformed URL, an option out of range, unusable
/// TLS settings, a durable store that cannot be opened, or no tokio
/// runtime; never for the network (that is retried with backoff).
pub fn connect(options: impl IntoOptions) -> Result<(Client, Events), Error> {
    let options = options.into_options()?;
    options.check()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let tls = match &options.tls {
        Some(tls) => Some(
            tls.client_config()
                .map_err(|e| Error::Setup(SetupError::Tls(e)))?,
        ),
        None => None,
    };
    let mut rng = rand::rngs::StdRng::from_entropy();
    let link = LinkOptions {
        tls,
        headers: options.headers.clone(),
        ws_buffer_len: options.ws_buffer_len(),
    };
    let ws_rng = rand::rngs::StdRng::from_rng(&mut rng).unwrap_or_else(|_| rng.clone());
    let connector = LinkConnector::new(&options.url, &link, ws_rng).map_err(Error::Setup)?;
    let client_id = options
        .client_id
        .clone()
        .unwrap_or_else(|| alloc::format!("embermq-{:012x}", rng.r#gen::<u64>() >> 16));
    let store = match &options.store {
        Some(path) => Some(crate::store::FileStore::open(path).map_err(Error::Store)?),
        None => None,
    };
    let (requests_tx, requests) = tokio::sync::mpsc::channel(options.request_capacity);
    let (events, events_rx) = tokio::sync::mpsc::channel(options.event_capacity);
    let response_topic = options
        .response_topic
        .clone()
        .unwrap_or_else(|| alloc::format!("embermq/replies/{client_id}"));
    let exchanges = alloc::sync::Arc::new(request::Exchanges::new(response_topic, rng.r#gen()));
    let client = Client {
        requests: requests_tx,
        max_packet_size: options.max_packet_size,
        exchanges: exchanges.clone(),
    };
    let setup = task::Setup {
        options,
        client_id,
        connector,
        rng,
        requests,
        events,
        exchanges,
    };
    match store {
        Some(store) => drop(runtime.spawn(task::run(setup, store))),
        None => drop(runtime.spawn(task::run(setup, crate::store::NoStore))),
    }
    Ok((client, Events { rx: events_rx }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn options_debug_redacts_the_password_header_values_and_the_will_payload() {
        let options = Options::new("wss://alice:s3cret@broker.example/mqtt")
            .unwrap()
            .ws_header("Authorization", "Bearer t0ken")
            .will(Publish::new("status", "w1ll-payload", QoS::AtLeastOnce));
        let shown = format!("{options:?}");
        for secret in ["s3cret", "t0ken", "w1ll-payload"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("alice") && shown.contains("Authorization"),
            "{shown}"
        );
    }

    #[test]
    fn limits_out_of_range_are_errors_naming_the_option() {
        let base = || Options::new("mqtt://h").unwrap();
        let cases = [
            (base().max_packet_size(10), "max_packet_size"),
            (
                base().keep_alive(core::time::Duration::from_secs(70_000)),
                "keep_alive",
            ),
            (base().outbox_bytes(1), "outbox_bytes"),
            (base().event_capacity(0), "event_capacity"),
        ];
        for (options, name) in cases {
            let e = options.check().unwrap_err();
            assert!(format!("{e}").contains(name), "{e}");
        }
        let e = base()
            .tls(crate::transport::RustlsOptions::new())
            .check()
            .unwrap_err();
        assert!(
            matches!(e, Error::Setup(SetupError::TlsOptionsWithoutTls)),
            "{e}"
        );
    }

    #[test]
    fn a_malformed_url_and_a_missing_runtime_are_errors_not_panics() {
        assert!(matches!(connect("http://h"), Err(Error::Url(_))));
        assert!(matches!(connect("mqtt://h"), Err(Error::NoRuntime)));
    }
}
