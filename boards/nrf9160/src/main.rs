//! embermq on an nRF9160 over LTE-M.
//!
//! Starts the modem through embassy-net-nrf91, attaches to the packet
//! network with the APN named at build time and hands the modem's address
//! and DNS servers to embassy-net, then runs the board-independent
//! application (`embermq-board-app`) on the embermq client: MQTT 5.0
//! (3.1.1 fall-back) over WebSocket (`embermq_ws::WsConnector`) over TCP
//! (`embermq::transport::EmbassyTcpConnector`, which resolves the broker's
//! name through embassy-net). It publishes a JSON reading (uptime, a
//! counter) every `TELEMETRY_SECS`, answers commands on
//! `devices/{id}/commands` (LED1 on/off, the interval) and reconnects with
//! backoff. Every step is logged with defmt over RTT.
#![no_std]
#![no_main]

use core::cell::RefCell;
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
use embermq::client::{ClientState, Connection, NoopRawMutex};
use embermq::clock::EmbassyClock;
use embermq::transport::EmbassyTcpConnector;
use embermq_board_app::{
    AppEvent, Board, FlashStore, Settings, SharedRng, device_id_from_serial, port_from_env,
    secs_from_env, str_from_env,
};
use embermq_ws::{Buffers, WsConnector};
use static_cell::StaticCell;
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
/// The broker's host name or IPv4 address (build-time `BROKER_HOST`).
const BROKER_HOST: &str = str_from_env(option_env!("BROKER_HOST"), "test.mosquitto.org");
/// The broker's WebSocket port (build-time `BROKER_PORT`).
const BROKER_PORT: u16 = port_from_env(option_env!("BROKER_PORT"), 8080);
/// The WebSocket path (build-time `BROKER_PATH`).
const BROKER_PATH: &str = str_from_env(option_env!("BROKER_PATH"), "/mqtt");
/// The device id (build-time `DEVICE_ID`); unset: `nrf9160-` and the
/// chip's FICR device id in hex.
const DEVICE_ID: Option<&str> = option_env!("DEVICE_ID");
/// Seconds between readings at start-up (build-time `TELEMETRY_SECS`).
const TELEMETRY_SECS: u32 = secs_from_env(option_env!("TELEMETRY_SECS"), 30);

/// TCP socket buffers (receive window, send buffer).
const TCP_BUF: usize = 2048;
/// WebSocket frame buffers (the handshake response must fit in `rx`).
const WS_BUF: usize = 1024;
/// The largest MQTT packet received / sent.
const MQTT_RX: usize = 2048;
const MQTT_TX: usize = 1024;
/// Queued and unacknowledged publishes.
const OUTBOX: usize = 4096;
/// The flash pages of the durable outbox (the last 32 KiB, left out of FLASH in `memory.x`).
const OUTBOX_FLASH: core::ops::Range<u32> = 0xF_8000..0x10_0000;
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

/// The internal flash through the async NOR flash traits.
type Flash = BlockingAsync<Nvmc<'static>>;

/// The client state: 8 publishes in flight, 2 subscriptions, the outbox
/// kept in flash.
type MqttState = ClientState<'static, NoopRawMutex, 8, 2, 128, 0, FlashStore<'static, Flash>>;

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

    static RNG: StaticCell<RefCell<CcRng<'static, Blocking>>> = StaticCell::new();
    let rng = SharedRng::new(RNG.init(RefCell::new(rng)));

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
            warn!("wss WITHOUT server verification (WSS_INSECURE): lab use only");
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
        Err(e) => defmt::panic!("flash outbox: {}", defmt::Display2Format(&e)),
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
    info!(
        "device {} -> {}://{}:{}{}",
        device_id, SCHEME, BROKER_HOST, BROKER_PORT, BROKER_PATH
    );
    let board = Nrf9160Board { led };
    if let Err(e) =
        embermq_board_app::run(state, connection, EmbassyClock::new(), board, &settings).await
    {
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
