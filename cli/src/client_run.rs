//! What the commands share to run embermq on tokio: the core client's
//! state type (`demo`), the runtime, and the `-d` progress lines of `pub`
//! and `sub` (which run on the host layer, `embermq::host`).
//!
//! Every command runs on one current-thread runtime, so the core client's
//! state uses `NoopRawMutex` and nothing needs `Send`.

use embermq::client::{ClientState, NoopRawMutex};
use embermq::codec::ProtocolVersion;
use embermq::session::{self, CloseReason};

use crate::broker_url::BrokerUrl;
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

/// The `-d` line for a host-layer event, if it merits one.
pub(crate) fn progress_line(url: &BrokerUrl, event: &embermq::host::Event) -> Option<String> {
    use embermq::host::Event;
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
