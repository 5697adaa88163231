//! Durable outbox: the [`Store`] trait that keeps QoS 1 and QoS 2 messages
//! across a process restart or a device reset, [`NoStore`] (the default:
//! nothing is kept, no cost), and `FileStore` (feature `std`: an
//! append-only log file with fsync).
//!
//! # How the client uses a store
//!
//! The outbox itself stays the buffer lent to the session; a store keeps a
//! copy of each QoS ≥ 1 record so that it outlives the process:
//!
//! 1. Before the first QoS ≥ 1 publish, and before the first connect,
//!    [`Store::replay`] hands every stored record back; the client puts
//!    them into the outbox in the order they were stored and continues its
//!    keys above the highest one seen. Records that do not fit the outbox
//!    are taken by later replays (after the last key put in), as
//!    acknowledgements free room; a record that cannot be decoded is
//!    removed (quarantined). A replay error is retried later; the client
//!    connects anyway.
//! 2. [`Client::publish`](crate::client::Client::publish) queues a QoS ≥ 1
//!    message, then calls [`Store::persist`] with a new key. The message is
//!    not sent before `persist` returned `Ok`; if it fails the message is
//!    taken back out of the outbox and the publisher gets
//!    [`ClientError::Store`](crate::client::ClientError::Store): a failed
//!    persist is never a silent loss.
//! 3. When the broker acknowledged the message (PUBACK for QoS 1, PUBCOMP
//!    for QoS 2), or the message failed for good (rejected, too large,
//!    expired), the driver calls [`Store::remove`].
//!
//! After a restart the replayed messages are sent again with DUP, each
//! under the packet identifier its key gives (the one it was sent under
//! before), so a broker that resumed the session completes the flows it
//! holds [MQTT-4.3.3-9]. Whether a message was sent or past PUBREC is not
//! stored (a flash write per send): a QoS 2 message resumes at PUBLISH,
//! and may be delivered twice if the broker lost the session or had
//! finished the flow.
//!
//! # What a record is
//!
//! Opaque bytes to the store (the encoded PUBLISH, at most the outbox
//! size), under a `u32` key that increases with every persist. The store
//! needs no allocator: it reads and writes through the closures the client
//! passes, with a buffer of its own.
//!
//! # What it does not do
//!
//! No per-send state, no inbound QoS 2 state and no subscriptions are
//! stored; a store is the outbox only. Keys are not reused and do not wrap
//! (2³² persists).

#[cfg(all(test, feature = "std"))]
mod crash_tests;
#[cfg(feature = "std")]
mod file;
#[cfg(feature = "std")]
mod fs;
#[cfg(feature = "std")]
mod log;
#[cfg(all(test, feature = "std"))]
mod sim_fs;

#[cfg(feature = "std")]
pub use file::{FileStore, FileStoreError};
#[cfg(feature = "std")]
#[doc(hidden)]
pub use fs::{StdFs, StoreFs};

use core::future::Future;

/// A durable copy of the outbox's QoS ≥ 1 records.
///
/// The methods are `async` so that one trait suits a file (synchronous std
/// I/O inside the future) and flash through `embedded-storage-async` /
/// `sequential-storage` (erase pages, no allocator). The client calls them
/// one at a time (behind an async mutex), never concurrently.
///
/// The full contract for implementers is in the module documentation and
/// on each method.
pub trait Store {
    /// Why a store operation failed.
    type Error: core::error::Error;

    /// `false` only for [`NoStore`]: the client then skips every call.
    const DURABLE: bool = true;

    /// Hands every stored record to `visit(key, record)`, in increasing
    /// key order (the order they were persisted). Records removed, or
    /// torn by a reset in the middle of a write, are not visited.
    ///
    /// Called before the first persist and before the first connect, and
    /// again while records remain that did not fit the outbox (the client
    /// skips the keys it already has). `record` borrows the store's own
    /// buffer until `visit` returns. On an error the client connects
    /// anyway and calls it again later; a QoS 1/2 publish fails with it.
    fn replay<V: FnMut(u32, &[u8])>(
        &mut self,
        visit: V,
    ) -> impl Future<Output = Result<(), Self::Error>>;

    /// Stores a record of `len` bytes under `key`. The store calls
    /// `fill` exactly once with a buffer of exactly `len` bytes for the
    /// client to copy the record into (so the store needs no second
    /// buffer), then writes it durably: once this returns `Ok`, the record
    /// must be replayed after any reset until it is removed.
    ///
    /// `key` is greater than every key replayed or persisted before (keys
    /// follow the order messages entered the outbox, which is their send
    /// order), and never given twice, even after a persist that failed or
    /// was dropped. A
    /// record larger than the store can hold is an error, not a
    /// truncation. On `Err` the record must not be replayed later (a
    /// half-written one is detected as torn); the client fails the publish.
    fn persist<F: FnOnce(&mut [u8])>(
        &mut self,
        key: u32,
        len: usize,
        fill: F,
    ) -> impl Future<Output = Result<(), Self::Error>>;

    /// Forgets the record under `key`: the broker acknowledged it, or it
    /// failed for good. Called for keys persisted (or replayed) and not
    /// removed yet, and for the key of a persist whose future was dropped
    /// before it returned (the publish was cancelled): the store may or may
    /// not hold that one, and removing a key it does not hold is `Ok`. It need not be durable at once: a removal lost in a
    /// reset only makes the message go out again (a duplicate, never a
    /// loss). On `Err` the client logs and goes on (the record may then be
    /// replayed after a restart).
    fn remove(&mut self, key: u32) -> impl Future<Output = Result<(), Self::Error>>;
}

/// No durable store: the outbox lives in RAM only (the default). Every
/// method is a no-op that cannot fail, and the client skips the calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoStore;

impl Store for NoStore {
    type Error = core::convert::Infallible;
    const DURABLE: bool = false;

    fn replay<V: FnMut(u32, &[u8])>(
        &mut self,
        _visit: V,
    ) -> impl Future<Output = Result<(), Self::Error>> {
        core::future::ready(Ok(()))
    }

    fn persist<F: FnOnce(&mut [u8])>(
        &mut self,
        _key: u32,
        _len: usize,
        _fill: F,
    ) -> impl Future<Output = Result<(), Self::Error>> {
        core::future::ready(Ok(()))
    }

    fn remove(&mut self, _key: u32) -> impl Future<Output = Result<(), Self::Error>> {
        core::future::ready(Ok(()))
    }
}
