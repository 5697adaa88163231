//! The two QEMU machines this firmware runs on: where their peripherals
//! are, which interrupt the Ethernet controller raises, the core clock,
//! and the RAM window used as the "NOR flash" of the durable outbox.
//!
//! Measured on QEMU 7.2 (Debian `qemu-system-arm`) and in QEMU's
//! `hw/arm/mps2.c` / `hw/arm/mps2-tz.c`. `memory.x` (from
//! `memory-<machine>.x`, chosen by `build.rs`) keeps the program's RAM
//! below [`NVRAM_BASE`], so `-kernel` never loads anything there.

/// What a machine is.
pub struct Machine {
    /// The name in logs (`mps2-an386`, `mps2-an505`).
    pub name: &'static str,
    /// The core.
    pub core: &'static str,
    /// CMSDK APB UART0.
    pub uart0: usize,
    /// The LAN9118's registers.
    pub lan9118: usize,
    /// The LAN9118's NVIC interrupt number.
    pub lan9118_irq: u16,
    /// The core clock (SysTick's processor clock source), Hz.
    pub cpu_hz: u32,
    /// The RAM window kept across a warm reset (see `nvram.rs`).
    pub nvram_base: usize,
}

/// mps2-an386: Cortex-M4F, code at 0x0 (4 MiB), RAM at 0x2000_0000 (4 MiB).
#[cfg(feature = "an386")]
pub const MACHINE: Machine = Machine {
    name: "mps2-an386",
    core: "Cortex-M4F",
    uart0: 0x4000_4000,
    lan9118: 0x4020_0000,
    lan9118_irq: 13,
    cpu_hz: 25_000_000,
    nvram_base: 0x2010_0000,
};

/// mps2-an505 (booted Secure): Cortex-M33, code at 0x1000_0000 (4 MiB),
/// RAM at 0x3800_0000 (2 MiB).
#[cfg(feature = "an505")]
pub const MACHINE: Machine = Machine {
    name: "mps2-an505",
    core: "Cortex-M33",
    uart0: 0x5020_0000,
    lan9118: 0x5200_0000,
    lan9118_irq: 48,
    cpu_hz: 20_000_000,
    nvram_base: 0x3810_0000,
};

/// The NVIC number of an external interrupt (no PAC: these machines have
/// none).
#[derive(Clone, Copy)]
pub struct Irq(pub u16);

// Safety: the numbers are the machine's external interrupt lines.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}
