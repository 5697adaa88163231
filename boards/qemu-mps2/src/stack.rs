//! The call stack's high-water mark: the stack is painted with a pattern
//! at boot and the deepest word no longer holding it is found on demand.
//!
//! cortex-m-rt puts the stack at the top of RAM (`_stack_start`) and lets
//! it grow down to the end of the static data (`_stack_end`); tasks'
//! futures live in statics, so the stack holds only what polling them (and
//! interrupts) needs. [`BUDGET`] is the documented limit (README): the
//! console's `exit` fails the run when the mark is over it.

/// The stack the firmware is allowed (bytes); see the README.
pub const BUDGET: usize = 8 * 1024;

const PAINT: u32 = 0x5AA5_C33C;

unsafe extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

fn bounds() -> (usize, usize) {
    // Only the linker symbols' addresses are taken.
    (
        core::ptr::addr_of!(_stack_end) as usize,
        core::ptr::addr_of!(_stack_start) as usize,
    )
}

/// Paints the free stack below the current stack pointer (keeping 64
/// bytes of margin for this function's own frame).
pub fn paint() {
    let (bottom, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize - 64;
    let mut at = bottom;
    while at < sp {
        // Safety: between the end of the statics and below the live stack.
        unsafe { (at as *mut u32).write_volatile(PAINT) };
        at += 4;
    }
}

/// What the stack used at most since [`paint`], and its size: `(used,
/// size)` in bytes.
pub fn high_water() -> (usize, usize) {
    let (bottom, top) = bounds();
    let mut at = bottom;
    // Safety: reads of the painted region.
    while at < top && unsafe { (at as *const u32).read_volatile() } == PAINT {
        at += 4;
    }
    (top - at, top - bottom)
}
