//! The CCOW bridge: CCOW applications on the workstation join the clinician's FHIRcast session,
//! through Lockstep as their context manager or through the one already running.
//!
//! Built in layers, each tested on its own: the web mapping's wire format ([`wire`]) and the
//! Patient and DICOMStudy items ([`items`]).

pub mod items;
pub mod wire;
