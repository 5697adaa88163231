//! [`FlashStore`]: the client's durable outbox (`embermq::store::Store`)
//! on NOR flash, through `embedded-storage-async` and sequential-storage's
//! map, without an allocator.
//!
//! Each QoS 1/2 record is one map item: its `u32` key (little-endian)
//! then the record bytes, with a CRC over both (sequential-storage skips
//! an item torn by a reset mid-write, so a half-written record is never
//! replayed). A removal marks every item with the key erased (the flash
//! must allow a word to be written twice, `MultiwriteNorFlash`: nRF NVMC,
//! esp-storage).
//!
//! Reclaiming space (issue 18 item 5): the map writes its pages as a ring
//! and keeps one page erased. When the page being written is full, the
//! next one becomes the write page and the page after that, the oldest,
//! is compacted: its live items are copied into the new write page, then
//! it is erased and becomes the spare. A record that stays (skipped at
//! replay, its restore or its removal failed) is copied forward this way
//! instead of stalling the ring, so `persist` fails as full only when the
//! live records do not fit the range less the spare page (and the unused
//! page tails: an item never spans two pages). A power cut in the copy
//! can leave a record twice; sequential-storage repairs the half-done
//! compaction (and an erase cut short) when the store is next used.
//!
//! Copies break the physical order, so [`replay`](Store::replay) does not
//! follow it: it scans the items once per record for the smallest key
//! above the last one it visited, then reads that key's newest item
//! (n + 1 scans of the range and n reads for n live records, once per
//! boot; no allocator, no sort buffer). Keys come out in increasing order
//! and each once.
//!
//! The map needs a work buffer besides the record being written, which
//! it may reuse while it compacts; the lent buffer is split in two (see
//! [`FlashStore::new`]).
//!
//! Not here: choosing the flash range (the board's linker script or
//! partition table reserves it) and wear levelling beyond
//! sequential-storage's page rotation.

use core::fmt;
use core::ops::Range;

use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use embermq::store::Store;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapConfigError, MapStorage};

/// Bytes of the key in front of each record.
const KEY_LEN: usize = 4;

/// No cache: every operation scans the few pages of the outbox range.
type NoCache = Cache<Uncached, Uncached, Uncached, u32>;

/// Why a [`FlashStore`] operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FlashStoreError<E> {
    /// The flash range is not whole pages, or fewer than two.
    Range(MapConfigError),
    /// A record does not fit the store's buffer (or a flash page).
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The longest record the buffer holds.
        capacity: usize,
    },
    /// sequential-storage failed: the flash driver's error, a full store,
    /// an item this store did not write, or corruption it could not
    /// repair.
    Storage(sequential_storage::Error<E>),
}

impl<E: fmt::Debug> fmt::Display for FlashStoreError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Range(e) => write!(f, "flash range unusable for the outbox: {e:?}"),
            Self::RecordTooLarge { len, capacity } => write!(
                f,
                "outbox record of {len} bytes exceeds the store's {capacity}-byte limit"
            ),
            Self::Storage(sequential_storage::Error::FullStorage) => {
                f.write_str("flash outbox is full")
            }
            Self::Storage(sequential_storage::Error::Storage { value, .. }) => {
                write!(f, "flash driver failed: {value:?}")
            }
            Self::Storage(e) => write!(f, "flash outbox failed: {e:?}"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for FlashStoreError<E> {}

impl<E> From<sequential_storage::Error<E>> for FlashStoreError<E> {
    fn from(e: sequential_storage::Error<E>) -> Self {
        Self::Storage(e)
    }
}

/// The outbox's QoS 1/2 records in a range of NOR flash.
pub struct FlashStore<'b, F: MultiwriteNorFlash> {
    map: MapStorage<u32, F, NoCache>,
    /// The record being persisted (`max_record_len` bytes).
    record: &'b mut [u8],
    /// sequential-storage's buffer: key and record of any item, padded to
    /// a word.
    work: &'b mut [u8],
}

impl<'b, F: MultiwriteNorFlash> FlashStore<'b, F> {
    /// sequential-storage's word: the larger of the read and write sizes.
    const WORD: usize = if F::READ_SIZE > F::WRITE_SIZE {
        F::READ_SIZE
    } else {
        F::WRITE_SIZE
    };

    /// A store in `range` of `flash` (whole erase pages, at least two:
    /// one is kept erased to compact into), using `buf` to assemble,
    /// read and copy items. `buf` is split in two: the record being
    /// written, and sequential-storage's work buffer (which it reuses
    /// while it compacts a page, so the record cannot live there). Lend
    /// at least twice the largest record (the client's outbox size at
    /// most) plus 4 bytes plus a word; [`max_record_len`](Self::max_record_len)
    /// says what a buffer holds. Existing records in the range are kept
    /// and replayed.
    pub fn new(
        flash: F,
        range: Range<u32>,
        buf: &'b mut [u8],
    ) -> Result<Self, FlashStoreError<F::Error>> {
        let config = MapConfig::try_new(range).map_err(FlashStoreError::Range)?;
        // The work half holds key + record padded to a word.
        let record_len =
            buf.len().saturating_sub(KEY_LEN + Self::WORD) / 2 / Self::WORD * Self::WORD;
        let (record, work) = buf.split_at_mut(record_len);
        Ok(Self {
            map: MapStorage::new(flash, config, Cache::new_uncached()),
            record,
            work,
        })
    }

    /// The flash back (e.g. to open the store again after a simulated
    /// reset).
    pub fn into_flash(self) -> F {
        self.map.destroy().0
    }

    /// The longest record this store takes.
    pub fn max_record_len(&self) -> usize {
        self.record.len()
    }

    /// The smallest key above `above` (any key if `None`) in flash.
    async fn next_key(
        &mut self,
        above: Option<u32>,
    ) -> Result<Option<u32>, FlashStoreError<F::Error>> {
        match self.scan_next_key(above).await {
            Err(FlashStoreError::Storage(sequential_storage::Error::Corrupted { .. })) => {
                // sequential-storage 8.0.2's `fetch_all_items` reports an
                // erase cut short (a page with its end marker but not its
                // start marker) without repairing it; `fetch_item` runs
                // the repair (finish the erase, redo a cut compaction).
                self.map.fetch_item::<&[u8]>(&mut *self.work, &0).await?;
                self.scan_next_key(above).await
            }
            other => other,
        }
    }

    async fn scan_next_key(
        &mut self,
        above: Option<u32>,
    ) -> Result<Option<u32>, FlashStoreError<F::Error>> {
        let mut next: Option<u32> = None;
        let mut items = self.map.fetch_all_items(&mut *self.work).await?;
        while let Some((key, _)) = items.next::<&[u8]>(&mut *self.work).await? {
            if above.is_none_or(|last| key > last) && next.is_none_or(|n| key < n) {
                next = Some(key);
            }
        }
        Ok(next)
    }
}

impl<F: MultiwriteNorFlash> Store for FlashStore<'_, F> {
    type Error = FlashStoreError<F::Error>;

    async fn replay<V: FnMut(u32, &[u8])>(&mut self, mut visit: V) -> Result<(), Self::Error> {
        let mut last = None;
        while let Some(key) = self.next_key(last).await? {
            // The newest item under the key (a copy left by a power cut
            // in a compaction is the same record).
            if let Some(record) = self.map.fetch_item::<&[u8]>(&mut *self.work, &key).await? {
                visit(key, record);
            }
            last = Some(key);
        }
        Ok(())
    }

    async fn persist<Fill: FnOnce(&mut [u8])>(
        &mut self,
        key: u32,
        len: usize,
        fill: Fill,
    ) -> Result<(), Self::Error> {
        let capacity = self.max_record_len();
        let record = self
            .record
            .get_mut(..len)
            .ok_or(FlashStoreError::RecordTooLarge { len, capacity })?;
        fill(record);
        let record: &[u8] = record;
        match self.map.store_item(&mut *self.work, &key, &record).await {
            Err(sequential_storage::Error::ItemTooBig) => {
                Err(FlashStoreError::RecordTooLarge { len, capacity })
            }
            other => Ok(other?),
        }
    }

    async fn remove(&mut self, key: u32) -> Result<(), Self::Error> {
        // Every item under the key, copies included.
        Ok(self.map.remove_item(&mut *self.work, &key).await?)
    }
}

#[cfg(test)]
mod crash_tests;

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use embassy_futures::block_on;
    use embedded_storage_async::nor_flash::{
        ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
    };

    const PAGE: usize = 4096;
    const PAGES: usize = 4;

    /// A fault injector, since no real flash can be cut at a chosen byte on
    /// the host: NOR flash in RAM (erase sets 0xFF, a write can only clear
    /// bits, so writing a word twice ANDs it, as on nRF NVMC and ESP SPI
    /// flash), with an optional power cut after a number of written bytes.
    struct MemFlash {
        bytes: Vec<u8>,
        /// Bytes a write may still program before the power goes.
        power_left: Option<usize>,
    }

    #[derive(Debug, PartialEq)]
    struct PowerCut;

    impl NorFlashError for PowerCut {
        fn kind(&self) -> NorFlashErrorKind {
            NorFlashErrorKind::Other
        }
    }

    impl MemFlash {
        fn new() -> Self {
            Self {
                bytes: vec![0xFF; PAGE * PAGES],
                power_left: None,
            }
        }
    }

    impl ErrorType for MemFlash {
        type Error = PowerCut;
    }

    impl ReadNorFlash for MemFlash {
        const READ_SIZE: usize = 4;

        async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), PowerCut> {
            let start = offset as usize;
            bytes.copy_from_slice(&self.bytes[start..start + bytes.len()]);
            Ok(())
        }

        fn capacity(&self) -> usize {
            self.bytes.len()
        }
    }

    impl NorFlash for MemFlash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = PAGE;

        async fn erase(&mut self, from: u32, to: u32) -> Result<(), PowerCut> {
            self.bytes[from as usize..to as usize].fill(0xFF);
            Ok(())
        }

        async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), PowerCut> {
            for (i, byte) in bytes.iter().enumerate() {
                if let Some(left) = self.power_left.as_mut() {
                    if *left == 0 {
                        return Err(PowerCut);
                    }
                    *left -= 1;
                }
                self.bytes[offset as usize + i] &= byte;
            }
            Ok(())
        }
    }

    impl MultiwriteNorFlash for MemFlash {}

    fn open(flash: MemFlash, buf: &mut [u8]) -> FlashStore<'_, MemFlash> {
        FlashStore::new(flash, 0..(PAGE * PAGES) as u32, buf).unwrap()
    }

    fn replayed(store: &mut FlashStore<'_, MemFlash>) -> Vec<(u32, Vec<u8>)> {
        let mut seen = Vec::new();
        block_on(store.replay(|key, record| seen.push((key, record.to_vec())))).unwrap();
        seen
    }

    fn persist(store: &mut FlashStore<'_, MemFlash>, key: u32, record: &[u8]) {
        block_on(store.persist(key, record.len(), |buf| buf.copy_from_slice(record))).unwrap();
    }

    #[test]
    fn records_survive_a_reset_in_key_order_without_the_removed_ones() {
        let mut buf = [0u8; 512];
        let mut store = open(MemFlash::new(), &mut buf);
        persist(&mut store, 1, b"first");
        persist(&mut store, 2, b"second");
        persist(&mut store, 3, b"third");
        block_on(store.remove(2)).unwrap();
        // A reset: the store (and all RAM state) is gone; the flash stays.
        let flash = store.into_flash();
        let mut buf = [0u8; 512];
        let mut store = open(flash, &mut buf);
        assert_eq!(
            replayed(&mut store),
            [(1, b"first".to_vec()), (3, b"third".to_vec())]
        );
        // Removing an unknown key is not an error (already gone).
        block_on(store.remove(99)).unwrap();
        assert_eq!(replayed(&mut store).len(), 2);
    }

    #[test]
    fn a_record_torn_by_a_reset_is_not_replayed_and_the_store_goes_on() {
        let mut buf = [0u8; 512];
        let mut store = open(MemFlash::new(), &mut buf);
        persist(&mut store, 1, b"complete");
        let mut flash = store.into_flash();
        flash.power_left = Some(10);
        let mut buf = [0u8; 512];
        let mut store = open(flash, &mut buf);
        let torn = block_on(store.persist(2, 200, |b| b.fill(0x5A)));
        assert!(matches!(torn, Err(FlashStoreError::Storage(_))), "{torn:?}");
        // Power back, reset.
        let mut flash = store.into_flash();
        flash.power_left = None;
        let mut buf = [0u8; 512];
        let mut store = open(flash, &mut buf);
        assert_eq!(replayed(&mut store), [(1, b"complete".to_vec())]);
        persist(&mut store, 3, b"after");
        assert_eq!(
            replayed(&mut store),
            [(1, b"complete".to_vec()), (3, b"after".to_vec())]
        );
    }

    #[test]
    fn a_record_larger_than_the_buffer_is_refused_not_truncated() {
        // (130 - 4 - 4) / 2 = 61, down to a word: 60.
        let mut buf = [0u8; 130];
        let mut store = open(MemFlash::new(), &mut buf);
        let mut filled = false;
        let result = block_on(store.persist(1, 61, |_| filled = true));
        assert!(matches!(
            result,
            Err(FlashStoreError::RecordTooLarge {
                len: 61,
                capacity: 60
            })
        ));
        assert!(!filled);
        assert!(replayed(&mut store).is_empty());
    }

    #[test]
    fn a_buffer_of_twice_a_record_plus_key_and_word_takes_that_record() {
        // What `Link` lends: 2 × 1024 + 4 + 4.
        let mut buf = [0u8; 2056];
        let mut store = open(MemFlash::new(), &mut buf);
        assert_eq!(store.max_record_len(), 1024);
        let record = [0x3Cu8; 1024];
        persist(&mut store, 7, &record);
        assert_eq!(replayed(&mut store), [(7, record.to_vec())]);
    }

    #[test]
    fn a_key_in_flash_twice_is_replayed_once_with_its_newest_record() {
        // As a power cut between a compaction's copy and its erase leaves
        // it (there the bytes are the same), or a persist cancelled after
        // its write whose key was used again.
        let mut buf = [0u8; 512];
        let mut store = open(MemFlash::new(), &mut buf);
        persist(&mut store, 4, b"four");
        persist(&mut store, 5, b"older");
        persist(&mut store, 5, b"newer");
        persist(&mut store, 6, b"six");
        let flash = store.into_flash();
        let mut buf = [0u8; 512];
        let mut store = open(flash, &mut buf);
        assert_eq!(
            replayed(&mut store),
            [
                (4, b"four".to_vec()),
                (5, b"newer".to_vec()),
                (6, b"six".to_vec())
            ]
        );
        // One removal forgets every copy.
        block_on(store.remove(5)).unwrap();
        assert_eq!(replayed(&mut store).len(), 2);
    }

    #[test]
    fn a_full_flash_fails_the_persist_and_removals_make_room_again() {
        let mut buf = [0u8; 2100];
        let mut store = open(MemFlash::new(), &mut buf);
        let record = [0xA5u8; 1000];
        let mut key = 0;
        let full = loop {
            key += 1;
            let result = block_on(store.persist(key, record.len(), |b| b.copy_from_slice(&record)));
            if let Err(e) = result {
                break e;
            }
            assert!(key < 100, "never full");
        };
        assert!(
            matches!(
                full,
                FlashStoreError::Storage(sequential_storage::Error::FullStorage)
            ),
            "{full:?}"
        );
        let stored = replayed(&mut store);
        assert_eq!(
            stored.len(),
            key as usize - 1,
            "the refused record is not kept"
        );
        // Acknowledge everything, then the pages are reused, many times over.
        for (k, _) in stored {
            block_on(store.remove(k)).unwrap();
        }
        for _ in 0..40 {
            key += 1;
            persist(&mut store, key, &record);
            block_on(store.remove(key)).unwrap();
        }
        assert!(replayed(&mut store).is_empty());
    }
}
