//! A bounds-checked little-endian reader over the file's bytes.

use std::path::Path;

use crate::error::{GgufError, Result};
use crate::metadata::MetadataValue;

/// Arrays nest at most this deep; deeper nesting is treated as corruption (it also bounds recursion).
const MAX_ARRAY_DEPTH: usize = 8;

/// Reads values from `bytes`, turning every overrun into [`GgufError::Truncated`].
pub(crate) struct Cursor<'a> {
    file: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(file: &'a Path, bytes: &'a [u8]) -> Self {
        Self { file, bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> GgufError {
        GgufError::Corrupt {
            file: self.file.to_path_buf(),
            what: what.into(),
        }
    }

    fn truncated(&self, what: &str, needed: u64) -> GgufError {
        GgufError::Truncated {
            file: self.file.to_path_buf(),
            what: what.to_string(),
            offset: self.pos as u64,
            needed,
            len: self.bytes.len() as u64,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let n_usize = usize::try_from(n).map_err(|_| self.truncated(what, n))?;
        if n_usize > self.remaining() {
            return Err(self.truncated(what, n));
        }
        let slice = &self.bytes[self.pos..self.pos + n_usize];
        self.pos += n_usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let slice = self.take(N as u64, what)?;
        Ok(slice.try_into().expect("invariant: take returned N bytes"))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes.
    pub(crate) fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| self.corrupt(format!("{what} is not UTF-8: {e}")))
    }

    /// A value of GGUF type `type_id`; `what` names it in errors (e.g. the key).
    pub(crate) fn value(&mut self, type_id: u32, what: &str) -> Result<MetadataValue> {
        self.value_at_depth(type_id, what, 0)
    }

    fn value_at_depth(&mut self, type_id: u32, what: &str, depth: usize) -> Result<MetadataValue> {
        Ok(match type_id {
            0 => MetadataValue::U8(self.array::<1>(what)?[0]),
            1 => MetadataValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetadataValue::U32(self.u32(what)?),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => MetadataValue::Bool(false),
                1 => MetadataValue::Bool(true),
                other => return Err(self.corrupt(format!("{what}: bool byte is {other}, expected 0 or 1"))),
            },
            8 => MetadataValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.corrupt(format!("{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
                let elem_type = self.u32(what)?;
                let count = self.u64(what)?;
                // Each element takes at least one byte (strings and arrays at least 8), so a count
                // larger than the bytes left is corruption; checking first avoids a huge allocation.
                let min_size = match elem_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10 | 11 | 12 => 8,
                    9 => 12,
                    other => return Err(self.corrupt(format!("{what}: unknown array element type {other}"))),
                };
                if count.saturating_mul(min_size) > self.remaining() as u64 {
                    return Err(self.truncated(what, count.saturating_mul(min_size)));
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value_at_depth(elem_type, what, depth + 1)?);
                }
                MetadataValue::Array(elem_type, items)
            }
            10 => MetadataValue::U64(self.u64(what)?),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => return Err(self.corrupt(format!("{what}: unknown value type {other}"))),
        })
    }
}
