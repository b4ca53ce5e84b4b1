//! Legacy bridges: applications that speak no FHIRcast, brought into the clinician's session
//! both ways.
//!
//! Each bridge joins the session like any app (a subscriber and/or a requester of the engine,
//! under its own name), reports a link state, and runs as its own supervised task: a bridge
//! that fails is reported `broken` and restarted with backoff, and never takes the hub or
//! another bridge down. [`Bridges`] starts, reloads (by name) and stops them with the config.

pub mod ccow;
pub mod config;
mod error;
pub mod folder;
pub mod launch;
mod legacy;
pub mod mapping;
pub mod message;
mod problem;
mod report;
pub mod session;
mod supervisor;
pub mod template;
pub mod text;

pub use config::{BridgeConfig, BridgesConfig, ValidBridge, ValidBridges};
pub use error::BridgeError;
pub use lockstep_hub::LinkState;
pub use problem::ConfigProblem;
pub use report::{AppStatus, BridgeKind, BridgeReport, BridgeStatus, Report, Reporter};
pub use session::{CLIENT_ID_PREFIX, RecentIds, Session, stopped};
pub use supervisor::{Bridges, ReloadSummary};
