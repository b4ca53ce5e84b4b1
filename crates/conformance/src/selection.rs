//! `--only` / `--skip`: which checks run, as numbers and ranges (`1-9,12,40-47`).

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

/// The numbers checks can have.
const NUMBERS: RangeInclusive<u16> = 1..=110;

/// Which checks to run: all of them unless `only` is given, less `skip`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    only: Option<BTreeSet<u16>>,
    skip: BTreeSet<u16>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{given}`: {reason} (checks are numbered 1 to 110, e.g. `1-9,12,40-47`)")]
pub struct SelectionError {
    given: String,
    reason: String,
}

impl Selection {
    /// `only` and `skip` as given on the command line (`None`: the option was not given).
    pub fn parse(only: Option<&str>, skip: Option<&str>) -> Result<Selection, SelectionError> {
        Ok(Selection {
            only: only.map(numbers).transpose()?,
            skip: skip.map(numbers).transpose()?.unwrap_or_default(),
        })
    }

    pub fn includes(&self, number: u16) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&number)) && !self.skip.contains(&number)
    }
}

fn numbers(text: &str) -> Result<BTreeSet<u16>, SelectionError> {
    let error = |reason: &str| SelectionError {
        given: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut set = BTreeSet::new();
    for part in text.split(',').map(str::trim) {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let parse = |n: &str| {
            n.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| NUMBERS.contains(n))
                .ok_or_else(|| error(&format!("`{part}` is not a check number or range")))
        };
        let (low, high) = (parse(low)?, parse(high)?);
        if low > high {
            return Err(error(&format!("`{part}` runs backwards")));
        }
        set.extend(low..=high);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_ranges_pick_checks() {
        let selection = Selection::parse(Some("1-3, 12,40-41"), Some("2")).unwrap();
        let picked: Vec<u16> = NUMBERS.filter(|n| selection.includes(*n)).collect();
        assert_eq!(picked, [1, 3, 12, 40, 41]);
        let all = Selection::parse(None, Some("10-11")).unwrap();
        assert!(all.includes(1) && !all.includes(10) && !all.includes(11) && all.includes(110));
    }

    #[test]
    fn what_is_not_a_check_is_refused() {
        for bad in ["", "0", "111", "5-2", "a", "1,,2", "3-"] {
            assert!(Selection::parse(Some(bad), None).is_err(), "{bad}");
        }
    }
}
