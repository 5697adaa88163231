//! embermq on an ESP32-C3 over Wi-Fi.
//!
//! Joins the Wi-Fi network named at build time and gets an address by DHCP,
//! then runs the board-independent application (`embermq-board-app`) on
//! the embermq client: MQTT 5.0 (3.1.1 fall-back) over WebSocket
//! (`embermq_ws::WsConnector`) over TCP
//! (`embermq::transport::EmbassyTcpConnector`, which resolves the broker's
//! name through embassy-net). It publishes a JSON reading (the on-chip
//! temperature sensor, uptime, a counter) every `TELEMETRY_SECS`, answers
//! commands on `devices/{id}/commands` (the LED on GPIO8, the interval) and
//! reconnects with backoff. Every step is printed with esp-println.
#![no_std]
#![no_main]

use core::cell::RefCell;

use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_executor::Spawner;
use embassy_net::{Runner, Stack, StackResources};
use embassy_time::{Duration, Timer};
use embermq::client::{ClientState, Connection, NoopRawMutex};
use embermq::clock::EmbassyClock;
use embermq::transport::EmbassyTcpConnector;
use embermq_board_app::{
    AppEvent, Board, FlashStore, Settings, SharedRng, device_id_from_serial, port_from_env,
    secs_from_env, str_from_env,
};
use embermq_ws::{Buffers, WsConnector};
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
use static_cell::StaticCell;

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
/// The broker's host name or IPv4 address (build-time `BROKER_HOST`).
const BROKER_HOST: &str = str_from_env(option_env!("BROKER_HOST"), "test.mosquitto.org");
/// The broker's WebSocket port (build-time `BROKER_PORT`).
const BROKER_PORT: u16 = port_from_env(option_env!("BROKER_PORT"), 8080);
/// The WebSocket path (build-time `BROKER_PATH`).
const BROKER_PATH: &str = str_from_env(option_env!("BROKER_PATH"), "/mqtt");
/// The device id (build-time `DEVICE_ID`); unset: `esp32c3-` and the
/// eFuse base MAC in hex.
const DEVICE_ID: Option<&str> = option_env!("DEVICE_ID");
/// Seconds between readings at start-up (build-time `TELEMETRY_SECS`).
const TELEMETRY_SECS: u32 = secs_from_env(option_env!("TELEMETRY_SECS"), 10);

/// TCP socket buffers (receive window, send buffer).
const TCP_BUF: usize = 2048;
/// WebSocket frame buffers (the handshake response must fit in `rx`).
const WS_BUF: usize = 1024;
/// The largest MQTT packet received / sent.
const MQTT_RX: usize = 2048;
const MQTT_TX: usize = 1024;
/// Queued and unacknowledged publishes.
const OUTBOX: usize = 4096;
/// The flash pages of the durable outbox (the `nvs` partition of the default partition table that espflash writes; nothing else on this firmware uses NVS).
const OUTBOX_FLASH: core::ops::Range<u32> = 0x9000..0xF000;
/// TLS record buffers (`wss`): a whole TLS 1.3 record (2^14 + 256 bytes)
/// to decrypt in place, the same again to collect it, and outgoing records.
#[cfg(feature = "wss")]
const TLS_RECORD: usize = 16_640;
#[cfg(feature = "wss")]
const TLS_WRITE: usize = 4096;
/// The broker's CA certificate (DER) from build-time `BROKER_CA_DER`.
#[cfg(feature = "wss")]
const BROKER_CA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/broker-ca.der"));
#[cfg(feature = "wss")]
const _: () = assert!(
    !BROKER_CA.is_empty() || option_env!("WSS_INSECURE").is_some(),
    "a wss build needs BROKER_CA_DER (the broker's CA certificate, DER) or WSS_INSECURE=1"
);
/// The URL scheme, for the log.
const SCHEME: &str = if cfg!(feature = "wss") { "wss" } else { "ws" };
/// The durable outbox's item buffer: the largest record (a PUBLISH no
/// larger than the transmit buffer) and its 4-byte key.
const STORE_BUF_LEN: usize = MQTT_TX + 4;

/// The SPI flash through the async NOR flash traits.
type Flash = BlockingAsync<FlashStorage<'static>>;

/// The client state: 8 publishes in flight, 2 subscriptions, the outbox
/// kept in flash.
type MqttState = ClientState<'static, NoopRawMutex, 8, 2, 128, 0, FlashStore<'static, Flash>>;

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
    let trng = match Trng::try_new() {
        Ok(trng) => trng,
        Err(e) => halt("no TRNG", e),
    };
    static RNG: StaticCell<RefCell<Trng>> = StaticCell::new();
    let rng = SharedRng::new(RNG.init(RefCell::new(trng)));

    static TCP_RX: StaticCell<[u8; TCP_BUF]> = StaticCell::new();
    static TCP_TX: StaticCell<[u8; TCP_BUF]> = StaticCell::new();
    static WS_RX: StaticCell<[u8; WS_BUF]> = StaticCell::new();
    static WS_TX: StaticCell<[u8; WS_BUF]> = StaticCell::new();
    let tcp = EmbassyTcpConnector::new(
        stack,
        BROKER_HOST,
        BROKER_PORT,
        TCP_RX.init([0; TCP_BUF]),
        TCP_TX.init([0; TCP_BUF]),
    );
    // wss: TLS 1.3 (embedded-tls) between the WebSocket and TCP.
    #[cfg(feature = "wss")]
    let tcp = {
        use embermq::transport::embedded_tls::{EmbeddedTlsBuffers, EmbeddedTlsConnector};
        use static_cell::ConstStaticCell;
        static TLS_READ_BUF: ConstStaticCell<[u8; TLS_RECORD]> =
            ConstStaticCell::new([0; TLS_RECORD]);
        static TLS_STAGING_BUF: ConstStaticCell<[u8; TLS_RECORD]> =
            ConstStaticCell::new([0; TLS_RECORD]);
        static TLS_WRITE_BUF: ConstStaticCell<[u8; TLS_WRITE]> =
            ConstStaticCell::new([0; TLS_WRITE]);
        let buffers = EmbeddedTlsBuffers {
            read: TLS_READ_BUF.take(),
            write: TLS_WRITE_BUF.take(),
            staging: TLS_STAGING_BUF.take(),
        };
        if BROKER_CA.is_empty() {
            println!("wss WITHOUT server verification (WSS_INSECURE): lab use only");
            EmbeddedTlsConnector::insecure_without_verification(tcp, BROKER_HOST, buffers, rng)
        } else {
            EmbeddedTlsConnector::new(tcp, BROKER_HOST, BROKER_CA, buffers, rng)
        }
    };
    let ws = WsConnector::new(
        tcp,
        BROKER_HOST,
        Some(BROKER_PORT),
        BROKER_PATH,
        Buffers {
            rx: WS_RX.init([0; WS_BUF]),
            tx: WS_TX.init([0; WS_BUF]),
        },
        rng,
    );

    // Unacknowledged readings are kept in flash and sent after a reset.
    static STORE_BUF: StaticCell<[u8; STORE_BUF_LEN]> = StaticCell::new();
    let store = match FlashStore::new(flash, OUTBOX_FLASH, STORE_BUF.init([0; STORE_BUF_LEN])) {
        Ok(store) => store,
        Err(e) => halt("flash outbox", e),
    };
    static OUTBOX_BUF: StaticCell<[u8; OUTBOX]> = StaticCell::new();
    static MQTT_STATE: StaticCell<MqttState> = StaticCell::new();
    static RX: StaticCell<[u8; MQTT_RX]> = StaticCell::new();
    static TX: StaticCell<[u8; MQTT_TX]> = StaticCell::new();
    let state = MQTT_STATE.init(ClientState::with_store(
        settings.session_config(MQTT_RX),
        OUTBOX_BUF.init([0; OUTBOX]),
        store,
    ));
    let connection = Connection::new(
        state,
        ws,
        EmbassyClock::new(),
        rng,
        RX.init([0; MQTT_RX]),
        TX.init([0; MQTT_TX]),
        settings.client,
    );
    println!(
        "device {} -> {}://{}:{}{}",
        device_id, SCHEME, BROKER_HOST, BROKER_PORT, BROKER_PATH
    );
    let board = Esp32c3Board { led, thermometer };
    if let Err(e) =
        embermq_board_app::run(state, connection, EmbassyClock::new(), board, &settings).await
    {
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
