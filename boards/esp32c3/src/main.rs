//! embermq on an ESP32-C3 over Wi-Fi.
//!
//! Joins the Wi-Fi network named at build time, gets an address by DHCP,
//! then runs the board-independent link check (`embermq-link-check`): the
//! broker's name is resolved through embassy-net and a TCP connection opened
//! with `embermq::transport::EmbassyTcpConnector`, held, and opened again
//! after a delay when it ends or fails. Every step is printed with
//! esp-println and the LED on GPIO8 shows whether the link is up.
//!
//! MQTT itself comes with the embermq client; this firmware proves the
//! network and the transport underneath it.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::{Runner, Stack, StackResources};
use embassy_time::{Duration, Timer};
use embermq::clock::EmbassyClock;
use embermq::transport::EmbassyTcpConnector;
use embermq_link_check::{LinkCheck, LinkEvent, port_from_env};
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::gpio::{Level, Output, OutputConfig};
use esp_hal::rng::Rng;
use esp_hal::timer::timg::TimerGroup;
use esp_println::println;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{AuthenticationMethodConfig, Config, Interface, WifiController};
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
const BROKER_HOST: &str = match option_env!("BROKER_HOST") {
    Some(host) => host,
    None => "test.mosquitto.org",
};
/// The broker's TCP port (build-time `BROKER_PORT`).
const BROKER_PORT: u16 = port_from_env(option_env!("BROKER_PORT"), 1883);

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
    let mut led = Output::new(peripherals.GPIO8, Level::High, OutputConfig::default());

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

    static RX: StaticCell<[u8; 2048]> = StaticCell::new();
    static TX: StaticCell<[u8; 2048]> = StaticCell::new();
    let mut connector = EmbassyTcpConnector::new(
        stack,
        BROKER_HOST,
        BROKER_PORT,
        RX.init([0; 2048]),
        TX.init([0; 2048]),
    );
    println!("broker {}:{}", BROKER_HOST, BROKER_PORT);
    embermq_link_check::run(
        &mut connector,
        &EmbassyClock::new(),
        LinkCheck::default(),
        |event| match event {
            LinkEvent::Connecting { attempt } => println!("connecting (attempt {})", attempt),
            LinkEvent::Connected { attempt } => {
                led.set_low();
                println!(
                    "tcp connected to {}:{} (attempt {})",
                    BROKER_HOST, BROKER_PORT, attempt
                );
            }
            LinkEvent::ConnectFailed(error) => println!("connect failed: {}", error),
            LinkEvent::Closed {
                after,
                received,
                reason,
            } => {
                led.set_high();
                println!(
                    "closed after {} ({} bytes received): {:?}",
                    after, received, reason
                );
            }
            LinkEvent::Waiting { delay } => println!("next attempt in {}", delay),
        },
    )
    .await
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
