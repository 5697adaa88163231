//! The connection options `pub` and `sub` share (URL, credentials,
//! protocol version, TLS files, WebSocket headers, timeouts), and what they
//! turn into: a [`SessionConfig`], a [`ClientConfig`] and
//! [`TransportOptions`].
//!
//! Protocol choice: `--v5` (5.0 only), `--v311` (3.1.1 only), neither: 5.0,
//! falling back to 3.1.1 on the next attempt when the broker refuses 5.0
//! (the one case where the CLI retries a connect).

use core::time::Duration;

use clap::Args;
use embermq::client::{Backoff, ClientConfig};
use embermq::session::{ProtocolChoice, SessionConfig};

use crate::broker_url::BrokerUrl;
use crate::connect::{TlsOptions, TransportOptions};
use crate::failure::{Exit, Failure};

/// Options for reaching the broker.
#[derive(Args, Debug, Clone)]
pub(crate) struct ConnectArgs {
    /// Broker URL: mqtt://, mqtts://, ws:// or wss://, then host, an
    /// optional :port and (ws) /path, default /mqtt; user:password@ allowed.
    #[arg(value_name = "URL", value_parser = parse_url)]
    pub(crate) url: BrokerUrl,
    /// MQTT User Name (overrides the URL's).
    #[arg(short = 'u', long)]
    pub(crate) username: Option<String>,
    /// MQTT Password (overrides the URL's).
    #[arg(short = 'P', long)]
    pub(crate) password: Option<String>,
    /// Client identifier (default: embermq-PID).
    #[arg(short = 'i', long = "client-id")]
    pub(crate) client_id: Option<String>,
    /// MQTT 5.0 only.
    #[arg(long = "v5", conflicts_with = "v311")]
    pub(crate) v5: bool,
    /// MQTT 3.1.1 only.
    #[arg(long = "v311")]
    pub(crate) v311: bool,
    /// Keep Alive in seconds.
    #[arg(short = 'k', long = "keepalive", default_value_t = 60)]
    pub(crate) keepalive: u16,
    /// CA certificate(s) to trust (PEM), instead of the system roots.
    #[arg(long)]
    pub(crate) cafile: Option<std::path::PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    #[arg(long, requires = "key")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    pub(crate) key: Option<std::path::PathBuf>,
    /// Do not verify the broker's certificate (DANGEROUS; testing only).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Extra WebSocket upgrade header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,
    /// Seconds one connect attempt (TCP, TLS, WebSocket, CONNACK) may take.
    #[arg(long = "connect-timeout", value_name = "SECS", default_value_t = 10)]
    pub(crate) connect_timeout: u64,
    /// Seconds the whole command may take (exit 7 when work is left).
    #[arg(short = 'W', long = "timeout", value_name = "SECS")]
    pub(crate) timeout: Option<u64>,
    /// Print connection progress on stderr.
    #[arg(short = 'd', long = "debug")]
    pub(crate) debug: bool,
}

fn parse_url(s: &str) -> Result<BrokerUrl, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not `Name: value`"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("`{name}` is not a header name"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

impl ConnectArgs {
    /// The client id to use.
    pub(crate) fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("embermq-{}", std::process::id()))
    }

    /// User name: the flag, else the URL's.
    pub(crate) fn username(&self) -> Option<&str> {
        self.username.as_deref().or(self.url.username.as_deref())
    }

    /// Password: the flag, else the URL's.
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref().or(self.url.password.as_deref())
    }

    /// The session settings, borrowing id and credentials from `self` and
    /// `client_id`.
    pub(crate) fn session_config<'a>(
        &'a self,
        client_id: &'a str,
        max_packet: u32,
    ) -> SessionConfig<'a> {
        let mut c = SessionConfig::new(client_id);
        c.protocol = if self.v5 {
            ProtocolChoice::V5
        } else if self.v311 {
            ProtocolChoice::V311
        } else {
            ProtocolChoice::V5WithFallback
        };
        c.keep_alive_secs = self.keepalive;
        c.connect_timeout = embermq::time::Duration::from_secs(self.connect_timeout);
        c.username = self.username();
        c.password = self.password().map(str::as_bytes);
        c.max_incoming_packet_size = max_packet;
        c
    }

    /// The driver settings: no reconnects, except the one a 5.0 → 3.1.1
    /// fallback needs.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let fallback = !self.v5 && !self.v311;
        ClientConfig {
            backoff: Backoff {
                base: embermq::time::Duration::from_millis(20),
                cap: embermq::time::Duration::from_millis(50),
                max_attempts: Some(u32::from(fallback)),
            },
            connect_timeout: embermq::time::Duration::from_secs(self.connect_timeout),
            close_timeout: embermq::time::Duration::from_secs(1),
        }
    }

    /// The transport settings; warns on stderr about `--insecure`.
    pub(crate) fn transport_options(&self) -> TransportOptions {
        if self.insecure {
            eprintln!(
                "embermq: WARNING: --insecure: the broker's certificate is NOT verified; \
                 anyone on the path can read and change this session. Never use it in production."
            );
        }
        TransportOptions::new(
            self.headers.clone(),
            TlsOptions {
                cafile: self.cafile.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
                insecure: self.insecure,
            },
        )
    }

    /// The overall limit, if any.
    pub(crate) fn overall_timeout(&self) -> Option<Duration> {
        self.timeout.map(Duration::from_secs)
    }

    /// The failure for `--timeout` expiring while `what`.
    pub(crate) fn timeout_failure(&self, what: &str) -> Failure {
        Failure::new(
            Exit::Timeout,
            format!(
                "--timeout {}s expired {what} ({})",
                self.timeout.unwrap_or_default(),
                self.url
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_flag_splits_at_the_first_colon_and_trims() {
        assert_eq!(
            parse_header("Authorization: Bearer a:b").unwrap(),
            ("Authorization".to_owned(), "Bearer a:b".to_owned())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }
}
