//! The connection options `pub` and `sub` share (URL, credentials,
//! protocol version, TLS files, WebSocket headers, timeouts), and what they
//! turn into: the host layer's `Options` ([`ConnectArgs::host_options`])
//! and [`TransportOptions`].
//!
//! Protocol choice: `--v5` (5.0 only), `--v311` (3.1.1 only), neither: 5.0,
//! falling back to 3.1.1 on the next attempt when the broker refuses 5.0
//! (the one case where the CLI retries a connect).
//!
//! The password, first found of: `-P` (visible in `ps`), `--password-file`
//! (its first line), the environment variable `EMBERMQ_PASSWORD`, the
//! URL's `user:password@`. `-P` with `--password-file` is a usage error.
//! `Debug` of [`ConnectArgs`] redacts the password and the header values.

use core::fmt;
use core::time::Duration;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::Args;
use embermq::client::Backoff;
use embermq::host::{Options, SetupError};
use embermq::session::ProtocolChoice;

use crate::broker_url::{BrokerUrl, UrlValueParser};
use crate::connect::{RedactedHeaders, TlsOptions, TransportOptions};
use crate::failure::{Exit, Failure};

/// The environment variable a password may come from (below `-P` and
/// `--password-file`, above the URL's).
pub(crate) const PASSWORD_ENV: &str = "EMBERMQ_PASSWORD";

/// Options for reaching the broker.
#[derive(Args, Clone)]
pub(crate) struct ConnectArgs {
    /// Broker URL: mqtt://, mqtts://, ws:// or wss://, then host, an
    /// optional :port and (ws) /path, default /mqtt; user:password@ allowed.
    #[arg(value_name = "URL", value_parser = UrlValueParser)]
    pub(crate) url: BrokerUrl,
    /// MQTT User Name (overrides the URL's).
    #[arg(short = 'u', long)]
    pub(crate) username: Option<String>,
    /// MQTT Password (overrides all other sources; visible to `ps`, prefer
    /// --password-file or EMBERMQ_PASSWORD).
    #[arg(short = 'P', long)]
    pub(crate) password: Option<String>,
    /// Read the MQTT Password from the first line of this file (overrides
    /// EMBERMQ_PASSWORD and the URL's).
    #[arg(
        long = "password-file",
        value_name = "PATH",
        conflicts_with = "password"
    )]
    pub(crate) password_file: Option<PathBuf>,
    /// The password chosen by [`ConnectArgs::resolve_password`].
    #[arg(skip)]
    resolved_password: OnceLock<Option<String>>,
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
    pub(crate) cafile: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    #[arg(long, requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    pub(crate) key: Option<PathBuf>,
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

/// The password from the first source that has one: `flag` (`-P`), the
/// first line of `file` (its line ending stripped), `env` (the value of
/// [`PASSWORD_ENV`]; empty counts as unset), `url` (the URL's). An
/// unreadable or empty file, or a value that is not UTF-8, is an error
/// naming the source (never the password).
pub(crate) fn resolve_password(
    flag: Option<&str>,
    file: Option<&Path>,
    env: Option<OsString>,
    url: Option<&str>,
) -> Result<Option<String>, String> {
    if let Some(p) = flag {
        return Ok(Some(p.to_owned()));
    }
    if let Some(path) = file {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("--password-file {}: cannot read it: {e}", path.display()))?;
        if bytes.is_empty() {
            return Err(format!(
                "--password-file {}: the file is empty",
                path.display()
            ));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("--password-file {}: not UTF-8", path.display()))?;
        let line = text.split('\n').next().unwrap_or_default();
        let line = line.strip_suffix('\r').unwrap_or(line);
        return Ok(Some(line.to_owned()));
    }
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        let value = value
            .into_string()
            .map_err(|_| format!("{PASSWORD_ENV}: not UTF-8"))?;
        return Ok(Some(value));
    }
    Ok(url.map(str::to_owned))
}

/// `<redacted>`, in place of a secret.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // BrokerUrl's Debug leaves out its password and query.
        f.debug_struct("ConnectArgs")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| Redacted))
            .field("password_file", &self.password_file)
            .field("client_id", &self.client_id)
            .field("v5", &self.v5)
            .field("v311", &self.v311)
            .field("keepalive", &self.keepalive)
            .field("cafile", &self.cafile)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("insecure", &self.insecure)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("debug", &self.debug)
            .finish_non_exhaustive()
    }
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

    /// Password: `-P`, else `--password-file`, else `EMBERMQ_PASSWORD`,
    /// else the URL's (read once, then kept).
    ///
    /// # Errors
    ///
    /// The password file cannot be read or is empty, or a value is not
    /// UTF-8 (exit 2).
    pub(crate) fn password(&self) -> Result<Option<&str>, Failure> {
        if let Some(resolved) = self.resolved_password.get() {
            return Ok(resolved.as_deref());
        }
        let resolved = resolve_password(
            self.password.as_deref(),
            self.password_file.as_deref(),
            std::env::var_os(PASSWORD_ENV),
            self.url.password.as_deref(),
        )
        .map_err(|e| Failure::new(Exit::Usage, e))?;
        Ok(self.resolved_password.get_or_init(|| resolved).as_deref())
    }

    /// `--v5`: 5.0 only; `--v311`: 3.1.1 only; neither: 5.0 with the
    /// fall-back.
    fn protocol(&self) -> ProtocolChoice {
        if self.v5 {
            ProtocolChoice::V5
        } else if self.v311 {
            ProtocolChoice::V311
        } else {
            ProtocolChoice::V5WithFallback
        }
    }

    /// The reconnects: none, except the one a 5.0 -> 3.1.1 fall-back
    /// needs.
    fn backoff(&self) -> Backoff {
        let fallback = !self.v5 && !self.v311;
        Backoff {
            base: embermq::time::Duration::from_millis(20),
            cap: embermq::time::Duration::from_millis(50),
            max_attempts: Some(u32::from(fallback)),
        }
    }

    /// The host-layer options for `pub` and `sub`: URL, client id,
    /// credentials, protocol, keepalive, timeouts, the reconnects of
    /// [`backoff`](Self::backoff), TLS and headers; warns on
    /// stderr about `--insecure`.
    ///
    /// # Errors
    ///
    /// The password or a TLS file cannot be read (exit 2).
    pub(crate) fn host_options(&self) -> Result<Options, Failure> {
        let mut options = Options::from_url(self.url.clone())
            .client_id(self.client_id())
            .protocol(self.protocol())
            .keep_alive(Duration::from_secs(self.keepalive.into()))
            .connect_timeout(Duration::from_secs(self.connect_timeout))
            .backoff(self.backoff());
        if let Some(user) = self.username() {
            options = options.username(user);
        }
        if let Some(password) = self.password()? {
            options = options.password(password);
        }
        let transport = self.transport_options();
        if transport.tls.any() {
            let tls = transport
                .tls
                .rustls_options()
                .map_err(|e| Failure::from_setup(&SetupError::Tls(e)))?;
            options = options.tls(tls);
        }
        for (name, value) in &transport.headers {
            options = options.ws_header(name, value);
        }
        Ok(options)
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

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        connect: ConnectArgs,
    }

    fn args(argv: &[&str]) -> ConnectArgs {
        use clap::Parser;
        Cli::try_parse_from(core::iter::once("embermq").chain(argv.iter().copied()))
            .unwrap()
            .connect
    }

    #[test]
    fn debug_of_connect_args_and_transport_options_redacts_secrets() {
        let a = args(&[
            "wss://alice:UrlSecret@broker.example/mqtt?sig=QuerySecret",
            "-P",
            "FlagSecret",
            "-H",
            "Authorization: Bearer HeaderSecret",
        ]);
        let shown = format!("{a:?} {:?}", a.transport_options());
        for secret in ["UrlSecret", "QuerySecret", "FlagSecret", "HeaderSecret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("password: Some(<redacted>)"), "{shown}");
        assert!(shown.contains("Authorization: <redacted>"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
    }

    #[test]
    fn password_precedence_is_flag_file_environment_url() {
        let dir = std::env::temp_dir().join(format!("embermq-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\r\nnext\n").unwrap();
        let env = || Some(OsString::from("from-env"));
        let r = |flag, file, env, url| resolve_password(flag, file, env, url).unwrap();
        assert_eq!(
            r(Some("flag"), Some(&*file), env(), Some("url")).as_deref(),
            Some("flag")
        );
        assert_eq!(
            r(None, Some(&*file), env(), Some("url")).as_deref(),
            Some("from-file")
        );
        assert_eq!(
            r(None, None, env(), Some("url")).as_deref(),
            Some("from-env")
        );
        assert_eq!(
            r(None, None, Some(OsString::new()), Some("url")).as_deref(),
            Some("url")
        );
        assert_eq!(r(None, None, None, None), None);
        let missing = dir.join("missing");
        let err = resolve_password(None, Some(&missing), None, None).unwrap_err();
        assert!(
            err.starts_with("--password-file ") && err.contains("cannot read it"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
