//! An embassy-net driver for the SMSC (now Microchip) LAN9118 Ethernet
//! controller: a memory-mapped MAC + PHY with FIFOs, found on Arm's MPS2
//! boards and emulated by QEMU (`-nic user,model=lan9118` on `mps2-an385`,
//! `mps2-an386`, `mps2-an505`, ...).
//!
//! - [`new`] resets the chip (HW_CFG.SRST), keeps the MAC address it loaded
//!   from its EEPROM (else uses the one given), enables the MAC's receiver
//!   and transmitter (MAC_CR.RXEN, TXEN; exact-address and broadcast
//!   filtering), unmasks the PHY's link interrupts and drives its IRQ pin
//!   active-high push-pull (IRQ_CFG = 0x111: QEMU drives the line active
//!   low otherwise, an interrupt storm on a Cortex-M NVIC). It returns the
//!   [`embassy_net_driver_channel::Device`] embassy-net uses and a
//!   [`Runner`] to spawn.
//! - [`Runner::run`] moves frames between the chip's FIFOs and the
//!   channel: a received frame is one RX status word (length with CRC,
//!   error bit) and its data words; a sent one is TX command A and B and
//!   the data words. It sleeps on the chip's interrupt (RX status FIFO
//!   level, PHY) between frames, and reads the PHY's link status once a
//!   second as well: a link change is never missed for longer than that,
//!   even if its interrupt was (a cable pulled under QEMU's `set_link`
//!   went unnoticed in about one run in four on the interrupt alone).
//! - [`InterruptState::on_interrupt`] is the interrupt handler's part: it
//!   masks the chip's interrupts (INT_EN = 0, which drops the IRQ line) and
//!   wakes the runner, which unmasks them when it waits again.
//!
//! Not done: 16-bit bus mode, flow control, multicast hash filtering,
//! checksum offload (the LAN9118 has none), PME/wake-on-LAN, the GPIOs and
//! general-purpose timer. When the TX data FIFO has no room for a frame the
//! runner yields and polls again (QEMU does not raise the TX FIFO level
//! interrupt, and with one frame in flight at a time it always has room).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use core::future::poll_fn;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::Poll;

use embassy_futures::select::{Either3, select3};
use embassy_futures::yield_now;
use embassy_net_driver_channel as ch;
use embassy_net_driver_channel::driver::{HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;
use embassy_time::{Duration, Instant, Timer};

/// How often the runner reads the PHY's link status besides its interrupt.
const LINK_POLL: Duration = Duration::from_secs(1);

/// The largest Ethernet frame moved (without the CRC).
pub const MTU: usize = 1514;

/// The device embassy-net runs on.
pub type Device<'d> = ch::Device<'d, MTU>;

// Register offsets (LAN9118 datasheet, section 5).
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV: usize = 0x50;
const IRQ_CFG: usize = 0x54;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5C;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7C;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const MAC_CSR_CMD: usize = 0xA4;
const MAC_CSR_DATA: usize = 0xA8;

// MAC control and status registers (through MAC_CSR_CMD / MAC_CSR_DATA).
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_MII_ACC: u32 = 6;
const MAC_MII_DATA: u32 = 7;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_FDPX: u32 = 1 << 20;
const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;

// PHY registers (through MII_ACC / MII_DATA), internal PHY address 1.
const PHY_ADDR: u32 = 1;
const PHY_BSR: u32 = 1;
const PHY_BSR_LINK: u32 = 1 << 2;
const PHY_INT_SRC: u32 = 29;
const PHY_INT_MASK: u32 = 30;
/// ENERGYON, auto-negotiation complete, link down.
const PHY_INT_LINK_EVENTS: u32 = 0x80 | 0x40 | 0x10;

// INT_STS / INT_EN.
const INT_RSFL: u32 = 1 << 3;
const INT_RXE: u32 = 1 << 14;
const INT_PHY: u32 = 1 << 18;
/// IRQ_CFG: IRQ_EN, IRQ_POL (active high), IRQ_TYPE (push-pull).
const IRQ_CFG_ENABLED_HIGH: u32 = 0x111;
const TX_CFG_TX_ON: u32 = 1 << 1;
const HW_CFG_SRST: u32 = 1;
const PMT_CTRL_READY: u32 = 1;

// TX command A: first and last segment of a frame; RX status: error summary.
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;
const RX_STS_ERROR: u32 = 1 << 15;
const TX_STS_ERROR: u32 = 1 << 15;

/// Polls of a busy bit before a register access is declared stuck.
const BUSY_POLLS: u32 = 100_000;

/// Why [`new`] found no working controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// ID_REV did not read as a LAN9118 (0x0118_xxxx): the value read.
    NotFound(u32),
    /// The chip did not finish its reset, or a MAC/PHY register access
    /// stayed busy.
    Timeout,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound(id) => write!(f, "no LAN9118: ID_REV reads {id:#010x}"),
            Self::Timeout => f.write_str("LAN9118 stayed busy (reset or MAC/PHY access)"),
        }
    }
}

/// Frame counters since [`new`], readable while the runner runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames handed to embassy-net.
    pub received: AtomicU32,
    /// Frames dropped: receive errors, or longer than [`MTU`].
    pub rx_dropped: AtomicU32,
    /// Frames written to the TX FIFO.
    pub sent: AtomicU32,
    /// TX status words with the error bit set.
    pub tx_errors: AtomicU32,
}

/// What the interrupt handler shares with the runner: a waker and the
/// chip's address. Put it in a `static`.
pub struct InterruptState {
    waker: AtomicWaker,
    base: AtomicU32,
    /// Frame counters.
    pub counters: Counters,
}

impl core::fmt::Debug for InterruptState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InterruptState")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl InterruptState {
    /// For a `static`.
    #[allow(clippy::new_without_default)] // const, for a static
    pub const fn new() -> Self {
        Self {
            waker: AtomicWaker::new(),
            base: AtomicU32::new(0),
            counters: Counters {
                received: AtomicU32::new(0),
                rx_dropped: AtomicU32::new(0),
                sent: AtomicU32::new(0),
                tx_errors: AtomicU32::new(0),
            },
        }
    }

    /// Call from the chip's interrupt handler: masks its interrupts (the
    /// line goes inactive) and wakes the runner. Does nothing before
    /// [`new`] ran.
    pub fn on_interrupt(&self) {
        let base = self.base.load(Ordering::Acquire) as usize;
        if base == 0 {
            return;
        }
        // Safety: `base` was given to `new` as a LAN9118's address, and
        // INT_EN is written by the runner only with interrupts masked or
        // from this handler; a race only re-masks.
        unsafe { Regs(base).write(INT_EN, 0) };
        self.waker.wake();
    }
}

/// The channel's buffers: `N_RX` received and `N_TX` outgoing frames.
pub struct State<const N_RX: usize, const N_TX: usize> {
    ch: ch::State<MTU, N_RX, N_TX>,
}

impl<const N_RX: usize, const N_TX: usize> State<N_RX, N_TX> {
    /// Empty buffers (put it in a `static`).
    #[allow(clippy::new_without_default)] // const, for a static
    pub const fn new() -> Self {
        Self {
            ch: ch::State::new(),
        }
    }
}

/// Raw register access at a base address.
#[derive(Clone, Copy)]
struct Regs(usize);

impl Regs {
    /// # Safety
    /// `self.0` is a LAN9118's base address.
    unsafe fn read(self, offset: usize) -> u32 {
        // Safety: the caller's guarantee; all registers are 32-bit aligned.
        unsafe { core::ptr::read_volatile((self.0 + offset) as *const u32) }
    }

    /// # Safety
    /// As for [`Regs::read`].
    unsafe fn write(self, offset: usize, value: u32) {
        // Safety: as above.
        unsafe { core::ptr::write_volatile((self.0 + offset) as *mut u32, value) }
    }

    /// Waits until `offset` reads with `mask` as `want`.
    ///
    /// # Safety
    /// As for [`Regs::read`].
    unsafe fn poll(self, offset: usize, mask: u32, want: u32) -> Result<(), Error> {
        for _ in 0..BUSY_POLLS {
            // Safety: the caller's guarantee.
            if unsafe { self.read(offset) } & mask == want {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }

    /// # Safety
    /// As for [`Regs::read`].
    unsafe fn mac_read(self, index: u32) -> Result<u32, Error> {
        // Safety: the caller's guarantee.
        unsafe {
            self.poll(MAC_CSR_CMD, CSR_BUSY, 0)?;
            self.write(MAC_CSR_CMD, CSR_BUSY | CSR_READ | index);
            self.poll(MAC_CSR_CMD, CSR_BUSY, 0)?;
            Ok(self.read(MAC_CSR_DATA))
        }
    }

    /// # Safety
    /// As for [`Regs::read`].
    unsafe fn mac_write(self, index: u32, value: u32) -> Result<(), Error> {
        // Safety: the caller's guarantee.
        unsafe {
            self.poll(MAC_CSR_CMD, CSR_BUSY, 0)?;
            self.write(MAC_CSR_DATA, value);
            self.write(MAC_CSR_CMD, CSR_BUSY | index);
            self.poll(MAC_CSR_CMD, CSR_BUSY, 0)
        }
    }

    /// MII access to the internal PHY: `value` written, or read if `None`.
    ///
    /// # Safety
    /// As for [`Regs::read`].
    unsafe fn phy(self, reg: u32, value: Option<u32>) -> Result<u32, Error> {
        let busy = |regs: Self| -> Result<(), Error> {
            for _ in 0..BUSY_POLLS {
                // Safety: the caller's guarantee.
                if unsafe { regs.mac_read(MAC_MII_ACC) }? & 1 == 0 {
                    return Ok(());
                }
            }
            Err(Error::Timeout)
        };
        let access = (PHY_ADDR << 11) | (reg << 6) | 1;
        // Safety: the caller's guarantee.
        unsafe {
            busy(self)?;
            match value {
                Some(value) => {
                    self.mac_write(MAC_MII_DATA, value)?;
                    self.mac_write(MAC_MII_ACC, access | 2)?;
                    busy(self)?;
                    Ok(value)
                }
                None => {
                    self.mac_write(MAC_MII_ACC, access)?;
                    busy(self)?;
                    self.mac_read(MAC_MII_DATA)
                }
            }
        }
    }
}

/// Moves frames between the chip and embassy-net; spawn [`Runner::run`].
pub struct Runner<'d> {
    ch: ch::Runner<'d, MTU>,
    regs: Regs,
    irq: &'static InterruptState,
}

/// Resets and starts the LAN9118 at `base` and returns the embassy-net
/// device and its runner, with the chip's own MAC address (the one its
/// EEPROM loaded: QEMU's `-nic ...,mac=`), else `fallback_mac`. Afterwards
/// the caller enables the chip's interrupt line in the NVIC, whose handler
/// calls `irq.on_interrupt()`.
///
/// # Errors
/// No LAN9118 answers at `base`, or it stays busy.
///
/// # Safety
/// `base` is the address of a LAN9118 that nothing else uses from now on.
pub unsafe fn new<'d, const N_RX: usize, const N_TX: usize>(
    base: usize,
    state: &'d mut State<N_RX, N_TX>,
    irq: &'static InterruptState,
    fallback_mac: [u8; 6],
) -> Result<(Device<'d>, Runner<'d>), Error> {
    let regs = Regs(base);
    // Safety: the caller's guarantee on `base`.
    let mac = unsafe {
        let id = regs.read(ID_REV);
        if id >> 16 != 0x0118 {
            return Err(Error::NotFound(id));
        }
        regs.write(INT_EN, 0);
        regs.write(HW_CFG, HW_CFG_SRST);
        regs.poll(HW_CFG, HW_CFG_SRST, 0)?;
        regs.poll(PMT_CTRL, PMT_CTRL_READY, PMT_CTRL_READY)?;

        let low = regs.mac_read(MAC_ADDRL)?.to_le_bytes();
        let high = regs.mac_read(MAC_ADDRH)?.to_le_bytes();
        let mut mac = [low[0], low[1], low[2], low[3], high[0], high[1]];
        if mac == [0; 6] || mac == [0xFF; 6] {
            mac = fallback_mac;
            regs.mac_write(
                MAC_ADDRL,
                u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
            )?;
            regs.mac_write(MAC_ADDRH, u32::from_le_bytes([mac[4], mac[5], 0, 0]))?;
        }
        // Exact address and broadcast (the reset value is promiscuous).
        regs.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX)?;
        regs.write(TX_CFG, TX_CFG_TX_ON);
        regs.phy(PHY_INT_MASK, Some(PHY_INT_LINK_EVENTS))?;
        regs.write(INT_STS, u32::MAX);
        regs.write(IRQ_CFG, IRQ_CFG_ENABLED_HIGH);
        mac
    };
    irq.base.store(base as u32, Ordering::Release);
    let (runner, device) = ch::new(&mut state.ch, HardwareAddress::Ethernet(mac));
    Ok((
        device,
        Runner {
            ch: runner,
            regs,
            irq,
        },
    ))
}

/// What woke the runner.
enum Wake {
    Frame,
    Phy,
}

impl Runner<'_> {
    /// Runs for ever: link state from the PHY, frames both ways.
    pub async fn run(mut self) -> ! {
        let regs = self.regs;
        let irq = self.irq;
        let (state, mut rx, mut tx) = self.ch.borrow_split();
        update_link(regs, &state);
        let mut link_check = Instant::now() + LINK_POLL;
        loop {
            let event = select3(
                async {
                    let wake = wait_event(regs, irq).await;
                    if matches!(wake, Wake::Frame) {
                        rx.rx_buf().await;
                    }
                    wake
                },
                tx.tx_buf(),
                Timer::at(link_check),
            )
            .await;
            match event {
                Either3::Third(()) => {
                    link_check = Instant::now() + LINK_POLL;
                    update_link(regs, &state);
                }
                Either3::First(Wake::Phy) => {
                    // Safety: `regs` is the chip `new` was given.
                    let _ = unsafe { regs.phy(PHY_INT_SRC, None) };
                    // Safety: as above.
                    unsafe { regs.write(INT_STS, INT_PHY) };
                    update_link(regs, &state);
                }
                Either3::First(Wake::Frame) => {
                    // The buffer was waited for above: it is there.
                    if let Some(buf) = rx.try_rx_buf() {
                        match receive(regs, buf) {
                            Some(len) => {
                                irq.counters.received.fetch_add(1, Ordering::Relaxed);
                                rx.rx_done(len);
                            }
                            None => {
                                irq.counters.rx_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Either3::Second(frame) => {
                    let len = frame.len();
                    // Command words + data, rounded up to words.
                    let needed = 8 + len.div_ceil(4) * 4;
                    // Safety: `regs` is the chip `new` was given.
                    while (unsafe { regs.read(TX_FIFO_INF) } & 0xFFFF) < needed as u32 {
                        yield_now().await;
                    }
                    // The channel hands out the same buffer again: re-borrow.
                    if let Some(frame) = tx.try_tx_buf() {
                        transmit(regs, frame, &irq.counters);
                    }
                    tx.tx_done();
                }
            }
        }
    }
}

/// Sets the channel's link state from the PHY's basic status register.
fn update_link(regs: Regs, state: &ch::StateRunner<'_>) {
    // Safety: `regs` is the chip `new` was given.
    let up = unsafe { regs.phy(PHY_BSR, None) }.is_ok_and(|bsr| bsr & PHY_BSR_LINK != 0);
    state.set_link_state(if up { LinkState::Up } else { LinkState::Down });
}

/// Resolves when a received frame waits in the RX FIFO or the PHY
/// interrupted; sleeps on the chip's interrupt otherwise.
async fn wait_event(regs: Regs, irq: &'static InterruptState) -> Wake {
    poll_fn(|cx| {
        irq.waker.register(cx.waker());
        // Safety: `regs` is the chip `new` was given. The latched status
        // is cleared and the interrupts unmasked BEFORE the FIFO is looked
        // at: RSFL is raised when a frame arrives, not while frames wait,
        // so a frame arriving between a check and the unmasking would
        // otherwise wait for the next one. Now it is either seen below or
        // interrupts (the handler wakes this future).
        let (pending, frames) = unsafe {
            regs.write(INT_STS, INT_RSFL | INT_RXE);
            regs.write(INT_EN, INT_RSFL | INT_PHY);
            (regs.read(INT_STS), regs.read(RX_FIFO_INF) >> 16 & 0xFF)
        };
        if frames > 0 {
            return Poll::Ready(Wake::Frame);
        }
        if pending & INT_PHY != 0 {
            return Poll::Ready(Wake::Phy);
        }
        Poll::Pending
    })
    .await
}

/// Reads the next frame into `buf`: its length, or `None` when it was
/// dropped (receive error or too long; its data is read and discarded).
fn receive(regs: Regs, buf: &mut [u8]) -> Option<usize> {
    // Safety: `regs` is the chip `new` was given; the status word says how
    // many data words follow.
    unsafe {
        let status = regs.read(RX_STATUS_FIFO);
        let with_crc = (status >> 16 & 0x3FFF) as usize;
        let words = with_crc.div_ceil(4);
        let len = with_crc.saturating_sub(4);
        let keep = status & RX_STS_ERROR == 0 && len <= buf.len() && len >= 14;
        let mut at = 0;
        for _ in 0..words {
            let word = regs.read(RX_DATA_FIFO).to_le_bytes();
            if keep {
                for byte in word {
                    if at < len {
                        if let Some(slot) = buf.get_mut(at) {
                            *slot = byte;
                        }
                        at += 1;
                    }
                }
            }
        }
        keep.then_some(len)
    }
}

/// Writes `frame` to the TX FIFO as one segment and collects TX status.
fn transmit(regs: Regs, frame: &[u8], counters: &Counters) {
    let len = frame.len() as u32;
    // Safety: `regs` is the chip `new` was given; the caller checked the
    // FIFO has room for the command words and the data.
    unsafe {
        regs.write(TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len);
        regs.write(TX_DATA_FIFO, len);
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            for (slot, byte) in word.iter_mut().zip(chunk) {
                *slot = *byte;
            }
            regs.write(TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        while regs.read(TX_FIFO_INF) >> 16 & 0xFF > 0 {
            if regs.read(TX_STATUS_FIFO) & TX_STS_ERROR != 0 {
                counters.tx_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    counters.sent.fetch_add(1, Ordering::Relaxed);
}
