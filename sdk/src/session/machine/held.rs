//! What the session remembers of inbound QoS 2 messages it delivered and
//! has not seen the PUBREL of (MQTT 5.0 §4.3.3 method B, 3.1.1 §4.3.3):
//! [`HeldQos2`], a packet identifier with a fingerprint of the message, in
//! the `INFLIGHT` table; and, under 3.1.1 only, [`HeldRuns`], runs of
//! consecutive identifiers held beyond that table (see docs/session.md,
//! "Inbound QoS 2 under 3.1.1"). No allocation: both live in fixed tables.

use heapless::Vec;

/// An inbound QoS 2 message delivered and awaiting PUBREL: its packet
/// identifier and `inbound::message_fingerprint`, packed in 6 bytes (alignment 1,
/// so a table of them costs 6 bytes a slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldQos2([u8; 6]);

impl HeldQos2 {
    pub(crate) fn new(id: u16, fingerprint: u32) -> Self {
        let [a, b] = id.to_le_bytes();
        let [c, d, e, f] = fingerprint.to_le_bytes();
        Self([a, b, c, d, e, f])
    }

    pub(crate) fn id(self) -> u16 {
        let [a, b, ..] = self.0;
        u16::from_le_bytes([a, b])
    }

    pub(crate) fn fingerprint(self) -> u32 {
        let [_, _, c, d, e, f] = self.0;
        u32::from_le_bytes([c, d, e, f])
    }
}

/// Packet identifiers held as runs of consecutive values, `(first, last)`
/// inclusive, at most `N` runs. Brokers number their messages one after
/// the other and release them in order, so a burst of any length is one
/// run (4 bytes); identifiers out of order cost a run each.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeldRuns<const N: usize> {
    runs: Vec<(u16, u16), N>,
}

impl<const N: usize> HeldRuns<N> {
    pub(crate) const fn new() -> Self {
        Self { runs: Vec::new() }
    }

    pub(crate) fn contains(&self, id: u16) -> bool {
        self.runs
            .iter()
            .any(|&(first, last)| first <= id && id <= last)
    }

    /// Holds `id`. False if it needs a run of its own and all `N` are in
    /// use (nothing changed then).
    pub(crate) fn insert(&mut self, id: u16) -> bool {
        if self.contains(id) {
            return true;
        }
        let below = self
            .runs
            .iter()
            .position(|&(_, last)| last.checked_add(1) == Some(id));
        let above = self
            .runs
            .iter()
            .position(|&(first, _)| id.checked_add(1) == Some(first));
        match (below, above) {
            (Some(b), Some(a)) => {
                let last = self.runs.get(a).map_or(id, |r| r.1);
                if let Some(run) = self.runs.get_mut(b) {
                    run.1 = last;
                }
                self.runs.swap_remove(a);
                true
            }
            (Some(b), None) => {
                if let Some(run) = self.runs.get_mut(b) {
                    run.1 = id;
                }
                true
            }
            (None, Some(a)) => {
                if let Some(run) = self.runs.get_mut(a) {
                    run.0 = id;
                }
                true
            }
            (None, None) => self.runs.push((id, id)).is_ok(),
        }
    }

    /// Releases `id`; false if it was not held. Releasing from the middle
    /// of a run splits it; with no run free for the split, `id` stays held
    /// (see docs/session.md: a held identifier only suppresses a DUP=1
    /// PUBLISH, never a new message).
    pub(crate) fn remove(&mut self, id: u16) -> bool {
        let Some(i) = self
            .runs
            .iter()
            .position(|&(first, last)| first <= id && id <= last)
        else {
            return false;
        };
        let Some(&(first, last)) = self.runs.get(i) else {
            return false;
        };
        if first == last {
            self.runs.swap_remove(i);
        } else if id == first {
            if let Some(run) = self.runs.get_mut(i) {
                run.0 = first + 1;
            }
        } else if id == last {
            if let Some(run) = self.runs.get_mut(i) {
                run.1 = last - 1;
            }
        } else if self.runs.push((id + 1, last)).is_ok()
            && let Some(run) = self.runs.get_mut(i)
        {
            run.1 = id - 1;
        }
        true
    }

    pub(crate) fn clear(&mut self) {
        self.runs.clear();
    }

    /// How many runs are in use.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_in_order_is_one_run_and_in_order_releases_keep_it_one() {
        let mut h: HeldRuns<2> = HeldRuns::new();
        for id in 1..=200 {
            assert!(h.insert(id));
        }
        assert_eq!(h.runs(), 1);
        for id in 1..=199 {
            assert!(h.remove(id));
            assert!(!h.contains(id));
            assert!(h.contains(200));
        }
        assert!(h.remove(200));
        assert_eq!(h.runs(), 0);
        assert!(!h.remove(200));
    }

    #[test]
    fn runs_merge_split_and_refuse_a_new_run_when_full() {
        let mut h: HeldRuns<2> = HeldRuns::new();
        assert!(h.insert(10));
        assert!(h.insert(12));
        assert!(!h.insert(20), "a third run does not fit");
        assert!(!h.contains(20));
        assert!(h.insert(11), "joins 10 and 12");
        assert_eq!(h.runs(), 1);
        assert!(h.remove(11), "split");
        assert_eq!(h.runs(), 2);
        assert!(h.contains(10) && !h.contains(11) && h.contains(12));
        // A split with no run free keeps the identifier held.
        assert!(!h.insert(30));
        assert!(h.insert(13) && h.insert(14));
        assert!(h.remove(13));
        assert!(h.contains(13), "no run free: stays held");
        assert!(h.contains(12) && h.contains(14));
    }

    #[test]
    fn identifiers_at_the_ends_of_the_range() {
        let mut h: HeldRuns<2> = HeldRuns::new();
        assert!(h.insert(u16::MAX));
        assert!(h.insert(1));
        assert_eq!(h.runs(), 2, "no run wraps from 65535 to 1");
        assert!(h.remove(u16::MAX) && h.remove(1));
        assert_eq!(h.runs(), 0);
    }

    #[test]
    fn held_qos2_packs_identifier_and_fingerprint() {
        let h = HeldQos2::new(0xBEEF, 0x1234_5678);
        assert_eq!((h.id(), h.fingerprint()), (0xBEEF, 0x1234_5678));
        assert_eq!(core::mem::size_of::<HeldQos2>(), 6);
    }
}
