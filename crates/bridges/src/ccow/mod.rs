//! The CCOW bridge: CCOW applications on the workstation join the clinician's FHIRcast session,
//! through Lockstep as their context manager, or through the one already running (participant
//! mode: [`participant`](mod@participant), calling it with [`client`]).
//!
//! Built in layers, each tested on its own: the web mapping's wire format ([`wire`]), the
//! Patient and DICOMStudy items ([`items`]), the context manager's state ([`manager`]), the
//! manager served on loopback ([`server`]), and the mapping between a CCOW context and a
//! FHIRcast request (`follow`). This module runs them as a bridge: a change a CCOW application
//! commits is published under its name; a change on the topic is carried to the CCOW
//! applications as a surveyed transaction, and whoever dissents becomes a SyncError naming it.

mod bridge;
pub mod client;
pub(crate) mod follow;
pub mod items;
pub mod manager;
mod manager_mode;
mod participant;
pub mod peer;
pub mod server;
pub mod wire;

pub use bridge::CcowBridge;
pub(crate) use bridge::EVENTS;

use crate::config::CcowMode;
use crate::error::BridgeError;
use crate::session::Session;
use std::sync::Arc;
use tokio::sync::watch;

/// Runs the bridge in its mode until told to stop.
pub async fn run(
    bridge: Arc<CcowBridge>,
    session: Session,
    stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    match bridge.mode {
        CcowMode::Manager => manager_mode::run(bridge, session, stop).await,
        CcowMode::Participant => participant::run(bridge, session, stop).await,
    }
}
