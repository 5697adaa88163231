//! embermq on an ESP32-C3 over Wi-Fi.
//!
//! Joins the Wi-Fi network named at build time and gets an address by DHCP,
//! then runs the board-independent application (`embermq-board-app`) on
//! the embermq client: MQTT 5.0 (3.1.1 fall-back) over WebSocket
//! (`embermq::transport::WsConnector`) over TCP
//! (`embermq::transport::EmbassyTcpConnector`, which resolves the broker's
//! name through embassy-net). It publishes a JSON reading (the on-chip
//! temperature sensor, uptime, a counter) every `TELEMETRY_SECS`, answers
//! commands on `devices/{id}/commands` (the LED on GPIO8, the interval) and
//! reconnects with backoff. Every step is printed with esp-println.
#![no_std]
#![no_main]

use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_executor::Spawner;
use embassy_net::{Runner, Stack, StackResources};
use embassy_time::{Duration, Timer};
use embermq_board_app::{
    AppEvent, Board, Broker, Link, LinkMemory, Settings, device_id_from_serial, secs_from_env,
};
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::gpio::{Level, Output, OutputConfig};
use esp_hal::rng::{Rng, Trng};
use esp_hal::timer::timg::TimerGroup;
use esp_hal::tsens::{self, TemperatureSensor};
use esp_println::println;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{AuthenticationMethodConfig, Config, Interface, WifiController};
use esp_storage::FlashStorage;
use static_cell::{ConstStaticCell, StaticCell};

esp_bootloader_esp_idf::esp_app_desc!();

/// Wi-Fi network name (build-time `WIFI_SSID`).
const WIFI_SSID: &str = match option_env!("WIFI_SSID") {
    Some(ssid) => ssid,
    None => "embermq",
};
/// Wi-Fi password (build-time `WIFI_PASSWORD`); empty joins an open network.
const WIFI_PASSWORD: &str = match option_env!("WIFI_PASSWORD") {
    Some(password) => password,
    None => "",
};
/// The broker (build-time `BROKER_HOST`, `BROKER_PORT`, `BROKER_PATH`); a
/// `wss` build verifies it against the CA certificate (DER) from build-time
/// `BROKER_CA_DER` (or not at all with the feature
/// `insecure-no-tls-verification`).
const BROKER: Broker = Broker::from_env(include_bytes!(concat!(env!("OUT_DIR"), "/broker-ca.der")));
/// The device id (build-time `DEVICE_ID`); unset: `esp32c3-` and the
/// eFuse base MAC in hex.
const DEVICE_ID: Option<&str> = option_env!("DEVICE_ID");
/// Seconds between readings at start-up (build-time `TELEMETRY_SECS`).
const TELEMETRY_SECS: u32 = secs_from_env(option_env!("TELEMETRY_SECS"), 10);

/// The flash pages of the durable outbox (the `nvs` partition of the default partition table that espflash writes; nothing else on this firmware uses NVS).
const OUTBOX_FLASH: core::ops::Range<u32> = 0x9000..0xF000;

/// The SPI flash through the async NOR flash traits.
type Flash = BlockingAsync<FlashStorage<'static>>;

/// The LED on GPIO8 (active low on a C3 SuperMini), the on-chip
/// temperature sensor, and the serial log.
struct Esp32c3Board {
    led: Output<'static>,
    thermometer: TemperatureSensor<'static>,
}

impl Board for Esp32c3Board {
    fn set_led(&mut self, on: bool) {
        self.led
            .set_level(if on { Level::Low } else { Level::High });
    }

    fn temperature_c(&mut self) -> Option<f32> {
        Some(self.thermometer.get_temperature().to_celsius())
    }

    fn report(&mut self, event: AppEvent<'_>) {
        println!("{}", event);
    }
}

/// Wi-Fi and the TCP/IP stack allocate from this heap (esp-radio needs one).
const HEAP_BYTES: usize = 72 * 1024;

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(size: HEAP_BYTES);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    // The scheduler Wi-Fi needs; it must run before the radio starts.
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    println!("embermq esp32c3: joining Wi-Fi {}", WIFI_SSID);
    let led = Output::new(peripherals.GPIO8, Level::High, OutputConfig::default());
    let flash: Flash = BlockingAsync::new(FlashStorage::new(peripherals.FLASH));
    let thermometer = match TemperatureSensor::new(peripherals.TSENS, tsens::Config::default()) {
        Ok(sensor) => sensor,
        Err(e) => halt("temperature sensor", e),
    };

    let mut controller = match WifiController::new(peripherals.WIFI, Default::default()) {
        Ok(controller) => controller,
        Err(e) => halt("Wi-Fi init failed", e),
    };
    let authentication = if WIFI_PASSWORD.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        match WIFI_PASSWORD.try_into() {
            Ok(password) => AuthenticationMethodConfig::WpaWpa2Personal(password),
            Err(e) => halt("WIFI_PASSWORD invalid", e),
        }
    };
    let ssid = match WIFI_SSID.try_into() {
        Ok(ssid) => ssid,
        Err(e) => halt("WIFI_SSID invalid", e),
    };
    let station = StationConfig::default()
        .with_ssid(ssid)
        .with_authentication(authentication);
    if let Err(e) = controller.set_config(&Config::Station(station)) {
        halt("Wi-Fi configuration refused", e);
    }

    let rng = Rng::new();
    let seed = u64::from(rng.random()) << 32 | u64::from(rng.random());
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawner.spawn(wifi_task(controller).expect("one wifi task"));
    spawner.spawn(net_task(runner).expect("one net task"));

    wait_for_address(stack).await;

    let device_id: &'static str = match DEVICE_ID {
        Some(id) => id,
        None => {
            static ID: StaticCell<heapless::String<32>> = StaticCell::new();
            let mac = esp_hal::efuse::base_mac_address();
            ID.init(device_id_from_serial("esp32c3", mac.as_bytes()))
        }
    };
    let settings = match Settings::new(device_id, TELEMETRY_SECS) {
        Ok(settings) => settings,
        Err(e) => halt("DEVICE_ID", e),
    };

    // Wi-Fi is running, so the RNG draws on RF noise: a TRNG.
    let rng = match Trng::try_new() {
        Ok(trng) => trng,
        Err(e) => halt("no TRNG", e),
    };
    // The buffers, client state and RNG of the link, zeroed at boot.
    static MEMORY: ConstStaticCell<LinkMemory<Flash, Trng>> =
        ConstStaticCell::new(LinkMemory::new());
    if BROKER.is_insecure() {
        println!("wss WITHOUT server verification (insecure-no-tls-verification): lab use only");
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
        Err(e) => halt("flash outbox", e),
    };
    println!(
        "device {} -> {}://{}:{}{}",
        device_id,
        BROKER.scheme(),
        BROKER.host,
        BROKER.port,
        BROKER.path
    );
    let board = Esp32c3Board { led, thermometer };
    if let Err(e) = link.run(board, &settings).await {
        println!("client stopped: {}", e);
    }
    halt("client", "stopped")
}

/// Waits for DHCP and prints the address.
async fn wait_for_address(stack: Stack<'static>) {
    stack.wait_config_up().await;
    if let Some(config) = stack.config_v4() {
        println!("address {} gateway {:?}", config.address, config.gateway);
    }
}

/// Keeps the station joined: connect, wait for a disconnect, rejoin.
#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) {
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                println!("Wi-Fi joined");
                let _ = controller.wait_for_disconnect_async().await;
                println!("Wi-Fi lost; rejoining");
            }
            Err(e) => {
                println!("Wi-Fi join failed: {:?}; retrying in 5 s", e);
                Timer::after(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Drives the TCP/IP stack.
#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) -> ! {
    runner.run().await
}

/// Reports a fatal start-up error and stops (the watchdog resets the chip).
fn halt(what: &str, error: impl core::fmt::Debug) -> ! {
    println!("{}: {:?}", what, error);
    #[allow(clippy::empty_loop)]
    loop {}
}
