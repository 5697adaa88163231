//! embermq on an nRF52840 with a WIZnet W5500 Ethernet module.
//!
//! Brings the W5500 up in MACRAW mode under embassy-net and gets an address
//! by DHCP, then runs the board-independent application
//! (`embermq-board-app`) on the embermq client: MQTT 5.0 (3.1.1 fall-back)
//! over WebSocket (`embermq::transport::WsConnector`) over TCP
//! (`embermq::transport::EmbassyTcpConnector`, which resolves the broker's
//! name through embassy-net). It publishes a JSON reading (uptime, a
//! counter) every `TELEMETRY_SECS`, answers commands on
//! `devices/{id}/commands` (LED1 on/off, the interval) and reconnects with
//! backoff. Every step is logged with defmt over RTT.
#![no_std]
#![no_main]

use defmt::{error, info, unwrap};
use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_executor::Spawner;
use embassy_net::{Stack, StackResources};
use embassy_net_wiznet::chip::W5500;
use embassy_net_wiznet::{Device, Runner, State};
use embassy_nrf::gpio::{Input, Level, Output, OutputDrive, Pull};
use embassy_nrf::mode::Async;
use embassy_nrf::nvmc::Nvmc;
use embassy_nrf::rng::Rng;
use embassy_nrf::spim::{self, Spim};
use embassy_nrf::{bind_interrupts, peripherals, rng};
use embassy_time::Delay;
use embedded_hal_bus::spi::ExclusiveDevice;
use embermq_board_app::{
    AppEvent, Board, Broker, Link, LinkMemory, Settings, device_id_from_serial, secs_from_env,
};
use static_cell::{ConstStaticCell, StaticCell};
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    SPIM3 => spim::InterruptHandler<peripherals::SPI3>;
    RNG => rng::InterruptHandler<peripherals::RNG>;
});

/// The broker (build-time `BROKER_HOST`, `BROKER_PORT`, `BROKER_PATH`).
const BROKER: Broker = Broker::from_env(&[]);
/// The device id (build-time `DEVICE_ID`); unset: `nrf52840-` and the
/// chip's FICR device id in hex.
const DEVICE_ID: Option<&str> = option_env!("DEVICE_ID");
/// Seconds between readings at start-up (build-time `TELEMETRY_SECS`).
const TELEMETRY_SECS: u32 = secs_from_env(option_env!("TELEMETRY_SECS"), 10);

/// The flash pages of the durable outbox (the last 32 KiB, left out of FLASH in `memory.x`).
const OUTBOX_FLASH: core::ops::Range<u32> = 0xF_8000..0x10_0000;

type W5500Runner = Runner<
    'static,
    W5500,
    ExclusiveDevice<Spim<'static>, Output<'static>, Delay>,
    Input<'static>,
    Output<'static>,
>;

/// The internal flash through the async NOR flash traits.
type Flash = BlockingAsync<Nvmc<'static>>;

/// LED1 (active low) and the defmt log.
struct Nrf52840Board {
    led: Output<'static>,
}

impl Board for Nrf52840Board {
    fn set_led(&mut self, on: bool) {
        self.led
            .set_level(if on { Level::Low } else { Level::High });
    }

    fn report(&mut self, event: AppEvent<'_>) {
        info!("{}", defmt::Display2Format(&event));
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let p = embassy_nrf::init(Default::default());
    info!("embermq nrf52840-w5500: starting Ethernet");
    let led = Output::new(p.P0_13, Level::High, OutputDrive::Standard);
    let flash: Flash = BlockingAsync::new(Nvmc::new(p.NVMC));

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

    let device_id: &'static str = match DEVICE_ID {
        Some(id) => id,
        None => {
            static ID: StaticCell<heapless::String<32>> = StaticCell::new();
            let ficr = embassy_nrf::pac::FICR;
            let serial =
                u64::from(ficr.deviceid(1).read()) << 32 | u64::from(ficr.deviceid(0).read());
            ID.init(device_id_from_serial("nrf52840", &serial.to_be_bytes()))
        }
    };
    let settings = unwrap!(Settings::new(device_id, TELEMETRY_SECS).map_err(|_| "DEVICE_ID"));

    // The buffers, client state and RNG of the link, zeroed at boot.
    static MEMORY: ConstStaticCell<LinkMemory<Flash, Rng<'static, Async>>> =
        ConstStaticCell::new(LinkMemory::new());
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
        "device {} -> ws://{}:{}{}",
        device_id, BROKER.host, BROKER.port, BROKER.path
    );
    let board = Nrf52840Board { led };
    if let Err(e) = link.run(board, &settings).await {
        error!("client stopped: {}", defmt::Display2Format(&e));
    }
    defmt::panic!("the client never stops on its own")
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
