//! The FHIRcast STU3 (3.0.0) protocol as data: no sockets, no clocks, no randomness.
//!
//! Everything a hub or a client needs to speak FHIRcast exactly: the event catalogue, the
//! notification envelope (context relayed byte-for-byte), the subscription request, the hub's
//! own frames (confirmation, denial, SyncError), scopes, and validation of context against the
//! catalogue's profiles.

pub mod event;
pub mod frames;
pub mod identifier;
pub mod notification;
pub mod scope;
pub mod subscription;
pub mod summary;
mod unique_keys;
mod validate;

pub use event::{EventKind, EventSpec};
pub use notification::{ContextChange, NotificationError};
pub use scope::{Access, ScopeSet};
pub use subscription::{Mode, SubscriptionError, SubscriptionRequest};

/// The FHIRcast version this crate implements, as the well-known document states it.
pub const FHIRCAST_VERSION: &str = "3.0.0";
