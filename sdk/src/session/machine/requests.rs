//! SUBSCRIBE / UNSUBSCRIBE requests and their acks (MQTT 5.0 §3.8–§3.11;
//! 3.1.1 §3.8–§3.11), the remembered filter table, and the resubscription
//! of acknowledged filters after the broker lost the session. Subscription
//! Identifiers are deliberately not supported.

use heapless::{String, Vec};

use super::{Request, RequestKind, Session, SubEntry};
use crate::codec::{
    self, PacketType, Properties, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
    Subscriptions, TopicFilters, Unsubscribe,
};
use crate::session::error::{ProtocolViolation, SessionError};
use crate::session::event::{Event, FilterResults, MAX_FILTERS_PER_REQUEST, RequestToken};
use crate::topic;

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
    pub(super) fn handle_request_ack(
        &mut self,
        kind: RequestKind,
        packet_id: u16,
        received: usize,
        results: &FilterResults,
    ) -> Result<(), ProtocolViolation> {
        let Some(index) = self
            .requests
            .iter()
            .position(|r| r.packet_id == packet_id && r.kind == kind)
        else {
            let packet_type = match kind {
                RequestKind::Subscribe => PacketType::Suback,
                RequestKind::Unsubscribe => PacketType::Unsuback,
            };
            self.unexpected_ack(packet_type, packet_id);
            return Ok(());
        };
        let key = Some((packet_id, kind));
        let expected = self.subs.iter().filter(|s| s.pending == key).count();
        // 3.1.1 UNSUBACK carries no codes (`usize::MAX`): all succeeded.
        let mut results = *results;
        if received == usize::MAX {
            for _ in 0..expected {
                results.push(ReasonCode::SUCCESS);
            }
        } else if received != expected {
            return Err(ProtocolViolation::ReasonCodeCountMismatch { expected, received });
        }
        let request = self.requests.remove(index);
        let restore = request.restore;
        let mut codes = results.codes().iter();
        let mut refused = 0u16;
        self.subs.retain_mut(|s| {
            if s.pending != key {
                return true;
            }
            s.pending = None;
            let code = codes.next().copied().unwrap_or(ReasonCode::SUCCESS);
            match kind {
                RequestKind::Subscribe if !code.is_error() => {
                    s.active = true;
                    s.options = s.requested;
                    s.options.qos = QoS::from_bits(code.0).unwrap_or(s.options.qos);
                    true
                }
                RequestKind::Subscribe => {
                    refused = refused.saturating_add(1);
                    // A refused re-subscription of a granted filter leaves
                    // the broker's subscription as it was (see
                    // docs/session.md): keep it, with its granted options.
                    // After a session loss (a restore) there is none left.
                    s.active && !restore
                }
                RequestKind::Unsubscribe => false,
            }
        });
        let token = RequestToken(request.token);
        if request.restore {
            self.restoring = self.restoring.saturating_sub(1);
            self.restore_refused = self.restore_refused.saturating_add(refused);
            if self.restoring == 0 {
                self.push_event(Event::SubscriptionsRestored {
                    refused: self.restore_refused,
                });
            }
        } else {
            self.push_event(match kind {
                RequestKind::Subscribe => Event::Subscribed { token, results },
                RequestKind::Unsubscribe => Event::Unsubscribed { token, results },
            });
        }
        Ok(())
    }

    /// Subscribes to up to [`MAX_FILTERS_PER_REQUEST`] filters. The filters
    /// are remembered and sent again when a broker has lost the session;
    /// the result comes as [`Event::Subscribed`].
    pub fn subscribe(&mut self, subs: &[Subscription<'_>]) -> Result<RequestToken, SessionError> {
        self.check_request(subs.iter().map(|s| s.filter))?;
        let new = subs
            .iter()
            .filter(|s| !self.subs.iter().any(|e| e.filter.as_str() == s.filter))
            .count();
        if self.subs.len() + new > SUBS {
            return Err(SessionError::SubscriptionTableFull { capacity: SUBS });
        }
        let packet_id = self.allocate_packet_id()?;
        let key = Some((packet_id, RequestKind::Subscribe));
        for s in subs {
            match self.subs.iter_mut().find(|e| e.filter.as_str() == s.filter) {
                Some(e) => {
                    e.requested = s.options;
                    e.pending = key;
                }
                None => {
                    let filter =
                        String::try_from(s.filter).map_err(|_| SessionError::FilterTooLong {
                            len: s.filter.len(),
                            max: FILTER_LEN,
                        })?;
                    let entry = SubEntry {
                        filter,
                        options: s.options,
                        requested: s.options,
                        active: false,
                        pending: key,
                    };
                    let _ = self.subs.push(entry);
                }
            }
        }
        Ok(self.push_request(packet_id, RequestKind::Subscribe))
    }

    /// Unsubscribes from up to [`MAX_FILTERS_PER_REQUEST`] filters; the
    /// result comes as [`Event::Unsubscribed`] and the filters are forgotten.
    pub fn unsubscribe(&mut self, filters: &[&str]) -> Result<RequestToken, SessionError> {
        self.check_request(filters.iter().copied())?;
        let new = filters
            .iter()
            .filter(|f| !self.subs.iter().any(|e| e.filter.as_str() == **f))
            .count();
        if self.subs.len() + new > SUBS {
            return Err(SessionError::SubscriptionTableFull { capacity: SUBS });
        }
        let packet_id = self.allocate_packet_id()?;
        let key = Some((packet_id, RequestKind::Unsubscribe));
        for f in filters {
            match self.subs.iter_mut().find(|e| e.filter.as_str() == *f) {
                Some(e) => e.pending = key,
                None => {
                    let filter = String::try_from(*f).map_err(|_| SessionError::FilterTooLong {
                        len: f.len(),
                        max: FILTER_LEN,
                    })?;
                    let options = SubscriptionOptions::qos(QoS::AtMostOnce);
                    let _ = self.subs.push(SubEntry {
                        filter,
                        options,
                        requested: options,
                        active: false,
                        pending: key,
                    });
                }
            }
        }
        Ok(self.push_request(packet_id, RequestKind::Unsubscribe))
    }

    fn check_request<'f>(
        &self,
        filters: impl Iterator<Item = &'f str> + Clone,
    ) -> Result<(), SessionError> {
        let given = filters.clone().count();
        if given == 0 || given > MAX_FILTERS_PER_REQUEST {
            return Err(SessionError::FilterCount {
                given,
                max: MAX_FILTERS_PER_REQUEST,
            });
        }
        if self.requests.is_full() {
            return Err(SessionError::SubscriptionTableFull { capacity: SUBS });
        }
        for (i, f) in filters.clone().enumerate() {
            topic::validate_filter(f)?;
            if f.len() > FILTER_LEN {
                return Err(SessionError::FilterTooLong {
                    len: f.len(),
                    max: FILTER_LEN,
                });
            }
            let busy = self
                .subs
                .iter()
                .any(|e| e.filter.as_str() == f && e.pending.is_some());
            let repeated = filters.clone().take(i).any(|g| g == f);
            if busy || repeated {
                return Err(SessionError::InvalidState {
                    state: "a request for this topic filter is already in flight",
                });
            }
        }
        Ok(())
    }

    fn push_request(&mut self, packet_id: u16, kind: RequestKind) -> RequestToken {
        let token = self.next_token();
        let _ = self.requests.push(Request {
            packet_id,
            token,
            kind,
            restore: false,
            sent: false,
        });
        RequestToken(token)
    }

    pub(super) fn transmit_request(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        let Some(index) = self.requests.iter().position(|r| !r.sent) else {
            return Ok(None);
        };
        let Some(&request) = self.requests.get(index) else {
            return Ok(None);
        };
        let key = Some((request.packet_id, request.kind));
        let len = match request.kind {
            RequestKind::Subscribe => {
                let mut list: Vec<Subscription<'_>, MAX_FILTERS_PER_REQUEST> = Vec::new();
                for s in self.subs.iter().filter(|s| s.pending == key) {
                    let _ = list.push(Subscription {
                        filter: s.filter.as_str(),
                        options: s.requested,
                    });
                }
                let packet = Subscribe {
                    packet_id: request.packet_id,
                    properties: Properties::NONE,
                    subscriptions: Subscriptions::from_slice(&list),
                };
                codec::encode_subscribe(&packet, buf, self.version())?
            }
            RequestKind::Unsubscribe => {
                let mut list: Vec<&str, MAX_FILTERS_PER_REQUEST> = Vec::new();
                for s in self.subs.iter().filter(|s| s.pending == key) {
                    let _ = list.push(s.filter.as_str());
                }
                let packet = Unsubscribe {
                    packet_id: request.packet_id,
                    properties: Properties::NONE,
                    filters: TopicFilters::from_slice(&list),
                };
                codec::encode_unsubscribe(&packet, buf, self.version())?
            }
        };
        if let Some(r) = self.requests.get_mut(index) {
            r.sent = true;
        }
        Ok(Some(len))
    }
}
