//! The device's server verifier: embermq's own implementation of
//! embedded-tls's `TlsVerifier`, used instead of the crate's `pki`
//! verifier (which checks only signatures, falls back to the common name,
//! and panics on a CertificateVerify that comes first).
//!
//! What it checks, once per handshake:
//!
//! - The chain (RFC 5280 §6.1, cut down to what a pinned anchor needs):
//!   starting at the leaf, each certificate's issuer name must equal the
//!   subject of the pinned CA (then the pinned CA's key must verify it and
//!   the walk ends) or of another presented certificate, whose key must
//!   verify it. At most [`INTERMEDIATES_MAX`] intermediates.
//! - Every certificate that signs another, the pinned CA included, must be
//!   a CA: basicConstraints `cA` TRUE (§4.2.1.9), keyUsage (when present)
//!   with `keyCertSign` (§4.2.1.3), and its `pathLenConstraint` (when
//!   present) no smaller than the number of intermediates below it.
//! - The leaf must not be a CA, its extKeyUsage (when present) must
//!   include `serverAuth` (§4.2.1.12), its keyUsage (when present)
//!   `digitalSignature`, and one of its subjectAltName dNSNames must match
//!   the server name (RFC 6125 §6.4: exact, ASCII case-insensitive, or a
//!   wildcard `*` as the whole leftmost label of a name of three labels or
//!   more, §6.4.3). The common name is never used (§6.4.4), so a leaf
//!   without dNSNames is rejected.
//! - The CertificateVerify (RFC 8446 §4.4.3): ECDSA P-256 with SHA-256
//!   over 64 spaces, the context string `TLS 1.3, server
//!   CertificateVerify`, a zero byte and the transcript hash through the
//!   Certificate message, with the leaf's key. A CertificateVerify before a
//!   verified Certificate, or a second Certificate, is an error.
//!
//! The verifier records how far it got ([`ServerAuth`]); the connector
//! owns it and, after `open()`, refuses a connection on which both proofs
//! were not made (RFC 8446 §4.4.2: the server MUST send a Certificate
//! whenever the key exchange uses certificates, which is always here).
//!
//! Deliberately not here: validity periods (no trusted clock), revocation
//! (CRL, OCSP), name constraints and policies (rejected when critical),
//! IP address names, RSA / P-384 / Ed25519.

use core::fmt;

use ::embedded_tls::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, SignatureScheme,
    TlsError, TlsVerifier,
};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};

use super::x509::{Certificate, KEY_USAGE_DIGITAL_SIGNATURE};

/// The most intermediate certificates between the server's certificate and
/// the pinned CA; a longer chain is [`CertificateError::ChainTooLong`].
pub const INTERMEDIATES_MAX: usize = 4;

/// The context string of a server CertificateVerify (RFC 8446 §4.4.3).
const SERVER_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify";

/// The signed content's length: 64 spaces, the context, a zero byte and a
/// SHA-256 transcript hash.
const SIGNED_CONTENT_LEN: usize = 64 + SERVER_CONTEXT.len() + 1 + 32;

/// Why the server's certificate or its handshake signature was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateError {
    /// A certificate is not DER X.509 v3 (or repeats an extension).
    Malformed,
    /// A key or signature other than ECDSA P-256 with SHA-256.
    UnsupportedAlgorithm,
    /// A certificate has a critical extension the verifier does not know.
    UnknownCriticalExtension,
    /// The pinned certificate itself cannot be read.
    PinnedCaMalformed,
    /// The pinned certificate is not a CA (basicConstraints `cA`, keyUsage
    /// `keyCertSign`).
    PinnedCaNotCa,
    /// The chain does not lead to the pinned CA.
    UnknownIssuer,
    /// A certificate's signature does not verify with its issuer's key.
    BadSignature,
    /// A certificate that signs another is not a CA.
    IssuerNotCa,
    /// A CA's pathLenConstraint allows fewer intermediates below it.
    PathLenExceeded,
    /// More than [`INTERMEDIATES_MAX`] intermediates.
    ChainTooLong,
    /// The server's certificate is a CA certificate.
    LeafIsCa,
    /// The server's certificate is not for TLS server authentication
    /// (extKeyUsage without serverAuth, keyUsage without digitalSignature).
    NotForServerAuth,
    /// The server's certificate has no DNS name (subjectAltName); the
    /// common name is not used.
    NoDnsName,
    /// None of the certificate's DNS names is the server name.
    NameMismatch,
    /// The server sent no certificate or a raw public key.
    NoCertificate,
    /// A second Certificate message.
    UnexpectedCertificate,
    /// A CertificateVerify before a verified Certificate.
    CertificateVerifyOutOfOrder,
    /// The CertificateVerify signature does not verify with the server
    /// certificate's key.
    HandshakeSignatureInvalid,
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "a certificate is not valid DER X.509 v3",
            Self::UnsupportedAlgorithm => {
                "a key or signature is not ECDSA P-256 with SHA-256 (the only kind supported)"
            }
            Self::UnknownCriticalExtension => "a certificate has an unknown critical extension",
            Self::PinnedCaMalformed => "the pinned CA certificate cannot be read",
            Self::PinnedCaNotCa => {
                "the pinned certificate is not a CA (basicConstraints cA and keyCertSign needed)"
            }
            Self::UnknownIssuer => "the chain does not lead to the pinned CA",
            Self::BadSignature => "a certificate's signature does not verify",
            Self::IssuerNotCa => "a certificate in the chain signs others without being a CA",
            Self::PathLenExceeded => "a CA's path length constraint is exceeded",
            Self::ChainTooLong => "the chain has too many intermediates",
            Self::LeafIsCa => "the server's certificate is a CA certificate",
            Self::NotForServerAuth => "the certificate is not for TLS server authentication",
            Self::NoDnsName => {
                "the certificate has no DNS subjectAltName (the common name is not used)"
            }
            Self::NameMismatch => "the certificate is not for the server name",
            Self::NoCertificate => "the server sent no X.509 certificate",
            Self::UnexpectedCertificate => "the server sent a second Certificate",
            Self::CertificateVerifyOutOfOrder => {
                "the server sent CertificateVerify before a verified Certificate"
            }
            Self::HandshakeSignatureInvalid => {
                "the server's CertificateVerify signature does not verify"
            }
        })
    }
}

impl core::error::Error for CertificateError {}

/// How far the server got in proving its identity in this handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerAuth {
    /// Nothing yet.
    Nothing,
    /// The chain and name checked; the transcript hash through the
    /// Certificate message and the leaf's key kept for CertificateVerify.
    CertificateVerified {
        transcript: [u8; 32],
        key: VerifyingKey,
    },
    /// Chain, name and CertificateVerify all checked.
    Authenticated,
    /// A check failed, for this reason.
    Failed(CertificateError),
}

/// The pinned-CA verifier (see the module doc). It lives in the connector,
/// which resets it before every handshake and reads it after.
#[derive(Debug, Clone, Copy)]
pub(super) struct PinnedCaVerifier<'b> {
    ca: &'b [u8],
    server_name: &'b str,
    pub(super) state: ServerAuth,
}

impl<'b> PinnedCaVerifier<'b> {
    pub(super) fn new(ca: &'b [u8], server_name: &'b str) -> Self {
        Self {
            ca,
            server_name,
            state: ServerAuth::Nothing,
        }
    }

    /// Records `error` and hands embedded-tls an error to abort with.
    fn fail(&mut self, error: CertificateError) -> TlsError {
        self.state = ServerAuth::Failed(error);
        match error {
            CertificateError::HandshakeSignatureInvalid
            | CertificateError::CertificateVerifyOutOfOrder => TlsError::InvalidSignature,
            _ => TlsError::InvalidCertificate,
        }
    }
}

impl TlsVerifier<Aes128GcmSha256> for PinnedCaVerifier<'_> {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        // The connector gave the same name to the verifier and the config.
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &Sha256,
        certificate: CertificateRef<'_>,
    ) -> Result<(), TlsError> {
        if self.state != ServerAuth::Nothing {
            return Err(self.fail(CertificateError::UnexpectedCertificate));
        }
        match verify_chain(self.ca, self.server_name, &certificate.entries) {
            Ok(key) => {
                self.state = ServerAuth::CertificateVerified {
                    transcript: transcript.clone().finalize().into(),
                    key,
                };
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef<'_>) -> Result<(), TlsError> {
        let ServerAuth::CertificateVerified { transcript, key } = self.state else {
            return Err(self.fail(CertificateError::CertificateVerifyOutOfOrder));
        };
        if verify.signature_scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(self.fail(CertificateError::UnsupportedAlgorithm));
        }
        let mut content = [0x20u8; SIGNED_CONTENT_LEN];
        let (_, rest) = content.split_at_mut(64);
        let (context, rest) = rest.split_at_mut(SERVER_CONTEXT.len());
        context.copy_from_slice(SERVER_CONTEXT);
        let (zero, hash) = rest.split_at_mut(1);
        zero.fill(0);
        hash.copy_from_slice(&transcript);
        let verified = Signature::from_der(verify.signature)
            .is_ok_and(|signature| key.verify(&content, &signature).is_ok());
        if !verified {
            return Err(self.fail(CertificateError::HandshakeSignatureInvalid));
        }
        self.state = ServerAuth::Authenticated;
        Ok(())
    }
}

/// Checks the presented chain against the pinned CA and the server name;
/// on success, the leaf's key.
fn verify_chain(
    ca: &[u8],
    server_name: &str,
    entries: &[CertificateEntryRef<'_>],
) -> Result<VerifyingKey, CertificateError> {
    let anchor = Certificate::parse(ca).map_err(|e| match e {
        CertificateError::Malformed => CertificateError::PinnedCaMalformed,
        other => other,
    })?;
    if !anchor.is_ca() {
        return Err(CertificateError::PinnedCaNotCa);
    }
    let Some((CertificateEntryRef::X509(leaf_der), rest)) = entries.split_first() else {
        return Err(CertificateError::NoCertificate);
    };
    let leaf = Certificate::parse(leaf_der)?;
    check_leaf(&leaf, server_name)?;
    let leaf_key =
        VerifyingKey::from_sec1_bytes(leaf.public_key).map_err(|_| CertificateError::Malformed)?;

    let mut child = leaf;
    // `below`: intermediates between `child`'s issuer and the leaf.
    for below in 0..=INTERMEDIATES_MAX {
        if child.issuer == anchor.subject {
            check_issuer(&anchor, below)?;
            check_signed_by(&child, &anchor)?;
            return Ok(leaf_key);
        }
        // A self-issued certificate other than the anchor (a root the
        // server sends along) ends the walk: nothing above it.
        if child.issuer == child.subject {
            return Err(CertificateError::UnknownIssuer);
        }
        if below == INTERMEDIATES_MAX {
            break;
        }
        let issuer = find_issuer(&child, rest)?;
        check_issuer(&issuer, below).map_err(|e| match e {
            CertificateError::PinnedCaNotCa => CertificateError::IssuerNotCa,
            other => other,
        })?;
        check_signed_by(&child, &issuer)?;
        child = issuer;
    }
    Err(CertificateError::ChainTooLong)
}

/// The first presented certificate whose subject is `child`'s issuer.
fn find_issuer<'a>(
    child: &Certificate<'_>,
    presented: &[CertificateEntryRef<'a>],
) -> Result<Certificate<'a>, CertificateError> {
    for entry in presented {
        if let CertificateEntryRef::X509(der) = entry {
            let candidate = Certificate::parse(der)?;
            if candidate.subject == child.issuer {
                return Ok(candidate);
            }
        }
    }
    Err(CertificateError::UnknownIssuer)
}

/// A certificate that signs another, with `below` intermediates under it.
fn check_issuer(issuer: &Certificate<'_>, below: usize) -> Result<(), CertificateError> {
    if !issuer.is_ca() {
        return Err(CertificateError::PinnedCaNotCa);
    }
    match issuer.basic_constraints.and_then(|b| b.path_len) {
        Some(limit) if usize::from(limit) < below => Err(CertificateError::PathLenExceeded),
        _ => Ok(()),
    }
}

fn check_signed_by(
    child: &Certificate<'_>,
    issuer: &Certificate<'_>,
) -> Result<(), CertificateError> {
    let key = VerifyingKey::from_sec1_bytes(issuer.public_key)
        .map_err(|_| CertificateError::Malformed)?;
    let signature =
        Signature::from_der(child.signature).map_err(|_| CertificateError::BadSignature)?;
    key.verify(child.tbs, &signature)
        .map_err(|_| CertificateError::BadSignature)
}

fn check_leaf(leaf: &Certificate<'_>, server_name: &str) -> Result<(), CertificateError> {
    if leaf.basic_constraints.is_some_and(|b| b.ca) {
        return Err(CertificateError::LeafIsCa);
    }
    let signs = leaf
        .key_usage
        .is_none_or(|bits| bits & KEY_USAGE_DIGITAL_SIGNATURE != 0);
    if !signs || !leaf.allows_server_auth()? {
        return Err(CertificateError::NotForServerAuth);
    }
    let mut matched = false;
    let any = leaf.dns_names(|name| matched |= dns_name_matches(name, server_name.as_bytes()))?;
    if !any {
        return Err(CertificateError::NoDnsName);
    }
    if !matched {
        return Err(CertificateError::NameMismatch);
    }
    Ok(())
}

/// RFC 6125 §6.4.1 to §6.4.3: `pattern` (a dNSName) against `host`: equal
/// ignoring ASCII case, or `*.` plus a suffix of two labels or more that
/// equals everything after `host`'s first (non-empty) label.
pub(super) fn dns_name_matches(pattern: &[u8], host: &[u8]) -> bool {
    if host.is_empty() || host.contains(&b'*') {
        return false;
    }
    let Some(suffix) = pattern.strip_prefix(b"*.") else {
        return !pattern.contains(&b'*') && pattern.eq_ignore_ascii_case(host);
    };
    let suffix_ok = !suffix.contains(&b'*')
        && suffix.contains(&b'.')
        && !suffix.starts_with(b".")
        && !suffix.ends_with(b".");
    match host.iter().position(|&b| b == b'.') {
        Some(dot) if dot > 0 && suffix_ok => host
            .get(dot.saturating_add(1)..)
            .is_some_and(|rest| rest.eq_ignore_ascii_case(suffix)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;
    use rcgen::{
        BasicConstraints as Constraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyPair, KeyUsagePurpose,
    };

    const NAME: &str = "broker.example.com";

    /// A CA's parameters: cA, keyCertSign, an optional path length.
    fn ca_params(name: &str, path_len: Option<u8>) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(match path_len {
            Some(n) => Constraints::Constrained(n),
            None => Constraints::Unconstrained,
        });
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.distinguished_name.push(DnType::CommonName, name);
        params
    }

    fn leaf_params(names: &[&str]) -> CertificateParams {
        let names = names.iter().map(|n| String::from(*n)).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params
    }

    /// A root from `params` (DER) and its issuer.
    fn root(params: CertificateParams) -> (Vec<u8>, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        (der, Issuer::new(params, key))
    }

    /// A certificate from `params` signed by `issuer` (DER) and, for
    /// signing further, its issuer.
    fn issue(
        params: CertificateParams,
        issuer: &Issuer<'_, KeyPair>,
    ) -> (Vec<u8>, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let der = params.signed_by(&key, issuer).unwrap().der().to_vec();
        (der, Issuer::new(params, key))
    }

    fn check(ca: &[u8], chain: &[&Vec<u8>]) -> Result<(), CertificateError> {
        let entries: Vec<CertificateEntryRef<'_>> = chain
            .iter()
            .map(|der| CertificateEntryRef::X509(der.as_slice()))
            .collect();
        verify_chain(ca, NAME, &entries).map(|_| ())
    }

    #[test]
    fn rfc5280_6_1_direct_and_intermediate_chains_in_any_order() {
        let (ca, ca_issuer) = root(ca_params("root", None));
        let (direct, _) = issue(leaf_params(&[NAME]), &ca_issuer);
        assert_eq!(check(&ca, &[&direct]), Ok(()));
        let (a, a_issuer) = issue(ca_params("a", None), &ca_issuer);
        let (b, b_issuer) = issue(ca_params("b", None), &a_issuer);
        let (leaf, _) = issue(leaf_params(&[NAME]), &b_issuer);
        assert_eq!(check(&ca, &[&leaf, &b, &a]), Ok(()));
        // Out of order, with the root sent along (RFC 8446 §4.4.2 asks
        // clients to cope).
        assert_eq!(check(&ca, &[&leaf, &ca, &a, &b]), Ok(()));
        // The intermediate missing.
        assert_eq!(
            check(&ca, &[&leaf, &a]),
            Err(CertificateError::UnknownIssuer)
        );
        // Pinned at the intermediate.
        assert_eq!(check(&b, &[&leaf]), Ok(()));
    }

    #[test]
    fn rfc5280_4_2_1_9_path_length_is_honoured_on_intermediates_and_the_anchor() {
        let (ca, ca_issuer) = root(ca_params("root", Some(0)));
        let (a, a_issuer) = issue(ca_params("a", None), &ca_issuer);
        let (leaf, _) = issue(leaf_params(&[NAME]), &a_issuer);
        assert_eq!(
            check(&ca, &[&leaf, &a]),
            Err(CertificateError::PathLenExceeded)
        );
        let (ca, ca_issuer) = root(ca_params("root", Some(1)));
        let (a, a_issuer) = issue(ca_params("a", Some(0)), &ca_issuer);
        let (b, b_issuer) = issue(ca_params("b", None), &a_issuer);
        let (leaf, _) = issue(leaf_params(&[NAME]), &b_issuer);
        assert_eq!(
            check(&ca, &[&leaf, &b, &a]),
            Err(CertificateError::PathLenExceeded)
        );
    }

    #[test]
    fn rfc5280_4_2_1_3_a_ca_without_key_cert_sign_cannot_sign() {
        let (ca, ca_issuer) = root(ca_params("root", None));
        let mut params = ca_params("a", None);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let (a, a_issuer) = issue(params, &ca_issuer);
        let (leaf, _) = issue(leaf_params(&[NAME]), &a_issuer);
        assert_eq!(check(&ca, &[&leaf, &a]), Err(CertificateError::IssuerNotCa));
        let mut params = ca_params("root", None);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let (ca, ca_issuer) = root(params);
        let (leaf, _) = issue(leaf_params(&[NAME]), &ca_issuer);
        assert_eq!(check(&ca, &[&leaf]), Err(CertificateError::PinnedCaNotCa));
    }

    #[test]
    fn rfc5280_4_2_1_12_leaf_must_be_for_server_auth_and_not_a_ca() {
        let (ca, ca_issuer) = root(ca_params("root", None));
        let mut params = leaf_params(&[NAME]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (client, _) = issue(params, &ca_issuer);
        assert_eq!(
            check(&ca, &[&client]),
            Err(CertificateError::NotForServerAuth)
        );
        let mut params = leaf_params(&[NAME]);
        params.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        let (no_signing, _) = issue(params, &ca_issuer);
        assert_eq!(
            check(&ca, &[&no_signing]),
            Err(CertificateError::NotForServerAuth)
        );
        let mut params = ca_params("ca leaf", None);
        params.subject_alt_names = leaf_params(&[NAME]).subject_alt_names;
        let (ca_leaf, _) = issue(params, &ca_issuer);
        assert_eq!(check(&ca, &[&ca_leaf]), Err(CertificateError::LeafIsCa));
    }

    #[test]
    fn rfc6125_6_4_names_come_from_dns_sans_with_wildcards() {
        let (ca, ca_issuer) = root(ca_params("root", None));
        let (wildcard, _) = issue(leaf_params(&["*.example.com"]), &ca_issuer);
        assert_eq!(check(&ca, &[&wildcard]), Ok(()));
        let (too_wide, _) = issue(leaf_params(&["*.com"]), &ca_issuer);
        assert_eq!(
            check(&ca, &[&too_wide]),
            Err(CertificateError::NameMismatch)
        );
        let (other, _) = issue(leaf_params(&["a.example.com", "b.example.com"]), &ca_issuer);
        assert_eq!(check(&ca, &[&other]), Err(CertificateError::NameMismatch));
    }

    #[test]
    fn chain_length_is_bounded() {
        let (ca, mut issuer) = root(ca_params("root", None));
        let mut chain = Vec::new();
        for i in 0..=INTERMEDIATES_MAX {
            let name = alloc::format!("intermediate {i}");
            let (der, next) = issue(ca_params(&name, None), &issuer);
            chain.push(der);
            issuer = next;
        }
        let (leaf, _) = issue(leaf_params(&[NAME]), &issuer);
        let mut presented = vec![&leaf];
        presented.extend(chain.iter().rev());
        assert_eq!(check(&ca, &presented), Err(CertificateError::ChainTooLong));
        // One fewer is fine.
        assert_eq!(check(&chain[0], &presented[..presented.len() - 1]), Ok(()));
    }

    #[test]
    fn a_changed_signature_or_a_same_named_impostor_ca_is_rejected() {
        let (ca, ca_issuer) = root(ca_params("root", None));
        let (mut leaf, _) = issue(leaf_params(&[NAME]), &ca_issuer);
        let last = leaf.len() - 1;
        leaf[last] ^= 1;
        assert_eq!(check(&ca, &[&leaf]), Err(CertificateError::BadSignature));
        // Another CA with the same name but its own key.
        let (impostor, _) = root(ca_params("root", None));
        let (leaf, _) = issue(leaf_params(&[NAME]), &ca_issuer);
        assert_eq!(
            check(&impostor, &[&leaf]),
            Err(CertificateError::BadSignature)
        );
        assert_eq!(check(&ca, &[]), Err(CertificateError::NoCertificate));
        assert_eq!(
            check(b"not a certificate", &[&leaf]).unwrap_err(),
            CertificateError::PinnedCaMalformed
        );
    }

    #[test]
    fn rfc6125_6_4_1_exact_names_match_ignoring_ascii_case() {
        assert!(dns_name_matches(
            b"broker.example.com",
            b"broker.example.com"
        ));
        assert!(dns_name_matches(
            b"BROKER.Example.com",
            b"broker.example.COM"
        ));
        assert!(!dns_name_matches(
            b"broker.example.com",
            b"broker.example.org"
        ));
        assert!(!dns_name_matches(b"example.com", b"broker.example.com"));
        assert!(!dns_name_matches(b"", b"broker"));
        assert!(!dns_name_matches(b"broker", b""));
    }

    #[test]
    fn rfc6125_6_4_3_one_leftmost_wildcard_label_only() {
        assert!(dns_name_matches(b"*.example.com", b"broker.example.com"));
        assert!(dns_name_matches(b"*.Example.com", b"BROKER.example.com"));
        // One label only, never the bare domain.
        assert!(!dns_name_matches(b"*.example.com", b"a.broker.example.com"));
        assert!(!dns_name_matches(b"*.example.com", b"example.com"));
        assert!(!dns_name_matches(b"*.example.com", b".example.com"));
        // Not below a public suffix-like single label, not partial, not
        // twice, not in another position.
        assert!(!dns_name_matches(b"*.com", b"example.com"));
        assert!(!dns_name_matches(b"b*.example.com", b"broker.example.com"));
        assert!(!dns_name_matches(b"*.*.example.com", b"a.b.example.com"));
        assert!(!dns_name_matches(b"broker.*.com", b"broker.example.com"));
        assert!(!dns_name_matches(b"*", b"broker"));
        // A wildcard in the reference name is never matched.
        assert!(!dns_name_matches(b"*.example.com", b"*.example.com"));
    }
}
