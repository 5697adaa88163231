//! The outbox: queued and in-flight publish records in the byte buffer the
//! caller lends, in FIFO order.
//!
//! A record is a 12-byte header (length, token, packet id, state, QoS)
//! followed by the PUBLISH as encoded for 5.0 at enqueue time (topic,
//! properties and payload; DUP and packet id are set again at transmit).
//! Records are kept back to back from the start of the buffer; removing one
//! moves the later ones down (`copy_within`), so free space is always one
//! contiguous tail and acknowledgements may arrive in any order. No index
//! table: lookups walk the records, which are few (bounded by the window
//! and the buffer).

use crate::codec::QoS;

pub(crate) const HEADER_LEN: usize = 12;

/// Where a record is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordState {
    /// To be sent: as new (`packet_id == 0`) or again with DUP (non-zero).
    Queued = 0,
    /// Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitAck = 1,
    /// PUBREC received; PUBREL to be sent.
    PubrelQueued = 2,
    /// PUBREL sent; waiting for PUBCOMP.
    AwaitPubcomp = 3,
}

impl RecordState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::AwaitAck,
            2 => Self::PubrelQueued,
            3 => Self::AwaitPubcomp,
            _ => Self::Queued,
        }
    }
}

/// A record's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    /// Total length, header included.
    pub(crate) len: usize,
    pub(crate) token: u32,
    /// 0 while no packet identifier is assigned.
    pub(crate) packet_id: u16,
    pub(crate) state: RecordState,
    pub(crate) qos: QoS,
}

pub(crate) struct Outbox<'b> {
    buf: &'b mut [u8],
    used: usize,
}

impl<'b> Outbox<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, used: 0 }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn used(&self) -> usize {
        self.used
    }

    pub(crate) fn free(&self) -> usize {
        self.buf.len().saturating_sub(self.used)
    }

    pub(crate) fn meta(&self, off: usize) -> Option<RecordMeta> {
        let h: &[u8; HEADER_LEN] = self.buf.get(off..)?.first_chunk()?;
        let [l0, l1, l2, l3, t0, t1, t2, t3, p0, p1, state, qos] = *h;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        if len < HEADER_LEN || off.checked_add(len)? > self.used {
            return None;
        }
        Some(RecordMeta {
            len,
            token: u32::from_le_bytes([t0, t1, t2, t3]),
            packet_id: u16::from_le_bytes([p0, p1]),
            state: RecordState::from_u8(state),
            qos: QoS::from_bits(qos).unwrap_or(QoS::AtMostOnce),
        })
    }

    fn write_meta(&mut self, off: usize, m: &RecordMeta) {
        let len = u32::try_from(m.len).unwrap_or(u32::MAX).to_le_bytes();
        let token = m.token.to_le_bytes();
        let pid = m.packet_id.to_le_bytes();
        let h = [
            len[0],
            len[1],
            len[2],
            len[3],
            token[0],
            token[1],
            token[2],
            token[3],
            pid[0],
            pid[1],
            m.state as u8,
            m.qos as u8,
        ];
        if let Some(dst) = self.buf.get_mut(off..off.saturating_add(HEADER_LEN)) {
            dst.copy_from_slice(&h);
        }
    }

    /// Updates packet id and state of the record at `off`.
    pub(crate) fn set(&mut self, off: usize, packet_id: u16, state: RecordState) {
        if let Some(mut m) = self.meta(off) {
            m.packet_id = packet_id;
            m.state = state;
            self.write_meta(off, &m);
        }
    }

    /// The encoded PUBLISH of the record at `off`.
    pub(crate) fn body(&self, off: usize) -> &[u8] {
        match self.meta(off) {
            Some(m) => self.buf.get(off + HEADER_LEN..off + m.len).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Offsets of every record, in FIFO order.
    pub(crate) fn offsets(&self) -> OffsetIter<'_, 'b> {
        OffsetIter {
            outbox: self,
            off: 0,
        }
    }

    /// Appends a record whose body `encode` writes into the slice it gets
    /// (exactly `body_len` bytes). Returns false if it does not fit.
    pub(crate) fn push<E>(
        &mut self,
        token: u32,
        qos: QoS,
        body_len: usize,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<bool, E> {
        let Some(total) = body_len.checked_add(HEADER_LEN) else {
            return Ok(false);
        };
        if total > self.free() {
            return Ok(false);
        }
        let start = self.used;
        let Some(dst) = self.buf.get_mut(start + HEADER_LEN..start + total) else {
            return Ok(false);
        };
        encode(dst)?;
        self.used = start + total;
        let meta = RecordMeta {
            len: total,
            token,
            packet_id: 0,
            state: RecordState::Queued,
            qos,
        };
        self.write_meta(start, &meta);
        Ok(true)
    }

    /// Removes the record at `off`, moving the later ones down.
    pub(crate) fn remove(&mut self, off: usize) {
        if let Some(m) = self.meta(off) {
            let end = off + m.len;
            self.buf.copy_within(end..self.used, off);
            self.used -= m.len;
        }
    }

    /// The offset of the record with this packet id, if any.
    pub(crate) fn find_packet_id(&self, packet_id: u16) -> Option<(usize, RecordMeta)> {
        self.offsets().find_map(|off| {
            let m = self.meta(off)?;
            (m.packet_id == packet_id).then_some((off, m))
        })
    }
}

pub(crate) struct OffsetIter<'o, 'b> {
    outbox: &'o Outbox<'b>,
    off: usize,
}

impl Iterator for OffsetIter<'_, '_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let off = self.off;
        let m = self.outbox.meta(off)?;
        self.off = off + m.len;
        Some(off)
    }
}
