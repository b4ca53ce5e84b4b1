//! Text as legacy apps write it: encodings (a BOM always wins; UTF-16 either way round; code
//! pages by WHATWG label), line endings, and file-name patterns.
//!
//! Decoding never substitutes: a byte that is not valid in the encoding makes the file
//! malformed, because a replaced character inside an identifier would name someone else.

use serde::{Deserialize, Serialize};

/// A text encoding for files: `utf-8` (default), `utf-8-bom`, `utf-16le`, `utf-16be` (both
/// written with a BOM), or any WHATWG label such as `windows-1252`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TextEncoding(pub String);

impl Default for TextEncoding {
    fn default() -> Self {
        TextEncoding("utf-8".into())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineEndings {
    #[default]
    Lf,
    Crlf,
}

/// How the bytes of a file without a BOM are read.
#[derive(Debug, Clone, Copy)]
pub enum Decoder {
    Utf8,
    Utf16Le,
    Utf16Be,
    Legacy(&'static encoding_rs::Encoding),
}

/// How a file is written.
#[derive(Debug, Clone, Copy)]
pub enum Encoder {
    Utf8 { bom: bool },
    Utf16Le,
    Utf16Be,
    Legacy(&'static encoding_rs::Encoding),
}

/// Why bytes are not text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes stop in the middle of a character: a write that did not finish.
    #[error("the file ends in the middle of a character")]
    Truncated,
    #[error("the file is not valid {0}")]
    Invalid(&'static str),
}

pub fn decoder(label: &str) -> Result<Decoder, String> {
    match label.trim().to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" | "utf-8-bom" => Ok(Decoder::Utf8),
        "utf-16le" | "utf-16" => Ok(Decoder::Utf16Le),
        "utf-16be" => Ok(Decoder::Utf16Be),
        other => legacy(other).map(Decoder::Legacy),
    }
}

pub fn encoder(label: &str) -> Result<Encoder, String> {
    match label.trim().to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => Ok(Encoder::Utf8 { bom: false }),
        "utf-8-bom" => Ok(Encoder::Utf8 { bom: true }),
        "utf-16le" | "utf-16" => Ok(Encoder::Utf16Le),
        "utf-16be" => Ok(Encoder::Utf16Be),
        other => legacy(other).map(Encoder::Legacy),
    }
}

fn legacy(label: &str) -> Result<&'static encoding_rs::Encoding, String> {
    match encoding_rs::Encoding::for_label(label.as_bytes()) {
        Some(e) if e != encoding_rs::REPLACEMENT && e.output_encoding() == e => Ok(e),
        _ => Err(format!(
            "unknown encoding `{label}` (use utf-8, utf-8-bom, utf-16le, utf-16be or a code page such as windows-1252)"
        )),
    }
}

/// Reads a file's bytes: a BOM (UTF-8, UTF-16 LE or BE) wins over the configured encoding.
pub fn decode(bytes: &[u8], default: Decoder) -> Result<String, DecodeError> {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8(rest);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, u16::from_be_bytes);
    }
    match default {
        Decoder::Utf8 => utf8(bytes),
        Decoder::Utf16Le => utf16(bytes, u16::from_le_bytes),
        Decoder::Utf16Be => utf16(bytes, u16::from_be_bytes),
        Decoder::Legacy(encoding) => encoding
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|text| text.into_owned())
            .ok_or(DecodeError::Invalid(encoding.name())),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        // `error_len() == None`: the bytes end inside a sequence that could have gone on.
        Err(e) if e.error_len().is_none() => Err(DecodeError::Truncated),
        Err(_) => Err(DecodeError::Invalid("UTF-8")),
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, DecodeError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(DecodeError::Truncated);
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| unit([pair[0], pair[1]]))
        .collect();
    let ends_in_high_surrogate = units.last().is_some_and(|u| (0xD800..0xDC00).contains(u));
    let mut text = String::with_capacity(units.len());
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => text.push(c),
            Err(_) if ends_in_high_surrogate => return Err(DecodeError::Truncated),
            Err(_) => return Err(DecodeError::Invalid("UTF-16")),
        }
    }
    Ok(text)
}

/// Writes text as a file's bytes, with the configured line endings. A character the
/// encoding cannot represent is an error rather than a `?`.
pub fn encode(text: &str, encoder: Encoder, endings: LineEndings) -> Result<Vec<u8>, String> {
    let normalised = text.replace("\r\n", "\n");
    let text = match endings {
        LineEndings::Lf => normalised,
        LineEndings::Crlf => normalised.replace('\n', "\r\n"),
    };
    Ok(match encoder {
        Encoder::Utf8 { bom } => {
            let mut out = Vec::with_capacity(text.len() + 3);
            if bom {
                out.extend_from_slice(&[0xEF, 0xBB, 0xBF]);
            }
            out.extend_from_slice(text.as_bytes());
            out
        }
        Encoder::Utf16Le => std::iter::once(0xFEFF)
            .chain(text.encode_utf16())
            .flat_map(u16::to_le_bytes)
            .collect(),
        Encoder::Utf16Be => std::iter::once(0xFEFF)
            .chain(text.encode_utf16())
            .flat_map(u16::to_be_bytes)
            .collect(),
        Encoder::Legacy(encoding) => {
            let (bytes, _, had_errors) = encoding.encode(&text);
            if had_errors {
                return Err(format!(
                    "the text has characters {} cannot represent",
                    encoding.name()
                ));
            }
            bytes.into_owned()
        }
    })
}

/// A file-name pattern with `*` and `?`, matched case-insensitively (Windows shares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<char>);

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.contains(['/', '\\']) {
            return Err("a file-name pattern such as `*.xml` (no folders)".into());
        }
        Ok(Pattern(text.to_lowercase().chars().collect()))
    }

    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.to_lowercase().chars().collect();
        glob(&self.0, &name)
    }
}

fn glob(pattern: &[char], name: &[char]) -> bool {
    // Iterative wildcard matching with one backtrack point: linear enough for file names.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Names a writer uses while a file is not finished: never read.
pub fn is_in_progress(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with('~')
        || name.ends_with('~')
        || [".tmp", ".part", ".partial", ".crdownload", ".swp"]
            .iter()
            .any(|s| lower.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_wins_and_utf16_round_trips() {
        let text = "<Message>Zoë 𝄞</Message>\r\n";
        for encoder in [
            Encoder::Utf16Le,
            Encoder::Utf16Be,
            Encoder::Utf8 { bom: true },
        ] {
            let bytes = encode(text, encoder, LineEndings::Crlf).unwrap();
            assert_eq!(decode(&bytes, Decoder::Utf8).unwrap(), text);
        }
        let le = encode("ab", Encoder::Utf16Le, LineEndings::Lf).unwrap();
        assert_eq!(le, [0xFF, 0xFE, b'a', 0, b'b', 0]);
    }

    #[test]
    fn truncated_and_invalid_bytes_are_told_apart() {
        let le = encode("é𝄞", Encoder::Utf16Le, LineEndings::Lf).unwrap();
        assert_eq!(
            decode(&le[..le.len() - 1], Decoder::Utf8),
            Err(DecodeError::Truncated)
        );
        // Cut after the high surrogate: a character half written.
        assert_eq!(
            decode(&le[..le.len() - 2], Decoder::Utf8),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode("é".as_bytes()[..1].as_ref(), Decoder::Utf8),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(b"\xff\x41", Decoder::Utf8),
            Err(DecodeError::Invalid("UTF-8"))
        );
    }

    #[test]
    fn code_pages_never_substitute() {
        let cp1252 = decoder("windows-1252").unwrap();
        assert_eq!(decode(b"M\xfcller \x80", cp1252).unwrap(), "Müller €");
        let enc = encoder("windows-1252").unwrap();
        assert_eq!(
            encode("Müller", enc, LineEndings::Lf).unwrap(),
            b"M\xfcller"
        );
        assert!(encode("𝄞", enc, LineEndings::Lf).is_err());
        assert!(decoder("klingon").is_err());
        assert_eq!(
            encode("a\r\nb\nc", Encoder::Utf8 { bom: false }, LineEndings::Crlf).unwrap(),
            b"a\r\nb\r\nc"
        );
    }

    #[test]
    fn patterns_and_in_progress_names() {
        let p = Pattern::parse("*.XML").unwrap();
        assert!(p.matches("study.xml") && p.matches("a.b.Xml") && !p.matches("study.xml.tmp"));
        assert!(
            Pattern::parse("report-??.json")
                .unwrap()
                .matches("report-01.json")
        );
        assert!(
            !Pattern::parse("report-??.json")
                .unwrap()
                .matches("report-1.json")
        );
        assert!(Pattern::parse("../*").is_err());
        assert!(
            is_in_progress(".study.xml.swp")
                && is_in_progress("a.xml.tmp")
                && !is_in_progress("a.xml")
        );
    }
}
