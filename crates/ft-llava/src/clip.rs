//! The CLIP vision tower (ViT): patch embedding, class token, position embeddings,
//! `pre_layrnorm`, pre-norm encoder layers (bidirectional attention, `quick_gelu` or `gelu` MLP).
//! LLaVA's features are the hidden state of `visual_select_layer` (−2: the output of the
//! second-to-last layer, before `post_layernorm`) without the class token.
//!
//! The linear layers are [`FtLinear`]s, as in the LLM, so they can be NF4 and carry LoRA.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use ft_kernels::KernelBackend;
use ft_lora::linear::FtLinear;
use ft_model::weights::{SafetensorsSource, TensorSource};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{LlavaError, Result};

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipActivation {
    /// `x · σ(1.702 x)` (OpenAI's CLIP).
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
}

/// The vision tower's shape (`vision_config` of a CLIP or LLaVA `config.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Side of the (square) input picture.
    pub image_size: usize,
    /// Side of a patch.
    pub patch_size: usize,
    /// MLP activation.
    #[serde(default = "quick_gelu")]
    pub hidden_act: ClipActivation,
    /// LayerNorm epsilon.
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Input channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// The prefix the folder's tensor names carry (`""`, `vision_model.`, …; set by
    /// [`load_clip`]): an adapter saved for this tower names its layers the same way.
    #[serde(skip)]
    pub key_prefix: String,
}

fn quick_gelu() -> ClipActivation {
    ClipActivation::QuickGelu
}
fn layer_norm_eps() -> f64 {
    1e-5
}
fn three() -> usize {
    3
}

impl ClipVisionConfig {
    /// Reads the vision tower's shape from a folder's `config.json`: a `CLIPVisionModel`'s own
    /// keys, or the `vision_config` of a `CLIPModel` or a LLaVA.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| LlavaError::io(&path, e))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| LlavaError::config(&path, e.to_string()))?;
        let vision = json.get("vision_config").unwrap_or(&json);
        let config: Self = serde_json::from_value(vision.clone())
            .map_err(|e| LlavaError::config(&path, format!("vision tower: {e}")))?;
        config.validate(&path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(LlavaError::config(
                path,
                "`image_size` must be a multiple of `patch_size`",
            ));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(LlavaError::config(
                path,
                "`hidden_size` must be a multiple of `num_attention_heads`",
            ));
        }
        Ok(())
    }

    /// Patches per picture.
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// The layer whose output `select_layer` names (negative: from the end; `hidden_states`
    /// index 0 is the embeddings).
    pub fn hidden_state_index(&self, select_layer: i64) -> Option<usize> {
        let states = self.num_hidden_layers as i64 + 1;
        let index = if select_layer < 0 {
            states + select_layer
        } else {
            select_layer
        };
        (0..states).contains(&index).then_some(index as usize)
    }
}

/// LayerNorm with weight and bias, statistics in f32.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift, `[hidden]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Epsilon.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    fn new(hidden: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([hidden], device)),
            bias: Param::from_tensor(Tensor::zeros([hidden], device)),
            eps,
        }
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dtype = x.dtype();
        let x = x.cast(burn::tensor::DType::F32);
        let mean = x.clone().mean_dim(2);
        let centred = x - mean;
        let variance = centred.clone().powi_scalar(2).mean_dim(2);
        let normed = centred / (variance + self.eps).sqrt();
        let [hidden] = self.weight.dims();
        let w = self
            .weight
            .val()
            .cast(burn::tensor::DType::F32)
            .reshape([1, 1, hidden]);
        let b = self
            .bias
            .val()
            .cast(burn::tensor::DType::F32)
            .reshape([1, 1, hidden]);
        (normed * w + b).cast(dtype)
    }
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct ClipLayer<B: Backend> {
    /// Norm before attention.
    pub layer_norm1: LayerNorm<B>,
    /// Query projection.
    pub q_proj: FtLinear<B>,
    /// Key projection.
    pub k_proj: FtLinear<B>,
    /// Value projection.
    pub v_proj: FtLinear<B>,
    /// Output projection.
    pub out_proj: FtLinear<B>,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm<B>,
    /// MLP up.
    pub fc1: FtLinear<B>,
    /// MLP down.
    pub fc2: FtLinear<B>,
}

/// The vision tower.
#[derive(Module, Debug)]
pub struct ClipVision<B: Backend> {
    /// `[hidden]`.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// The patch convolution as a linear map over flattened `(channel, row, column)` patches.
    pub patch_embedding: FtLinear<B>,
    /// `[patches + 1, hidden]`.
    pub position_embedding: Param<Tensor<B, 2>>,
    /// `pre_layrnorm` (sic).
    pub pre_layernorm: LayerNorm<B>,
    /// Encoder layers.
    pub layers: Vec<ClipLayer<B>>,
    /// `post_layernorm` (loaded; not used by LLaVA's features).
    pub post_layernorm: LayerNorm<B>,
    /// Heads.
    pub heads: usize,
    /// Patch side.
    pub patch: usize,
    /// Activation of the MLP.
    pub quick_gelu: bool,
}

impl<B: Backend> ClipVision<B> {
    /// A zero-initialised tower of the given shape (weights are loaded afterwards).
    pub fn init(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let patch_in = config.num_channels * config.patch_size * config.patch_size;
        let layer = || ClipLayer {
            layer_norm1: LayerNorm::new(h, eps, device),
            q_proj: FtLinear::zeros(h, h, true, device),
            k_proj: FtLinear::zeros(h, h, true, device),
            v_proj: FtLinear::zeros(h, h, true, device),
            out_proj: FtLinear::zeros(h, h, true, device),
            layer_norm2: LayerNorm::new(h, eps, device),
            fc1: FtLinear::zeros(h, config.intermediate_size, true, device),
            fc2: FtLinear::zeros(config.intermediate_size, h, true, device),
        };
        Self {
            class_embedding: Param::from_tensor(Tensor::zeros([h], device)),
            patch_embedding: FtLinear::zeros(patch_in, h, false, device),
            position_embedding: Param::from_tensor(Tensor::zeros([config.patches() + 1, h], device)),
            pre_layernorm: LayerNorm::new(h, eps, device),
            layers: (0..config.num_hidden_layers).map(|_| layer()).collect(),
            post_layernorm: LayerNorm::new(h, eps, device),
            heads: config.num_attention_heads,
            patch: config.patch_size,
            quick_gelu: config.hidden_act == ClipActivation::QuickGelu,
        }
    }
}

impl<B: KernelBackend> ClipVision<B> {
    /// `hidden_states[0]`: patches embedded, class token first, positions added, pre-norm.
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, side, side]`
    /// - output: `[batch, patches + 1, hidden]`
    pub fn embed(&self, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, channels, height, width] = pixels.dims();
        let p = self.patch;
        let (gh, gw) = (height / p, width / p);
        let patches: Tensor<B, 3> = pixels
            .reshape([batch, channels, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch, gh * gw, channels * p * p]);
        let embedded = self.patch_embedding.forward(patches);
        let [hidden] = self.class_embedding.dims();
        let class = self
            .class_embedding
            .val()
            .reshape([1, 1, hidden])
            .expand([batch, 1, hidden])
            .cast(embedded.dtype());
        let x = Tensor::cat(vec![class, embedded], 1);
        let positions = self
            .position_embedding
            .val()
            .cast(x.dtype())
            .unsqueeze_dim::<3>(0);
        self.pre_layernorm.forward(x + positions)
    }

    /// Every hidden state up to `last` (`hidden_states[0..=last]` in transformers' numbering).
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, side, side]`
    /// - output: `last + 1` tensors `[batch, patches + 1, hidden]`
    pub fn hidden_states(&self, pixels: Tensor<B, 4>, last: usize) -> Vec<Tensor<B, 3>> {
        let mut states = vec![self.embed(pixels)];
        for layer in self.layers.iter().take(last) {
            let x = states
                .last()
                .expect("invariant: the embeddings are the first state")
                .clone();
            states.push(self.layer_forward(layer, x));
        }
        states
    }

    /// LLaVA's features: hidden state `index` without the class token.
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, side, side]`
    /// - output: `[batch, patches, hidden]`
    pub fn features(&self, pixels: Tensor<B, 4>, index: usize) -> Tensor<B, 3> {
        let mut x = self.embed(pixels);
        for layer in self.layers.iter().take(index) {
            x = self.layer_forward(layer, x);
        }
        let [batch, seq, hidden] = x.dims();
        x.slice([0..batch, 1..seq, 0..hidden])
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    fn layer_forward(&self, layer: &ClipLayer<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = x.clone() + self.attention(layer, layer.layer_norm1.forward(x));
        let up = layer.fc1.forward(layer.layer_norm2.forward(h.clone()));
        let act = if self.quick_gelu {
            up.clone() * sigmoid(up * 1.702)
        } else {
            gelu(up)
        };
        h + layer.fc2.forward(act)
    }

    /// Bidirectional multi-head attention with biases.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    fn attention(&self, layer: &ClipLayer<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.heads;
        let split = |t: Tensor<B, 3>| t.reshape([batch, seq, self.heads, head_dim]).swap_dims(1, 2);
        let q = split(layer.q_proj.forward(x.clone())) * (head_dim as f64).powf(-0.5);
        let k = split(layer.k_proj.forward(x.clone()));
        let v = split(layer.v_proj.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3));
        let dtype = scores.dtype();
        let weights = softmax(scores.cast(burn::tensor::DType::F32), 3).cast(dtype);
        let out = weights.matmul(v).swap_dims(1, 2).reshape([batch, seq, hidden]);
        layer.out_proj.forward(out)
    }
}

/// The key prefixes a vision tower's tensors may carry: none (a transformers-5
/// `CLIPVisionModel`), a full `CLIPModel`'s, or an HF LLaVA's (as transformers 5 and 4 save it).
const PREFIXES: [&str; 4] = ["", "vision_model.", "vision_tower.", "vision_tower.vision_model."];

/// Loads a vision tower from a folder (`config.json` + safetensors).
pub fn load_clip<B: Backend>(dir: &Path, device: &B::Device) -> Result<(ClipVision<B>, ClipVisionConfig)> {
    let mut config = ClipVisionConfig::from_dir(dir)?;
    let source = SafetensorsSource::open_dir(dir)?;
    let prefix = PREFIXES
        .iter()
        .find(|p| {
            source
                .shape(&format!("{p}embeddings.patch_embedding.weight"))
                .is_some()
        })
        .ok_or_else(|| {
            LlavaError::weights(dir, "no CLIP vision tower (`embeddings.patch_embedding.weight`)")
        })?;
    config.key_prefix = (*prefix).to_owned();
    let mut model = ClipVision::init(&config, device);
    let mut reader = Reader {
        source: &source,
        prefix,
        dir,
        device,
    };
    model.class_embedding =
        Param::from_tensor(reader.tensor::<1>("embeddings.class_embedding", [config.hidden_size])?);
    let h = config.hidden_size;
    let patch_in = config.num_channels * config.patch_size * config.patch_size;
    let conv = reader.tensor::<4>(
        "embeddings.patch_embedding.weight",
        [h, config.num_channels, config.patch_size, config.patch_size],
    )?;
    model.patch_embedding = FtLinear::from_weight(conv.reshape([h, patch_in]), None);
    model.position_embedding = Param::from_tensor(
        reader.tensor::<2>("embeddings.position_embedding.weight", [config.patches() + 1, h])?,
    );
    model.pre_layernorm = reader.layer_norm("pre_layrnorm", h, config.layer_norm_eps)?;
    model.post_layernorm = reader.layer_norm("post_layernorm", h, config.layer_norm_eps)?;
    for (i, layer) in model.layers.iter_mut().enumerate() {
        let name = |part: &str| format!("encoder.layers.{i}.{part}");
        layer.layer_norm1 = reader.layer_norm(&name("layer_norm1"), h, config.layer_norm_eps)?;
        layer.layer_norm2 = reader.layer_norm(&name("layer_norm2"), h, config.layer_norm_eps)?;
        layer.q_proj = reader.linear(&name("self_attn.q_proj"), h, h)?;
        layer.k_proj = reader.linear(&name("self_attn.k_proj"), h, h)?;
        layer.v_proj = reader.linear(&name("self_attn.v_proj"), h, h)?;
        layer.out_proj = reader.linear(&name("self_attn.out_proj"), h, h)?;
        layer.fc1 = reader.linear(&name("mlp.fc1"), h, config.intermediate_size)?;
        layer.fc2 = reader.linear(&name("mlp.fc2"), config.intermediate_size, h)?;
    }
    Ok((model, config))
}

/// Reads tensors by name under a prefix, checking shapes.
struct Reader<'a, B: Backend> {
    source: &'a SafetensorsSource,
    prefix: &'a str,
    dir: &'a Path,
    device: &'a B::Device,
}

impl<B: Backend> Reader<'_, B> {
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>> {
        let full = format!("{}{name}", self.prefix);
        let host = self
            .source
            .read(&full)
            .map_err(|_| LlavaError::weights(self.dir, format!("missing tensor `{full}`")))?;
        if host.shape != shape {
            return Err(LlavaError::weights(
                self.dir,
                format!("`{full}` has shape {:?}; the config says {shape:?}", host.shape),
            ));
        }
        Ok(Tensor::from_data(TensorData::new(host.data, shape), self.device))
    }

    fn layer_norm(&mut self, name: &str, hidden: usize, eps: f64) -> Result<LayerNorm<B>> {
        Ok(LayerNorm {
            weight: Param::from_tensor(self.tensor::<1>(&format!("{name}.weight"), [hidden])?),
            bias: Param::from_tensor(self.tensor::<1>(&format!("{name}.bias"), [hidden])?),
            eps,
        })
    }

    fn linear(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<FtLinear<B>> {
        let weight = self.tensor::<2>(&format!("{name}.weight"), [d_out, d_in])?;
        let bias = self.tensor::<1>(&format!("{name}.bias"), [d_out])?;
        Ok(FtLinear::from_weight(weight, Some(bias)))
    }
}
