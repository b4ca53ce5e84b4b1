//! Refuses JSON in which an object names the same key twice, at any depth.
//!
//! FHIR JSON allows each key once, and parsers disagree about which of two values wins (first
//! or last): a hub that validated one value and relays both would let a subscriber read the
//! other. `serde_json` keeps the last silently, so the whole body gets one extra pass that
//! builds nothing and only compares each object's keys.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Objects with more keys than this are checked with a hash set instead of a scan, so that a
/// hostile object of a hundred thousand keys costs linear time, not quadratic.
const SCAN_UP_TO: usize = 16;

/// `Err` names the first repeated key and where it is.
pub(crate) fn check(body: &[u8]) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Unique
        .deserialize(&mut deserializer)
        .map_err(|e| e.to_string())
}

/// Visits one JSON value of any kind.
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let repeated = if many.is_empty() && few.len() < SCAN_UP_TO {
                few.contains(&key)
            } else {
                many.extend(few.drain(..));
                many.contains(&key)
            };
            if repeated {
                return Err(de::Error::custom(format_args!(
                    "the key `{key}` appears twice in one object"
                )));
            }
            if many.is_empty() {
                few.push(key);
            } else {
                many.insert(key);
            }
            map.next_value_seed(Unique)?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the body where it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn a_key_repeated_at_any_depth_is_named() {
        assert!(check(br#"{"a":1,"b":[{"c":{"d":2,"e":3}}]}"#).is_ok());
        let deep = check(br#"{"a":1,"b":[{"c":{"d":2,"d":3}}]}"#).unwrap_err();
        assert!(deep.contains("`d` appears twice"), "{deep}");
        assert!(deep.contains("column"), "says where: {deep}");
        // Escaped and plain spellings of one key are the same key.
        let escaped = check(br#"{"value":1,"val\u0075e":2}"#).unwrap_err();
        assert!(escaped.contains("`value`"), "{escaped}");
        // The same key in sibling objects is fine.
        assert!(check(br#"[{"k":1},{"k":2}]"#).is_ok());
    }

    #[test]
    fn large_objects_are_checked_in_linear_time() {
        let keys: Vec<String> = (0..50_000).map(|i| format!("\"k{i}\":0")).collect();
        let unique = format!("{{{}}}", keys.join(","));
        assert!(check(unique.as_bytes()).is_ok());
        let repeated = format!("{{{},\"k7\":1}}", keys.join(","));
        assert!(check(repeated.as_bytes()).unwrap_err().contains("`k7`"));
    }
}
