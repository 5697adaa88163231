//! [`FlashStore`]: the client's durable outbox (`embermq::store::Store`)
//! on NOR flash, through `embedded-storage-async` and sequential-storage's
//! queue, without an allocator.
//!
//! Each QoS 1/2 record is one queue item: its `u32` key (little-endian)
//! then the record bytes. The queue keeps items in the order they were
//! pushed, which is increasing key order (the client's keys only grow), so
//! [`replay`](Store::replay) is one pass from the oldest item. A removal
//! pops the item wherever it is in the queue (sequential-storage marks it
//! erased; acknowledgements come nearly in order, so it is usually the
//! head); a page whose items are all popped is reused. sequential-storage
//! writes a CRC with every item and skips one torn by a reset mid-write,
//! so a half-written record is never replayed.
//!
//! The flash must allow a word to be written twice (`MultiwriteNorFlash`:
//! nRF NVMC, esp-storage), which marking an item erased needs. A full queue
//! is an error on `persist` (the client then fails that publish), never an
//! overwrite of older records.
//!
//! Not here: choosing the flash range (the board's linker script or
//! partition table reserves it) and wear levelling beyond
//! sequential-storage's page rotation.

use core::fmt;
use core::ops::Range;

use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use embermq::store::Store;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::queue::{QueueConfig, QueueConfigError, QueueStorage};

/// Bytes of the key in front of each record.
const KEY_LEN: usize = 4;

/// No cache: every operation scans the few pages of the outbox range.
type NoCache = Cache<Uncached, Uncached, Uncached>;

/// Why a [`FlashStore`] operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FlashStoreError<E> {
    /// The flash range is not whole pages, or too small.
    Range(QueueConfigError),
    /// A record does not fit the store's buffer (or a flash page).
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The longest record the buffer holds.
        capacity: usize,
    },
    /// An item in flash is shorter than a key: not written by this store.
    ForeignItem,
    /// sequential-storage failed: the flash driver's error, a full queue,
    /// or corruption it could not repair.
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
            Self::ForeignItem => f.write_str("flash outbox holds an item this store did not write"),
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
    queue: QueueStorage<F, NoCache>,
    buf: &'b mut [u8],
}

impl<'b, F: MultiwriteNorFlash> FlashStore<'b, F> {
    /// A store in `range` of `flash` (whole erase pages, at least one),
    /// using `buf` to assemble and read items: lend at least the largest
    /// record (the client's outbox size at most) plus 4 bytes, rounded up
    /// to the flash's word size. Existing records in the range are kept
    /// and replayed.
    pub fn new(
        flash: F,
        range: Range<u32>,
        buf: &'b mut [u8],
    ) -> Result<Self, FlashStoreError<F::Error>> {
        let config = QueueConfig::try_new(range).map_err(FlashStoreError::Range)?;
        Ok(Self {
            queue: QueueStorage::new(flash, config, Cache::new_uncached()),
            buf,
        })
    }

    /// The flash back (e.g. to open the store again after a simulated
    /// reset).
    pub fn into_flash(self) -> F {
        self.queue.destroy().0
    }

    /// The longest record this store takes.
    pub fn max_record_len(&self) -> usize {
        self.buf.len().saturating_sub(KEY_LEN)
    }
}

impl<F: MultiwriteNorFlash> Store for FlashStore<'_, F> {
    type Error = FlashStoreError<F::Error>;

    async fn replay<V: FnMut(u32, &[u8])>(&mut self, mut visit: V) -> Result<(), Self::Error> {
        let mut items = self.queue.iter().await?;
        while let Some(item) = items.next(&mut *self.buf).await? {
            let (key, record) = item
                .split_first_chunk::<KEY_LEN>()
                .ok_or(FlashStoreError::ForeignItem)?;
            visit(u32::from_le_bytes(*key), record);
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
        let item = KEY_LEN
            .checked_add(len)
            .and_then(|total| self.buf.get_mut(..total))
            .ok_or(FlashStoreError::RecordTooLarge { len, capacity })?;
        let (key_bytes, record) = item.split_at_mut(KEY_LEN);
        key_bytes.copy_from_slice(&key.to_le_bytes());
        fill(record);
        match self.queue.push(item, false).await {
            Err(sequential_storage::Error::ItemTooBig) => {
                Err(FlashStoreError::RecordTooLarge { len, capacity })
            }
            other => Ok(other?),
        }
    }

    async fn remove(&mut self, key: u32) -> Result<(), Self::Error> {
        let wanted = key.to_le_bytes();
        let mut items = self.queue.iter().await?;
        while let Some(item) = items.next(&mut *self.buf).await? {
            if item.first_chunk::<KEY_LEN>() == Some(&wanted) {
                item.pop().await?;
                break;
            }
        }
        Ok(())
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
        let mut buf = [0u8; 64];
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
    fn a_full_flash_fails_the_persist_and_removals_make_room_again() {
        let mut buf = [0u8; 1100];
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
