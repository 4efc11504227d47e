//! The math every family shares: RMSNorm (in f32), SwiGLU MLP, grouped-query attention with
//! rotate-half RoPE (softmax in f32), and the pre-norm decoder block.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use ft_kernels::{AttentionMask, KernelBackend};
use ft_lora::linear::FtLinear;

use crate::rope;

/// RMSNorm: `x · rsqrt(mean(x²) + eps) · weight`, normalised in f32 whatever the dtype.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Scale, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Epsilon.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// A norm with unit scale.
    pub fn new(hidden: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([hidden], device)),
            eps,
        }
    }
}

impl<B: KernelBackend> RmsNorm<B> {
    /// Normalises in f32 (as transformers' `LlamaRMSNorm` does: an f16 square overflows above
    /// 255), casts back to the input's dtype, then scales by the weight.
    ///
    /// # Shapes
    /// - input: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        ft_kernels::rms_norm(x, self.weight.val(), self.eps)
    }
}

/// SwiGLU MLP: `down(silu(gate x) ⊙ up x)`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Gate projection (`gate_proj` / `w1`).
    pub gate: FtLinear<B>,
    /// Up projection (`up_proj` / `w3`).
    pub up: FtLinear<B>,
    /// Down projection (`down_proj` / `w2`).
    pub down: FtLinear<B>,
}

impl<B: KernelBackend> Mlp<B> {
    /// # Shapes
    /// - input: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gated = ft_kernels::swiglu(self.gate.forward(x.clone()), self.up.forward(x));
        self.down.forward(gated)
    }
}

/// Query/key/value projections: separate (Llama, Qwen2, Mistral) or fused and grouped
/// (InternLM2's `wqkv`, rows `[kv_heads][groups + 2][head_dim]`).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `q_proj`.
    pub q: Option<FtLinear<B>>,
    /// `k_proj`.
    pub k: Option<FtLinear<B>>,
    /// `v_proj`.
    pub v: Option<FtLinear<B>>,
    /// InternLM2's fused `wqkv`.
    pub wqkv: Option<FtLinear<B>>,
    /// `o_proj` / `wo`.
    pub o: FtLinear<B>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Head size.
    pub head_dim: usize,
}

/// Keys and values of earlier positions (one layer); empty before the first token.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    /// `[batch, past, kv_heads, head_dim]`.
    pub k: Option<Tensor<B, 4>>,
    /// `[batch, past, kv_heads, head_dim]`.
    pub v: Option<Tensor<B, 4>>,
}

impl<B: Backend> Default for LayerCache<B> {
    fn default() -> Self {
        Self { k: None, v: None }
    }
}

impl<B: Backend> LayerCache<B> {
    /// Cached positions.
    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[1])
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        let keep = |t: Tensor<B, 4>| {
            let [b, _, h, d] = t.dims();
            t.slice([0..b, 0..len, 0..h, 0..d])
        };
        self.k = self.k.take().map(keep);
        self.v = self.v.take().map(keep);
    }
}

/// What attention needs besides the hidden states.
pub struct AttentionContext<'a, B: Backend> {
    /// RoPE factors of the new tokens (every head), in the hidden states' dtype.
    pub rope: &'a rope::RopeAngles<B>,
    /// Which keys each new token sees.
    pub mask: &'a AttentionMask,
}

impl<B: KernelBackend> Attention<B> {
    fn project_qkv(&self, x: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, seq, _] = x.dims();
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        match (&self.q, &self.k, &self.v, &self.wqkv) {
            (Some(q), Some(k), Some(v), _) => (
                q.forward(x.clone()).reshape([batch, seq, h, hd]),
                k.forward(x.clone()).reshape([batch, seq, kv, hd]),
                v.forward(x).reshape([batch, seq, kv, hd]),
            ),
            (_, _, _, Some(wqkv)) => {
                let groups = h / kv;
                let fused = wqkv.forward(x).reshape([batch, seq, kv, groups + 2, hd]);
                let q = fused.clone().slice([0..batch, 0..seq, 0..kv, 0..groups, 0..hd]);
                let k = fused
                    .clone()
                    .slice([0..batch, 0..seq, 0..kv, groups..groups + 1, 0..hd]);
                let v = fused.slice([0..batch, 0..seq, 0..kv, groups + 1..groups + 2, 0..hd]);
                (
                    q.reshape([batch, seq, h, hd]),
                    k.reshape([batch, seq, kv, hd]),
                    v.reshape([batch, seq, kv, hd]),
                )
            }
            _ => unreachable!("invariant: attention has q/k/v or wqkv"),
        }
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - cache (in/out): keys and values `[batch, past, kv_heads, head_dim]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        ctx: &AttentionContext<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (q, k, v) = self.project_qkv(x);
        let q = rope::apply(q, ctx.rope);
        let mut k = rope::apply(k, ctx.rope);
        let mut v = v;
        if let Some(cache) = cache {
            if let (Some(past_k), Some(past_v)) = (cache.k.take(), cache.v.take()) {
                k = Tensor::cat(vec![past_k, k], 1);
                v = Tensor::cat(vec![past_v, v], 1);
            }
            cache.k = Some(k.clone());
            cache.v = Some(v.clone());
        }
        let scale = (self.head_dim as f32).powf(-0.5);
        let out = ft_kernels::attention(q, k, v, ctx.mask, scale).reshape([
            batch,
            seq,
            self.num_heads * self.head_dim,
        ]);
        self.o.forward(out)
    }
}

/// A pre-norm decoder block.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Norm before attention (`input_layernorm` / `attention_norm`).
    pub attn_norm: RmsNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Norm before the MLP (`post_attention_layernorm` / `ffn_norm`).
    pub mlp_norm: RmsNorm<B>,
    /// MLP.
    pub mlp: Mlp<B>,
}

impl<B: KernelBackend> DecoderLayer<B> {
    /// Whether the forward draws random numbers in training (adapter dropout).
    pub fn draws_random(&self) -> bool {
        let attn = [&self.attn.q, &self.attn.k, &self.attn.v, &self.attn.wqkv];
        let mlp = [&self.mlp.gate, &self.mlp.up, &self.mlp.down, &self.attn.o];
        attn.into_iter().flatten().chain(mlp).any(FtLinear::draws_random)
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        ctx: &AttentionContext<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let h = x.clone() + self.attn.forward(self.attn_norm.forward(x), ctx, cache);
        h.clone() + self.mlp.forward(self.mlp_norm.forward(h))
    }
}
