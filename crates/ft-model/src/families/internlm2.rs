//! InternLM2 (`InternLM2ForCausalLM`, remote code): the Llama math with a fused, grouped
//! `attention.wqkv` (rows `[kv_heads][groups + 2][head_dim]`: each kv head's query heads, then
//! its key, then its value; split in `layers::Attention`), `wo`, `feed_forward.w1/w3/w2` for
//! gate/up/down, and an untied head called `output` (which XTuner's LoRA does adapt).

use super::{FamilyNames, LinearRole};

/// Weight names of InternLM2.
pub(super) static NAMES: FamilyNames = FamilyNames {
    embed: "model.tok_embeddings.weight",
    norm: "model.norm.weight",
    lm_head: "output",
    attn_norm: "attention_norm",
    mlp_norm: "ffn_norm",
    linears: &[
        ("attention.wqkv", LinearRole::Wqkv),
        ("attention.wo", LinearRole::O),
        ("feed_forward.w1", LinearRole::Gate),
        ("feed_forward.w3", LinearRole::Up),
        ("feed_forward.w2", LinearRole::Down),
    ],
};
