//! The safetensors container: an 8-byte little-endian header length, a JSON header
//! padded with spaces so the data starts 8-byte aligned, then the tensors' bytes back to back.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::dtype::Dtype;
use crate::error::{IoError, Result};

/// One tensor's header entry: where its bytes sit in the data section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// `[begin, end)` relative to the start of the data section.
    pub data_offsets: (usize, usize),
}

#[derive(Serialize)]
struct HeaderEntry<'a> {
    dtype: &'static str,
    shape: &'a [usize],
    data_offsets: [usize; 2],
}

/// The metadata every `ft` file carries: `{"format": "pt"}` (transformers refuses other formats).
pub fn pt_metadata() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("format".into(), Value::String("pt".into()));
    m
}

/// Number of bytes `dtype × shape` needs, or `None` on overflow.
pub fn tensor_byte_len(dtype: Dtype, shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(dtype.size_bytes(), |acc, &d| acc.checked_mul(d))
}

/// Checks a tensor name: non-empty and not the reserved `__metadata__`.
pub fn check_tensor_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name == "__metadata__" {
        "`__metadata__` is reserved by safetensors"
    } else {
        return Ok(());
    };
    Err(IoError::InvalidTensorName {
        name: name.to_string(),
        reason,
    })
}

/// The 8-byte length prefix plus the space-padded JSON header for `entries` (in data order) and
/// `metadata`. The returned bytes' length is a multiple of 8, so the data that follows is aligned.
pub fn encode_header(entries: &[TensorEntry], metadata: &Map<String, Value>) -> Vec<u8> {
    let mut header = Map::new();
    header.insert("__metadata__".into(), Value::Object(metadata.clone()));
    for e in entries {
        let entry = HeaderEntry {
            dtype: e.dtype.as_str(),
            shape: &e.shape,
            data_offsets: [e.data_offsets.0, e.data_offsets.1],
        };
        header.insert(
            e.name.clone(),
            serde_json::to_value(entry).expect("invariant: header entry serialises"),
        );
    }
    let mut json = serde_json::to_vec(&Value::Object(header)).expect("invariant: header serialises");
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Writes one safetensors file: header for `entries`, then the data chunks in order.
/// `chunks` must concatenate to exactly the bytes `entries` describe.
pub fn write_safetensors_file(
    path: &Path,
    entries: &[TensorEntry],
    metadata: &Map<String, Value>,
    chunks: &[&[u8]],
) -> Result<()> {
    let data_len: usize = chunks.iter().map(|c| c.len()).sum();
    let described = entries.last().map_or(0, |e| e.data_offsets.1);
    assert_eq!(
        data_len, described,
        "invariant: data chunks tile the described data section"
    );
    let file = std::fs::File::create(path).map_err(IoError::at("creating", path))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    w.write_all(&encode_header(entries, metadata))
        .map_err(IoError::at("writing", path))?;
    for chunk in chunks {
        w.write_all(chunk).map_err(IoError::at("writing", path))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| IoError::at("writing", path)(e.into_error()))?;
    file.sync_all().map_err(IoError::at("syncing", path))?;
    Ok(())
}

/// A safetensors file's parsed header: where the data section starts and every tensor, in data order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsHeader {
    /// Byte offset of the data section in the file (`8 + header length`).
    pub data_start: u64,
    /// The tensors sorted by `data_offsets`.
    pub entries: Vec<TensorEntry>,
    /// `__metadata__`, if any.
    pub metadata: Map<String, Value>,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Reads only the header of the safetensors file at `path` and checks it: known dtypes, byte
/// lengths matching dtype × shape, tensors tiling the data section exactly, and a data section
/// that ends where the file ends.
pub fn read_header(path: &Path) -> Result<SafetensorsHeader> {
    use std::io::Read;
    let bad = |message: String| IoError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(IoError::at("opening", path))?;
    let file_len = file
        .metadata()
        .map_err(IoError::at("reading metadata of", path))?
        .len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| bad("shorter than the 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > 100_000_000 || 8 + header_len > file_len {
        return Err(bad(format!(
            "header length {header_len} does not fit the file ({file_len} bytes)"
        )));
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact(&mut json).map_err(IoError::at("reading", path))?;
    let mut map: Map<String, Value> =
        serde_json::from_slice(&json).map_err(|e| bad(format!("header JSON: {e}")))?;
    let metadata = match map.remove("__metadata__") {
        Some(Value::Object(m)) => m,
        Some(other) => return Err(bad(format!("__metadata__ is not an object: {other}"))),
        None => Map::new(),
    };
    let mut entries = Vec::with_capacity(map.len());
    for (name, value) in map {
        let raw: RawEntry =
            serde_json::from_value(value).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        let [begin, end] = raw.data_offsets;
        let expected = tensor_byte_len(raw.dtype, &raw.shape);
        if end < begin || Some(end - begin) != expected {
            return Err(bad(format!(
                "tensor `{name}`: {:?} {:?} needs {expected:?} bytes, data_offsets say [{begin}, {end})",
                raw.dtype, raw.shape
            )));
        }
        entries.push(TensorEntry {
            name,
            dtype: raw.dtype,
            shape: raw.shape,
            data_offsets: (begin, end),
        });
    }
    entries.sort_by_key(|e| e.data_offsets);
    let mut at = 0;
    for e in &entries {
        if e.data_offsets.0 != at {
            return Err(bad(format!(
                "tensor `{}` starts at {} but the previous tensor ends at {at}: tensors must tile the data",
                e.name, e.data_offsets.0
            )));
        }
        at = e.data_offsets.1;
    }
    let data_start = 8 + header_len;
    if data_start + at as u64 != file_len {
        return Err(bad(format!(
            "the tensors cover {at} data bytes but the file holds {}",
            file_len - data_start
        )));
    }
    Ok(SafetensorsHeader {
        data_start,
        entries,
        metadata,
    })
}
