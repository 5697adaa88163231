//! Power-cut exploration of [`FlashStore`](super::FlashStore) (issue 18).
//!
//! [`CutFlash`] is a fault injector, since no real flash can be cut at a
//! chosen byte on the host: NOR flash in RAM (erase sets 0xFF, a write can
//! only clear bits) whose power goes after a chosen number of events. An
//! event is one programmed byte or one quarter of a page erase. The byte
//! being programmed when the power goes is left partly programmed (only
//! some of the bits it should clear are cleared); the quarter being erased
//! is left partly erased (some bits set, the rest of the old content).
//!
//! Two workloads persist records of 20 to 120 bytes, remove them out of
//! order a few behind, and wrap the ring several times; the second one
//! first persists a record it never removes (issue 18 item 5: records
//! skipped at replay, whose restore failed or whose removal failed stay
//! for ever). Each runs once without a cut, where every persist must
//! succeed while free space exists (the live records' footprints plus the
//! new one's within `FREE_LIMIT`: the range less one erase unit, page
//! markers and per-page tails). Then, for cut points spread over every
//! event of the workload (every erase step, and programmed bytes at a
//! stride that visits every offset in a word), the workload runs until
//! the power goes, the flash is reopened with power back, and:
//!
//! - every record whose persist returned `Ok` is replayed, unless its
//!   removal began (flash writes are durable when they return);
//! - nothing never persisted appears, records keep their bytes, and no
//!   key appears twice (a record being copied may be in flash twice);
//! - replay keeps key order;
//! - a new persist succeeds (the workloads keep at most six records of
//!   at most 120 bytes, well within `FREE_LIMIT`) and is replayed last.

extern crate alloc;
extern crate std;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use embassy_futures::block_on;
use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use embermq::store::Store;
use std::println;

use super::FlashStore;

const PAGE: usize = 512;
const PAGES: usize = 6;
/// An erase goes in this many steps (a power cut can stop between them).
const ERASE_STEPS: usize = 4;

/// NOR flash in RAM whose power can go after a number of events.
struct CutFlash {
    bytes: Vec<u8>,
    /// Events (programmed bytes, erase steps) before the power goes.
    power_left: Option<usize>,
    /// Events so far.
    events: usize,
    /// The power went: every operation fails until the flash is reopened.
    dead: bool,
    /// The event numbers of erase steps.
    erase_events: Vec<usize>,
}

#[derive(Debug, PartialEq)]
struct PowerCut;

impl NorFlashError for PowerCut {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

impl CutFlash {
    fn new(power_left: Option<usize>) -> Self {
        Self {
            bytes: vec![0xFF; PAGE * PAGES],
            power_left,
            events: 0,
            dead: false,
            erase_events: Vec::new(),
        }
    }

    /// Counts one event; `true` if the power goes during it.
    fn event(&mut self) -> bool {
        self.events += 1;
        match self.power_left.as_mut() {
            Some(0) => {
                self.dead = true;
                true
            }
            Some(left) => {
                *left -= 1;
                false
            }
            None => false,
        }
    }

    /// Power back (a reset): the content stays.
    fn restore(&mut self) {
        self.power_left = None;
        self.dead = false;
    }
}

impl ErrorType for CutFlash {
    type Error = PowerCut;
}

impl ReadNorFlash for CutFlash {
    const READ_SIZE: usize = 4;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), PowerCut> {
        if self.dead {
            return Err(PowerCut);
        }
        let start = offset as usize;
        bytes.copy_from_slice(&self.bytes[start..start + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

impl NorFlash for CutFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), PowerCut> {
        if self.dead {
            return Err(PowerCut);
        }
        for page in (from as usize..to as usize).step_by(PAGE) {
            for step in 0..ERASE_STEPS {
                let part = page + step * PAGE / ERASE_STEPS..page + (step + 1) * PAGE / ERASE_STEPS;
                self.erase_events.push(self.events);
                if self.event() {
                    // Partly erased: some bits set, the old content below.
                    for b in &mut self.bytes[part] {
                        *b |= 0x5A;
                    }
                    return Err(PowerCut);
                }
                self.bytes[part].fill(0xFF);
            }
        }
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), PowerCut> {
        if self.dead {
            return Err(PowerCut);
        }
        for (i, &byte) in bytes.iter().enumerate() {
            let at = offset as usize + i;
            if self.event() {
                // Partly programmed: only some of the bits to clear are.
                self.bytes[at] &= byte | 0xA5;
                return Err(PowerCut);
            }
            self.bytes[at] &= byte;
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for CutFlash {}

/// What the workload did, counted in flash events.
#[derive(Default)]
struct History {
    /// key → its bytes (its persist began).
    started: BTreeMap<u32, Vec<u8>>,
    /// Persist returned `Ok`.
    acked: Vec<u32>,
    /// Remove began.
    removing: Vec<u32>,
    /// Remove returned `Ok`.
    removed: Vec<u32>,
}

fn record_of(key: u32) -> Vec<u8> {
    let len = 20 + (key as usize * 37) % 101;
    (0..len).map(|i| (key as usize * 13 + i) as u8).collect()
}

fn open(flash: CutFlash, buf: &mut [u8]) -> FlashStore<'_, CutFlash> {
    FlashStore::new(flash, 0..(PAGE * PAGES) as u32, buf).unwrap()
}

/// What the workload keeps besides its churn of short-lived records.
#[derive(Clone, Copy, Debug)]
enum Workload {
    /// Only records removed a few behind.
    Churn,
    /// Key 1 persisted first and never removed (a record skipped at
    /// replay, whose restore failed or whose removal failed), then the
    /// churn.
    LongLived,
}

/// Flash bytes one record of `len` bytes takes: sequential-storage's
/// 8-byte item header, then the 4-byte key and the record, padded to a
/// word.
const fn footprint(len: usize) -> usize {
    8 + (KEY_LEN + len).div_ceil(WORD) * WORD
}

/// The longest record of the workloads ([`record_of`]).
const MAX_RECORD: usize = 120;
const KEY_LEN: usize = 4;
const WORD: usize = 4;

/// How many bytes of records (by [`footprint`]) the store must hold: the
/// whole range less one erase unit (a page the store may keep erased to
/// copy live records into), less, in each other page, its two marker
/// words and the largest tail a record that does not fit may leave
/// unused (an item never spans pages). Free space exists for a new
/// record while the live records' footprints plus its own stay within
/// this.
const FREE_LIMIT: usize = (PAGES - 1) * (PAGE - 2 * WORD - (footprint(MAX_RECORD) - WORD));

/// Runs the workload until it ends or the power goes; returns the flash,
/// what happened, and whether it ran to the end. A persist refused while
/// free space exists (see [`FREE_LIMIT`]) is a failure of the store.
fn run(workload: Workload, power_left: Option<usize>) -> (CutFlash, History, bool) {
    let mut buf = [0u8; 256];
    let mut store = open(CutFlash::new(power_left), &mut buf);
    let mut h = History::default();
    let mut live: Vec<u32> = Vec::new();
    let mut long_lived: Vec<u32> = Vec::new();
    let mut finished = true;
    'work: for key in 1..=150u32 {
        let record = record_of(key);
        h.started.insert(key, record.clone());
        if let Err(e) = block_on(store.persist(key, record.len(), |b| b.copy_from_slice(&record))) {
            let live_bytes: usize = live
                .iter()
                .chain(&long_lived)
                .map(|k| footprint(record_of(*k).len()))
                .sum();
            let flash = store.into_flash();
            assert!(
                flash.dead || live_bytes + footprint(record.len()) > FREE_LIMIT,
                "{workload:?}: persist of record {key} refused ({e}) without a power cut \
                 while {} records of {live_bytes} bytes are live, of {FREE_LIMIT} the store \
                 must hold",
                live.len() + long_lived.len()
            );
            return (flash, h, false);
        }
        h.acked.push(key);
        if matches!(workload, Workload::LongLived) && key == 1 {
            long_lived.push(key);
            continue;
        }
        live.push(key);
        // Out of order: when four are live, remove the second, then the
        // first.
        if live.len() == 4 {
            for at in [1, 0] {
                let k = live.remove(at);
                h.removing.push(k);
                if block_on(store.remove(k)).is_err() {
                    finished = false;
                    break 'work;
                }
                h.removed.push(k);
            }
        }
    }
    let flash = store.into_flash();
    if finished {
        assert!(
            !flash.dead,
            "the workload ended without its power cut: an error was swallowed"
        );
    } else {
        assert!(flash.dead, "a store operation failed without a power cut");
    }
    (flash, h, finished)
}

/// Reopens the flash after a cut and checks the invariants.
fn check(mut flash: CutFlash, h: &History) -> Result<(), String> {
    flash.restore();
    let mut buf = [0u8; 256];
    let mut store = open(flash, &mut buf);
    let mut got: Vec<(u32, Vec<u8>)> = Vec::new();
    block_on(store.replay(|k, r| got.push((k, r.to_vec()))))
        .map_err(|e| format!("replay after the cut failed: {e}"))?;
    for pair in got.windows(2) {
        if pair[0].0 >= pair[1].0 {
            return Err(format!(
                "replay out of key order: {} then {}",
                pair[0].0, pair[1].0
            ));
        }
    }
    for (key, bytes) in &got {
        match h.started.get(key) {
            Some(want) if want == bytes => {}
            Some(_) => return Err(format!("record {key} replayed with other bytes")),
            None => return Err(format!("record {key} replayed but never persisted")),
        }
        if h.removed.contains(key) {
            return Err(format!(
                "record {key} replayed after its removal returned Ok"
            ));
        }
    }
    for key in &h.acked {
        if !h.removing.contains(key) && !got.iter().any(|(k, _)| k == key) {
            return Err(format!("record {key} persisted (Ok) but not replayed"));
        }
    }
    let key = 1_000;
    block_on(store.persist(key, 3, |b| b.copy_from_slice(b"new")))
        .map_err(|e| format!("persist after the cut failed: {e}"))?;
    let mut last = None;
    block_on(store.replay(|k, r| last = Some((k, r.to_vec()))))
        .map_err(|e| format!("second replay failed: {e}"))?;
    if last != Some((key, b"new".to_vec())) {
        return Err(format!(
            "the record persisted after the cut is not last: {last:?}"
        ));
    }
    Ok(())
}

/// Runs `workload` to its end, then cut at every erase step and at every
/// 7th programmed byte (a stride that visits every offset in a word);
/// reopens after each cut and checks the invariants. Returns the number
/// of cut points.
fn explore(workload: Workload) -> usize {
    let (flash, _, finished) = run(workload, None);
    assert!(finished, "{workload:?} did not run to its end");
    let events = flash.events;
    // The workload must wrap the ring several times.
    let erases = flash.erase_events.len() / ERASE_STEPS;
    assert!(erases > 3 * PAGES, "{workload:?}: {erases} page erases");
    let mut cuts: Vec<usize> = (0..events).step_by(7).collect();
    cuts.extend(&flash.erase_events);
    cuts.sort_unstable();
    cuts.dedup();
    for &cut in &cuts {
        let (flash, history, finished) = run(workload, Some(cut));
        assert!(
            !finished,
            "{workload:?}, cut {cut} of {events}: the power never went"
        );
        if let Err(e) = check(flash, &history) {
            panic!("{workload:?}: power cut at event {cut} of {events}: {e}");
        }
    }
    println!(
        "flash store power-cut exploration, {workload:?}: {} cut points of {events} events, \
         {erases} page erases",
        cuts.len()
    );
    assert!(cuts.len() > 1000, "explored only {} cut points", cuts.len());
    cuts.len()
}

#[test]
fn flash_store_survives_a_power_cut_after_any_programmed_byte_and_within_erases() {
    explore(Workload::Churn);
}

/// Issue 18 item 5: one record that stays while the others come and go
/// must not make the store refuse records while most of its pages are
/// free, and the power-cut invariants hold around it.
#[test]
fn issue18_5_a_long_lived_record_does_not_stall_the_ring() {
    explore(Workload::LongLived);
}
