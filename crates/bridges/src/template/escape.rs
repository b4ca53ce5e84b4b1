//! How a rendered value is escaped for where it lands; a value that cannot be carried safely is
//! refused, never altered.

use std::fmt::Write as _;

/// Where a rendered value is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Percent-encoded: everything but RFC 3986 unreserved characters.
    UrlComponent,
    /// One argv element, as is: no shell ever sees it. Control characters are refused, and
    /// so is a value that would start the argument with `-` (it would read as an option).
    Argument,
    /// Inside a JSON string literal.
    Json,
    /// XML character data or attribute value.
    Xml,
    /// One line of an INI or text file: line breaks are refused.
    Line,
    /// A file name: path separators and reserved characters are refused.
    FileName,
}

/// Appends `value` escaped for `escape`; `at_start` says the value begins the rendered text.
pub(super) fn escape_into(
    out: &mut String,
    value: &str,
    escape: Escape,
    at_start: bool,
) -> Result<(), &'static str> {
    let controls = |allowed: &[char]| {
        value
            .chars()
            .any(|c| c.is_control() && !allowed.contains(&c))
    };
    match escape {
        Escape::UrlComponent => {
            for byte in value.bytes() {
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    out.push(byte as char);
                } else {
                    let _ = write!(out, "%{byte:02X}");
                }
            }
        }
        Escape::Argument => {
            if controls(&[]) {
                return Err("control characters cannot go into an argument");
            }
            if at_start && value.starts_with('-') {
                return Err("a value starting with `-` would read as an option");
            }
            out.push_str(value);
        }
        Escape::Json => {
            let quoted = serde_json::to_string(value).unwrap_or_default();
            out.push_str(&quoted[1..quoted.len().saturating_sub(1)]);
        }
        Escape::Xml => {
            if controls(&['\t', '\n', '\r']) {
                return Err("XML cannot carry this control character");
            }
            for c in value.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&apos;"),
                    c => out.push(c),
                }
            }
        }
        Escape::Line => {
            if controls(&['\t']) {
                return Err("a line break or control character would split the line");
            }
            out.push_str(value);
        }
        Escape::FileName => {
            if controls(&[])
                || value.contains(['/', '\\', ':', '*', '?', '"', '<', '>', '|'])
                || value.starts_with('.')
            {
                return Err("not allowed in a file name");
            }
            out.push_str(value);
        }
    }
    Ok(())
}
