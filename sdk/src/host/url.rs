//! Broker URLs: `mqtt://`, `mqtts://`, `ws://` and `wss://`, as
//! [`connect`](super::connect) and the CLI take them.
//!
//! ```text
//! scheme://[user[:password]@]host[:port][/path][?query]
//! ```
//!
//! - Default ports: `mqtt` 1883, `mqtts` 8883, `ws` 80, `wss` 443.
//! - The path (with its query, kept verbatim: an AWS SigV4 presigned URL
//!   carries its signature there) is the WebSocket request target; the
//!   default is `/mqtt`. `mqtt://` and `mqtts://` take no path.
//! - User and password may be percent-encoded (`%40` for `@`); they are the
//!   MQTT User Name and Password unless `-u` / `-P` override them.
//! - IPv6 literals in brackets: `mqtt://[::1]:1883`.
//!
//! Nothing printed about a URL carries its password or query: `Display`
//! leaves both out, and a URL that does not parse is shown by [`masked`]
//! (for a command line's error message).
//!
//! Follows RFC 3986's generic syntax as far as a broker address needs it;
//! deliberately not a general URL parser (no fragments, no relative
//! references, no IDNA).

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

/// How the client reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over TLS over TCP.
    Mqtts,
    /// MQTT over WebSocket over TCP.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    /// The port used when the URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }

    /// Whether the transport is TLS (directly or under the WebSocket).
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Mqtts | Scheme::Wss)
    }

    /// Whether MQTT goes over a WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
}

/// A parsed broker URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// The transport.
    pub scheme: Scheme,
    /// Host name or IP literal (without brackets): what TCP dials and TLS
    /// verifies.
    pub host: String,
    /// The host as the WebSocket `Host` header writes it (IPv6 literals in
    /// brackets, RFC 7230 §5.4).
    pub host_header: String,
    /// TCP port (the scheme's default when the URL has none).
    pub port: u16,
    /// Whether the URL spelled the port out.
    pub explicit_port: bool,
    /// WebSocket request target: path and query (`/mqtt` by default).
    /// Empty for `mqtt://` and `mqtts://`.
    pub path: String,
    /// Decoded user name from the URL's user info.
    pub username: Option<String>,
    /// Decoded password from the URL's user info.
    pub password: Option<String>,
}

/// The WebSocket path used when a `ws://` / `wss://` URL has none.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// Why a broker URL was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// No `scheme://`.
    MissingScheme,
    /// A scheme other than mqtt, mqtts, ws, wss.
    UnknownScheme(String),
    /// Nothing between `://` and the port or path.
    MissingHost,
    /// An IPv6 literal without its closing bracket.
    UnclosedBracket,
    /// The port is not a number in 1..=65535.
    BadPort(String),
    /// A path on an `mqtt://` or `mqtts://` URL.
    PathOnTcp(String),
    /// A `%` not followed by two hex digits, or a decoded user info that is
    /// not UTF-8.
    BadPercentEncoding,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::MissingScheme => {
                f.write_str("missing scheme: write mqtt://, mqtts://, ws:// or wss://")
            }
            UrlError::UnknownScheme(s) => write!(
                f,
                "unknown scheme `{s}`: use mqtt://, mqtts://, ws:// or wss://"
            ),
            UrlError::MissingHost => f.write_str("missing host"),
            UrlError::UnclosedBracket => f.write_str("IPv6 address without closing `]`"),
            UrlError::BadPort(p) => write!(f, "bad port `{p}`: expected 1-65535"),
            UrlError::PathOnTcp(p) => write!(
                f,
                "path `{p}` on an mqtt(s):// URL: only ws:// and wss:// take a path"
            ),
            UrlError::BadPercentEncoding => f.write_str("bad percent-encoding in user info"),
        }
    }
}

impl core::error::Error for UrlError {}

impl FromStr for BrokerUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::MissingScheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Scheme::Mqtt,
            "mqtts" | "ssl" | "tls" => Scheme::Mqtts,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            _ => return Err(UrlError::UnknownScheme(scheme.to_owned())),
        };
        // Authority ends at the first `/` or `?`.
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)?), Some(percent_decode(p)?)),
                None => (Some(percent_decode(info)?), None),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(UrlError::UnclosedBracket)?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(UrlError::BadPort(after.to_owned())),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        let (port, explicit_port) = match port {
            None => (scheme.default_port(), false),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => (n, true),
                _ => return Err(UrlError::BadPort(p.to_owned())),
            },
        };
        let path = if scheme.is_websocket() {
            match target {
                "" => DEFAULT_WS_PATH.to_owned(),
                t if t.starts_with('?') => format!("{DEFAULT_WS_PATH}{t}"),
                t => t.to_owned(),
            }
        } else if target.is_empty() || target == "/" {
            String::new()
        } else {
            // Without the query, which may carry credentials.
            let path = target.split('?').next().unwrap_or_default();
            return Err(UrlError::PathOnTcp(path.to_owned()));
        };
        let host_header = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(BrokerUrl {
            scheme,
            host: host.to_owned(),
            host_header,
            port,
            explicit_port,
            path,
            username,
            password,
        })
    }
}

/// `raw`, parsed or not, as it may be printed: a password in the user
/// info replaced by `***`, and the query (and fragment) left out.
pub fn masked(raw: &str) -> String {
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, raw),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((info, host)) => match info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{info}@{host}"),
        },
        None => authority.to_owned(),
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{path}"),
        None => format!("{authority}{path}"),
    }
}

/// Decodes `%XX` escapes (RFC 3986 §2.1).
fn percent_decode(s: &str) -> Result<String, UrlError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|c| (c as char).to_digit(16));
            let lo = bytes.next().and_then(|c| (c as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err(UrlError::BadPercentEncoding),
            }
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::BadPercentEncoding)
}

impl fmt::Display for BrokerUrl {
    /// The URL without its password (safe to print in messages and logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if let Some(user) = &self.username {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}", self.port)?;
        // The query may carry credentials (a presigned URL): leave it out.
        let path = self.path.split('?').next().unwrap_or_default();
        f.write_str(path)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn parse(s: &str) -> BrokerUrl {
        s.parse().unwrap()
    }

    #[test]
    fn default_ports_per_scheme_and_default_ws_path() {
        let cases = [
            ("mqtt://broker", Scheme::Mqtt, 1883, ""),
            ("mqtts://broker", Scheme::Mqtts, 8883, ""),
            ("ws://broker", Scheme::Ws, 80, "/mqtt"),
            ("wss://broker", Scheme::Wss, 443, "/mqtt"),
        ];
        for (url, scheme, port, path) in cases {
            let u = parse(url);
            assert_eq!(
                (u.scheme, u.port, u.path.as_str()),
                (scheme, port, path),
                "{url}"
            );
            assert!(!u.explicit_port);
            assert_eq!(u.host, "broker");
        }
    }

    #[test]
    fn port_path_query_and_user_info_are_kept() {
        let u = parse("wss://dev%40home:p%3Ass@x.example:8884/$iothub/websocket?a=1&b=2");
        assert_eq!(u.scheme, Scheme::Wss);
        assert_eq!(u.host, "x.example");
        assert_eq!((u.port, u.explicit_port), (8884, true));
        assert_eq!(u.path, "/$iothub/websocket?a=1&b=2");
        assert_eq!(u.username.as_deref(), Some("dev@home"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        // Display drops the password and the query.
        assert_eq!(
            u.to_string(),
            "wss://dev@home@x.example:8884/$iothub/websocket"
        );
    }

    #[test]
    fn query_without_path_goes_after_the_default_path() {
        assert_eq!(parse("ws://h?x=1").path, "/mqtt?x=1");
    }

    #[test]
    fn ipv6_literal_in_brackets() {
        let u = parse("mqtt://[::1]:1884");
        assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
        assert_eq!(u.host_header, "[::1]");
        assert_eq!(u.to_string(), "mqtt://[::1]:1884");
        assert_eq!(parse("ws://[::1]").port, 80);
    }

    #[test]
    fn masked_hides_the_password_and_the_query_of_any_text() {
        assert_eq!(
            masked("wss://alice:s3cret@h:99999/p?X-Amz-Signature=abc#f"),
            "wss://alice:***@h:99999/p"
        );
        assert_eq!(masked("alice:s3cret@h:1883"), "alice:***@h:1883");
        assert_eq!(masked("mqtt://bob@h?sig=1"), "mqtt://bob@h");
        assert_eq!(masked("ws://h/mqtt"), "ws://h/mqtt");
        // A password holding `@`: the last `@` ends the user info.
        assert_eq!(masked("ws://u:p@ss@h"), "ws://u:***@h");
    }

    #[test]
    fn path_on_tcp_error_leaves_out_the_query() {
        let e = "mqtt://b/x?token=s3cret".parse::<BrokerUrl>().unwrap_err();
        assert_eq!(e, UrlError::PathOnTcp("/x".into()));
    }

    #[test]
    fn malformed_urls_are_refused_with_the_reason() {
        let err = |s: &str| s.parse::<BrokerUrl>().unwrap_err();
        assert_eq!(err("broker:1883"), UrlError::MissingScheme);
        assert_eq!(err("http://b"), UrlError::UnknownScheme("http".into()));
        assert_eq!(err("mqtt://:1883"), UrlError::MissingHost);
        assert_eq!(err("mqtt://b:0"), UrlError::BadPort("0".into()));
        assert_eq!(err("mqtt://b:70000"), UrlError::BadPort("70000".into()));
        assert_eq!(err("mqtt://[::1"), UrlError::UnclosedBracket);
        assert_eq!(err("mqtt://b/x"), UrlError::PathOnTcp("/x".into()));
        assert_eq!(err("mqtt://u%4@b"), UrlError::BadPercentEncoding);
    }
}
