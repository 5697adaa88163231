//! embermq on QEMU's Arm MPS2 boards: `mps2-an386` (Cortex-M4F, the
//! nRF52840's core) or `mps2-an505` (Cortex-M33, the nRF9160's core), each
//! with an SMSC LAN9118 Ethernet controller on QEMU's user network (DHCP
//! gives 10.0.2.15; the host's loopback is 10.0.2.2).
//!
//! The same application as the real boards (`embermq-board-app`: JSON
//! telemetry at QoS 1, commands answered on their MQTT 5.0 response topic,
//! reconnect with backoff, the outbox in "flash") on the embermq client:
//! MQTT 5.0 over WebSocket over embassy-net TCP over the LAN9118 driver
//! (`embassy-net-lan9118`, in this directory). What is the board's own:
//!
//! - the executor loop (`entry`: poll, then WFI) with a count of the
//!   cycles spent polling;
//! - `time_driver`: embassy-time on SysTick;
//! - `uart`: the text log (every `AppEvent` is a line) and the console
//!   (`console`: `stack`, `cpu`, `net`, `reset`, `exit`);
//! - `nvram`: the outbox's NOR flash model in a RAM window that a warm
//!   reset keeps;
//! - `stack`: stack painting and the high-water mark against its budget;
//! - `semihost`: start-up settings from QEMU's command line and the exit
//!   code.
//!
//! Settings: build-time `BROKER_HOST`, `BROKER_PORT`, `BROKER_PATH`,
//! `DEVICE_ID`, `TELEMETRY_SECS` as on every board; each but the path can
//! be overridden at run time by a semihosting argument
//! (`broker_host=10.0.2.2 broker_port=1883 device_id=x telemetry_secs=1
//! seed=N`), so one ELF serves any broker port a test picks.
#![no_std]
#![no_main]
// The `baseline` and `probe` footprint builds leave the application out.
#![cfg_attr(any(feature = "baseline", feature = "probe"), allow(dead_code))]

mod console;
mod machine;
mod nvram;
#[cfg(feature = "probe")]
mod probe;
mod semihost;
mod stack;
mod time_driver;
mod uart;

use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m::peripheral::NVIC;
use cortex_m_rt::{ExceptionFrame, exception};
use embassy_executor::Spawner;
use embassy_net::{Stack, StackResources};
use embassy_net_lan9118::{InterruptState, State};
use embermq_board_app::{AppEvent, Board, Broker, Settings, secs_from_env};
#[cfg(not(any(feature = "baseline", feature = "probe")))]
use embermq_board_app::{Link, LinkMemory};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use static_cell::{ConstStaticCell, StaticCell};

use machine::{Irq, MACHINE};
#[cfg(not(feature = "probe"))]
use nvram::NvramFlash;

/// The broker (build-time `BROKER_HOST`, `BROKER_PORT`, `BROKER_PATH`).
const BROKER: Broker = Broker::from_env(&[]);
/// The device id (build-time `DEVICE_ID`); unset: `qemu-` and the MAC.
const DEVICE_ID: Option<&str> = option_env!("DEVICE_ID");
/// Seconds between readings at start-up (build-time `TELEMETRY_SECS`).
const TELEMETRY_SECS: u32 = secs_from_env(option_env!("TELEMETRY_SECS"), 10);

/// The longest semihosting command line read (the `arg=` values joined,
/// or without them the kernel's path and `-append`); a longer one stops
/// the start.
const CMDLINE_MAX: usize = 512;

/// The LAN9118's interrupt side (its handler is `DefaultHandler` below).
static LAN9118_IRQ: InterruptState = InterruptState::new();

/// Start-up settings given on QEMU's command line (see the crate docs).
#[derive(Default)]
struct RunArgs {
    broker_host: Option<&'static str>,
    broker_port: Option<u16>,
    device_id: Option<&'static str>,
    telemetry_secs: Option<u32>,
    seed: Option<u64>,
}

impl RunArgs {
    /// Parses `key=value` words; other words (the program's name) are
    /// skipped; a bad value is an error naming it.
    fn parse(line: &'static str) -> Result<Self, &'static str> {
        let mut args = Self::default();
        for word in line.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "broker_host" => args.broker_host = Some(value),
                "broker_port" => args.broker_port = Some(value.parse().map_err(|_| word)?),
                "device_id" => args.device_id = Some(value),
                "telemetry_secs" => args.telemetry_secs = Some(value.parse().map_err(|_| word)?),
                "seed" => args.seed = Some(value.parse().map_err(|_| word)?),
                _ => return Err(word),
            }
        }
        Ok(args)
    }
}

/// The LED is a log line.
struct QemuBoard;

impl Board for QemuBoard {
    fn set_led(&mut self, on: bool) {
        log!("led {}", if on { "on" } else { "off" });
    }

    fn report(&mut self, event: AppEvent<'_>) {
        log!("event: {event}");
    }
}

/// Stops the run with `code` after logging why.
fn fail(code: u32, args: core::fmt::Arguments<'_>) -> ! {
    uart::line(args);
    semihost::exit(code)
}

/// Set when a task was woken (embassy calls `__pender`), from thread mode
/// or an interrupt handler; cleared by the executor loop.
static WORK_PENDING: AtomicBool = AtomicBool::new(false);

/// embassy-executor's hook for "a task is ready".
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    WORK_PENDING.store(true, Ordering::Release);
}

/// The executor: poll the ready tasks, then sleep with WFI until an
/// interrupt, unless a task was woken meanwhile. (embassy's own thread
/// loop sleeps with WFE, which QEMU runs as a no-op: the guest would spin
/// and keep a host core busy.) The cycles spent polling are counted for
/// the console's `cpu` report (`time_driver::busy`).
#[cortex_m_rt::entry]
fn entry() -> ! {
    stack::paint();
    uart::init();
    static EXECUTOR: StaticCell<embassy_executor::raw::Executor> = StaticCell::new();
    let executor = EXECUTOR.init(embassy_executor::raw::Executor::new(core::ptr::null_mut()));
    executor
        .spawner()
        .spawn(ok_or_fail(main(executor.spawner())));
    loop {
        let start = time_driver::cycles();
        // Safety: polled from this one thread-mode loop only.
        unsafe { executor.poll() };
        time_driver::add_busy(time_driver::cycles().wrapping_sub(start));
        // Interrupts masked, so a wake between the check and WFI is not
        // lost: a pending interrupt ends WFI and runs once they are unmasked.
        cortex_m::interrupt::free(|_| {
            if !WORK_PENDING.swap(false, Ordering::AcqRel) {
                cortex_m::asm::wfi();
            }
        });
    }
}

#[embassy_executor::task]
async fn main(spawner: Spawner) -> ! {
    let mut core = match cortex_m::Peripherals::take() {
        Some(core) => core,
        None => fail(
            semihost::code::SETUP,
            format_args!("core peripherals taken twice"),
        ),
    };
    time_driver::start(core.SYST, MACHINE.cpu_hz);

    // Safety: the window is outside every section (memory.x), opened once.
    let (flash, boot) = unsafe { nvram::open(MACHINE.nvram_base) };
    log!(
        "embermq qemu-mps2 on {} ({}), boot {} ({})",
        MACHINE.name,
        MACHINE.core,
        boot.count,
        if boot.kept {
            "outbox flash kept from before the reset"
        } else {
            "outbox flash blank, erased"
        }
    );

    static CMDLINE: ConstStaticCell<[u8; CMDLINE_MAX]> = ConstStaticCell::new([0; CMDLINE_MAX]);
    let Some(line) = semihost::command_line(CMDLINE.take()) else {
        fail(
            semihost::code::SETUP,
            format_args!(
                "semihosting command line not read (longer than {CMDLINE_MAX} bytes, or not UTF-8)"
            ),
        )
    };
    let args = match RunArgs::parse(line) {
        Ok(args) => args,
        Err(word) => fail(semihost::code::SETUP, format_args!("bad argument {word:?}")),
    };
    let seed = match args.seed {
        Some(seed) => seed,
        None => {
            log!("rng: no seed= given, seeded from the host clock (predictable: give seed=)");
            u64::from(semihost::host_time())
        }
    };
    // A reboot must not repeat the last boot's numbers (TCP ports, ISNs,
    // WebSocket keys): the boot count goes into the seed.
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ u64::from(boot.count).rotate_left(32));

    // Const-initialised statics: nothing this big is built on the stack.
    static NET_STATE: ConstStaticCell<State<4, 4>> = ConstStaticCell::new(State::new());
    let fallback_mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    // Safety: the LAN9118's address on this machine, used only by the driver.
    let started = unsafe {
        embassy_net_lan9118::new(
            MACHINE.lan9118,
            NET_STATE.take(),
            &LAN9118_IRQ,
            fallback_mac,
        )
    };
    let (device, runner) = match started {
        Ok(started) => started,
        Err(e) => fail(semihost::code::SETUP, format_args!("ethernet: {e}")),
    };
    let mac = match embassy_net::driver::Driver::hardware_address(&device) {
        embassy_net::driver::HardwareAddress::Ethernet(mac) => mac,
        _ => fallback_mac,
    };
    // The chip drives its line active-high now (IRQ_CFG = 0x111): unmask.
    // Safety: the handler (DefaultHandler) is ready for it.
    unsafe {
        core.NVIC.set_priority(Irq(MACHINE.lan9118_irq), 0x80);
        NVIC::unmask(Irq(MACHINE.lan9118_irq));
    }
    spawner.spawn(ok_or_fail(ethernet_task(runner)));

    static RESOURCES: ConstStaticCell<StackResources<4>> =
        ConstStaticCell::new(StackResources::new());
    let (stack, net_runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.take(),
        rng.next_u64(),
    );
    spawner.spawn(ok_or_fail(net_task(net_runner)));
    spawner.spawn(ok_or_fail(console::console_task(&LAN9118_IRQ)));

    log!(
        "ethernet: LAN9118 mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, waiting for DHCP",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    wait_for_address(stack).await;

    let device_id: &'static str = match (args.device_id, DEVICE_ID) {
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => {
            static ID: StaticCell<heapless::String<32>> = StaticCell::new();
            let id = ID.init(heapless::String::new());
            let _ = write!(
                id,
                "qemu-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
            );
            id.as_str()
        }
    };
    let interval = args.telemetry_secs.unwrap_or(TELEMETRY_SECS);
    let settings = match Settings::new(device_id, interval) {
        Ok(settings) => settings,
        Err(e) => fail(semihost::code::SETUP, format_args!("settings: {e}")),
    };
    let mut broker = BROKER;
    broker.host = args.broker_host.unwrap_or(BROKER.host);
    broker.port = args.broker_port.unwrap_or(BROKER.port);

    #[cfg(feature = "baseline")]
    baseline(stack, broker, flash, &settings).await;
    #[cfg(feature = "probe")]
    {
        let _ = flash;
        static SETTINGS: StaticCell<Settings<'static>> = StaticCell::new();
        probe::run(stack, broker, rng, SETTINGS.init(settings)).await
    }
    #[cfg(not(any(feature = "baseline", feature = "probe")))]
    run_link(stack, broker, flash, rng, &settings).await
}

/// The application on the embermq client, for ever.
#[cfg(not(any(feature = "baseline", feature = "probe")))]
async fn run_link(
    stack: Stack<'static>,
    broker: Broker,
    flash: NvramFlash,
    rng: ChaCha20Rng,
    settings: &Settings<'static>,
) -> ! {
    static MEMORY: ConstStaticCell<LinkMemory<NvramFlash, ChaCha20Rng>> =
        ConstStaticCell::new(LinkMemory::new());
    let link = match Link::open(
        stack,
        broker,
        MEMORY.take(),
        flash,
        0..nvram::OUTBOX_LEN,
        rng,
        settings,
    ) {
        Ok(link) => link,
        Err(e) => fail(semihost::code::SETUP, format_args!("flash outbox: {e}")),
    };
    log!(
        "device {} -> ws://{}:{}{} every {} s",
        settings.device_id,
        broker.host,
        broker.port,
        broker.path,
        settings.interval_secs
    );
    if let Err(e) = link.run(QemuBoard, settings).await {
        fail(
            semihost::code::CLIENT_STOPPED,
            format_args!("client stopped: {e}"),
        );
    }
    fail(
        semihost::code::CLIENT_STOPPED,
        format_args!("the client never stops on its own"),
    )
}

/// The `baseline` build: a TCP connection to the broker with the link's
/// socket buffers, then idle; no MQTT, no WebSocket.
#[cfg(feature = "baseline")]
async fn baseline(
    stack: Stack<'static>,
    broker: Broker,
    flash: NvramFlash,
    settings: &Settings<'_>,
) -> ! {
    use embassy_net::tcp::TcpSocket;
    static BUFFERS: ConstStaticCell<[u8; 4096]> = ConstStaticCell::new([0; 4096]);
    let (rx, tx) = BUFFERS.take().split_at_mut(2048);
    let mut socket = TcpSocket::new(stack, rx, tx);
    // Resolved as `EmbassyTcpConnector` does (embassy-net's DNS; a
    // literal address is answered without a query), so that DNS is in
    // both builds and not charged to the stack.
    let address = match stack
        .dns_query(broker.host, embassy_net::dns::DnsQueryType::A)
        .await
        .ok()
        .and_then(|found| found.first().copied())
    {
        Some(address) => address,
        None => fail(
            semihost::code::SETUP,
            format_args!("baseline: broker_host not resolved"),
        ),
    };
    match socket.connect((address, broker.port)).await {
        Ok(()) => log!(
            "baseline: tcp connected to {}:{} ({})",
            broker.host,
            broker.port,
            settings.topics().telemetry()
        ),
        Err(e) => log!("baseline: tcp connect failed: {e:?}"),
    }
    let _ = flash;
    core::future::pending().await
}

/// A spawn token, or the end of the run (a task pool is full: a bug).
fn ok_or_fail<T, E: core::fmt::Debug>(token: Result<T, E>) -> T {
    match token {
        Ok(token) => token,
        Err(e) => fail(semihost::code::SETUP, format_args!("spawn: {e:?}")),
    }
}

/// Waits for DHCP and logs the address.
async fn wait_for_address(stack: Stack<'static>) {
    stack.wait_config_up().await;
    if let Some(config) = stack.config_v4() {
        log!(
            "dhcp: address {} gateway {:?}",
            config.address,
            config.gateway
        );
    }
}

/// Moves frames between the LAN9118 and embassy-net.
#[embassy_executor::task]
async fn ethernet_task(runner: embassy_net_lan9118::Runner<'static>) -> ! {
    runner.run().await
}

/// Drives the TCP/IP stack.
#[embassy_executor::task]
async fn net_task(
    mut runner: embassy_net::Runner<'static, embassy_net_lan9118::Device<'static>>,
) -> ! {
    runner.run().await
}

/// Every external interrupt (there is no PAC, so cortex-m-rt's vector
/// table sends them all here): the LAN9118's goes to its driver; any other
/// is masked and logged (nothing else was enabled).
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == MACHINE.lan9118_irq as i16 {
        LAN9118_IRQ.on_interrupt();
    } else if let Ok(n) = u16::try_from(irqn) {
        NVIC::mask(Irq(n));
        log!("unexpected interrupt {n}, masked");
    } else {
        fail(
            semihost::code::HARD_FAULT,
            format_args!("unexpected exception {irqn}"),
        );
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    fail(
        semihost::code::HARD_FAULT,
        format_args!(
            "HardFault at pc {:#010x} lr {:#010x}",
            frame.pc(),
            frame.lr()
        ),
    )
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail(semihost::code::PANIC, format_args!("panic: {info}"))
}
