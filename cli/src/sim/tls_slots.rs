//! The simulated devices' TLS buffers: each device's transmit buffer and
//! full-record receive buffer (see `BufferSizes::tls_rx`), carved from one
//! anonymous memory map per run, one page-aligned slot per device.
//!
//! A TLS client must be able to take a full record (16,645 bytes), but the
//! records of a small MQTT exchange fill only the first few hundred bytes
//! of it. The operating system backs an anonymous map with memory only
//! where it is written, so a device's slot costs resident memory for the
//! pages its records and handshake actually reached (one page with
//! mosquitto's records, whose largest is the handshake's certificate
//! flight), while the whole record stays addressable: a broker that sends
//! a full record gets it received, and that device's slot then costs its
//! full size. Buffers from the heap would be zeroed on allocation and so
//! resident in full from the start. The transmit buffer comes first, so a
//! ClientHello and the handshake's flights share the slot's first page.
//!
//! The map asks for small pages (`MADV_NOHUGEPAGE`): with transparent
//! huge pages always on, a touched byte would otherwise back 2 MiB.
//!
//! The map lives for the run (the fleet is leaked once per run), as do
//! the devices; a slot is taken once per device and never returned.
//!
//! Not here: the other lent buffers (outbox, MQTT and WebSocket buffers),
//! which are used in full and stay in the device's heap block.

use core::cell::RefCell;

use memmap2::MmapMut;

/// The page size the slots are rounded to (x86-64 and aarch64 Linux use
/// 4 KiB; a larger page only makes slots share pages).
const PAGE: usize = 4096;

/// Per-device TLS buffers of one run.
pub(crate) struct TlsSlots {
    /// Bytes of one device's transmit buffer, at the start of its slot.
    tx: usize,
    /// Bytes of one device's receive buffer, after the transmit buffer.
    rx: usize,
    /// The slots not taken yet.
    free: RefCell<core::slice::ChunksExactMut<'static, u8>>,
    /// Where the map lies (to find it in `/proc/self/smaps`).
    range: core::ops::Range<usize>,
}

impl TlsSlots {
    /// Maps room for `devices` slots of `tx` + `rx` bytes, each rounded up
    /// to whole pages.
    pub(crate) fn new(devices: usize, tx: usize, rx: usize) -> std::io::Result<Self> {
        let slot = (tx + rx).div_ceil(PAGE).max(1) * PAGE;
        let map = MmapMut::map_anon(slot * devices.max(1))?;
        // With transparent huge pages always on, one byte written would
        // back 2 MiB: ask for small pages (best effort).
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::NoHugePage);
        let map: &'static mut [u8] = &mut Box::leak(Box::new(map))[..];
        let start = map.as_ptr() as usize;
        let range = start..start + map.len();
        Ok(Self {
            tx,
            rx,
            free: RefCell::new(map.chunks_exact_mut(slot)),
            range,
        })
    }

    /// The next device's transmit and receive buffers; `None` once every
    /// slot was taken.
    pub(crate) fn take(&self) -> Option<(&'static mut [u8], &'static mut [u8])> {
        let slot = self.free.borrow_mut().next()?;
        let (tx, rest) = slot.split_at_mut(self.tx);
        Some((tx, rest.get_mut(..self.rx)?))
    }

    /// Bytes of the map the kernel backs with memory now (the `Rss` of its
    /// areas in `/proc/self/smaps`): the pages the devices' records and
    /// handshakes reached. An area the kernel merged with a neighbour
    /// counts whole. `None` where there is no such file.
    pub(crate) fn resident_bytes(&self) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        let mut kib = 0u64;
        for line in smaps.lines() {
            let area = line
                .split_once(' ')
                .and_then(|(span, _)| span.split_once('-'))
                .and_then(|(lo, hi)| {
                    Some((
                        usize::from_str_radix(lo, 16).ok()?,
                        usize::from_str_radix(hi, 16).ok()?,
                    ))
                });
            if let Some((lo, hi)) = area {
                inside = lo < self.range.end && self.range.start < hi;
            } else if inside && let Some(rss) = line.strip_prefix("Rss:") {
                kib += rss
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()?;
            }
        }
        Some(kib * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_page_aligned_disjoint_and_run_out() {
        let slots = TlsSlots::new(3, 1536, 16_645).unwrap();
        let mut starts = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = slots.take().unwrap();
            assert_eq!((tx.len(), rx.len()), (1536, 16_645));
            assert!(tx.iter().chain(rx.iter()).all(|&b| b == 0));
            tx[0] = 1;
            rx[16_644] = 2;
            starts.push(tx.as_ptr() as usize);
        }
        assert!(starts.iter().all(|s| s % PAGE == 0), "{starts:?}");
        assert!(starts.windows(2).all(|w| w[1] - w[0] == 5 * PAGE));
        assert!(slots.take().is_none());
        // Written: the first and the last page of each slot (reading the
        // untouched ones above maps no memory to them).
        if let Some(resident) = slots.resident_bytes() {
            assert_eq!(resident, 6 * PAGE as u64);
        }
    }
}
