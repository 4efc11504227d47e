//! Writing GGUF v3: header, metadata, tensor infos, then the data section, every tensor padded
//! to the alignment (as gguf-py's `GGUFWriter`).
//!
//! Tensors are planned first (name, shape, type: enough to compute every offset) and their bytes
//! are produced one at a time while writing, so a model never has to fit in memory twice.
//! [`GgufWriter::write_file`] writes to a hidden temporary file next to the output and renames it
//! only once complete, so an interrupted export leaves no output file behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};
use crate::file::DEFAULT_ALIGNMENT;
use crate::ggml_type::GgmlType;
use crate::metadata::MetadataValue;

/// A tensor the writer will store: its GGUF name, PyTorch shape and storage type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTensor {
    /// The GGUF name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Row-major (PyTorch) shape, e.g. `[out, in]`; written to the file reversed (ne\[0\] first).
    pub shape: Vec<usize>,
    /// Storage type.
    pub ggml_type: GgmlType,
}

impl PlannedTensor {
    /// Size of the stored data in bytes.
    pub fn n_bytes(&self) -> u64 {
        let (block, bytes) = self.ggml_type.block_geometry();
        self.shape.iter().product::<usize>() as u64 / block * bytes
    }
}

/// A GGUF file being assembled: metadata in insertion order, then tensors in insertion order.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<PlannedTensor>,
    alignment: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn round_up(n: u64, alignment: u64) -> u64 {
    n.div_ceil(alignment) * alignment
}

impl GgufWriter {
    /// An empty file with the default 32-byte alignment.
    pub fn new() -> Self {
        Self {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Sets `key` (replacing an earlier value in place).
    pub fn set(&mut self, key: impl Into<String>, value: MetadataValue) {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// The metadata so far, in order.
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.metadata
    }

    /// The tensors planned so far, in order.
    pub fn tensors(&self) -> &[PlannedTensor] {
        &self.tensors
    }

    /// Plans a tensor. Its row length (last axis) must be a whole number of `ggml_type` blocks,
    /// and its name must be new.
    pub fn add_tensor(&mut self, tensor: PlannedTensor) -> std::result::Result<(), String> {
        let (block, _) = tensor.ggml_type.block_geometry();
        let row = tensor.shape.last().copied().unwrap_or(1) as u64;
        if !row.is_multiple_of(block) {
            return Err(format!(
                "tensor `{}` has rows of {row} values, not a multiple of the {} block size {block}",
                tensor.name, tensor.ggml_type
            ));
        }
        if self.tensors.iter().any(|t| t.name == tensor.name) {
            return Err(format!("tensor `{}` is planned twice", tensor.name));
        }
        self.tensors.push(tensor);
        Ok(())
    }

    /// Writes the whole file to `out`; `data` yields each planned tensor's bytes in turn.
    /// `file` names the destination in errors.
    pub fn write_to<W: Write>(
        &self,
        out: &mut W,
        file: &Path,
        mut data: impl FnMut(&PlannedTensor) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let io = |source| GgufError::Io {
            file: file.to_path_buf(),
            source,
        };
        let mut head = Vec::new();
        head.extend_from_slice(b"GGUF");
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut head, key);
            head.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut head, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut head, &t.name);
            head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in t.shape.iter().rev() {
                head.extend_from_slice(&(d as u64).to_le_bytes());
            }
            head.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offset += round_up(t.n_bytes(), self.alignment);
        }
        head.resize(round_up(head.len() as u64, self.alignment) as usize, 0);
        out.write_all(&head).map_err(io)?;
        for t in &self.tensors {
            let bytes = data(t)?;
            if bytes.len() as u64 != t.n_bytes() {
                return Err(GgufError::Export {
                    file: file.to_path_buf(),
                    what: format!(
                        "tensor `{}` produced {} bytes, expected {}",
                        t.name,
                        bytes.len(),
                        t.n_bytes()
                    ),
                });
            }
            out.write_all(&bytes).map_err(io)?;
            let pad = round_up(t.n_bytes(), self.alignment) - t.n_bytes();
            out.write_all(&vec![0u8; pad as usize]).map_err(io)?;
        }
        out.flush().map_err(io)
    }

    /// Writes the file to `path` atomically: into `.NAME.partial` beside it, then renamed.
    /// Refuses an existing `path` unless `overwrite`.
    pub fn write_file(
        &self,
        path: &Path,
        overwrite: bool,
        data: impl FnMut(&PlannedTensor) -> Result<Vec<u8>>,
    ) -> Result<()> {
        check_output(path, overwrite)?;
        let partial = partial_path(path);
        let io = |source| GgufError::Io {
            file: partial.clone(),
            source,
        };
        let result = (|| {
            let file = std::fs::File::create(&partial).map_err(io)?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            self.write_to(&mut out, path, data)?;
            let file = out.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)?;
            std::fs::rename(&partial, path).map_err(|source| GgufError::Io {
                file: path.to_path_buf(),
                source,
            })
        })();
        if result.is_err() {
            // Best effort: the partial file is hidden and named after the output.
            let _ = std::fs::remove_file(&partial);
        }
        result
    }
}

/// Fails with [`GgufError::OutputExists`] when `path` exists and `overwrite` is false.
pub fn check_output(path: &Path, overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(GgufError::OutputExists {
            file: path.to_path_buf(),
        });
    }
    Ok(())
}

/// `dir/.NAME.partial` for `dir/NAME`.
fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.gguf".to_string());
    path.with_file_name(format!(".{name}.partial"))
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetadataValue) {
    match value {
        MetadataValue::U8(v) => out.push(*v),
        MetadataValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(u8::from(*v)),
        MetadataValue::String(s) => put_string(out, s),
        MetadataValue::Array(elem, items) => {
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| put_value(out, item));
        }
        MetadataValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}
