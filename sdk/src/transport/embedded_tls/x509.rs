//! A small X.509 v3 certificate reader (RFC 5280 §4.1) for the device
//! verifier: borrowed views into one DER certificate, no allocation, no
//! copies, every length checked by the `der` crate's reader (definite,
//! minimal DER lengths only) before a byte is looked at.
//!
//! It reads what the verifier needs and nothing more: the signed
//! `tbsCertificate` bytes, the signature algorithm (which must be
//! `ecdsa-with-SHA256`, RFC 5758 §3.2, the same in both places as RFC 5280
//! §4.1.1.2 requires), the issuer and subject names as raw DER (compared
//! byte for byte, not normalised), the subject public key (which must be an
//! EC key on P-256, RFC 5480 §2.1.1), and the extensions basicConstraints
//! (§4.2.1.9), keyUsage (§4.2.1.3), extKeyUsage (§4.2.1.12) and
//! subjectAltName (§4.2.1.6). Any other extension marked critical makes
//! the certificate unusable (§4.2: a certificate-using system MUST reject
//! a certificate with a critical extension it does not recognise); so does
//! a repeated extension (§4.2).
//!
//! Deliberately not here: the validity period (a device has no trusted
//! clock; the bytes are skipped), certificate policies, name constraints
//! (rejected when critical, as above), unique identifiers (skipped), RSA,
//! P-384 and Ed25519 keys, and versions 1 and 2 (they cannot carry the
//! extensions the verifier requires).

use der::{Decode, Header, Reader, SliceReader, Tag, TagNumber};

use super::CertificateError;

/// `ecdsa-with-SHA256` as a whole AlgorithmIdentifier, parameters absent
/// (RFC 5758 §3.2).
const ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// `id-ecPublicKey` with the named curve `secp256r1` as a whole
/// AlgorithmIdentifier (RFC 5480 §2.1.1).
const EC_PUBLIC_KEY_P256: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];

/// Extension identifiers (OID contents): id-ce 29 and its arcs.
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// `id-kp-serverAuth` (RFC 5280 §4.2.1.12), OID contents.
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// keyUsage bits in the first content byte (bit 0 is the most significant).
pub(super) const KEY_USAGE_DIGITAL_SIGNATURE: u8 = 0x80;
pub(super) const KEY_USAGE_KEY_CERT_SIGN: u8 = 0x04;

/// The DER of version v3 inside `[0] EXPLICIT` (INTEGER 2).
const VERSION_3: &[u8] = &[0x02, 0x01, 0x02];

/// One certificate, as views into its DER.
#[derive(Debug, Clone, Copy)]
pub(super) struct Certificate<'a> {
    /// The whole `tbsCertificate` TLV: the bytes the issuer signed.
    pub(super) tbs: &'a [u8],
    /// The DER `ECDSA-Sig-Value` from the signature BIT STRING.
    pub(super) signature: &'a [u8],
    /// The issuer Name TLV.
    pub(super) issuer: &'a [u8],
    /// The subject Name TLV.
    pub(super) subject: &'a [u8],
    /// The subject's P-256 public key (SEC1 point).
    pub(super) public_key: &'a [u8],
    /// basicConstraints: `None` when the extension is absent.
    pub(super) basic_constraints: Option<BasicConstraints>,
    /// The first byte of keyUsage's bits: `None` when absent.
    pub(super) key_usage: Option<u8>,
    /// The contents of extKeyUsage's SEQUENCE OF OID: `None` when absent.
    ext_key_usage: Option<&'a [u8]>,
    /// The contents of subjectAltName's GeneralNames: `None` when absent.
    subject_alt_name: Option<&'a [u8]>,
}

/// The basicConstraints extension (RFC 5280 §4.2.1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BasicConstraints {
    /// `cA`: the key may sign certificates.
    pub(super) ca: bool,
    /// `pathLenConstraint`: how many intermediates may follow; values
    /// above 255 are kept as 255.
    pub(super) path_len: Option<u8>,
}

impl<'a> Certificate<'a> {
    /// Reads one DER certificate; anything else is
    /// [`CertificateError::Malformed`], a key or signature other than
    /// ECDSA P-256 / SHA-256 is [`CertificateError::UnsupportedAlgorithm`].
    pub(super) fn parse(der: &'a [u8]) -> Result<Self, CertificateError> {
        let mut outer = Der::new(der)?;
        let certificate = outer.expect(Tag::Sequence)?;
        outer.finish()?;

        let mut fields = Der::new(certificate.value)?;
        let tbs = fields.expect(Tag::Sequence)?;
        let signature_algorithm = fields.expect(Tag::Sequence)?;
        let signature = fields.expect(Tag::BitString)?;
        fields.finish()?;
        if signature_algorithm.whole != ECDSA_WITH_SHA256 {
            return Err(CertificateError::UnsupportedAlgorithm);
        }
        let signature = bit_string_octets(signature.value)?;

        let mut t = Der::new(tbs.value)?;
        let version = t.expect(Tag::ContextSpecific {
            constructed: true,
            number: TagNumber::N0,
        })?;
        if version.value != VERSION_3 {
            return Err(CertificateError::Malformed);
        }
        let _serial = t.expect(Tag::Integer)?;
        // RFC 5280 §4.1.2.3: the same identifier as signatureAlgorithm.
        if t.expect(Tag::Sequence)?.whole != signature_algorithm.whole {
            return Err(CertificateError::Malformed);
        }
        let issuer = t.expect(Tag::Sequence)?.whole;
        let _validity = t.expect(Tag::Sequence)?;
        let subject = t.expect(Tag::Sequence)?.whole;
        let public_key = subject_public_key(t.expect(Tag::Sequence)?.value)?;

        let mut parsed = Self {
            tbs: tbs.whole,
            signature,
            issuer,
            subject,
            public_key,
            basic_constraints: None,
            key_usage: None,
            ext_key_usage: None,
            subject_alt_name: None,
        };
        // issuerUniqueID [1], subjectUniqueID [2] (skipped), extensions [3].
        let mut last = 0u8;
        while !t.is_finished() {
            let field = t.next()?;
            let number = match field.tag {
                Tag::ContextSpecific {
                    constructed: false,
                    number,
                } if number == TagNumber::N1 || number == TagNumber::N2 => number.value(),
                Tag::ContextSpecific {
                    constructed: true,
                    number: TagNumber::N3,
                } => 3,
                _ => return Err(CertificateError::Malformed),
            };
            // In order, each at most once.
            if number <= last {
                return Err(CertificateError::Malformed);
            }
            last = number;
            if number == 3 {
                parsed.read_extensions(field.value)?;
            }
        }
        Ok(parsed)
    }

    /// `[3] EXPLICIT Extensions` contents.
    fn read_extensions(&mut self, explicit: &'a [u8]) -> Result<(), CertificateError> {
        let mut wrapper = Der::new(explicit)?;
        let list = wrapper.expect(Tag::Sequence)?;
        wrapper.finish()?;
        let mut extensions = Der::new(list.value)?;
        if extensions.is_finished() {
            // §4.1.2.9: at least one extension when present.
            return Err(CertificateError::Malformed);
        }
        while !extensions.is_finished() {
            let mut extension = Der::new(extensions.expect(Tag::Sequence)?.value)?;
            let id = extension.expect(Tag::ObjectIdentifier)?.value;
            let mut next = extension.next()?;
            let mut critical = false;
            if next.tag == Tag::Boolean {
                critical = boolean(next.value)?;
                next = extension.next()?;
            }
            if next.tag != Tag::OctetString {
                return Err(CertificateError::Malformed);
            }
            extension.finish()?;
            let value = next.value;
            match id {
                OID_BASIC_CONSTRAINTS => {
                    once(self.basic_constraints.is_some())?;
                    self.basic_constraints = Some(basic_constraints(value)?);
                }
                OID_KEY_USAGE => {
                    once(self.key_usage.is_some())?;
                    self.key_usage = Some(key_usage(value)?);
                }
                OID_EXT_KEY_USAGE => {
                    once(self.ext_key_usage.is_some())?;
                    self.ext_key_usage = Some(sequence_contents(value)?);
                }
                OID_SUBJECT_ALT_NAME => {
                    once(self.subject_alt_name.is_some())?;
                    self.subject_alt_name = Some(sequence_contents(value)?);
                }
                _ if critical => return Err(CertificateError::UnknownCriticalExtension),
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the certificate may sign certificates: basicConstraints
    /// `cA` TRUE and, when keyUsage is present, `keyCertSign` among its
    /// bits (RFC 5280 §4.2.1.9, §4.2.1.3).
    pub(super) fn is_ca(&self) -> bool {
        let ca = matches!(
            self.basic_constraints,
            Some(BasicConstraints { ca: true, .. })
        );
        let usage = self
            .key_usage
            .is_none_or(|bits| bits & KEY_USAGE_KEY_CERT_SIGN != 0);
        ca && usage
    }

    /// Whether extKeyUsage, when present, includes `id-kp-serverAuth`
    /// (RFC 5280 §4.2.1.12).
    pub(super) fn allows_server_auth(&self) -> Result<bool, CertificateError> {
        let Some(list) = self.ext_key_usage else {
            return Ok(true);
        };
        let mut purposes = Der::new(list)?;
        let mut found = false;
        while !purposes.is_finished() {
            found |= purposes.expect(Tag::ObjectIdentifier)?.value == OID_SERVER_AUTH;
        }
        Ok(found)
    }

    /// Each dNSName in subjectAltName to `visit` (RFC 5280 §4.2.1.6);
    /// `Ok(false)` when there is no subjectAltName at all.
    pub(super) fn dns_names(
        &self,
        mut visit: impl FnMut(&'a [u8]),
    ) -> Result<bool, CertificateError> {
        let Some(list) = self.subject_alt_name else {
            return Ok(false);
        };
        let mut names = Der::new(list)?;
        while !names.is_finished() {
            let name = names.next()?;
            if name.tag
                == (Tag::ContextSpecific {
                    constructed: false,
                    number: TagNumber::N2,
                })
            {
                visit(name.value);
            }
        }
        Ok(true)
    }
}

/// One DER TLV: its tag, its contents, and the whole encoding.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: Tag,
    value: &'a [u8],
    whole: &'a [u8],
}

/// A DER reader over one slice, on top of `der`'s [`SliceReader`].
struct Der<'a> {
    input: &'a [u8],
    reader: SliceReader<'a>,
}

impl<'a> Der<'a> {
    fn new(input: &'a [u8]) -> Result<Self, CertificateError> {
        Ok(Self {
            input,
            reader: SliceReader::new(input).map_err(|_| CertificateError::Malformed)?,
        })
    }

    fn position(&self) -> Result<usize, CertificateError> {
        usize::try_from(self.reader.position()).map_err(|_| CertificateError::Malformed)
    }

    /// The next TLV, whatever its tag.
    fn next(&mut self) -> Result<Tlv<'a>, CertificateError> {
        let start = self.position()?;
        let header = Header::decode(&mut self.reader).map_err(|_| CertificateError::Malformed)?;
        let value = self
            .reader
            .read_slice(header.length)
            .map_err(|_| CertificateError::Malformed)?;
        let end = self.position()?;
        let whole = self
            .input
            .get(start..end)
            .ok_or(CertificateError::Malformed)?;
        Ok(Tlv {
            tag: header.tag,
            value,
            whole,
        })
    }

    /// The next TLV, which must carry `tag`.
    fn expect(&mut self, tag: Tag) -> Result<Tlv<'a>, CertificateError> {
        let tlv = self.next()?;
        if tlv.tag == tag {
            Ok(tlv)
        } else {
            Err(CertificateError::Malformed)
        }
    }

    fn is_finished(&self) -> bool {
        self.reader.is_finished()
    }

    /// Nothing may follow.
    fn finish(&self) -> Result<(), CertificateError> {
        if self.is_finished() {
            Ok(())
        } else {
            Err(CertificateError::Malformed)
        }
    }
}

fn once(seen: bool) -> Result<(), CertificateError> {
    if seen {
        Err(CertificateError::Malformed)
    } else {
        Ok(())
    }
}

/// A DER BOOLEAN's contents (X.690 §11.1: 0x00 or 0xFF).
fn boolean(value: &[u8]) -> Result<bool, CertificateError> {
    match value {
        [0x00] => Ok(false),
        [0xff] => Ok(true),
        _ => Err(CertificateError::Malformed),
    }
}

/// A BIT STRING's contents with no unused bits, as octets.
fn bit_string_octets(value: &[u8]) -> Result<&[u8], CertificateError> {
    match value.split_first() {
        Some((0, octets)) => Ok(octets),
        _ => Err(CertificateError::Malformed),
    }
}

/// The contents of the single SEQUENCE that fills `value`.
fn sequence_contents(value: &[u8]) -> Result<&[u8], CertificateError> {
    let mut der = Der::new(value)?;
    let sequence = der.expect(Tag::Sequence)?;
    der.finish()?;
    Ok(sequence.value)
}

/// SubjectPublicKeyInfo contents: an EC key on P-256 (RFC 5480 §2.1.1).
fn subject_public_key(value: &[u8]) -> Result<&[u8], CertificateError> {
    let mut der = Der::new(value)?;
    let algorithm = der.expect(Tag::Sequence)?;
    let key = der.expect(Tag::BitString)?;
    der.finish()?;
    if algorithm.whole != EC_PUBLIC_KEY_P256 {
        return Err(CertificateError::UnsupportedAlgorithm);
    }
    bit_string_octets(key.value)
}

/// `BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE,
/// pathLenConstraint INTEGER (0..MAX) OPTIONAL }`.
fn basic_constraints(value: &[u8]) -> Result<BasicConstraints, CertificateError> {
    let mut der = Der::new(sequence_contents(value)?)?;
    let mut constraints = BasicConstraints {
        ca: false,
        path_len: None,
    };
    if der.is_finished() {
        return Ok(constraints);
    }
    let mut field = der.next()?;
    if field.tag == Tag::Boolean {
        constraints.ca = boolean(field.value)?;
        if der.is_finished() {
            return Ok(constraints);
        }
        field = der.next()?;
    }
    if field.tag != Tag::Integer {
        return Err(CertificateError::Malformed);
    }
    der.finish()?;
    constraints.path_len = Some(small_unsigned(field.value)?);
    Ok(constraints)
}

/// A non-negative DER INTEGER's contents, saturated at 255.
fn small_unsigned(value: &[u8]) -> Result<u8, CertificateError> {
    match value {
        [] => Err(CertificateError::Malformed),
        [first, ..] if first & 0x80 != 0 => Err(CertificateError::Malformed),
        [0, only] => Ok(*only),
        [only] => Ok(*only),
        _ => Ok(u8::MAX),
    }
}

/// `KeyUsage ::= BIT STRING`: its first octet of bits (bits 0 to 7; the
/// verifier needs digitalSignature and keyCertSign only).
fn key_usage(value: &[u8]) -> Result<u8, CertificateError> {
    let mut der = Der::new(value)?;
    let bits = der.expect(Tag::BitString)?;
    der.finish()?;
    match bits.value {
        [unused, first, ..] if *unused < 8 => Ok(*first),
        [0] => Ok(0),
        _ => Err(CertificateError::Malformed),
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
        BasicConstraints as RcgenConstraints, CertificateParams, CustomExtension, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    };

    fn self_signed(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn rfc5280_4_1_reads_a_ca_and_a_leaf() {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(RcgenConstraints::Constrained(2));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        ca.distinguished_name.push(DnType::CommonName, "a CA");
        let der = self_signed(ca);
        let cert = Certificate::parse(&der).unwrap();
        assert_eq!(cert.issuer, cert.subject);
        assert_eq!(
            cert.basic_constraints,
            Some(BasicConstraints {
                ca: true,
                path_len: Some(2)
            })
        );
        assert!(cert.is_ca());
        assert_eq!(cert.public_key.len(), 65);
        assert!(!cert.dns_names(|_| {}).unwrap());

        let mut leaf = CertificateParams::new(vec![String::from("a.example")]).unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let der = self_signed(leaf);
        let cert = Certificate::parse(&der).unwrap();
        assert!(!cert.is_ca());
        assert!(!cert.allows_server_auth().unwrap());
        let mut names = Vec::new();
        assert!(cert.dns_names(|n| names.push(n.to_vec())).unwrap());
        assert_eq!(names, vec![b"a.example".to_vec()]);
    }

    #[test]
    fn rfc5280_4_2_unknown_critical_extension_is_rejected() {
        let mut params = CertificateParams::new(vec![String::from("a.example")]).unwrap();
        let mut ext = CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![0x05, 0x00]);
        ext.set_criticality(true);
        params.custom_extensions = vec![ext];
        let der = self_signed(params);
        assert_eq!(
            Certificate::parse(&der).unwrap_err(),
            CertificateError::UnknownCriticalExtension
        );
    }

    #[test]
    fn rfc5280_4_2_unknown_non_critical_extension_is_ignored() {
        let mut params = CertificateParams::new(vec![String::from("a.example")]).unwrap();
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 2, 3, 4],
            vec![0x05, 0x00],
        )];
        let der = self_signed(params);
        Certificate::parse(&der).unwrap();
    }

    #[test]
    fn every_truncation_and_every_single_byte_change_is_an_error_or_a_parse_never_a_panic() {
        let mut params = CertificateParams::new(vec![String::from("a.example")]).unwrap();
        params.is_ca = IsCa::Ca(RcgenConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let der = self_signed(params);
        for len in 0..der.len() {
            assert!(Certificate::parse(&der[..len]).is_err(), "prefix {len}");
        }
        let mut changed = der.clone();
        for i in 0..der.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0x81, 0xff] {
                changed[i] = value;
                if let Ok(cert) = Certificate::parse(&changed) {
                    let _ = cert.allows_server_auth();
                    let _ = cert.dns_names(|_| {});
                }
            }
            changed[i] = der[i];
        }
    }

    #[test]
    fn x690_8_3_path_length_integers() {
        assert_eq!(small_unsigned(&[0]), Ok(0));
        assert_eq!(small_unsigned(&[0x7f]), Ok(127));
        assert_eq!(small_unsigned(&[0, 0x80]), Ok(128));
        assert_eq!(small_unsigned(&[1, 0]), Ok(255));
        assert_eq!(small_unsigned(&[0x80]), Err(CertificateError::Malformed));
        assert_eq!(small_unsigned(&[]), Err(CertificateError::Malformed));
    }
}
