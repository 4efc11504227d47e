//! Hugging Face Llama-family folder → GGUF v3, as llama.cpp's `convert_hf_to_gguf.py` writes it.
//!
//! - Names: `model.layers.N.self_attn.q_proj.weight` → `blk.N.attn_q.weight` (see [`crate::gguf_name`]).
//! - Llama/Mistral q and k rows are permuted ([`crate::permute_rows`]) for llama.cpp's
//!   interleaved RoPE; Qwen2 (NeoX RoPE) is written unpermuted, with its q/k/v biases.
//! - Types: 1-D tensors, norms and biases are always F32; 2-D weights take the requested type,
//!   and a Q8_0 weight whose rows are not a multiple of 32 falls back to F16.
//! - The weights come through [`HfTensors`], so this crate does not read safetensors itself.

use std::path::Path;

use crate::error::{GgufError, Result};
use crate::export_config::HfHyperParams;
use crate::export_tokenizer::export_tokenizer;
use crate::ggml_type::GgmlType;
use crate::llama::{gguf_name, permute_rows};
use crate::metadata::MetadataValue;
use crate::quantize::{Q8_0_BLOCK, quantize};
use crate::writer::{GgufWriter, PlannedTensor, check_output};

/// The storage type of the exported 2-D weights (`general.file_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum OutType {
    /// Everything f32 (file type 0).
    F32,
    /// 2-D weights f16 (file type 1).
    F16,
    /// 2-D weights Q8_0 where rows allow, else f16 (file type 7).
    Q8_0,
}

impl OutType {
    /// llama.cpp's `LlamaFileType` id.
    pub fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 7,
        }
    }
}

/// Hugging Face tensors by name, in f32 (safetensors f32/bf16/f16 widened exactly).
pub trait HfTensors {
    /// Every tensor name.
    fn names(&self) -> Vec<String>;
    /// A tensor's PyTorch shape.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// A tensor's values, row-major; the error says what went wrong.
    fn read_f32(&self, name: &str) -> std::result::Result<Vec<f32>, String>;
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The HF architecture, e.g. `LlamaForCausalLM`.
    pub hf_architecture: String,
    /// `general.architecture`, e.g. `llama`.
    pub arch: String,
    /// The tensors written, in file order.
    pub tensors: Vec<PlannedTensor>,
    /// Whether tokenizer metadata was written (false: no `tokenizer.json` in the folder).
    pub has_tokenizer: bool,
}

/// Where a planned tensor's values come from.
enum Origin {
    /// An HF tensor, permuted with this many heads when set.
    Hf {
        name: String,
        permute_heads: Option<usize>,
    },
    /// Computed values (`rope_freqs.weight`).
    Values(Vec<f32>),
}

/// The llama.cpp storage type of a tensor.
fn storage_type(gguf: &str, shape: &[usize], out: OutType) -> GgmlType {
    if shape.len() <= 1 || gguf.ends_with("_norm.weight") || !gguf.ends_with(".weight") {
        return GgmlType::F32;
    }
    match out {
        OutType::F32 => GgmlType::F32,
        OutType::F16 => GgmlType::F16,
        OutType::Q8_0 if shape.last().is_some_and(|r| r % Q8_0_BLOCK == 0) => GgmlType::Q8_0,
        OutType::Q8_0 => GgmlType::F16,
    }
}

/// Sort key: token_embd, blocks in layer order (HF module order), output_norm, output.
fn order_key(gguf: &str) -> (usize, usize, String) {
    match gguf.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
        Some((layer, rest)) => (1, layer.parse().unwrap_or(usize::MAX), rest.to_string()),
        None if gguf.starts_with("token_embd") || gguf.starts_with("rope_freqs") => (0, 0, gguf.into()),
        None if gguf.starts_with("output_norm") => (2, 0, gguf.into()),
        None => (3, 0, gguf.into()),
    }
}

/// Plans the GGUF for the HF folder `dir` (config.json, tokenizer files) with weights from
/// `source`: every metadata key and tensor, and where each tensor's values come from.
fn plan(
    dir: &Path,
    source: &dyn HfTensors,
    out: OutType,
) -> Result<(GgufWriter, Vec<Origin>, HfHyperParams, bool)> {
    let hp = HfHyperParams::read(dir)?;
    let err = |what: String| GgufError::Export {
        file: dir.to_path_buf(),
        what,
    };
    let mut w = GgufWriter::new();
    w.set("general.architecture", MetadataValue::String(hp.arch.into()));
    w.set("general.type", MetadataValue::String("model".into()));
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    w.set("general.name", MetadataValue::String(name));
    w.set("general.file_type", MetadataValue::U32(out.file_type()));
    w.set("general.quantization_version", MetadataValue::U32(2));
    w.set(
        "general.alignment",
        MetadataValue::U32(crate::file::DEFAULT_ALIGNMENT as u32),
    );
    hp.write_metadata(&mut w);
    let has_tokenizer = export_tokenizer(dir, hp.vocab_size as usize, &mut w)?;

    let mut entries: Vec<(String, Vec<usize>, Origin)> = Vec::new();
    if let Some(freqs) = hp.rope_freqs() {
        entries.push((
            "rope_freqs.weight".into(),
            vec![freqs.len()],
            Origin::Values(freqs),
        ));
    }
    for hf in source.names() {
        if hf.ends_with(".rotary_emb.inv_freq") || (hf == "lm_head.weight" && hp.tie_word_embeddings) {
            continue;
        }
        let gguf = gguf_name(&hf).ok_or_else(|| {
            err(format!(
                "tensor `{hf}` has no GGUF name ({} has no such module)",
                hp.arch
            ))
        })?;
        let shape = source
            .shape(&hf)
            .ok_or_else(|| err(format!("tensor `{hf}` has no shape")))?;
        let permute_heads = match (hp.arch, gguf.split('.').nth(2)) {
            ("llama", Some("attn_q")) => Some(hp.heads as usize),
            ("llama", Some("attn_k")) => Some(hp.kv_heads as usize),
            _ => None,
        };
        if let Some(n) = permute_heads
            && (n == 0 || shape.first().is_none_or(|r| r % (2 * n) != 0))
        {
            return Err(err(format!(
                "tensor `{hf}` of shape {shape:?} does not split into {n} heads"
            )));
        }
        entries.push((
            gguf,
            shape,
            Origin::Hf {
                name: hf,
                permute_heads,
            },
        ));
    }
    entries.sort_by_key(|(gguf, _, _)| order_key(gguf));
    let mut origins = Vec::with_capacity(entries.len());
    for (gguf, shape, origin) in entries {
        let ggml_type = storage_type(&gguf, &shape, out);
        w.add_tensor(PlannedTensor {
            name: gguf,
            shape,
            ggml_type,
        })
        .map_err(err)?;
        origins.push(origin);
    }
    Ok((w, origins, hp, has_tokenizer))
}

/// Converts the HF folder `dir` (weights read through `source`) to the GGUF file `out`,
/// atomically; an existing `out` is refused unless `overwrite`.
pub fn export_gguf(
    dir: &Path,
    source: &dyn HfTensors,
    out: &Path,
    out_type: OutType,
    overwrite: bool,
) -> Result<ExportSummary> {
    check_output(out, overwrite)?;
    let (writer, origins, hp, has_tokenizer) = plan(dir, source, out_type)?;
    let mut next = origins.iter();
    writer.write_file(out, overwrite, |t| {
        let origin = next.next().expect("invariant: one origin per planned tensor");
        let values = match origin {
            Origin::Values(v) => v.clone(),
            Origin::Hf { name, permute_heads } => {
                let err = |what: String| GgufError::Export {
                    file: dir.to_path_buf(),
                    what: format!("tensor `{name}`: {what}"),
                };
                let v = source.read_f32(name).map_err(err)?;
                if v.len() != t.shape.iter().product::<usize>() {
                    return Err(err(format!("{} values for shape {:?}", v.len(), t.shape)));
                }
                match permute_heads {
                    Some(n) => {
                        let rows = t.shape[0];
                        permute_rows(&v, rows, v.len() / rows, *n)
                            .ok_or_else(|| err(format!("cannot split into {n} heads")))?
                    }
                    None => v,
                }
            }
        };
        Ok(quantize(t.ggml_type, &values).expect("invariant: storage_type only picks types quantize writes"))
    })?;
    Ok(ExportSummary {
        hf_architecture: hp.hf_architecture,
        arch: hp.arch.to_string(),
        tensors: writer.tensors().to_vec(),
        has_tokenizer,
    })
}
