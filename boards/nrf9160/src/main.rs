//! embermq on an nRF9160 over LTE-M.
//!
//! Starts the modem through embassy-net-nrf91, attaches to the packet
//! network with the APN named at build time and hands the modem's address
//! and DNS servers to embassy-net, then runs the board-independent
//! application (`embermq-board-app`) on the embermq client: MQTT 5.0
//! (3.1.1 fall-back) over WebSocket (`embermq::transport::WsConnector`) over TCP
//! (`embermq::transport::EmbassyTcpConnector`, which resolves the broker's
//! name through embassy-net). It publishes a JSON reading (uptime, a
//! counter) every `TELEMETRY_SECS`, answers commands on
//! `devices/{id}/commands` (LED1 on/off, the interval) and reconnects with
//! backoff. Every step is logged with defmt over RTT.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::net::IpAddr;

use defmt::{error, info, unwrap, warn};
use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, Stack, StackResources};
use embassy_net_nrf91::context::{self, Status};
use embassy_net_nrf91::{NetDriver, Runner, State};
use embassy_nrf::cryptocell_rng::CcRng;
use embassy_nrf::gpio::{Level, Output, OutputDrive};
use embassy_nrf::interrupt;
use embassy_nrf::mode::Blocking;
use embassy_nrf::nvmc::Nvmc;
use embermq_board_app::{
    AppEvent, Board, Broker, Link, LinkMemory, Settings, device_id_from_serial, secs_from_env,
    str_from_env,
};
use static_cell::{ConstStaticCell, StaticCell};
use {defmt_rtt as _, panic_probe as _};

/// Access point name (build-time `LTE_APN`, or `APN`); empty lets the
/// network choose.
const LTE_APN: &str = match option_env!("LTE_APN") {
    Some(apn) => apn,
    None => str_from_env(option_env!("APN"), ""),
};
/// PAP user name and password (build-time `LTE_USER`, `LTE_PASSWORD`), if
/// the operator wants them.
const LTE_USER: Option<&str> = option_env!("LTE_USER");
const LTE_PASSWORD: Option<&str> = option_env!("LTE_PASSWORD");
/// SIM PIN (build-time `SIM_PIN`), if the SIM is locked.
const SIM_PIN: Option<&str> = option_env!("SIM_PIN");
/// The broker (build-time `BROKER_HOST`, `BROKER_PORT`, `BROKER_PATH`); a
/// `wss` build verifies it against the CA certificate (DER) from build-time
/// `BROKER_CA_DER` (or not at all with the feature
/// `insecure-no-tls-verification`).
const BROKER: Broker = Broker::from_env(include_bytes!(concat!(env!("OUT_DIR"), "/broker-ca.der")));
/// The device id (build-time `DEVICE_ID`); unset: `nrf9160-` and the
/// chip's FICR device id in hex.
const DEVICE_ID: Option<&str> = option_env!("DEVICE_ID");
/// Seconds between readings at start-up (build-time `TELEMETRY_SECS`).
const TELEMETRY_SECS: u32 = secs_from_env(option_env!("TELEMETRY_SECS"), 30);

/// The flash pages of the durable outbox (the last 32 KiB, left out of FLASH in `memory.x`).
const OUTBOX_FLASH: core::ops::Range<u32> = 0xF_8000..0x10_0000;

/// The internal flash through the async NOR flash traits.
type Flash = BlockingAsync<Nvmc<'static>>;

/// LED1 (active high on the nRF9160 DK) and the defmt log.
struct Nrf9160Board {
    led: Output<'static>,
}

impl Board for Nrf9160Board {
    fn set_led(&mut self, on: bool) {
        self.led
            .set_level(if on { Level::High } else { Level::Low });
    }

    fn report(&mut self, event: AppEvent<'_>) {
        info!("{}", defmt::Display2Format(&event));
    }
}

#[interrupt]
fn IPC() {
    embassy_net_nrf91::on_ipc_irq();
}

unsafe extern "C" {
    /// Bounds of the IPC region in `memory.x`.
    static __start_ipc: u8;
    static __end_ipc: u8;
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let p = embassy_nrf::init(Default::default());
    info!("embermq nrf9160: starting the modem");
    let led = Output::new(p.P0_02, Level::Low, OutputDrive::Standard);
    let flash: Flash = BlockingAsync::new(Nvmc::new(p.NVMC));

    // SAFETY: `memory.x` reserves IPC for this alone: the linker places
    // nothing there, and this is the only reference ever made to it.
    let ipc_memory: &'static mut [MaybeUninit<u8>] = unsafe {
        let start = (&raw const __start_ipc)
            .cast::<MaybeUninit<u8>>()
            .cast_mut();
        let end = (&raw const __end_ipc).cast::<MaybeUninit<u8>>();
        let len = usize::try_from(end.offset_from(start)).unwrap_or(0);
        core::slice::from_raw_parts_mut(start, len)
    };

    static STATE: StaticCell<State> = StaticCell::new();
    let (device, control, runner) =
        embassy_net_nrf91::new(STATE.init(State::new()), ipc_memory).await;
    spawner.spawn(unwrap!(modem_task(runner)));

    let mut rng = CcRng::new_blocking(p.CC_RNG);
    let seed = rng.blocking_next_u64();
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, net_runner) = embassy_net::new(
        device,
        embassy_net::Config::default(),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawner.spawn(unwrap!(net_task(net_runner)));

    static CONTROL: StaticCell<context::Control<'static>> = StaticCell::new();
    let control = CONTROL.init(context::Control::new(control, 0).await);
    spawner.spawn(unwrap!(lte_task(control, stack)));

    info!("attaching (APN \"{}\")", LTE_APN);
    stack.wait_config_up().await;
    if let Some(config) = stack.config_v4() {
        info!("address {}", config.address);
    }

    let device_id: &'static str = match DEVICE_ID {
        Some(id) => id,
        None => {
            static ID: StaticCell<heapless::String<32>> = StaticCell::new();
            let info = nrf_pac::FICR_S.info();
            let serial =
                u64::from(info.deviceid(1).read()) << 32 | u64::from(info.deviceid(0).read());
            ID.init(device_id_from_serial("nrf9160", &serial.to_be_bytes()))
        }
    };
    let settings = unwrap!(Settings::new(device_id, TELEMETRY_SECS).map_err(|_| "DEVICE_ID"));

    // The buffers, client state and RNG of the link, zeroed at boot.
    static MEMORY: ConstStaticCell<LinkMemory<Flash, CcRng<'static, Blocking>>> =
        ConstStaticCell::new(LinkMemory::new());
    if BROKER.is_insecure() {
        warn!("wss WITHOUT server verification (insecure-no-tls-verification): lab use only");
    }
    // Unacknowledged readings are kept in flash and sent after a reset.
    let link = match Link::open(
        stack,
        BROKER,
        MEMORY.take(),
        flash,
        OUTBOX_FLASH,
        rng,
        &settings,
    ) {
        Ok(link) => link,
        Err(e) => defmt::panic!("flash outbox: {}", defmt::Display2Format(&e)),
    };
    info!(
        "device {} -> {}://{}:{}{}",
        device_id,
        BROKER.scheme(),
        BROKER.host,
        BROKER.port,
        BROKER.path
    );
    let board = Nrf9160Board { led };
    if let Err(e) = link.run(board, &settings).await {
        error!("client stopped: {}", defmt::Display2Format(&e));
    }
    defmt::panic!("the client never stops on its own")
}

/// Configures the PDP context, attaches, and keeps the stack's address in
/// step with the modem's across detach and re-attach.
#[embassy_executor::task]
async fn lte_task(control: &'static context::Control<'static>, stack: Stack<'static>) {
    let config = context::Config {
        apn: LTE_APN.as_bytes(),
        auth_prot: if LTE_USER.is_some() {
            context::AuthProt::Pap
        } else {
            context::AuthProt::None
        },
        auth: match (LTE_USER, LTE_PASSWORD) {
            (Some(user), password) => Some((user.as_bytes(), password.unwrap_or("").as_bytes())),
            (None, _) => None,
        },
        pin: SIM_PIN.map(str::as_bytes),
    };
    loop {
        if let Err(e) = control.configure(&config).await {
            warn!("PDP context not configured: {}", e);
        } else {
            let attached = control
                .run(|status| match ipv4_config(status) {
                    Some(v4) => stack.set_config_v4(v4),
                    None => warn!("attached without an IPv4 address"),
                })
                .await;
            if let Err(e) = attached {
                warn!("LTE control failed: {}", e);
            }
        }
        embassy_time::Timer::after_secs(10).await;
    }
}

/// The modem's address, gateway and DNS servers as an embassy-net config.
fn ipv4_config(status: &Status) -> Option<embassy_net::ConfigV4> {
    let Some(IpAddr::V4(address)) = status.ip else {
        return None;
    };
    let gateway = match status.gateway {
        Some(IpAddr::V4(gateway)) => Some(gateway),
        _ => None,
    };
    let mut dns_servers = heapless::Vec::new();
    for server in &status.dns {
        if let IpAddr::V4(server) = server {
            // At most two servers come from the modem; a full list drops the rest.
            let _ = dns_servers.push(*server);
        }
    }
    Some(embassy_net::ConfigV4::Static(embassy_net::StaticConfigV4 {
        address: Ipv4Cidr::new(address, 32),
        gateway,
        dns_servers,
    }))
}

/// Runs the modem's IPC link.
#[embassy_executor::task]
async fn modem_task(runner: Runner<'static>) -> ! {
    runner.run().await
}

/// Drives the TCP/IP stack.
#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, NetDriver<'static>>) -> ! {
    runner.run().await
}
