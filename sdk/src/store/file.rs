//! [`FileStore`]: the outbox's durable copy in an append-only log file on a
//! host (feature `std`).
//!
//! The entry format (a magic, a header with its own CRC-32, the record, a
//! CRC-32 over the entry) is in the `log` module. A persist is written and
//! `fsync`ed (`sync_data`) before it returns; a removal is only written (a
//! removal lost in a power cut makes the message go out again, never
//! lost; a `kill -9` loses nothing the kernel already has). The
//! directory is fsynced at every open, so a new log's name is durable
//! before the first persist reports success.
//!
//! Opening reads the whole log. An entry that fails its checksum is
//! skipped, and only it is lost: the entries after it are read (a bad
//! header is resynchronised past by looking for the next good entry).
//! Bad bytes at the end with no good entry after them are a torn tail left
//! by a crash in the middle of a write: the file is truncated there, so
//! later appends follow the last good entry. [`FileStore::corrupt_entries`]
//! counts the entries skipped. A log in the first format (no magic) is
//! read up to its first bad entry and rewritten in the current format.
//!
//! When removed records dominate (the file is more than twice the live
//! records and above the compaction threshold) the live records are read
//! back, each checked against its CRC, written to `<log>.compact`, which
//! is fsynced, renamed over the log, and the directory fsynced. If any
//! step after the rename fails, the store is *failed*: every operation
//! returns [`FileStoreError::Failed`] until the log is opened again (the
//! open file may be the unlinked old log, so writes to it would be lost).
//!
//! An advisory lock on `<log>.lock` (`flock` on Unix, `LockFileEx` on
//! Windows) keeps a second `FileStore`, in this process or another, from
//! opening the same log: [`FileStoreError::Locked`]. The lock file is left
//! in place (removing it would race with the next opener).
//!
//! The I/O is synchronous std I/O inside the async methods: fine for a
//! host client (each call is one short write); it blocks the executor
//! thread for the duration of an fsync.
//!
//! What it does not do: no checksumming of reads beyond the CRCs (a
//! payload that embeds a well-formed log entry can be misread after its
//! own header is damaged, see `log`), no repair of a damaged entry, no
//! network file systems' lock semantics.

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::Store;
use super::fs::{StdFs, StoreFs};
use super::log::{self, Entry, Format, KIND_PUT, KIND_REMOVE, MAX_RECORD, entry_len};

/// Default compaction threshold in bytes.
const DEFAULT_COMPACT_AT: u64 = 64 * 1024;

/// Why a [`FileStore`] operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileStoreError {
    /// Reading, writing, syncing or renaming the file failed.
    Io(io::Error),
    /// A record larger than the store accepts (16 MiB).
    RecordTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Another `FileStore` (in this process or another) has the log open.
    Locked {
        /// The log's path.
        path: PathBuf,
    },
    /// The file is not a log this store wrote (it was left untouched).
    NotALog {
        /// The file's path.
        path: PathBuf,
    },
    /// An earlier error after a compaction's rename left the open file in
    /// doubt; every operation fails until the log is opened again.
    Failed,
}

impl fmt::Display for FileStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "outbox file I/O failed: {e}"),
            Self::RecordTooLarge { len, max } => {
                write!(f, "record of {len} bytes exceeds the file store's {max}")
            }
            Self::Locked { path } => write!(
                f,
                "outbox file {} is in use by another FileStore",
                path.display()
            ),
            Self::NotALog { path } => write!(
                f,
                "{} is not an embermq outbox log (left untouched)",
                path.display()
            ),
            Self::Failed => f.write_str(
                "outbox file store failed after an I/O error in compaction; open it again",
            ),
        }
    }
}

impl core::error::Error for FileStoreError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FileStoreError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// The outbox's durable copy in an append-only log file (see the module
/// documentation for the format and the crash guarantees).
///
/// The type parameter is an internal seam for tests; users write
/// `FileStore` and call [`FileStore::open`].
pub struct FileStore<F: StoreFs = StdFs> {
    fs: F,
    path: PathBuf,
    /// `None` once the store has failed (see [`FileStoreError::Failed`]).
    file: Option<F::File>,
    /// Held until the store is dropped.
    _lock: F::Lock,
    /// Live records: key → (offset of the entry, record length).
    live: BTreeMap<u32, (u64, u32)>,
    /// Bytes of the live records' entries.
    live_bytes: u64,
    /// The file's length (end of the last good entry).
    len: u64,
    compact_at: u64,
    /// Opening found (and cut off) a torn tail.
    torn: bool,
    /// Entries skipped because they failed their checksum.
    corrupt: u32,
    /// Opening rewrote a version 1 log.
    migrated: bool,
}

impl<F: StoreFs> fmt::Debug for FileStore<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .field("records", &self.live.len())
            .field("file_len", &self.len)
            .field("corrupt_entries", &self.corrupt)
            .field("failed", &self.file.is_none())
            .finish_non_exhaustive()
    }
}

impl FileStore<StdFs> {
    /// Opens (or creates) the log at `path`: takes the lock, skips
    /// entries that fail their checksum, cuts off a torn tail and rewrites
    /// a log of the first format (see the module documentation).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FileStoreError> {
        Self::open_with(StdFs, path)
    }
}

impl<F: StoreFs> FileStore<F> {
    /// [`FileStore::open`] over another file system (tests record it).
    #[doc(hidden)]
    pub fn open_with(mut fs: F, path: impl AsRef<Path>) -> Result<Self, FileStoreError> {
        let path = path.as_ref().to_path_buf();
        let lock = fs.lock(&sibling(&path, ".lock")).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                FileStoreError::Locked { path: path.clone() }
            } else {
                e.into()
            }
        })?;
        let mut file = fs.open_rw(&path)?;
        // The log's name must be durable before a persist may say so of a
        // record in it (a new file's directory entry is not made durable
        // by fsyncing the file). Done at every open, not only when this
        // call created the file: an earlier process may have created it
        // and died before its directory fsync.
        fs.sync_dir(parent_dir(&path))?;
        // A compaction a crash interrupted before its rename.
        match fs.remove(&sibling(&path, ".compact")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let mut bytes = Vec::new();
        fs.read_to_end(&mut file, &mut bytes)?;
        let mut store = Self {
            fs,
            path,
            file: Some(file),
            _lock: lock,
            live: BTreeMap::new(),
            live_bytes: 0,
            len: 0,
            compact_at: DEFAULT_COMPACT_AT,
            torn: false,
            corrupt: 0,
            migrated: false,
        };
        match log::detect(&bytes) {
            Format::V2 => store.load_v2(&bytes)?,
            Format::V1 => store.migrate_v1(&bytes)?,
            Format::Unknown => return Err(FileStoreError::NotALog { path: store.path }),
        }
        Ok(store)
    }

    /// Builds the index from a version 2 log; cuts off a torn tail.
    fn load_v2(&mut self, bytes: &[u8]) -> Result<(), FileStoreError> {
        let mut live = BTreeMap::new();
        let end = log::scan(bytes, |off, e| apply(&mut live, off as u64, e));
        self.live_bytes = live
            .values()
            .map(|&(_, len)| entry_len(len as usize) as u64)
            .sum();
        self.live = live;
        self.corrupt = end.skipped;
        self.len = end.good_end as u64;
        self.torn = end.good_end < bytes.len();
        if end.skipped > 0 {
            warn!(
                "outbox file: {} damaged entries skipped (each a lost record or removal)",
                end.skipped
            );
        }
        if self.torn {
            let file = self.file.as_mut().ok_or(FileStoreError::Failed)?;
            self.fs.set_len(file, self.len)?;
            self.fs.sync_data(file)?;
        }
        Ok(())
    }

    /// Reads a version 1 log up to its first bad entry and rewrites it in
    /// the current format.
    fn migrate_v1(&mut self, bytes: &[u8]) -> Result<(), FileStoreError> {
        let mut records: BTreeMap<u32, &[u8]> = BTreeMap::new();
        let end = log::scan_v1(bytes, |e| {
            if e.kind == KIND_PUT {
                records.insert(e.key, e.record);
            } else {
                records.remove(&e.key);
            }
        });
        self.torn = end < bytes.len();
        self.migrated = true;
        self.rewrite(records.iter().map(|(&k, &r)| (k, r)))
    }

    /// Compacts only once the file is larger than `bytes` (and more than
    /// twice the live records). Default 64 KiB.
    pub fn with_compaction_threshold(mut self, bytes: u64) -> Self {
        self.compact_at = bytes;
        self
    }

    /// Records stored and not removed.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The log file's length in bytes.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Whether opening found (and cut off) a torn tail: bad bytes after
    /// the last good entry, as a crash in the middle of a write leaves.
    pub fn found_torn_tail(&self) -> bool {
        self.torn
    }

    /// Entries skipped because they failed their checksum, with good
    /// entries after them: while opening (each damaged stretch of the log
    /// counts once), at replay and at compaction (each record counts
    /// once). Each one is a lost record, or a lost removal (its record
    /// then goes out again). Worth logging: a power cut alone rarely
    /// makes one; damaged storage does.
    pub fn corrupt_entries(&self) -> u32 {
        self.corrupt
    }

    /// Whether opening rewrote a log of the first format (no magic) in
    /// the current one.
    pub fn migrated(&self) -> bool {
        self.migrated
    }

    /// Whether an error after a compaction's rename failed the store:
    /// every operation returns [`FileStoreError::Failed`] until the log
    /// is opened again.
    pub fn is_failed(&self) -> bool {
        self.file.is_none()
    }

    fn append(&mut self, entry: &[u8]) -> Result<u64, FileStoreError> {
        let at = self.len;
        let file = self.file.as_mut().ok_or(FileStoreError::Failed)?;
        if let Err(e) = self.fs.write_at(file, at, entry) {
            // Cut off whatever part went out, so the log stays well formed.
            let _ = self.fs.set_len(file, at);
            return Err(e.into());
        }
        self.len = at + entry.len() as u64;
        Ok(at)
    }

    /// The live record of `key` read back and checked against its CRCs
    /// into `buf` (the whole entry); `Ok(false)` if it fails them.
    fn read_live(
        &mut self,
        key: u32,
        at: u64,
        len: u32,
        buf: &mut Vec<u8>,
    ) -> Result<bool, FileStoreError> {
        let file = self.file.as_mut().ok_or(FileStoreError::Failed)?;
        buf.clear();
        buf.resize(entry_len(len as usize), 0);
        self.fs.read_at(file, at, buf)?;
        Ok(matches!(
            log::parse(buf, 0),
            log::Parsed::Good(Entry { kind: KIND_PUT, key: k, .. }, _) if k == key
        ))
    }

    /// Forgets a live record that failed its CRC (it is lost).
    fn drop_corrupt(&mut self, key: u32) {
        if let Some((_, len)) = self.live.remove(&key) {
            self.live_bytes -= entry_len(len as usize) as u64;
            self.corrupt = self.corrupt.saturating_add(1);
        }
    }

    /// Writes the live records, each checked against its CRC, to a new
    /// file and renames it over the log.
    fn compact(&mut self) -> Result<(), FileStoreError> {
        let keys: Vec<(u32, (u64, u32))> = self.live.iter().map(|(&k, &v)| (k, v)).collect();
        let mut entry = Vec::new();
        let mut image = Vec::with_capacity(usize::try_from(self.live_bytes).unwrap_or(0));
        for (key, (at, len)) in keys {
            if self.read_live(key, at, len, &mut entry)? {
                image.extend_from_slice(&entry);
            } else {
                warn!("outbox file: record {} fails its CRC, dropped", key);
                self.drop_corrupt(key);
            }
        }
        self.install(&image)
    }

    /// Rewrites the log as `records` (in key order).
    fn rewrite<'a>(
        &mut self,
        records: impl Iterator<Item = (u32, &'a [u8])>,
    ) -> Result<(), FileStoreError> {
        let mut image = Vec::new();
        let mut entry = Vec::new();
        for (key, record) in records {
            log::encode(&mut entry, KIND_PUT, key, record);
            image.extend_from_slice(&entry);
        }
        self.install(&image)
    }

    /// Replaces the log with `image` (whole good entries): written to
    /// `<log>.compact`, fsynced, renamed over the log, directory fsynced,
    /// reopened. An error before the rename leaves the old log in use; one
    /// after it fails the store.
    fn install(&mut self, image: &[u8]) -> Result<(), FileStoreError> {
        if self.file.is_none() {
            return Err(FileStoreError::Failed);
        }
        let tmp_path = sibling(&self.path, ".compact");
        let mut tmp = self.fs.create(&tmp_path)?;
        let written = self
            .fs
            .write_at(&mut tmp, 0, image)
            .and_then(|()| self.fs.sync_data(&mut tmp));
        drop(tmp);
        if let Err(e) = written.and_then(|()| self.fs.rename(&tmp_path, &self.path)) {
            let _ = self.fs.remove(&tmp_path);
            return Err(e.into());
        }
        // From here the open file is the old, unlinked log: nothing may be
        // written to it, whatever fails next.
        self.file = None;
        self.fs.sync_dir(parent_dir(&self.path))?;
        let file = self.fs.open_rw(&self.path)?;
        let mut live = BTreeMap::new();
        let end = log::scan(image, |off, e| apply(&mut live, off as u64, e));
        self.file = Some(file);
        self.live = live;
        self.live_bytes = end.good_end as u64;
        self.len = end.good_end as u64;
        Ok(())
    }

    fn should_compact(&self) -> bool {
        self.len > self.compact_at && self.len > self.live_bytes.saturating_mul(2)
    }
}

impl<S: StoreFs> Store for FileStore<S> {
    type Error = FileStoreError;

    /// Hands back the live records, each read back and checked against
    /// its CRC; one that fails is skipped, forgotten and counted in
    /// [`FileStore::corrupt_entries`].
    async fn replay<V: FnMut(u32, &[u8])>(&mut self, mut visit: V) -> Result<(), Self::Error> {
        if self.file.is_none() {
            return Err(FileStoreError::Failed);
        }
        let mut entry = Vec::new();
        let keys: Vec<(u32, (u64, u32))> = self.live.iter().map(|(&k, &v)| (k, v)).collect();
        for (key, (at, len)) in keys {
            if self.read_live(key, at, len, &mut entry)? {
                let record = entry
                    .get(log::HEAD..log::HEAD + len as usize)
                    .unwrap_or_default();
                visit(key, record);
            } else {
                warn!("outbox file: record {} fails its CRC, skipped", key);
                self.drop_corrupt(key);
            }
        }
        Ok(())
    }

    async fn persist<F: FnOnce(&mut [u8])>(
        &mut self,
        key: u32,
        len: usize,
        fill: F,
    ) -> Result<(), Self::Error> {
        if len > MAX_RECORD {
            return Err(FileStoreError::RecordTooLarge {
                len,
                max: MAX_RECORD,
            });
        }
        if self.file.is_none() {
            return Err(FileStoreError::Failed);
        }
        let mut record = alloc::vec![0u8; len];
        fill(&mut record);
        let mut entry = Vec::with_capacity(entry_len(len));
        log::encode(&mut entry, KIND_PUT, key, &record);
        let at = self.append(&entry)?;
        let file = self.file.as_mut().ok_or(FileStoreError::Failed)?;
        if let Err(e) = self.fs.sync_data(file) {
            // Not known to be durable: take it back out of the log.
            let _ = self.fs.set_len(file, at);
            self.len = at;
            return Err(e.into());
        }
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.live.insert(key, (at, len));
        self.live_bytes += entry.len() as u64;
        Ok(())
    }

    async fn remove(&mut self, key: u32) -> Result<(), Self::Error> {
        if self.file.is_none() {
            return Err(FileStoreError::Failed);
        }
        let Some((_, len)) = self.live.remove(&key) else {
            return Ok(());
        };
        self.live_bytes -= entry_len(len as usize) as u64;
        let mut entry = Vec::with_capacity(entry_len(0));
        log::encode(&mut entry, KIND_REMOVE, key, &[]);
        self.append(&entry)?;
        if self.should_compact() {
            self.compact()?;
        }
        Ok(())
    }
}

/// Applies a good entry at `off` to the index of live records.
fn apply(live: &mut BTreeMap<u32, (u64, u32)>, off: u64, e: Entry<'_>) {
    if e.kind == KIND_PUT {
        let len = u32::try_from(e.record.len()).unwrap_or(u32::MAX);
        live.insert(e.key, (off, len));
    } else {
        live.remove(&e.key);
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = std::ffi::OsString::from(path.as_os_str());
    p.push(suffix);
    PathBuf::from(p)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    fn block_on<F: Future>(f: F) -> F::Output {
        embassy_futures::block_on(f)
    }
    use core::future::Future;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(std::format!(
            "embermq-filestore-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    /// Removes the log and its lock file.
    fn cleanup(path: &Path) {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(sibling(path, ".lock"));
    }

    fn put(s: &mut FileStore, key: u32, record: &[u8]) {
        block_on(s.persist(key, record.len(), |b| b.copy_from_slice(record))).unwrap();
    }

    fn replayed(s: &mut FileStore) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        block_on(s.replay(|k, r| out.push((k, r.to_vec())))).unwrap();
        out
    }

    #[cfg(unix)]
    #[test]
    fn created_log_and_compacted_copy_are_owner_only_0600() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let path = temp_path("mode");
        let mut s = FileStore::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        // Enough puts and removes to compact (the log is replaced by the
        // compacted copy): the new file is 0600 too.
        let record = vec![7u8; 4096];
        for key in 0..40 {
            put(&mut s, key, &record);
            block_on(s.remove(key)).unwrap();
        }
        assert!(
            std::fs::metadata(&path).unwrap().len() < 64 * 1024,
            "not compacted"
        );
        assert_eq!(mode(&path), 0o600);
        drop(s);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn replay_gives_unremoved_records_in_key_order_after_reopen() {
        let path = temp_path("order");
        let mut s = FileStore::open(&path).unwrap();
        put(&mut s, 3, b"three");
        put(&mut s, 4, b"four");
        put(&mut s, 9, b"nine");
        block_on(s.remove(4)).unwrap();
        drop(s);
        let mut s = FileStore::open(&path).unwrap();
        assert!(!s.found_torn_tail());
        assert_eq!(
            replayed(&mut s),
            vec![(3, b"three".to_vec()), (9, b"nine".to_vec())]
        );
        cleanup(&path);
    }

    #[test]
    fn torn_last_entry_is_ignored_and_cut_off() {
        let path = temp_path("torn");
        let mut s = FileStore::open(&path).unwrap();
        put(&mut s, 1, b"kept");
        put(&mut s, 2, b"torn by a crash");
        let full = s.file_len();
        drop(s);
        // A crash in the middle of the second entry's write: every
        // shortened length, and a flipped byte in its record.
        for cut in 1..(entry_len(15) as u64) {
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut copy = std::fs::read(&path).unwrap();
            copy.truncate((full - cut) as usize);
            drop(f);
            let torn_path = temp_path(&std::format!("torn-{cut}"));
            std::fs::write(&torn_path, &copy).unwrap();
            let mut t = FileStore::open(&torn_path).unwrap();
            assert!(t.found_torn_tail(), "cut {cut}");
            assert_eq!(replayed(&mut t), vec![(1, b"kept".to_vec())], "cut {cut}");
            // Appends after the cut are readable.
            put(&mut t, 5, b"after");
            drop(t);
            let mut t = FileStore::open(&torn_path).unwrap();
            assert!(!t.found_torn_tail());
            assert_eq!(replayed(&mut t).len(), 2);
            cleanup(&torn_path);
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let flip = bytes.len() - 6;
        bytes[flip] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let mut s = FileStore::open(&path).unwrap();
        assert!(s.found_torn_tail());
        assert_eq!(replayed(&mut s), vec![(1, b"kept".to_vec())]);
        cleanup(&path);
    }

    #[test]
    fn compaction_when_removed_records_dominate_keeps_the_live_ones() {
        let path = temp_path("compact");
        let mut s = FileStore::open(&path)
            .unwrap()
            .with_compaction_threshold(1024);
        let payload = [7u8; 100];
        put(&mut s, 1, b"long-lived");
        for key in 2..200 {
            put(&mut s, key, &payload);
            block_on(s.remove(key)).unwrap();
        }
        put(&mut s, 500, b"last");
        // 198 acknowledged records of ~113 bytes would be over 22 KiB.
        assert!(s.file_len() < 2048, "file is {} bytes", s.file_len());
        drop(s);
        let mut s = FileStore::open(&path).unwrap();
        assert_eq!(
            replayed(&mut s),
            vec![(1, b"long-lived".to_vec()), (500, b"last".to_vec())]
        );
        let mut compact = path.clone().into_os_string();
        compact.push(".compact");
        assert!(!Path::new(&compact).exists());
        cleanup(&path);
    }

    #[test]
    fn removing_an_unknown_key_writes_nothing() {
        let path = temp_path("unknown");
        let mut s = FileStore::open(&path).unwrap();
        block_on(s.remove(42)).unwrap();
        assert_eq!(s.file_len(), 0);
        cleanup(&path);
        let e = FileStoreError::RecordTooLarge { len: 1, max: 0 };
        assert!(String::from(std::format!("{e}").as_str()).contains("exceeds"));
    }

    #[test]
    fn issue18_3_a_flipped_bit_in_one_entry_loses_only_that_entry() {
        // A bit in the record (the header still gives the length) and a
        // bit in the header's key (resynchronised past).
        for (name, offset_in_entry) in [("record", log::HEAD + 2), ("header", 6)] {
            let path = temp_path(&std::format!("flip-{name}"));
            let mut s = FileStore::open(&path).unwrap();
            put(&mut s, 1, b"first");
            put(&mut s, 2, b"second");
            put(&mut s, 3, b"third");
            drop(s);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[entry_len(5) + offset_in_entry] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            let mut s = FileStore::open(&path).unwrap();
            assert_eq!(
                replayed(&mut s),
                vec![(1, b"first".to_vec()), (3, b"third".to_vec())],
                "{name}"
            );
            assert_eq!(s.corrupt_entries(), 1, "{name}");
            assert!(!s.found_torn_tail(), "{name}");
            // Appends go after the last good entry, the bad one stays
            // skipped.
            put(&mut s, 4, b"fourth");
            drop(s);
            let mut s = FileStore::open(&path).unwrap();
            assert_eq!(replayed(&mut s).len(), 3, "{name}");
            cleanup(&path);
        }
    }

    #[test]
    fn a_record_damaged_after_open_is_skipped_at_replay_and_counted() {
        let (fs, mut s) = sim_store();
        let mut bytes = fs.content(Path::new("log")).unwrap();
        let at = bytes.windows(9).position(|w| w == b"long-live").unwrap();
        bytes[at] ^= 0x80;
        fs.set_content(Path::new("log"), bytes);
        let mut keys = Vec::new();
        block_on(s.replay(|k, _| keys.push(k))).unwrap();
        assert_eq!(keys, [2, 3, 4, 5, 6]);
        assert_eq!((s.corrupt_entries(), s.len()), (1, 5));
    }

    #[test]
    fn a_log_of_the_first_format_is_read_and_rewritten() {
        let path = temp_path("v1");
        let mut v1 = Vec::new();
        log::tests::encode_v1(&mut v1, KIND_PUT, 1, b"one");
        log::tests::encode_v1(&mut v1, KIND_PUT, 2, b"two");
        log::tests::encode_v1(&mut v1, KIND_REMOVE, 1, b"");
        log::tests::encode_v1(&mut v1, KIND_PUT, 3, b"three");
        v1.extend_from_slice(&[KIND_PUT, 9, 0]); // a torn tail
        std::fs::write(&path, &v1).unwrap();
        let mut s = FileStore::open(&path).unwrap();
        assert!(s.migrated() && s.found_torn_tail());
        assert_eq!(
            replayed(&mut s),
            vec![(2, b"two".to_vec()), (3, b"three".to_vec())]
        );
        put(&mut s, 4, b"four");
        drop(s);
        assert!(std::fs::read(&path).unwrap().starts_with(&log::MAGIC));
        let mut s = FileStore::open(&path).unwrap();
        assert!(!s.migrated());
        assert_eq!(replayed(&mut s).len(), 3);
        cleanup(&path);
    }

    #[test]
    fn a_file_that_is_not_a_log_is_refused_and_left_alone() {
        let path = temp_path("notalog");
        std::fs::write(&path, b"#!/bin/sh\necho not an outbox\n").unwrap();
        let e = FileStore::open(&path).unwrap_err();
        assert!(matches!(e, FileStoreError::NotALog { .. }), "{e}");
        assert!(std::format!("{e}").contains("not an embermq outbox log"));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"#!/bin/sh\necho not an outbox\n"
        );
        cleanup(&path);
    }

    use crate::store::sim_fs::{OpKind, SimFs};

    /// A store over a fresh SimFs compacting above 300 bytes, holding a
    /// long-lived record 1 and records 2..=6 of 60 bytes.
    fn sim_store() -> (SimFs, FileStore<SimFs>) {
        let fs = SimFs::default();
        let mut s = FileStore::open_with(fs.clone(), "log")
            .unwrap()
            .with_compaction_threshold(300);
        block_on(s.persist(1, 9, |b| b.copy_from_slice(b"long-live"))).unwrap();
        for key in 2..=6 {
            block_on(s.persist(key, 60, |b| b.fill(key as u8))).unwrap();
        }
        (fs, s)
    }

    /// Removes 2, 3, ... until one remove compacts (or fails); returns
    /// that remove's result.
    fn remove_until_compaction(fs: &SimFs, s: &mut FileStore<SimFs>) -> Result<(), FileStoreError> {
        for key in 2..=6 {
            let renames = fs
                .ops()
                .iter()
                .filter(|o| matches!(o, crate::store::sim_fs::Op::Rename { .. }))
                .count();
            let r = block_on(s.remove(key));
            let after = fs
                .ops()
                .iter()
                .filter(|o| matches!(o, crate::store::sim_fs::Op::Rename { .. }))
                .count();
            if r.is_err() || after > renames {
                return r;
            }
        }
        panic!("no compaction");
    }

    fn sim_replayed(fs: &SimFs) -> Vec<(u32, Vec<u8>)> {
        let mut s = FileStore::open_with(fs.clone(), "log").unwrap();
        let mut out = Vec::new();
        block_on(s.replay(|k, r| out.push((k, r.to_vec())))).unwrap();
        out
    }

    #[test]
    fn issue18_7_a_failed_reopen_after_compaction_fails_every_later_operation() {
        let (fs, mut s) = sim_store();
        fs.fail_next(OpKind::OpenRw, 0);
        assert!(remove_until_compaction(&fs, &mut s).is_err());
        assert!(s.is_failed());
        // The old file is unlinked: a persist into it would be lost.
        let e = block_on(s.persist(100, 3, |b| b.copy_from_slice(b"new"))).unwrap_err();
        assert!(matches!(e, FileStoreError::Failed), "{e}");
        assert!(std::format!("{e}").contains("open it again"));
        assert!(matches!(block_on(s.remove(1)), Err(FileStoreError::Failed)));
        assert!(matches!(
            block_on(s.replay(|_, _| {})),
            Err(FileStoreError::Failed)
        ));
        drop(s);
        let keys: Vec<u32> = sim_replayed(&fs).iter().map(|r| r.0).collect();
        assert!(keys.contains(&1) && !keys.contains(&100), "{keys:?}");
    }

    #[test]
    fn issue18_7_a_failed_directory_fsync_after_compaction_is_an_error() {
        let (fs, mut s) = sim_store();
        fs.fail_next(OpKind::SyncDir, 0);
        assert!(remove_until_compaction(&fs, &mut s).is_err());
        assert!(s.is_failed());
        assert!(block_on(s.persist(100, 3, |b| b.copy_from_slice(b"new"))).is_err());
        drop(s);
        // Reopening recovers: the records not removed are all there.
        let keys: Vec<u32> = sim_replayed(&fs).iter().map(|r| r.0).collect();
        assert!(keys.contains(&1) && keys.contains(&6), "{keys:?}");
    }

    #[test]
    fn a_failed_rename_in_compaction_keeps_the_old_log_in_use() {
        let (fs, mut s) = sim_store();
        fs.fail_next(OpKind::Rename, 0);
        assert!(remove_until_compaction(&fs, &mut s).is_err());
        assert!(!s.is_failed());
        block_on(s.persist(100, 3, |b| b.copy_from_slice(b"new"))).unwrap();
        drop(s);
        let keys: Vec<u32> = sim_replayed(&fs).iter().map(|r| r.0).collect();
        assert!(keys.contains(&1) && keys.contains(&100), "{keys:?}");
        assert!(!fs.names().iter().any(|n| n.ends_with("log.compact")));
    }

    #[test]
    fn issue18_7_compaction_does_not_copy_a_record_that_fails_its_crc() {
        let (fs, mut s) = sim_store();
        // Bit rot in record 1 after it was written.
        let mut bytes = fs.content(Path::new("log")).unwrap();
        let at = bytes.windows(9).position(|w| w == b"long-live").unwrap();
        bytes[at + 4] ^= 0x01;
        fs.set_content(Path::new("log"), bytes);
        remove_until_compaction(&fs, &mut s).unwrap();
        assert_eq!(s.corrupt_entries(), 1);
        drop(s);
        for (key, record) in sim_replayed(&fs) {
            if key == 1 {
                assert_eq!(record, b"long-live", "a corrupt record came back as good");
            }
        }
    }

    #[test]
    fn issue18_8_a_second_open_of_the_same_log_is_refused() {
        let path = temp_path("locked");
        let first = FileStore::open(&path).unwrap();
        let e = FileStore::open(&path).unwrap_err();
        assert!(matches!(e, FileStoreError::Locked { .. }), "{e}");
        assert!(std::format!("{e}").contains("in use by another FileStore"));
        drop(first);
        assert!(FileStore::open(&path).is_ok());
        cleanup(&path);
    }
}
