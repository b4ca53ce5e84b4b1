//! Reading fields out of a legacy message: JSON by pointer (`/patient/mrn`), XML by path
//! (`/Message/PatientID`, `/Message/PatientID/@issuer`, `/Message/Accession[2]`), INI by
//! `Section.key`, plain text by `line:N` or `content`.
//!
//! A field that matches several values is an error, not the first one: a message listing two
//! accessions must be read with an explicit index. A document that ends mid-way is reported as
//! a partial write, apart from one that is malformed.

use crate::template::Escape;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The format of a file, which sets how placeholders are escaped and how fields are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Json,
    Xml,
    Ini,
    Text,
}

impl FileFormat {
    pub fn escape(self) -> Escape {
        match self {
            FileFormat::Json => Escape::Json,
            FileFormat::Xml => Escape::Xml,
            FileFormat::Ini | FileFormat::Text => Escape::Line,
        }
    }
}

/// Why a file's content could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The document stops before its end: a write that did not finish.
    #[error("partial write: {0}")]
    Partial(String),
    #[error("malformed {format}: {reason}")]
    Malformed {
        format: &'static str,
        reason: String,
    },
}

/// Why a field could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("field `{path}` matches {count} values; name one (e.g. with an index)")]
    Ambiguous { path: String, count: usize },
    #[error("field `{0}` is not a single value")]
    NotScalar(String),
}

/// A parsed message.
#[derive(Debug)]
pub enum Message {
    Json(Value),
    Xml(Element),
    Ini(Vec<(String, String, String)>),
    Text(String),
}

/// An XML element: what a field path can reach.
#[derive(Debug, Default)]
pub struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

/// Checks a field path's syntax for a format (a configuration check).
pub fn check_path(format: FileFormat, path: &str) -> Result<(), String> {
    match format {
        FileFormat::Json if !(path.is_empty() || path.starts_with('/')) => {
            Err("a JSON pointer starts with `/`, e.g. `/patient/mrn`".into())
        }
        FileFormat::Xml => xml_steps(path).map(drop),
        FileFormat::Ini if path.is_empty() => Err("use `Section.key` or `key`".into()),
        FileFormat::Text if path != "content" && text_line(path).is_none() => {
            Err("use `content` or `line:N` (N from 1)".into())
        }
        _ => Ok(()),
    }
}

impl Message {
    pub fn parse(format: FileFormat, text: &str) -> Result<Message, ParseError> {
        if text.trim().is_empty() {
            return Err(ParseError::Partial("the file is empty".into()));
        }
        match format {
            FileFormat::Json => match serde_json::from_str(text) {
                Ok(value) => Ok(Message::Json(value)),
                Err(e) if e.is_eof() => Err(ParseError::Partial(format!("JSON ends early ({e})"))),
                Err(e) => Err(ParseError::Malformed {
                    format: "JSON",
                    reason: e.to_string(),
                }),
            },
            FileFormat::Xml => parse_xml(text).map(Message::Xml),
            FileFormat::Ini => parse_ini(text).map(Message::Ini),
            FileFormat::Text => Ok(Message::Text(text.to_owned())),
        }
    }

    /// The value at `path`, trimmed; `None` when absent or empty.
    pub fn get(&self, path: &str) -> Result<Option<String>, FieldError> {
        let values = match self {
            Message::Json(value) => json_values(value, path)?,
            Message::Xml(root) => xml_values(root, path)?,
            Message::Ini(entries) => {
                let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
                entries
                    .iter()
                    .filter(|(s, k, _)| {
                        s.eq_ignore_ascii_case(section) && k.eq_ignore_ascii_case(key)
                    })
                    .map(|(_, _, v)| v.clone())
                    .collect()
            }
            Message::Text(text) => match text_line(path) {
                Some(n) => text
                    .lines()
                    .nth(n - 1)
                    .map(str::to_owned)
                    .into_iter()
                    .collect(),
                None => vec![text.clone()],
            },
        };
        let values: Vec<String> = values
            .into_iter()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.into_iter().next()),
            count => Err(FieldError::Ambiguous {
                path: path.to_owned(),
                count,
            }),
        }
    }
}

fn text_line(path: &str) -> Option<usize> {
    path.strip_prefix("line:")?.parse().ok().filter(|n| *n >= 1)
}

fn json_values(root: &Value, path: &str) -> Result<Vec<String>, FieldError> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Null => Ok(None),
        _ => Err(FieldError::NotScalar(path.to_owned())),
    };
    match root.pointer(path) {
        None => Ok(Vec::new()),
        // A list of accessions is common; one element is its value, several are ambiguous.
        Some(Value::Array(items)) => items
            .iter()
            .map(scalar)
            .filter_map(Result::transpose)
            .collect(),
        Some(v) => Ok(scalar(v)?.into_iter().collect()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Element { name: String, index: Option<usize> },
    Attribute(String),
}

fn xml_steps(path: &str) -> Result<Vec<Step>, String> {
    let bad = || {
        format!(
            "an XML path looks like `/Root/Child`, `/Root/Child[2]` or `/Root/Child/@attr`, got `{path}`"
        )
    };
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let mut steps = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if let Some(attr) = part.strip_prefix('@') {
            if i + 1 != parts.len() || i == 0 || attr.is_empty() {
                return Err(bad());
            }
            steps.push(Step::Attribute(attr.to_owned()));
            continue;
        }
        let (name, index) = match part.split_once('[') {
            Some((name, idx)) => {
                let n: usize = idx
                    .strip_suffix(']')
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(bad)?;
                (name, Some(n))
            }
            None => (*part, None),
        };
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(bad());
        }
        steps.push(Step::Element {
            name: name.to_owned(),
            index,
        });
    }
    Ok(steps)
}

fn xml_values(root: &Element, path: &str) -> Result<Vec<String>, FieldError> {
    let Ok(steps) = xml_steps(path) else {
        return Ok(Vec::new());
    };
    let mut current: Vec<&Element> = vec![root];
    let mut first = true;
    for step in &steps {
        match step {
            Step::Element { name, index } => {
                let matched: Vec<&Element> = if first {
                    current.into_iter().filter(|e| e.name == *name).collect()
                } else {
                    current
                        .iter()
                        .flat_map(|e| e.children.iter().filter(|c| c.name == *name))
                        .collect()
                };
                current = match index {
                    Some(n) => matched.get(n - 1).copied().into_iter().collect(),
                    None => matched,
                };
                first = false;
            }
            Step::Attribute(attr) => {
                return Ok(current
                    .iter()
                    .filter_map(|e| {
                        e.attributes
                            .iter()
                            .find(|(k, _)| k == attr)
                            .map(|(_, v)| v.clone())
                    })
                    .collect());
            }
        }
    }
    current
        .iter()
        .map(|e| {
            if e.children.is_empty() {
                Ok(e.text.clone())
            } else {
                Err(FieldError::NotScalar(path.to_owned()))
            }
        })
        .collect()
}

/// Element names without their namespace prefix: legacy apps are not consistent about them.
fn local(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match name.rsplit_once(':') {
        Some((_, local)) => local.to_owned(),
        None => name.into_owned(),
    }
}

fn parse_xml(text: &str) -> Result<Element, ParseError> {
    let malformed = |reason: String| ParseError::Malformed {
        format: "XML",
        reason,
    };
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(quick_xml::Error::Syntax(e)) => {
                // Every syntax error quick-xml has is "… not found before end of input".
                return Err(ParseError::Partial(format!("XML ends early ({e})")));
            }
            Err(e) => return Err(malformed(e.to_string())),
        };
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                let _ = start;
                return Err(malformed("content after the root element".into()));
            }
            Event::Start(start) => {
                stack.push(element(&start).map_err(malformed)?);
            }
            Event::Empty(start) => {
                let e = element(&start).map_err(malformed)?;
                close(&mut stack, &mut root, e);
            }
            Event::End(_) => match stack.pop() {
                Some(e) => close(&mut stack, &mut root, e),
                None => return Err(malformed("an end tag with no start".into())),
            },
            Event::Text(t) => {
                let content = t.xml_content().map_err(|e| malformed(e.to_string()))?;
                push_text(&mut stack, &content, &root).map_err(malformed)?;
            }
            Event::CData(c) => {
                let content = c.decode().map_err(|e| malformed(e.to_string()))?;
                push_text(&mut stack, &content, &root).map_err(malformed)?;
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|e| malformed(e.to_string()))? {
                    Some(c) => c,
                    None => match &*r.decode().map_err(|e| malformed(e.to_string()))? {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(malformed(format!("unknown entity `&{other};`"))),
                    },
                };
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]), &root).map_err(malformed)?;
            }
            // Entities defined in a DTD are never expanded: refuse rather than half-read.
            Event::DocType(_) => return Err(malformed("a DOCTYPE is not accepted".into())),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(ParseError::Partial(format!(
            "XML ends inside <{}>",
            stack.last().map(|e| e.name.as_str()).unwrap_or_default()
        )));
    }
    root.ok_or_else(|| ParseError::Partial("no root element".into()))
}

fn element(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let mut attributes = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let value = attr.unescape_value().map_err(|e| e.to_string())?;
        attributes.push((local(attr.key.as_ref()), value.into_owned()));
    }
    Ok(Element {
        name: local(start.name().as_ref()),
        attributes,
        ..Default::default()
    })
}

fn close(stack: &mut [Element], root: &mut Option<Element>, e: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(e),
        None => *root = Some(e),
    }
}

fn push_text(stack: &mut [Element], text: &str, root: &Option<Element>) -> Result<(), String> {
    match stack.last_mut() {
        Some(e) => {
            e.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None if root.is_some() => Err("text after the root element".into()),
        None => Err("text before the root element".into()),
    }
}

fn parse_ini(text: &str) -> Result<Vec<(String, String, String)>, ParseError> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            section = name
                .strip_suffix(']')
                .ok_or_else(|| ParseError::Malformed {
                    format: "INI",
                    reason: format!("line {}: a section header without `]`", i + 1),
                })?
                .trim()
                .to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| ParseError::Malformed {
            format: "INI",
            reason: format!("line {}: neither `[section]` nor `key=value`", i + 1),
        })?;
        entries.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_paths_reach_text_attributes_and_indexed_repeats() {
        let xml = r#"<?xml version="1.0"?><r:Msg xmlns:r="urn:x"><Type>ReportOpened</Type>
            <Patient issuer="GEN&amp;HOSP">M&#x31;<![CDATA[<2>]]></Patient>
            <Acc>A1</Acc><Acc>A2</Acc></r:Msg>"#;
        let m = Message::parse(FileFormat::Xml, xml).unwrap();
        assert_eq!(m.get("/Msg/Type").unwrap().as_deref(), Some("ReportOpened"));
        assert_eq!(m.get("/Msg/Patient").unwrap().as_deref(), Some("M1<2>"));
        assert_eq!(
            m.get("/Msg/Patient/@issuer").unwrap().as_deref(),
            Some("GEN&HOSP")
        );
        assert_eq!(m.get("/Msg/Acc[2]").unwrap().as_deref(), Some("A2"));
        assert!(matches!(
            m.get("/Msg/Acc"),
            Err(FieldError::Ambiguous { count: 2, .. })
        ));
        assert_eq!(m.get("/Other/Type").unwrap(), None);
        assert!(matches!(m.get("/Msg"), Err(FieldError::NotScalar(_))));
    }

    #[test]
    fn partial_and_malformed_documents_differ() {
        for cut in [r#"<Msg><Type>Rep"#, r#"<Msg><Type>R</Type><Pat"#, "<Msg>"] {
            assert!(
                matches!(
                    Message::parse(FileFormat::Xml, cut),
                    Err(ParseError::Partial(_))
                ),
                "{cut}"
            );
        }
        for bad in [
            "<Msg></Other>",
            "<a/><b/>",
            "<!DOCTYPE x [<!ENTITY e 'boom'>]><x>&e;</x>",
            "<x>&nbsp;</x>",
        ] {
            assert!(
                matches!(
                    Message::parse(FileFormat::Xml, bad),
                    Err(ParseError::Malformed { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Message::parse(FileFormat::Json, r#"{"messageType": "Rep"#),
            Err(ParseError::Partial(_))
        ));
        assert!(matches!(
            Message::parse(FileFormat::Json, r#"{"a": nope}"#),
            Err(ParseError::Malformed { .. })
        ));
        assert!(matches!(
            Message::parse(FileFormat::Ini, "  \n"),
            Err(ParseError::Partial(_))
        ));
    }

    #[test]
    fn json_ini_and_text_fields() {
        let m = Message::parse(
            FileFormat::Json,
            r#"{"messageType":"ReportOpened","accessionNumbers":["A1"],"n":7,"two":["a","b"]}"#,
        )
        .unwrap();
        assert_eq!(m.get("/accessionNumbers").unwrap().as_deref(), Some("A1"));
        assert_eq!(m.get("/n").unwrap().as_deref(), Some("7"));
        assert!(m.get("/two").is_err());
        assert_eq!(m.get("/two/1").unwrap().as_deref(), Some("b"));

        let ini =
            Message::parse(FileFormat::Ini, "; c\nType=Open\n[Patient]\nMRN = 12 \n").unwrap();
        assert_eq!(ini.get("Patient.mrn").unwrap().as_deref(), Some("12"));
        assert_eq!(ini.get("Type").unwrap().as_deref(), Some("Open"));
        assert!(matches!(
            Message::parse(FileFormat::Ini, "[Patient\n"),
            Err(ParseError::Malformed { .. })
        ));

        let text = Message::parse(FileFormat::Text, "ACC-1\r\nsecond\n").unwrap();
        assert_eq!(text.get("line:1").unwrap().as_deref(), Some("ACC-1"));
        assert!(check_path(FileFormat::Text, "line:0").is_err());
        assert!(check_path(FileFormat::Xml, "Msg/Type").is_err());
        assert!(check_path(FileFormat::Xml, "/Msg/@a/b").is_err());
    }
}
