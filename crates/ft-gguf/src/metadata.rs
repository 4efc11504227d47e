//! GGUF metadata: typed values and a key-ordered store with typed getters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};

/// One metadata value, exactly as stored (GGUF value types 0–12).
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7.
    Bool(bool),
    /// Type 8 (UTF-8).
    String(String),
    /// Type 9: the element type id and the elements (arrays may nest).
    Array(u32, Vec<MetadataValue>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl MetadataValue {
    /// The GGUF name of this value's type, e.g. `u32` or `array<string>`.
    pub fn type_name(&self) -> String {
        match self {
            Self::Array(elem, _) => format!("array<{}>", value_type_name(*elem)),
            other => value_type_name(other.type_id()).to_string(),
        }
    }

    /// The GGUF value-type id (0–12).
    pub fn type_id(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(..) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }

    /// Any integer type as `i128` (so every u64 and i64 fits); `None` for other types.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => v.into(),
            Self::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any number as `f64`. An `f32` goes through its shortest decimal form, so `1e-5f32` gives
    /// `1e-5`, the value a `config.json` would hold, not `9.999999747378752e-06`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => format!("{v}").parse().ok(),
            Self::F64(v) => Some(v),
            _ => self.as_integer().map(|v| v as f64),
        }
    }

    /// The string, for a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bool, for a bool value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, for an array value.
    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            Self::Array(_, items) => Some(items),
            _ => None,
        }
    }
}

/// The name of a GGUF value-type id.
pub fn value_type_name(type_id: u32) -> &'static str {
    match type_id {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "unknown",
    }
}

/// All key/value pairs of a file, in file order, with typed getters that name the file on error.
#[derive(Debug, Clone)]
pub struct Metadata {
    file: PathBuf,
    entries: Vec<(String, MetadataValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    pub(crate) fn new(file: &Path, entries: Vec<(String, MetadataValue)>) -> Result<Self> {
        let mut index = HashMap::with_capacity(entries.len());
        for (i, (key, _)) in entries.iter().enumerate() {
            if index.insert(key.clone(), i).is_some() {
                return Err(GgufError::Corrupt {
                    file: file.to_path_buf(),
                    what: format!("metadata key `{key}` appears twice"),
                });
            }
        }
        Ok(Self {
            file: file.to_path_buf(),
            entries,
            index,
        })
    }

    /// Number of key/value pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pairs in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// The value of `key`, or [`GgufError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<&MetadataValue> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            file: self.file.clone(),
            key: key.to_string(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &MetadataValue) -> GgufError {
        GgufError::WrongType {
            file: self.file.clone(),
            key: key.to_string(),
            expected,
            found: found.type_name(),
        }
    }

    /// A non-negative integer of any integer type; `None` when absent.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_integer()
            .and_then(|v| u64::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer", value))
    }

    /// Like [`Self::get_u64`], but the key must be present.
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.get_u64(key)?.ok_or_else(|| GgufError::MissingKey {
            file: self.file.clone(),
            key: key.to_string(),
        })
    }

    /// Any number as `f64` (see [`MetadataValue::as_f64`]); `None` when absent.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_f64()
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, "a number", value))
    }

    /// A string; `None` when absent.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_str()
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, "string", value))
    }

    /// Like [`Self::get_str`], but the key must be present.
    pub fn require_str(&self, key: &str) -> Result<&str> {
        self.get_str(key)?.ok_or_else(|| GgufError::MissingKey {
            file: self.file.clone(),
            key: key.to_string(),
        })
    }

    /// A bool; `None` when absent.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_bool()
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, "bool", value))
    }

    /// An array of strings; `None` when absent.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let items = value
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "array<string>", value))?;
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong_type(key, "array<string>", value))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of integers (any integer type) as `i64`; `None` when absent.
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let items = value
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "array<integer>", value))?;
        items
            .iter()
            .map(|v| {
                v.as_integer()
                    .and_then(|i| i64::try_from(i).ok())
                    .ok_or_else(|| self.wrong_type(key, "array<integer>", value))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of numbers as `f32`; `None` when absent.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let items = value
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "array<number>", value))?;
        items
            .iter()
            .map(|v| match *v {
                MetadataValue::F32(x) => Ok(x),
                MetadataValue::F64(x) => Ok(x as f32),
                _ => v
                    .as_integer()
                    .map(|i| i as f32)
                    .ok_or_else(|| self.wrong_type(key, "array<number>", value)),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}
