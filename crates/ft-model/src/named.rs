//! The model's own weights by Hugging Face name (`model.embed_tokens.weight`,
//! `model.layers.0.input_layernorm.weight`, …): read one, replace one, or copy one to the host.
//! Full fine-tuning updates them through this, and full-model checkpoints are written from it.
//! LoRA adapters are not included (see [`crate::adapters`]).

use burn::module::Param;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::config::ModelConfig;
use crate::families::{self, linear, linear_mut};
use crate::model::CausalLm;
use crate::weights::{HostTensor, expected_tensors};

/// A weight of either rank: norms and biases are vectors, everything else a matrix.
#[derive(Debug, Clone)]
pub enum NamedTensor<B: Backend> {
    /// `[n]`: norm weights and biases.
    Vector(Tensor<B, 1>),
    /// `[rows, cols]`: embeddings and linear weights (PyTorch layout `[out, in]`).
    Matrix(Tensor<B, 2>),
}

impl<B: Backend> NamedTensor<B> {
    /// The PyTorch shape.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            NamedTensor::Vector(t) => t.dims().to_vec(),
            NamedTensor::Matrix(t) => t.dims().to_vec(),
        }
    }

    /// The values as a matrix (a vector becomes one row `[1, n]`), for code that treats every
    /// weight alike (the optimizer).
    pub fn to_matrix(&self) -> Tensor<B, 2> {
        match self {
            NamedTensor::Vector(t) => t.clone().unsqueeze_dim(0),
            NamedTensor::Matrix(t) => t.clone(),
        }
    }

    /// A copy on the host in f32.
    pub fn to_host(&self) -> HostTensor {
        let shape = self.shape();
        let data = match self {
            NamedTensor::Vector(t) => t.to_data(),
            NamedTensor::Matrix(t) => t.to_data(),
        };
        let data = data
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("invariant: converted to f32");
        HostTensor { shape, data }
    }
}

/// Where a named weight lives.
enum Location<'n> {
    Embed,
    FinalNorm,
    AttnNorm(usize),
    MlpNorm(usize),
    LinearWeight(&'n str),
    LinearBias(&'n str),
}

fn locate<'n>(config: &ModelConfig, name: &'n str) -> Option<Location<'n>> {
    let n = families::names(config.family);
    if name == n.embed {
        return Some(Location::Embed);
    }
    if name == n.norm {
        return Some(Location::FinalNorm);
    }
    if let Some(module) = name.strip_suffix(".weight") {
        if let Some(rest) = module.strip_prefix("model.layers.")
            && let Some((index, local)) = rest.split_once('.')
            && let Ok(i) = index.parse::<usize>()
            && i < config.num_layers
        {
            if local == n.attn_norm {
                return Some(Location::AttnNorm(i));
            }
            if local == n.mlp_norm {
                return Some(Location::MlpNorm(i));
            }
        }
        return Some(Location::LinearWeight(module));
    }
    name.strip_suffix(".bias").map(Location::LinearBias)
}

/// Names of every weight the model holds (its checkpoint tensors; a tied head has none), in
/// checkpoint order.
pub fn weight_names(config: &ModelConfig) -> Vec<String> {
    expected_tensors(config).into_iter().map(|(n, _)| n).collect()
}

/// The weight called `name`; `None` for an unknown name or an NF4 (non-trainable) base.
pub fn named_weight<B: Backend>(
    model: &CausalLm<B>,
    config: &ModelConfig,
    name: &str,
) -> Option<NamedTensor<B>> {
    Some(match locate(config, name)? {
        Location::Embed => NamedTensor::Matrix(model.embed.val()),
        Location::FinalNorm => NamedTensor::Vector(model.norm.weight.val()),
        Location::AttnNorm(i) => NamedTensor::Vector(model.layers[i].attn_norm.weight.val()),
        Location::MlpNorm(i) => NamedTensor::Vector(model.layers[i].mlp_norm.weight.val()),
        Location::LinearWeight(m) => NamedTensor::Matrix(linear(model, config, m)?.dense_weight()?.val()),
        Location::LinearBias(m) => NamedTensor::Vector(linear(model, config, m)?.bias.as_ref()?.val()),
    })
}

/// Replaces the weight called `name` by `value` (same rank and shape), keeping its parameter
/// id; the new value requires a gradient. Returns `false` when there is no such dense weight.
pub fn set_named_weight<B: Backend>(
    model: &mut CausalLm<B>,
    config: &ModelConfig,
    name: &str,
    value: NamedTensor<B>,
) -> bool {
    let Some(location) = locate(config, name) else {
        return false;
    };
    fn put<B: Backend, const D: usize>(slot: &mut Param<Tensor<B, D>>, value: Tensor<B, D>) {
        *slot = Param::initialized(slot.id, value.require_grad());
    }
    match (location, value) {
        (Location::Embed, NamedTensor::Matrix(v)) => put(&mut model.embed, v),
        (Location::FinalNorm, NamedTensor::Vector(v)) => put(&mut model.norm.weight, v),
        (Location::AttnNorm(i), NamedTensor::Vector(v)) => put(&mut model.layers[i].attn_norm.weight, v),
        (Location::MlpNorm(i), NamedTensor::Vector(v)) => put(&mut model.layers[i].mlp_norm.weight, v),
        (Location::LinearWeight(m), NamedTensor::Matrix(v)) => {
            let Some(l) = linear_mut(model, config, m) else {
                return false;
            };
            let Some(id) = l.dense_weight().map(|w| w.id) else {
                return false;
            };
            l.base = ft_lora::linear::LinearBase::Dense(Param::initialized(id, v.require_grad()));
        }
        (Location::LinearBias(m), NamedTensor::Vector(v)) => {
            let Some(bias) = linear_mut(model, config, m).and_then(|l| l.bias.as_mut()) else {
                return false;
            };
            put(bias, v);
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HfConfig;
    use burn_flex::Flex;

    fn tiny() -> ModelConfig {
        let json = r#"{"model_type":"qwen2","hidden_size":8,"intermediate_size":16,"num_hidden_layers":2,
            "num_attention_heads":2,"num_key_value_heads":1,"vocab_size":12,"rms_norm_eps":1e-6,
            "tie_word_embeddings":false}"#;
        let hf = serde_json::from_str::<HfConfig>(json).unwrap();
        ModelConfig::from_hf(&hf, std::path::Path::new("config.json")).unwrap()
    }

    #[test]
    fn every_checkpoint_tensor_is_readable_and_writable_by_name() {
        let config = tiny();
        let device = Default::default();
        let mut model = CausalLm::<Flex>::init(&config, &device);
        let expected = expected_tensors(&config);
        assert!(
            expected.iter().any(|(n, _)| n.ends_with("q_proj.bias")),
            "qwen2 has q/k/v biases"
        );
        for (name, shape) in &expected {
            let w = named_weight(&model, &config, name).unwrap_or_else(|| panic!("{name} not found"));
            assert_eq!(&w.shape(), shape, "{name}");
            let replaced = match w {
                NamedTensor::Vector(t) => NamedTensor::Vector(t.ones_like().mul_scalar(3.0)),
                NamedTensor::Matrix(t) => NamedTensor::Matrix(t.ones_like().mul_scalar(3.0)),
            };
            assert!(set_named_weight(&mut model, &config, name, replaced), "{name}");
            let back = named_weight(&model, &config, name).unwrap().to_host();
            assert!(back.data.iter().all(|&v| v == 3.0), "{name} was replaced");
        }
        assert!(named_weight(&model, &config, "model.layers.9.mlp.up_proj.weight").is_none());
        assert!(named_weight(&model, &config, "nonsense").is_none());
    }
}
