//! MQTT 5.0 enhanced authentication (§4.12, §3.15 AUTH): the
//! [`Authenticator`] the application lends the session, which computes each
//! step of a challenge / response exchange (SCRAM, Kerberos, a custom
//! scheme). The session carries the bytes: Authentication Method and Data
//! in CONNECT, AUTH Continue (0x18) in both directions until CONNACK, and
//! re-authentication (AUTH 0x19) on a connected link. It does not
//! implement any method itself.

/// The largest Authentication Data one step may carry (the session keeps
/// one step's answer until it is sent).
pub const MAX_AUTH_DATA: usize = 256;

/// One side of an enhanced authentication exchange (MQTT 5.0 §4.12).
///
/// Steps write their Authentication Data into `out` (at most
/// [`MAX_AUTH_DATA`] bytes) and return its length, `Some(0)` for empty
/// data; `None` gives up, and the session closes the link with reason
/// 0x87 (Not authorized).
pub trait Authenticator {
    /// The Authentication Method, sent in CONNECT and every AUTH.
    fn method(&self) -> &str;

    /// The first step: the data for CONNECT, or for the AUTH that starts a
    /// re-authentication. `None` here means "no data" (not a refusal).
    fn start(&mut self, out: &mut [u8]) -> Option<usize>;

    /// The broker continued (AUTH 0x18) with `data`: the answer.
    fn respond(&mut self, data: Option<&[u8]>, out: &mut [u8]) -> Option<usize>;
}
