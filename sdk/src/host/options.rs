//! [`Options`]: everything [`connect`](super::connect) takes, with builder
//! methods and sane defaults for every limit.
//!
//! The sizes a device chooses by hand are derived here: the receive buffer
//! is the largest packet accepted ([`Options::max_packet_size`], sent to a
//! 5.0 broker as Maximum Packet Size and enforced in both versions), the
//! transmit buffer the largest packet sent, the WebSocket buffers as large
//! as a packet within 16..=64 KiB per direction (the stream view carries
//! larger messages through them). Not here: anything about the device-side const parameters (the
//! host layer fixes them, see [`super`]).
//!
//! Also here: the [`Will`] with its 5.0 properties (§3.1.2.5, §3.1.3.2:
//! Will Delay Interval, Message Expiry, Content Type, Response Topic,
//! Correlation Data, User Properties, Payload Format Indicator), and the
//! [`Authenticator`] for 5.0 enhanced authentication (§4.12).

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;
use std::path::PathBuf;

use bytes::Bytes;

use super::url::BrokerUrl;
use super::{Error, MessageProperties, Publish};
use crate::client::Backoff;
use crate::codec::QoS;
use crate::session::{Authenticator, OverflowPolicy, ProtocolChoice};
use crate::topic;
use crate::transport::RustlsOptions;

/// The default largest packet, either way: 256 KiB.
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 256 * 1024;
/// The default outbox: 1 MiB of queued and in-flight messages.
pub const DEFAULT_OUTBOX_BYTES: usize = 1024 * 1024;
/// The default number of events buffered for a slow reader.
pub const DEFAULT_EVENT_CAPACITY: usize = 64;
/// The default number of requests buffered for the driver.
pub const DEFAULT_REQUEST_CAPACITY: usize = 64;
/// The default in-flight window for QoS 1/2 publishes.
pub const DEFAULT_MAX_INFLIGHT: u16 = 16;
/// The largest in-flight window (the session's table).
pub const MAX_INFLIGHT: u16 = 64;
/// WebSocket buffer bytes per direction, at least (and when nothing else
/// is asked, as for [`LinkOptions::default`](super::LinkOptions)).
pub(crate) const WS_BUFFER_LEN: usize = 16 * 1024;
/// WebSocket buffer bytes per direction, at most.
const WS_BUFFER_MAX: usize = 64 * 1024;
/// Smallest `max_packet_size` accepted (a CONNACK with properties fits).
const MIN_PACKET_SIZE: u32 = 256;

/// How [`connect`](super::connect) reaches the broker and which limits it
/// keeps. `Debug` never shows the password, header values or the Will
/// payload.
pub struct Options {
    pub(crate) url: BrokerUrl,
    pub(crate) client_id: Option<String>,
    pub(crate) keep_alive: Duration,
    pub(crate) protocol: ProtocolChoice,
    pub(crate) clean_start: bool,
    pub(crate) session_expiry: Option<Duration>,
    pub(crate) will: Option<Will>,
    pub(crate) authenticator: Option<Box<dyn Authenticator + Send>>,
    pub(crate) response_topic: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) tls: Option<RustlsOptions>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) max_packet_size: u32,
    pub(crate) max_inflight: u16,
    pub(crate) outbox_bytes: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) store: Option<PathBuf>,
    pub(crate) backoff: Backoff,
    pub(crate) connect_timeout: Duration,
    pub(crate) event_capacity: usize,
    pub(crate) request_capacity: usize,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("keep_alive", &self.keep_alive)
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("session_expiry", &self.session_expiry)
            .field("will", &self.will)
            .field(
                "authenticator",
                &self.authenticator.as_ref().map(|a| a.method().to_owned()),
            )
            .field("response_topic", &self.response_topic)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .field("header_names", &headers)
            .field("max_packet_size", &self.max_packet_size)
            .field("max_inflight", &self.max_inflight)
            .field("outbox_bytes", &self.outbox_bytes)
            .field("overflow", &self.overflow)
            .field("store", &self.store)
            .field("backoff", &self.backoff)
            .field("connect_timeout", &self.connect_timeout)
            .field("event_capacity", &self.event_capacity)
            .field("request_capacity", &self.request_capacity)
            .finish()
    }
}

impl Options {
    /// Options for `url` (`mqtt://`, `mqtts://`, `ws://`, `wss://`, with
    /// `user:password@` taken as the credentials) and these defaults: a
    /// random client id `embermq-…`, 60 s keepalive, MQTT 5.0 falling back
    /// to 3.1.1, clean start, no session expiry, no Will, Mozilla's roots
    /// for TLS, [`DEFAULT_MAX_PACKET_SIZE`], [`DEFAULT_OUTBOX_BYTES`], the
    /// outbox in memory, [`Backoff::DEFAULT`] (retrying for ever), a 10 s
    /// connect timeout, [`DEFAULT_EVENT_CAPACITY`] events buffered.
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(Self::from_url(url.parse().map_err(Error::Url)?))
    }

    /// Options for an already parsed URL, with the defaults of
    /// [`new`](Self::new).
    pub fn from_url(url: BrokerUrl) -> Self {
        Self {
            client_id: None,
            keep_alive: Duration::from_secs(60),
            protocol: ProtocolChoice::V5WithFallback,
            clean_start: true,
            session_expiry: None,
            will: None,
            authenticator: None,
            response_topic: None,
            username: url.username.clone(),
            password: url.password.clone(),
            url,
            tls: None,
            headers: Vec::new(),
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            outbox_bytes: DEFAULT_OUTBOX_BYTES,
            overflow: OverflowPolicy::RejectNew,
            store: None,
            backoff: Backoff::DEFAULT,
            connect_timeout: Duration::from_secs(10),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            request_capacity: DEFAULT_REQUEST_CAPACITY,
        }
    }

    /// The client identifier (default: `embermq-` and 12 random hex
    /// digits).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Keep Alive, whole seconds up to 65 535 (0 turns it off). A dead link
    /// is found within 1.5 × keepalive.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Which protocol version to speak (default 5.0 with fall-back to
    /// 3.1.1).
    pub fn protocol(mut self, protocol: ProtocolChoice) -> Self {
        self.protocol = protocol;
        self
    }

    /// Clean Start (5.0) / Clean Session (3.1.1) (default `true`). With
    /// `false` the broker resumes the stored session.
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }

    /// 5.0 Session Expiry Interval (whole seconds). Once a link was
    /// accepted the client reconnects with Clean Start 0, so the session
    /// (subscriptions, unacknowledged messages) survives a link loss.
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = Some(expiry);
        self
    }

    /// The Will message the broker publishes when the link dies without a
    /// DISCONNECT (its payload is never logged): a [`Will`] with its 5.0
    /// properties (Will Delay Interval, ...), or a plain [`Publish`].
    pub fn will(mut self, will: impl Into<Will>) -> Self {
        self.will = Some(will.into());
        self
    }

    /// MQTT 5.0 enhanced authentication (§4.12): CONNECT carries the
    /// authenticator's method and first data, the broker's AUTH challenges
    /// are answered with its steps, on every connect;
    /// [`Client::reauthenticate`](super::Client::reauthenticate) starts a
    /// re-authentication on the live link. Needs a 5.0 broker that knows
    /// the method (a 3.1.1 link has no AUTH).
    pub fn authenticator(mut self, authenticator: impl Authenticator + Send + 'static) -> Self {
        self.authenticator = Some(Box::new(authenticator));
        self
    }

    /// The topic replies to [`Client::request`](super::Client::request)
    /// come back on (subscribed once, at the first request). Default
    /// `embermq/replies/{client id}`; give each client its own.
    pub fn response_topic(mut self, topic: impl Into<String>) -> Self {
        self.response_topic = Some(topic.into());
        self
    }

    /// MQTT User Name and Password (override the URL's).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// The MQTT User Name alone (overrides the URL's; the password stays).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The MQTT Password alone (overrides the URL's).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// TLS settings for `mqtts://` and `wss://`: a CA file or the system's
    /// roots, a client certificate, ALPN (see [`RustlsOptions`]). Default:
    /// Mozilla's roots, no client certificate.
    pub fn tls(mut self, tls: RustlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// An extra WebSocket upgrade header (e.g. `Authorization`).
    pub fn ws_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The largest packet accepted and sent, in bytes (default
    /// [`DEFAULT_MAX_PACKET_SIZE`]); the receive and transmit buffers are
    /// this large. Told to a 5.0 broker in CONNECT.
    pub fn max_packet_size(mut self, bytes: u32) -> Self {
        self.max_packet_size = bytes;
        self
    }

    /// QoS 1/2 publishes sent and not yet acknowledged, at most (default
    /// [`DEFAULT_MAX_INFLIGHT`], up to [`MAX_INFLIGHT`]); a 5.0 broker's
    /// Receive Maximum lowers it further. A 3.1.1 broker announces no
    /// limit and some enforce one silently (mosquitto's
    /// `max_inflight_messages`, 20 by default, acknowledges and drops what
    /// is beyond it), hence the modest default.
    pub fn max_inflight(mut self, publishes: u16) -> Self {
        self.max_inflight = publishes;
        self
    }

    /// Bytes of queued and in-flight messages the outbox holds (default
    /// [`DEFAULT_OUTBOX_BYTES`]). [`Client::publish`](super::Client::publish)
    /// waits for room; [`Client::try_publish`](super::Client::try_publish)
    /// follows the [`overflow_policy`](Self::overflow_policy).
    pub fn outbox_bytes(mut self, bytes: usize) -> Self {
        self.outbox_bytes = bytes;
        self
    }

    /// What [`Client::try_publish`](super::Client::try_publish) does when
    /// the outbox is full (default: refuse the new message).
    pub fn overflow_policy(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// Keeps QoS 1/2 messages in an append-only log at `path` (a
    /// [`FileStore`](crate::store::FileStore)) until acknowledged, so a
    /// restarted process sends what the broker had not acknowledged.
    pub fn file_store(mut self, path: impl Into<PathBuf>) -> Self {
        self.store = Some(path.into());
        self
    }

    /// Reconnect spacing (exponential, full jitter) and the number of
    /// attempts (default [`Backoff::DEFAULT`]: for ever).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest one connect attempt (DNS, TCP, TLS, WebSocket, CONNACK)
    /// may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Events buffered for the application (default
    /// [`DEFAULT_EVENT_CAPACITY`]). When they are all unread, the client
    /// stops reading the socket until the application reads one.
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events;
        self
    }

    /// Requests (publish, subscribe, ...) buffered on their way to the
    /// driver (default [`DEFAULT_REQUEST_CAPACITY`]).
    pub fn request_capacity(mut self, requests: usize) -> Self {
        self.request_capacity = requests;
        self
    }

    /// The URL's host, port and scheme (without the password).
    pub fn url(&self) -> &BrokerUrl {
        &self.url
    }

    /// WebSocket buffer bytes per direction: the largest packet (so one
    /// packet is one frame) within 16..=64 KiB; the stream view carries
    /// larger messages through in pieces.
    pub(crate) fn ws_buffer_len(&self) -> usize {
        (self.max_packet_size as usize).clamp(WS_BUFFER_LEN, WS_BUFFER_MAX)
    }

    /// Every limit checked, with the reason when one is unusable.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Options(what));
        if self.keep_alive.as_secs() > u64::from(u16::MAX) {
            return bad(format!(
                "keep_alive {} s is above the 65535 s MQTT allows",
                self.keep_alive.as_secs()
            ));
        }
        if self.max_packet_size < MIN_PACKET_SIZE || self.max_packet_size > 268_435_455 {
            return bad(format!(
                "max_packet_size {} is outside {MIN_PACKET_SIZE}..=268435455",
                self.max_packet_size
            ));
        }
        if self.max_inflight == 0 || self.max_inflight > MAX_INFLIGHT {
            return bad(format!(
                "max_inflight {} is outside 1..={MAX_INFLIGHT}",
                self.max_inflight
            ));
        }
        if self.outbox_bytes < 64 {
            return bad(format!("outbox_bytes {} is below 64", self.outbox_bytes));
        }
        if self.event_capacity == 0 || self.request_capacity == 0 {
            return bad("event_capacity and request_capacity must be at least 1".to_owned());
        }
        if self.tls.is_some() && !self.url.scheme.is_tls() {
            return Err(Error::Setup(super::SetupError::TlsOptionsWithoutTls));
        }
        if let Some(expiry) = self.session_expiry
            && expiry.as_secs() > u64::from(u32::MAX)
        {
            return bad("session_expiry is above u32::MAX seconds".to_owned());
        }
        if let Some(will) = &self.will {
            topic::validate_name(&will.topic).map_err(Error::Topic)?;
            let too_long =
                |d: Option<Duration>| d.is_some_and(|d| d.as_secs() > u64::from(u32::MAX));
            if too_long(will.delay) {
                return bad("the Will's delay is above u32::MAX seconds".to_owned());
            }
        }
        if let Some(topic) = &self.response_topic {
            topic::validate_name(topic).map_err(Error::Topic)?;
        }
        Ok(())
    }
}

/// The Will message (MQTT 5.0 §3.1.2.5, §3.1.3.2-3; 3.1.1 §3.1.2.5): what
/// the broker publishes for this client when its link ends without a
/// DISCONNECT. Build with [`Will::new`] and the builder methods; the 5.0
/// properties are left out on a 3.1.1 link. `Debug` shows the payload's
/// length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic name (no wildcards).
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retained.
    pub retain: bool,
    /// 5.0 Will Delay Interval (whole seconds): the broker waits this long
    /// after the link ends, and publishes nothing if the client is back
    /// within it [MQTT-3.1.3-9] (or when the session ends, if sooner).
    pub delay: Option<Duration>,
    /// 5.0 properties of the Will message (Message Expiry, Content Type,
    /// Response Topic, Correlation Data, User Properties, Payload Format
    /// Indicator). `subscription_ids` is not sent.
    pub properties: MessageProperties,
}

impl fmt::Debug for Will {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Will")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("delay", &self.delay)
            .field("properties", &self.properties)
            .finish()
    }
}

impl Will {
    /// A Will for `topic` with `payload` at `qos`, not retained, no delay,
    /// no properties.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>, qos: QoS) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            delay: None,
            properties: MessageProperties::default(),
        }
    }

    /// Published retained.
    pub fn retained(mut self) -> Self {
        self.retain = true;
        self
    }

    /// 5.0 Will Delay Interval (whole seconds).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// 5.0 Message Expiry Interval of the Will message (whole seconds, up
    /// to `u32::MAX`).
    pub fn message_expiry(mut self, expiry: Duration) -> Self {
        self.properties.message_expiry_secs =
            Some(u32::try_from(expiry.as_secs()).unwrap_or(u32::MAX));
        self
    }

    /// 5.0 Content Type (a MIME type, say).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.properties.content_type = Some(content_type.into());
        self
    }

    /// 5.0 Response Topic, for whoever receives the Will.
    pub fn response_topic(mut self, topic: impl Into<String>) -> Self {
        self.properties.response_topic = Some(topic.into());
        self
    }

    /// 5.0 Correlation Data.
    pub fn correlation_data(mut self, data: impl Into<Bytes>) -> Self {
        self.properties.correlation_data = Some(data.into());
        self
    }

    /// A 5.0 User Property (appended; names may repeat).
    pub fn user_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties
            .user_properties
            .push((name.into(), value.into()));
        self
    }

    /// 5.0 Payload Format Indicator: `true` for a UTF-8 payload.
    pub fn payload_is_utf8(mut self, utf8: bool) -> Self {
        self.properties.payload_is_utf8 = Some(utf8);
        self
    }

    /// All the 5.0 message properties at once (replacing those set).
    pub fn with_properties(mut self, properties: MessageProperties) -> Self {
        self.properties = properties;
        self
    }
}

impl From<Publish> for Will {
    fn from(msg: Publish) -> Self {
        Self {
            topic: msg.topic.into(),
            payload: msg.payload,
            qos: msg.qos,
            retain: msg.retain,
            delay: None,
            properties: msg.properties.into_inner(),
        }
    }
}
