//! A streaming writer of sharded safetensors checkpoints, laid out like transformers'
//! `save_pretrained`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dtype::{Dtype, cast_f32_into};
use crate::error::{IoError, Result};
use crate::safetensors::{
    TensorEntry, check_tensor_name, pt_metadata, tensor_byte_len, write_safetensors_file,
};
use crate::staging::{Overwrite, StagingDir};

/// File name of an unsharded checkpoint.
pub const SINGLE_FILE_NAME: &str = "model.safetensors";
/// File name of the shard index.
pub const INDEX_FILE_NAME: &str = "model.safetensors.index.json";

/// Writes tensors into `model-0000k-of-0000N.safetensors` shards of at most `max_shard_bytes` of
/// tensor data each, plus `model.safetensors.index.json`; or a single `model.safetensors` when
/// everything fits one shard.
///
/// Sharding follows huggingface_hub's `split_torch_state_dict_into_shards`: tensors keep the order
/// they are added in; a tensor that would push the current shard past the limit starts a new one, and
/// a tensor larger than the limit gets a shard of its own. Only the current shard is held in memory:
/// each full shard is written at once under a temporary name (the final `-of-0000N` is known only at
/// [`ShardedWriter::finish`]). Everything goes into a hidden staging folder renamed onto the output at
/// the end, so an interrupted export leaves nothing that looks complete. Other files of the export
/// (config, tokenizer) can be written into [`ShardedWriter::staging_dir`] before `finish`.
///
/// ```
/// use ft_io::{Dtype, ShardedWriter};
/// let dir = tempfile::tempdir().unwrap();
/// let mut w = ShardedWriter::new(dir.path().join("out"), 2_000_000_000).unwrap();
/// w.add_f32("model.norm.weight", &[4], &[1.0; 4], Dtype::BF16).unwrap();
/// let summary = w.finish().unwrap();
/// assert_eq!(summary.shard_files, ["model.safetensors"]);
/// ```
#[derive(Debug)]
pub struct ShardedWriter {
    staging: StagingDir,
    max_shard_bytes: u64,
    current: ShardBuffer,
    written: Vec<Vec<String>>,
    names: HashSet<String>,
    total_size: u64,
    total_parameters: u64,
}

/// What [`ShardedWriter::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The output folder.
    pub out_dir: PathBuf,
    /// Weight file names in order (`["model.safetensors"]` when unsharded).
    pub shard_files: Vec<String>,
    /// Sum of all tensors' bytes (the index's `metadata.total_size`).
    pub total_size: u64,
    /// Sum of all tensors' element counts (the index's `metadata.total_parameters`).
    pub total_parameters: u64,
}

#[derive(Debug, Default)]
struct ShardBuffer {
    entries: Vec<TensorEntry>,
    data: Vec<u8>,
}

#[derive(Serialize)]
struct ShardIndex<'a> {
    metadata: IndexMetadata,
    weight_map: BTreeMap<&'a str, String>,
}

#[derive(Serialize)]
struct IndexMetadata {
    total_parameters: u64,
    total_size: u64,
}

impl ShardedWriter {
    /// Starts an export into `out_dir`, which must not exist yet.
    pub fn new(out_dir: impl AsRef<Path>, max_shard_bytes: u64) -> Result<Self> {
        Self::with_overwrite(out_dir, max_shard_bytes, Overwrite::Refuse)
    }

    /// Starts an export into `out_dir`; with [`Overwrite::Replace`] an existing folder is replaced
    /// at [`ShardedWriter::finish`].
    pub fn with_overwrite(
        out_dir: impl AsRef<Path>,
        max_shard_bytes: u64,
        overwrite: Overwrite,
    ) -> Result<Self> {
        if max_shard_bytes == 0 {
            return Err(IoError::ZeroShardSize);
        }
        Ok(Self {
            staging: StagingDir::new(out_dir, overwrite)?,
            max_shard_bytes,
            current: ShardBuffer::default(),
            written: Vec::new(),
            names: HashSet::new(),
            total_size: 0,
            total_parameters: 0,
        })
    }

    /// The hidden folder being written; it becomes the output folder at [`ShardedWriter::finish`].
    pub fn staging_dir(&self) -> &Path {
        self.staging.path()
    }

    /// Adds a tensor given as raw little-endian bytes of `dtype`.
    ///
    /// # Shapes
    /// - `bytes.len()` must equal `shape.iter().product() * dtype.size_bytes()`.
    pub fn add(&mut self, name: &str, dtype: Dtype, shape: &[usize], bytes: &[u8]) -> Result<()> {
        let len = self.check_new(name, dtype, shape)?;
        if len != bytes.len() {
            return Err(IoError::ByteLength {
                name: name.to_string(),
                dtype,
                shape: shape.to_vec(),
                expected: len,
                found: bytes.len(),
            });
        }
        self.place(name, dtype, shape, len, Payload::Bytes(bytes))
    }

    /// Adds f32 values cast to `dtype` (F32, F64, or F16/BF16 with round-to-nearest-even).
    ///
    /// # Shapes
    /// - `values.len()` must equal `shape.iter().product()`.
    pub fn add_f32(&mut self, name: &str, shape: &[usize], values: &[f32], dtype: Dtype) -> Result<()> {
        if !dtype.is_float() {
            return Err(IoError::UnsupportedCast {
                name: name.to_string(),
                dtype,
            });
        }
        let len = self.check_new(name, dtype, shape)?;
        let found = values.len() * dtype.size_bytes();
        if len != found {
            return Err(IoError::ByteLength {
                name: name.to_string(),
                dtype,
                shape: shape.to_vec(),
                expected: len,
                found,
            });
        }
        self.place(name, dtype, shape, len, Payload::Cast(values))
    }

    /// Writes the last shard, renames shards to their final names, writes the index when there is
    /// more than one shard, and moves the folder into place.
    pub fn finish(mut self) -> Result<ExportSummary> {
        if !self.current.entries.is_empty() || self.written.is_empty() {
            self.flush()?;
        }
        let n = self.written.len();
        let dir = self.staging.path().to_path_buf();
        let shard_files: Vec<String> = if n == 1 {
            vec![SINGLE_FILE_NAME.to_string()]
        } else {
            (1..=n)
                .map(|k| format!("model-{k:05}-of-{n:05}.safetensors"))
                .collect()
        };
        for (k, final_name) in shard_files.iter().enumerate() {
            let from = dir.join(temp_shard_name(k + 1));
            std::fs::rename(&from, dir.join(final_name)).map_err(IoError::at("renaming", &from))?;
        }
        if n > 1 {
            let weight_map = self
                .written
                .iter()
                .zip(&shard_files)
                .flat_map(|(names, file)| names.iter().map(move |name| (name.as_str(), file.clone())))
                .collect();
            let index = ShardIndex {
                metadata: IndexMetadata {
                    total_parameters: self.total_parameters,
                    total_size: self.total_size,
                },
                weight_map,
            };
            let mut json = serde_json::to_string_pretty(&index).expect("invariant: index serialises");
            json.push('\n');
            let path = dir.join(INDEX_FILE_NAME);
            std::fs::write(&path, json).map_err(IoError::at("writing", &path))?;
        }
        let out_dir = self.staging.commit()?;
        Ok(ExportSummary {
            out_dir,
            shard_files,
            total_size: self.total_size,
            total_parameters: self.total_parameters,
        })
    }

    fn check_new(&mut self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<usize> {
        check_tensor_name(name)?;
        if self.names.contains(name) {
            return Err(IoError::DuplicateTensor {
                name: name.to_string(),
            });
        }
        tensor_byte_len(dtype, shape).ok_or_else(|| IoError::ByteLength {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            expected: usize::MAX,
            found: 0,
        })
    }

    /// Places a validated tensor of `len` bytes: an oversized one is written to a shard of its own;
    /// otherwise its bytes go into the current shard, flushed first if they would overflow it.
    fn place(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        len: usize,
        payload: Payload,
    ) -> Result<()> {
        let entry = |begin: usize| TensorEntry {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            data_offsets: (begin, begin + len),
        };
        if len as u64 > self.max_shard_bytes {
            if !self.current.entries.is_empty() {
                self.flush()?;
            }
            let path = self.staging.path().join(temp_shard_name(self.written.len() + 1));
            let cast;
            let bytes = match payload {
                Payload::Bytes(bytes) => bytes,
                Payload::Cast(values) => {
                    cast = payload_bytes(values, dtype, len);
                    &cast
                }
            };
            write_safetensors_file(&path, &[entry(0)], &pt_metadata(), &[bytes])?;
            self.written.push(vec![name.to_string()]);
        } else {
            if (self.current.data.len() + len) as u64 > self.max_shard_bytes {
                self.flush()?;
            }
            if self.current.data.capacity() == 0 {
                // Reserve the whole shard once: growing by doubling would copy the buffer and hold
                // old + new (up to 1.5 × a shard) at once. The reservation is address space only;
                // pages count as memory once written.
                let reserve = usize::try_from(self.max_shard_bytes).unwrap_or(usize::MAX);
                self.current.data.reserve_exact(reserve.max(len));
            }
            let begin = self.current.data.len();
            match payload {
                Payload::Bytes(bytes) => self.current.data.extend_from_slice(bytes),
                Payload::Cast(values) => cast_f32_into(values, dtype, &mut self.current.data)
                    .expect("invariant: dtype is a float type"),
            }
            debug_assert_eq!(self.current.data.len(), begin + len);
            self.current.entries.push(entry(begin));
        }
        self.names.insert(name.to_string());
        self.total_size += len as u64;
        self.total_parameters += shape.iter().product::<usize>() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let shard = std::mem::take(&mut self.current);
        let path = self.staging.path().join(temp_shard_name(self.written.len() + 1));
        write_safetensors_file(&path, &shard.entries, &pt_metadata(), &[&shard.data])?;
        self.written
            .push(shard.entries.into_iter().map(|e| e.name).collect());
        Ok(())
    }
}

/// A tensor's data: raw bytes of its dtype, or f32 values to cast.
#[derive(Clone, Copy)]
enum Payload<'a> {
    Bytes(&'a [u8]),
    Cast(&'a [f32]),
}

fn payload_bytes(values: &[f32], dtype: Dtype, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    cast_f32_into(values, dtype, &mut out).expect("invariant: dtype is a float type");
    out
}

fn temp_shard_name(k: usize) -> String {
    format!("shard-{k:05}.safetensors.partial")
}
