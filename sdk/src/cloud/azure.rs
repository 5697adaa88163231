//! Azure IoT Hub over MQTT-over-WebSocket: the shared access signature
//! (SAS) token used as the MQTT password, and the WebSocket path, MQTT user
//! name, client id and topics that go with it.
//!
//! Implements "Control access to IoT Hub with shared access signatures"
//! (Security tokens, token structure) and "Communicate with an IoT hub
//! using the MQTT protocol" (Using the MQTT protocol directly, as a device)
//! of the Azure IoT Hub documentation:
//!
//! ```text
//! SharedAccessSignature sr={URL-encoded resourceURI}&sig={signature}&se={expiry}[&skn={policyName}]
//! signature = URL-encode(base64(HMAC-SHA256(base64-decode(key), URL-encode(resourceURI) + "\n" + expiry)))
//! ```
//!
//! The WebSocket endpoint is `wss://{hub}.azure-devices.net:443/$iothub/websocket`
//! with subprotocol `mqtt`; the MQTT client id is the device id, the user
//! name `{hub}.azure-devices.net/{device id}/?api-version=2021-04-12`, the
//! password the SAS token.
//!
//! Deliberately not done: X.509 device authentication (a TLS client
//! certificate, the TLS connector's business), the Device Provisioning
//! Service, module identities' topics, and reading the clock: the token's
//! expiry is an argument (Unix seconds).

use core::fmt::{self, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;

use super::{CloudError, DigestWriter, MAX_KEY_LEN, PercentEncoded, SliceWriter, keyed_hmac};

/// The HTTP path of IoT Hub's MQTT-over-WebSocket endpoint.
pub const WSS_PATH: &str = "/$iothub/websocket";
/// The WebSocket subprotocol IoT Hub expects (`Sec-WebSocket-Protocol`).
pub const WSS_SUBPROTOCOL: &str = "mqtt";
/// The TCP port of `wss://` on IoT Hub.
pub const WSS_PORT: u16 = 443;
/// The TCP port of MQTT over TLS (no WebSocket) on IoT Hub.
pub const MQTTS_PORT: u16 = 8883;
/// The API version put in the MQTT user name.
pub const API_VERSION: &str = "2021-04-12";

/// The inputs of a SAS token.
///
/// `Debug` leaves the key out.
#[derive(Clone, Copy)]
pub struct SasToken<'a> {
    /// The resource URI the token grants access to, not encoded, e.g.
    /// `myhub.azure-devices.net/devices/device1`.
    pub resource_uri: &'a str,
    /// The shared access key, base64-encoded as the portal and CLI show
    /// it (the device's primary key, or a policy's key).
    pub key_base64: &'a str,
    /// When the token stops being valid, in Unix seconds.
    pub expiry_unix_secs: u64,
    /// The shared access policy name (`skn`) when signing with a policy's
    /// key; `None` for a device's own key.
    pub policy_name: Option<&'a str>,
}

impl fmt::Debug for SasToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("resource_uri", &self.resource_uri)
            .field("key_base64", &"<redacted>")
            .field("expiry_unix_secs", &self.expiry_unix_secs)
            .field("policy_name", &self.policy_name)
            .finish()
    }
}

fn encoded(text: &str) -> PercentEncoded<'_> {
    PercentEncoded {
        text,
        keep_slash: false,
    }
}

/// Writes the SAS token `SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`
/// into `buf` and returns it.
///
/// # Errors
///
/// [`CloudError::InvalidKey`] if the key is not standard base64 of at most
/// [`MAX_KEY_LEN`] bytes; [`CloudError::InvalidInput`] for an empty
/// resource URI or policy name; [`CloudError::BufferTooSmall`] if the token
/// does not fit in `buf` (a device token is about 150 bytes plus the URI).
pub fn sas_token<'b>(token: &SasToken<'_>, buf: &'b mut [u8]) -> Result<&'b str, CloudError> {
    if token.resource_uri.is_empty() {
        return Err(CloudError::InvalidInput {
            field: "resource_uri",
        });
    }
    if token.policy_name.is_some_and(str::is_empty) {
        return Err(CloudError::InvalidInput {
            field: "policy_name",
        });
    }
    // Room for the decoder's conservative estimate (3 bytes per 4 chars,
    // padding included), then the real length is checked.
    let mut key = [0u8; MAX_KEY_LEN + 3];
    let key_len = STANDARD
        .decode_slice(token.key_base64.trim(), &mut key)
        .map_err(|_| CloudError::InvalidKey)?;
    let key = key
        .get(..key_len)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .ok_or(CloudError::InvalidKey)?;

    let mut mac = keyed_hmac(key);
    let _ = write!(
        DigestWriter(&mut mac),
        "{}\n{}",
        encoded(token.resource_uri),
        token.expiry_unix_secs
    );
    let digest: [u8; 32] = mac.finalize().into_bytes().into();
    let mut sig = [0u8; 44];
    let sig_len = STANDARD
        .encode_slice(digest, &mut sig)
        .map_err(|_| CloudError::InvalidKey)?;
    let sig = sig
        .get(..sig_len)
        .and_then(|s| core::str::from_utf8(s).ok())
        .ok_or(CloudError::InvalidKey)?;

    let mut w = SliceWriter::new(buf);
    let written = (|| -> fmt::Result {
        write!(
            w,
            "SharedAccessSignature sr={}&sig={}&se={}",
            encoded(token.resource_uri),
            encoded(sig),
            token.expiry_unix_secs
        )?;
        if let Some(policy) = token.policy_name {
            write!(w, "&skn={}", encoded(policy))?;
        }
        Ok(())
    })();
    let capacity = w.capacity();
    written.map_err(|_| CloudError::BufferTooSmall { capacity })?;
    w.finish()
}

/// A device identity on an IoT hub: everything but the key that an MQTT
/// connection needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IotHubDevice<'a> {
    /// The hub's host name, e.g. `myhub.azure-devices.net` (other clouds
    /// use other suffixes, e.g. `azure-devices.cn`).
    pub hub_host: &'a str,
    /// The device id as registered in the hub (case-sensitive).
    pub device_id: &'a str,
}

impl<'a> IotHubDevice<'a> {
    fn check(&self) -> Result<(), CloudError> {
        let host_ok = !self.hub_host.is_empty()
            && self
                .hub_host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !host_ok {
            return Err(CloudError::InvalidInput { field: "hub_host" });
        }
        // IoT Hub device ids: up to 128 of ASCII alphanumerics and
        // `- . % _ * ? ! ( ) , : = @ $ '`; never `/`, `#` or `+`, which
        // would change the topic or the user name.
        let id_ok = !self.device_id.is_empty()
            && self.device_id.len() <= 128
            && self.device_id.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.'
                            | b'%'
                            | b'_'
                            | b'*'
                            | b'?'
                            | b'!'
                            | b'('
                            | b')'
                            | b','
                            | b':'
                            | b'='
                            | b'@'
                            | b'$'
                            | b'\''
                    )
            });
        if !id_ok {
            return Err(CloudError::InvalidInput { field: "device_id" });
        }
        Ok(())
    }

    fn write_with<'b>(
        &self,
        buf: &'b mut [u8],
        body: impl FnOnce(&mut SliceWriter<'b>) -> fmt::Result,
    ) -> Result<&'b str, CloudError> {
        self.check()?;
        let mut w = SliceWriter::new(buf);
        let capacity = w.capacity();
        body(&mut w).map_err(|_| CloudError::BufferTooSmall { capacity })?;
        w.finish()
    }

    /// The MQTT client id: the device id.
    pub fn client_id(&self) -> &'a str {
        self.device_id
    }

    /// Writes the MQTT user name
    /// `{hub_host}/{device_id}/?api-version=2021-04-12` into `buf`.
    ///
    /// # Errors
    ///
    /// [`CloudError::InvalidInput`] for an empty or malformed host or
    /// device id; [`CloudError::BufferTooSmall`].
    pub fn username<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str, CloudError> {
        self.write_with(buf, |w| {
            write!(
                w,
                "{}/{}/?api-version={API_VERSION}",
                self.hub_host, self.device_id
            )
        })
    }

    /// Writes the WebSocket URL `wss://{hub_host}/$iothub/websocket` into
    /// `buf`.
    ///
    /// # Errors
    ///
    /// As [`IotHubDevice::username`].
    pub fn wss_url<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str, CloudError> {
        self.write_with(buf, |w| write!(w, "wss://{}{WSS_PATH}", self.hub_host))
    }

    /// Writes the device-to-cloud telemetry topic
    /// `devices/{device_id}/messages/events/` into `buf`. Message
    /// properties, if any, are appended URL-encoded by the caller
    /// (`...events/key=value&k2=v2`).
    ///
    /// # Errors
    ///
    /// As [`IotHubDevice::username`].
    pub fn telemetry_topic<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str, CloudError> {
        self.write_with(buf, |w| {
            write!(w, "devices/{}/messages/events/", self.device_id)
        })
    }

    /// Writes the cloud-to-device topic filter
    /// `devices/{device_id}/messages/devicebound/#` into `buf`.
    ///
    /// # Errors
    ///
    /// As [`IotHubDevice::username`].
    pub fn cloud_to_device_filter<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str, CloudError> {
        self.write_with(buf, |w| {
            write!(w, "devices/{}/messages/devicebound/#", self.device_id)
        })
    }

    /// Writes a device SAS token (resource `{hub_host}/devices/{device_id}`,
    /// no policy name) signed with the device's base64 key, valid until
    /// `expiry_unix_secs`, into `buf`: the MQTT password.
    ///
    /// # Errors
    ///
    /// As [`sas_token`] and [`IotHubDevice::username`];
    /// [`CloudError::TooLong`] if the resource URI exceeds 256 bytes.
    pub fn sas_token<'b>(
        &self,
        key_base64: &str,
        expiry_unix_secs: u64,
        buf: &'b mut [u8],
    ) -> Result<&'b str, CloudError> {
        self.check()?;
        let mut uri = heapless::String::<256>::new();
        write!(uri, "{}/devices/{}", self.hub_host, self.device_id).map_err(|_| {
            CloudError::TooLong {
                field: "resource_uri",
                max: 256,
            }
        })?;
        sas_token(
            &SasToken {
                resource_uri: &uri,
                key_base64,
                expiry_unix_secs,
                policy_name: None,
            },
            buf,
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use super::*;

    #[test]
    fn sas_token_matches_azure_iot_sdk_node_vector() {
        // azure-iot-sdk-node, common/core test `_shared_access_signature_test.js`:
        // resource "uri", key base64("password"), expiry 12345 gives
        // sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D (its toString
        // test, skn omitted).
        let mut buf = [0u8; 128];
        let token = sas_token(
            &SasToken {
                resource_uri: "uri",
                key_base64: "cGFzc3dvcmQ=",
                expiry_unix_secs: 12345,
                policy_name: None,
            },
            &mut buf,
        )
        .unwrap();
        assert_eq!(
            token,
            "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345"
        );
    }

    /// Expected strings computed with Python's standard library, following
    /// the IoT Hub docs' Python sample:
    /// `sts = urllib.parse.quote_plus(uri) + "\n" + str(exp)`;
    /// `sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(),
    /// hashlib.sha256).digest())`;
    /// `"SharedAccessSignature " + urllib.parse.urlencode({"sr": uri,
    /// "sig": sig, "se": str(exp)} | {"skn": policy})`, with key
    /// `base64.b64encode(bytes(range(32)))` and the docs' example URI and
    /// expiry.
    #[test]
    fn sas_token_for_device_uri_matches_python_reference() {
        const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        const DEVICE: &str = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1&sig=eJpcmROW6N%2BBPekLfcdlfPjxTZq8tewbLShoRG%2BfwZg%3D&se=1456971697";
        let device = IotHubDevice {
            hub_host: "myhub.azure-devices.net",
            device_id: "device1",
        };
        let mut buf = [0u8; 256];
        assert_eq!(
            device.sas_token(KEY, 1_456_971_697, &mut buf).unwrap(),
            DEVICE
        );
        let mut buf = [0u8; 256];
        let with_policy = sas_token(
            &SasToken {
                resource_uri: "myhub.azure-devices.net/devices/device1",
                key_base64: KEY,
                expiry_unix_secs: 1_456_971_697,
                policy_name: Some("device"),
            },
            &mut buf,
        )
        .unwrap();
        assert_eq!(with_policy, alloc::format!("{DEVICE}&skn=device"));
    }

    #[test]
    fn iot_hub_mqtt_settings_for_a_device() {
        let device = IotHubDevice {
            hub_host: "myhub.azure-devices.net",
            device_id: "device1",
        };
        let mut buf = [0u8; 128];
        assert_eq!(
            device.username(&mut buf).unwrap(),
            "myhub.azure-devices.net/device1/?api-version=2021-04-12"
        );
        assert_eq!(
            device.wss_url(&mut buf).unwrap(),
            "wss://myhub.azure-devices.net/$iothub/websocket"
        );
        assert_eq!(
            device.telemetry_topic(&mut buf).unwrap(),
            "devices/device1/messages/events/"
        );
        assert_eq!(
            device.cloud_to_device_filter(&mut buf).unwrap(),
            "devices/device1/messages/devicebound/#"
        );
        assert_eq!(device.client_id(), "device1");
    }

    #[test]
    fn bad_key_bad_device_id_and_short_buffer_are_errors() {
        let device = IotHubDevice {
            hub_host: "myhub.azure-devices.net",
            device_id: "device1",
        };
        let mut buf = [0u8; 256];
        assert_eq!(
            device.sas_token("not base64!", 1, &mut buf),
            Err(CloudError::InvalidKey)
        );
        assert_eq!(
            device.sas_token("", 1, &mut buf),
            Err(CloudError::InvalidKey)
        );
        // 96 bytes of key: over MAX_KEY_LEN.
        let long = "A".repeat(128);
        assert_eq!(
            device.sas_token(&long, 1, &mut buf),
            Err(CloudError::InvalidKey)
        );
        let bad = IotHubDevice {
            hub_host: "myhub.azure-devices.net",
            device_id: "a/b",
        };
        assert_eq!(
            bad.username(&mut buf),
            Err(CloudError::InvalidInput { field: "device_id" })
        );
        let mut short = [0u8; 20];
        assert_eq!(
            device.sas_token("cGFzc3dvcmQ=", 1, &mut short),
            Err(CloudError::BufferTooSmall { capacity: 20 })
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;

    proptest::proptest! {
        /// Any key text, URI, policy and buffer size: an error value or a
        /// token that fits, never a panic.
        #[test]
        fn sas_token_any_input_never_panics(
            uri in "\\PC{0,64}",
            key in "[A-Za-z0-9+/=]{0,100}|\\PC{0,20}",
            policy in proptest::option::of("\\PC{0,16}"),
            expiry in proptest::num::u64::ANY,
            len in 0usize..512,
        ) {
            let mut buf = [0u8; 512];
            let out = sas_token(
                &SasToken { resource_uri: &uri, key_base64: &key, expiry_unix_secs: expiry, policy_name: policy.as_deref() },
                buf.get_mut(..len).unwrap(),
            );
            if let Ok(token) = out {
                proptest::prop_assert!(token.len() <= len && token.starts_with("SharedAccessSignature sr="));
            }
        }
    }
}
