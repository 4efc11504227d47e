//! XTuner's `ProjectorModel`: `Linear(visual → llm)` then `depth − 1` × [GELU, `Linear(llm →
//! llm)`], with biases; tensors `model.0.*`, `model.2.*`, …; `config.json` with
//! `visual_hidden_size`, `llm_hidden_size`, `depth`, `hidden_act`, `bias`.

use std::path::Path;

use burn::module::Module;
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use ft_kernels::KernelBackend;
use ft_lora::linear::FtLinear;
use ft_model::weights::{SafetensorsSource, TensorSource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{LlavaError, Result};

/// `projector/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectorConfig {
    /// Width of the vision features.
    pub visual_hidden_size: usize,
    /// Width of the LLM's embeddings.
    pub llm_hidden_size: usize,
    /// Linear layers.
    #[serde(default = "two")]
    pub depth: usize,
    /// Activation between the layers (`gelu`).
    #[serde(default = "gelu_name")]
    pub hidden_act: String,
    /// Whether the layers have biases.
    #[serde(default = "yes")]
    pub bias: bool,
}

fn two() -> usize {
    2
}
fn gelu_name() -> String {
    "gelu".into()
}
fn yes() -> bool {
    true
}

impl ProjectorConfig {
    /// XTuner's default: depth 2, GELU, biases.
    pub fn new(visual_hidden_size: usize, llm_hidden_size: usize) -> Self {
        Self {
            visual_hidden_size,
            llm_hidden_size,
            depth: 2,
            hidden_act: gelu_name(),
            bias: true,
        }
    }

    fn validate(&self, path: &Path) -> Result<()> {
        if self.depth == 0 {
            return Err(LlavaError::config(path, "`depth` must be at least 1"));
        }
        if self.hidden_act != "gelu" {
            return Err(LlavaError::config(
                path,
                format!("`hidden_act` `{}`: only `gelu` is supported", self.hidden_act),
            ));
        }
        Ok(())
    }

    /// `(in, out)` of each linear layer.
    fn shapes(&self) -> Vec<(usize, usize)> {
        (0..self.depth)
            .map(|i| {
                let d_in = if i == 0 {
                    self.visual_hidden_size
                } else {
                    self.llm_hidden_size
                };
                (d_in, self.llm_hidden_size)
            })
            .collect()
    }
}

/// The projector: vision features to LLM embeddings. Its weights are f32 whatever the base's
/// dtype (it is trained: AdamW's small updates would be lost to bf16 rounding), as PEFT keeps
/// trainable tensors under autocast; it computes in f32 and returns the input's dtype.
#[derive(Module, Debug)]
pub struct Projector<B: Backend> {
    /// The linear layers, GELU between them.
    pub layers: Vec<FtLinear<B>>,
}

impl<B: Backend> Projector<B> {
    /// A fresh projector, initialised as PyTorch's `nn.Linear` (weights and biases uniform in
    /// ±1/√fan_in), from `seed`.
    pub fn init(config: &ProjectorConfig, seed: u64, device: &B::Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut uniform =
            |n: usize, bound: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let layers = config
            .shapes()
            .into_iter()
            .map(|(d_in, d_out)| {
                let bound = 1.0 / (d_in as f32).sqrt();
                let weight = Tensor::from_data(
                    TensorData::new(uniform(d_out * d_in, bound), [d_out, d_in]),
                    (device, DType::F32),
                );
                let bias = config.bias.then(|| {
                    Tensor::from_data(
                        TensorData::new(uniform(d_out, bound), [d_out]),
                        (device, DType::F32),
                    )
                });
                FtLinear::from_weight(weight, bias)
            })
            .collect();
        Self { layers }
    }
}

impl<B: KernelBackend> Projector<B> {
    /// # Shapes
    /// - features: `[batch, patches, visual_hidden]`
    /// - output: `[batch, patches, llm_hidden]`
    pub fn forward(&self, features: Tensor<B, 3>) -> Tensor<B, 3> {
        let compute = features.dtype();
        let mut x = features.cast(FloatDType::F32);
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                x = gelu(x);
            }
            x = layer.forward(x);
        }
        x.cast(FloatDType::from(compute))
    }
}

/// Reads `config.json` of a projector folder.
pub fn read_projector_config(dir: &Path) -> Result<ProjectorConfig> {
    let path = dir.join("config.json");
    if !path.exists() {
        return Err(LlavaError::config(
            &path,
            "a projector folder needs its `config.json`",
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| LlavaError::io(&path, e))?;
    let config: ProjectorConfig =
        serde_json::from_str(&text).map_err(|e| LlavaError::config(&path, e.to_string()))?;
    config.validate(&path)?;
    Ok(config)
}

/// Loads a projector saved in XTuner's layout.
pub fn load_projector<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Projector<B>, ProjectorConfig)> {
    let config = read_projector_config(dir)?;
    let source = SafetensorsSource::open_dir(dir)?;
    let projector = read_layers(
        &source,
        &config,
        dir,
        |i, part| format!("model.{}.{part}", 2 * i),
        device,
    )?;
    Ok((projector, config))
}

/// Loads the projector of a Hugging Face LLaVA folder (`multi_modal_projector.linear_{1,2}.*`,
/// or under `model.` as transformers 5 holds it); its shape comes from `config.json`
/// (`vision_config.hidden_size`, `text_config.hidden_size`, `projector_hidden_act`,
/// `multimodal_projector_bias`).
pub fn load_hf_llava_projector<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Projector<B>, ProjectorConfig)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| LlavaError::io(&path, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LlavaError::config(&path, e.to_string()))?;
    let width = |section: &str| {
        json.get(section)
            .and_then(|c| c.get("hidden_size"))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| LlavaError::config(&path, format!("no `{section}.hidden_size`")))
    };
    let mut config = ProjectorConfig::new(width("vision_config")? as usize, width("text_config")? as usize);
    if let Some(act) = json
        .get("projector_hidden_act")
        .and_then(serde_json::Value::as_str)
    {
        config.hidden_act = act.to_owned();
    }
    if let Some(bias) = json
        .get("multimodal_projector_bias")
        .and_then(serde_json::Value::as_bool)
    {
        config.bias = bias;
    }
    config.validate(&path)?;
    let source = SafetensorsSource::open_dir(dir)?;
    let prefix = if source.shape("multi_modal_projector.linear_1.weight").is_some() {
        ""
    } else {
        "model."
    };
    let name = |i: usize, part: &str| format!("{prefix}multi_modal_projector.linear_{}.{part}", i + 1);
    let projector = read_layers(&source, &config, dir, name, device)?;
    Ok((projector, config))
}

/// The projector's layers, layer `i`'s tensor `part` (`weight`, `bias`) read as `name(i, part)`.
fn read_layers<B: Backend>(
    source: &SafetensorsSource,
    config: &ProjectorConfig,
    dir: &Path,
    name: impl Fn(usize, &str) -> String,
    device: &B::Device,
) -> Result<Projector<B>> {
    let mut layers = Vec::with_capacity(config.depth);
    for (i, (d_in, d_out)) in config.shapes().into_iter().enumerate() {
        let read = |part: &str, shape: Vec<usize>| -> Result<Vec<f32>> {
            let name = name(i, part);
            let host = source
                .read(&name)
                .map_err(|_| LlavaError::weights(dir, format!("missing tensor `{name}`")))?;
            if host.shape != shape {
                return Err(LlavaError::weights(
                    dir,
                    format!("`{name}` has shape {:?}; config.json says {shape:?}", host.shape),
                ));
            }
            Ok(host.data)
        };
        let weight = Tensor::from_data(
            TensorData::new(read("weight", vec![d_out, d_in])?, [d_out, d_in]),
            (device, DType::F32),
        );
        let bias = match config.bias {
            true => Some(Tensor::from_data(
                TensorData::new(read("bias", vec![d_out])?, [d_out]),
                (device, DType::F32),
            )),
            false => None,
        };
        layers.push(FtLinear::from_weight(weight, bias));
    }
    Ok(Projector { layers })
}

/// Writes a projector in XTuner's layout (`config.json` with `ProjectorModel`,
/// `model.safetensors` in f32), each file atomically.
pub fn save_projector<B: Backend>(
    projector: &Projector<B>,
    config: &ProjectorConfig,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| LlavaError::io(dir, e))?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, layer) in projector.layers.iter().enumerate() {
        let weight = layer
            .dense_weight()
            .expect("invariant: a projector's layers are dense")
            .val();
        tensors.push(host_bytes(format!("model.{}.weight", 2 * i), weight));
        if let Some(bias) = &layer.bias {
            tensors.push(host_bytes(format!("model.{}.bias", 2 * i), bias.val()));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .expect("invariant: the byte count matches the shape");
            (name.clone(), view)
        })
        .collect();
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_owned(),
        "pt".to_owned(),
    )]));
    let bytes =
        safetensors::serialize(views, metadata).map_err(|e| LlavaError::weights(dir, e.to_string()))?;
    ft_io::write_file_atomically(&dir.join("model.safetensors"), &bytes)?;
    let mut json = serde_json::to_value(config).expect("invariant: the config serialises");
    json["architectures"] = serde_json::json!(["ProjectorModel"]);
    json["model_type"] = serde_json::json!("projector");
    json["torch_dtype"] = serde_json::json!("float32");
    let text = serde_json::to_string_pretty(&json).expect("invariant: JSON serialises");
    ft_io::write_file_atomically(&dir.join("config.json"), text.as_bytes())?;
    Ok(())
}

fn host_bytes<B: Backend, const D: usize>(
    name: String,
    tensor: Tensor<B, D>,
) -> (String, Vec<usize>, Vec<u8>) {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .cast(burn::tensor::DType::F32)
        .into_data()
        .into_vec::<f32>()
        .expect("invariant: an f32 tensor reads as f32");
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    (name, shape, bytes)
}
