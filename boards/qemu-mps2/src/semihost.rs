//! Semihosting, the only way this firmware talks to QEMU itself: the
//! command line (`-semihosting-config enable=on,target=native,arg=...`) and
//! the exit code. Without `enable=on` every call here faults (BKPT 0xAB
//! with no debugger): QEMU must be started with it (the README's command
//! and the host test do).

use cortex_m_semihosting::{nr, syscall};

/// SYS_EXIT_EXTENDED (semihosting v2): exit with a code QEMU returns.
const SYS_EXIT_EXTENDED: usize = 0x20;
/// ADP_Stopped_ApplicationExit.
const APPLICATION_EXIT: usize = 0x20026;

/// Exit codes the host test checks.
pub mod code {
    /// The run ended on the console's `exit` and the stack stayed within
    /// its budget.
    pub const OK: u32 = 0;
    /// The stack's high-water mark went over its budget.
    pub const STACK_OVER_BUDGET: u32 = 2;
    /// A panic.
    pub const PANIC: u32 = 3;
    /// A HardFault.
    pub const HARD_FAULT: u32 = 4;
    /// The client stopped (it never should: it reconnects for ever).
    pub const CLIENT_STOPPED: u32 = 5;
    /// Bad start-up settings (command line) or hardware missing.
    pub const SETUP: u32 = 6;
}

/// Ends QEMU with `status` as its exit code.
pub fn exit(status: u32) -> ! {
    let block = [APPLICATION_EXIT, status as usize];
    loop {
        // Safety: a semihosting call with a valid parameter block.
        unsafe { syscall(SYS_EXIT_EXTENDED, &block) };
        // Only reached when no debugger or QEMU took the call.
        cortex_m_semihosting::debug::exit(if status == 0 {
            cortex_m_semihosting::debug::EXIT_SUCCESS
        } else {
            cortex_m_semihosting::debug::EXIT_FAILURE
        });
    }
}

/// The command line into `buf` (SYS_GET_CMDLINE): the `arg=` values of
/// `-semihosting-config` joined by spaces, or the kernel's path and
/// `-append`; `None` when the host refused.
pub fn command_line(buf: &mut [u8]) -> Option<&str> {
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    // Safety: the block names `buf` and its length; the host writes at most
    // that many bytes and the length back into the block.
    let status =
        unsafe { cortex_m_semihosting::syscall1(nr::GET_CMDLINE, block.as_mut_ptr() as usize) };
    if status != 0 {
        return None;
    }
    // Safety: the block was written by the host through the pointer above.
    let len = unsafe { core::ptr::addr_of!(block[1]).read_volatile() }.min(buf.len());
    let text = buf.get(..len)?;
    // The text ends at its NUL terminator whatever length came back.
    let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
    core::str::from_utf8(text).ok()
}

/// Seconds since 1970 from the host's clock (SYS_TIME).
pub fn host_time() -> u32 {
    // Safety: SYS_TIME takes no parameter block.
    unsafe { cortex_m_semihosting::syscall1(nr::TIME, 0) as u32 }
}
