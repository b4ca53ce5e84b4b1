//! SMART EHR launch: a launch URL names `{smart.iss}` (this hub's authorization server) and
//! `{smart.launch}` (an id bound to the context being launched). The app sends the id back in
//! its authorization request, and its token response carries that context as SMART apps expect
//! (`patient`, `fhirContext`), beside `hub.url` and `hub.topic`.

use crate::template::ContextData;
use lockstep_hub::grants::LaunchContext;
use std::sync::Arc;

/// Registers launches with the agent's authorization server.
#[derive(Clone)]
pub struct SmartLauncher {
    /// The `iss` an app is launched with: the authorization server's origin.
    pub iss: String,
    /// Registers a launch of this context and returns its id.
    pub register: Arc<dyn Fn(LaunchContext) -> String + Send + Sync>,
}

/// One launch's `iss` and `launch` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartLaunch {
    pub iss: String,
    pub launch: String,
}

impl SmartLauncher {
    /// Registers the launch of `data`'s context: its patient, and its study and report.
    pub(crate) fn launch(&self, data: &ContextData) -> SmartLaunch {
        let fhir_context = [("study", "ImagingStudy"), ("report", "DiagnosticReport")]
            .iter()
            .filter_map(|(key, kind)| data.id_of(key).map(|id| format!("{kind}/{id}")))
            .collect();
        let context = LaunchContext {
            patient: data.id_of("patient").map(str::to_owned),
            fhir_context,
        };
        SmartLaunch {
            iss: self.iss.clone(),
            launch: (self.register)(context),
        }
    }
}
