//! The outbox: queued and in-flight publish records in the byte buffer the
//! caller lends, in FIFO order.
//!
//! A record is a 20-byte header (length, token, store key, expiry,
//! packet id, state, QoS) followed by the PUBLISH as encoded for 5.0 at enqueue time (topic,
//! properties and payload; DUP and packet id are set again at transmit).
//! Records are kept back to back in `buf[head..head + used]`. Offsets
//! given out are relative to `head`, so removing a record moves the later
//! ones down by its length, as far as callers can tell, wherever it was.
//! Removing the first record (acknowledgements in order) only advances
//! `head`: O(1), nothing copied. Removing another one moves the shorter
//! side over the gap (the records before it up, or those after it down).
//! The free space before `head` is reclaimed lazily: the live records are
//! moved to the start of the buffer only when an append does not fit the
//! tail, and `head` goes back to 0 whenever the outbox empties. Capacity
//! accounting counts both parts as free.
//!
//! No index table (the outbox may hold 100 000 records and lends no room
//! for one), yet no lookup the session makes per packet walks the whole
//! backlog (issue 13): counters give the number of records, of records
//! holding a packet identifier and of durable ones in O(1); a lookup by
//! packet identifier walks only the prefix that holds identifiers (records
//! get theirs in FIFO order at transmit, so they sit near the front: the
//! window, plus the QoS 0 records between them), and stops once it has
//! passed every one; the newest record, the one the store's hold, persist
//! and release steps look up, is found from the end in O(1). Lookups by
//! token of older records (status queries) still walk.

use crate::codec::QoS;
use crate::codec::wire::{copy_prefix, move_within};

pub(crate) const HEADER_LEN: usize = 20;
/// [`RecordMeta::expires`] of a message with an expiry interval that has
/// not been stamped with the time yet.
pub(crate) const EXPIRY_UNSTAMPED: u32 = u32::MAX;
/// The state byte's bit for [`RecordMeta::notice`].
const NOTICE_BIT: u8 = 0x80;

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
    /// Queued but not to be sent yet: its durable copy is being written
    /// (see [`crate::store`]).
    Held = 4,
    /// A QoS 0 publish handed out for writing; kept until the driver
    /// confirms the write (then it completes) or the link ends (then it
    /// fails with `LinkLost`). Only with transmit confirmation on.
    Written = 5,
}

impl RecordState {
    /// Sent and waiting for the broker, or handed out for writing: a
    /// transmit pass passes over it.
    pub(crate) fn nothing_to_send(self) -> bool {
        matches!(self, Self::AwaitAck | Self::AwaitPubcomp | Self::Written)
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::AwaitAck,
            2 => Self::PubrelQueued,
            3 => Self::AwaitPubcomp,
            4 => Self::Held,
            5 => Self::Written,
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
    /// The key of its durable copy in the store; 0: none.
    pub(crate) key: u32,
    /// Message expiry: 0 none; [`EXPIRY_UNSTAMPED`] it has a Message
    /// Expiry Interval but the session has not seen the time since it was
    /// queued; else the second (of the session's clock) it lapses, plus 1.
    pub(crate) expires: u32,
    /// 0 while no packet identifier is assigned.
    pub(crate) packet_id: u16,
    pub(crate) state: RecordState,
    pub(crate) qos: QoS,
    /// A QoS 2 publish sent on a session the broker lost: its
    /// [`SessionLostPolicy`](super::SessionLostPolicy) is still to be
    /// applied and reported. Bit 7 of the state byte.
    pub(crate) notice: bool,
}

/// Bytes the test-only counters add to an outbox (left out of the memory
/// budget, which is for the real build).
#[cfg(test)]
pub(crate) const TEST_COUNTER_BYTES: usize =
    core::mem::size_of::<core::cell::Cell<u64>>() + core::mem::size_of::<u64>();

pub(crate) struct Outbox<'b> {
    buf: &'b mut [u8],
    /// Where the first record starts in `buf`.
    head: usize,
    /// Bytes of records from `head` on.
    used: usize,
    /// Records in the outbox (u32: the counters cost a fleet device's
    /// RAM; a record takes at least 20 bytes, so 2³² of them never fit).
    count: u32,
    /// Records holding a packet identifier (non-zero).
    with_id: u32,
    /// Records with a store key (durable).
    keyed: u32,
    /// Token and total length of the last record, while it is known (a
    /// removal of the last record forgets it; token 0 is none).
    last_token: u32,
    last_len: u32,
    /// The records in `0..sent` have nothing to send (sent and waiting,
    /// or a QoS 0 publish handed out): the transmit walk starts here
    /// (issue 13: walking every in-flight record per packet sent cost
    /// about 700 instructions per message). Kept by `write_meta` (a
    /// record before it becoming sendable moves it back) and `remove`.
    sent: u32,
    /// Record headers read so far: the tests' measure of lookup cost.
    #[cfg(test)]
    pub(crate) reads: core::cell::Cell<u64>,
    /// Bytes moved so far by compaction and removals.
    #[cfg(test)]
    pub(crate) moved: u64,
}

impl<'b> Outbox<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Self {
            buf,
            head: 0,
            used: 0,
            count: 0,
            with_id: 0,
            keyed: 0,
            last_token: 0,
            last_len: 0,
            sent: 0,
            #[cfg(test)]
            reads: core::cell::Cell::new(0),
            #[cfg(test)]
            moved: 0,
        }
    }

    /// The records' bytes, from `head`: what offsets index.
    fn live(&self) -> &[u8] {
        self.buf
            .get(self.head..self.head.saturating_add(self.used))
            .unwrap_or(&[])
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

    /// Records in the outbox, in O(1).
    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// Records holding a packet identifier, in O(1).
    pub(crate) fn with_packet_id(&self) -> usize {
        self.with_id as usize
    }

    /// Records with a store key, in O(1).
    pub(crate) fn durable(&self) -> usize {
        self.keyed as usize
    }

    /// Keeps the counters right when the header at `off` changes from
    /// `old` to `new`.
    fn recount(&mut self, old: &RecordMeta, new: &RecordMeta) {
        match (old.packet_id != 0, new.packet_id != 0) {
            (false, true) => self.with_id = self.with_id.saturating_add(1),
            (true, false) => self.with_id = self.with_id.saturating_sub(1),
            _ => {}
        }
        match (old.key != 0, new.key != 0) {
            (false, true) => self.keyed = self.keyed.saturating_add(1),
            (true, false) => self.keyed = self.keyed.saturating_sub(1),
            _ => {}
        }
    }

    pub(crate) fn meta(&self, off: usize) -> Option<RecordMeta> {
        #[cfg(test)]
        self.reads.set(self.reads.get() + 1);
        let h: &[u8; HEADER_LEN] = self.live().get(off..)?.first_chunk()?;
        let [
            l0,
            l1,
            l2,
            l3,
            t0,
            t1,
            t2,
            t3,
            k0,
            k1,
            k2,
            k3,
            s0,
            s1,
            s2,
            s3,
            p0,
            p1,
            state,
            qos,
        ] = *h;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        if len < HEADER_LEN || off.checked_add(len)? > self.used {
            return None;
        }
        Some(RecordMeta {
            len,
            token: u32::from_le_bytes([t0, t1, t2, t3]),
            key: u32::from_le_bytes([k0, k1, k2, k3]),
            expires: u32::from_le_bytes([s0, s1, s2, s3]),
            packet_id: u16::from_le_bytes([p0, p1]),
            state: RecordState::from_u8(state & !NOTICE_BIT),
            qos: QoS::from_bits(qos).unwrap_or(QoS::AtMostOnce),
            notice: state & NOTICE_BIT != 0,
        })
    }

    fn write_meta(&mut self, off: usize, m: &RecordMeta) {
        if !m.state.nothing_to_send() && off < self.sent_prefix() {
            self.sent = u32::try_from(off).unwrap_or(0);
        }
        let len = u32::try_from(m.len).unwrap_or(u32::MAX).to_le_bytes();
        let token = m.token.to_le_bytes();
        let pid = m.packet_id.to_le_bytes();
        let key = m.key.to_le_bytes();
        let stamp = m.expires.to_le_bytes();
        let h = [
            len[0],
            len[1],
            len[2],
            len[3],
            token[0],
            token[1],
            token[2],
            token[3],
            key[0],
            key[1],
            key[2],
            key[3],
            stamp[0],
            stamp[1],
            stamp[2],
            stamp[3],
            pid[0],
            pid[1],
            m.state as u8 | if m.notice { NOTICE_BIT } else { 0 },
            m.qos as u8,
        ];
        let at = self.head.saturating_add(off);
        if let Some(dst) = self.buf.get_mut(at..) {
            copy_prefix(dst, &h);
        }
    }

    /// Updates packet id and state of the record at `off`.
    pub(crate) fn set(&mut self, off: usize, packet_id: u16, state: RecordState) {
        if let Some(old) = self.meta(off) {
            let m = RecordMeta {
                packet_id,
                state,
                ..old
            };
            self.recount(&old, &m);
            self.write_meta(off, &m);
        }
    }

    /// Sets or clears the session-loss notice of the record at `off`.
    pub(crate) fn set_notice(&mut self, off: usize, notice: bool) {
        if let Some(mut m) = self.meta(off) {
            m.notice = notice;
            self.write_meta(off, &m);
        }
    }

    /// Sets the expiry field of the record at `off`.
    pub(crate) fn set_expires(&mut self, off: usize, expires: u32) {
        if let Some(mut m) = self.meta(off) {
            m.expires = expires;
            self.write_meta(off, &m);
        }
    }

    /// Sets the store key of the record at `off`.
    pub(crate) fn set_key(&mut self, off: usize, key: u32) {
        if let Some(old) = self.meta(off) {
            let m = RecordMeta { key, ..old };
            self.recount(&old, &m);
            self.write_meta(off, &m);
        }
    }

    /// The encoded PUBLISH of the record at `off`.
    pub(crate) fn body(&self, off: usize) -> &[u8] {
        match self.meta(off) {
            Some(m) => self
                .live()
                .get(off + HEADER_LEN..off + m.len)
                .unwrap_or(&[]),
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
        let total = body_len.saturating_add(HEADER_LEN);
        if total > self.free() {
            return Ok(false);
        }
        if total <= self.tail_room() {
            return self.append(token, qos, RecordState::Queued, total, encode);
        }
        self.push_gathered(token, qos, RecordState::Queued, |dst| {
            let dst = dst.get_mut(..body_len).unwrap_or(&mut []);
            encode(dst).map(|_| Some(body_len))
        })
    }

    /// Appends a record of `total` bytes (header included) right after the
    /// last one; the caller checked it fits the tail.
    fn append<E>(
        &mut self,
        token: u32,
        qos: QoS,
        state: RecordState,
        total: usize,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<bool, E> {
        let tail = self.head.saturating_add(self.used);
        let Some(dst) = self
            .buf
            .get_mut(tail.saturating_add(HEADER_LEN)..tail.saturating_add(total))
        else {
            return Ok(false);
        };
        encode(dst)?;
        self.commit(self.used, total, token, qos, state);
        Ok(true)
    }

    /// Appends a record in `state` whose body `write` puts at the start of
    /// the free space it gets, returning the body's length, or `None` when
    /// it does not fit. Returns false if nothing was appended.
    ///
    /// `write` first gets the room after the last record; only if the body
    /// does not fit there is all free space gathered at the tail (moving
    /// every record, a cost that grows with the backlog) and `write` called
    /// again with all of it.
    pub(crate) fn push_with<E>(
        &mut self,
        token: u32,
        qos: QoS,
        state: RecordState,
        mut write: impl FnMut(&mut [u8]) -> Result<Option<usize>, E>,
    ) -> Result<bool, E> {
        if self.head > 0 && self.tail_room() > HEADER_LEN {
            let start = self.used;
            let at = self.head.saturating_add(start).saturating_add(HEADER_LEN);
            if let Some(dst) = self.buf.get_mut(at..) {
                let room = dst.len();
                if let Some(body_len) = write(dst)?.filter(|&n| n <= room) {
                    self.commit(start, body_len + HEADER_LEN, token, qos, state);
                    return Ok(true);
                }
            }
        }
        self.push_gathered(token, qos, state, write)
    }

    /// Appends a record in `state` whose body `write` puts at the start of
    /// all the free space, gathered after the last record.
    fn push_gathered<E>(
        &mut self,
        token: u32,
        qos: QoS,
        state: RecordState,
        write: impl FnOnce(&mut [u8]) -> Result<Option<usize>, E>,
    ) -> Result<bool, E> {
        self.compact();
        let start = self.used;
        let Some(dst) = self.buf.get_mut(start + HEADER_LEN..) else {
            return Ok(false);
        };
        let room = dst.len();
        let Some(body_len) = write(dst)?.filter(|&n| n <= room) else {
            return Ok(false);
        };
        self.commit(start, body_len + HEADER_LEN, token, qos, state);
        Ok(true)
    }

    /// Makes the `total` bytes written at `start` (the end of the live
    /// records) a new record: its header, and the live length.
    fn commit(&mut self, start: usize, total: usize, token: u32, qos: QoS, state: RecordState) {
        self.used = start.saturating_add(total);
        self.count = self.count.saturating_add(1);
        self.last_token = token;
        self.last_len = u32::try_from(total).unwrap_or(0);
        let meta = RecordMeta {
            len: total,
            token,
            key: 0,
            expires: 0,
            packet_id: 0,
            state,
            qos,
            notice: false,
        };
        self.write_meta(start, &meta);
    }

    /// Moves the records to the start of the buffer, so all free space is
    /// one tail.
    fn compact(&mut self) {
        if self.head > 0 {
            let end = self.head.saturating_add(self.used).min(self.buf.len());
            #[cfg(test)]
            {
                self.moved += (end - self.head) as u64;
            }
            move_within(self.buf, self.head..end, 0);
            self.head = 0;
        }
    }

    /// Free bytes right after the last record.
    fn tail_room(&self) -> usize {
        self.buf
            .len()
            .saturating_sub(self.head.saturating_add(self.used))
    }

    /// Where the transmit walk starts: every record before this offset
    /// has nothing to send.
    pub(crate) fn sent_prefix(&self) -> usize {
        (self.sent as usize).min(self.used)
    }

    /// The records before `off` (a record boundary the walk reached) have
    /// nothing to send.
    pub(crate) fn pass_sent(&mut self, off: usize) {
        if off <= self.used {
            self.sent = u32::try_from(off).unwrap_or(0);
        }
    }

    /// Removes the record at `off`; the later ones' offsets drop by its
    /// length. The first record is dropped by advancing `head`; another
    /// one by moving the shorter side over it.
    pub(crate) fn remove(&mut self, off: usize) {
        let Some(m) = self.meta(off) else {
            return;
        };
        self.recount(
            &m,
            &RecordMeta {
                packet_id: 0,
                key: 0,
                ..m
            },
        );
        self.count = self.count.saturating_sub(1);
        if off + m.len == self.used {
            self.last_token = 0;
        }
        if off < self.sent_prefix() {
            // It was in the prefix: the records after it move down.
            let len = u32::try_from(m.len).unwrap_or(u32::MAX);
            self.sent = self.sent.saturating_sub(len);
        }
        let (at, end) = (self.head + off, self.head + off + m.len);
        let live_end = self.head + self.used;
        if off < self.used - off - m.len {
            // Fewer bytes before it: move them up over the gap.
            #[cfg(test)]
            {
                self.moved += off as u64;
            }
            move_within(self.buf, self.head..at, self.head + m.len);
            self.head += m.len;
        } else {
            #[cfg(test)]
            {
                self.moved += (live_end - end) as u64;
            }
            move_within(self.buf, end..live_end, at);
        }
        self.used -= m.len;
        if self.used == 0 {
            self.head = 0;
            self.sent = 0;
        }
    }

    /// The offset of the record with this token, if any: O(1) for the
    /// newest record, a walk for the others.
    pub(crate) fn find_token(&self, token: u32) -> Option<(usize, RecordMeta)> {
        if token != 0
            && token == self.last_token
            && let Some(off) = self.used.checked_sub(self.last_len as usize)
            && let Some(m) = self.meta(off)
            && m.token == token
        {
            return Some((off, m));
        }
        self.offsets().find_map(|off| {
            let m = self.meta(off)?;
            (m.token == token).then_some((off, m))
        })
    }

    /// The offset of the record with this packet id, if any. Walks only
    /// until every record holding an identifier was passed.
    pub(crate) fn find_packet_id(&self, packet_id: u16) -> Option<(usize, RecordMeta)> {
        let mut left = self.with_id;
        let mut off = 0usize;
        while left > 0 {
            let m = self.meta(off)?;
            if m.packet_id != 0 {
                if m.packet_id == packet_id {
                    return Some((off, m));
                }
                left -= 1;
            }
            off += m.len;
        }
        None
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

#[cfg(test)]
mod tests {
    extern crate alloc;

    use alloc::vec::Vec;

    use super::*;

    /// Appends a record whose body is `body` (any bytes: the outbox does
    /// not read bodies).
    fn push(o: &mut Outbox<'_>, token: u32, body: &[u8]) -> bool {
        o.push(token, QoS::AtLeastOnce, body.len(), |dst| {
            dst.copy_from_slice(body);
            Ok::<_, ()>(body.len())
        })
        .unwrap()
    }

    fn tokens(o: &Outbox<'_>) -> Vec<u32> {
        o.offsets().map(|off| o.meta(off).unwrap().token).collect()
    }

    fn remove_token(o: &mut Outbox<'_>, token: u32) {
        let (off, _) = o.find_token(token).unwrap();
        o.remove(off);
    }

    /// The transmit walk's start: the prefix of records with nothing to
    /// send follows every change that makes one sendable again (a PUBREC,
    /// a reconnect's resend) and every removal before or after it.
    #[test]
    fn sent_prefix_follows_state_changes_and_removals() {
        let mut buf = [0u8; 512];
        let mut o = Outbox::new(&mut buf);
        for t in 1..=4 {
            assert!(push(&mut o, t, &[t as u8; 10]));
        }
        let offs: Vec<usize> = o.offsets().collect();
        assert_eq!(o.sent_prefix(), 0);
        for (i, &off) in offs.iter().enumerate() {
            o.set(off, i as u16 + 1, RecordState::AwaitAck);
        }
        o.pass_sent(o.used());
        assert_eq!(o.sent_prefix(), o.used());
        // PUBREC for the third: its PUBREL is due, the walk starts there.
        o.set(offs[2], 3, RecordState::PubrelQueued);
        assert_eq!(o.sent_prefix(), offs[2]);
        // A later record turning sendable does not move it forward.
        o.set(offs[3], 4, RecordState::Queued);
        assert_eq!(o.sent_prefix(), offs[2]);
        // Removing a record inside the prefix moves it down by its length.
        remove_token(&mut o, 1);
        assert_eq!(o.sent_prefix(), offs[2] - offs[1]);
        assert_eq!(o.meta(o.sent_prefix()).unwrap().token, 3);
        // Removing one after it leaves it.
        remove_token(&mut o, 4);
        assert_eq!(o.meta(o.sent_prefix()).unwrap().token, 3);
        // A reconnect queues the first again: back to the start.
        o.set(0, 2, RecordState::Queued);
        assert_eq!(o.sent_prefix(), 0);
        // Emptied, then refilled: the new records are all walked.
        o.pass_sent(o.used());
        remove_token(&mut o, 2);
        remove_token(&mut o, 3);
        assert_eq!(o.sent_prefix(), 0);
        assert!(push(&mut o, 5, &[5; 10]));
        assert_eq!(o.sent_prefix(), 0);
        assert_eq!(o.meta(0).unwrap().state, RecordState::Queued);
    }

    #[test]
    fn removing_the_first_record_advances_the_head_without_moving_the_rest() {
        let mut buf = [0u8; 256];
        let mut o = Outbox::new(&mut buf);
        for t in 1..=4 {
            assert!(push(&mut o, t, &[t as u8; 10]));
        }
        remove_token(&mut o, 1);
        assert_eq!(o.head, 30, "the head moved over the first record");
        assert_eq!(tokens(&o), [2, 3, 4]);
        assert_eq!(o.body(0), &[2u8; 10]);
        assert_eq!(o.used(), 90);
        assert_eq!(o.free(), 256 - 90);
        // The next record is now at offset 0, as the session's scans expect.
        assert_eq!(o.meta(0).unwrap().token, 2);
    }

    #[test]
    fn removal_out_of_order_keeps_fifo_order_and_bodies() {
        let mut buf = [0u8; 512];
        let mut o = Outbox::new(&mut buf);
        for t in 1..=6 {
            assert!(push(&mut o, t, &[t as u8; 7]));
        }
        // Near the front (the prefix moves up) and near the back (the
        // suffix moves down).
        remove_token(&mut o, 2);
        remove_token(&mut o, 5);
        assert_eq!(tokens(&o), [1, 3, 4, 6]);
        for t in [1u32, 3, 4, 6] {
            let (off, m) = o.find_token(t).unwrap();
            assert_eq!(m.len, HEADER_LEN + 7);
            assert_eq!(o.body(off), &[t as u8; 7]);
        }
        // The removed record's successor takes its offset.
        let (off3, _) = o.find_token(3).unwrap();
        assert_eq!(off3, 27);
        assert_eq!(o.used(), 4 * 27);
    }

    #[test]
    fn space_before_the_head_is_reclaimed_when_an_append_needs_it() {
        let mut buf = [0u8; 100];
        let mut o = Outbox::new(&mut buf);
        // Three records of 30 bytes: 10 bytes left.
        for t in 1..=3 {
            assert!(push(&mut o, t, &[t as u8; 10]));
        }
        assert!(!push(&mut o, 9, &[9; 10]), "does not fit: 10 bytes free");
        remove_token(&mut o, 1);
        assert_eq!(o.free(), 40);
        // 30 bytes fit only once the head space is reclaimed.
        assert!(push(&mut o, 4, &[4; 10]));
        assert_eq!(o.head, 0, "compacted");
        assert_eq!(tokens(&o), [2, 3, 4]);
        assert_eq!(o.body(o.find_token(4).unwrap().0), &[4u8; 10]);
        assert_eq!(o.free(), 10);
        assert!(!push(&mut o, 5, &[5; 10]));
    }

    #[test]
    fn appends_use_the_tail_without_compacting_while_it_has_room() {
        let mut buf = [0u8; 200];
        let mut o = Outbox::new(&mut buf);
        assert!(push(&mut o, 1, &[1; 10]));
        assert!(push(&mut o, 2, &[2; 10]));
        remove_token(&mut o, 1);
        assert!(push(&mut o, 3, &[3; 10]));
        assert_eq!(o.head, 30, "not compacted: the tail had room");
        assert_eq!(tokens(&o), [2, 3]);
        assert_eq!(o.free(), 200 - 60);
    }

    #[test]
    fn an_emptied_outbox_starts_again_at_the_front() {
        let mut buf = [0u8; 64];
        let mut o = Outbox::new(&mut buf);
        assert!(push(&mut o, 1, &[1; 20]));
        remove_token(&mut o, 1);
        assert_eq!((o.head, o.used(), o.free()), (0, 0, 64));
        // All of the buffer is one record's room again.
        assert!(push(&mut o, 2, &[2; 44]));
        assert_eq!(tokens(&o), [2]);
    }

    /// Appends and removals (mostly of the first record, as in-order acks
    /// do, sometimes of another) against a plain list as the model: same
    /// records, same order, same bodies, same free space, every step.
    #[test]
    fn appends_and_removals_match_a_fifo_model() {
        let mut buf = [0u8; 600];
        let mut o = Outbox::new(&mut buf);
        let mut model: Vec<(u32, usize)> = Vec::new();
        let mut seed: u32 = 0x2545_f491;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut compacted = false;
        for token in 1..2_000u32 {
            let r = next();
            let len = (r % 40) as usize + 1;
            let body: Vec<u8> = (0..len).map(|i| (token as usize + i) as u8).collect();
            let fits = len + HEADER_LEN <= o.free();
            let head_before = o.head;
            assert_eq!(push(&mut o, token, &body), fits);
            if fits {
                model.push((token, len));
                compacted |= head_before > 0 && o.head == 0 && model.len() > 1;
            }
            // Remove about as often as we add, mostly the first record.
            while !model.is_empty() && next() % 3 != 0 {
                let at = if next() % 4 == 0 {
                    (next() as usize) % model.len()
                } else {
                    0
                };
                remove_token(&mut o, model.remove(at).0);
            }
            assert_eq!(tokens(&o), model.iter().map(|m| m.0).collect::<Vec<_>>());
            let used: usize = model.iter().map(|m| m.1 + HEADER_LEN).sum();
            assert_eq!(o.used(), used);
            assert_eq!(o.free(), 600 - used);
            for &(t, len) in &model {
                let (off, m) = o.find_token(t).unwrap();
                assert_eq!(m.len, len + HEADER_LEN);
                let want: Vec<u8> = (0..len).map(|i| (t as usize + i) as u8).collect();
                assert_eq!(o.body(off), want.as_slice());
            }
        }
        assert!(compacted, "the sequence reclaimed head space at least once");
    }

    #[test]
    fn push_with_gets_all_free_space_after_head_removals() {
        let mut buf = [0u8; 100];
        let mut o = Outbox::new(&mut buf);
        for t in 1..=3 {
            assert!(push(&mut o, t, &[t as u8; 10]));
        }
        remove_token(&mut o, 1);
        let mut room = 0;
        let pushed = o
            .push_with(7, QoS::AtMostOnce, RecordState::Queued, |dst| {
                room = dst.len();
                dst.fill(7);
                Ok::<_, ()>(Some(dst.len()))
            })
            .unwrap();
        assert!(pushed);
        assert_eq!(room, 40 - HEADER_LEN);
        assert_eq!(tokens(&o), [2, 3, 7]);
        assert_eq!(o.free(), 0);
    }

    #[test]
    fn push_with_writes_into_the_tail_without_moving_records_and_gathers_only_if_needed() {
        let mut buf = [0u8; 200];
        let mut o = Outbox::new(&mut buf);
        for t in 1..=3 {
            assert!(push(&mut o, t, &[t as u8; 10]));
        }
        remove_token(&mut o, 1);
        // 110 bytes after the last record, 140 free in all.
        let mut rooms = Vec::new();
        assert!(
            o.push_with(7, QoS::AtMostOnce, RecordState::Queued, |dst| {
                rooms.push(dst.len());
                dst[..5].fill(7);
                Ok::<_, ()>(Some(5))
            })
            .unwrap()
        );
        assert_eq!(rooms, [110 - HEADER_LEN], "one try, in the tail");
        assert_eq!(o.head, 30, "nothing moved");
        // A body larger than the tail gets a second try with all the room.
        let mut rooms = Vec::new();
        assert!(
            o.push_with(8, QoS::AtMostOnce, RecordState::Queued, |dst| {
                rooms.push(dst.len());
                (dst.len() >= 90)
                    .then(|| {
                        dst[..90].fill(8);
                        90
                    })
                    .map_or(Ok::<_, ()>(None), |n| Ok(Some(n)))
            })
            .unwrap()
        );
        assert_eq!(rooms, [85 - HEADER_LEN, 115 - HEADER_LEN]);
        assert_eq!(tokens(&o), [2, 3, 7, 8]);
        assert_eq!(o.len(), 4);
        assert_eq!(o.body(o.find_token(8).unwrap().0), &[8u8; 90][..]);
        assert_eq!(o.body(o.find_token(2).unwrap().0), &[2u8; 10][..]);
    }

    #[test]
    fn counters_follow_pushes_identifiers_keys_and_removals() {
        let mut buf = [0u8; 400];
        let mut o = Outbox::new(&mut buf);
        for t in 1..=5 {
            assert!(push(&mut o, t, &[0; 8]));
        }
        assert_eq!((o.len(), o.with_packet_id(), o.durable()), (5, 0, 0));
        let off = |o: &Outbox<'_>, t| o.find_token(t).unwrap().0;
        o.set(off(&o, 2), 11, RecordState::AwaitAck);
        o.set(off(&o, 4), 12, RecordState::AwaitAck);
        o.set_key(off(&o, 4), 9);
        assert_eq!((o.with_packet_id(), o.durable()), (2, 1));
        assert_eq!(o.find_packet_id(12).map(|(_, m)| m.token), Some(4));
        assert_eq!(o.find_packet_id(13), None);
        o.set(off(&o, 2), 0, RecordState::Queued);
        assert_eq!(o.with_packet_id(), 1);
        remove_token(&mut o, 4);
        assert_eq!((o.len(), o.with_packet_id(), o.durable()), (4, 0, 0));
        // The newest record is found from the end; after its removal the
        // walk finds the others.
        assert_eq!(o.find_token(5).map(|(_, m)| m.token), Some(5));
        remove_token(&mut o, 5);
        assert_eq!(o.find_token(3).map(|(_, m)| m.token), Some(3));
        assert_eq!(o.find_token(5), None);
    }
}
