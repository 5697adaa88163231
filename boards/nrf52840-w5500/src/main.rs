//! embermq on an nRF52840 with a WIZnet W5500 Ethernet module.
//!
//! Brings the W5500 up in MACRAW mode under embassy-net, gets an address by
//! DHCP, then runs the board-independent link check (`embermq-link-check`):
//! the broker's name is resolved through embassy-net and a TCP connection
//! opened with `embermq::transport::EmbassyTcpConnector`, held, and opened
//! again after a delay when it ends or fails. Every step is logged with defmt
//! over RTT and LED1 is lit while the link is up.
//!
//! MQTT itself comes with the embermq client; this firmware proves the
//! network and the transport underneath it.
#![no_std]
#![no_main]

use defmt::{info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_net::{Stack, StackResources};
use embassy_net_wiznet::chip::W5500;
use embassy_net_wiznet::{Device, Runner, State};
use embassy_nrf::gpio::{Input, Level, Output, OutputDrive, Pull};
use embassy_nrf::rng::Rng;
use embassy_nrf::spim::{self, Spim};
use embassy_nrf::{bind_interrupts, peripherals, rng};
use embassy_time::Delay;
use embedded_hal_bus::spi::ExclusiveDevice;
use embermq::clock::EmbassyClock;
use embermq::transport::EmbassyTcpConnector;
use embermq_link_check::{LinkCheck, LinkEvent, port_from_env};
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    SPIM3 => spim::InterruptHandler<peripherals::SPI3>;
    RNG => rng::InterruptHandler<peripherals::RNG>;
});

/// The broker's host name or IPv4 address (build-time `BROKER_HOST`).
const BROKER_HOST: &str = match option_env!("BROKER_HOST") {
    Some(host) => host,
    None => "test.mosquitto.org",
};
/// The broker's TCP port (build-time `BROKER_PORT`).
const BROKER_PORT: u16 = port_from_env(option_env!("BROKER_PORT"), 1883);

type W5500Runner = Runner<
    'static,
    W5500,
    ExclusiveDevice<Spim<'static>, Output<'static>, Delay>,
    Input<'static>,
    Output<'static>,
>;

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let p = embassy_nrf::init(Default::default());
    info!("embermq nrf52840-w5500: starting Ethernet");
    let mut led = Output::new(p.P0_13, Level::High, OutputDrive::Standard);

    let mut rng = Rng::new(p.RNG, Irqs);
    let mut random = [0u8; 8];
    rng.fill_bytes(&mut random).await;
    let seed = u64::from_le_bytes(random);
    // A locally administered unicast MAC from the random bytes.
    let mac = [0x02, 0x00, random[0], random[1], random[2], random[3]];

    let mut config = spim::Config::default();
    config.frequency = spim::Frequency::M8;
    // W5500 on SPI3: SCK P1.15, MISO P1.14, MOSI P1.13, CS P1.12 (see README).
    let spi = Spim::new(p.SPI3, Irqs, p.P1_15, p.P1_14, p.P1_13, config);
    let cs = Output::new(p.P1_12, Level::High, OutputDrive::Standard);
    let spi = unwrap!(ExclusiveDevice::new(spi, cs, Delay));
    let interrupt = Input::new(p.P1_11, Pull::Up);
    let reset = Output::new(p.P1_10, Level::High, OutputDrive::Standard);

    static STATE: StaticCell<State<2, 2>> = StaticCell::new();
    let (device, runner) =
        match embassy_net_wiznet::new(mac, STATE.init(State::new()), spi, interrupt, reset).await {
            Ok(started) => started,
            Err(e) => defmt::panic!("W5500 not answering: {}", defmt::Debug2Format(&e)),
        };
    spawner.spawn(unwrap!(ethernet_task(runner)));

    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, net_runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawner.spawn(unwrap!(net_task(net_runner)));

    wait_for_address(stack).await;

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
                led.set_low();
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
                led.set_high();
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

/// Waits for DHCP and logs the address.
async fn wait_for_address(stack: Stack<'static>) {
    stack.wait_config_up().await;
    if let Some(config) = stack.config_v4() {
        info!("address {} gateway {}", config.address, config.gateway);
    }
}

/// Moves frames between the W5500 and embassy-net.
#[embassy_executor::task]
async fn ethernet_task(runner: W5500Runner) -> ! {
    runner.run().await
}

/// Drives the TCP/IP stack.
#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device<'static>>) -> ! {
    runner.run().await
}
