//! Content-sharing versions across the two hubs. Each hub mints its own `context.versionId`
//! for a report it opens or updates, so the relay keeps which local version is which of the
//! site's: an update requested here names the site's version when it is posted there, and an
//! update from the site names the local version when it is applied here.

use serde_json::Value;
use std::collections::VecDeque;

/// How many version pairs (and events awaiting theirs) are kept: far more than the reports
/// open at once.
const KEEP: usize = 64;

#[derive(Default)]
pub(crate) struct Versions {
    /// (local, site), newest last.
    pairs: VecDeque<(String, String)>,
    /// Events applied here before the site said their version (its 202 came before its echo):
    /// (event id, local version).
    awaiting_site: VecDeque<(String, String)>,
}

impl Versions {
    /// An event was applied here and minted `local` (the site's version, when known).
    pub(crate) fn applied_here(&mut self, event_id: &str, local: String, site: Option<&str>) {
        match site {
            Some(site) => self.pair(local, site.to_owned()),
            None => push_bounded(&mut self.awaiting_site, (event_id.to_owned(), local)),
        }
    }

    /// The site said which version an event applied here minted there (its echo).
    pub(crate) fn site_told(&mut self, event_id: &str, site: &str) {
        if let Some(at) = self.awaiting_site.iter().position(|(id, _)| id == event_id)
            && let Some((_, local)) = self.awaiting_site.remove(at)
        {
            self.pair(local, site.to_owned());
        }
    }

    /// The site's version for a local one.
    pub(crate) fn to_site(&self, local: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(l, _)| l == local)
            .map(|(_, s)| s.as_str())
    }

    /// The local version for one of the site's.
    pub(crate) fn to_local(&self, site: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(_, s)| s == site)
            .map(|(l, _)| l.as_str())
    }

    fn pair(&mut self, local: String, site: String) {
        push_bounded(&mut self.pairs, (local, site));
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() == KEEP {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// The spellings of the version keys deployed hubs send: the spec's, a bare one, any case.
fn is_key(key: &str, name: &str) -> bool {
    let key = key.strip_prefix("context.").unwrap_or(key);
    key.eq_ignore_ascii_case(name)
}

/// The value of an event's version key spelled any of those ways.
fn version_key<'a>(event: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    event
        .iter()
        .find(|(key, _)| is_key(key, name))
        .and_then(|(_, value)| value.as_str())
}

/// An event frame's `context.versionId` (the version it minted, in a notification).
pub(crate) fn minted(frame: &Value) -> Option<&str> {
    version_key(frame.get("event")?.as_object()?, "versionId")
}

/// Makes a notification from the site a request here: an update names the local version its
/// `context.priorVersionId` stands for (unknown: the site's, which the local hub refuses and
/// the site hears of); the site's own version keys go.
pub(crate) fn localise(event: &mut serde_json::Map<String, Value>, versions: &Versions) {
    let prior = version_key(event, "priorVersionId").map(str::to_owned);
    let sent = version_key(event, "versionId").map(str::to_owned);
    event.retain(|key, _| !is_key(key, "versionId") && !is_key(key, "priorVersionId"));
    match prior {
        Some(prior) => {
            let local = versions.to_local(&prior).unwrap_or(&prior).to_owned();
            event.insert("context.versionId".into(), local.into());
        }
        // An update that names no prior version is left as sent (the local hub refuses it if
        // it does not fit, rather than guess); on anything else the local hub mints its own.
        None if is_update(event) => {
            if let Some(sent) = sent {
                event.insert("context.versionId".into(), sent.into());
            }
        }
        None => {}
    }
}

fn is_update(event: &serde_json::Map<String, Value>) -> bool {
    event
        .get("hub.event")
        .and_then(Value::as_str)
        .is_some_and(|name| name.to_ascii_lowercase().ends_with("-update"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_pair_up_whichever_side_speaks_first() {
        let mut versions = Versions::default();
        versions.applied_here("e1", "L1".into(), Some("S1"));
        versions.applied_here("e2", "L2".into(), None);
        assert_eq!(versions.to_site("L2"), None);
        versions.site_told("e2", "S2");
        versions.site_told("unknown", "S9");
        assert_eq!(
            (versions.to_site("L1"), versions.to_site("L2")),
            (Some("S1"), Some("S2"))
        );
        assert_eq!(versions.to_local("S2"), Some("L2"));
        assert_eq!(versions.to_local("S9"), None);
    }

    #[test]
    fn only_the_newest_pairs_are_kept() {
        let mut versions = Versions::default();
        for i in 0..(KEEP + 1) {
            versions.applied_here(&format!("e{i}"), format!("L{i}"), Some(&format!("S{i}")));
        }
        assert_eq!(versions.to_site("L0"), None);
        assert_eq!(
            versions.to_site(&format!("L{KEEP}")),
            Some(format!("S{KEEP}").as_str())
        );
    }

    #[test]
    fn a_site_update_names_the_local_version_and_an_open_none() {
        let mut versions = Versions::default();
        versions.applied_here("e1", "L1".into(), Some("S1"));
        let mut update = json!({ "hub.event": "DiagnosticReport-update", "context.versionId": "S2", "context.priorVersionId": "S1" });
        localise(update.as_object_mut().unwrap(), &versions);
        assert_eq!(
            update,
            json!({ "hub.event": "DiagnosticReport-update", "context.versionId": "L1" })
        );
        let mut open = json!({ "hub.event": "DiagnosticReport-open", "context.versionId": "S3" });
        localise(open.as_object_mut().unwrap(), &versions);
        assert_eq!(open, json!({ "hub.event": "DiagnosticReport-open" }));
        assert_eq!(
            minted(&json!({ "event": { "context.versionId": "S3" } })),
            Some("S3")
        );
    }
}
