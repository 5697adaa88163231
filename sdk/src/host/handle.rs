//! The application's handle: [`Client`], `Clone + Send + Sync + 'static`,
//! for any number of tasks on any runtime flavour. Every call queues a
//! request for the driver task (so calls made before the first connect
//! wait in the outbox and go out once connected) and never does I/O.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::request::Exchanges;
use super::{Error, Message, MessageProperties, PropertiesBox, Topic};
use crate::codec::{QoS, SubscriptionOptions};
use crate::session::FilterResults;
use crate::topic;

/// A message to publish (or the Will), owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Topic name (no wildcards). Keep a [`Topic`] and pass clones of it
    /// to publish without a fresh allocation per message.
    pub topic: Topic,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retained.
    pub retain: bool,
    /// 5.0 properties (Response Topic, Correlation Data, User Properties,
    /// Content Type, Message Expiry, Payload Format); dropped on a 3.1.1
    /// link. `subscription_ids` is not sent (a client may not
    /// [MQTT-3.3.4-6]). Not sent with a Will. Boxed only when present;
    /// read and write them as a [`MessageProperties`].
    pub properties: PropertiesBox,
}

impl Publish {
    /// A message for `topic` with `payload` at `qos`, not retained.
    pub fn new(topic: impl Into<Topic>, payload: impl Into<Bytes>, qos: QoS) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            properties: PropertiesBox::default(),
        }
    }

    /// The same message with these 5.0 properties.
    pub fn with_properties(mut self, properties: MessageProperties) -> Self {
        self.properties = properties.into();
        self
    }

    /// The same message, retained.
    pub fn retained(mut self) -> Self {
        self.retain = true;
        self
    }

    /// The same message as a 5.0 request (§4.10) answered on `topic`,
    /// with `correlation` copied into the reply. [`Client::request`]
    /// sets both itself; this is for a reply you collect on your own.
    pub fn request_reply_to(
        mut self,
        topic: impl Into<String>,
        correlation: impl Into<Bytes>,
    ) -> Self {
        self.properties.response_topic = Some(topic.into());
        self.properties.correlation_data = Some(correlation.into());
        self
    }
}

/// What a [`Client`] asks of the driver task.
pub(crate) enum Request {
    Publish {
        msg: Publish,
        /// `true`: never wait for outbox room ([`Client::try_publish`]).
        now: bool,
        /// `None`: nobody can wait for the outcome
        /// ([`Client::publish_detached`]), so no channel was made.
        done: Option<oneshot::Sender<Result<(), Error>>>,
    },
    Subscribe {
        filters: Vec<(String, SubscriptionOptions)>,
        done: oneshot::Sender<Result<FilterResults, Error>>,
    },
    Unsubscribe {
        filters: Vec<String>,
        done: oneshot::Sender<Result<FilterResults, Error>>,
    },
    Reauthenticate {
        done: oneshot::Sender<Result<(), Error>>,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
}

/// The outcome of one publish: await it for the PUBACK (QoS 1), the
/// PUBCOMP (QoS 2) or the write (QoS 0), or drop it (the message is sent
/// all the same).
#[derive(Debug)]
#[must_use = "a publish token does nothing unless awaited; dropping it is fine"]
pub struct Token {
    rx: oneshot::Receiver<Result<(), Error>>,
}

impl Future for Token {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Stopped)))
    }
}

/// The handle. Clone it into every task that publishes or subscribes.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) requests: mpsc::Sender<Request>,
    /// The largest packet, to refuse an impossible publish at once.
    pub(crate) max_packet_size: u32,
    /// Requests waiting for their replies (shared with the driver task).
    pub(crate) exchanges: Arc<Exchanges>,
}

impl Client {
    /// Publishes `payload` on `topic` at `qos`. Waits only while the
    /// request buffer is full; the returned [`Token`] completes with the
    /// PUBACK / PUBCOMP (or the write, for QoS 0), or with why not. A
    /// message that can never be sent (bad topic, larger than
    /// [`Options::max_packet_size`](super::Options::max_packet_size)) is
    /// refused at once.
    pub async fn publish(
        &self,
        topic: impl Into<Topic>,
        payload: impl Into<Bytes>,
        qos: QoS,
    ) -> Result<Token, Error> {
        self.send(Publish::new(topic, payload, qos)).await
    }

    /// Publishes `msg` (retained, ...) as [`publish`](Self::publish) does.
    pub async fn send(&self, msg: Publish) -> Result<Token, Error> {
        self.check(&msg)?;
        let (done, rx) = oneshot::channel();
        self.queue(msg, Some(done)).await?;
        Ok(Token { rx })
    }

    /// Publishes as [`publish`](Self::publish) does, without a [`Token`]:
    /// for a message whose outcome nobody awaits (rumqttc's `publish`),
    /// it saves the completion channel a token needs (an allocation and
    /// its synchronisation per message, most of what a QoS 0 publish costs
    /// the host layer beyond the core client's). A message refused at once
    /// (bad topic, too large) is still an error here; what happens to it
    /// later (PUBACK, overflow policy, the client stopping) is reported to
    /// no one.
    pub async fn publish_detached(
        &self,
        topic: impl Into<Topic>,
        payload: impl Into<Bytes>,
        qos: QoS,
    ) -> Result<(), Error> {
        self.send_detached(Publish::new(topic, payload, qos)).await
    }

    /// [`send`](Self::send) without a [`Token`], as
    /// [`publish_detached`](Self::publish_detached).
    pub async fn send_detached(&self, msg: Publish) -> Result<(), Error> {
        self.check(&msg)?;
        self.queue(msg, None).await
    }

    async fn queue(
        &self,
        msg: Publish,
        done: Option<oneshot::Sender<Result<(), Error>>>,
    ) -> Result<(), Error> {
        let request = Request::Publish {
            msg,
            now: false,
            done,
        };
        // Without waiting first: `try_send` takes a permit without the
        // waiter a `send` future sets up, which is most of a QoS 0
        // publish's cost here; `send` only when the buffer is full.
        match self.requests.try_send(request) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(request)) => self
                .requests
                .send(request)
                .await
                .map_err(|_| Error::Stopped),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Error::Stopped),
        }
    }

    /// Publishes without ever waiting: a full request buffer is
    /// [`Error::RequestBufferFull`]; a full outbox is handled by the
    /// [`Options::overflow_policy`](super::Options::overflow_policy) (the
    /// refusal or [`PublishFailure::Dropped`](crate::session::PublishFailure::Dropped)
    /// comes through the token).
    pub fn try_publish(
        &self,
        topic: impl Into<Topic>,
        payload: impl Into<Bytes>,
        qos: QoS,
    ) -> Result<Token, Error> {
        let msg = Publish::new(topic, payload, qos);
        self.check(&msg)?;
        let (done, rx) = oneshot::channel();
        let request = Request::Publish {
            msg,
            now: true,
            done: Some(done),
        };
        self.requests.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::RequestBufferFull,
            mpsc::error::TrySendError::Closed(_) => Error::Stopped,
        })?;
        Ok(Token { rx })
    }

    /// Subscribes to `filter` at `qos` and waits for the SUBACK. A refused
    /// filter is [`Error::Refused`] with the reason code. The subscription
    /// is restored by the client whenever a broker lost the session.
    pub async fn subscribe(&self, filter: impl Into<String>, qos: QoS) -> Result<(), Error> {
        self.subscribe_many([(filter.into(), SubscriptionOptions::qos(qos))])
            .await
            .map(drop)
    }

    /// Subscribes to up to 8 filters, each with its options (5.0 No Local,
    /// Retain As Published, Retain Handling), in one SUBSCRIBE: one reason
    /// code per filter. Any refused filter is [`Error::Refused`], which
    /// carries all the codes.
    pub async fn subscribe_many(
        &self,
        filters: impl IntoIterator<Item = (String, SubscriptionOptions)>,
    ) -> Result<FilterResults, Error> {
        let filters: Vec<_> = filters.into_iter().collect();
        for (filter, _) in &filters {
            topic::validate_filter(filter).map_err(Error::Topic)?;
        }
        let (done, rx) = oneshot::channel();
        self.filters_request(Request::Subscribe { filters, done }, rx)
            .await
    }

    /// Unsubscribes from `filters` and waits for the UNSUBACK (5.0: a
    /// reason code per filter, any failure is [`Error::Refused`]).
    pub async fn unsubscribe<S: Into<String>>(
        &self,
        filters: impl IntoIterator<Item = S>,
    ) -> Result<FilterResults, Error> {
        let filters: Vec<String> = filters.into_iter().map(Into::into).collect();
        for filter in &filters {
            topic::validate_filter(filter).map_err(Error::Topic)?;
        }
        let (done, rx) = oneshot::channel();
        self.filters_request(Request::Unsubscribe { filters, done }, rx)
            .await
    }

    /// Ends the client: a DISCONNECT when the link is up (so the broker
    /// drops the Will), then the driver task ends and the event stream
    /// ends with [`Event::Stopped`](super::Event::Stopped). Waits until it
    /// has. Messages still in the outbox are lost unless a
    /// [`file_store`](super::Options::file_store) keeps them; their tokens
    /// complete with [`Error::Stopped`].
    pub async fn disconnect(&self) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        if self
            .requests
            .send(Request::Disconnect { done })
            .await
            .is_err()
        {
            // Already ended.
            return Ok(());
        }
        // The task drops `done` when it ends in any way.
        let _ = rx.await;
        Ok(())
    }

    /// MQTT 5.0 request/response (§4.10): publishes `payload` on `topic`
    /// at QoS 1 with this client's Response Topic and a fresh Correlation
    /// Data, and returns the reply that carries that Correlation Data, or
    /// [`Error::Timeout`] once `timeout` has passed (counted from the call,
    /// the first call's SUBSCRIBE to the response topic included). See
    /// [`request_with`](Self::request_with).
    pub async fn request(
        &self,
        topic: impl Into<Topic>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Message, Error> {
        self.request_with(Publish::new(topic, payload, QoS::AtLeastOnce), timeout)
            .await
    }

    /// [`request`](Self::request) for a message of your own (QoS, User
    /// Properties, Content Type, ...); its Response Topic and Correlation
    /// Data are set here. The response topic
    /// ([`Options::response_topic`](super::Options::response_topic)) is
    /// subscribed at QoS 1 by the first request and restored with the
    /// other subscriptions. Any number of requests may be outstanding; a
    /// reply that comes after its request timed out is an ordinary
    /// [`Event::Message`](super::Event::Message). Dropping the future
    /// withdraws the request.
    ///
    /// # Errors
    ///
    /// [`Error::NeedsV5`] on a 3.1.1 link (it has no Response Topic);
    /// [`Error::Timeout`]; the errors of [`publish`](Self::publish) and
    /// [`subscribe`](Self::subscribe).
    pub async fn request_with(
        &self,
        mut msg: Publish,
        timeout: Duration,
    ) -> Result<Message, Error> {
        let exchanges = &*self.exchanges;
        if exchanges.on_v311() {
            return Err(Error::NeedsV5);
        }
        let exchange = async {
            exchanges
                .subscribed
                .get_or_try_init(|| async {
                    self.subscribe(exchanges.response_topic.clone(), QoS::AtLeastOnce)
                        .await
                })
                .await?;
            let (waiting, reply) = exchanges.wait();
            msg.properties.response_topic = Some(exchanges.response_topic.clone());
            msg.properties.correlation_data = Some(waiting.key.clone());
            self.send(msg).await?.await?;
            let reply = reply.await.map_err(|_| Error::Stopped);
            drop(waiting);
            reply
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout { after: timeout })?
    }

    /// Answers a request (§4.10): publishes `payload` on the request's
    /// Response Topic with its Correlation Data copied, at the QoS the
    /// request was delivered with. The token completes as for
    /// [`publish`](Self::publish).
    ///
    /// # Errors
    ///
    /// [`Error::NotARequest`] when `request` carries no Response Topic;
    /// the errors of [`publish`](Self::publish) (a Response Topic with a
    /// wildcard is [`Error::Topic`]).
    pub async fn respond(
        &self,
        request: &Message,
        payload: impl Into<Bytes>,
    ) -> Result<Token, Error> {
        let topic = request
            .properties
            .response_topic
            .clone()
            .ok_or(Error::NotARequest)?;
        let properties = MessageProperties {
            correlation_data: request.properties.correlation_data.clone(),
            ..MessageProperties::default()
        };
        self.send(Publish::new(topic, payload, request.qos).with_properties(properties))
            .await
    }

    /// Starts an MQTT 5.0 re-authentication (§4.12.1) on the live link
    /// with the [`Options::authenticator`](super::Options::authenticator);
    /// returns once it is queued. The outcome comes as
    /// [`Event::Session`](super::Event::Session) (re-authenticated), or the
    /// broker closes the link.
    ///
    /// # Errors
    ///
    /// [`Error::Session`] when there is no authenticator, no 5.0 link up,
    /// or an exchange is already under way.
    pub async fn reauthenticate(&self) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        self.requests
            .send(Request::Reauthenticate { done })
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.unwrap_or(Err(Error::Stopped))
    }

    async fn filters_request(
        &self,
        request: Request,
        rx: oneshot::Receiver<Result<FilterResults, Error>>,
    ) -> Result<FilterResults, Error> {
        self.requests
            .send(request)
            .await
            .map_err(|_| Error::Stopped)?;
        let results = rx.await.unwrap_or(Err(Error::Stopped))?;
        if results.all_succeeded() {
            Ok(results)
        } else {
            Err(Error::Refused(results))
        }
    }

    fn check(&self, msg: &Publish) -> Result<(), Error> {
        topic::validate_name(&msg.topic).map_err(Error::Topic)?;
        // The smallest PUBLISH carrying them: fixed header (2), topic
        // length (2), topic, payload. Larger can never be sent.
        let size = msg.topic.len() + msg.payload.len() + 4;
        if size > self.max_packet_size as usize {
            return Err(Error::TooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        Ok(())
    }
}
