//! The CCOW bridge: CCOW applications on the workstation join the clinician's FHIRcast session,
//! through Lockstep as their context manager or through the one already running.
//!
//! Built in layers, each tested on its own: the web mapping's wire format ([`wire`]), the
//! Patient and DICOMStudy items ([`items`]), the context manager's state ([`manager`]), and
//! the manager served on loopback ([`server`]).

pub mod follow;
pub mod items;
pub mod manager;
pub mod server;
pub mod wire;
