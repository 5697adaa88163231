//! AWS Signature Version 4 and the presigned WebSocket URL of AWS IoT Core.
//!
//! The general SigV4 chain (AWS General Reference, "Signature Version 4
//! signing process"): the canonical request ([`CanonicalRequest`], task 1),
//! the string to sign ([`StringToSign`], task 2), the signing key derived
//! from the secret key, date, region and service ([`signing_key`], task 3)
//! and the signature over the string to sign ([`signature`], task 4), then
//! either an `Authorization` header ([`Authorization`]) or query-string
//! authentication ([`presign_url`], "Authenticating Requests: Using Query
//! Parameters").
//!
//! On top of it, [`presign_iot_wss_url`] writes the URL a device opens to
//! reach AWS IoT Core over MQTT-over-WebSocket: `GET /mqtt` on the account's
//! data endpoint, port 443, service `iotdevicegateway`, signed headers
//! `host`, the SHA-256 of the empty payload; a temporary credential's
//! session token is appended as `X-Amz-Security-Token` *after* signing,
//! outside the signed query string, as AWS IoT requires ("MQTT over the
//! WebSocket protocol" in the AWS IoT developer guide).
//!
//! Nothing here allocates: canonical forms are streamed into SHA-256 through
//! [`core::fmt::Write`], query parameters and headers are visited in sorted
//! order in place (no copy, no sort buffer), and the URL is written into a
//! buffer the caller lends.
//!
//! Deliberately not done: path normalization (collapsing `.`, `..` and
//! repeated `/`; give an already-normal path), multi-line header values,
//! chunked (`aws-chunked`) payload signing, SigV4A, and fetching
//! credentials.

use core::cmp::Ordering;
use core::fmt::{self, Write};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{CloudError, DigestWriter, Hex, PercentEncoded, SliceWriter, keyed_hmac};

/// The signing algorithm's name, first line of every string to sign.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Hex SHA-256 of the empty payload, the payload hash of a `GET`.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The payload hash S3 accepts for presigned URLs.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The service name AWS IoT Core's data plane signs with.
pub const IOT_SERVICE: &str = "iotdevicegateway";
/// The HTTP path of AWS IoT Core's MQTT-over-WebSocket endpoint.
pub const IOT_WSS_PATH: &str = "/mqtt";
/// The WebSocket subprotocol AWS IoT Core expects (`Sec-WebSocket-Protocol`).
pub const IOT_WSS_SUBPROTOCOL: &str = "mqtt";
/// The TCP port of `wss://` on AWS IoT Core.
pub const IOT_WSS_PORT: u16 = 443;

/// The longest `X-Amz-Credential` value [`presign_url`] builds
/// (access key id, date, region, service and `aws4_request`).
pub const MAX_CREDENTIAL_LEN: usize = 200;

/// A UTC date and time at one-second resolution, written in SigV4's basic
/// ISO 8601 form `YYYYMMDDTHHMMSSZ` (the `X-Amz-Date` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AmzDateTime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl AmzDateTime {
    /// A calendar date and time (UTC); `None` unless the year is
    /// 1970..=9999 and every field is in range for its month.
    pub fn new(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<Self> {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let month_days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        let valid = (1970..=9999).contains(&year)
            && (1..=month_days).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        valid.then_some(Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// The UTC date and time `secs` seconds after 1970-01-01T00:00:00Z
    /// (Unix time, as SNTP or a modem gives it); `None` after year 9999.
    pub fn from_unix_seconds(secs: u64) -> Option<Self> {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // Days since 1970-01-01 to a civil date: the era-based algorithm
        // for the proleptic Gregorian calendar (H. Hinnant,
        // "chrono-compatible low-level date algorithms"), in unsigned
        // arithmetic since the input is never before 1970.
        let z = days.checked_add(719_468)?;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        Self::new(
            u16::try_from(year).ok()?,
            u8::try_from(month).ok()?,
            u8::try_from(day).ok()?,
            u8::try_from(rem / 3600).ok()?,
            u8::try_from(rem % 3600 / 60).ok()?,
            u8::try_from(rem % 60).ok()?,
        )
    }

    /// The date alone, `YYYYMMDD`, as the credential scope carries it.
    pub fn date_stamp(&self) -> impl fmt::Display + '_ {
        DateStamp(self)
    }
}

struct DateStamp<'a>(&'a AmzDateTime);

impl fmt::Display for DateStamp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}{:02}", self.0.year, self.0.month, self.0.day)
    }
}

impl fmt::Display for AmzDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}T{:02}{:02}{:02}Z",
            self.date_stamp(),
            self.hour,
            self.minute,
            self.second
        )
    }
}

/// An AWS access key: id, secret and, for temporary credentials (STS,
/// Cognito), the session token.
///
/// `Debug` shows the key id only: secrets never reach a log line.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The access key id, e.g. `AKIDEXAMPLE`.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// The session token of a temporary credential.
    pub session_token: Option<&'a str>,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// The credential scope: the time of signing (its date part), the region
/// and the service. Displays as `YYYYMMDD/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    /// When the request is signed; its date scopes the signing key.
    pub time: AmzDateTime,
    /// The region, e.g. `us-east-1`.
    pub region: &'a str,
    /// The service, e.g. `iotdevicegateway`.
    pub service: &'a str,
}

impl fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/aws4_request",
            self.time.date_stamp(),
            self.region,
            self.service
        )
    }
}

/// The parts of an HTTP request SigV4 signs (task 1: "Create a canonical
/// request"). Its [`Display`](fmt::Display) is the canonical request text.
///
/// Inputs are given raw, not URI-encoded: `path` is the absolute path
/// (each byte but `/` and the unreserved characters gets encoded), `query`
/// the parameters as name/value pairs in any order (both encoded, sorted by
/// encoded name then value), `headers` the headers to sign in any order and
/// case (names lower-cased and sorted, values trimmed with inner runs of
/// spaces folded to one, repeated names joined with `,` in the given
/// order). `headers` must include `host`.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalRequest<'a> {
    /// The HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// The absolute path, not encoded, already normalized; empty means `/`.
    pub path: &'a str,
    /// Query parameters (name, value), not encoded.
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign (name, value).
    pub headers: &'a [(&'a str, &'a str)],
    /// Lower-case hex SHA-256 of the payload, or [`UNSIGNED_PAYLOAD`].
    pub payload_sha256_hex: &'a str,
}

/// Visits `items` in the order `cmp` gives, ties kept in slice order,
/// without moving or copying them: a selection pass per item (O(n²) on the
/// handful of parameters and headers a request has, and no sort buffer).
fn for_each_sorted<T>(
    items: &[T],
    cmp: impl Fn(&T, &T) -> Ordering,
    mut visit: impl FnMut(&T) -> fmt::Result,
) -> fmt::Result {
    // Total order on positions: by `cmp`, then by position.
    let order = |i: usize, a: &T, j: usize, b: &T| cmp(a, b).then(i.cmp(&j));
    let mut prev: Option<(usize, &T)> = None;
    for _ in 0..items.len() {
        let mut best: Option<(usize, &T)> = None;
        for (i, item) in items.iter().enumerate() {
            let after_prev = prev.is_none_or(|(p, pv)| order(i, item, p, pv) == Ordering::Greater);
            let before_best = best.is_none_or(|(b, bv)| order(i, item, b, bv) == Ordering::Less);
            if after_prev && before_best {
                best = Some((i, item));
            }
        }
        let Some((_, item)) = best else {
            break;
        };
        visit(item)?;
        prev = best;
    }
    Ok(())
}

fn cmp_query(a: &(&str, &str), b: &(&str, &str)) -> Ordering {
    let enc = |text| PercentEncoded {
        text,
        keep_slash: false,
    };
    enc(a.0)
        .bytes()
        .cmp(enc(b.0).bytes())
        .then_with(|| enc(a.1).bytes().cmp(enc(b.1).bytes()))
}

fn lowercase_bytes(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.trim().bytes().map(|c| c.to_ascii_lowercase())
}

fn cmp_header_name(a: &(&str, &str), b: &(&str, &str)) -> Ordering {
    lowercase_bytes(a.0).cmp(lowercase_bytes(b.0))
}

fn write_lowercase(w: &mut impl Write, name: &str) -> fmt::Result {
    name.trim()
        .chars()
        .try_for_each(|c| w.write_char(c.to_ascii_lowercase()))
}

/// SigV4's "Trimall": no leading or trailing spaces, runs of inner spaces
/// folded to one.
fn write_trimmed(w: &mut impl Write, value: &str) -> fmt::Result {
    let mut words = value.split(' ').filter(|word| !word.trim().is_empty());
    if let Some(first) = words.next() {
        w.write_str(first.trim())?;
    }
    words.try_for_each(|word| {
        w.write_char(' ')?;
        w.write_str(word.trim())
    })
}

/// The `SignedHeaders` value: lower-case header names, sorted, unique,
/// joined with `;`.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a>(pub &'a [(&'a str, &'a str)]);

impl fmt::Display for SignedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev: Option<&str> = None;
        for_each_sorted(self.0, cmp_header_name, |&(name, _)| {
            match prev {
                Some(p) if p.trim().eq_ignore_ascii_case(name.trim()) => return Ok(()),
                Some(_) => f.write_char(';')?,
                None => {}
            }
            prev = Some(name);
            write_lowercase(f, name)
        })
    }
}

/// The canonical query string: parameters encoded, sorted, `&`-joined.
struct CanonicalQuery<'a>(&'a [(&'a str, &'a str)]);

impl fmt::Display for CanonicalQuery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for_each_sorted(self.0, cmp_query, |&(name, value)| {
            if !first {
                f.write_char('&')?;
            }
            first = false;
            let enc = |text| PercentEncoded {
                text,
                keep_slash: false,
            };
            write!(f, "{}={}", enc(name), enc(value))
        })
    }
}

impl fmt::Display for CanonicalRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "/" } else { self.path };
        writeln!(f, "{}", self.method)?;
        writeln!(
            f,
            "{}",
            PercentEncoded {
                text: path,
                keep_slash: true
            }
        )?;
        writeln!(f, "{}", CanonicalQuery(self.query))?;
        // Canonical headers: one `name:value\n` per distinct name.
        let mut prev: Option<&str> = None;
        for_each_sorted(self.headers, cmp_header_name, |&(name, value)| {
            match prev {
                Some(p) if p.trim().eq_ignore_ascii_case(name.trim()) => f.write_char(',')?,
                other => {
                    if other.is_some() {
                        f.write_char('\n')?;
                    }
                    write_lowercase(f, name)?;
                    f.write_char(':')?;
                }
            }
            prev = Some(name);
            write_trimmed(f, value)
        })?;
        if !self.headers.is_empty() {
            f.write_char('\n')?;
        }
        writeln!(f)?;
        writeln!(f, "{}", SignedHeaders(self.headers))?;
        f.write_str(self.payload_sha256_hex)
    }
}

fn sha256_of(text: impl fmt::Display) -> [u8; 32] {
    let mut hasher = Sha256::new();
    // Writing into a hash cannot fail; a Display impl that fails midway
    // would give a wrong hash, which the signature check then rejects.
    let _ = write!(DigestWriter(&mut hasher), "{text}");
    hasher.finalize().into()
}

impl CanonicalRequest<'_> {
    /// SHA-256 of the canonical request text (computed without holding the
    /// text anywhere).
    pub fn sha256(&self) -> [u8; 32] {
        sha256_of(self)
    }
}

/// The string to sign (task 2): algorithm, request time, credential scope
/// and the hex hash of the canonical request, one per line.
#[derive(Debug, Clone, Copy)]
pub struct StringToSign<'a> {
    /// The credential scope (its time is the request time).
    pub scope: &'a Scope<'a>,
    /// SHA-256 of the canonical request.
    pub canonical_request_sha256: [u8; 32],
}

impl fmt::Display for StringToSign<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ALGORITHM}\n{}\n{}\n{}",
            self.scope.time,
            self.scope,
            Hex(&self.canonical_request_sha256)
        )
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = keyed_hmac(key);
    Mac::update(&mut mac, data);
    mac.finalize().into_bytes().into()
}

/// The signing key (task 3): `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date),
/// region), service), "aws4_request")`.
pub fn signing_key(secret_access_key: &str, scope: &Scope<'_>) -> [u8; 32] {
    // "AWS4" + secret, fed to the HMAC without concatenating in memory:
    // through a hash if longer than a block, else via a stack block.
    let prefix = b"AWS4";
    let key_len = prefix.len().saturating_add(secret_access_key.len());
    let mut block = [0u8; 64];
    if key_len <= block.len() {
        let (head, tail) = block.split_at_mut(prefix.len());
        head.copy_from_slice(prefix);
        if let Some(dst) = tail.get_mut(..secret_access_key.len()) {
            dst.copy_from_slice(secret_access_key.as_bytes());
        }
    } else {
        let digest: [u8; 32] = Sha256::new()
            .chain_update(prefix)
            .chain_update(secret_access_key.as_bytes())
            .finalize()
            .into();
        for (dst, src) in block.iter_mut().zip(digest) {
            *dst = src;
        }
    }
    let mut date = [0u8; 8];
    let mut date_w = SliceWriter::new(&mut date);
    let _ = write!(date_w, "{}", scope.time.date_stamp());
    let date = date_w.finish().unwrap_or("");
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    Mac::update(&mut mac, date.as_bytes());
    let k_date: [u8; 32] = mac.finalize().into_bytes().into();
    let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
    let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// The signature (task 4): HMAC-SHA256 of the string to sign under the
/// signing key. Display it with [`Hex`].
pub fn signature(
    secret_access_key: &str,
    scope: &Scope<'_>,
    request: &CanonicalRequest<'_>,
) -> [u8; 32] {
    let key = signing_key(secret_access_key, scope);
    let sts = StringToSign {
        scope,
        canonical_request_sha256: request.sha256(),
    };
    let mut mac = keyed_hmac(&key);
    let _ = write!(DigestWriter(&mut mac), "{sts}");
    mac.finalize().into_bytes().into()
}

/// The `Authorization` header value for a request signed with SigV4:
/// `AWS4-HMAC-SHA256 Credential=<id>/<scope>, SignedHeaders=<names>,
/// Signature=<hex>`. The signature is computed when the value is made.
#[derive(Debug, Clone, Copy)]
pub struct Authorization<'a> {
    access_key_id: &'a str,
    scope: Scope<'a>,
    headers: &'a [(&'a str, &'a str)],
    signature: [u8; 32],
}

impl<'a> Authorization<'a> {
    /// Signs `request` with `credentials` under `scope`. The session token,
    /// if any, must already be among the signed headers as
    /// `x-amz-security-token`; this does not add it.
    pub fn new(
        credentials: &Credentials<'a>,
        scope: Scope<'a>,
        request: &CanonicalRequest<'a>,
    ) -> Self {
        Self {
            access_key_id: credentials.access_key_id,
            scope,
            headers: request.headers,
            signature: signature(credentials.secret_access_key, &scope, request),
        }
    }

    /// The raw signature.
    pub fn signature(&self) -> [u8; 32] {
        self.signature
    }
}

impl fmt::Display for Authorization<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
            self.access_key_id,
            self.scope,
            SignedHeaders(self.headers),
            Hex(&self.signature)
        )
    }
}

/// Where a temporary credential's session token goes in a presigned URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTokenPlacement {
    /// Among the signed query parameters (S3 and most services).
    Signed,
    /// Appended after `X-Amz-Signature`, outside the signature, as AWS IoT
    /// Core requires.
    AppendedAfterSigning,
}

/// A request to authenticate with query parameters ("presign"): the URL
/// gets `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-Expires` (if set), `X-Amz-SignedHeaders=host` and
/// `X-Amz-Signature`.
#[derive(Debug, Clone, Copy)]
pub struct Presign<'a> {
    /// URL scheme, e.g. `wss` or `https`.
    pub scheme: &'a str,
    /// Host name (the `host` header signed); no port, no user info.
    pub host: &'a str,
    /// The HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// Absolute path, not encoded.
    pub path: &'a str,
    /// Keys and (optional) session token.
    pub credentials: Credentials<'a>,
    /// Time, region and service.
    pub scope: Scope<'a>,
    /// Validity in seconds (`X-Amz-Expires`), if the service wants one.
    pub expires_secs: Option<u32>,
    /// Hex SHA-256 of the payload, [`EMPTY_PAYLOAD_SHA256`] or
    /// [`UNSIGNED_PAYLOAD`].
    pub payload_sha256_hex: &'a str,
    /// Where the session token (if any) goes.
    pub session_token: SessionTokenPlacement,
}

fn check_token(
    field: &'static str,
    value: &str,
    allowed: impl Fn(u8) -> bool,
) -> Result<(), CloudError> {
    if value.is_empty() || !value.bytes().all(allowed) {
        return Err(CloudError::InvalidInput { field });
    }
    Ok(())
}

/// Writes the presigned URL `scheme://host/path?<signed query>` into `buf`
/// and returns it.
///
/// # Errors
///
/// [`CloudError::BufferTooSmall`] if the URL does not fit in `buf`;
/// [`CloudError::InvalidInput`] for an empty or malformed host, region,
/// service, scheme or access key id; [`CloudError::TooLong`] if the
/// credential exceeds [`MAX_CREDENTIAL_LEN`].
pub fn presign_url<'b>(request: &Presign<'_>, buf: &'b mut [u8]) -> Result<&'b str, CloudError> {
    check_token("scheme", request.scheme, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
    })?;
    check_token("host", request.host, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':')
    })?;
    check_token("region", request.scope.region, |b| {
        b.is_ascii_alphanumeric() || b == b'-'
    })?;
    check_token("service", request.scope.service, |b| {
        b.is_ascii_alphanumeric() || b == b'-'
    })?;
    check_token("access_key_id", request.credentials.access_key_id, |b| {
        b.is_ascii_alphanumeric()
    })?;
    check_token("method", request.method, |b| b.is_ascii_uppercase())?;

    let mut credential = heapless::String::<MAX_CREDENTIAL_LEN>::new();
    write!(
        credential,
        "{}/{}",
        request.credentials.access_key_id, request.scope
    )
    .map_err(|_| CloudError::TooLong {
        field: "X-Amz-Credential",
        max: MAX_CREDENTIAL_LEN,
    })?;
    let mut date = heapless::String::<16>::new();
    write!(date, "{}", request.scope.time)
        .map_err(|_| CloudError::InvalidInput { field: "time" })?;
    let mut expires = heapless::String::<10>::new();

    if let Some(secs) = request.expires_secs {
        write!(expires, "{secs}").map_err(|_| CloudError::InvalidInput {
            field: "expires_secs",
        })?;
    }
    let token = request.credentials.session_token;
    let signed_token = match request.session_token {
        SessionTokenPlacement::Signed => token,
        SessionTokenPlacement::AppendedAfterSigning => None,
    };
    // The signed parameters (at most six), in a stack array.
    let mut list: [(&str, &str); 6] = [("", ""); 6];
    let mut n = 0usize;
    let candidates = [
        Some(("X-Amz-Algorithm", ALGORITHM)),
        Some(("X-Amz-Credential", credential.as_str())),
        Some(("X-Amz-Date", date.as_str())),
        request
            .expires_secs
            .map(|_| ("X-Amz-Expires", expires.as_str())),
        signed_token.map(|t| ("X-Amz-Security-Token", t)),
        Some(("X-Amz-SignedHeaders", "host")),
    ];
    for param in candidates.into_iter().flatten() {
        if let Some(slot) = list.get_mut(n) {
            *slot = param;
            n = n.saturating_add(1);
        }
    }
    let query = list.get(..n).unwrap_or(&[]);

    let headers = [("host", request.host)];
    let canonical = CanonicalRequest {
        method: request.method,
        path: request.path,
        query,
        headers: &headers,
        payload_sha256_hex: request.payload_sha256_hex,
    };
    let signature = signature(
        request.credentials.secret_access_key,
        &request.scope,
        &canonical,
    );

    let mut w = SliceWriter::new(buf);
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path
    };
    let written = (|| -> fmt::Result {
        write!(
            w,
            "{}://{}{}?{}&X-Amz-Signature={}",
            request.scheme,
            request.host,
            PercentEncoded {
                text: path,
                keep_slash: true
            },
            CanonicalQuery(query),
            Hex(&signature)
        )?;
        if let (Some(token), SessionTokenPlacement::AppendedAfterSigning) =
            (token, request.session_token)
        {
            write!(
                w,
                "&X-Amz-Security-Token={}",
                PercentEncoded {
                    text: token,
                    keep_slash: false
                }
            )?;
        }
        Ok(())
    })();
    let capacity = w.capacity();
    written.map_err(|_| CloudError::BufferTooSmall { capacity })?;
    w.finish()
}

/// What AWS IoT Core needs for an MQTT-over-WebSocket connection signed
/// with SigV4.
#[derive(Debug, Clone, Copy)]
pub struct IotWssUrl<'a> {
    /// The account's data endpoint, e.g.
    /// `a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com` (`aws iot
    /// describe-endpoint --endpoint-type iot:Data-ATS`).
    pub endpoint: &'a str,
    /// The endpoint's region, e.g. `us-east-1`.
    pub region: &'a str,
    /// An IAM identity allowed `iot:Connect` (and the publish/subscribe
    /// actions the device uses); with a session token for temporary
    /// credentials.
    pub credentials: Credentials<'a>,
    /// The current time (UTC). AWS rejects a signature more than five
    /// minutes off its clock.
    pub time: AmzDateTime,
    /// `X-Amz-Expires`, optional for AWS IoT (its own samples leave it out).
    pub expires_secs: Option<u32>,
}

/// Writes `wss://<endpoint>/mqtt?X-Amz-Algorithm=...&X-Amz-Signature=...`
/// (plus `&X-Amz-Security-Token=...` for temporary credentials, appended
/// unsigned) into `buf` and returns it. Connect to `<endpoint>:443` with
/// TLS and SNI `<endpoint>`, upgrade with that path and query, and offer
/// WebSocket subprotocol `mqtt`.
///
/// # Errors
///
/// As [`presign_url`].
pub fn presign_iot_wss_url<'b>(
    iot: &IotWssUrl<'_>,
    buf: &'b mut [u8],
) -> Result<&'b str, CloudError> {
    presign_url(
        &Presign {
            scheme: "wss",
            host: iot.endpoint,
            method: "GET",
            path: IOT_WSS_PATH,
            credentials: iot.credentials,
            scope: Scope {
                time: iot.time,
                region: iot.region,
                service: IOT_SERVICE,
            },
            expires_secs: iot.expires_secs,
            payload_sha256_hex: EMPTY_PAYLOAD_SHA256,
            session_token: SessionTokenPlacement::AppendedAfterSigning,
        },
        buf,
    )
}

#[cfg(test)]
mod tests;
