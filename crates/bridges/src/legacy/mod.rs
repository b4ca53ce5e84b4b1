//! What a legacy app says (a file it drops, a CCOW context it commits) and the FHIRcast request
//! it becomes: the patient rule ([`patient`]) decides whether it may name the session's patient,
//! and [`request`] builds the request's resources. Shared by every bridge that takes requests
//! in, so that they all refuse the same way.

pub(crate) mod patient;
pub(crate) mod request;

pub(crate) use patient::{Current, Said, contradiction, is_patient};
pub(crate) use request::{NotBuilt, build};
