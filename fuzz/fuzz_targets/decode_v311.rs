//! Fuzz target: decode arbitrary bytes as MQTT 3.1.1 packets.
//!
//! Every outcome of `Packet::decode` is acceptable except a panic or a hang;
//! `Incomplete` must ask for at least one byte more. A packet that decodes
//! must re-encode (perhaps shorter: the encoder writes the canonical form,
//! e.g. without an optional reason code) to the length `encoded_len` promised,
//! and that encoding must decode again to an equal packet.
#![no_main]

use embermq::codec::{DecodeOptions, Decoded, Packet, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

const VERSION: ProtocolVersion = ProtocolVersion::V311;

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions::new(VERSION);
    let mut rest = data;
    // Decode every packet in the input, as a connection would.
    loop {
        let (packet, len) = match Packet::decode(rest, &opts) {
            Ok(Decoded::Complete { value, len }) => (value, len),
            Ok(Decoded::Incomplete { needed }) => {
                assert!(needed > 0, "Incomplete asks for 0 bytes");
                return;
            }
            Err(_) => return,
        };
        assert!(
            len > 0 && len <= rest.len(),
            "consumed {len} of {}",
            rest.len()
        );
        // CONNECT is written in its own version, everything else in VERSION.
        let version = match packet {
            Packet::Connect(ref c) => c.protocol_version,
            _ => VERSION,
        };
        let encoded_len = packet.encoded_len(version);
        let mut buf = vec![0u8; encoded_len];
        let written = packet
            .encode(&mut buf, VERSION)
            .unwrap_or_else(|e| panic!("decoded packet does not re-encode: {e:?}\n{packet:?}"));
        assert_eq!(written, encoded_len, "encoded_len disagrees with encode");
        let again_opts = DecodeOptions::new(version);
        match Packet::decode(&buf, &again_opts) {
            Ok(Decoded::Complete { value, len }) => {
                assert_eq!(len, written, "re-decode consumed a different length");
                assert_eq!(value, packet, "re-decoded packet differs");
            }
            other => panic!("re-encoded packet does not decode: {other:?}\n{packet:?}\n{buf:02x?}"),
        }
        rest = &rest[len..];
    }
});
