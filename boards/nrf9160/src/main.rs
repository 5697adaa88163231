//! embermq on an nRF9160 over LTE-M.
//!
//! Starts the modem through embassy-net-nrf91, attaches to the packet
//! network with the APN named at build time, hands the modem's address and
//! DNS servers to embassy-net, then runs the board-independent link check
//! (`embermq-link-check`): the broker's name is resolved through embassy-net
//! and a TCP connection opened with `embermq::transport::EmbassyTcpConnector`,
//! held, and opened again after a delay when it ends or fails. Every step is
//! logged with defmt over RTT and LED1 is lit while the link is up.
//!
//! MQTT itself comes with the embermq client; this firmware proves the
//! network and the transport underneath it.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::net::IpAddr;

use defmt::{info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, Stack, StackResources};
use embassy_net_nrf91::context::{self, Status};
use embassy_net_nrf91::{NetDriver, Runner, State};
use embassy_nrf::cryptocell_rng::CcRng;
use embassy_nrf::gpio::{Level, Output, OutputDrive};
use embassy_nrf::interrupt;
use embermq::clock::EmbassyClock;
use embermq::transport::EmbassyTcpConnector;
use embermq_link_check::{LinkCheck, LinkEvent, port_from_env};
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

/// Access point name (build-time `LTE_APN`); empty lets the network choose.
const LTE_APN: &str = match option_env!("LTE_APN") {
    Some(apn) => apn,
    None => "",
};
/// PAP user name and password (build-time `LTE_USER`, `LTE_PASSWORD`), if
/// the operator wants them.
const LTE_USER: Option<&str> = option_env!("LTE_USER");
const LTE_PASSWORD: Option<&str> = option_env!("LTE_PASSWORD");
/// SIM PIN (build-time `SIM_PIN`), if the SIM is locked.
const SIM_PIN: Option<&str> = option_env!("SIM_PIN");
/// The broker's host name or IPv4 address (build-time `BROKER_HOST`).
const BROKER_HOST: &str = match option_env!("BROKER_HOST") {
    Some(host) => host,
    None => "test.mosquitto.org",
};
/// The broker's TCP port (build-time `BROKER_PORT`).
const BROKER_PORT: u16 = port_from_env(option_env!("BROKER_PORT"), 1883);

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
    let mut led = Output::new(p.P0_02, Level::Low, OutputDrive::Standard);

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

    static RX: StaticCell<[u8; 2048]> = StaticCell::new();
    static TX: StaticCell<[u8; 2048]> = StaticCell::new();
    let mut connector = EmbassyTcpConnector::new(
        stack,
        BROKER_HOST,
        BROKER_PORT,
        RX.init([0; 2048]),
        TX.init([0; 2048]),
    );
    info!("broker {}:{}", BROKER_HOST, BROKER_PORT);
    embermq_link_check::run(
        &mut connector,
        &EmbassyClock::new(),
        LinkCheck::default(),
        |event| match event {
            LinkEvent::Connecting { attempt } => info!("connecting (attempt {})", attempt),
            LinkEvent::Connected { attempt } => {
                led.set_high();
                info!(
                    "tcp connected to {}:{} (attempt {})",
                    BROKER_HOST, BROKER_PORT, attempt
                );
            }
            LinkEvent::ConnectFailed(error) => warn!("connect failed: {}", error),
            LinkEvent::Closed {
                after,
                received,
                reason,
            } => {
                led.set_low();
                info!(
                    "closed after {} ms ({} bytes received): {}",
                    after.as_millis(),
                    received,
                    defmt::Debug2Format(&reason)
                );
            }
            LinkEvent::Waiting { delay } => info!("next attempt in {} ms", delay.as_millis()),
        },
    )
    .await
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
