//! [`FileStore`]: the outbox's durable copy in an append-only log file on a
//! host (feature `std`).
//!
//! Each entry is `kind (1) | key (u32 LE) | len (u32 LE) | record (len) |
//! CRC-32 (u32 LE)` over everything before the checksum; `kind` is 1 for a
//! persisted record, 2 for its removal. A persist is written and
//! `fsync`ed (`sync_data`) before it returns; a removal is only written
//! (a removal lost in a power cut makes the message go out again, never
//! lost; a `kill -9` loses nothing the kernel already has).
//!
//! Opening reads the log from the start and stops at the first entry that
//! is short or fails its checksum: a torn tail left by a crash in the
//! middle of a write. The file is truncated there, so later appends follow
//! the last good entry. When removed records dominate (the file is more
//! than twice the live records and above the compaction threshold) the
//! live records are written to a new file, which is fsynced and renamed
//! over the old one.
//!
//! The I/O is synchronous std I/O inside the async methods: fine for a
//! host client (each call is one short write); it blocks the executor
//! thread for the duration of an fsync.

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Store;

const KIND_PUT: u8 = 1;
const KIND_REMOVE: u8 = 2;
/// kind + key + len.
const ENTRY_HEAD: usize = 9;
const ENTRY_CRC: usize = 4;
/// The largest record accepted (a corrupt length never makes us allocate
/// more than this).
const MAX_RECORD: usize = 16 << 20;
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
}

impl fmt::Display for FileStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "outbox file I/O failed: {e}"),
            Self::RecordTooLarge { len, max } => {
                write!(f, "record of {len} bytes exceeds the file store's {max}")
            }
        }
    }
}

impl core::error::Error for FileStoreError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::RecordTooLarge { .. } => None,
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
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    file: File,
    /// Live records: key → (offset of the record bytes, length).
    live: BTreeMap<u32, (u64, u32)>,
    /// Bytes of the live records' entries.
    live_bytes: u64,
    /// The file's length (end of the last good entry).
    len: u64,
    compact_at: u64,
    /// Entries ignored when the log was opened (a torn tail).
    torn: bool,
}

impl FileStore {
    /// Opens (or creates) the log at `path`, dropping a torn last entry.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FileStoreError> {
        let path = path.as_ref().to_path_buf();
        let mut file = owner_only(OpenOptions::new().read(true).write(true))
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut live = BTreeMap::new();
        let mut live_bytes = 0u64;
        let mut off = 0usize;
        while let Some((kind, key, record, next)) = parse_entry(&bytes, off) {
            match kind {
                KIND_PUT => {
                    let at = (off + ENTRY_HEAD) as u64;
                    let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
                    live.insert(key, (at, len));
                    live_bytes += entry_len(record.len()) as u64;
                }
                _ => {
                    if let Some((_, len)) = live.remove(&key) {
                        live_bytes -= entry_len(len as usize) as u64;
                    }
                }
            }
            off = next;
        }
        let torn = off < bytes.len();
        let len = off as u64;
        if torn {
            file.set_len(len)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::Start(len))?;
        Ok(Self {
            path,
            file,
            live,
            live_bytes,
            len,
            compact_at: DEFAULT_COMPACT_AT,
            torn,
        })
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

    /// Whether opening found (and cut off) a torn last entry.
    pub fn found_torn_tail(&self) -> bool {
        self.torn
    }

    fn append(&mut self, entry: &[u8]) -> Result<u64, FileStoreError> {
        let at = self.len;
        self.file.seek(SeekFrom::Start(at))?;
        if let Err(e) = self.file.write_all(entry) {
            // Cut off whatever part went out, so the log stays well formed.
            let _ = self.file.set_len(at);
            return Err(e.into());
        }
        self.len = at + entry.len() as u64;
        Ok(at)
    }

    fn read_record(&mut self, at: u64, len: u32, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        buf.resize(len as usize, 0);
        self.file.seek(SeekFrom::Start(at))?;
        self.file.read_exact(buf)
    }

    /// Writes the live records to a new file and renames it over the log.
    fn compact(&mut self) -> Result<(), FileStoreError> {
        let mut tmp_path = self.path.clone().into_os_string();
        tmp_path.push(".compact");
        let tmp_path = PathBuf::from(tmp_path);
        let mut tmp = owner_only(OpenOptions::new().write(true))
            .create(true)
            .truncate(true)
            .open(&tmp_path)?;
        let mut live = BTreeMap::new();
        let mut record = Vec::new();
        let mut entry = Vec::new();
        let mut off = 0u64;
        let keys: Vec<(u32, (u64, u32))> = self.live.iter().map(|(&k, &v)| (k, v)).collect();
        for (key, (at, len)) in keys {
            self.read_record(at, len, &mut record)?;
            encode_entry(&mut entry, KIND_PUT, key, &record);
            tmp.write_all(&entry)?;
            live.insert(key, (off + ENTRY_HEAD as u64, len));
            off += entry.len() as u64;
        }
        tmp.sync_all()?;
        drop(tmp);
        std::fs::rename(&tmp_path, &self.path)?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = d.sync_all();
        }
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.live = live;
        self.live_bytes = off;
        self.len = off;
        Ok(())
    }

    fn should_compact(&self) -> bool {
        self.len > self.compact_at && self.len > self.live_bytes.saturating_mul(2)
    }
}

impl Store for FileStore {
    type Error = FileStoreError;

    async fn replay<V: FnMut(u32, &[u8])>(&mut self, mut visit: V) -> Result<(), Self::Error> {
        let mut record = Vec::new();
        let keys: Vec<(u32, (u64, u32))> = self.live.iter().map(|(&k, &v)| (k, v)).collect();
        for (key, (at, len)) in keys {
            self.read_record(at, len, &mut record)?;
            visit(key, &record);
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
        let mut record = alloc::vec![0u8; len];
        fill(&mut record);
        let mut entry = Vec::with_capacity(entry_len(len));
        encode_entry(&mut entry, KIND_PUT, key, &record);
        let at = self.append(&entry)?;
        if let Err(e) = self.file.sync_data() {
            // Not known to be durable: take it back out of the log.
            let _ = self.file.set_len(at);
            self.len = at;
            return Err(e.into());
        }
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.live.insert(key, (at + ENTRY_HEAD as u64, len));
        self.live_bytes += entry.len() as u64;
        Ok(())
    }

    async fn remove(&mut self, key: u32) -> Result<(), Self::Error> {
        let Some((_, len)) = self.live.remove(&key) else {
            return Ok(());
        };
        self.live_bytes -= entry_len(len as usize) as u64;
        let mut entry = Vec::with_capacity(entry_len(0));
        encode_entry(&mut entry, KIND_REMOVE, key, &[]);
        self.append(&entry)?;
        if self.should_compact() {
            self.compact()?;
        }
        Ok(())
    }
}

/// Files this store creates are readable and writable by their owner only
/// (0600 on Unix, whatever the umask allows): the records are the
/// application's unsent messages.
fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

const fn entry_len(record_len: usize) -> usize {
    ENTRY_HEAD + record_len + ENTRY_CRC
}

fn encode_entry(out: &mut Vec<u8>, kind: u8, key: u32, record: &[u8]) {
    out.clear();
    out.push(kind);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(record.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(record);
    let crc = crc32(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The entry at `off`: (kind, key, record, offset of the next entry), or
/// `None` if it is short, unknown or fails its checksum.
fn parse_entry(bytes: &[u8], off: usize) -> Option<(u8, u32, &[u8], usize)> {
    let rest = bytes.get(off..)?;
    let head: &[u8; ENTRY_HEAD] = rest.first_chunk()?;
    let [kind, k0, k1, k2, k3, l0, l1, l2, l3] = *head;
    if kind != KIND_PUT && kind != KIND_REMOVE {
        return None;
    }
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if len > MAX_RECORD {
        return None;
    }
    let body_end = ENTRY_HEAD.checked_add(len)?;
    let (covered, tail) = rest.split_at_checked(body_end)?;
    let crc: &[u8; ENTRY_CRC] = tail.first_chunk()?;
    if crc32(covered) != u32::from_le_bytes(*crc) {
        return None;
    }
    let record = covered.get(ENTRY_HEAD..)?;
    Some((
        kind,
        u32::from_le_bytes([k0, k1, k2, k3]),
        record,
        off + body_end + ENTRY_CRC,
    ))
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bitwise: the log
/// is small and written once per publish, so no table.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
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
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32 catalogue's check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
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
        let _ = std::fs::remove_file(&path);
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
            let f = OpenOptions::new().write(true).open(&path).unwrap();
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
            let _ = std::fs::remove_file(&torn_path);
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let flip = bytes.len() - 6;
        bytes[flip] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let mut s = FileStore::open(&path).unwrap();
        assert!(s.found_torn_tail());
        assert_eq!(replayed(&mut s), vec![(1, b"kept".to_vec())]);
        let _ = std::fs::remove_file(&path);
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
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn removing_an_unknown_key_writes_nothing() {
        let path = temp_path("unknown");
        let mut s = FileStore::open(&path).unwrap();
        block_on(s.remove(42)).unwrap();
        assert_eq!(s.file_len(), 0);
        let _ = std::fs::remove_file(&path);
        let e = FileStoreError::RecordTooLarge { len: 1, max: 0 };
        assert!(String::from(std::format!("{e}").as_str()).contains("exceeds"));
    }
}
