//! A 3.1.1 PUBLISH larger than this client accepts (3.1.1 §3.3; there is
//! no Maximum Packet Size in 3.1.1, so the broker cannot be told): it is
//! acknowledged per its QoS and skipped, and the link stays up. Anyone who
//! may publish to a subscribed topic could otherwise end a device's link,
//! again after every reconnect.
//!
//! Only the packet's start is read (fixed header, topic, packet
//! identifier); the driver streams past the rest without buffering it.
//! 5.0 does not come here: the CONNECT announces the limit, and a broker
//! that exceeds it broke the protocol (5.0 §3.1.2.11.4, DISCONNECT 0x95).
//! Not done: a skipped QoS 2 message whose packet id start did not arrive
//! with the header cannot be acknowledged, so the link is closed then.

use super::{Control, Session};
use crate::codec::{DecodeOptions, Decoded, FixedHeader, PacketType, ProtocolVersion, QoS};
use crate::session::error::SessionError;
use crate::session::event::Incoming;

impl<
    'b,
    const INFLIGHT: usize,
    const SUBS: usize,
    const FILTER_LEN: usize,
    const ALIASES: usize,
    const V311_QOS2_RUNS: usize,
    const EVENTS: usize,
> Session<'b, INFLIGHT, SUBS, FILTER_LEN, ALIASES, V311_QOS2_RUNS, EVENTS>
{
    /// `bytes` starts with a 3.1.1 packet of `size` bytes, more than the
    /// session accepts. A PUBLISH whose identifier (QoS 1/2) is in `bytes`
    /// is acknowledged and reported as [`Incoming::Skipped`]; anything else
    /// gives `None` (the caller closes the link). Backpressure when the
    /// acknowledgement has no room yet.
    pub(super) fn skip_oversized_publish<'a>(
        &mut self,
        bytes: &'a [u8],
        size: usize,
    ) -> Result<Option<Incoming<'a>>, SessionError> {
        let opts = DecodeOptions::new(ProtocolVersion::V311).with_max_packet_size(u32::MAX);
        let Ok(Decoded::Complete { value: header, .. }) = FixedHeader::decode(bytes, &opts) else {
            return Ok(None);
        };
        if header.packet_type != PacketType::Publish {
            return Ok(None);
        }
        let qos = match (header.flags >> 1) & 0b11 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let body = bytes.get(usize::from(header.header_len)..).unwrap_or(&[]);
        let topic_len = match body {
            [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => return Ok(None),
        };
        let topic_bytes = body.get(2..2 + topic_len);
        let topic = topic_bytes.and_then(|t| core::str::from_utf8(t).ok());
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            match body.get(2 + topic_len..2 + topic_len + 2) {
                Some(&[hi, lo]) if u16::from_be_bytes([hi, lo]) != 0 => {
                    Some(u16::from_be_bytes([hi, lo]))
                }
                // The identifier is not in what arrived: it cannot be
                // acknowledged.
                _ => return Ok(None),
            }
        };
        if self.control.is_full() || self.control.len() + 2 > super::CONTROL_QUEUE_LEN {
            return Ok(Some(Incoming::Backpressure));
        }
        let mut duplicate = false;
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                let _ = self.control.push_back(Control::Puback(id));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // Held until PUBREL like any inbound QoS 2 message, so a
                // redelivery (same topic, same size) is marked a duplicate.
                let fingerprint = skipped_fingerprint(topic.unwrap_or(""), size);
                match self.receive_qos2(id, fingerprint, header.flags & 0x08 != 0) {
                    Ok(new) => duplicate = !new,
                    Err(v) => {
                        self.fail(v.reason_code());
                        return Err(v.into());
                    }
                }
                let _ = self.control.push_back(Control::Pubrec(id));
            }
            _ => {}
        }
        Ok(Some(Incoming::Skipped {
            len: size,
            topic,
            qos,
            duplicate,
        }))
    }
}

/// The fingerprint a skipped QoS 2 message is held under: its topic and
/// its length (the payload is never seen). A different message under the
/// same held id almost always differs in one of the two.
fn skipped_fingerprint(topic: &str, size: usize) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    topic
        .as_bytes()
        .iter()
        .chain(&[0xFF])
        .chain(&(size as u64).to_be_bytes())
        .fold(OFFSET, |h, &b| (h ^ u32::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::boxed::Box;

    use crate::codec::QoS;
    #[cfg(feature = "v5")]
    use crate::codec::{DecodeOptions, Decoded, Packet, ProtocolVersion, ReasonCode};
    use crate::session::{Incoming, ProtocolChoice, Session, SessionConfig};
    use crate::time::Instant;

    type S = Session<'static, 4, 2, 64, 0>;

    /// A session up over `protocol`, with a 64-byte receive buffer.
    fn up(protocol: ProtocolChoice, outbox: &'static mut [u8]) -> (S, [u8; 256], usize) {
        let mut s = S::new(
            SessionConfig {
                protocol,
                ..SessionConfig::new("small")
            },
            outbox,
        );
        s.set_receive_capacity(64);
        s.handle_connected(Instant::ZERO).unwrap();
        let mut connect = [0u8; 256];
        let n = s
            .poll_transmit(Instant::ZERO, &mut connect)
            .unwrap()
            .unwrap();
        let connack: &[u8] = if protocol == ProtocolChoice::V311 {
            &[0x20, 2, 0, 0]
        } else {
            &[0x20, 3, 0, 0, 0]
        };
        assert!(matches!(
            s.handle_incoming(connack, Instant::ZERO),
            Ok(Incoming::Packet { .. })
        ));
        assert!(s.is_connected());
        (s, connect, n)
    }

    /// The start of a 3.1.1 PUBLISH of `remaining` bytes after its header
    /// (a two-byte remaining length), topic `a/b`, packet id 7 for QoS > 0.
    fn publish_start(qos: u8, dup: bool, remaining: u16) -> [u8; 16] {
        let first = 0x30 | (qos << 1) | if dup { 0x08 } else { 0 };
        let rl = [(remaining & 0x7F) as u8 | 0x80, (remaining >> 7) as u8];
        [
            first, rl[0], rl[1], 0, 3, b'a', b'/', b'b', 0, 7, 1, 2, 3, 4, 5, 6,
        ]
    }

    fn sent(s: &mut S) -> [u8; 4] {
        let mut buf = [0u8; 4];
        assert_eq!(s.poll_transmit(Instant::ZERO, &mut buf), Ok(Some(4)));
        buf
    }

    #[test]
    fn mqtt_3_3_4_oversized_qos1_publish_is_acknowledged_and_skipped_on_311() {
        let (mut s, _, _) = up(ProtocolChoice::V311, Box::leak(Box::new([0u8; 512])));
        let bytes = publish_start(1, false, 1000);
        assert_eq!(
            s.handle_incoming(&bytes, Instant::ZERO),
            Ok(Incoming::Skipped {
                len: 1003,
                topic: Some("a/b"),
                qos: QoS::AtLeastOnce,
                duplicate: false,
            })
        );
        assert_eq!(sent(&mut s), [0x40, 2, 0, 7], "PUBACK for id 7");
        assert!(s.is_connected() && !s.wants_close());
    }

    #[test]
    fn mqtt_4_3_3_oversized_qos2_publish_is_held_until_pubrel_and_a_redelivery_is_a_duplicate() {
        let (mut s, _, _) = up(ProtocolChoice::V311, Box::leak(Box::new([0u8; 512])));
        let first = publish_start(2, false, 1000);
        assert!(matches!(
            s.handle_incoming(&first, Instant::ZERO),
            Ok(Incoming::Skipped {
                duplicate: false,
                qos: QoS::ExactlyOnce,
                ..
            })
        ));
        assert_eq!(sent(&mut s), [0x50, 2, 0, 7], "PUBREC for id 7");
        let again = publish_start(2, true, 1000);
        assert!(matches!(
            s.handle_incoming(&again, Instant::ZERO),
            Ok(Incoming::Skipped {
                duplicate: true,
                ..
            })
        ));
        assert_eq!(sent(&mut s), [0x50, 2, 0, 7]);
        // PUBREL releases the id: PUBCOMP.
        assert!(matches!(
            s.handle_incoming(&[0x62, 2, 0, 7], Instant::ZERO),
            Ok(Incoming::Packet { .. })
        ));
        assert_eq!(sent(&mut s), [0x70, 2, 0, 7]);
    }

    #[test]
    fn an_oversized_packet_that_is_not_a_publish_closes_the_link() {
        let (mut s, _, _) = up(ProtocolChoice::V311, Box::leak(Box::new([0u8; 512])));
        // A SUBACK of 1000 bytes.
        assert!(
            s.handle_incoming(&[0x90, 0xE8, 0x07, 0, 1], Instant::ZERO)
                .is_err()
        );
        assert!(s.wants_close());
    }

    #[cfg(feature = "v5")]
    #[test]
    fn mqtt5_3_1_2_11_4_connect_announces_the_receive_buffer_and_a_larger_packet_is_a_protocol_error()
     {
        let (mut s, connect, n) = up(ProtocolChoice::V5, Box::leak(Box::new([0u8; 512])));
        let opts = DecodeOptions::new(ProtocolVersion::V5);
        let Ok(Decoded::Complete {
            value: Packet::Connect(c),
            ..
        }) = Packet::decode(&connect[..n], &opts)
        else {
            panic!("CONNECT decodes");
        };
        assert_eq!(c.properties.maximum_packet_size(), Some(64));
        let bytes = publish_start(1, false, 1000);
        assert!(s.handle_incoming(&bytes, Instant::ZERO).is_err());
        let mut buf = [0u8; 8];
        let len = s.poll_transmit(Instant::ZERO, &mut buf).unwrap().unwrap();
        // DISCONNECT 0x95 Packet too large.
        assert_eq!(
            &buf[..3],
            &[0xE0, 1, ReasonCode::PACKET_TOO_LARGE.0][..len.min(3)]
        );
    }
}
