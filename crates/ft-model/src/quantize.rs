//! NF4 for a whole model (QLoRA): every linear layer inside the decoder blocks, never the
//! embeddings, the norms or the LM head (bitsandbytes' scope).

use burn::tensor::backend::Backend;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::families::{self, linear, linear_mut, linear_names};
use crate::model::CausalLm;

/// Names of the linear layers NF4 applies to: those inside decoder blocks.
pub fn quantizable_linear_names(config: &ModelConfig) -> Vec<String> {
    let head = families::names(config.family).lm_head;
    linear_names(config)
        .into_iter()
        .filter(|n| n != head && n.starts_with("model.layers."))
        .collect()
}

/// Quantises every decoder-block linear of a loaded dense model to NF4 in place (adapters are
/// kept). Prefer [`crate::load_hf_nf4`], which never holds the dense weights at once.
pub fn quantize_model<B: Backend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    double_quant: bool,
) -> Result<()> {
    for name in quantizable_linear_names(config) {
        linear_mut(model, config, &name)
            .expect("invariant: linear_names lists the model's linears")
            .quantize_base(double_quant)?;
    }
    Ok(())
}

/// Bytes held by the NF4 bases and the number of parameters they stand for.
pub fn nf4_footprint<B: Backend>(model: &CausalLm<B>, config: &ModelConfig) -> (usize, usize) {
    linear_names(config)
        .iter()
        .filter_map(|name| linear(model, config, name)?.nf4_weight())
        .fold((0, 0), |(bytes, params), w| {
            (bytes + w.device_bytes(), params + w.numel())
        })
}
