//! What `pub`, `sub` and `demo` share to run one embermq client on tokio:
//! the client state type, the runtime, the `-d` progress lines, and running
//! the driver beside the command's own work.
//!
//! Every client runs on one current-thread runtime: the driver future and
//! the command's work are polled together in the same task
//! ([`drive`]), so the state uses `NoopRawMutex` and nothing needs `Send`.

use core::future::Future;

use embermq::client::{ClientError, ClientState, NoopRawMutex};
use embermq::codec::ProtocolVersion;
use embermq::session::{self, CloseReason};

use crate::broker_url::BrokerUrl;
use crate::connect::BrokerConnectError;
use crate::failure::{Exit, Failure};

/// Client state of the CLI: 32 messages in flight, 8 subscriptions.
pub(crate) type CliState<'b> = ClientState<'b, NoopRawMutex, 32, 8>;

/// A current-thread tokio runtime with timers and I/O.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Failure, format!("cannot start the runtime: {e}")))
}

/// "3.1.1" or "5.0".
pub(crate) fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V311 => "3.1.1",
        _ => "5.0",
    }
}

/// The `-d` line for a driver event, if it merits one.
pub(crate) fn progress_line(url: &BrokerUrl, event: &embermq::client::Event<'_>) -> Option<String> {
    use embermq::client::Event;
    match event {
        Event::Connected {
            version,
            session_present,
        } => Some(format!(
            "connected to {url} (MQTT {}, session present: {session_present})",
            version_name(*version)
        )),
        Event::Session(session::Event::ConnectRefused {
            reason,
            falling_back_to_v311: true,
        }) => Some(format!("broker refused MQTT 5.0 ({reason}); trying 3.1.1")),
        Event::Disconnected {
            reason: CloseReason::ClientRequested,
        } => Some("disconnected".to_owned()),
        Event::Disconnected { reason } => Some(format!("link ended: {reason:?}")),
        Event::Reconnecting { attempt, .. } => Some(format!("connect attempt {}", attempt + 1)),
        Event::SubscriptionsRestored { refused: 0 } => Some("subscriptions restored".to_owned()),
        Event::SubscriptionsRestored { refused } => Some(format!(
            "subscriptions restored; the broker refused {refused} of them"
        )),
        _ => None,
    }
}

/// How a driver future's error becomes the command's failure.
pub(crate) trait DriverFailure {
    /// The failure, for a link to `url`.
    fn into_failure(self, url: &BrokerUrl) -> Failure;
}

impl DriverFailure for ClientError<BrokerConnectError> {
    fn into_failure(self, url: &BrokerUrl) -> Failure {
        Failure::from_client(&self, url)
    }
}

impl DriverFailure for Failure {
    fn into_failure(self, _url: &BrokerUrl) -> Failure {
        self
    }
}

/// Runs `driver` (the client's `Connection::run` future, or a loop of
/// them) and `work` together until `work` finishes and the driver then
/// ends (the work calls `Client::stop` when done), until the driver ends
/// first (`Ok`: something else called `Client::stop`), or until the driver
/// fails.
pub(crate) async fn drive<D, W, E>(url: &BrokerUrl, driver: D, work: W) -> Result<(), Failure>
where
    D: Future<Output = Result<(), E>>,
    W: Future<Output = Result<(), Failure>>,
    E: DriverFailure,
{
    let mut driver = core::pin::pin!(driver);
    let work = core::pin::pin!(work);
    tokio::select! {
        ended = &mut driver => match ended {
            Err(e) => Err(e.into_failure(url)),
            // Stopped by the command itself (e.g. from its event handler).
            Ok(()) => Ok(()),
        },
        done = work => {
            done?;
            driver.await.map_err(|e| e.into_failure(url))
        }
    }
}

/// `e`, from a [`Client`](embermq::client::Client) call, as a failure.
pub(crate) fn call_failure(what: &str, e: ClientError) -> Failure {
    Failure::new(Exit::Failure, format!("{what}: {e}"))
}
