//! A Hugging Face model folder opened for streaming: its safetensors weight files (sharded with
//! `model.safetensors.index.json`, or a single `model.safetensors`), their checked headers, and
//! `config.json`. Tensors are read one at a time with positioned reads (no mmap), so a merge or an
//! export holds one tensor, never the whole model.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::dtype::{Dtype, extend_decoded_f32};
use crate::error::{IoError, Result};
use crate::hf_config::{CONFIG_FILE, HfConfig};
use crate::json::read_json_object;
use crate::safetensors::{SafetensorsHeader, TensorEntry, read_header};
use crate::sharded::{INDEX_FILE_NAME, SINGLE_FILE_NAME};

/// One weight file and its header.
#[derive(Debug)]
pub struct WeightFile {
    pub path: PathBuf,
    pub header: SafetensorsHeader,
}

impl WeightFile {
    /// Reads one tensor's bytes (a positioned read: nothing else of the file is loaded).
    pub fn read_tensor(&self, file: &mut std::fs::File, entry: &TensorEntry) -> Result<Vec<u8>> {
        let (begin, end) = entry.data_offsets;
        let mut bytes = vec![0u8; end - begin];
        file.seek(SeekFrom::Start(self.header.data_start + begin as u64))
            .map_err(IoError::at("seeking in", &self.path))?;
        file.read_exact(&mut bytes)
            .map_err(IoError::at("reading", &self.path))?;
        Ok(bytes)
    }

    /// Reads one float tensor decoded to f32, in 1 MiB chunks (no full-size byte copy is held);
    /// `None` when the tensor is not F32/F16/BF16/F64.
    pub fn read_tensor_f32(&self, file: &mut std::fs::File, entry: &TensorEntry) -> Result<Option<Vec<f32>>> {
        if !entry.dtype.is_float() {
            return Ok(None);
        }
        let (begin, end) = entry.data_offsets;
        file.seek(SeekFrom::Start(self.header.data_start + begin as u64))
            .map_err(IoError::at("seeking in", &self.path))?;
        let mut values = Vec::with_capacity((end - begin) / entry.dtype.size_bytes());
        let mut chunk = vec![0u8; READ_CHUNK_BYTES.min(end - begin)];
        let mut left = end - begin;
        while left > 0 {
            let n = left.min(chunk.len());
            file.read_exact(&mut chunk[..n])
                .map_err(IoError::at("reading", &self.path))?;
            extend_decoded_f32(&chunk[..n], entry.dtype, &mut values).expect("invariant: float dtype");
            left -= n;
        }
        Ok(Some(values))
    }
}

/// Chunk size of [`WeightFile::read_tensor_f32`] (a multiple of every element size).
const READ_CHUNK_BYTES: usize = 1 << 20;

/// A Hugging Face model folder opened for merging or export: only headers are read up front.
#[derive(Debug)]
pub struct HfFolder {
    /// Weight files in order (shard 1, 2, …).
    pub files: Vec<WeightFile>,
    /// Tensor name → (file index, entry index).
    by_name: HashMap<String, (usize, usize)>,
    /// `config.json`, when present, as it is (kept whole for writers that copy it through; typed
    /// reads go through [`HfFolder::hf_config`]).
    pub config: Option<Map<String, Value>>,
    /// The folder.
    dir: PathBuf,
}

impl HfFolder {
    /// Opens `dir`: `model.safetensors.index.json` and the shards it names, or `model.safetensors`.
    pub fn open(dir: &Path) -> Result<Self> {
        let listed = WeightFiles::of(dir)?;
        let files: Vec<WeightFile> = listed
            .paths
            .iter()
            .map(|p| open_weight_file(p))
            .collect::<Result<_>>()?;
        if let Some((index_path, weight_map)) = &listed.index {
            for (name, shard) in weight_map {
                let shard = shard.as_str().expect("invariant: checked by WeightFiles::of");
                let k = listed
                    .paths
                    .iter()
                    .position(|p| p == &dir.join(shard))
                    .expect("invariant: listed");
                if !files[k].header.entries.iter().any(|e| &e.name == name) {
                    return Err(IoError::IndexMismatch {
                        index: index_path.clone(),
                        name: name.clone(),
                        shard: shard.to_string(),
                    });
                }
            }
        }
        let mut by_name = HashMap::new();
        for (f, file) in files.iter().enumerate() {
            for (e, entry) in file.header.entries.iter().enumerate() {
                by_name.insert(entry.name.clone(), (f, e));
            }
        }
        let config_path = dir.join(CONFIG_FILE);
        let config = if config_path.exists() {
            Some(read_json_object(&config_path)?)
        } else {
            None
        };
        Ok(Self {
            files,
            by_name,
            config,
            dir: dir.to_path_buf(),
        })
    }

    /// The header entry of tensor `name`.
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        let &(f, e) = self.by_name.get(name)?;
        Some(&self.files[f].header.entries[e])
    }

    /// `config.json` typed as a decoder LLM's ([`HfConfig`]), when present; an error names the
    /// file and the key.
    pub fn hf_config(&self) -> Result<Option<HfConfig>> {
        self.config
            .as_ref()
            .map(|config| HfConfig::from_value(&self.dir.join(CONFIG_FILE), Value::Object(config.clone())))
            .transpose()
    }

    /// The most common float dtype among the tensors (by element count), if any.
    pub fn tensor_dtype(&self) -> Option<Dtype> {
        let mut counts: HashMap<Dtype, u64> = HashMap::new();
        for e in self.files.iter().flat_map(|f| &f.header.entries) {
            if e.dtype.is_float() {
                *counts.entry(e.dtype).or_default() += e.shape.iter().product::<usize>() as u64;
            }
        }
        counts.into_iter().max_by_key(|&(_, n)| n).map(|(d, _)| d)
    }
}

fn open_weight_file(path: &Path) -> Result<WeightFile> {
    Ok(WeightFile {
        path: path.to_path_buf(),
        header: read_header(path)?,
    })
}

/// Which files hold a model folder's weights: the one place that decides it for every reader.
#[derive(Debug)]
pub struct WeightFiles {
    /// The weight files: the shards `model.safetensors.index.json` names, sorted, or
    /// `model.safetensors`.
    pub paths: Vec<PathBuf>,
    /// The index file and its `weight_map` (tensor name → shard file name), for sharded folders.
    pub index: Option<(PathBuf, Map<String, Value>)>,
}

impl WeightFiles {
    /// Lists the weight files of `dir`; an index whose `weight_map` is missing or names a shard
    /// with a non-string is an error naming the index.
    pub fn of(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE_NAME);
        if !index_path.exists() {
            let single = dir.join(SINGLE_FILE_NAME);
            if !single.exists() {
                return Err(IoError::NoWeights {
                    dir: dir.to_path_buf(),
                });
            }
            return Ok(Self {
                paths: vec![single],
                index: None,
            });
        }
        let mut index = read_json_object(&index_path)?;
        let Some(Value::Object(weight_map)) = index.remove("weight_map") else {
            return Err(IoError::Json {
                path: index_path,
                message: "no `weight_map` object".into(),
            });
        };
        let mut shard_names: Vec<&str> = Vec::new();
        for (name, shard) in &weight_map {
            let shard = shard.as_str().ok_or_else(|| IoError::Json {
                path: index_path.clone(),
                message: format!("weight_map[`{name}`] is not a file name"),
            })?;
            if !shard_names.contains(&shard) {
                shard_names.push(shard);
            }
        }
        shard_names.sort_unstable();
        let paths = shard_names.iter().map(|s| dir.join(s)).collect();
        Ok(Self {
            paths,
            index: Some((index_path, weight_map)),
        })
    }
}
