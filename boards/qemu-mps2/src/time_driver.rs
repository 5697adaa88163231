//! The embassy-time driver on the Cortex-M SysTick: embassy-time 0.5 ships
//! none for a plain Cortex-M core.
//!
//! SysTick counts the processor clock (CLKSOURCE = 1) and interrupts every
//! millisecond; the tick rate is `tick-hz-1_000` (Cargo.toml). Each
//! interrupt advances a 64-bit tick count and wakes the timers that are
//! due, from embassy's timer queue (`embassy-time-queue-utils`, the queue
//! integrated in the executor's tasks). A periodic tick is simple and
//! costs a few dozen instructions per millisecond; a tickless driver
//! (reprogramming the 24-bit SysTick to the next deadline) would save
//! them, which matters on a battery, not under QEMU.
//!
//! Also a cycle count ([`cycles`]: ticks and the SysTick counter) and the
//! cycles the executor spent polling ([`busy`]), for the console's `cpu`
//! report. Under `qemu-system-arm -icount shift=0` every instruction is
//! 1 ns of virtual time, so busy cycles × (10⁹ / core clock) are the
//! instructions executed in thread mode (interrupt handlers that run while
//! the core sleeps are not counted).

use core::cell::{Cell, RefCell};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

struct SysTickDriver {
    ticks: Mutex<Cell<u64>>,
    /// SysTick's reload value + 1: core clock cycles per tick.
    cycles_per_tick: Mutex<Cell<u32>>,
    /// Cycles the executor spent polling (see `main.rs`).
    busy: Mutex<Cell<u64>>,
    alarm: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    cycles_per_tick: Mutex::new(Cell::new(0)),
    busy: Mutex::new(Cell::new(0)),
    alarm: Mutex::new(Cell::new(u64::MAX)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.ticks.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &core::task::Waker) {
        critical_section::with(|cs| {
            let mut queue = self.queue.borrow(cs).borrow_mut();
            if queue.schedule_wake(at, waker) {
                let now = self.ticks.borrow(cs).get();
                self.alarm.borrow(cs).set(queue.next_expiration(now));
            }
        });
    }
}

/// Starts SysTick at 1 kHz from the core clock `cpu_hz`.
pub fn start(mut syst: SYST, cpu_hz: u32) {
    critical_section::with(|cs| DRIVER.cycles_per_tick.borrow(cs).set(cpu_hz / 1000));
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(cpu_hz / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let ticks = DRIVER.ticks.borrow(cs);
        let now = ticks.get() + 1;
        ticks.set(now);
        let alarm = DRIVER.alarm.borrow(cs);
        if now >= alarm.get() {
            alarm.set(DRIVER.queue.borrow(cs).borrow_mut().next_expiration(now));
        }
    });
}

/// Core clock cycles since [`start`]: whole ticks and the SysTick
/// counter's progress in the current one (its resolution is one cycle).
pub fn cycles() -> u64 {
    critical_section::with(|cs| {
        let per_tick = u64::from(DRIVER.cycles_per_tick.borrow(cs).get());
        let ticks = DRIVER.ticks.borrow(cs).get();
        let mut into = per_tick.saturating_sub(1 + u64::from(SYST::get_current()));
        // A wrap not yet counted by the (masked) interrupt: one tick more.
        if cortex_m::peripheral::SCB::is_pendst_pending() {
            into = per_tick + per_tick.saturating_sub(1 + u64::from(SYST::get_current()));
        }
        ticks * per_tick + into
    })
}

/// Counts `cycles` as spent polling tasks.
pub fn add_busy(cycles: u64) {
    critical_section::with(|cs| {
        let busy = DRIVER.busy.borrow(cs);
        busy.set(busy.get() + cycles);
    });
}

/// Cycles spent polling tasks since boot, and cycles since boot.
pub fn busy() -> (u64, u64) {
    let now = cycles();
    (
        critical_section::with(|cs| DRIVER.busy.borrow(cs).get()),
        now,
    )
}
