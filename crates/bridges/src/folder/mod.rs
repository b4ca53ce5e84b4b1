//! The folder bridge: files out to an app on each context change, written atomically (a
//! temporary file, then a rename); files in from an app, each turned into a FHIRcast request.
//!
//! In: the folder is watched with OS notifications, or polled for network shares; when a file
//! is ready to read is [`ready`]'s decision (never while its writer may still be writing it).
//! Every file ends up handled (archived or deleted) or rejected (moved to the error folder
//! with a `.reason.txt`, a log line and an audit row); nothing in a file can crash the bridge.
//! A file cut short (a partial write) is the exception: it stays where it is, a copy and the
//! reason go to the error folder, and it is read again once its writer finishes it. A file
//! naming another patient than the current context raises a SyncError and changes nothing,
//! unless its rule explicitly allows a patient change (the patient rule in [`crate::legacy`]).
//!
//! The loop is in [`run`](mod@run), the out side in [`writer`], the in side in [`inbox`] (with
//! [`files`] for moving files aside), the request a file becomes in [`crate::legacy`]; what validation builds is in [`incoming`] and
//! [`writer`]'s [`Outgoing`].

mod bridge;
mod files;
mod inbox;
mod incoming;
mod outcome;
mod ready;
mod run;
mod writer;

pub use bridge::{FolderBridge, Sides};
pub use inbox::Inbox;
pub use incoming::{AfterRead, Duplicates, IdField, Incoming, Rule, Rules, Watch};
pub use outcome::{Handled, Rejection};
pub use run::run;
pub use writer::{Content, Outgoing, WriteError, Writer};
