//! Templates with context placeholders (`{patient.mrn}`, `{patient.birthDate:yyyyMMdd}`,
//! `{study.accession?}`), each value escaped for where it lands: a URL component, one raw
//! argument, JSON or XML text, one line of INI or text, a file name.
//!
//! A `{` followed by a letter opens a placeholder and `{{` is a literal brace; any other `{` or
//! `}` is literal, so JSON and XML templates need no escaping. Placeholders are checked when the
//! configuration loads; a value that cannot be rendered safely is an error, never dropped or
//! altered: an identifier that reaches an app must be exactly the one in the context.

mod date;
mod escape;

pub use escape::Escape;

use crate::mapping::{IdentifierMapping, MappingError};
use date::{DateParts, fhir_date, format_date, tokens};
use escape::escape_into;
use lockstep_fhircast::identifier::study_uid;
use lockstep_fhircast::notification::ContextChange;
use serde_json::Value;

/// Why a template is malformed (a configuration error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed placeholder starting at `{0}`")]
    Unclosed(String),
    #[error("unknown placeholder `{{{0}}}`; known: {known}", known = FIELDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    #[error("`{{{0}}}`: only dates and times take a format")]
    FormatNotAllowed(String),
    #[error(
        "`{{{name}}}`: bad format `{format}` (use yyyy, yy, MM, dd, HH, mm, ss, punctuation, T and Z)"
    )]
    BadFormat { name: String, format: String },
}

/// Why a template could not be rendered for a context: the launch or file is refused. The
/// text names placeholders and systems, never a value, so it may be logged and shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("`{{{0}}}` has no value in this context")]
    Missing(String),
    #[error("`{{{placeholder}}}`: {source}")]
    Mapping {
        placeholder: String,
        source: MappingError,
    },
    #[error("`{{{placeholder}}}`: {reason}")]
    Unsafe {
        placeholder: String,
        reason: &'static str,
    },
    /// (The date itself is left out: render errors are logged, and a birth date is PHI.)
    #[error("`{{{placeholder}}}`: the date lacks what the format `{format}` needs")]
    Date { placeholder: String, format: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    PatientMrn,
    PatientMrnIssuer,
    PatientId,
    PatientFamily,
    PatientGiven,
    PatientBirthDate,
    PatientSex,
    StudyAccession,
    StudyAccessionIssuer,
    StudyUid,
    StudyId,
    StudyModality,
    StudyDescription,
    ReportId,
    ReportStatus,
    EventName,
    EventId,
    Now,
    SmartIss,
    SmartLaunch,
}

const FIELDS: &[(&str, Field)] = &[
    ("patient.mrn", Field::PatientMrn),
    ("patient.mrn.issuer", Field::PatientMrnIssuer),
    ("patient.id", Field::PatientId),
    ("patient.family", Field::PatientFamily),
    ("patient.given", Field::PatientGiven),
    ("patient.birthDate", Field::PatientBirthDate),
    ("patient.sex", Field::PatientSex),
    ("study.accession", Field::StudyAccession),
    ("study.accession.issuer", Field::StudyAccessionIssuer),
    ("study.uid", Field::StudyUid),
    ("study.id", Field::StudyId),
    ("study.modality", Field::StudyModality),
    ("study.description", Field::StudyDescription),
    ("report.id", Field::ReportId),
    ("report.status", Field::ReportStatus),
    ("event.name", Field::EventName),
    ("event.id", Field::EventId),
    ("now", Field::Now),
    ("smart.iss", Field::SmartIss),
    ("smart.launch", Field::SmartLaunch),
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder {
    /// As written between the braces, for messages.
    text: String,
    field: Field,
    format: Option<String>,
    optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Value(Placeholder),
}

/// A parsed template, bound to one escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    escape: Escape,
}

/// What a template is rendered from: the resources of one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextData {
    pub event: String,
    pub event_id: String,
    pub patient: Option<Value>,
    pub study: Option<Value>,
    pub report: Option<Value>,
    /// The SMART EHR launch this rendering is for, where the bridge launches SMART apps.
    pub smart: Option<crate::launch::SmartLaunch>,
}

impl ContextData {
    pub fn from_change(change: &ContextChange) -> Self {
        let resource = |key: &str| change.entry(key).and_then(|e| e.resource()).cloned();
        ContextData {
            event: change.event.name.to_owned(),
            event_id: change.id.clone(),
            patient: resource("patient"),
            study: resource("study"),
            report: resource("report"),
            smart: None,
        }
    }

    /// The logical id of the resource under `key` (`patient`, `study`, `report`).
    pub fn id_of(&self, key: &str) -> Option<&str> {
        let resource = match key {
            "patient" => self.patient.as_ref(),
            "study" => self.study.as_ref(),
            "report" => self.report.as_ref(),
            _ => None,
        }?;
        resource.get("id")?.as_str()
    }
}

impl Template {
    pub fn parse(text: &str, escape: Escape) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find('{') {
            literal.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('{') {
                literal.push('{');
                rest = tail;
                continue;
            }
            if !after.starts_with(|c: char| c.is_ascii_alphabetic()) {
                literal.push('{');
                rest = after;
                continue;
            }
            let end = after
                .find('}')
                .ok_or_else(|| TemplateError::Unclosed(after.chars().take(24).collect()))?;
            let inner = &after[..end];
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Value(placeholder(inner)?));
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts, escape })
    }

    /// A configuration check: placeholders for identifiers need their systems mapped.
    pub fn check_mapped(&self, mapping: &IdentifierMapping) -> Result<(), String> {
        for p in self.placeholders() {
            let (systems, key) = match p.field {
                Field::PatientMrn | Field::PatientMrnIssuer => (&mapping.mrn, "mrn"),
                Field::StudyAccession | Field::StudyAccessionIssuer => {
                    (&mapping.accession, "accession")
                }
                _ => continue,
            };
            if systems.is_empty() {
                return Err(format!(
                    "`{{{}}}` needs `identifiers.{key}`: map the system it is read from",
                    p.text
                ));
            }
            if matches!(
                p.field,
                Field::PatientMrnIssuer | Field::StudyAccessionIssuer
            ) && systems.iter().any(|s| s.issuer.is_none())
            {
                return Err(format!(
                    "`{{{}}}` needs an `issuer` on every `identifiers.{key}` entry",
                    p.text
                ));
            }
        }
        Ok(())
    }

    fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(p) => Some(p),
            Part::Literal(_) => None,
        })
    }

    /// Renders with `x` for every value: what the template looks like around its values
    /// (for checking a URL's scheme and host when the configuration loads).
    pub fn render_sample(&self) -> String {
        self.render_with(|_| Ok("x".to_owned())).unwrap_or_default()
    }

    /// Renders for a context; `now` is the time of rendering.
    pub fn render(
        &self,
        data: &ContextData,
        mapping: &IdentifierMapping,
        now: time::OffsetDateTime,
    ) -> Result<String, RenderError> {
        self.render_with(|p| value(p, data, mapping, now))
    }

    fn render_with(
        &self,
        mut value: impl FnMut(&Placeholder) -> Result<String, RenderError>,
    ) -> Result<String, RenderError> {
        let mut out = String::new();
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Value(p) => {
                    let raw = match value(p) {
                        Ok(v) => v,
                        Err(RenderError::Missing(_)) if p.optional => String::new(),
                        Err(e) => return Err(e),
                    };
                    escape_into(&mut out, &raw, self.escape, i == 0).map_err(|reason| {
                        RenderError::Unsafe {
                            placeholder: p.text.clone(),
                            reason,
                        }
                    })?;
                }
            }
        }
        Ok(out)
    }
}

fn placeholder(inner: &str) -> Result<Placeholder, TemplateError> {
    let (body, optional) = match inner.strip_suffix('?') {
        Some(body) => (body, true),
        None => (inner, false),
    };
    let (name, format) = match body.split_once(':') {
        Some((name, format)) => (name, Some(format.to_owned())),
        None => (body, None),
    };
    let field = FIELDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .ok_or_else(|| TemplateError::Unknown(inner.to_owned()))?;
    if let Some(format) = &format {
        if !matches!(field, Field::PatientBirthDate | Field::Now) {
            return Err(TemplateError::FormatNotAllowed(inner.to_owned()));
        }
        if tokens(format).is_none() {
            return Err(TemplateError::BadFormat {
                name: name.to_owned(),
                format: format.clone(),
            });
        }
    }
    Ok(Placeholder {
        text: inner.to_owned(),
        field,
        format,
        optional,
    })
}

fn value(
    p: &Placeholder,
    data: &ContextData,
    mapping: &IdentifierMapping,
    now: time::OffsetDateTime,
) -> Result<String, RenderError> {
    let missing = || RenderError::Missing(p.text.clone());
    let mapping_error = |source| RenderError::Mapping {
        placeholder: p.text.clone(),
        source,
    };
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(missing)
    };
    let patient = || data.patient.as_ref().ok_or_else(missing);
    let study = || data.study.as_ref().ok_or_else(missing);
    let report = || data.report.as_ref().ok_or_else(missing);
    let name = |field: &str| {
        let name = data.patient.as_ref()?.get("name")?.get(0)?;
        match field {
            "family" => name.get("family")?.as_str().map(str::to_owned),
            _ => {
                let given: Vec<&str> = name
                    .get("given")?
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                (!given.is_empty()).then(|| given.join(" "))
            }
        }
    };
    // The accession is the study's, or on a report context the report's order's.
    let accession = || {
        let resource = data
            .study
            .as_ref()
            .or(data.report.as_ref())
            .ok_or_else(missing)?;
        match mapping.accession_of(resource) {
            Err(MappingError::Missing { .. }) if data.study.is_some() => data
                .report
                .as_ref()
                .ok_or_else(missing)
                .and_then(|r| mapping.accession_of(r).map_err(mapping_error)),
            Err(MappingError::Missing { .. }) => Err(missing()),
            other => other.map_err(mapping_error),
        }
    };
    let mapped_mrn = || match mapping.mrn_of(patient()?) {
        Err(MappingError::Missing { .. }) => Err(missing()),
        other => other.map_err(mapping_error),
    };
    match p.field {
        Field::PatientMrn => Ok(mapped_mrn()?.value),
        Field::PatientMrnIssuer => {
            let m = mapped_mrn()?;
            m.issuer.ok_or_else(|| {
                mapping_error(MappingError::NoIssuerName {
                    kind: "MRN",
                    system: m.system,
                })
            })
        }
        Field::PatientId => text(patient()?.get("id")),
        Field::PatientFamily => name("family").ok_or_else(missing),
        Field::PatientGiven => name("given").ok_or_else(missing),
        Field::PatientSex => text(patient()?.get("gender")),
        Field::PatientBirthDate => {
            let raw = text(patient()?.get("birthDate"))?;
            match &p.format {
                None => Ok(raw),
                Some(format) => fhir_date(&raw)
                    .and_then(|parts| format_date(&parts, format))
                    .ok_or_else(|| RenderError::Date {
                        placeholder: p.text.clone(),
                        format: format.clone(),
                    }),
            }
        }
        Field::StudyAccession => Ok(accession()?.value),
        Field::StudyAccessionIssuer => {
            let m = accession()?;
            m.issuer.ok_or_else(|| {
                mapping_error(MappingError::NoIssuerName {
                    kind: "accession",
                    system: m.system,
                })
            })
        }
        Field::StudyUid => study_uid(study()?).map(str::to_owned).ok_or_else(missing),
        Field::StudyId => text(study()?.get("id")),
        Field::StudyModality => text(
            study()?
                .get("modality")
                .and_then(|m| m.get(0))
                .and_then(|m| m.get("code")),
        ),
        Field::StudyDescription => text(study()?.get("description")),
        Field::ReportId => text(report()?.get("id")),
        Field::ReportStatus => text(report()?.get("status")),
        Field::EventName => Ok(data.event.clone()),
        Field::SmartIss => data
            .smart
            .as_ref()
            .map(|s| s.iss.clone())
            .ok_or_else(missing),
        Field::SmartLaunch => data
            .smart
            .as_ref()
            .map(|s| s.launch.clone())
            .ok_or_else(missing),
        Field::EventId => Ok(data.event_id.clone()).and_then(|id| {
            if id.is_empty() {
                Err(missing())
            } else {
                Ok(id)
            }
        }),
        Field::Now => {
            let parts = DateParts {
                year: Some(now.year()),
                month: Some(u8::from(now.month())),
                day: Some(now.day()),
                hour: Some(now.hour()),
                minute: Some(now.minute()),
                second: Some(now.second()),
            };
            format_date(&parts, p.format.as_deref().unwrap_or("yyyyMMddHHmmss")).ok_or_else(missing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::IdentifierSystem;
    use serde_json::json;

    fn mapping() -> IdentifierMapping {
        IdentifierMapping {
            mrn: vec![IdentifierSystem {
                system: "urn:oid:1.2.3".into(),
                issuer: Some("GEN&HOSP".into()),
            }],
            accession: vec![IdentifierSystem {
                system: "urn:oid:1.2.3.5".into(),
                issuer: None,
            }],
        }
    }

    fn data(mrn: &str, accession: &str) -> ContextData {
        ContextData {
            event: "ImagingStudy-open".into(),
            event_id: "e-1".into(),
            patient: Some(json!({"resourceType": "Patient", "id": "p1",
                "identifier": [{"system": "urn:oid:1.2.3", "value": mrn}],
                "name": [{"family": "Müller", "given": ["Zoë", "Ann"]}],
                "birthDate": "1961-02-03", "gender": "female"})),
            study: Some(json!({"resourceType": "ImagingStudy", "id": "s1",
                "identifier": [{"type": {"coding": [{"code": "ACSN"}]}, "system": "urn:oid:1.2.3.5", "value": accession},
                               {"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.99"}]})),
            report: None,
            smart: None,
        }
    }

    #[test]
    fn a_smart_launch_url_names_the_server_and_the_launch_and_needs_both() {
        let launched = ContextData {
            smart: Some(crate::launch::SmartLaunch {
                iss: "http://127.0.0.1:4980".into(),
                launch: "L-1".into(),
            }),
            ..data("M1", "A1")
        };
        let url = "https://app.example.org/launch?iss={smart.iss}&launch={smart.launch}";
        assert_eq!(
            render(url, Escape::UrlComponent, &launched).unwrap(),
            "https://app.example.org/launch?iss=http%3A%2F%2F127.0.0.1%3A4980&launch=L-1"
        );
        assert!(render(url, Escape::UrlComponent, &data("M1", "A1")).is_err());
    }

    fn render(text: &str, escape: Escape, data: &ContextData) -> Result<String, RenderError> {
        let now = time::macros::datetime!(2026-11-26 10:04:05 UTC);
        Template::parse(text, escape)
            .unwrap()
            .render(data, &mapping(), now)
    }

    #[test]
    fn url_components_are_percent_encoded() {
        let d = data("12&3#4^5|6", "A 1/é");
        let url = render(
            "https://pacs/v?mrn={patient.mrn}&iss={patient.mrn.issuer}&acc={study.accession}&uid={study.uid}",
            Escape::UrlComponent,
            &d,
        )
        .unwrap();
        assert_eq!(
            url,
            "https://pacs/v?mrn=12%263%234%5E5%7C6&iss=GEN%26HOSP&acc=A%201%2F%C3%A9&uid=1.2.840.99"
        );
    }

    #[test]
    fn dates_names_and_now_take_formats() {
        let d = data("1", "A");
        assert_eq!(
            render(
                "{patient.birthDate:yyyyMMdd}|{patient.birthDate:dd/MM/yy}|{patient.family}^{patient.given}|{now:yyyy-MM-ddTHH:mm:ss}|{now}",
                Escape::Line,
                &d
            )
            .unwrap(),
            "19610203|03/02/61|Müller^Zoë Ann|2026-11-26T10:04:05|20261126100405"
        );
        let mut partial = d.clone();
        partial.patient.as_mut().unwrap()["birthDate"] = "1961-02".into();
        assert!(matches!(
            render("{patient.birthDate:yyyyMMdd}", Escape::Line, &partial),
            Err(RenderError::Date { .. })
        ));
        assert_eq!(
            render("{patient.birthDate:yyyyMM}", Escape::Line, &partial).unwrap(),
            "196102"
        );
    }

    #[test]
    fn json_and_xml_braces_are_literal_and_values_escaped() {
        let d = data("1\"2", "<A&'>");
        assert_eq!(
            render(
                r#"{"mrn": "{patient.mrn}", "n": {"x": 1}}"#,
                Escape::Json,
                &d
            )
            .unwrap(),
            r#"{"mrn": "1\"2", "n": {"x": 1}}"#
        );
        assert_eq!(
            render(
                "<Acc a='{study.accession}'>{study.accession}</Acc>{{x}",
                Escape::Xml,
                &d
            )
            .unwrap(),
            "<Acc a='&lt;A&amp;&apos;&gt;'>&lt;A&amp;&apos;&gt;</Acc>{x}"
        );
    }

    #[test]
    fn unsafe_values_are_refused_not_altered() {
        let line = data("1\r\nInjected=1", "A");
        assert!(matches!(
            render("MRN={patient.mrn}", Escape::Line, &line),
            Err(RenderError::Unsafe { .. })
        ));
        let option = data("--exec=/bin/evil", "A");
        assert!(matches!(
            render("{patient.mrn}", Escape::Argument, &option),
            Err(RenderError::Unsafe { .. })
        ));
        // Inside an argument (after a literal) a dash is only data.
        assert_eq!(
            render("--mrn={patient.mrn}", Escape::Argument, &option).unwrap(),
            "--mrn=--exec=/bin/evil"
        );
        let path = data("1", "../../etc/passwd");
        assert!(render("{study.accession}.xml", Escape::FileName, &path).is_err());
    }

    #[test]
    fn missing_and_unmapped_values_refuse_unless_optional() {
        let mut d = data("1", "A");
        d.study = None;
        assert_eq!(
            render("{study.uid}", Escape::Line, &d),
            Err(RenderError::Missing("study.uid".into()))
        );
        assert_eq!(render("[{study.uid?}]", Escape::Line, &d).unwrap(), "[]");
        let mut foreign = data("1", "A");
        foreign.patient.as_mut().unwrap()["identifier"] =
            json!([{"system": "urn:oid:6.6.6", "value": "1"}]);
        // Optional covers an absent value, never an identifier in an unmapped system.
        assert!(matches!(
            render("{patient.mrn?}", Escape::Line, &foreign),
            Err(RenderError::Mapping { .. })
        ));
    }

    #[test]
    fn bad_templates_are_config_errors() {
        assert!(matches!(
            Template::parse("{patient.mrm}", Escape::Line),
            Err(TemplateError::Unknown(_))
        ));
        assert!(matches!(
            Template::parse("{study.uid:yyyy}", Escape::Line),
            Err(TemplateError::FormatNotAllowed(_))
        ));
        assert!(matches!(
            Template::parse("{patient.birthDate:YYYYMMDD}", Escape::Line),
            Err(TemplateError::BadFormat { .. })
        ));
        assert!(matches!(
            Template::parse("x{patient.mrn", Escape::Line),
            Err(TemplateError::Unclosed(_))
        ));
        let t = Template::parse("{patient.mrn.issuer}", Escape::Line).unwrap();
        let mut m = mapping();
        m.mrn[0].issuer = None;
        assert!(t.check_mapped(&m).unwrap_err().contains("issuer"));
        assert!(t.check_mapped(&IdentifierMapping::default()).is_err());
    }
}
