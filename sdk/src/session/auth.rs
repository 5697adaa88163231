//! MQTT 5.0 enhanced authentication (§4.12, §3.15 AUTH): the
//! [`Authenticator`] the application lends the session, which computes each
//! step of a challenge / response exchange (SCRAM, Kerberos, a custom
//! scheme). The session carries the bytes: Authentication Method and Data
//! in CONNECT, AUTH Continue (0x18) in both directions until CONNACK, and
//! re-authentication (AUTH 0x19) on a connected link. It does not
//! implement any method itself.
//!
//! Also here: [`Credentials`], the user name and password the application
//! renews before every CONNECT (an Azure IoT Hub SAS token, a signed or
//! one-time password), for credentials that expire while the client runs.

/// A step buffer size that fits the common methods' Authentication Data
/// (SCRAM's messages, a short token): the size of the buffer the host
/// layer lends with its authenticator. A device lends its own with
/// [`Session::set_authenticator`](super::Session::set_authenticator),
/// sized for its method; a device without an authenticator lends none.
pub const MAX_AUTH_DATA: usize = 256;

/// One side of an enhanced authentication exchange (MQTT 5.0 §4.12).
///
/// Steps write their Authentication Data into `out` (the step buffer lent
/// with the authenticator, whose length bounds one step's data) and return
/// its length, `Some(0)` for empty data; `None` gives up, and the session
/// closes the link with reason 0x87 (Not authorized). A length beyond
/// `out` counts as giving up.
pub trait Authenticator {
    /// The Authentication Method, sent in CONNECT and every AUTH.
    fn method(&self) -> &str;

    /// The first step: the data for CONNECT, or for the AUTH that starts a
    /// re-authentication. `None` here means "no data" (not a refusal).
    fn start(&mut self, out: &mut [u8]) -> Option<usize>;

    /// The broker continued (AUTH 0x18) with `data`: the answer.
    fn respond(&mut self, data: Option<&[u8]>, out: &mut [u8]) -> Option<usize>;
}

/// The user name and password of the CONNECT (MQTT 3.1.1 §3.1.3.4-5,
/// 5.0 §3.1.3.5-6), renewed before every connect attempt.
///
/// Lend one with [`Session::set_credentials`](super::Session::set_credentials)
/// (or `ClientState::set_credentials`); it then replaces the configuration's
/// `username` and `password`, which are borrowed for the session's life
/// and so cannot change. [`refresh`](Self::refresh) runs when each new
/// transport is up, before its CONNECT is encoded: mint a fresh token there
/// (it owns its buffer), from the driver's clock or the application's own
/// sense of wall time.
pub trait Credentials {
    /// A new connection is starting at `now` (the driver's clock): renew
    /// what has expired or is about to.
    fn refresh(&mut self, now: crate::time::Instant);

    /// The user name for this CONNECT, if any.
    fn username(&self) -> Option<&str>;

    /// The password for this CONNECT, if any.
    fn password(&self) -> Option<&[u8]>;
}
