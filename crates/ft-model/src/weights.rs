//! Weight sources: memory-mapped safetensors (single file or sharded with
//! `model.safetensors.index.json`), F32/F16/BF16, read tensor by tensor as f32; and the loader
//! that fills a [`CausalLm`] by Hugging Face names, listing missing and unexpected tensors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use ft_io::Dtype;
use ft_io::safetensors::{MappedSafetensors, TensorEntry};
use ft_lora::linear::{LinearBase, Nf4Weight};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::families::{self, linear_mut};
use crate::model::{CausalLm, LinearStorage};
use crate::named::{NamedTensor, set_named_weight};

/// A tensor on the host in f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// PyTorch shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// Anything that yields tensors by Hugging Face name (safetensors folders, GGUF files).
pub trait TensorSource {
    /// Every tensor name.
    fn names(&self) -> Vec<String>;
    /// The shape of a tensor, if present.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// A tensor's values as f32.
    fn read(&self, name: &str) -> Result<HostTensor>;
    /// What to name in errors.
    fn origin(&self) -> &Path;
}

/// Where a tensor lives: its shard and header entry.
type TensorLocation = (usize, TensorEntry);

/// A safetensors checkpoint: one file or shards listed in `model.safetensors.index.json`.
pub struct SafetensorsSource {
    origin: PathBuf,
    shards: Vec<MappedSafetensors>,
    index: BTreeMap<String, TensorLocation>,
}

impl SafetensorsSource {
    /// Opens the weights of a model folder.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let files = ft_io::hf_folder::WeightFiles::of(dir)?.paths;
        Self::open_files(dir, &files)
    }

    /// Opens the weights of a model folder as a causal LM's: in a Hugging Face LLaVA folder, the
    /// language model's tensors under their own names (`language_model.model.*` as transformers
    /// saves them, or `model.language_model.*` as it holds them, → `model.*`;
    /// `language_model.lm_head.*` → `lm_head.*`); the vision tower and projector are left out.
    pub fn open_llm_dir(dir: &Path) -> Result<Self> {
        let mut source = Self::open_dir(dir)?;
        let llava = source
            .index
            .keys()
            .any(|k| k.starts_with("language_model.") || k.starts_with("model.language_model."));
        if !llava || source.index.contains_key("model.embed_tokens.weight") {
            return Ok(source);
        }
        let renamed: BTreeMap<String, TensorLocation> = std::mem::take(&mut source.index)
            .into_iter()
            .filter_map(|(name, location)| Some((language_model_name(&name)?, location)))
            .collect();
        source.index = renamed;
        Ok(source)
    }

    /// Opens the given safetensors files.
    pub fn open_files(origin: &Path, files: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for (i, path) in files.iter().enumerate() {
            let shard = MappedSafetensors::open(path)?;
            for entry in &shard.header.entries {
                index.insert(entry.name.clone(), (i, entry.clone()));
            }
            shards.push(shard);
        }
        Ok(Self {
            origin: origin.to_path_buf(),
            shards,
            index,
        })
    }
}

/// A LLaVA tensor's name in its language model, if it belongs to it.
fn language_model_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("language_model.") {
        return Some(rest.to_owned());
    }
    if let Some(rest) = name.strip_prefix("model.language_model.") {
        return Some(format!("model.{rest}"));
    }
    (name == "lm_head.weight").then(|| name.to_owned())
}

impl TensorSource for SafetensorsSource {
    fn names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.index.get(name).map(|(_, entry)| entry.shape.clone())
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        let (shard, entry) = self.index.get(name).ok_or_else(|| ModelError::Tensors {
            path: self.origin.clone(),
            message: format!("missing tensor `{name}`"),
        })?;
        let shard = &self.shards[*shard];
        if !matches!(entry.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(ModelError::Dtype {
                path: shard.path.clone(),
                name: name.to_owned(),
                dtype: entry.dtype.as_str().to_owned(),
            });
        }
        let data =
            ft_io::decode_to_f32(shard.tensor_bytes(entry), entry.dtype).expect("invariant: a float dtype");
        Ok(HostTensor {
            shape: entry.shape.clone(),
            data,
        })
    }

    fn origin(&self) -> &Path {
        &self.origin
    }
}

/// Every tensor the model expects, with its shape.
pub fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let n = families::names(config.family);
    let h = config.hidden_size;
    let mut out = vec![(n.embed.to_owned(), vec![config.vocab_size, h])];
    let (q, kv, i) = (
        config.num_heads * config.head_dim,
        config.num_kv_heads * config.head_dim,
        config.intermediate_size,
    );
    for layer in 0..config.num_layers {
        let p = format!("model.layers.{layer}.");
        out.push((format!("{p}{}.weight", n.attn_norm), vec![h]));
        out.push((format!("{p}{}.weight", n.mlp_norm), vec![h]));
        for (name, role) in n.linears {
            use families::LinearRole::*;
            let (o, input, bias) = match role {
                Q => (q, h, config.qkv_bias),
                K | V => (kv, h, config.qkv_bias),
                Wqkv => (q + 2 * kv, h, config.qkv_bias),
                O => (h, q, config.o_bias),
                Gate | Up => (i, h, config.mlp_bias),
                Down => (h, i, config.mlp_bias),
            };
            out.push((format!("{p}{name}.weight"), vec![o, input]));
            if bias {
                out.push((format!("{p}{name}.bias"), vec![o]));
            }
        }
    }
    out.push((n.norm.to_owned(), vec![h]));
    if !config.tie_word_embeddings {
        out.push((format!("{}.weight", n.lm_head), vec![config.vocab_size, h]));
    }
    out
}

/// Names of tensors a checkpoint may hold that the model does not use.
fn ignorable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq") || name.ends_with(".masked_bias") || name.ends_with("attn.bias")
}

/// Fills `model` from `source`: every expected tensor must be present with the right shape;
/// tensors the model does not use are an error too (listed), except rotary buffers and, for a
/// tied model, `lm_head.weight`.
pub fn load_weights<B: Backend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    source: &dyn TensorSource,
) -> Result<()> {
    load_weights_as(model, config, source, LinearStorage::Dense)
}

/// [`load_weights`] with a choice of storage for the linear layers inside decoder blocks: with
/// [`LinearStorage::Nf4`] each one is quantised on the host as soon as it is read, so no dense
/// copy of it ever reaches the device and the peak stays near the quantised size plus one layer
/// (embeddings, norms and the LM head stay dense; biases stay dense and frozen).
pub fn load_weights_as<B: Backend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    source: &dyn TensorSource,
    storage: LinearStorage,
) -> Result<()> {
    let expected = expected_tensors(config);
    let available: BTreeSet<String> = source.names().into_iter().collect();
    let wanted: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|n| !available.contains(*n))
        .collect();
    let lm_head = format!("{}.weight", families::names(config.family).lm_head);
    let unexpected: Vec<&String> = available
        .iter()
        .filter(|n| !wanted.contains(n.as_str()) && !ignorable(n))
        .filter(|n| !(config.tie_word_embeddings && **n == lm_head))
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(ModelError::Tensors {
            path: source.origin().to_path_buf(),
            message: format!(
                "checkpoint does not fit the {:?} model: missing {:?}; unexpected {:?}",
                config.family,
                truncate(&missing),
                truncate(&unexpected)
            ),
        });
    }
    let device = model.embed.device();
    // Progress goes to `tracing` (the binaries show it): every quarter of a large checkpoint.
    let quarter = (expected.len() / 4).max(1);
    for (k, (name, shape)) in expected.iter().enumerate() {
        if expected.len() >= 100 && k > 0 && k % quarter == 0 {
            tracing::info!(
                "loading weights of {}: {k} of {} tensors",
                source.origin().display(),
                expected.len()
            );
        }
        let found = source.shape(name).unwrap_or_default();
        if &found != shape {
            return Err(ModelError::Shape {
                path: source.origin().to_path_buf(),
                name: name.clone(),
                expected: shape.clone(),
                found,
            });
        }
        let host = source.read(name)?;
        if host.data.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite {
                path: source.origin().to_path_buf(),
                name: name.clone(),
            });
        }
        assign(model, config, name, host, &device, storage)?;
    }
    Ok(())
}

fn truncate<T: std::fmt::Debug>(items: &[T]) -> String {
    if items.len() <= 8 {
        format!("{items:?}")
    } else {
        format!("{:?} and {} more", &items[..8], items.len() - 8)
    }
}

fn assign<B: Backend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    name: &str,
    host: HostTensor,
    device: &B::Device,
    storage: LinearStorage,
) -> Result<()> {
    // QLoRA storage: a decoder-block linear weight is quantised on the host, never uploaded dense.
    if let LinearStorage::Nf4 { double_quant } = storage
        && name.starts_with("model.layers.")
        && let Some(module) = name.strip_suffix(".weight")
        && let Some(linear) = linear_mut(model, config, module)
    {
        let (out, d_in) = (host.shape[0], host.shape[1]);
        let nf4 =
            Nf4Weight::quantize(&host.data, [out, d_in], double_quant, device).map_err(ModelError::Nf4)?;
        linear.base = LinearBase::Nf4(nf4);
        if let Some(bias) = linear.bias.take() {
            linear.bias = Some(bias.set_require_grad(false));
        }
        return Ok(());
    }
    let data = TensorData::new(host.data, host.shape.clone());
    let value = match host.shape.len() {
        1 => NamedTensor::Vector(Tensor::from_data(data, device)),
        _ => NamedTensor::Matrix(Tensor::from_data(data, device)),
    };
    let assigned = set_named_weight(model, config, name, value);
    assert!(assigned, "invariant: `{name}` comes from expected_tensors");
    Ok(())
}
