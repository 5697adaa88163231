//! A broker model for the session tests, built on the codec. It keeps a
//! session per client (subscriptions, unreleased QoS 2 ids, its own
//! outbound flows), answers like a broker, and can lose, hold or forge
//! packets at exact steps — the faults a real broker will not produce on
//! demand.

extern crate alloc;

use alloc::collections::{BTreeSet, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::codec::{
    Auth, Connack, DecodeOptions, Decoded, Packet, PacketType, Properties, PropertyFields,
    ProtocolVersion, PubAck, Publish, QoS, ReasonCode, ReasonCodes, Suback, Unsuback,
};
use crate::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    ToBroker,
    ToClient,
}

#[derive(Debug, Clone)]
pub(super) struct ConnectSeen {
    pub(super) version: ProtocolVersion,
    pub(super) client_id: String,
    pub(super) clean_start: bool,
    pub(super) keep_alive: u16,
    pub(super) username: Option<String>,
    pub(super) password: Option<Vec<u8>>,
    pub(super) will_topic: Option<String>,
    pub(super) will_delay: Option<u32>,
    pub(super) receive_maximum: Option<u16>,
    pub(super) maximum_packet_size: Option<u32>,
    pub(super) topic_alias_maximum: Option<u16>,
}

#[derive(Debug, Clone)]
#[allow(dead_code, reason = "kept for failure messages")]
pub(super) struct PublishSeen {
    pub(super) topic: String,
    pub(super) payload: Vec<u8>,
    pub(super) qos: QoS,
    pub(super) dup: bool,
    pub(super) packet_id: Option<u16>,
    pub(super) response_topic: Option<String>,
    pub(super) correlation_data: Option<Vec<u8>>,
    pub(super) message_expiry: Option<u32>,
    pub(super) user_properties: Vec<(String, String)>,
    /// The Topic Alias it carried and whether the topic itself was empty.
    pub(super) alias: Option<u16>,
    pub(super) topic_on_wire: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutStage {
    AwaitAck,
    AwaitPubcomp,
}

#[derive(Debug, Clone)]
struct OutFlow {
    packet_id: u16,
    stage: OutStage,
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
}

#[derive(Debug, Clone, Default)]
struct BrokerSession {
    subs: Vec<(String, QoS)>,
    awaiting_pubrel: BTreeSet<u16>,
    outbound: Vec<OutFlow>,
}

#[derive(Default)]
pub(super) struct Broker {
    /// A broker that speaks only this version (None: both).
    only_version: Option<ProtocolVersion>,
    version: Option<ProtocolVersion>,
    pub(super) now: Instant,
    pub(super) out: VecDeque<Vec<u8>>,
    pub(super) closed: bool,
    session: Option<BrokerSession>,
    // Behaviour knobs.
    pub(super) refuse_with: Option<ReasonCode>,
    pub(super) close_on_connect: bool,
    pub(super) mute_connack: bool,
    pub(super) mute_pingresp: bool,
    pub(super) server_keep_alive: Option<u16>,
    pub(super) receive_maximum: Option<u16>,
    pub(super) maximum_packet_size: Option<u32>,
    pub(super) maximum_qos: Option<QoS>,
    pub(super) retain_available: Option<bool>,
    pub(super) topic_alias_maximum: Option<u16>,
    client_aliases: alloc::collections::BTreeMap<u16, String>,
    pub(super) assign_id: Option<&'static str>,
    pub(super) ack_code: ReasonCode,
    pub(super) hold_acks: bool,
    pub(super) suback_extra_code: bool,
    /// Refuse every filter of the following SUBSCRIBEs (keeping what the
    /// session already had, as mosquitto does when its ACL refuses).
    pub(super) refuse_subscribe: bool,
    pub(super) lie_session_present: bool,
    drops: Vec<(Dir, PacketType)>,
    // What was seen.
    log: Vec<(Dir, PacketType, Instant)>,
    pub(super) disconnected_at: Option<Instant>,
    pub(super) last_connect: Option<ConnectSeen>,
    pub(super) publishes: Vec<PublishSeen>,
    pub(super) delivered: Vec<PublishSeen>,
    pub(super) unacked: Vec<(u16, QoS)>,
    pub(super) max_unacked: usize,
    pub(super) acked_by_client: Vec<(PacketType, u16)>,
    pub(super) pubrel_codes: Vec<(u16, ReasonCode)>,
    pub(super) client_disconnect: Option<ReasonCode>,
    /// 5.0 enhanced authentication: the method this broker runs. It
    /// challenges with `challenge-<n>` and expects the challenge reversed.
    pub(super) auth_method: Option<&'static str>,
    /// A CONNECT waiting for its authentication: (clean start, empty id).
    auth_connect: Option<(bool, bool)>,
    /// The challenge outstanding, if any.
    auth_challenge: Option<String>,
    /// AUTH packets the client sent: reason code and data.
    pub(super) auth_seen: Vec<(ReasonCode, Option<Vec<u8>>)>,
    /// Authentication Data of the last CONNECT.
    pub(super) connect_auth_data: Option<Vec<u8>>,
}

impl Broker {
    pub(super) fn new(only_version: Option<ProtocolVersion>) -> Self {
        Self {
            only_version,
            ..Self::default()
        }
    }

    fn v(&self) -> ProtocolVersion {
        self.version.unwrap_or(ProtocolVersion::V5)
    }

    pub(super) fn accept(&mut self) {
        self.closed = false;
        self.version = None;
        self.client_aliases.clear();
        self.client_disconnect = None;
    }

    pub(super) fn link_lost(&mut self) {
        self.out.clear();
        self.version = None;
        self.disconnected_at.get_or_insert(self.now);
        self.unacked.clear();
    }

    pub(super) fn forget_session(&mut self) {
        self.session = None;
    }

    pub(super) fn drop_next(&mut self, dir: Dir, t: PacketType) {
        self.drops.push((dir, t));
    }

    fn take_drop(&mut self, dir: Dir, t: PacketType) -> bool {
        match self.drops.iter().position(|&d| d == (dir, t)) {
            Some(i) => {
                self.drops.remove(i);
                true
            }
            None => false,
        }
    }

    pub(super) fn count(&self, dir: Dir, t: PacketType) -> usize {
        self.log
            .iter()
            .filter(|(d, p, _)| *d == dir && *p == t)
            .count()
    }

    pub(super) fn first_time(&self, t: PacketType) -> Option<Instant> {
        self.log
            .iter()
            .find(|(d, p, _)| *d == Dir::ToBroker && *p == t)
            .map(|(_, _, at)| *at)
    }

    pub(super) fn delivered_topics(&self) -> Vec<String> {
        self.delivered.iter().map(|p| p.topic.clone()).collect()
    }

    pub(super) fn subscriptions(&self) -> Vec<(String, QoS)> {
        self.session
            .as_ref()
            .map(|s| s.subs.clone())
            .unwrap_or_default()
    }

    pub(super) fn session_qos2_empty(&self) -> bool {
        self.session
            .as_ref()
            .is_none_or(|s| s.awaiting_pubrel.is_empty())
    }

    /// Sends a packet to the client (or loses it, when told to).
    pub(super) fn send_raw(&mut self, packet: Packet<'_>) {
        let mut buf = vec![0u8; packet.encoded_len(self.v())];
        let n = packet.encode(&mut buf, self.v()).unwrap();
        buf.truncate(n);
        let t = packet.packet_type();
        self.log.push((Dir::ToClient, t, self.now));
        if !self.take_drop(Dir::ToClient, t) {
            self.out.push_back(buf);
        }
    }

    /// Forged bytes, sent as they are.
    pub(super) fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.out.push_back(bytes);
    }

    pub(super) fn send_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        id: u16,
        dup: bool,
    ) {
        let packet_id = (qos != QoS::AtMostOnce).then_some(id);
        if let (Some(id), Some(s)) = (packet_id, self.session.as_mut())
            && !s.outbound.iter().any(|f| f.packet_id == id)
        {
            s.outbound.push(OutFlow {
                packet_id: id,
                stage: OutStage::AwaitAck,
                topic: topic.to_string(),
                payload: payload.to_vec(),
                qos,
            });
        }
        self.send_raw(Packet::Publish(Publish {
            dup,
            qos,
            retain: false,
            topic,
            packet_id,
            properties: Properties::NONE,
            payload,
        }));
    }

    fn ack(&mut self, id: u16, qos: QoS) {
        let mut a = PubAck::new(id);
        if self.v() == ProtocolVersion::V5 {
            a.reason_code = self.ack_code;
        }
        match qos {
            QoS::AtLeastOnce => self.send_raw(Packet::Puback(a)),
            _ => self.send_raw(Packet::Pubrec(a)),
        }
    }

    pub(super) fn release_acks(&mut self) {
        for (id, qos) in core::mem::take(&mut self.unacked) {
            self.ack(id, qos);
        }
    }

    pub(super) fn release_one(&mut self, id: u16) {
        if let Some(i) = self.unacked.iter().position(|(u, _)| *u == id) {
            let (id, qos) = self.unacked.remove(i);
            self.ack(id, qos);
        }
    }

    /// Handles one packet from the client.
    pub(super) fn receive(&mut self, bytes: &[u8]) {
        let opts = DecodeOptions::new(self.v());
        let packet = match Packet::decode(bytes, &opts) {
            Ok(Decoded::Complete { value, len }) => {
                assert_eq!(len, bytes.len(), "one packet per transmit");
                value
            }
            other => panic!("session sent an undecodable packet: {other:?}"),
        };
        let t = packet.packet_type();
        self.log.push((Dir::ToBroker, t, self.now));
        if self.take_drop(Dir::ToBroker, t) {
            return;
        }
        match packet {
            Packet::Connect(c) => self.on_connect(&c),
            Packet::Publish(p) => self.on_publish(&p),
            Packet::Pubrel(a) => {
                self.pubrel_codes.push((a.packet_id, a.reason_code));
                if let Some(s) = self.session.as_mut() {
                    s.awaiting_pubrel.remove(&a.packet_id);
                }
                self.send_raw(Packet::Pubcomp(PubAck::new(a.packet_id)));
            }
            Packet::Puback(a) | Packet::Pubcomp(a) => {
                self.acked_by_client.push((t, a.packet_id));
                if let Some(s) = self.session.as_mut() {
                    s.outbound.retain(|f| f.packet_id != a.packet_id);
                }
            }
            Packet::Pubrec(a) => {
                self.acked_by_client.push((t, a.packet_id));
                let advance = self.session.as_mut().and_then(|s| {
                    s.outbound
                        .iter_mut()
                        .find(|f| f.packet_id == a.packet_id && f.stage == OutStage::AwaitAck)
                });
                if let Some(f) = advance {
                    f.stage = OutStage::AwaitPubcomp;
                    self.send_raw(Packet::Pubrel(PubAck::new(a.packet_id)));
                }
            }
            Packet::Subscribe(s) => {
                let mut codes = Vec::new();
                let v5 = self.v() == ProtocolVersion::V5;
                for sub in s.subscriptions.iter() {
                    if sub.filter.starts_with("deny") || self.refuse_subscribe {
                        codes.push(if v5 {
                            ReasonCode::NOT_AUTHORIZED
                        } else {
                            ReasonCode(0x80)
                        });
                    } else {
                        codes.push(ReasonCode(sub.options.qos as u8));
                        let session = self.session.get_or_insert_with(BrokerSession::default);
                        session.subs.retain(|(f, _)| f != sub.filter);
                        session.subs.push((sub.filter.to_string(), sub.options.qos));
                    }
                }
                if self.suback_extra_code {
                    codes.push(ReasonCode::SUCCESS);
                }
                self.send_raw(Packet::Suback(Suback {
                    packet_id: s.packet_id,
                    properties: Properties::NONE,
                    reason_codes: ReasonCodes::from_slice(&codes),
                }));
            }
            Packet::Unsubscribe(u) => {
                let mut codes = Vec::new();
                for f in u.filters.iter() {
                    if let Some(s) = self.session.as_mut() {
                        s.subs.retain(|(g, _)| g != f);
                    }
                    codes.push(ReasonCode::SUCCESS);
                }
                if self.v() != ProtocolVersion::V5 {
                    codes.clear();
                }
                self.send_raw(Packet::Unsuback(Unsuback {
                    packet_id: u.packet_id,
                    properties: Properties::NONE,
                    reason_codes: ReasonCodes::from_slice(&codes),
                }));
            }
            Packet::Pingreq => {
                if !self.mute_pingresp {
                    self.send_raw(Packet::Pingresp);
                }
            }
            Packet::Disconnect(d) => {
                self.client_disconnect = Some(d.reason_code);
                self.closed = true;
            }
            Packet::Auth(a) => self.on_auth(&a),
            other => panic!("a client never sends {other:?}"),
        }
    }

    fn challenge(&mut self) {
        let n = self.auth_seen.len() + 1;
        let challenge = alloc::format!("challenge-{n}");
        let fields = PropertyFields {
            authentication_method: self.auth_method,
            authentication_data: Some(challenge.as_bytes()),
            ..PropertyFields::NONE
        };
        self.send_raw(Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties::from_fields(&fields),
        }));
        self.auth_challenge = Some(challenge);
    }

    /// 5.0 §4.12: an AUTH from the client (an answer, or a
    /// re-authentication).
    fn on_auth(&mut self, a: &Auth<'_>) {
        let data = a.properties.authentication_data().map(<[u8]>::to_vec);
        self.auth_seen.push((a.reason_code, data.clone()));
        assert_eq!(a.properties.authentication_method(), self.auth_method);
        if a.reason_code == ReasonCode::RE_AUTHENTICATE {
            self.challenge();
            return;
        }
        let expected: Option<Vec<u8>> = self
            .auth_challenge
            .take()
            .map(|c| c.bytes().rev().collect());
        let good = expected.is_some() && data == expected;
        match self.auth_connect.take() {
            Some((clean_start, empty_id)) if good => self.accept_connect(clean_start, empty_id),
            Some(_) => {
                self.send_raw(Packet::Connack(Connack {
                    session_present: false,
                    reason_code: ReasonCode::NOT_AUTHORIZED,
                    properties: Properties::NONE,
                }));
                self.closed = true;
            }
            None if good => {
                let fields = PropertyFields {
                    authentication_method: self.auth_method,
                    ..PropertyFields::NONE
                };
                self.send_raw(Packet::Auth(Auth {
                    reason_code: ReasonCode::SUCCESS,
                    properties: Properties::from_fields(&fields),
                }));
            }
            None => {
                self.send_raw(Packet::Disconnect(crate::codec::Disconnect {
                    reason_code: ReasonCode::NOT_AUTHORIZED,
                    properties: Properties::NONE,
                }));
                self.closed = true;
            }
        }
    }

    fn on_connect(&mut self, c: &crate::codec::Connect<'_>) {
        self.connect_auth_data = c.properties.authentication_data().map(<[u8]>::to_vec);
        self.last_connect = Some(ConnectSeen {
            version: c.protocol_version,
            client_id: c.client_id.to_string(),
            clean_start: c.clean_start,
            keep_alive: c.keep_alive,
            username: c.username.map(|u| u.to_string()),
            password: c.password.map(|p| p.to_vec()),
            will_topic: c.will.map(|w| w.topic.to_string()),
            will_delay: c.will.and_then(|w| w.properties.will_delay_interval()),
            receive_maximum: c.properties.receive_maximum(),
            maximum_packet_size: c.properties.maximum_packet_size(),
            topic_alias_maximum: c.properties.topic_alias_maximum(),
        });
        if self.close_on_connect {
            self.closed = true;
            return;
        }
        if self.mute_connack {
            return;
        }
        if let Some(only) = self.only_version
            && only != c.protocol_version
        {
            {
                // Answer in the broker's own version, then close.
                self.version = Some(only);
                self.send_raw(Packet::Connack(Connack {
                    session_present: false,
                    reason_code: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                    properties: Properties::NONE,
                }));
                self.closed = true;
                return;
            }
        }
        self.version = Some(c.protocol_version);
        if let Some(code) = self.refuse_with {
            self.send_raw(Packet::Connack(Connack {
                session_present: false,
                reason_code: code,
                properties: Properties::NONE,
            }));
            self.closed = true;
            return;
        }
        if self.auth_method.is_some() {
            if c.properties.authentication_method() != self.auth_method {
                self.send_raw(Packet::Connack(Connack {
                    session_present: false,
                    reason_code: ReasonCode::BAD_AUTHENTICATION_METHOD,
                    properties: Properties::NONE,
                }));
                self.closed = true;
                return;
            }
            self.auth_connect = Some((c.clean_start, c.client_id.is_empty()));
            self.challenge();
            return;
        }
        self.accept_connect(c.clean_start, c.client_id.is_empty());
    }

    fn accept_connect(&mut self, clean_start: bool, empty_id: bool) {
        let present = if clean_start {
            self.session = Some(BrokerSession::default());
            false
        } else {
            let present = self.session.is_some();
            self.session.get_or_insert_with(BrokerSession::default);
            present
        };
        let fields = PropertyFields {
            receive_maximum: self.receive_maximum,
            maximum_packet_size: self.maximum_packet_size,
            maximum_qos: self.maximum_qos,
            retain_available: self.retain_available,
            server_keep_alive: self.server_keep_alive,
            topic_alias_maximum: self.topic_alias_maximum,
            authentication_method: self.auth_method,
            assigned_client_identifier: if empty_id { self.assign_id } else { None },
            ..PropertyFields::NONE
        };
        let properties = if self.v() == ProtocolVersion::V5 {
            Properties::from_fields(&fields)
        } else {
            Properties::NONE
        };
        self.send_raw(Packet::Connack(Connack {
            session_present: present || self.lie_session_present,
            reason_code: ReasonCode::SUCCESS,
            properties,
        }));
        // [MQTT-4.4.0-1] on the broker side: resend its own unfinished flows.
        if present {
            let flows = self
                .session
                .as_ref()
                .map(|s| s.outbound.clone())
                .unwrap_or_default();
            for f in flows {
                match f.stage {
                    OutStage::AwaitAck => self.send_raw(Packet::Publish(Publish {
                        dup: true,
                        qos: f.qos,
                        retain: false,
                        topic: &f.topic,
                        packet_id: Some(f.packet_id),
                        properties: Properties::NONE,
                        payload: &f.payload,
                    })),
                    OutStage::AwaitPubcomp => {
                        self.send_raw(Packet::Pubrel(PubAck::new(f.packet_id)));
                    }
                }
            }
        }
    }

    fn on_publish(&mut self, p: &Publish<'_>) {
        let alias = p.properties.topic_alias();
        let topic = match alias {
            Some(a) if p.topic.is_empty() => self
                .client_aliases
                .get(&a)
                .cloned()
                .expect("alias used before set up"),
            Some(a) => {
                assert!(
                    a <= self.topic_alias_maximum.unwrap_or(0),
                    "alias above our maximum"
                );
                self.client_aliases.insert(a, p.topic.to_string());
                p.topic.to_string()
            }
            None => p.topic.to_string(),
        };
        let seen = PublishSeen {
            alias,
            topic_on_wire: !p.topic.is_empty(),
            topic,
            payload: p.payload.to_vec(),
            qos: p.qos,
            dup: p.dup,
            packet_id: p.packet_id,
            response_topic: p.properties.response_topic().map(|s| s.to_string()),
            correlation_data: p.properties.correlation_data().map(|d| d.to_vec()),
            message_expiry: p.properties.message_expiry_interval(),
            user_properties: p
                .properties
                .user_properties()
                .map(|u| (u.name.to_string(), u.value.to_string()))
                .collect(),
        };
        self.publishes.push(seen.clone());
        let Some(id) = p.packet_id else {
            self.delivered.push(seen);
            return;
        };
        let accepted = !self.ack_code.is_error();
        match p.qos {
            QoS::ExactlyOnce => {
                let s = self.session.get_or_insert_with(BrokerSession::default);
                if accepted && s.awaiting_pubrel.insert(id) {
                    self.delivered.push(seen);
                }
            }
            _ => {
                if accepted {
                    self.delivered.push(seen);
                }
            }
        }
        if self.hold_acks {
            self.unacked.push((id, p.qos));
            self.max_unacked = self.max_unacked.max(self.unacked.len());
        } else {
            self.ack(id, p.qos);
        }
    }
}

impl Broker {
    pub(super) fn drops_clear(&mut self) {
        self.drops.clear();
    }
}
