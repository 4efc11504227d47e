//! The safetensors container: an 8-byte little-endian header length, a JSON header
//! padded with spaces so the data starts 8-byte aligned, then the tensors' bytes back to back.

use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

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

/// A safetensors file mapped into memory with its checked header: the one reader of safetensors
/// files (the model's loader and merge's header reads both go through it).
pub struct MappedSafetensors {
    /// The file.
    pub path: PathBuf,
    /// Its bytes (read-only map).
    pub bytes: Mmap,
    /// Its header.
    pub header: SafetensorsHeader,
}

impl std::fmt::Debug for MappedSafetensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedSafetensors")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl MappedSafetensors {
    /// Maps the file at `path` and checks its header (see [`read_header`]).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(IoError::at("opening", path))?;
        // SAFETY: the map is read-only, and ft never writes a weights file while reading it
        // (its writers write to a temporary name and rename).
        let bytes = unsafe { Mmap::map(&file) }.map_err(IoError::at("mapping", path))?;
        let header = parse_header(path, &bytes)?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            header,
        })
    }

    /// The bytes of `entry` (one of this file's header entries).
    pub fn tensor_bytes(&self, entry: &TensorEntry) -> &[u8] {
        let start = self.header.data_start as usize;
        &self.bytes[start + entry.data_offsets.0..start + entry.data_offsets.1]
    }
}

/// Reads the header of the safetensors file at `path` and checks it: known dtypes, byte lengths
/// matching dtype × shape, tensors tiling the data section exactly, and a data section that ends
/// where the file ends. The file is mapped, not read.
pub fn read_header(path: &Path) -> Result<SafetensorsHeader> {
    Ok(MappedSafetensors::open(path)?.header)
}

/// The header of `bytes` (the whole file), checked by the `safetensors` crate.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<SafetensorsHeader> {
    let bad = |message: String| IoError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let (header_len, metadata) = ::safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("truncated or corrupt ({e})")))?;
    let tensors = metadata.tensors();
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, info) in tensors {
        let dtype = Dtype::from_safetensors(info.dtype)
            .ok_or_else(|| bad(format!("tensor `{name}` has unsupported dtype {:?}", info.dtype)))?;
        entries.push(TensorEntry {
            name,
            dtype,
            shape: info.shape.clone(),
            data_offsets: info.data_offsets,
        });
    }
    entries.sort_by_key(|e| e.data_offsets);
    let metadata = metadata
        .metadata()
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        })
        .unwrap_or_default();
    Ok(SafetensorsHeader {
        data_start: 8 + header_len as u64,
        entries,
        metadata,
    })
}
