//! The serial console on UART0's receiver: one command per line, for the
//! person at the terminal and for the host test (which writes to QEMU's
//! standard input):
//!
//! - `stack`: logs the stack's high-water mark and budget;
//! - `cpu`: logs the cycles spent polling tasks since boot (instructions
//!   under `-icount shift=0`, see `time_driver.rs`);
//! - `net`: logs the Ethernet driver's frame counters;
//! - `reset`: a warm reset (SYSRESETREQ), as a watchdog or a power glitch
//!   would; the outbox in the NVRAM window survives it;
//! - `exit`: logs the stack report and ends QEMU with exit code 0, or 2 if
//!   the stack went over its budget.
//!
//! Polled every 20 ms (QEMU's UART model buffers the host's input until
//! the receiver is read). Unknown lines are answered in the log.

use core::sync::atomic::Ordering;

use embassy_time::Timer;

use crate::{log, semihost, stack, uart};

/// Logs the stack report; whether it is within the budget.
pub fn report_stack() -> bool {
    let (used, size) = stack::high_water();
    let within = used <= stack::BUDGET;
    log!(
        "stack: high-water {used} of {size} bytes, budget {} ({})",
        stack::BUDGET,
        if within { "within" } else { "OVER BUDGET" }
    );
    within
}

/// Reads and runs console commands for ever.
#[embassy_executor::task]
pub async fn console_task(lan: &'static embassy_net_lan9118::InterruptState) -> ! {
    let mut line: heapless::String<32> = heapless::String::new();
    loop {
        while let Some(byte) = uart::read_byte() {
            match byte {
                b'\r' | b'\n' => {
                    run(line.trim(), lan);
                    line.clear();
                }
                // A line longer than any command is refused whole.
                _ => {
                    if line.push(char::from(byte)).is_err() {
                        log!("console: line too long, ignored");
                        line.clear();
                    }
                }
            }
        }
        Timer::after_millis(20).await;
    }
}

fn run(command: &str, lan: &embassy_net_lan9118::InterruptState) {
    match command {
        "" => {}
        "stack" => {
            report_stack();
        }
        "cpu" => {
            let (busy, total) = crate::time_driver::busy();
            let per_cycle = 1_000_000_000 / u64::from(crate::machine::MACHINE.cpu_hz);
            log!(
                "cpu: busy {busy} of {total} cycles (under -icount shift=0: {} instructions)",
                busy * per_cycle
            );
        }
        "net" => {
            let c = &lan.counters;
            log!(
                "lan9118: received {} dropped {} sent {} tx errors {}",
                c.received.load(Ordering::Relaxed),
                c.rx_dropped.load(Ordering::Relaxed),
                c.sent.load(Ordering::Relaxed),
                c.tx_errors.load(Ordering::Relaxed)
            );
        }
        "reset" => {
            log!("console: warm reset");
            cortex_m::peripheral::SCB::sys_reset();
        }
        "exit" => {
            let code = if report_stack() {
                semihost::code::OK
            } else {
                semihost::code::STACK_OVER_BUDGET
            };
            log!("console: exit {code}");
            semihost::exit(code);
        }
        other => log!("console: unknown command {other:?} (stack, cpu, net, reset, exit)"),
    }
}
