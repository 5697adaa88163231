//! The CONNECT / CONNACK exchange (MQTT 5.0 §3.1, §3.2; 3.1.1 §3.1, §3.2):
//! the CONNECT we send, what an accepted or refused CONNACK does to the
//! session (broker limits, resending after a resumed session, requeuing and
//! resubscribing after a lost one, falling back to 3.1.1) and 5.0 enhanced
//! authentication (§4.12). Sending before CONNACK is deliberately not done.

use super::{BrokerLimits, EnhancedAuth, Link, Ping, Request, RequestKind, Session};
use crate::codec::{
    self, Auth, Connack, Connect, PacketType, Properties, Property, PropertyFields,
    ProtocolVersion, QoS, ReasonCode, Will,
};
use crate::session::auth::Authenticator;
use crate::session::error::{ProtocolViolation, SessionError};
use crate::session::event::{CloseReason, Event, MAX_FILTERS_PER_REQUEST};
use crate::session::outbox::RecordState;
use crate::time::{Duration, Instant};

impl<
    'b,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
    const V311_QOS2_RUNS: usize,
    const EVENTS: usize,
> Session<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES, V311_QOS2_RUNS, EVENTS>
{
    /// Lends an [`Authenticator`] and the buffer its steps write their
    /// Authentication Data into (`step`: the largest data one step sends;
    /// [`MAX_AUTH_DATA`](crate::session::MAX_AUTH_DATA) fits the common
    /// methods). CONNECT (5.0 only) then carries its Authentication Method
    /// and first data, and the broker's AUTH Continue packets are answered
    /// with its steps until CONNACK (MQTT 5.0 §4.12).
    /// [`reauthenticate`](Self::reauthenticate) starts a re-authentication
    /// on a connected link.
    ///
    /// The buffer is lent rather than kept in the session, so that a
    /// session without enhanced authentication does not carry it.
    pub fn set_authenticator(
        &mut self,
        authenticator: &'b mut (dyn Authenticator + Send),
        step: &'b mut [u8],
    ) {
        self.auth = Some(EnhancedAuth {
            authenticator,
            step,
            len: None,
        });
    }

    /// Starts a 5.0 re-authentication (AUTH 0x19 with the authenticator's
    /// first step, §4.12.1); [`Event::Reauthenticated`] reports its
    /// success, a failed one ends with the broker's DISCONNECT.
    pub fn reauthenticate(&mut self) -> Result<(), SessionError> {
        if self.link != Link::Up || !self.is_v5() || self.auth.is_none() || self.reauthenticating {
            return Err(SessionError::InvalidState {
                state: "not a 5.0 link with an authenticator and no exchange under way",
            });
        }
        self.auth_step(None, true);
        self.auth_pending = Some(ReasonCode::RE_AUTHENTICATE);
        self.reauthenticating = true;
        Ok(())
    }

    /// Runs one authenticator step into the lent step buffer: its data is
    /// what the next CONNECT or AUTH carries. False when there is none: a
    /// `start` without data, or a `respond` that gave up (or claimed more
    /// than the buffer holds).
    pub(super) fn auth_step(&mut self, data: Option<&[u8]>, start: bool) -> bool {
        let Some(a) = self.auth.as_mut() else {
            return false;
        };
        let n = if start {
            a.authenticator.start(a.step)
        } else {
            a.authenticator.respond(data, a.step)
        };
        a.len = n
            .filter(|&n| n <= a.step.len())
            .and_then(|n| u16::try_from(n).ok());
        a.len.is_some()
    }

    /// The Authentication Data of the next CONNECT or AUTH, if any.
    fn auth_data(&self) -> Option<&[u8]> {
        let a = self.auth.as_ref()?;
        a.step.get(..usize::from(a.len?))
    }

    /// Forgets the last step's data (a new link, or a 3.1.1 one).
    pub(super) fn clear_auth_data(&mut self) {
        if let Some(a) = self.auth.as_mut() {
            a.len = None;
        }
    }

    pub(super) fn auth_method(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.authenticator.method())
    }

    /// 5.0 §4.12: the broker's AUTH during the CONNECT exchange or a
    /// re-authentication.
    pub(super) fn handle_auth(&mut self, a: &Auth<'_>) -> Result<(), ProtocolViolation> {
        let unexpected = ProtocolViolation::UnexpectedPacket {
            packet_type: PacketType::Auth,
        };
        // [MQTT-4.12.0-5]: the same method throughout.
        if a.properties.authentication_method() != self.auth_method() {
            return Err(unexpected);
        }
        match a.reason_code {
            ReasonCode::CONTINUE_AUTHENTICATION => {
                if self.auth_step(a.properties.authentication_data(), false) {
                    self.auth_pending = Some(ReasonCode::CONTINUE_AUTHENTICATION);
                } else {
                    self.reauthenticating = false;
                    self.fail(ReasonCode::NOT_AUTHORIZED);
                }
                Ok(())
            }
            ReasonCode::SUCCESS if self.reauthenticating => {
                self.reauthenticating = false;
                self.push_event(Event::Reauthenticated);
                Ok(())
            }
            _ => Err(unexpected),
        }
    }

    pub(super) fn handle_connack(
        &mut self,
        c: &Connack<'_>,
        decoded_as: ProtocolVersion,
        now: Instant,
    ) {
        if c.reason_code != ReasonCode::SUCCESS {
            let fallback = self.is_v5()
                && self.config.protocol.falls_back()
                && (c.reason_code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
                    || decoded_as == ProtocolVersion::V311);
            if fallback {
                self.version = ProtocolVersion::V311;
            }
            self.push_event(Event::ConnectRefused {
                reason: c.reason_code,
                falling_back_to_v311: fallback,
            });
            self.close(CloseReason::ConnectRefused(c.reason_code));
            return;
        }
        // One pass over the properties (each appears at most once, checked
        // when decoded), absent ones keeping their defaults.
        let mut broker = BrokerLimits::DEFAULT;
        let mut keep_alive = self.config.keep_alive_secs;
        for p in c.properties.iter() {
            match p {
                Property::ReceiveMaximum(v) => broker.receive_maximum = v,
                Property::MaximumPacketSize(v) => broker.maximum_packet_size = v,
                Property::MaximumQos(v) => broker.maximum_qos = v,
                Property::RetainAvailable(v) => broker.retain_available = v,
                Property::TopicAliasMaximum(v) => broker.topic_alias_maximum = v,
                Property::ServerKeepAlive(v) => keep_alive = v,
                Property::AssignedClientIdentifier(id) => {
                    self.assigned_client_id.clear();
                    // Longer identifiers are not kept (documented limit).
                    let _ = self.assigned_client_id.push_str(id);
                }
                _ => {}
            }
        }
        self.broker = broker;
        self.keep_alive = Duration::from_secs(u64::from(keep_alive));
        self.link = Link::Up;
        self.accepted_once = true;
        self.last_tx = now.max(self.last_tx);
        self.ping = Ping::Idle;
        let mut off = 0;
        while let Some(m) = self.outbox.meta(off) {
            if c.session_present {
                // [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (with DUP,
                // same id) and PUBREL.
                match m.state {
                    RecordState::AwaitAck => self.outbox.set(off, m.packet_id, RecordState::Queued),
                    RecordState::AwaitPubcomp => {
                        self.outbox.set(off, m.packet_id, RecordState::PubrelQueued);
                    }
                    RecordState::Queued
                    | RecordState::PubrelQueued
                    | RecordState::Held
                    | RecordState::Written => {}
                }
            } else if m.state != RecordState::Held {
                // The broker has no state: everything unacknowledged is
                // sent again as a new publish, nothing is dropped. A QoS 2
                // one already sent may have reached the broker: exactly
                // once is lost, and the policy decides (see
                // `apply_session_lost`).
                self.outbox.set(off, 0, RecordState::Queued);
                if m.qos == QoS::ExactlyOnce && m.packet_id != 0 {
                    self.outbox.set_notice(off, true);
                    self.session_lost_notices = true;
                }
            }
            off += m.len;
        }
        for r in self.requests.iter_mut() {
            r.sent = false;
        }
        if !c.session_present {
            self.inbound_qos2.clear();
            self.inbound_qos2_runs.clear();
            self.queue_restore();
        }
        self.push_event(Event::Connected {
            session_present: c.session_present,
            version: self.version(),
        });
    }

    /// Queues SUBSCRIBE requests for every acknowledged filter with no
    /// request in flight.
    fn queue_restore(&mut self) {
        self.restore_refused = 0;
        loop {
            let waiting = self.subs.iter().any(|s| s.active && s.pending.is_none());
            if !waiting || self.requests.is_full() {
                break;
            }
            let Ok(packet_id) = self.allocate_packet_id() else {
                break;
            };
            let mut n = 0;
            for s in self.subs.iter_mut() {
                if n < MAX_FILTERS_PER_REQUEST && s.active && s.pending.is_none() {
                    s.pending = Some((packet_id, RequestKind::Subscribe));
                    s.requested = s.options;
                    n += 1;
                }
            }
            if n == 0 {
                break;
            }
            let token = self.next_token();
            let request = Request {
                packet_id,
                token,
                kind: RequestKind::Subscribe,
                restore: true,
                sent: false,
            };
            if self.requests.push(request).is_ok() {
                self.restoring = self.restoring.saturating_add(1);
            }
        }
    }

    pub(super) fn encode_connect(&self, buf: &mut [u8]) -> Result<usize, SessionError> {
        let v5 = self.is_v5();
        let fields = PropertyFields {
            session_expiry_interval: self.config.session_expiry_secs,
            receive_maximum: u16::try_from(INFLIGHT)
                .ok()
                .filter(|&n| n > 0 && n < u16::MAX),
            maximum_packet_size: Some(self.max_incoming_packet_size()),
            topic_alias_maximum: u16::try_from(ALIASES).ok().filter(|&n| n > 0),
            authentication_method: self.auth_method(),
            authentication_data: self.auth_data(),
            ..PropertyFields::NONE
        };
        let will = self.config.will.map(|w| {
            if v5 {
                w
            } else {
                Will {
                    properties: Properties::NONE,
                    ..w
                }
            }
        });
        let connect = Connect {
            protocol_version: self.version(),
            clean_start: self.clean_start_flag(),
            keep_alive: self.config.keep_alive_secs,
            client_id: self.assigned_client_id().unwrap_or(self.config.client_id),
            will,
            username: match self.credentials.as_deref() {
                Some(c) => c.username(),
                None => self.config.username,
            },
            password: match self.credentials.as_deref() {
                Some(c) => c.password(),
                None => self.config.password,
            },
            properties: if v5 {
                Properties::from_fields(&fields)
            } else {
                Properties::NONE
            },
        };
        Ok(codec::encode_connect(&connect, buf)?)
    }

    /// Sends the pending AUTH (5.0 §3.15), if any.
    pub(super) fn transmit_auth(&mut self, buf: &mut [u8]) -> Result<Option<usize>, SessionError> {
        let Some(reason_code) = self.auth_pending.filter(|_| self.is_v5()) else {
            return Ok(None);
        };
        let fields = PropertyFields {
            authentication_method: self.auth_method(),
            authentication_data: self.auth_data(),
            ..PropertyFields::NONE
        };
        let auth = Auth {
            reason_code,
            properties: Properties::from_fields(&fields),
        };
        let len = codec::encode_auth(&auth, buf, self.version())?;
        self.auth_pending = None;
        Ok(Some(len))
    }
}
