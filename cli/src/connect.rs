//! The command line's transport settings (`--cafile`, `--cert`, `--key`,
//! `--insecure`, `--header`) turned into the sdk's URL connector,
//! `embermq::host::LinkConnector`, shared by `demo` (the core client) and,
//! through `embermq::host::Options`, by `pub` and `sub`:
//!
//! | URL        | stack                                                    |
//! |------------|----------------------------------------------------------|
//! | `mqtt://`  | TCP                                                      |
//! | `ws://`    | WebSocket (subprotocol `mqtt`, extra headers) over TCP   |
//! | `mqtts://` | TLS (rustls) over TCP                                    |
//! | `wss://`   | WebSocket over TLS over TCP                              |
//!
//! TLS verifies the broker against Mozilla's roots (`webpki-roots`, the
//! same on every machine) or only the `--cafile` CAs, with the URL's host
//! as SNI; `--cert`/`--key` add a client certificate; `--insecure` turns
//! verification off (the CLI warns). The rustls configuration is built
//! once per [`TransportOptions`] and shared by every connector made from
//! it. Deliberately not here: retries and timeouts (the client's),
//! proxies, ALPN.

use alloc::sync::Arc;
use core::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use embermq::host::{BrokerUrl, LinkConnector, LinkOptions, SetupError};
use embermq::transport::{RustlsConfigError, RustlsOptions};
use rand::rngs::StdRng;

/// WebSocket buffer size per direction when nothing else is asked: a
/// handshake response and the largest frame header fit easily.
pub(crate) const DEFAULT_WS_BUFFER_LEN: usize = 8 * 1024;

/// Header names as given, values as `<redacted>` (they often carry tokens).
pub(crate) struct RedactedHeaders<'h>(pub(crate) &'h [(String, String)]);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, _) in self.0 {
            list.entry(&format_args!("{name}: <redacted>"));
        }
        list.finish()
    }
}

/// TLS settings from the command line (used once TLS is available).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// PEM file with the CA certificate(s) to trust instead of the system's.
    pub(crate) cafile: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS).
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub(crate) key: Option<PathBuf>,
    /// Skip server certificate verification (CLI only; warned about).
    pub(crate) insecure: bool,
}

impl TlsOptions {
    /// Whether any TLS option was given.
    pub(crate) fn any(&self) -> bool {
        self.cafile.is_some() || self.cert.is_some() || self.key.is_some() || self.insecure
    }

    /// The rustls options these flags describe.
    pub(crate) fn rustls_options(&self) -> Result<RustlsOptions, RustlsConfigError> {
        let mut options = match &self.cafile {
            Some(path) => RustlsOptions::ca_file(path)?,
            None => RustlsOptions::new(),
        };
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            options = options.client_auth_files(cert, key)?;
        }
        if self.insecure {
            options = options.danger_accept_invalid_certs();
        }
        Ok(options)
    }
}

/// Everything besides the URL that shapes the transport. `Debug` shows the
/// header names, never their values.
#[derive(Clone)]
pub(crate) struct TransportOptions {
    /// Extra WebSocket upgrade request headers, in order.
    pub(crate) headers: Vec<(String, String)>,
    /// TLS settings for `mqtts://` and `wss://`.
    pub(crate) tls: TlsOptions,
    /// WebSocket buffer size per direction.
    pub(crate) ws_buffer_len: usize,
    /// The rustls configuration, built from `tls` on first use.
    tls_config: OnceLock<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for TransportOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportOptions")
            .field("headers", &RedactedHeaders(&self.headers))
            .field("tls", &self.tls)
            .field("ws_buffer_len", &self.ws_buffer_len)
            .finish_non_exhaustive()
    }
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            tls: TlsOptions::default(),
            ws_buffer_len: DEFAULT_WS_BUFFER_LEN,
            tls_config: OnceLock::new(),
        }
    }
}

impl TransportOptions {
    /// Options with these headers and TLS settings.
    pub(crate) fn new(headers: Vec<(String, String)>, tls: TlsOptions) -> Self {
        Self {
            headers,
            tls,
            ..Self::default()
        }
    }

    /// The shared rustls configuration (built once).
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, SetupError> {
        if let Some(config) = self.tls_config.get() {
            return Ok(config.clone());
        }
        let config = self
            .tls
            .rustls_options()
            .and_then(|o| o.client_config())
            .map_err(SetupError::Tls)?;
        Ok(self.tls_config.get_or_init(|| config).clone())
    }

    /// The connector for `url` (see the module table); `rng` makes the
    /// WebSocket keys and masks.
    pub(crate) fn connector(
        &self,
        url: &BrokerUrl,
        rng: StdRng,
    ) -> Result<LinkConnector, SetupError> {
        if self.tls.any() && !url.scheme.is_tls() {
            return Err(SetupError::TlsOptionsWithoutTls);
        }
        let link = LinkOptions {
            tls: if url.scheme.is_tls() {
                Some(self.tls_config()?)
            } else {
                None
            },
            headers: self.headers.clone(),
            ws_buffer_len: self.ws_buffer_len,
        };
        LinkConnector::new(url, &link, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn unreadable_cafile_is_a_setup_error_naming_the_file() {
        let url: BrokerUrl = "wss://broker.example".parse().unwrap();
        let tls = TlsOptions {
            cafile: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let options = TransportOptions::new(Vec::new(), tls);
        let err = options
            .connector(&url, StdRng::seed_from_u64(1))
            .err()
            .unwrap();
        assert!(matches!(err, SetupError::Tls(_)), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn tls_options_on_a_plain_url_are_a_setup_error() {
        let url: BrokerUrl = "mqtt://broker.example".parse().unwrap();
        let mut options = TransportOptions::default();
        options.tls.insecure = true;
        let err = options
            .connector(&url, StdRng::seed_from_u64(1))
            .err()
            .unwrap();
        assert!(matches!(err, SetupError::TlsOptionsWithoutTls), "{err:?}");
    }
}
