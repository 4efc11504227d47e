//! The decoder LLM: embedding → decoder blocks → final norm → LM head (tied or not), shared by
//! every family; the families differ only in weight names and biases (see [`crate::families`]).

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use ft_kernels::AttentionMask;
use ft_kernels::KernelBackend;
use ft_lora::linear::{FtLinear, Nf4Weight};

use crate::config::{Family, ModelConfig};
use crate::layers::{Attention, AttentionContext, DecoderLayer, LayerCache, Mlp, RmsNorm};
use crate::{mask, rope};

/// A decoder-only causal language model.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    /// Token embedding `[vocab, hidden]`.
    pub embed: Param<Tensor<B, 2>>,
    /// Decoder blocks.
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// LM head `[vocab, hidden]`; `None` when tied to the embedding.
    pub lm_head: Option<FtLinear<B>>,
}

/// One batch on the host, as the data pipeline produces it (row-major `[batch, seq]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInput {
    /// Rows.
    pub batch: usize,
    /// Padded length.
    pub seq: usize,
    /// Token ids.
    pub input_ids: Vec<i32>,
    /// 1 for real tokens, 0 for (right) padding; `None` = all real.
    pub attention_mask: Option<Vec<i32>>,
    /// Positions (restarting per packed sample); `None` = `0..seq` per row.
    pub position_ids: Option<Vec<i32>>,
    /// Segment of each token in a packed row (tokens attend within their segment only);
    /// `None` = one segment per row.
    pub segment_ids: Option<Vec<i32>>,
}

impl ModelInput {
    /// One row of ids, no padding.
    pub fn from_ids(ids: &[u32]) -> Self {
        Self {
            batch: 1,
            seq: ids.len(),
            input_ids: ids.iter().map(|&i| i as i32).collect(),
            attention_mask: None,
            position_ids: None,
            segment_ids: None,
        }
    }

    fn positions(&self, offset: usize) -> Vec<i32> {
        match &self.position_ids {
            Some(p) => p.clone(),
            None => (0..self.batch)
                .flat_map(|_| (0..self.seq).map(|s| (s + offset) as i32))
                .collect(),
        }
    }
}

/// How the linear layers inside decoder blocks hold their base weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinearStorage {
    /// Dense f32 parameters.
    #[default]
    Dense,
    /// NF4 codes on the device (QLoRA), optionally with double-quantised absmax.
    Nf4 {
        /// Quantise the per-block absmax to 8 bits too.
        double_quant: bool,
    },
}

impl<B: Backend> CausalLm<B> {
    /// A zero-initialised model of the given shape (weights are loaded afterwards).
    pub fn init(config: &ModelConfig, device: &B::Device) -> Self {
        Self::init_as(config, device, LinearStorage::Dense)
    }

    /// A zero-initialised model whose decoder-block linears use `storage` (NF4 placeholders hold
    /// packed zeros, never a dense tensor).
    pub fn init_as(config: &ModelConfig, device: &B::Device, storage: LinearStorage) -> Self {
        let (h, hd) = (config.hidden_size, config.head_dim);
        let layer = || {
            let fused = config.family == Family::InternLm2;
            let q_out = config.num_heads * hd;
            let kv_out = config.num_kv_heads * hd;
            let linear = |d_in, d_out, bias: bool| match storage {
                LinearStorage::Dense => FtLinear::zeros(d_in, d_out, bias, device),
                LinearStorage::Nf4 { double_quant } => FtLinear::from_nf4(
                    Nf4Weight::zeros([d_out, d_in], double_quant, device),
                    bias.then(|| Tensor::zeros([d_out], device)),
                ),
            };
            DecoderLayer {
                attn_norm: RmsNorm::new(h, config.rms_norm_eps, device),
                attn: Attention {
                    q: (!fused).then(|| linear(h, q_out, config.qkv_bias)),
                    k: (!fused).then(|| linear(h, kv_out, config.qkv_bias)),
                    v: (!fused).then(|| linear(h, kv_out, config.qkv_bias)),
                    wqkv: fused.then(|| linear(h, q_out + 2 * kv_out, config.qkv_bias)),
                    o: linear(q_out, h, config.o_bias),
                    num_heads: config.num_heads,
                    num_kv_heads: config.num_kv_heads,
                    head_dim: hd,
                },
                mlp_norm: RmsNorm::new(h, config.rms_norm_eps, device),
                mlp: Mlp {
                    gate: linear(h, config.intermediate_size, config.mlp_bias),
                    up: linear(h, config.intermediate_size, config.mlp_bias),
                    down: linear(config.intermediate_size, h, config.mlp_bias),
                },
            }
        };
        Self {
            embed: Param::from_tensor(Tensor::zeros([config.vocab_size, h], device)),
            layers: (0..config.num_layers).map(|_| layer()).collect(),
            norm: RmsNorm::new(h, config.rms_norm_eps, device),
            lm_head: (!config.tie_word_embeddings)
                .then(|| FtLinear::zeros(h, config.vocab_size, false, device)),
        }
    }
}

impl<B: KernelBackend> CausalLm<B> {
    /// Final hidden states (after the last norm).
    ///
    /// # Shapes
    /// - input: `[batch, seq]` ids (+ mask, positions, segments)
    /// - caches: one per layer, `[batch, past, kv_heads, head_dim]` each (extended in place)
    /// - output: `[batch, seq, hidden]`
    pub fn hidden_states(
        &self,
        input: &ModelInput,
        config: &ModelConfig,
        caches: Option<&mut Vec<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        self.hidden_states_over(input, config, caches, None)
    }

    /// [`Self::hidden_states`] over left-padded caches: `cache_mask` `[batch, past]` is 0 for an
    /// empty cache slot.
    pub(crate) fn hidden_states_over(
        &self,
        input: &ModelInput,
        config: &ModelConfig,
        caches: Option<&mut Vec<LayerCache<B>>>,
        cache_mask: Option<&std::sync::Arc<Vec<i32>>>,
    ) -> Tensor<B, 3> {
        let (b, s) = (input.batch, input.seq);
        assert_eq!(input.input_ids.len(), b * s, "input_ids must be [batch, seq]");
        let ids: Vec<u32> = input.input_ids.iter().map(|&i| i as u32).collect();
        let x = self.embed_ids(&ids).reshape([b, s, config.hidden_size]);
        self.run_layers(x, input, config, caches, cache_mask)
    }

    /// The token embeddings of `ids`.
    ///
    /// # Shapes
    /// - ids: `n`
    /// - output: `[n, hidden]`
    pub fn embed_ids(&self, ids: &[u32]) -> Tensor<B, 2> {
        let device = self.embed.device();
        let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids.clone(), [ids.len()]), &device);
        self.embed.val().select(0, ids)
    }

    /// Final hidden states of input embeddings (a LLaVA's spliced rows): `input` gives the
    /// shape, padding mask, positions and segments; its ids are not read.
    ///
    /// # Shapes
    /// - embeddings: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn hidden_states_of_embeddings(
        &self,
        embeddings: Tensor<B, 3>,
        input: &ModelInput,
        config: &ModelConfig,
    ) -> Tensor<B, 3> {
        self.run_layers(embeddings, input, config, None, None)
    }

    /// [`Self::hidden_states_of_embeddings`] after cached keys (extended in place).
    pub(crate) fn hidden_states_of_embeddings_cached(
        &self,
        embeddings: Tensor<B, 3>,
        input: &ModelInput,
        config: &ModelConfig,
        caches: &mut Vec<LayerCache<B>>,
    ) -> Tensor<B, 3> {
        self.run_layers(embeddings, input, config, Some(caches), None)
    }

    /// The decoder blocks and the final norm over embeddings `x`.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    fn run_layers(
        &self,
        x: Tensor<B, 3>,
        input: &ModelInput,
        config: &ModelConfig,
        mut caches: Option<&mut Vec<LayerCache<B>>>,
        cache_mask: Option<&std::sync::Arc<Vec<i32>>>,
    ) -> Tensor<B, 3> {
        let device = self.embed.device();
        let (b, s) = (input.batch, input.seq);
        assert_eq!(x.dims()[..2], [b, s], "embeddings must be [batch, seq, hidden]");
        let mut x = x;
        let past = caches.as_ref().and_then(|c| c.first()).map_or(0, |c| c.len());
        let positions_host = input.positions(past);
        let max_position = positions_host.iter().copied().max().unwrap_or(0).max(0) as usize + 1;
        let positions = Tensor::<B, 2, Int>::from_data(TensorData::new(positions_host, [b, s]), &device);
        let (cos, sin) = rope::tables::<B>(
            config.head_dim,
            config.rope_theta,
            &config.rope_scaling,
            max_position.max(past + s),
            &device,
        );
        // Tables computed in f32, used in the model's dtype (transformers: `cos.to(x.dtype)`).
        let dtype = x.dtype();
        let (cos, sin) = (cos.cast(dtype), sin.cast(dtype));
        let angles = rope::RopeAngles::new(&positions, &cos, &sin);
        // One mask per distinct attention window (full causal and at most one sliding window).
        let mut masks: Vec<AttentionMask> = Vec::new();
        let checkpoint = config.gradient_checkpointing && B::ad_enabled(&device) && caches.is_none();
        let dropout_seed = if checkpoint {
            self.dropout_seed(&device)
        } else {
            None
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let window = config.sliding_window(i);
            let built = masks.iter().position(|m| m.window == window);
            let index = built.unwrap_or_else(|| {
                masks.push(mask::attention_mask(input, past, window, cache_mask));
                masks.len() - 1
            });
            let ctx = AttentionContext {
                rope: &angles,
                mask: &masks[index],
            };
            if checkpoint {
                let (rope, mask) = (angles.clone(), masks[index].clone());
                let seed = dropout_seed.map(|base| base.wrapping_add(i as u64));
                x = ft_kernels::checkpointed(layer, x, seed, move |layer, x| {
                    layer.forward(
                        x,
                        &AttentionContext {
                            rope: &rope,
                            mask: &mask,
                        },
                        None,
                    )
                });
                continue;
            }
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            x = layer.forward(x, &ctx, cache);
        }
        self.norm.forward(x)
    }

    /// A seed for the dropout masks of this forward's checkpointed layers (layer `i` seeds the
    /// backend's generator with `seed + i`, in forward and again in its recompute), drawn from
    /// the backend's generator so that a seeded run stays reproducible; `None` when no layer
    /// draws random numbers.
    fn dropout_seed(&self, device: &B::Device) -> Option<u64> {
        if !self.layers.iter().any(DecoderLayer::draws_random) {
            return None;
        }
        let draws = Tensor::<B, 1, Int>::random([2], Distribution::Uniform(0.0, 2_147_483_647.0), device);
        let halves = draws.into_data().convert::<i64>().to_vec::<i64>().ok()?;
        Some(((halves[0] as u64) << 31) ^ halves[1] as u64)
    }

    /// Logits for hidden states.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`
    /// - output: `[batch, seq, vocab]`
    pub fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, s, h] = hidden.dims();
                let vocab = self.embed.dims()[0];
                hidden
                    .reshape([b * s, h])
                    .matmul(self.embed.val().transpose())
                    .reshape([b, s, vocab])
            }
        }
    }

    /// Logits of every position.
    ///
    /// # Shapes
    /// - input: `[batch, seq]`
    /// - output: `[batch, seq, vocab]`
    pub fn forward(&self, input: &ModelInput, config: &ModelConfig) -> Tensor<B, 3> {
        self.head(self.hidden_states(input, config, None))
    }
}
