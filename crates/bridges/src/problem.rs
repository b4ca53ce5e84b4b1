//! A configuration key that is wrong, and why: the one shape of a configuration problem, from an
//! identifier mapping up to `[bridges]`.

/// A configuration key that is wrong, and why. Each level names the key below it: a problem
/// found in a bridge's `identifiers` is `mrn[0].system` there, and the caller places it
/// (`bridges.folder[0].identifiers.mrn[0].system`), as the agent's config errors name keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {reason}")]
pub struct ConfigProblem {
    pub key: String,
    pub reason: String,
}

impl ConfigProblem {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigProblem {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The same problem, its key placed under `parent` (`parent.key`).
    pub fn under(self, parent: &str) -> Self {
        ConfigProblem {
            key: format!("{parent}.{}", self.key),
            reason: self.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_placed_under_their_parents() {
        let p = ConfigProblem::new("mrn[0].system", "must not be empty")
            .under("identifiers")
            .under("bridges.folder[1]");
        assert_eq!(p.key, "bridges.folder[1].identifiers.mrn[0].system");
        assert_eq!(
            p.to_string(),
            "key `bridges.folder[1].identifiers.mrn[0].system`: must not be empty"
        );
    }
}
