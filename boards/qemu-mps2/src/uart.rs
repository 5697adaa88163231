//! The log and the console on the CMSDK APB UART0: text lines out (the
//! host test reads them from QEMU's `-serial stdio`), bytes in (console
//! commands, see `console.rs`).
//!
//! Registers (CMSDK APB UART, Arm DDI 0479): DATA +0x0, STATE +0x4 (bit 0
//! TX buffer full, bit 1 RX buffer full), CTRL +0x8 (bit 0 TX enable, bit 1
//! RX enable; QEMU drops what is written while TX is disabled), BAUDDIV
//! +0x10. Polled, no interrupts: a line is written inside a critical
//! section so lines from different tasks never interleave.

use core::fmt::{self, Write};

const DATA: usize = 0x0;
const STATE: usize = 0x4;
const CTRL: usize = 0x8;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_RX_ENABLE: u32 = 0b11;

fn reg(offset: usize) -> *mut u32 {
    (crate::machine::MACHINE.uart0 + offset) as *mut u32
}

/// Enables the transmitter and receiver (115 200 baud at the core clock;
/// QEMU ignores the rate but wants BAUDDIV >= 16).
pub fn init() {
    let bauddiv = crate::machine::MACHINE.cpu_hz / 115_200;
    // Safety: UART0's registers at the machine's address; only this module
    // touches them.
    unsafe {
        reg(BAUDDIV).write_volatile(bauddiv);
        reg(CTRL).write_volatile(CTRL_TX_RX_ENABLE);
    }
}

/// A byte from the receiver, if one is waiting.
pub fn read_byte() -> Option<u8> {
    // Safety: as in `init`.
    unsafe {
        (reg(STATE).read_volatile() & STATE_RX_FULL != 0).then(|| reg(DATA).read_volatile() as u8)
    }
}

struct Tx;

impl Write for Tx {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            // Safety: as in `init`.
            unsafe {
                while reg(STATE).read_volatile() & STATE_TX_FULL != 0 {}
                reg(DATA).write_volatile(u32::from(byte));
            }
        }
        Ok(())
    }
}

/// Writes one log line: `[seconds.millis] text`.
pub fn line(args: fmt::Arguments<'_>) {
    let ms = embassy_time::Instant::now().as_millis();
    critical_section::with(|_| {
        let _ = write!(Tx, "[{:>6}.{:03}] ", ms / 1000, ms % 1000);
        let _ = Tx.write_fmt(args);
        let _ = Tx.write_str("\n");
    });
}

/// `log!("...", args)`: one line on UART0.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::uart::line(format_args!($($arg)*)) };
}
