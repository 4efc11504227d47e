//! A model as a Hugging Face folder (safetensors, sharded past 2 GB, with
//! `model.safetensors.index.json`), `config.json` and the base's tokenizer files, so
//! `transformers`, `ft chat` and `ft merge` read it as they read any model: full fine-tuning
//! checkpoints (f32) and `ft convert hf` of a GGUF file.
//!
//! Weights are saved in f32 (what the CPU trains in, and lossless for bf16 runs), which keeps
//! `--resume` exact; `ft merge CHECKPOINT OUT --dtype bf16` re-types a folder for release.

use ft_model::KernelBackend;
use std::path::{Path, PathBuf};

use ft_export::merge::{
    DEFAULT_MAX_SHARD_BYTES, copy_tokenizer_files, read_json_object, write_config, write_generation_config,
};
use ft_export::{Dtype, Overwrite, ShardedWriter};
use ft_model::named::{named_weight, weight_names};
use ft_model::weights::{SafetensorsSource, load_weights};
use ft_model::{CausalLm, ModelConfig};
use serde_json::{Map, Value};

use crate::error::{Result, TrainError};

/// Where the files beside the weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum BaseFiles {
    /// A Hugging Face folder: its `config.json` (dtype set to float32), `generation_config.json`
    /// and tokenizer files are copied.
    Folder(PathBuf),
    /// Files made by the caller (e.g. from a GGUF base): `config.json`'s object and other files
    /// by name (`tokenizer.json`, `tokenizer_config.json`, …).
    Generated {
        /// The `config.json` object.
        config: Map<String, Value>,
        /// Other files: name and contents.
        files: Vec<(String, Vec<u8>)>,
    },
}

/// Writes the model's weights in `dtype` (f32 for checkpoints) and the base's side files into
/// `dir`, which must exist and be empty (a temporary folder, renamed when complete).
pub fn write_model_folder<B: KernelBackend>(
    model: &CausalLm<B>,
    config: &ModelConfig,
    base: &BaseFiles,
    dir: &Path,
    dtype: Dtype,
) -> Result<()> {
    // The writer stages its own hidden folder and replaces `dir` with it when done.
    let mut writer = ShardedWriter::with_overwrite(dir, DEFAULT_MAX_SHARD_BYTES, Overwrite::Replace)?;
    for name in weight_names(config) {
        let weight = named_weight(model, config, &name).ok_or_else(|| {
            TrainError::Training(format!(
                "`{name}` is not a dense weight (NF4 bases cannot be saved)"
            ))
        })?;
        let host = weight.to_host();
        writer.add_f32(&name, &host.shape, &host.data, dtype)?;
    }
    writer.finish()?;
    match base {
        BaseFiles::Folder(base_dir) => {
            let config = read_json_object(&base_dir.join("config.json"))?;
            write_config(&config, Some(dtype), dir)?;
            write_generation_config(base_dir, Some(&config), &[], dir)?;
            copy_tokenizer_files(base_dir, dir)?;
        }
        BaseFiles::Generated { config, files } => {
            write_config(config, Some(dtype), dir)?;
            for (name, bytes) in files {
                let to = dir.join(name);
                std::fs::write(&to, bytes).map_err(|e| TrainError::io(&to, e))?;
            }
        }
    }
    Ok(())
}

/// Loads the weights of a full-model checkpoint into `model` (for `--resume`).
pub fn read_model_folder<B: KernelBackend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    dir: &Path,
) -> Result<()> {
    let source = SafetensorsSource::open_dir(dir).map_err(|e| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    load_weights(model, config, &source).map_err(|e| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })
}
