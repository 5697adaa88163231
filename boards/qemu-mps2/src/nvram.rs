//! A NOR flash model over a RAM window that survives a warm reset: the
//! durable outbox's "flash" under QEMU, which emulates no writable flash on
//! these machines.
//!
//! QEMU does not clear RAM on a system reset (SYSRESETREQ), and `-kernel`
//! reloads only the ELF's own segments; `memory.x` keeps the program's RAM
//! below the window. So what the outbox wrote before a reset is there
//! after it, as in real flash; a new QEMU process starts with zeroed RAM,
//! like a board whose flash was never written.
//!
//! The window: a 4 KiB header page (a magic word marking it formatted, a
//! boot counter) and [`OUTBOX_LEN`] bytes of flash. On a boot that finds no
//! magic the flash is erased to 0xFF (as flash leaves the factory) and the
//! magic written. The flash behaves as NOR: erase sets 4 KiB pages to
//! 0xFF, a write (4-byte aligned, 4-byte multiples) can only clear bits
//! (the stored value is old AND new, so writing a word twice is allowed:
//! `MultiwriteNorFlash`), out-of-range or misaligned calls are errors.
//! Not modelled: timing, wear, and what a power cut in the middle of a
//! write leaves (boards/app's crash tests explore that on a host model).

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashErrorKind, ReadNorFlash,
};

/// The outbox's flash size: 8 pages of 4 KiB.
pub const OUTBOX_LEN: u32 = 32 * 1024;
const PAGE: u32 = 4096;
const MAGIC: u32 = 0x454D_5146; // "EMQF"

/// What the boot found in the window.
pub struct Boot {
    /// 1 on a fresh QEMU process, counting up over warm resets.
    pub count: u32,
    /// Whether the flash was kept from before (else it was just erased).
    pub kept: bool,
}

/// The flash of the outbox, `OUTBOX_LEN` bytes after the header page.
pub struct NvramFlash {
    base: usize,
}

/// Checks the header at `window`, formats the window when it has none, and
/// counts the boot.
///
/// # Safety
/// `window` is RAM of at least `PAGE + OUTBOX_LEN` bytes that nothing else
/// uses (outside every linker section), and this is called once.
pub unsafe fn open(window: usize) -> (NvramFlash, Boot) {
    let magic = window as *mut u32;
    let count = (window + 4) as *mut u32;
    let flash = NvramFlash {
        base: window + PAGE as usize,
    };
    // Safety: the caller's guarantee.
    let boot = unsafe {
        let kept = magic.read_volatile() == MAGIC;
        if !kept {
            for offset in (0..OUTBOX_LEN as usize).step_by(4) {
                ((flash.base + offset) as *mut u32).write_volatile(u32::MAX);
            }
            count.write_volatile(0);
            magic.write_volatile(MAGIC);
        }
        let n = count.read_volatile().wrapping_add(1);
        count.write_volatile(n);
        Boot { count: n, kept }
    };
    (flash, boot)
}

impl NvramFlash {
    fn check(&self, offset: u32, len: usize, align: u32) -> Result<(), NorFlashErrorKind> {
        let end = u64::from(offset) + len as u64;
        if end > u64::from(OUTBOX_LEN) {
            return Err(NorFlashErrorKind::OutOfBounds);
        }
        if !offset.is_multiple_of(align) || !(len as u32).is_multiple_of(align) {
            return Err(NorFlashErrorKind::NotAligned);
        }
        Ok(())
    }

    fn byte(&self, offset: u32) -> *mut u8 {
        (self.base + offset as usize) as *mut u8
    }
}

impl ErrorType for NvramFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for NvramFlash {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.check(offset, bytes.len(), 1)?;
        for (i, out) in bytes.iter_mut().enumerate() {
            // Safety: inside the window (checked above).
            *out = unsafe { self.byte(offset + i as u32).read_volatile() };
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        OUTBOX_LEN as usize
    }
}

impl NorFlash for NvramFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE as usize;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(NorFlashErrorKind::OutOfBounds);
        }
        self.check(from, (to - from) as usize, PAGE)?;
        for offset in from..to {
            // Safety: inside the window (checked above).
            unsafe { self.byte(offset).write_volatile(0xFF) };
        }
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.check(offset, bytes.len(), Self::WRITE_SIZE as u32)?;
        for (i, &new) in bytes.iter().enumerate() {
            let cell = self.byte(offset + i as u32);
            // Safety: inside the window (checked above). NOR: bits only clear.
            unsafe { cell.write_volatile(cell.read_volatile() & new) };
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for NvramFlash {}
