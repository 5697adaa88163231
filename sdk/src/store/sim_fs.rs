//! A recording, in-memory [`StoreFs`] for tests, and the crash states it
//! can rebuild (in the manner of CrashMonkey and ALICE).
//!
//! [`SimFs`] keeps one directory of files in memory and logs every
//! operation that changes it: each write, truncation and `fdatasync` of a
//! file, each create, rename and unlink, each directory fsync.
//! [`for_each_crash_image`] replays a prefix of that log the way a power
//! cut could leave the disk:
//!
//! - a file's writes and truncations up to its last `sync_data` are on
//!   disk; any subset of the later ones may be too (all subsets when there
//!   are at most [`ALL_SUBSETS_UP_TO`], else a deterministic sample that
//!   includes none, all, each one alone, each one left out and each
//!   in-order prefix), and one write of a subset may be torn at a 512-byte
//!   sector boundary (only its first sectors, or all but its first);
//! - the names in the directory are as of the last directory fsync, plus
//!   any prefix of the creates, renames and unlinks after it (the metadata
//!   journal keeps their order).
//!
//! It is also a fault injector (`fail_next`): an operation of a given kind
//! fails with an I/O error, for the error paths no real file system
//! produces on demand (a failed reopen after a rename, a failed directory
//! fsync).
//!
//! What it does not model: more than one directory, reads that fail, data
//! written to a file but not to the sector it was aimed at (misdirected
//! writes), or bit rot (tests flip bits in an image themselves).

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};

use super::fs::StoreFs;

/// Tearing happens at this granularity (a disk sector).
pub(super) const SECTOR: u64 = 512;
/// Up to this many pending writes, every subset is explored.
pub(super) const ALL_SUBSETS_UP_TO: usize = 6;

/// One recorded operation.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Write { ino: usize, at: u64, data: Vec<u8> },
    SetLen { ino: usize, len: u64 },
    Sync { ino: usize },
    Link { name: PathBuf, ino: usize },
    Rename { from: PathBuf, to: PathBuf },
    Unlink { name: PathBuf },
    SyncDir,
}

/// The kinds of operation a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpKind {
    OpenRw,
    Create,
    Write,
    Sync,
    Rename,
    SyncDir,
}

#[derive(Debug, Default)]
pub(super) struct SimState {
    /// Inode → current content.
    files: Vec<Vec<u8>>,
    /// Name → inode.
    names: BTreeMap<PathBuf, usize>,
    /// Everything that changed the disk, in order.
    pub(super) ops: Vec<Op>,
    /// (kind, how many such operations still succeed before one fails).
    faults: Vec<(OpKind, usize)>,
}

/// The recording file system; clones share one state.
#[derive(Debug, Clone, Default)]
pub(super) struct SimFs(pub(super) Rc<RefCell<SimState>>);

/// An open file of a [`SimFs`].
#[derive(Debug)]
pub(super) struct SimFile(usize);

/// A disk image: name → content.
pub(super) type Image = BTreeMap<PathBuf, Vec<u8>>;

impl SimFs {
    /// A file system holding `image`, everything durable: its creation is
    /// recorded as writes, fsyncs and a directory fsync, so crash
    /// exploration over the operations that follow starts from it.
    pub(super) fn from_image(image: &Image) -> Self {
        let mut fs = Self::default();
        for (name, data) in image {
            let mut f = fs.create(name).unwrap();
            fs.write_at(&mut f, 0, data).unwrap();
            fs.sync_data(&mut f).unwrap();
        }
        fs.sync_dir(Path::new(".")).unwrap();
        fs
    }

    /// The operations recorded so far.
    pub(super) fn op_count(&self) -> usize {
        self.0.borrow().ops.len()
    }

    /// A copy of the recorded operations.
    pub(super) fn ops(&self) -> Vec<Op> {
        self.0.borrow().ops.clone()
    }

    /// The current content of `name` (what a process would read).
    pub(super) fn content(&self, name: &Path) -> Option<Vec<u8>> {
        let s = self.0.borrow();
        let ino = *s.names.get(name)?;
        s.files.get(ino).cloned()
    }

    /// Replaces the current content of `name` (a test's bit flip); not
    /// recorded.
    pub(super) fn set_content(&self, name: &Path, data: Vec<u8>) {
        let mut s = self.0.borrow_mut();
        let ino = s.names[name];
        s.files[ino] = data;
    }

    /// Names in the directory now.
    pub(super) fn names(&self) -> Vec<PathBuf> {
        self.0.borrow().names.keys().cloned().collect()
    }

    /// After `skip` more successful operations of `kind`, the next one
    /// fails with an I/O error.
    pub(super) fn fail_next(&self, kind: OpKind, skip: usize) {
        self.0.borrow_mut().faults.push((kind, skip));
    }

    fn check(&self, kind: OpKind) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        for (k, left) in s.faults.iter_mut() {
            if *k == kind {
                if *left == 0 {
                    s.faults.retain(|(k2, l2)| !(*k2 == kind && *l2 == 0));
                    return Err(io::Error::other("injected fault"));
                }
                *left -= 1;
            }
        }
        Ok(())
    }

    fn new_file(s: &mut SimState, path: &Path) -> usize {
        let ino = s.files.len();
        s.files.push(Vec::new());
        s.names.insert(path.to_path_buf(), ino);
        s.ops.push(Op::Link {
            name: path.to_path_buf(),
            ino,
        });
        ino
    }
}

impl StoreFs for SimFs {
    type File = SimFile;
    type Lock = ();

    fn open_rw(&mut self, path: &Path) -> io::Result<SimFile> {
        self.check(OpKind::OpenRw)?;
        let mut s = self.0.borrow_mut();
        let ino = match s.names.get(path) {
            Some(&ino) => ino,
            None => Self::new_file(&mut s, path),
        };
        Ok(SimFile(ino))
    }

    fn create(&mut self, path: &Path) -> io::Result<SimFile> {
        self.check(OpKind::Create)?;
        let mut s = self.0.borrow_mut();
        Ok(SimFile(Self::new_file(&mut s, path)))
    }

    fn read_to_end(&mut self, file: &mut SimFile, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.extend_from_slice(&self.0.borrow().files[file.0]);
        Ok(())
    }

    fn read_at(&mut self, file: &mut SimFile, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let s = self.0.borrow();
        let data = &s.files[file.0];
        let at = at as usize;
        let src = data
            .get(at..at + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&mut self, file: &mut SimFile, at: u64, data: &[u8]) -> io::Result<()> {
        self.check(OpKind::Write)?;
        let mut s = self.0.borrow_mut();
        apply_write(&mut s.files[file.0], at, data);
        s.ops.push(Op::Write {
            ino: file.0,
            at,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn set_len(&mut self, file: &mut SimFile, len: u64) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        s.files[file.0].resize(len as usize, 0);
        s.ops.push(Op::SetLen { ino: file.0, len });
        Ok(())
    }

    fn sync_data(&mut self, file: &mut SimFile) -> io::Result<()> {
        self.check(OpKind::Sync)?;
        self.0.borrow_mut().ops.push(Op::Sync { ino: file.0 });
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(OpKind::Rename)?;
        let mut s = self.0.borrow_mut();
        let ino = s
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        s.names.insert(to.to_path_buf(), ino);
        s.ops.push(Op::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        Ok(())
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        s.names
            .remove(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        s.ops.push(Op::Unlink {
            name: path.to_path_buf(),
        });
        Ok(())
    }

    fn sync_dir(&mut self, _dir: &Path) -> io::Result<()> {
        self.check(OpKind::SyncDir)?;
        self.0.borrow_mut().ops.push(Op::SyncDir);
        Ok(())
    }

    fn lock(&mut self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

fn apply_write(file: &mut Vec<u8>, at: u64, data: &[u8]) {
    let at = at as usize;
    if file.len() < at + data.len() {
        file.resize(at + data.len(), 0);
    }
    file[at..at + data.len()].copy_from_slice(data);
}

fn apply_data(file: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { at, data, .. } => apply_write(file, *at, data),
        Op::SetLen { len, .. } => file.resize(*len as usize, 0),
        _ => {}
    }
}

fn apply_dir(names: &mut BTreeMap<PathBuf, usize>, op: &Op) {
    match op {
        Op::Link { name, ino } => {
            names.insert(name.clone(), *ino);
        }
        Op::Rename { from, to } => {
            if let Some(ino) = names.remove(from) {
                names.insert(to.clone(), ino);
            }
        }
        Op::Unlink { name } => {
            names.remove(name);
        }
        _ => {}
    }
}

/// The subsets of `n` pending operations explored, as bit masks over
/// their indices (bit i = operation i persisted).
fn subsets(n: usize) -> Vec<u64> {
    if n <= ALL_SUBSETS_UP_TO {
        return (0..1u64 << n).collect();
    }
    let n = n.min(63);
    let all = (1u64 << n) - 1;
    let mut out = alloc::vec![0, all];
    for i in 0..n {
        out.push(1 << i); // each alone
        out.push(all & !(1 << i)); // each left out
        out.push((1 << i) - 1); // in-order prefix
    }
    // A fixed pseudo-random sample (an LCG seeded by n: deterministic).
    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ n as u64;
    for _ in 0..32 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.push((x >> 7) & all);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A write that crosses sector boundaries, torn: `Some` variants of it as
/// they could reach the disk alone (the first sectors only; all but the
/// first sector, which then reads as zeros if it extended the file).
fn torn_variants(op: &Op) -> Vec<Op> {
    let Op::Write { ino, at, data } = op else {
        return Vec::new();
    };
    let end = at + data.len() as u64;
    let first_boundary = (at / SECTOR + 1) * SECTOR;
    if first_boundary >= end {
        return Vec::new();
    }
    let boundaries: Vec<u64> = (first_boundary..end).step_by(SECTOR as usize).collect();
    // First, middle and last boundary bound the count for long writes.
    let mut picks = alloc::vec![boundaries[0], boundaries[boundaries.len() / 2]];
    picks.push(boundaries[boundaries.len() - 1]);
    picks.dedup();
    let mut out = Vec::new();
    for b in picks {
        out.push(Op::Write {
            ino: *ino,
            at: *at,
            data: data[..(b - at) as usize].to_vec(),
        });
    }
    let mut rest = data.clone();
    for byte in &mut rest[..(first_boundary - at) as usize] {
        *byte = 0;
    }
    out.push(Op::Write {
        ino: *ino,
        at: *at,
        data: rest,
    });
    out
}

/// Calls `visit` with every disk image a power cut right after
/// `ops[..prefix]` could leave (see the module documentation); returns how
/// many there were.
pub(super) fn for_each_crash_image(
    ops: &[Op],
    prefix: usize,
    mut visit: impl FnMut(&Image),
) -> usize {
    let mut durable: Vec<Vec<u8>> = Vec::new();
    let mut names: BTreeMap<PathBuf, usize> = BTreeMap::new();
    let mut pending_dir: Vec<&Op> = Vec::new();
    let mut pending_data: Vec<&Op> = Vec::new();
    for op in &ops[..prefix] {
        match op {
            Op::Write { ino, .. } | Op::SetLen { ino, .. } => {
                if durable.len() <= *ino {
                    durable.resize(ino + 1, Vec::new());
                }
                pending_data.push(op);
            }
            Op::Sync { ino } => {
                if durable.len() <= *ino {
                    durable.resize(ino + 1, Vec::new());
                }
                pending_data.retain(|p| match p {
                    Op::Write { ino: i, .. } | Op::SetLen { ino: i, .. } if i == ino => {
                        apply_data(&mut durable[*ino], p);
                        false
                    }
                    _ => true,
                });
            }
            Op::Link { ino, .. } => {
                if durable.len() <= *ino {
                    durable.resize(ino + 1, Vec::new());
                }
                pending_dir.push(op);
            }
            Op::Rename { .. } | Op::Unlink { .. } => pending_dir.push(op),
            Op::SyncDir => {
                for p in pending_dir.drain(..) {
                    apply_dir(&mut names, p);
                }
            }
        }
    }
    let mut count = 0;
    for dir_prefix in 0..=pending_dir.len() {
        let mut now_names = names.clone();
        for p in &pending_dir[..dir_prefix] {
            apply_dir(&mut now_names, p);
        }
        let reachable: Vec<usize> = now_names.values().copied().collect();
        let data: Vec<&Op> = pending_data
            .iter()
            .copied()
            .filter(|op| match op {
                Op::Write { ino, .. } | Op::SetLen { ino, .. } => reachable.contains(ino),
                _ => false,
            })
            .collect();
        let image_with = |chosen: &[Op]| -> Image {
            let mut files = durable.clone();
            for op in chosen {
                if let Op::Write { ino, .. } | Op::SetLen { ino, .. } = op {
                    apply_data(&mut files[*ino], op);
                }
            }
            now_names
                .iter()
                .map(|(n, &ino)| (n.clone(), files[ino].clone()))
                .collect()
        };
        for mask in subsets(data.len()) {
            let chosen: Vec<Op> = data
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, op)| (*op).clone())
                .collect();
            visit(&image_with(&chosen));
            count += 1;
            for (i, op) in chosen.iter().enumerate() {
                for torn in torn_variants(op) {
                    let mut with_torn = chosen.clone();
                    with_torn[i] = torn;
                    visit(&image_with(&with_torn));
                    count += 1;
                }
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn unsynced_writes_may_or_may_not_reach_the_disk_synced_ones_do() {
        let mut fs = SimFs::default();
        let mut f = fs.open_rw(&path("log")).unwrap();
        fs.sync_dir(Path::new(".")).unwrap();
        fs.write_at(&mut f, 0, b"aa").unwrap();
        fs.sync_data(&mut f).unwrap();
        fs.write_at(&mut f, 2, b"bb").unwrap();
        let ops = fs.ops();
        let mut seen = Vec::new();
        let n = for_each_crash_image(&ops, ops.len(), |img| seen.push(img[&path("log")].clone()));
        assert_eq!(n, 2);
        assert_eq!(seen, [b"aa".to_vec(), b"aabb".to_vec()]);
        // Before the directory fsync the file may not exist at all.
        let mut names = Vec::new();
        for_each_crash_image(&ops, 1, |img| names.push(img.len()));
        assert_eq!(names, [0, 1]);
    }

    #[test]
    fn a_write_across_a_sector_boundary_can_be_torn_either_way() {
        let mut fs = SimFs::default();
        let mut f = fs.open_rw(&path("log")).unwrap();
        fs.sync_dir(Path::new(".")).unwrap();
        fs.write_at(&mut f, 500, &[7u8; 100]).unwrap();
        let ops = fs.ops();
        let mut lens = Vec::new();
        for_each_crash_image(&ops, ops.len(), |img| {
            let d = &img[&path("log")];
            lens.push((d.len(), d.get(500).copied(), d.last().copied()));
        });
        // Nothing; all; the first sector only (12 bytes); all but the
        // first sector (500..512 reads as zeros).
        assert_eq!(
            lens,
            [
                (0, None, None),
                (600, Some(7), Some(7)),
                (512, Some(7), Some(7)),
                (600, Some(0), Some(7))
            ]
        );
    }

    #[test]
    fn many_pending_writes_are_sampled_deterministically() {
        let s = subsets(10);
        assert!(s.contains(&0) && s.contains(&0x3FF));
        assert!(s.len() < 100, "{}", s.len());
        assert_eq!(s, subsets(10));
        assert_eq!(subsets(3).len(), 8);
    }

    #[test]
    fn an_injected_fault_fails_exactly_the_chosen_operation() {
        let mut fs = SimFs::default();
        fs.fail_next(OpKind::Sync, 1);
        let mut f = fs.open_rw(&path("log")).unwrap();
        assert!(fs.sync_data(&mut f).is_ok());
        assert!(fs.sync_data(&mut f).is_err());
        assert!(fs.sync_data(&mut f).is_ok());
    }
}
