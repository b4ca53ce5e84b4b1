//! CCOW context items: their names (`Subject.Role.Name[.Suffix]`), and what the Patient and
//! DICOMStudy subjects say, read into plain values and written back from them.
//!
//! Item names and their parts compare case-insensitively, as CCOW requires. Values use HL7 v2
//! types: a name is an XPN (`FAMILY^GIVEN^MIDDLE^SUFFIX^PREFIX`), a birth date a TS
//! (`YYYYMMDD[HHMM[SS]]`), sex a v2 code (`M`, `F`, `O`, `U`). A value that cannot be read is
//! refused, never guessed at.

use super::wire::{CcowError, Exception};

/// Whether an item identifies its subject or corroborates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Id,
    Co,
}

/// An item name, as given and in its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemName {
    /// As the participant wrote it (replies use the participant's spelling).
    pub raw: String,
    pub subject: String,
    pub role: Role,
    pub name: String,
    /// The identifier domain (`GENHOSP` in `Patient.Id.MRN.GENHOSP`).
    pub suffix: Option<String>,
}

impl ItemName {
    /// Reads `Subject.Role.Name[.Suffix]`; a custom part in brackets (`[acme.org]Range`) may
    /// hold dots.
    pub fn parse(raw: &str) -> Result<ItemName, CcowError> {
        let bad = || {
            CcowError::new(
                Exception::BadItemNameFormat,
                format!("`{raw}` is not an item name (Subject.Role.Name[.Suffix])"),
            )
        };
        let parts = split_outside_brackets(raw.trim());
        let [subject, role, name, rest @ ..] = parts.as_slice() else {
            return Err(bad());
        };
        let role = match role.to_ascii_lowercase().as_str() {
            "id" => Role::Id,
            "co" => Role::Co,
            _ => return Err(bad()),
        };
        if subject.is_empty() || name.is_empty() || rest.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(ItemName {
            raw: raw.trim().to_owned(),
            subject: (*subject).to_owned(),
            role,
            name: (*name).to_owned(),
            suffix: (!rest.is_empty()).then(|| rest.join(".")),
        })
    }

    /// Whether this is `subject.role.name`, whatever its suffix.
    pub fn is(&self, subject: &str, role: Role, name: &str) -> bool {
        self.subject.eq_ignore_ascii_case(subject)
            && self.role == role
            && self.name.eq_ignore_ascii_case(name)
    }

    pub fn is_of(&self, subject: &str) -> bool {
        self.subject.eq_ignore_ascii_case(subject)
    }
}

fn split_outside_brackets(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

pub const PATIENT: &str = "Patient";
pub const STUDY: &str = "DICOMStudy";

/// An identifier item's value with the domain its suffix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub suffix: Option<String>,
    pub value: String,
}

/// What a context's Patient and DICOMStudy subjects say. Empty values are absent: a subject
/// whose identifiers are all empty has been cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subjects {
    pub mrns: Vec<Tagged>,
    pub family: Option<String>,
    pub given: Option<String>,
    /// A FHIR date (`YYYY-MM-DD`).
    pub birth_date: Option<String>,
    /// A FHIR gender code.
    pub gender: Option<&'static str>,
    /// Without a `urn:oid:` prefix.
    pub study_uid: Option<String>,
    pub accessions: Vec<Tagged>,
    /// Whether any Patient item was given at all (set or cleared).
    pub patient_named: bool,
    /// Whether any DICOMStudy item was given at all.
    pub study_named: bool,
}

/// The items a site's study subject carries its accession in: `<item>.<issuer>`.
pub const DEFAULT_ACCESSION_ITEM: &str = "DICOMStudy.Co.Placer_Order_Number";

impl Subjects {
    /// Reads name/value pairs; `accession_item` is where the site keeps accessions (see
    /// [`DEFAULT_ACCESSION_ITEM`]). Items of other subjects are left alone; an unreadable
    /// Patient or DICOMStudy value is refused.
    pub fn read<'a>(
        items: impl IntoIterator<Item = (&'a str, &'a str)>,
        accession_item: &str,
    ) -> Result<Subjects, CcowError> {
        let accession = ItemName::parse(&format!("{accession_item}.x"))?;
        let mut out = Subjects::default();
        for (raw, value) in items {
            let name = ItemName::parse(raw)?;
            let value = value.trim();
            let given = (!value.is_empty()).then(|| value.to_owned());
            if name.is_of(PATIENT) {
                out.patient_named = true;
            } else if name.is_of(STUDY) {
                out.study_named = true;
            } else {
                continue;
            }
            let Some(value) = given else { continue };
            if name.is(PATIENT, Role::Id, "MRN") {
                out.mrns.push(Tagged {
                    suffix: name.suffix.clone(),
                    value,
                });
            } else if name.is(PATIENT, Role::Co, "PatientName") {
                let (family, given) = read_xpn(&value);
                out.family = family;
                out.given = given;
            } else if name.is(PATIENT, Role::Co, "DateTimeOfBirth") {
                out.birth_date =
                    Some(read_ts_date(&value).ok_or_else(|| bad_value(&name, &value))?);
            } else if name.is(PATIENT, Role::Co, "Sex") {
                out.gender = Some(read_sex(&value).ok_or_else(|| bad_value(&name, &value))?);
            } else if name.is(STUDY, Role::Id, "InstanceUID") {
                out.study_uid = Some(value.trim_start_matches("urn:oid:").to_owned());
            } else if name.is(&accession.subject, accession.role, &accession.name) {
                out.accessions.push(Tagged {
                    suffix: name.suffix.clone(),
                    value,
                });
            }
        }
        Ok(out)
    }

    /// The items that say this (the Patient subject, and the study's where there is one), each
    /// value free of `|` (which no list can carry).
    pub fn write(&self, accession_item: &str) -> Result<Vec<(String, String)>, CcowError> {
        let mut items = Vec::new();
        for mrn in &self.mrns {
            items.push((suffixed("Patient.Id.MRN", &mrn.suffix), mrn.value.clone()));
        }
        if self.family.is_some() || self.given.is_some() {
            let xpn = format!(
                "{}^{}",
                self.family.as_deref().unwrap_or_default(),
                self.given.as_deref().unwrap_or_default()
            );
            items.push(("Patient.Co.PatientName".to_owned(), xpn));
        }
        if let Some(date) = &self.birth_date {
            items.push((
                "Patient.Co.DateTimeOfBirth".to_owned(),
                date.replace('-', ""),
            ));
        }
        if let Some(gender) = self.gender {
            items.push(("Patient.Co.Sex".to_owned(), write_sex(gender).to_owned()));
        }
        if let Some(uid) = &self.study_uid {
            items.push(("DICOMStudy.Id.InstanceUID".to_owned(), uid.clone()));
        }
        for accession in &self.accessions {
            items.push((
                suffixed(accession_item, &accession.suffix),
                accession.value.clone(),
            ));
        }
        if let Some((name, _)) = items.iter().find(|(_, v)| !super::wire::fits_a_list(v)) {
            return Err(CcowError::new(
                Exception::BadItemValue,
                format!("{name} holds a `|`, which CCOW cannot carry"),
            ));
        }
        Ok(items)
    }
}

fn suffixed(item: &str, suffix: &Option<String>) -> String {
    match suffix {
        Some(suffix) => format!("{item}.{suffix}"),
        None => item.to_owned(),
    }
}

fn bad_value(name: &ItemName, value: &str) -> CcowError {
    CcowError::new(
        Exception::BadItemValue,
        format!("{} cannot be `{value}`", name.raw),
    )
}

/// XPN `FAMILY^GIVEN^MIDDLE^...`: family, and the given names (given and middle) joined.
pub fn read_xpn(value: &str) -> (Option<String>, Option<String>) {
    let mut parts = value.split('^').map(str::trim);
    let family = parts.next().filter(|f| !f.is_empty()).map(str::to_owned);
    let given: Vec<&str> = parts.take(2).filter(|g| !g.is_empty()).collect();
    (family, (!given.is_empty()).then(|| given.join(" ")))
}

/// TS `YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]` → `YYYY-MM-DD`; `None` when it is no calendar date.
pub fn read_ts_date(value: &str) -> Option<String> {
    let digits = value.get(..8)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = &value[8..];
    if !rest
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-'))
    {
        return None;
    }
    let (year, month, day) = (&digits[..4], &digits[4..6], &digits[6..]);
    let month_number: u8 = month.parse().ok()?;
    let date = time::Date::from_calendar_date(
        year.parse().ok()?,
        time::Month::try_from(month_number).ok()?,
        day.parse().ok()?,
    )
    .ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// v2 sex (`M`, `F`, `O`, `U`, also `A`/`N` as other/unknown) → FHIR gender.
pub fn read_sex(value: &str) -> Option<&'static str> {
    match value.trim().to_ascii_uppercase().as_str() {
        "M" => Some("male"),
        "F" => Some("female"),
        "O" | "A" => Some("other"),
        "U" | "N" => Some("unknown"),
        _ => None,
    }
}

fn write_sex(gender: &str) -> &'static str {
    match gender {
        "male" => "M",
        "female" => "F",
        "other" => "O",
        _ => "U",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_are_read_in_parts_case_insensitively() {
        let mrn = ItemName::parse("patient.id.mrn.GENHOSP").unwrap();
        assert!(mrn.is("Patient", Role::Id, "MRN"));
        assert_eq!(mrn.suffix.as_deref(), Some("GENHOSP"));
        let va = ItemName::parse("Patient.Id.MRN.DFN_500_TEST").unwrap();
        assert_eq!(va.suffix.as_deref(), Some("DFN_500_TEST"));
        let custom =
            ItemName::parse("[medicorimaging.com]DateRange.id.[medicorimaging.com]StartDate")
                .unwrap();
        assert_eq!(custom.subject, "[medicorimaging.com]DateRange");
        assert_eq!(custom.name, "[medicorimaging.com]StartDate");
        assert_eq!(custom.suffix, None);
        for bad in [
            "Patient",
            "Patient.Id",
            "Patient.Xx.MRN",
            "Patient..MRN",
            "Patient.Id.MRN.",
        ] {
            assert_eq!(
                ItemName::parse(bad).unwrap_err().exception,
                Exception::BadItemNameFormat,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_patient_and_study_subjects_are_read() {
        let s = Subjects::read(
            [
                ("Patient.Id.MRN.GENHOSP", "12345"),
                ("Patient.Co.PatientName", "DOE^JANE^Q^^^"),
                ("Patient.Co.DateTimeOfBirth", "197001020000"),
                ("Patient.Co.Sex", "f"),
                ("DICOMStudy.Id.InstanceUID", "1.2.840.1"),
                ("DICOMStudy.Co.Placer_Order_Number.GENHOSP", "A77"),
                ("User.Id.Logon.Suffix", "jane"),
            ],
            DEFAULT_ACCESSION_ITEM,
        )
        .unwrap();
        assert_eq!(
            s.mrns,
            [Tagged {
                suffix: Some("GENHOSP".into()),
                value: "12345".into()
            }]
        );
        assert_eq!(s.family.as_deref(), Some("DOE"));
        assert_eq!(s.given.as_deref(), Some("JANE Q"));
        assert_eq!(s.birth_date.as_deref(), Some("1970-01-02"));
        assert_eq!(s.gender, Some("female"));
        assert_eq!(s.study_uid.as_deref(), Some("1.2.840.1"));
        assert_eq!(s.accessions[0].value, "A77");
        assert!(s.patient_named && s.study_named);
    }

    #[test]
    fn a_cleared_subject_is_named_but_empty() {
        let s = Subjects::read([("Patient.Id.MRN.GENHOSP", "")], DEFAULT_ACCESSION_ITEM).unwrap();
        assert!(s.patient_named && s.mrns.is_empty());
        assert!(!s.study_named);
    }

    #[test]
    fn an_unreadable_value_is_refused() {
        for (name, value) in [
            ("Patient.Co.DateTimeOfBirth", "19701302"),
            ("Patient.Co.DateTimeOfBirth", "1970"),
            ("Patient.Co.DateTimeOfBirth", "19700102XX"),
            ("Patient.Co.Sex", "female"),
        ] {
            let error = Subjects::read([(name, value)], DEFAULT_ACCESSION_ITEM).unwrap_err();
            assert_eq!(error.exception, Exception::BadItemValue, "{name}={value}");
        }
    }

    #[test]
    fn subjects_are_written_as_items_and_read_back_the_same() {
        let s = Subjects {
            mrns: vec![Tagged {
                suffix: Some("GENHOSP".into()),
                value: "12345".into(),
            }],
            family: Some("DOE".into()),
            given: Some("JANE".into()),
            birth_date: Some("1970-01-02".into()),
            gender: Some("female"),
            study_uid: Some("1.2.840.1".into()),
            accessions: vec![Tagged {
                suffix: Some("GENHOSP".into()),
                value: "A77".into(),
            }],
            patient_named: true,
            study_named: true,
        };
        let items = s.write(DEFAULT_ACCESSION_ITEM).unwrap();
        assert_eq!(items[0], ("Patient.Id.MRN.GENHOSP".into(), "12345".into()));
        assert_eq!(
            items[1],
            ("Patient.Co.PatientName".into(), "DOE^JANE".into())
        );
        let back = Subjects::read(
            items.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            DEFAULT_ACCESSION_ITEM,
        )
        .unwrap();
        assert_eq!(back, s);

        let piped = Subjects {
            family: Some("DOE|X".into()),
            ..Subjects::default()
        };
        assert_eq!(
            piped.write(DEFAULT_ACCESSION_ITEM).unwrap_err().exception,
            Exception::BadItemValue
        );
    }
}
