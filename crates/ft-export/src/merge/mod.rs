//! Folding a PEFT LoRA adapter into its base model, streaming one tensor at a time.
//!
//! For every adapted module `m` (base tensor `m.weight`, `[out, in]`): `W' = W + s·(B @ A)` in f32
//! with `s = α/r` (rsLoRA `α/√r`), cast once to the output dtype (round-to-nearest-even). For a
//! QLoRA adapter the base is first NF4-quantised and dequantised, so the merge is the model the
//! adapter was trained with. Every other tensor is copied (as raw bytes when its dtype is kept).
//!
//! Memory: base files are read tensor by tensor with positioned reads (only the headers are read up
//! front), and the output goes through [`ShardedWriter`], which holds one output shard. Peak memory
//! is about one output shard plus one tensor in f32, plus the adapter.
//!
//! ```no_run
//! use ft_export::merge::{MergeOptions, merge};
//! use std::path::Path;
//! let summary = merge(
//!     Path::new("internlm2-chat-1_8b"),
//!     Some(Path::new("work_dirs/adapter")),
//!     Path::new("merged"),
//!     &MergeOptions { extra_eos_ids: vec![92542], ..Default::default() },
//! )?;
//! println!("{} modules merged into {:?}", summary.merged_modules.len(), summary.export.shard_files);
//! # Ok::<(), ft_export::ExportError>(())
//! ```

mod delta;
mod llava;
mod quant;
mod side_files;

use std::path::Path;

use ft_io::peft::{Adapter, PEFT_KEY_PREFIX};

pub use delta::add_lora_delta;
pub use ft_io::json::read_json_object;
pub use llava::{LlavaMergeSummary, merge_llava};
pub use quant::{BaseQuantization, is_clip_nf4_quantised, is_nf4_quantised, nf4_round_trip};
pub use side_files::{TOKENIZER_FILES, copy_tokenizer_files, write_config, write_generation_config};

use crate::error::io_err;
use crate::{Dtype, ExportError, ExportSummary, Overwrite, Result, ShardedWriter};
use ft_io::hf_folder::HfFolder;

/// transformers' and XTuner's default shard size, `"2GB"`.
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 2_000_000_000;

/// How to merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOptions {
    /// Output dtype of the float tensors (F32, F16 or BF16). `None` keeps the base dtype: the one
    /// `config.json` declares (`dtype` / `torch_dtype`), else the tensors' most common float dtype.
    pub dtype: Option<Dtype>,
    /// Maximum bytes of tensor data per output shard.
    pub max_shard_bytes: u64,
    /// Whether an existing output folder may be replaced (`--force`).
    pub overwrite: Overwrite,
    /// Whether the adapter was trained on an NF4 base (default: as `ft_adapter.json` records).
    pub base_quantization: BaseQuantization,
    /// Token ids appended to `generation_config.json`'s `eos_token_id` (the chat template's stop
    /// tokens, e.g. InternLM2 `<|im_end|>` = 92542).
    pub extra_eos_ids: Vec<u32>,
}

impl Default for MergeOptions {
    fn default() -> Self {
        Self {
            dtype: None,
            max_shard_bytes: DEFAULT_MAX_SHARD_BYTES,
            overwrite: Overwrite::Refuse,
            base_quantization: BaseQuantization::FromAdapter,
            extra_eos_ids: Vec::new(),
        }
    }
}

/// What [`merge`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSummary {
    /// The weight files written.
    pub export: ExportSummary,
    /// Base tensors the adapter changed, in output order.
    pub merged_tensors: Vec<String>,
    /// Adapted module names (sorted).
    pub merged_modules: Vec<String>,
    /// The output float dtype, when one applied to every float tensor.
    pub output_dtype: Option<Dtype>,
    /// `Some(double_quant)` when the base went through the NF4 round trip.
    pub nf4_base: Option<bool>,
    /// The new `eos_token_id` list of `generation_config.json`, when it was changed.
    pub eos_token_ids: Option<Vec<u64>>,
    /// Other files written next to the weights (`config.json`, tokenizer files, …).
    pub copied_files: Vec<String>,
}

/// Merges the adapter in `adapter_dir` (a PEFT LoRA folder) into the Hugging Face model in
/// `base_dir` and writes the result to `out_dir`; with no adapter it only re-shards / re-types.
///
/// Everything is checked before anything is written: the adapter's config and tensors, that every
/// adapted module has a `<module>.weight` in the base with the shape `[out, in]` of `B @ A`, and
/// the output dtype. The output appears only when complete (a hidden staging folder is renamed at
/// the end); it must not exist unless `options.overwrite` is [`Overwrite::Replace`].
pub fn merge(
    base_dir: &Path,
    adapter_dir: Option<&Path>,
    out_dir: &Path,
    options: &MergeOptions,
) -> Result<MergeSummary> {
    if let Some(dtype) = options.dtype
        && !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
    {
        return Err(ExportError::UnsupportedOutputDtype { dtype });
    }
    let base = HfFolder::open(base_dir)?;
    let adapter = adapter_dir
        .map(|dir| {
            Adapter::read(dir).map_err(|source| ExportError::Adapter {
                dir: dir.to_path_buf(),
                source,
            })
        })
        .transpose()?;
    if let Some(adapter) = &adapter {
        check_adapter_against_base(adapter, &base)?;
    }
    let nf4_base = options.base_quantization.resolve(adapter_dir)?;
    let output_dtype = output_dtype(options, &base)?;
    let scale = adapter.as_ref().map_or(0.0, |a| a.scale() as f32);

    let mut writer = ShardedWriter::with_overwrite(out_dir, options.max_shard_bytes, options.overwrite)?;
    let plan = MergePlan {
        adapter: adapter.as_ref(),
        nf4_base,
        quantised: is_nf4_quantised,
        output_dtype,
        scale,
    };
    let merged_tensors = plan.for_each_tensor(&base, |entry, dtype, payload| match payload {
        Payload::Raw(bytes) => Ok(writer.add(&entry.name, dtype, &entry.shape, &bytes)?),
        Payload::Values(values) => Ok(writer.add_f32(&entry.name, &entry.shape, &values, dtype)?),
    })?;

    let staging = writer.staging_dir().to_path_buf();
    let mut copied_files = Vec::new();
    if let Some(config) = &base.config {
        side_files::write_config(config, output_dtype, &staging)?;
        copied_files.push("config.json".to_string());
    }
    let eos_token_ids = side_files::write_generation_config(
        base_dir,
        base.config.as_ref(),
        &options.extra_eos_ids,
        &staging,
    )?;
    if staging.join("generation_config.json").exists() {
        copied_files.push("generation_config.json".to_string());
    }
    copied_files.extend(side_files::copy_tokenizer_files(base_dir, &staging)?);
    let export = writer.finish()?;
    Ok(MergeSummary {
        export,
        merged_tensors,
        merged_modules: adapter
            .map(|a| a.weights.modules.into_keys().collect())
            .unwrap_or_default(),
        output_dtype,
        nf4_base,
        eos_token_ids,
        copied_files,
    })
}

/// A base tensor as it leaves the merge: its bytes unchanged, or its values in f32 (merged,
/// round-tripped or to be cast).
pub(crate) enum Payload {
    /// Bytes in the tensor's own dtype (nothing to change).
    Raw(Vec<u8>),
    /// f32 values, to write in the output dtype.
    Values(Vec<f32>),
}

/// How each base tensor is merged.
pub(crate) struct MergePlan<'a> {
    /// The adapter folded in, if any.
    pub adapter: Option<&'a Adapter>,
    /// NF4 round trip of the quantised tensors (QLoRA), with double quantisation or not.
    pub nf4_base: Option<bool>,
    /// Which tensors were NF4 in training ([`is_nf4_quantised`] for an LLM).
    pub quantised: fn(&str, &[usize]) -> bool,
    /// Output dtype of the float tensors (`None`: each tensor's own).
    pub output_dtype: Option<Dtype>,
    /// The adapter's scale.
    pub scale: f32,
}

impl MergePlan<'_> {
    /// Reads every tensor of `base` in order, merges it, and hands it to `emit` with its output
    /// dtype; returns the names of the tensors an adapter changed.
    pub(crate) fn for_each_tensor(
        &self,
        base: &HfFolder,
        mut emit: impl FnMut(&ft_io::safetensors::TensorEntry, Dtype, Payload) -> Result<()>,
    ) -> Result<Vec<String>> {
        let mut merged_tensors = Vec::new();
        for file in &base.files {
            let mut handle = std::fs::File::open(&file.path).map_err(io_err("opening", &file.path))?;
            for entry in &file.header.entries {
                let pair = self.adapter.and_then(|a| {
                    let module = entry.name.strip_suffix(".weight")?;
                    a.weights.modules.get(module)
                });
                let round_trip = self
                    .nf4_base
                    .filter(|_| (self.quantised)(&entry.name, &entry.shape));
                let out_dtype = match self.output_dtype {
                    Some(d) if entry.dtype.is_float() => d,
                    _ => entry.dtype,
                };
                if pair.is_none() && round_trip.is_none() && out_dtype == entry.dtype {
                    emit(
                        entry,
                        entry.dtype,
                        Payload::Raw(file.read_tensor(&mut handle, entry)?),
                    )?;
                    continue;
                }
                let mut values =
                    file.read_tensor_f32(&mut handle, entry)?
                        .ok_or_else(|| ExportError::NotFloat {
                            name: entry.name.clone(),
                            dtype: entry.dtype,
                        })?;
                if let Some(double_quant) = round_trip {
                    nf4_round_trip(&entry.name, &mut values, &entry.shape, double_quant)?;
                }
                if let Some(pair) = pair {
                    add_lora_delta(&mut values, pair, self.scale);
                    merged_tensors.push(entry.name.clone());
                }
                emit(entry, out_dtype, Payload::Values(values))?;
            }
        }
        Ok(merged_tensors)
    }
}

/// The output dtype: the one asked for, else the one the base's `config.json` declares (typed:
/// `dtype`, else `torch_dtype`), else the tensors' most common float dtype.
pub(crate) fn output_dtype(options: &MergeOptions, base: &HfFolder) -> Result<Option<Dtype>> {
    if options.dtype.is_some() {
        return Ok(options.dtype);
    }
    let declared = base.hf_config()?.and_then(|config| config.storage_dtype());
    Ok(declared.or_else(|| base.tensor_dtype()))
}

/// Every adapted module must have a float `<module>.weight` of shape `[out, in]` in the base.
pub(crate) fn check_adapter_against_base(adapter: &Adapter, base: &HfFolder) -> Result<()> {
    for (module, pair) in &adapter.weights.modules {
        let tensor = format!("{module}.weight");
        let Some(entry) = base.entry(&tensor) else {
            return Err(ExportError::AdapterModuleMissing {
                module: module.clone(),
                key: format!("{PEFT_KEY_PREFIX}{module}.lora_A.weight"),
            });
        };
        let delta = [pair.out_features(), pair.in_features()];
        if entry.shape != delta {
            return Err(ExportError::AdapterShapeMismatch {
                tensor,
                base: entry.shape.clone(),
                delta,
                a: pair.a.shape,
                b: pair.b.shape,
            });
        }
        if !entry.dtype.is_float() {
            return Err(ExportError::NotFloat {
                name: tensor,
                dtype: entry.dtype,
            });
        }
    }
    Ok(())
}
