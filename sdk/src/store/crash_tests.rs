//! Crash exploration of [`FileStore`]: a workload runs over the recording
//! [`SimFs`], then every disk image a power cut after every prefix of its
//! operations could leave is reopened and checked:
//!
//! - every record whose persist returned `Ok` is replayed, unless its
//!   removal was durable (a later persist synced the log after it);
//! - a record whose removal was durable is not replayed;
//! - nothing that was never persisted appears, and every replayed record
//!   has the bytes it was persisted with;
//! - replay keeps key order;
//! - the reopened store accepts a new persist, and a second reopen
//!   replays it after the others.

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use std::path::{Path, PathBuf};
use std::println;

use super::Store;
use super::file::FileStore;
use super::sim_fs::{Image, Op, SimFs, for_each_crash_image};

fn block_on<F: Future>(f: F) -> F::Output {
    embassy_futures::block_on(f)
}

fn log_path() -> PathBuf {
    PathBuf::from("outbox.log")
}

/// What the workload did, by position in the operation log.
#[derive(Default)]
struct History {
    /// key → (operations before its persist began, its bytes).
    started: BTreeMap<u32, (usize, Vec<u8>)>,
    /// key → operations when its persist returned `Ok`.
    acked: BTreeMap<u32, usize>,
    /// key → operations before its remove began.
    removed: BTreeMap<u32, usize>,
    /// key → operations when its removal became durable.
    removal_durable: BTreeMap<u32, usize>,
}

struct Workload {
    fs: SimFs,
    store: Option<FileStore<SimFs>>,
    history: History,
    /// Removals not yet made durable by a synced persist.
    undurable_removals: Vec<u32>,
    compact_at: u64,
}

impl Workload {
    fn new(compact_at: u64) -> Self {
        let fs = SimFs::default();
        let store = FileStore::open_with(fs.clone(), log_path())
            .unwrap()
            .with_compaction_threshold(compact_at);
        Self {
            fs,
            store: Some(store),
            history: History::default(),
            undurable_removals: Vec::new(),
            compact_at,
        }
    }

    fn persist(&mut self, key: u32, len: usize) {
        let record: Vec<u8> = (0..len)
            .map(|i| (key as usize * 31 + i * 7) as u8)
            .collect();
        self.history
            .started
            .insert(key, (self.fs.op_count(), record.clone()));
        let store = self.store.as_mut().unwrap();
        block_on(store.persist(key, len, |b| b.copy_from_slice(&record))).unwrap();
        let at = self.fs.op_count();
        self.history.acked.insert(key, at);
        for k in self.undurable_removals.drain(..) {
            self.history.removal_durable.insert(k, at);
        }
    }

    fn remove(&mut self, key: u32) {
        self.history.removed.insert(key, self.fs.op_count());
        let store = self.store.as_mut().unwrap();
        block_on(store.remove(key)).unwrap();
        self.undurable_removals.push(key);
    }

    fn reopen(&mut self) {
        drop(self.store.take());
        let mut store = FileStore::open_with(self.fs.clone(), log_path())
            .unwrap()
            .with_compaction_threshold(self.compact_at);
        let live: Vec<u32> = self
            .history
            .acked
            .keys()
            .copied()
            .filter(|k| !self.history.removed.contains_key(k))
            .collect();
        assert_eq!(
            replayed(&mut store).keys().copied().collect::<Vec<_>>(),
            live
        );
        self.store = Some(store);
    }
}

fn replayed<F: super::fs::StoreFs>(s: &mut FileStore<F>) -> BTreeMap<u32, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut last = None;
    block_on(s.replay(|k, r| {
        assert!(
            last < Some(k),
            "replay out of key order: {k} after {last:?}"
        );
        last = Some(k);
        out.insert(k, r.to_vec());
    }))
    .unwrap();
    out
}

/// Checks one crash image against the history; `Err` says what broke.
fn check_image(image: &Image, h: &History, prefix: usize) -> Result<(), alloc::string::String> {
    use alloc::format;
    let fs = SimFs::from_image(image);
    let mut store =
        FileStore::open_with(fs.clone(), log_path()).map_err(|e| format!("reopen failed: {e}"))?;
    let got = replayed(&mut store);
    for (key, bytes) in &got {
        match h.started.get(key) {
            Some((start, want)) if *start < prefix => {
                if bytes != want {
                    return Err(format!("record {key} replayed with other bytes"));
                }
            }
            _ => return Err(format!("record {key} replayed but never persisted")),
        }
        if let Some(&d) = h.removal_durable.get(key)
            && d <= prefix
        {
            return Err(format!(
                "record {key} replayed after its removal was durable"
            ));
        }
    }
    for (key, &acked) in &h.acked {
        let removal_began = h.removed.get(key).is_some_and(|&r| r < prefix);
        if acked <= prefix && !removal_began && !got.contains_key(key) {
            return Err(format!("record {key} persisted (Ok) but not replayed"));
        }
    }
    // The recovered log takes a new record and keeps it.
    let sentinel = 1_000_000;
    block_on(store.persist(sentinel, 3, |b| b.copy_from_slice(b"new")))
        .map_err(|e| format!("persist after recovery failed: {e}"))?;
    drop(store);
    let mut store =
        FileStore::open_with(fs, log_path()).map_err(|e| format!("second reopen failed: {e}"))?;
    let mut again = replayed(&mut store);
    if again.remove(&sentinel).as_deref() != Some(b"new".as_slice()) {
        return Err("record persisted after recovery lost".into());
    }
    if again != got {
        return Err("second reopen replays other records".into());
    }
    Ok(())
}

/// Explores every crash point of the workload; returns (cut points,
/// crash images).
fn explore(w: &Workload) -> (usize, usize) {
    let ops = w.fs.ops();
    let mut images = 0;
    for prefix in 0..=ops.len() {
        let mut failure = None;
        images += for_each_crash_image(&ops, prefix, |image| {
            if failure.is_none()
                && let Err(e) = check_image(image, &w.history, prefix)
            {
                failure = Some((e, image.clone()));
            }
        });
        if let Some((e, image)) = failure {
            let sizes: Vec<(&Path, usize)> =
                image.iter().map(|(n, d)| (n.as_path(), d.len())).collect();
            panic!(
                "crash after {prefix} of {} operations ({:?}): {e}; image {sizes:?}",
                ops.len(),
                ops.get(prefix.wrapping_sub(1)).map(op_name)
            );
        }
    }
    (ops.len() + 1, images)
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Write { .. } => "write",
        Op::SetLen { .. } => "set_len",
        Op::Sync { .. } => "sync_data",
        Op::Link { .. } => "create",
        Op::Rename { .. } => "rename",
        Op::Unlink { .. } => "unlink",
        Op::SyncDir => "sync_dir",
    }
}

/// Records of 10 to 2100 bytes cross 512-byte sectors; removals come out
/// of order and in batches (so several unsynced writes are pending at
/// once, ten at the end); one record lives through all of it; the store
/// is reopened midway and at the end.
fn run_workload(compact_at: u64) -> Workload {
    let mut w = Workload::new(compact_at);
    let sizes = [10usize, 150, 600, 40, 2100, 90, 480, 1300];
    w.persist(1, 64); // long-lived
    let mut key = 2;
    let mut survivors = Vec::new();
    for round in 0..10 {
        let first = key;
        for i in 0..5 {
            w.persist(key, sizes[(round + i) % sizes.len()]);
            key += 1;
        }
        // Out of order: the second, the fifth, the first, the third; the
        // fourth survives the round.
        for k in [1, 4, 0, 2] {
            w.remove(first + k);
        }
        survivors.push(first + 3);
        if round == 4 {
            w.reopen();
        }
    }
    // Ten removals with no sync between them: more pending writes than
    // are explored exhaustively (the sampled path), newest first.
    for &k in survivors.iter().rev() {
        w.remove(k);
    }
    w.persist(key, 20);
    w.reopen();
    w
}

#[test]
fn filestore_survives_a_power_cut_after_every_operation() {
    // A small compaction threshold (compacting every round or two) and
    // the default one (never compacting here: long runs of removals).
    let (mut cuts, mut images) = (0, 0);
    for (compact_at, min_compactions) in [(4000, 2), (64 * 1024, 0)] {
        let w = run_workload(compact_at);
        let compactions =
            w.fs.ops()
                .iter()
                .filter(|o| matches!(o, Op::Rename { .. }))
                .count();
        assert!(
            compactions >= min_compactions,
            "threshold {compact_at}: {compactions} compactions"
        );
        let (c, i) = explore(&w);
        println!(
            "filestore crash exploration, compaction threshold {compact_at}: \
             {c} cut points, {i} crash states, {compactions} compactions"
        );
        cuts += c;
        images += i;
    }
    println!("filestore crash exploration: {cuts} cut points, {images} crash states in all");
    assert!(
        images > 4000,
        "explored only {images} crash states at {cuts} cut points"
    );
}

#[test]
fn migrating_a_first_format_log_survives_a_power_cut_at_every_step() {
    // A durable version 1 log with three live records and a removal; the
    // open that rewrites it in version 2 is cut at every operation.
    let mut v1 = Vec::new();
    let records: [(u32, Vec<u8>); 3] = [(1, vec![1; 700]), (2, vec![2; 30]), (4, vec![4; 900])];
    for (key, record) in &records {
        super::log::tests::encode_v1(&mut v1, super::log::KIND_PUT, *key, record);
    }
    super::log::tests::encode_v1(&mut v1, super::log::KIND_PUT, 3, b"gone");
    super::log::tests::encode_v1(&mut v1, super::log::KIND_REMOVE, 3, b"");
    let fs = SimFs::from_image(&Image::from([(log_path(), v1)]));
    let base = fs.op_count();
    let store = FileStore::open_with(fs.clone(), log_path()).unwrap();
    assert!(store.migrated());
    drop(store);
    let mut history = History::default();
    for (key, record) in &records {
        history.started.insert(*key, (0, record.clone()));
        history.acked.insert(*key, base);
    }
    history.started.insert(3, (0, b"gone".to_vec()));
    history.removed.insert(3, 0);
    history.removal_durable.insert(3, base);
    let ops = fs.ops();
    assert!(ops.iter().any(|o| matches!(o, Op::Rename { .. })));
    let mut images = 0;
    for prefix in base..=ops.len() {
        images += for_each_crash_image(&ops, prefix, |image| {
            if let Err(e) = check_image(image, &history, prefix) {
                panic!("crash after {prefix} of {} operations: {e}", ops.len());
            }
        });
    }
    println!(
        "filestore migration crash exploration: {} cut points, {images} crash states",
        ops.len() + 1 - base
    );
    assert!(images > ops.len(), "explored only {images} crash states");
}
