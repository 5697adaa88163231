//! The file-system seam under [`FileStore`](super::FileStore): the handful
//! of operations the log uses (open, create, read, write at an offset,
//! truncate, `fdatasync`, rename, unlink, directory fsync, an advisory
//! lock), so that tests can record them and rebuild every disk image a
//! power cut could leave (`sim_fs`, test builds only).
//!
//! [`StdFs`] is the production implementation on `std::fs`; it is the
//! default type parameter of `FileStore`, so users never name this module.
//! Hidden from the documentation: it is an internal seam, not a promised
//! extension point (its methods may change with the log's needs).
//!
//! What it deliberately does not do: no buffering, no caching, no retry.
//! Every call is one system call (or two: a seek and a read or write).

extern crate alloc;

use alloc::vec::Vec;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The operations [`FileStore`](super::FileStore) needs from a file system.
///
/// Errors are `std::io::Error`s; [`lock`](StoreFs::lock) reports a lock
/// held elsewhere as [`io::ErrorKind::WouldBlock`].
#[doc(hidden)]
pub trait StoreFs {
    /// An open file.
    type File;
    /// Held while the store is open: dropping it releases the lock.
    type Lock;

    /// Opens `path` for reading and writing, creating it (empty) if it
    /// does not exist. Never truncates.
    fn open_rw(&mut self, path: &Path) -> io::Result<Self::File>;
    /// Creates `path` empty for writing, truncating an existing file.
    fn create(&mut self, path: &Path) -> io::Result<Self::File>;
    /// Appends the whole file's content to `buf`.
    fn read_to_end(&mut self, file: &mut Self::File, buf: &mut Vec<u8>) -> io::Result<()>;
    /// Fills `buf` from offset `at` (an error if the file is shorter).
    fn read_at(&mut self, file: &mut Self::File, at: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at offset `at`.
    fn write_at(&mut self, file: &mut Self::File, at: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates (or extends with zeros) the file to `len` bytes.
    fn set_len(&mut self, file: &mut Self::File, len: u64) -> io::Result<()>;
    /// `fdatasync`: the file's data and length are durable when it returns.
    fn sync_data(&mut self, file: &mut Self::File) -> io::Result<()>;
    /// Renames `from` over `to` (atomically replacing `to`).
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Unlinks `path`.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// `fsync` on the directory `dir`: the names created, renamed or
    /// removed in it are durable when it returns.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive advisory lock on `path` (created if missing)
    /// without waiting; `WouldBlock` if another holder has it.
    fn lock(&mut self, path: &Path) -> io::Result<Self::Lock>;
}

/// [`StoreFs`] on `std::fs`: what `FileStore` uses outside tests.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl StoreFs for StdFs {
    type File = File;
    type Lock = File;

    fn open_rw(&mut self, path: &Path) -> io::Result<File> {
        owner_only(&mut OpenOptions::new())
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    fn create(&mut self, path: &Path) -> io::Result<File> {
        owner_only(&mut OpenOptions::new())
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    fn read_to_end(&mut self, file: &mut File, buf: &mut Vec<u8>) -> io::Result<()> {
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(buf).map(|_| ())
    }

    fn read_at(&mut self, file: &mut File, at: u64, buf: &mut [u8]) -> io::Result<()> {
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(buf)
    }

    fn write_at(&mut self, file: &mut File, at: u64, data: &[u8]) -> io::Result<()> {
        file.seek(SeekFrom::Start(at))?;
        file.write_all(data)
    }

    fn set_len(&mut self, file: &mut File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn sync_data(&mut self, file: &mut File) -> io::Result<()> {
        file.sync_data()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    #[cfg(unix)]
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Windows cannot open a directory through `std::fs` to flush it;
    /// NTFS journals its metadata, so a rename is as durable as the
    /// journal's next commit there.
    #[cfg(not(unix))]
    fn sync_dir(&mut self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn lock(&mut self, path: &Path) -> io::Result<File> {
        let file = owner_only(&mut OpenOptions::new())
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Files the store creates (the log, its compacted copy, the lock file)
/// are readable and writable by their owner only (0600 on Unix, whatever
/// the umask allows): the records are the application's unsent messages.
fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}
