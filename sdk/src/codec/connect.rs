//! CONNECT (3.1.1 §3.1, 5.0 §3.1): protocol name and level, connect flags,
//! keep alive, 5.0 properties, then client identifier, Will, user name and
//! password.
//!
//! CONNECT carries its own protocol version; it decodes "MQTT" level 4 and 5
//! and refuses 3.1 ("MQIsdp" level 3) and anything else. It does not decide
//! whether a client identifier is acceptable (that is the server's CONNACK).
//!
//! `Debug` of [`Connect`] and [`Will`] never prints a secret: the password
//! and the Authentication Data are shown as `<redacted>`, the Will payload
//! by its length only, so a packet can be logged while debugging.

use core::fmt;

use super::error::{EncodeError, Violation};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, QoS, no_properties_in_v311};
use super::properties::{Properties, Property, PropertyContext};
use super::topic_syntax;
use super::wire::{Reader, Writer};

const PROTOCOL_NAME: &[u8] = b"MQTT";
const CTX: PropertyContext = PropertyContext::Packet(PacketType::Connect);

mod flag {
    pub(super) const RESERVED: u8 = 0x01;
    pub(super) const CLEAN_START: u8 = 0x02;
    pub(super) const WILL: u8 = 0x04;
    pub(super) const WILL_QOS_SHIFT: u8 = 3;
    pub(super) const WILL_RETAIN: u8 = 0x20;
    pub(super) const PASSWORD: u8 = 0x40;
    pub(super) const USERNAME: u8 = 0x80;
}

/// The Will: a message the server publishes if the connection is lost.
/// `Debug` shows the payload's length, not the payload.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Will<'a> {
    /// The topic name (no wildcards).
    pub topic: &'a str,
    /// The message payload.
    pub payload: &'a [u8],
    /// The QoS to publish it with.
    pub qos: QoS,
    /// Whether it is published retained.
    pub retain: bool,
    /// 5.0 Will properties (Will Delay Interval, message properties).
    pub properties: Properties<'a>,
}

/// A CONNECT packet. `Debug` redacts the password and the Authentication
/// Data and shows the Will payload's length only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The version this CONNECT is written in (level 4 or 5).
    pub protocol_version: ProtocolVersion,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// The client identifier (may be empty).
    pub client_id: &'a str,
    /// The Will, if any.
    pub will: Option<Will<'a>>,
    /// The user name, if any.
    pub username: Option<&'a str>,
    /// The password, if any (3.1.1 requires a user name with it).
    pub password: Option<&'a [u8]>,
    /// 5.0 CONNECT properties.
    pub properties: Properties<'a>,
}

/// Shown in place of a secret by the `Debug` impls: `<redacted>`.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Shown in place of a payload by the `Debug` impls: `<N bytes>`.
struct ByteCount(usize);

impl fmt::Debug for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

/// A property list as `Properties`'s `Debug` shows it, with the
/// Authentication Data redacted.
struct RedactedProperties<'p, 'a>(&'p Properties<'a>);

impl fmt::Debug for RedactedProperties<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for p in self.0.iter() {
            match p {
                Property::AuthenticationData(_) => {
                    list.entry(&format_args!("AuthenticationData({:?})", Redacted));
                }
                other => {
                    list.entry(&other);
                }
            }
        }
        list.finish()
    }
}

impl fmt::Debug for Will<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Will")
            .field("topic", &self.topic)
            .field("payload", &ByteCount(self.payload.len()))
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("properties", &self.properties)
            .finish()
    }
}

impl fmt::Debug for Connect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol_version", &self.protocol_version)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| Redacted))
            .field("properties", &RedactedProperties(&self.properties))
            .finish()
    }
}

impl<'a> Connect<'a> {
    /// A CONNECT in `protocol_version` for `client_id` with Clean Start, no
    /// keep alive, Will, credentials or properties; set the other fields as
    /// needed.
    pub const fn new(protocol_version: ProtocolVersion, client_id: &'a str) -> Self {
        Self {
            protocol_version,
            clean_start: true,
            keep_alive: 0,
            client_id,
            will: None,
            username: None,
            password: None,
            properties: Properties::NONE,
        }
    }

    pub(crate) fn decode(body: &'a [u8]) -> Result<Self, Violation> {
        let mut r = Reader::new(body);
        if r.binary()? != PROTOCOL_NAME {
            return Err(Violation::InvalidProtocolName);
        }
        let protocol_version = match r.u8()? {
            4 => ProtocolVersion::V311,
            5 => ProtocolVersion::V5,
            level => return Err(Violation::UnsupportedProtocolLevel { level }),
        };
        let flags = r.u8()?;
        if flags & flag::RESERVED != 0 {
            return Err(Violation::ReservedConnectFlag);
        }
        let will_flag = flags & flag::WILL != 0;
        let will_qos_bits = (flags >> flag::WILL_QOS_SHIFT) & 0b11;
        let will_retain = flags & flag::WILL_RETAIN != 0;
        if !will_flag && (will_qos_bits != 0 || will_retain) {
            return Err(Violation::WillFlagsWithoutWill);
        }
        let will_qos = QoS::from_bits(will_qos_bits)?;
        let has_username = flags & flag::USERNAME != 0;
        let has_password = flags & flag::PASSWORD != 0;
        if protocol_version == ProtocolVersion::V311 && has_password && !has_username {
            return Err(Violation::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let v5 = protocol_version.is_v5();
        let properties = if v5 {
            Properties::decode(&mut r, CTX)?
        } else {
            Properties::NONE
        };
        let client_id = r.utf8()?;
        let will = if will_flag {
            let properties = if v5 {
                Properties::decode(&mut r, PropertyContext::Will)?
            } else {
                Properties::NONE
            };
            let topic = r.utf8()?;
            topic_syntax::check_name(topic)?;
            let payload = r.binary()?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username { Some(r.utf8()?) } else { None };
        let password = if has_password {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            protocol_version,
            clean_start: flags & flag::CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn body_len(&self) -> usize {
        let v5 = self.protocol_version.is_v5();
        let props = |p: &Properties<'_>| if v5 { p.encoded_len() } else { 0 };
        let mut len = 2 + PROTOCOL_NAME.len() + 1 + 1 + 2;
        len += props(&self.properties);
        len += 2 + self.client_id.len();
        if let Some(will) = &self.will {
            len += props(&will.properties) + 2 + will.topic.len() + 2 + will.payload.len();
        }
        if let Some(username) = self.username {
            len += 2 + username.len();
        }
        if let Some(password) = self.password {
            len += 2 + password.len();
        }
        len
    }

    pub(crate) fn write_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let version = self.protocol_version;
        if version == ProtocolVersion::V311 && self.password.is_some() && self.username.is_none() {
            return Err(Violation::PasswordWithoutUsername.into());
        }
        no_properties_in_v311(&self.properties, version)?;
        let mut flags = 0u8;
        if self.clean_start {
            flags |= flag::CLEAN_START;
        }
        if let Some(will) = &self.will {
            no_properties_in_v311(&will.properties, version)?;
            if !topic_syntax::is_valid_name(will.topic) {
                topic_syntax::check_name(will.topic)?;
            }
            flags |= flag::WILL | ((will.qos as u8) << flag::WILL_QOS_SHIFT);
            if will.retain {
                flags |= flag::WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= flag::USERNAME;
        }
        if self.password.is_some() {
            flags |= flag::PASSWORD;
        }
        w.binary(PROTOCOL_NAME)?;
        w.u8(version.level())?;
        w.u8(flags)?;
        w.u16(self.keep_alive)?;
        if version.is_v5() {
            self.properties.write(w, CTX)?;
        }
        w.utf8(self.client_id)?;
        if let Some(will) = &self.will {
            if version.is_v5() {
                will.properties.write(w, PropertyContext::Will)?;
            }
            // Checked for U+0000 with the wildcards above.
            w.utf8_checked(will.topic)?;
            w.binary(will.payload)?;
        }
        if let Some(username) = self.username {
            w.utf8(username)?;
        }
        if let Some(password) = self.password {
            w.binary(password)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::format;

    use super::*;
    use crate::codec::PropertyFields;

    #[test]
    fn debug_redacts_password_auth_data_and_will_payload() {
        let fields = PropertyFields {
            authentication_method: Some("SCRAM-SHA-1"),
            authentication_data: Some(b"auth-secret-bytes"),
            ..PropertyFields::NONE
        };
        let mut c = Connect::new(ProtocolVersion::V5, "dev-1");
        c.username = Some("alice");
        c.password = Some(b"hunter2-password");
        c.properties = Properties::from_fields(&fields);
        c.will = Some(Will {
            topic: "devices/dev-1/status",
            payload: b"will-payload-secret",
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::NONE,
        });
        let shown = format!("{c:?}");
        for secret in [
            "hunter2-password",
            "auth-secret-bytes",
            "will-payload-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // The byte arrays must not show as numbers either.
        assert!(!shown.contains("104, 117"), "{shown}");
        assert!(shown.contains("password: Some(<redacted>)"), "{shown}");
        assert!(shown.contains("AuthenticationData(<redacted>)"), "{shown}");
        assert!(shown.contains("SCRAM-SHA-1"), "{shown}");
        assert!(shown.contains("payload: <19 bytes>"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("devices/dev-1/status"));
        let none = format!("{:?}", Connect::new(ProtocolVersion::V311, "x"));
        assert!(none.contains("password: None"), "{none}");
    }
}
