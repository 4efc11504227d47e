//! Llama 1/2/3, Mistral and Qwen2 (`LlamaForCausalLM`, `MistralForCausalLM`,
//! `Qwen2ForCausalLM` in transformers): one layout; Qwen2 adds q/k/v biases (see
//! `ModelConfig::from_hf`), Llama 3.x adds `rope_scaling` llama3.

use super::{FamilyNames, LinearRole};

/// Weight names of the Llama layout.
pub(super) static NAMES: FamilyNames = FamilyNames {
    embed: "model.embed_tokens.weight",
    norm: "model.norm.weight",
    lm_head: "lm_head",
    attn_norm: "input_layernorm",
    mlp_norm: "post_attention_layernorm",
    linears: &[
        ("self_attn.q_proj", LinearRole::Q),
        ("self_attn.k_proj", LinearRole::K),
        ("self_attn.v_proj", LinearRole::V),
        ("self_attn.o_proj", LinearRole::O),
        ("mlp.gate_proj", LinearRole::Gate),
        ("mlp.up_proj", LinearRole::Up),
        ("mlp.down_proj", LinearRole::Down),
    ],
};
