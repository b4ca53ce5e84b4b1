//! `[bridges.ccow]`: the keys of the CCOW bridge, and their validation into a [`CcowBridge`].

use super::common::yes;
use crate::ccow::CcowBridge;
use crate::ccow::items::DEFAULT_ACCESSION_ITEM;
use crate::mapping::{IdKind, IdentifierMapping};
use crate::problem::ConfigProblem;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Whether Lockstep is the workstation's context manager or joins the one that runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CcowMode {
    /// Lockstep serves the registry and the context manager on `127.0.0.1:port`.
    #[default]
    Manager,
    /// Lockstep joins the context manager the registry on `port` names.
    Participant,
}

/// `[bridges.ccow]`: every CCOW application on the workstation joins the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcowConfig {
    /// Shown in the UI, SyncErrors, history and the audit trail; unique among bridges.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub mode: CcowMode,
    /// The CCOW registry on 127.0.0.1 (both modes); 2116 is where CCOW applications look.
    #[serde(default = "default_port")]
    pub port: u16,
    /// How long a participant has to answer `ContextChangesPending`.
    #[serde(default = "default_survey_timeout")]
    pub survey_timeout_seconds: u64,
    /// `Patient.Id.MRN.<suffix>` ↔ MRN system: the suffix is the issuer. The same for
    /// accessions, in the item `accession_item.<suffix>`.
    #[serde(default)]
    pub identifiers: IdentifierMapping,
    /// Where the site's applications keep the accession (suffixed with its issuer).
    #[serde(default = "default_accession_item")]
    pub accession_item: String,
}

fn default_name() -> String {
    "CCOW".into()
}

fn default_port() -> u16 {
    2116
}

fn default_survey_timeout() -> u64 {
    10
}

fn default_accession_item() -> String {
    DEFAULT_ACCESSION_ITEM.into()
}

impl CcowConfig {
    pub(super) fn validate(&self) -> Result<CcowBridge, ConfigProblem> {
        if !(1..=60).contains(&self.survey_timeout_seconds) {
            return Err(ConfigProblem::new(
                "survey_timeout_seconds",
                "must be between 1 and 60",
            ));
        }
        self.identifiers
            .validate()
            .map_err(|p| p.under("identifiers"))?;
        for kind in [IdKind::Mrn, IdKind::Accession] {
            if let Some((i, _)) = self
                .identifiers
                .systems(kind)
                .iter()
                .enumerate()
                .find(|(_, s)| s.issuer.is_none())
            {
                return Err(ConfigProblem::new(
                    format!("identifiers.{}[{i}].issuer", kind.config_key()),
                    "CCOW names the issuer in the item's suffix: give each system its `issuer`",
                ));
            }
        }
        crate::ccow::items::ItemName::parse(&format!("{}.x", self.accession_item)).map_err(
            |_| {
                ConfigProblem::new(
                    "accession_item",
                    "must be an item name without its suffix (Subject.Role.Name)",
                )
            },
        )?;
        Ok(CcowBridge {
            mode: self.mode,
            port: self.port,
            survey_timeout: Duration::from_secs(self.survey_timeout_seconds),
            identifiers: self.identifiers.clone(),
            accession_item: self.accession_item.clone(),
        })
    }
}
