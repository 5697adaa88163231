//! 5.0 enhanced authentication (§4.12) against the broker model's toy
//! method, with the step buffer lent beside the authenticator.

use super::*;

/// A toy challenge / response method the broker model runs: the answer is
/// the challenge reversed.
struct Reverse {
    /// Give up at the first challenge.
    give_up: bool,
    /// Answer the challenge unreversed (wrong).
    wrong: bool,
}

impl Authenticator for Reverse {
    fn method(&self) -> &str {
        "reverse"
    }

    fn start(&mut self, out: &mut [u8]) -> Option<usize> {
        out.get_mut(..5)?.copy_from_slice(b"hello");
        Some(5)
    }

    fn respond(&mut self, data: Option<&[u8]>, out: &mut [u8]) -> Option<usize> {
        if self.give_up {
            return None;
        }
        let data = data?;
        let dst = out.get_mut(..data.len())?;
        if self.wrong {
            dst.copy_from_slice(data);
        } else {
            for (d, s) in dst.iter_mut().zip(data.iter().rev()) {
                *d = *s;
            }
        }
        Some(data.len())
    }
}

/// A step buffer of `len` bytes, lent for the test's life.
fn step_buffer(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

/// Lends `p`'s session a [`Reverse`] with a step buffer of `step` bytes.
fn lend_reverse(p: &mut Pair, give_up: bool, wrong: bool, step: usize) {
    let auth: &'static mut Reverse = Box::leak(Box::new(Reverse { give_up, wrong }));
    p.s.set_authenticator(auth, step_buffer(step));
    p.b.auth_method = Some("reverse");
}

fn with_authenticator(p: &mut Pair, give_up: bool, wrong: bool) {
    lend_reverse(p, give_up, wrong, MAX_AUTH_DATA);
}

#[test]
fn mqtt_4_12_enhanced_authentication_continues_until_connack() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    with_authenticator(&mut p, false, false);
    p.connect();
    assert!(p.s.is_connected());
    assert_eq!(p.b.connect_auth_data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        p.b.auth_seen,
        vec![(
            ReasonCode::CONTINUE_AUTHENTICATION,
            Some(b"1-egnellahc".to_vec())
        )]
    );
    let t = p.publish("after/auth", b"x", QoS::AtLeastOnce);
    assert_eq!(p.completions(t), vec![Ok(())]);
}

#[test]
fn mqtt_4_12_wrong_answer_is_refused_and_giving_up_closes_with_0x87() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    with_authenticator(&mut p, false, true);
    p.connect();
    assert!(!p.s.is_connected());
    assert!(p.events.contains(&Event::ConnectRefused {
        reason: ReasonCode::NOT_AUTHORIZED,
        falling_back_to_v311: false
    }));
    let mut q = Pair::new(config(ProtocolChoice::V5), None);
    with_authenticator(&mut q, true, false);
    q.connect();
    assert!(!q.s.is_connected());
    assert!(
        q.b.auth_seen.is_empty(),
        "no answer when the authenticator gives up"
    );
    assert!(q.events.contains(&Event::Disconnected {
        reason: CloseReason::ProtocolError(ReasonCode::NOT_AUTHORIZED)
    }));
}

/// The step buffer is lent with the authenticator and bounds one step's
/// data: an answer that does not fit it is a refusal (0x87), never a
/// truncated answer, and the first data fits a buffer of its size.
#[test]
fn mqtt_4_12_a_step_larger_than_the_lent_buffer_closes_with_0x87() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    // "hello" fits; the broker's 11-byte challenge's answer does not.
    lend_reverse(&mut p, false, false, 5);
    p.connect();
    assert_eq!(p.b.connect_auth_data.as_deref(), Some(&b"hello"[..]));
    assert!(!p.s.is_connected());
    assert!(p.b.auth_seen.is_empty(), "no truncated answer is sent");
    assert!(p.events.contains(&Event::Disconnected {
        reason: CloseReason::ProtocolError(ReasonCode::NOT_AUTHORIZED)
    }));
}

#[test]
fn mqtt_4_12_1_reauthentication_on_a_connected_link() {
    let mut p = Pair::new(config(ProtocolChoice::V5), None);
    with_authenticator(&mut p, false, false);
    p.connect();
    p.s.reauthenticate().unwrap();
    assert!(p.s.reauthenticate().is_err(), "one exchange at a time");
    p.pump();
    assert_eq!(
        p.b.auth_seen,
        vec![
            (
                ReasonCode::CONTINUE_AUTHENTICATION,
                Some(b"1-egnellahc".to_vec())
            ),
            (ReasonCode::RE_AUTHENTICATE, Some(b"hello".to_vec())),
            (
                ReasonCode::CONTINUE_AUTHENTICATION,
                Some(b"3-egnellahc".to_vec())
            ),
        ]
    );
    assert!(p.events.contains(&Event::Reauthenticated));
    assert!(p.s.is_connected());
    // Without an authenticator there is nothing to redo.
    let mut plain = Pair::new(config(ProtocolChoice::V5), None);
    plain.connect();
    assert!(plain.s.reauthenticate().is_err());
}

#[test]
fn mqtt_4_12_no_authentication_properties_in_3_1_1() {
    let mut p = Pair::new(config(ProtocolChoice::V311), None);
    with_authenticator(&mut p, false, false);
    // A 3.1.1 broker knows no enhanced authentication.
    p.b.auth_method = None;
    p.connect();
    assert!(p.s.is_connected());
    assert_eq!(p.b.connect_auth_data, None);
    assert!(p.s.reauthenticate().is_err());
}
