//! QLoRA bases: the NF4 round trip that reproduces the weights a QLoRA adapter was trained on.

use std::path::Path;

use ft_io::nf4::Nf4Tensor;
use ft_io::peft::FT_ADAPTER_FILE;
use serde_json::Value;

use crate::error::io_err;
use crate::{ExportError, Result};

/// Whether the base weights the adapter was trained on were NF4-quantised (QLoRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BaseQuantization {
    /// As the adapter's `ft_adapter.json` records it (`"quantization": "nf4"`, optional
    /// `"double_quant"`, default true as in XTuner); dense when it records nothing or there is no
    /// adapter.
    #[default]
    FromAdapter,
    /// The base was used as it is (plain LoRA).
    Dense,
    /// QLoRA: every decoder-block linear weight was NF4 (blocks of 64), with or without double
    /// quantisation of the absmax.
    Nf4 { double_quant: bool },
}

impl BaseQuantization {
    /// Resolves [`BaseQuantization::FromAdapter`] by reading `<adapter_dir>/ft_adapter.json`.
    /// Returns `Some(double_quant)` for an NF4 base, `None` for a dense one.
    pub fn resolve(self, adapter_dir: Option<&Path>) -> Result<Option<bool>> {
        match self {
            BaseQuantization::Dense => Ok(None),
            BaseQuantization::Nf4 { double_quant } => Ok(Some(double_quant)),
            BaseQuantization::FromAdapter => match adapter_dir {
                None => Ok(None),
                Some(dir) => recorded_quantization(dir),
            },
        }
    }
}

/// Reads `quantization` / `double_quant` from `ft_adapter.json`, if the folder has one.
fn recorded_quantization(adapter_dir: &Path) -> Result<Option<bool>> {
    let path = adapter_dir.join(FT_ADAPTER_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("reading", &path)(e)),
    };
    let json: Value = serde_json::from_str(&text).map_err(|e| ft_io::IoError::Json {
        path: path.clone(),
        message: e.to_string(),
    })?;
    match json.get("quantization").and_then(Value::as_str) {
        Some(q) if q.eq_ignore_ascii_case("nf4") => Ok(Some(
            json.get("double_quant").and_then(Value::as_bool).unwrap_or(true),
        )),
        _ => Ok(None),
    }
}

/// Whether QLoRA quantises this tensor: a 2-D `…weight` inside a decoder block (`.layers.`), not in
/// a vision tower. Embeddings, norms and the LM head stay 16-bit.
pub fn is_nf4_quantised(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2
        && name.ends_with(".weight")
        && name.contains(".layers.")
        && !name.contains("vision_tower")
        && !name.contains("vision_model")
}

/// Whether an NF4 CLIP tower (`[llava] visual_quantization = "nf4"`) holds this tensor in 4 bits:
/// a 2-D `…weight` of an encoder layer of the vision tower (the patch embedding, a convolution,
/// and the position embeddings stay dense).
pub fn is_clip_nf4_quantised(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2
        && name.ends_with(".weight")
        && name.contains("encoder.layers.")
        && !name.starts_with("text_model.")
}

/// Replaces `values` by `dequantize(quantize_nf4(values))`.
///
/// # Shapes
/// - `values`: `shape.iter().product()` values, row-major
pub fn nf4_round_trip(name: &str, values: &mut Vec<f32>, shape: &[usize], double_quant: bool) -> Result<()> {
    let q = Nf4Tensor::quantize(values, shape, double_quant).map_err(|source| ExportError::Nf4 {
        name: name.to_string(),
        source,
    })?;
    *values = q.dequantize();
    Ok(())
}
