//! Llama-family GGUF → Hugging Face names, layout and `config.json`.
//!
//! llama.cpp's converter renames HF tensors (`model.layers.N.self_attn.q_proj.weight` →
//! `blk.N.attn_q.weight`) and interleaves the two rotary halves of every q and k head. This
//! module reverses both, so weights read here are what transformers' own GGUF import produces.

use serde_json::{Value, json};

use crate::error::{GgufError, Result};
use crate::file::GgufFile;

/// Architectures whose tensors follow the Llama naming (`qwen2` without the q/k permutation,
/// since llama.cpp runs it with NeoX RoPE).
const LLAMA_FAMILY: &[&str] = &["llama", "qwen2"];

/// Per-layer GGUF suffix → HF suffix (after `blk.N.` / `model.layers.N.`).
const LAYER_NAMES: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Top-level GGUF name → HF name.
const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// The HF name of GGUF tensor `gguf_name`, or `None` for tensors with no HF counterpart
/// (e.g. `rope_freqs.weight`).
pub fn hf_name(gguf_name: &str) -> Option<String> {
    if let Some(&(_, hf)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == gguf_name) {
        return Some(hf.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (module, param) = rest.rsplit_once('.')?;
    if param != "weight" && param != "bias" {
        return None;
    }
    let &(_, hf_module) = LAYER_NAMES.iter().find(|(g, _)| *g == module)?;
    Some(format!("model.layers.{layer}.{hf_module}.{param}"))
}

/// The GGUF name of HF tensor `hf_name` (inverse of [`hf_name`]).
pub fn gguf_name(hf_name: &str) -> Option<String> {
    if let Some(&(g, _)) = GLOBAL_NAMES.iter().find(|(_, h)| *h == hf_name) {
        return Some(g.to_string());
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (module, param) = rest.rsplit_once('.')?;
    let &(g, _) = LAYER_NAMES.iter().find(|(_, h)| *h == module)?;
    Some(format!("blk.{layer}.{g}.{param}"))
}

/// Undoes llama.cpp's q/k row permutation in place of a copy.
///
/// Within each of `n_heads` heads of `hd` rows, GGUF row `2j + s` is HF row `s·hd/2 + j`
/// (s ∈ {0, 1}, j < hd/2): reshape `[n, hd/2, 2, cols]`, swap axes 1 and 2, reshape back.
///
/// # Shapes
/// - values: `[rows, cols]` row-major, `rows % (2·n_heads) == 0`
/// - output: `[rows, cols]`
pub fn unpermute_rows(values: &[f32], rows: usize, cols: usize, n_heads: usize) -> Option<Vec<f32>> {
    move_rows(values, rows, cols, n_heads, |hd, j, s| {
        (2 * j + s, s * (hd / 2) + j)
    })
}

/// Applies llama.cpp's q/k row permutation (inverse of [`unpermute_rows`]): HF row
/// `s·hd/2 + j` of each head becomes GGUF row `2j + s`.
///
/// # Shapes
/// - values: `[rows, cols]` row-major, `rows % (2·n_heads) == 0`
/// - output: `[rows, cols]`
pub fn permute_rows(values: &[f32], rows: usize, cols: usize, n_heads: usize) -> Option<Vec<f32>> {
    move_rows(values, rows, cols, n_heads, |hd, j, s| {
        (s * (hd / 2) + j, 2 * j + s)
    })
}

/// Copies whole rows within each head: `row_map(head_dim, j, s)` gives (source, destination)
/// offsets inside the head for j < head_dim/2, s ∈ {0, 1}.
fn move_rows(
    values: &[f32],
    rows: usize,
    cols: usize,
    n_heads: usize,
    row_map: impl Fn(usize, usize, usize) -> (usize, usize),
) -> Option<Vec<f32>> {
    if n_heads == 0 || !rows.is_multiple_of(2 * n_heads) || values.len() != rows * cols {
        return None;
    }
    let hd = rows / n_heads;
    let mut out = vec![0f32; values.len()];
    for head in 0..n_heads {
        for j in 0..hd / 2 {
            for s in 0..2 {
                let (src, dst) = row_map(hd, j, s);
                let (src, dst) = (head * hd + src, head * hd + dst);
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    Some(out)
}

impl GgufFile {
    /// `general.architecture`, checked to be Llama-family.
    pub fn llama_architecture(&self) -> Result<&str> {
        let arch = self.metadata().require_str("general.architecture")?;
        if LLAMA_FAMILY.contains(&arch) {
            Ok(arch)
        } else {
            Err(GgufError::UnsupportedArchitecture {
                file: self.path().to_path_buf(),
                architecture: arch.to_string(),
            })
        }
    }

    /// HF names of every tensor that has one, in file order. No `lm_head.weight` when the file
    /// has no `output.weight`: the head is then tied to `model.embed_tokens.weight`.
    pub fn hf_tensor_names(&self) -> Result<Vec<String>> {
        self.llama_architecture()?;
        Ok(self.tensors().iter().filter_map(|t| hf_name(&t.name)).collect())
    }

    /// Whether the LM head is tied to the embeddings (no `output.weight` in the file).
    pub fn tie_word_embeddings(&self) -> bool {
        !self.has_tensor("output.weight")
    }

    /// HF tensor `hf_name` dequantised to f32 in HF layout (q/k rows un-permuted).
    ///
    /// # Shapes
    /// - output: `(values, shape)`, shape as in the HF checkpoint, e.g. `[out, in]` for linears
    pub fn tensor_f32(&self, hf_name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let arch = self.llama_architecture()?;
        let not_found = || GgufError::TensorNotFound {
            file: self.path().to_path_buf(),
            name: hf_name.to_string(),
        };
        let gguf = gguf_name(hf_name).ok_or_else(not_found)?;
        if !self.has_tensor(&gguf) {
            return Err(not_found());
        }
        let (values, shape) = self.gguf_tensor_f32(&gguf)?;
        let heads_key = if arch != "llama" {
            None
        } else if gguf.contains(".attn_q.") {
            Some(format!("{arch}.attention.head_count"))
        } else if gguf.contains(".attn_k.") {
            Some(format!("{arch}.attention.head_count_kv"))
        } else {
            None
        };
        let Some(heads_key) = heads_key else {
            return Ok((values, shape));
        };
        let n_heads = match self.metadata().get_u64(&heads_key)? {
            Some(n) => n,
            // Files without head_count_kv use plain multi-head attention.
            None => self
                .metadata()
                .require_u64(&format!("{arch}.attention.head_count"))?,
        } as usize;
        let rows = shape.first().copied().unwrap_or(1);
        let cols = shape.iter().skip(1).product::<usize>();
        let values = unpermute_rows(&values, rows, cols, n_heads).ok_or_else(|| GgufError::Corrupt {
            file: self.path().to_path_buf(),
            what: format!("tensor `{gguf}` has {rows} rows, not a multiple of 2 × {n_heads} heads"),
        })?;
        Ok((values, shape))
    }

    /// The HF `config.json` this file corresponds to (a `LlamaForCausalLM`, or a
    /// `Qwen2ForCausalLM` for `qwen2` files).
    /// llama.cpp's per-frequency RoPE divisors (`rope_freqs.weight`, `[head_dim / 2]`: Llama 3.1
    /// scaling baked into numbers), if the file has them: frequency `i` is `θ^(−2i/d) / factors[i]`.
    pub fn rope_freq_factors(&self) -> Result<Option<Vec<f32>>> {
        if !self.has_tensor("rope_freqs.weight") {
            return Ok(None);
        }
        self.gguf_tensor_f32("rope_freqs.weight")
            .map(|(values, _)| Some(values))
    }

    pub fn hf_config(&self) -> Result<Value> {
        let arch = self.llama_architecture()?;
        let md = self.metadata();
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = md.require_u64(&key("embedding_length"))?;
        let heads = md.require_u64(&key("attention.head_count"))?;
        let kv_heads = md.get_u64(&key("attention.head_count_kv"))?.unwrap_or(heads);
        if heads == 0 || hidden % heads != 0 {
            return Err(GgufError::Corrupt {
                file: self.path().to_path_buf(),
                what: format!("embedding_length {hidden} is not a multiple of head_count {heads}"),
            });
        }
        let head_dim = md
            .get_u64(&key("attention.key_length"))?
            .unwrap_or(hidden / heads);
        let vocab_size = match md.get_u64(&key("vocab_size"))? {
            Some(v) => v,
            None => match md.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
                Some(tokens) => tokens.len() as u64,
                None => self
                    .tensor_info("token_embd.weight")?
                    .dims
                    .get(1)
                    .copied()
                    .unwrap_or(0),
            },
        };
        let mut config = json!({
            "architectures": [if arch == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
            "model_type": arch,
            "hidden_size": hidden,
            "intermediate_size": md.require_u64(&key("feed_forward_length"))?,
            "num_hidden_layers": md.require_u64(&key("block_count"))?,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": md.get_f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
            "rope_theta": md.get_f64(&key("rope.freq_base"))?.unwrap_or(10000.0),
            "max_position_embeddings": md.get_u64(&key("context_length"))?.unwrap_or(2048),
            "vocab_size": vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings(),
            "attention_bias": self.has_tensor("blk.0.attn_q.bias"),
            "mlp_bias": false,
            "torch_dtype": "float32",
        });
        let obj = config.as_object_mut().expect("invariant: json! built an object");
        if let Some(kind) = md.get_str(&key("rope.scaling.type"))?
            && kind != "none"
        {
            let mut scaling = json!({
                "rope_type": kind,
                "factor": md.get_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0),
            });
            if let Some(original) = md.get_u64(&key("rope.scaling.original_context_length"))? {
                scaling["original_max_position_embeddings"] = json!(original);
            }
            obj.insert("rope_scaling".into(), scaling);
        }
        for (hf, gguf) in [
            ("bos_token_id", "tokenizer.ggml.bos_token_id"),
            ("eos_token_id", "tokenizer.ggml.eos_token_id"),
            ("pad_token_id", "tokenizer.ggml.padding_token_id"),
        ] {
            if let Some(id) = md.get_u64(gguf)? {
                obj.insert(hf.to_string(), json!(id));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for g in [
            "token_embd.weight",
            "output.weight",
            "output_norm.weight",
            "blk.12.attn_q.weight",
            "blk.0.ffn_down.weight",
            "blk.3.attn_k.bias",
        ] {
            let h = hf_name(g).expect("mapped");
            assert_eq!(gguf_name(&h).as_deref(), Some(g));
        }
        assert_eq!(
            hf_name("blk.1.attn_norm.weight").as_deref(),
            Some("model.layers.1.input_layernorm.weight")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
    }

    #[test]
    fn unpermute_moves_interleaved_rows_to_halves() {
        // One head of 4 rows, 1 column: GGUF rows [a0, b0, a1, b1] → HF [a0, a1, b0, b1].
        let out = unpermute_rows(&[0.0, 10.0, 1.0, 11.0], 4, 1, 1).expect("valid");
        assert_eq!(out, vec![0.0, 1.0, 10.0, 11.0]);
        assert!(unpermute_rows(&[0.0; 6], 6, 1, 2).is_none());
        let hf: Vec<f32> = (0..48).map(|v| v as f32).collect();
        let gguf = permute_rows(&hf, 12, 4, 3).expect("valid");
        assert_eq!(&gguf[4..8], &hf[8..12], "GGUF row 1 = HF row hd/2 of head 0");
        assert_eq!(unpermute_rows(&gguf, 12, 4, 3).expect("valid"), hf);
    }
}
