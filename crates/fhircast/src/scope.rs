//! FHIRcast OAuth scopes: `fhircast/<Event|*>.<read|write|*>` (spec 2-2), matched case-insensitively.

use std::fmt;

/// What a scope lets an app do with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Receive notifications of the event.
    Read,
    /// Request the event (a context change).
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FhircastScope {
    /// Lower-cased event name, or `None` for `*`.
    event: Option<String>,
    read: bool,
    write: bool,
}

impl FhircastScope {
    fn parse(scope: &str) -> Option<Self> {
        let rest = scope.strip_prefix("fhircast/")?;
        let (event, access) = rest.rsplit_once('.')?;
        let (read, write) = match access {
            "read" => (true, false),
            "write" => (false, true),
            "*" => (true, true),
            _ => return None,
        };
        let event = match event {
            "*" => None,
            "" => return None,
            name => Some(name.to_ascii_lowercase()),
        };
        Some(Self { event, read, write })
    }

    fn allows(&self, event: &str, access: Access) -> bool {
        let access_ok = match access {
            Access::Read => self.read,
            Access::Write => self.write,
        };
        access_ok
            && self
                .event
                .as_deref()
                .is_none_or(|own| own.eq_ignore_ascii_case(event))
    }

    /// True when every grant of `other` is also granted by `self`.
    fn covers(&self, other: &FhircastScope) -> bool {
        let event_ok = match (&self.event, &other.event) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a == b,
        };
        event_ok && (self.read || !other.read) && (self.write || !other.write)
    }
}

/// A set of granted scopes: FHIRcast scopes plus any other (e.g. `openid`, `lockstep/...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    raw: Vec<String>,
    fhircast: Vec<FhircastScope>,
}

/// A scope string that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope `{0}`: expected fhircast/<Event or *>.<read, write or *>")]
pub struct ScopeError(pub String);

impl ScopeSet {
    /// Parses a space-separated scope list (the OAuth `scope` parameter).
    pub fn parse(scopes: &str) -> Result<Self, ScopeError> {
        Self::from_iter_checked(scopes.split_ascii_whitespace())
    }

    /// Builds a set from individual scope strings, refusing malformed `fhircast/` scopes.
    pub fn from_iter_checked<'a>(
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ScopeError> {
        let mut set = ScopeSet::default();
        for scope in scopes {
            if set.raw.iter().any(|s| s == scope) {
                continue;
            }
            if scope.starts_with("fhircast/") {
                let parsed =
                    FhircastScope::parse(scope).ok_or_else(|| ScopeError(scope.to_owned()))?;
                set.fhircast.push(parsed);
            }
            set.raw.push(scope.to_owned());
        }
        Ok(set)
    }

    /// Whether these scopes let the holder read or write `event` (any spelling).
    pub fn allows(&self, event: &str, access: Access) -> bool {
        self.fhircast.iter().any(|s| s.allows(event, access))
    }

    /// Whether a non-FHIRcast scope (e.g. `lockstep/history.read`) is present, exactly.
    pub fn contains(&self, scope: &str) -> bool {
        self.raw.iter().any(|s| s == scope)
    }

    /// The scopes of `requested` that these scopes cover: how a token request narrows a grant.
    /// A requested scope that is not covered is never widened: a wider one (`fhircast/*.write`)
    /// is granted as the registered scopes it covers (`fhircast/Patient-open.write`), the rest
    /// is dropped.
    pub fn narrow(&self, requested: &ScopeSet) -> ScopeSet {
        let mut out = ScopeSet::default();
        let grant = |out: &mut ScopeSet, raw: &str, scope: Option<&FhircastScope>| {
            if let Some(scope) = scope {
                if out.fhircast.contains(scope) {
                    return;
                }
                out.fhircast.push(scope.clone());
            }
            out.raw.push(raw.to_owned());
        };
        for (raw, parsed) in requested.iter_with_parsed() {
            match parsed {
                Some(scope) if self.fhircast.iter().any(|own| own.covers(scope)) => {
                    grant(&mut out, raw, Some(scope));
                }
                Some(scope) => {
                    for (own_raw, own) in self.iter_with_parsed() {
                        if let Some(own) = own.filter(|own| scope.covers(own)) {
                            grant(&mut out, own_raw, Some(own));
                        }
                    }
                }
                None if self.contains(raw) => grant(&mut out, raw, None),
                None => {}
            }
        }
        out
    }

    fn iter_with_parsed(&self) -> impl Iterator<Item = (&str, Option<&FhircastScope>)> {
        let mut fhircast = self.fhircast.iter();
        self.raw.iter().map(move |raw| {
            let parsed = if raw.starts_with("fhircast/") {
                fhircast.next()
            } else {
                None
            };
            (raw.as_str(), parsed)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.raw.iter().map(String::as_str)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn wildcards_and_case() {
        let s = set("fhircast/*.read fhircast/Patient-open.write");
        assert!(s.allows("patient-close", Access::Read));
        assert!(s.allows("PATIENT-OPEN", Access::Write));
        assert!(!s.allows("Patient-close", Access::Write));
        assert!(set("fhircast/*.*").allows("SyncError", Access::Write));
        assert!(set("fhircast/patient-open.read").allows("Patient-open", Access::Read));
        assert!(!set("openid").allows("Patient-open", Access::Read));
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in [
            "fhircast/Patient-open",
            "fhircast/.read",
            "fhircast/Patient-open.admin",
        ] {
            assert!(ScopeSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn narrowing_never_widens() {
        let client = set("fhircast/*.read fhircast/Patient-open.write openid");
        let asked = set(
            "fhircast/ImagingStudy-open.read fhircast/*.write fhircast/patient-open.write openid profile",
        );
        let granted = client.narrow(&asked);
        // `*.write` is granted as the one write scope registered; asked again in another
        // spelling, it is not listed twice.
        assert_eq!(
            granted.to_string(),
            "fhircast/ImagingStudy-open.read fhircast/Patient-open.write openid"
        );
        assert!(!granted.allows("ImagingStudy-open", Access::Write));
        assert!(granted.allows("Patient-open", Access::Write));
    }
}
