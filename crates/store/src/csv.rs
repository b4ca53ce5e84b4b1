//! The one CSV writer (RFC 4180, CRLF line ends) for every export: the audit trail and history.

use std::io::Write;

/// What the writer does to a field a spreadsheet would run as a formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cells {
    /// Every field exactly as stored: the audit trail's export, whose rows a reader re-hashes
    /// to verify the chain.
    Exact,
    /// A field starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`,
    /// so that a spreadsheet shows it instead of running it: for exports people open in one,
    /// whose names and descriptions come from other applications.
    ForSpreadsheets,
}

/// Writes CSV rows to `out`.
pub struct CsvWriter<W: Write> {
    out: W,
    cells: Cells,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W, cells: Cells) -> Self {
        CsvWriter { out, cells }
    }

    /// One row; a field is quoted only when it must be (a comma, quote, line break, or space
    /// at either end).
    pub fn row<'a>(&mut self, fields: impl IntoIterator<Item = &'a str>) -> std::io::Result<()> {
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            self.field(field)?;
        }
        self.out.write_all(b"\r\n")
    }

    fn field(&mut self, field: &str) -> std::io::Result<()> {
        let defused;
        let field = if self.cells == Cells::ForSpreadsheets
            && field.starts_with(['=', '+', '-', '@', '\t', '\r'])
        {
            defused = format!("'{field}");
            defused.as_str()
        } else {
            field
        };
        let needs_quotes = field.contains([',', '"', '\n', '\r'])
            || field.starts_with(char::is_whitespace)
            || field.ends_with(char::is_whitespace);
        if needs_quotes {
            self.out.write_all(b"\"")?;
            self.out.write_all(field.replace('"', "\"\"").as_bytes())?;
            self.out.write_all(b"\"")
        } else {
            self.out.write_all(field.as_bytes())
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cells: Cells, fields: &[&str]) -> String {
        let mut out = Vec::new();
        CsvWriter::new(&mut out, cells)
            .row(fields.iter().copied())
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(
            line(
                Cells::Exact,
                &["plain", "a,b", "say \"hi\"", "two\nlines", " edge", ""]
            ),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\" edge\",\r\n"
        );
    }

    #[test]
    fn formulas_are_defused_only_for_spreadsheets() {
        assert_eq!(
            line(
                Cells::ForSpreadsheets,
                &["=HYPERLINK(1)", "-3", "DOE, Jane", "12345"]
            ),
            "'=HYPERLINK(1),'-3,\"DOE, Jane\",12345\r\n"
        );
        assert_eq!(line(Cells::Exact, &["=1+1"]), "=1+1\r\n");
    }
}
