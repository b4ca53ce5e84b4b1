//! Every key the configuration accepts, read from the types themselves: a deserializer that
//! answers each `deserialize_*` call with a placeholder and notes the path and the shape asked
//! for. The schema's drift check compares the schema with it, so a field added to any
//! configuration struct and not to the schema fails the build.

use super::SettingType;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::collections::{BTreeMap, BTreeSet};

/// Dotted key (`apps[].client_id` inside a list of tables) → the shape the types read there.
pub(crate) type Shapes = BTreeMap<String, SettingType>;

/// Walks `T` and returns every key it accepts, with its shape.
pub(crate) fn shapes<'de, T: serde::Deserialize<'de>>() -> Result<Shapes, String> {
    let mut shapes = Shapes::new();
    T::deserialize(Probe::root(&mut shapes, None)).map_err(|e| e.to_string())?;
    Ok(shapes)
}

/// The keys that have no default (each must be given, inside its list's tables), and the
/// defaults of the rest, as `T` writes them out: `T` read from nothing but its required keys
/// (placeholders), with one table in every list of tables.
pub(crate) fn defaults<'de, T: serde::Deserialize<'de> + serde::Serialize>()
-> Result<(BTreeSet<String>, toml::Table), String> {
    let shapes = shapes::<T>()?;
    let mut required = BTreeSet::new();
    loop {
        let sparse = Sparse {
            required: &required,
            shapes: &shapes,
        };
        match T::deserialize(Probe::root(&mut Shapes::new(), Some(sparse))) {
            Ok(value) => {
                let text = toml::to_string(&value).map_err(|e| e.to_string())?;
                let table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
                return Ok((required, table));
            }
            Err(ProbeError::MissingAt(key)) if !required.contains(&key) => {
                required.insert(key);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[derive(Debug)]
pub(crate) enum ProbeError {
    /// A struct's field that has no default.
    Missing(&'static str),
    /// The same, with its dotted key.
    MissingAt(String),
    Other(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Missing(field) => write!(f, "missing field `{field}`"),
            ProbeError::MissingAt(key) => write!(f, "missing key `{key}`"),
            ProbeError::Other(message) => f.write_str(message),
        }
    }
}
impl std::error::Error for ProbeError {}
impl de::Error for ProbeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        ProbeError::Other(msg.to_string())
    }
    fn missing_field(field: &'static str) -> Self {
        ProbeError::Missing(field)
    }
}

struct Probe<'a> {
    key: String,
    shapes: &'a mut Shapes,
    /// An element of a sequence: a scalar here makes its sequence a list of that scalar.
    in_list: bool,
    /// Sparse: a struct is given only some of its fields (the rest take their defaults).
    only: Option<Sparse<'a>>,
}

/// What a sparse probe gives a struct: its required fields, and its tables and lists of
/// tables (so that their own defaults are read too).
#[derive(Clone, Copy)]
struct Sparse<'a> {
    required: &'a BTreeSet<String>,
    shapes: &'a Shapes,
}

impl Sparse<'_> {
    fn gives(&self, key: &str) -> bool {
        self.required.contains(key)
            || matches!(
                self.shapes.get(key),
                Some(SettingType::Table | SettingType::TableList)
            )
    }
}

impl<'a> Probe<'a> {
    fn root(shapes: &'a mut Shapes, only: Option<Sparse<'a>>) -> Self {
        Probe {
            key: String::new(),
            shapes,
            in_list: false,
            only,
        }
    }

    fn child(&mut self, key: String, in_list: bool) -> Probe<'_> {
        Probe {
            key,
            shapes: self.shapes,
            in_list,
            only: self.only,
        }
    }
}

impl Probe<'_> {
    fn note(&mut self, shape: SettingType) {
        if !self.key.is_empty() && !self.in_list {
            self.shapes.insert(self.key.clone(), shape);
        }
    }
}

macro_rules! scalar {
    ($($method:ident => $visit:ident($value:expr), $shape:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
            self.note($shape);
            visitor.$visit($value)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    scalar! {
        deserialize_bool => visit_bool(false), SettingType::Bool;
        deserialize_u8 => visit_u8(0), SettingType::Integer;
        deserialize_u16 => visit_u16(0), SettingType::Integer;
        deserialize_u32 => visit_u32(0), SettingType::Integer;
        deserialize_u64 => visit_u64(0), SettingType::Integer;
        deserialize_i8 => visit_i8(0), SettingType::Integer;
        deserialize_i16 => visit_i16(0), SettingType::Integer;
        deserialize_i32 => visit_i32(0), SettingType::Integer;
        deserialize_i64 => visit_i64(0), SettingType::Integer;
        deserialize_f32 => visit_f32(0.0), SettingType::Number;
        deserialize_f64 => visit_f64(0.0), SettingType::Number;
        deserialize_char => visit_char('x'), SettingType::String;
        deserialize_str => visit_str(""), SettingType::String;
        deserialize_string => visit_string(String::new()), SettingType::String;
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Other(format!(
            "`{}` is read without a declared shape; the schema cannot follow it",
            self.key
        )))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
        // One element, to learn what the list holds.
        let mut element = Shapes::new();
        let value = visitor.visit_seq(OneElement {
            probe: Some(Probe {
                key: format!("{}[]", self.key),
                shapes: &mut element,
                in_list: true,
                only: self.only,
            }),
        })?;
        let shape = if element.is_empty() {
            SettingType::List
        } else {
            SettingType::TableList
        };
        self.note(shape);
        self.shapes.extend(element);
        Ok(value)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_newtype_struct(self)
    }

    /// A fixed-size array (an address's octets): every element walked.
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_seq(Elements {
            probe: self,
            left: len,
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let in_list = std::mem::replace(&mut self.in_list, false);
        if !in_list {
            self.note(SettingType::Table);
        }
        let fields: Vec<&'static str> = match self.only {
            Some(only) => fields
                .iter()
                .copied()
                .filter(|field| only.gives(&join(&self.key, field)))
                .collect(),
            None => fields.to_vec(),
        };
        let prefix = self.key.clone();
        visitor
            .visit_map(Fields {
                probe: self,
                fields,
                next: 0,
            })
            .map_err(|e| match e {
                ProbeError::Missing(field) => ProbeError::MissingAt(join(&prefix, field)),
                other => other,
            })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.note(SettingType::Enum(
            variants.iter().map(|v| v.to_string()).collect(),
        ));
        let variant = variants.first().copied().unwrap_or_default();
        let key = self.key.clone();
        visitor.visit_enum(Variant {
            name: variant,
            probe: self.child(key, true),
        })
    }

    /// Not human-readable, so that types written as text (addresses) are read through their
    /// structure, which the probe can walk, rather than parsed from a placeholder string.
    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct map identifier ignored_any
    }
}

/// The first variant of an enum, its content (if any) walked as an unnamed value.
struct Variant<'a> {
    name: &'static str,
    probe: Probe<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = ProbeError;
    type Variant = Probe<'a>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Probe<'a>), ProbeError> {
        let name = seed.deserialize(self.name.into_deserializer())?;
        Ok((name, self.probe))
    }
}

impl<'de> de::VariantAccess<'de> for Probe<'_> {
    type Error = ProbeError;

    fn unit_variant(self) -> Result<(), ProbeError> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, ProbeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

struct OneElement<'a> {
    probe: Option<Probe<'a>>,
}

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = ProbeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        match self.probe.take() {
            Some(probe) => seed.deserialize(probe).map(Some),
            None => Ok(None),
        }
    }
}

struct Elements<'a> {
    probe: Probe<'a>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = ProbeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let key = self.probe.key.clone();
        seed.deserialize(self.probe.child(key, true)).map(Some)
    }
}

struct Fields<'a> {
    probe: Probe<'a>,
    fields: Vec<&'static str>,
    next: usize,
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        match self.fields.get(self.next) {
            Some(field) => seed.deserialize(field.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        let field = self.fields[self.next];
        self.next += 1;
        let key = join(&self.probe.key, field);
        seed.deserialize(self.probe.child(key, false))
    }
}
