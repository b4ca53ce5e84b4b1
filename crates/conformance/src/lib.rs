//! A FHIRcast 3.0.0 hub conformance checker: every hub requirement of the spec that can be
//! observed from outside, run against any hub over HTTP and WebSocket, each check numbered and
//! levelled as in the conformance checklist.
//!
//! The checker is an outside client: it shares no code with Lockstep's hub, and decides what
//! is right from the spec alone. It uses two clients of its own, cleans up after every check
//! (unsubscribes, closes sockets, closes every context it opened), and refuses to run on a
//! topic that has a context open, so that it never takes over a clinician's session.

pub mod catalogue;
mod checks;
mod fhir;
mod probe;
pub mod report;
mod runner;
mod selection;
mod verdict;
mod wire;

pub use probe::{Credentials, SetupError, Target, Timing, TrustSource};
pub use runner::{CheckReport, Report, run};
pub use selection::{Selection, SelectionError};
pub use verdict::Outcome;
