//! Weight names per family: the only thing that differs between Llama, Mistral, Qwen2 and
//! InternLM2 once the math is shared. Names are Hugging Face's, so checkpoints and PEFT adapters
//! need no rename tables.

mod internlm2;
mod llama;

use burn::tensor::backend::Backend;
use ft_lora::linear::FtLinear;

use crate::config::{Family, ModelConfig};
use crate::model::CausalLm;

/// The role of a linear layer inside a decoder block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearRole {
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// InternLM2's fused q/k/v.
    Wqkv,
    /// Attention output.
    O,
    /// MLP gate.
    Gate,
    /// MLP up.
    Up,
    /// MLP down.
    Down,
}

/// A family's names.
pub struct FamilyNames {
    /// Embedding tensor.
    pub embed: &'static str,
    /// Final norm tensor.
    pub norm: &'static str,
    /// LM head module (without `.weight`).
    pub lm_head: &'static str,
    /// Pre-attention norm, relative to `model.layers.{i}.`.
    pub attn_norm: &'static str,
    /// Pre-MLP norm, relative to `model.layers.{i}.`.
    pub mlp_norm: &'static str,
    /// Linear modules in a block with their roles, relative to `model.layers.{i}.`.
    pub linears: &'static [(&'static str, LinearRole)],
}

/// The names of a family.
pub fn names(family: Family) -> &'static FamilyNames {
    match family {
        Family::Llama | Family::Mistral | Family::Qwen2 => &llama::NAMES,
        Family::InternLm2 => &internlm2::NAMES,
    }
}

/// Full module names of every linear layer (`model.layers.0.self_attn.q_proj`, ..., and the LM
/// head when it is not tied), in checkpoint order.
pub fn linear_names(config: &ModelConfig) -> Vec<String> {
    let n = names(config.family);
    let mut out: Vec<String> = (0..config.num_layers)
        .flat_map(|i| {
            n.linears
                .iter()
                .map(move |(name, _)| format!("model.layers.{i}.{name}"))
        })
        .collect();
    if !config.tie_word_embeddings {
        out.push(n.lm_head.to_owned());
    }
    out
}

/// The linear layer called `name`.
pub fn linear_mut<'a, B: Backend>(
    model: &'a mut CausalLm<B>,
    config: &ModelConfig,
    name: &str,
) -> Option<&'a mut FtLinear<B>> {
    let n = names(config.family);
    if name == n.lm_head {
        return model.lm_head.as_mut();
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (index, local) = rest.split_once('.')?;
    let layer = model.layers.get_mut(index.parse::<usize>().ok()?)?;
    let role = n.linears.iter().find(|(l, _)| *l == local)?.1;
    match role {
        LinearRole::Q => layer.attn.q.as_mut(),
        LinearRole::K => layer.attn.k.as_mut(),
        LinearRole::V => layer.attn.v.as_mut(),
        LinearRole::Wqkv => layer.attn.wqkv.as_mut(),
        LinearRole::O => Some(&mut layer.attn.o),
        LinearRole::Gate => Some(&mut layer.mlp.gate),
        LinearRole::Up => Some(&mut layer.mlp.up),
        LinearRole::Down => Some(&mut layer.mlp.down),
    }
}

/// The linear layer called `name` (shared borrow).
pub fn linear<'a, B: Backend>(
    model: &'a CausalLm<B>,
    config: &ModelConfig,
    name: &str,
) -> Option<&'a FtLinear<B>> {
    let n = names(config.family);
    if name == n.lm_head {
        return model.lm_head.as_ref();
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (index, local) = rest.split_once('.')?;
    let layer = model.layers.get(index.parse::<usize>().ok()?)?;
    let role = n.linears.iter().find(|(l, _)| *l == local)?.1;
    match role {
        LinearRole::Q => layer.attn.q.as_ref(),
        LinearRole::K => layer.attn.k.as_ref(),
        LinearRole::V => layer.attn.v.as_ref(),
        LinearRole::Wqkv => layer.attn.wqkv.as_ref(),
        LinearRole::O => Some(&layer.attn.o),
        LinearRole::Gate => Some(&layer.mlp.gate),
        LinearRole::Up => Some(&layer.mlp.up),
        LinearRole::Down => Some(&layer.mlp.down),
    }
}
