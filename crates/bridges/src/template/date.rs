//! Dates in templates: a FHIR date or dateTime taken apart, and rendered in a format such as
//! `yyyyMMdd` (letters outside the known tokens are refused, so a typo is found at load time).

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    Year4,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Char(char),
}

/// Splits a date format into tokens; letters outside the known tokens are refused so that a
/// typo (`YYYY`, `mm` for months) is found at load time.
pub(super) fn tokens(format: &str) -> Option<Vec<Token>> {
    const TOKENS: &[(&str, Token)] = &[
        ("yyyy", Token::Year4),
        ("yy", Token::Year2),
        ("MM", Token::Month),
        ("dd", Token::Day),
        ("HH", Token::Hour),
        ("mm", Token::Minute),
        ("ss", Token::Second),
    ];
    let mut out = Vec::new();
    let mut rest = format;
    'outer: while let Some(c) = rest.chars().next() {
        for (text, token) in TOKENS {
            if let Some(tail) = rest.strip_prefix(text) {
                out.push(*token);
                rest = tail;
                continue 'outer;
            }
        }
        // ISO 8601's `T` and `Z` are the only letters that stand for themselves.
        if c.is_alphanumeric() && c != 'T' && c != 'Z' {
            return None;
        }
        out.push(Token::Char(c));
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

/// Date and time parts; a FHIR date may be partial (`1970`, `1970-01`).
#[derive(Debug, Default)]
pub(super) struct DateParts {
    pub(super) year: Option<i32>,
    pub(super) month: Option<u8>,
    pub(super) day: Option<u8>,
    pub(super) hour: Option<u8>,
    pub(super) minute: Option<u8>,
    pub(super) second: Option<u8>,
}

pub(super) fn fhir_date(value: &str) -> Option<DateParts> {
    let mut parts = value.trim().splitn(3, '-');
    let year = parts.next()?;
    if year.len() != 4 {
        return None;
    }
    let year: i32 = year.parse().ok()?;
    let month = match parts.next() {
        Some(m) => Some(m.parse::<u8>().ok()?),
        None => None,
    };
    let day = match parts.next() {
        Some(d) => Some(d.parse::<u8>().ok()?),
        None => None,
    };
    if month.is_some_and(|m| !(1..=12).contains(&m)) || day.is_some_and(|d| !(1..=31).contains(&d))
    {
        return None;
    }
    Some(DateParts {
        year: Some(year),
        month,
        day,
        ..Default::default()
    })
}

pub(super) fn format_date(parts: &DateParts, format: &str) -> Option<String> {
    let mut out = String::new();
    for token in tokens(format)? {
        match token {
            Token::Year4 => write!(out, "{:04}", parts.year?).ok()?,
            Token::Year2 => write!(out, "{:02}", parts.year?.rem_euclid(100)).ok()?,
            Token::Month => write!(out, "{:02}", parts.month?).ok()?,
            Token::Day => write!(out, "{:02}", parts.day?).ok()?,
            Token::Hour => write!(out, "{:02}", parts.hour?).ok()?,
            Token::Minute => write!(out, "{:02}", parts.minute?).ok()?,
            Token::Second => write!(out, "{:02}", parts.second?).ok()?,
            Token::Char(c) => out.push(c),
        }
    }
    Some(out)
}
