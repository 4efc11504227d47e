//! LoRA over a whole set of named linear layers (an LLM's, a CLIP tower's): attach fresh adapters,
//! load a PEFT adapter's A/B into the named layers, read them back out in PEFT's layout, and the
//! trainable tensors by name. A model exposes its layers through [`Linears`] / [`LinearsMut`];
//! everything else is written once here.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;

use crate::linear::{FtLinear, LoraSpec};
use crate::peft::{Adapter, AdapterWeights, Half, LoraMatrix, LoraPair, PeftError};

/// A set of linear layers, each under a stable full name.
pub trait Linears<B: Backend> {
    /// Every linear layer's name, in checkpoint order.
    fn linear_names(&self) -> Vec<String>;
    /// The layer called `name`.
    fn linear(&self, name: &str) -> Option<&FtLinear<B>>;
}

/// A set of linear layers that can be changed.
pub trait LinearsMut<B: Backend>: Linears<B> {
    /// The layer called `name`, to change.
    fn linear_mut(&mut self, name: &str) -> Option<&mut FtLinear<B>>;
}

/// Every linear layer as `(full name, [out, in])`, in checkpoint order.
pub fn linear_shapes<B: Backend>(set: &impl Linears<B>) -> Vec<(String, [usize; 2])> {
    set.linear_names()
        .into_iter()
        .filter_map(|name| {
            let (out, d_in) = set.linear(&name)?.shape();
            Some((name, [out, d_in]))
        })
        .collect()
}

/// Attaches a fresh adapter (PEFT init: A kaiming-uniform, B = 0) to each layer of `names`. One
/// host-side generator, drawn in the order of `names`: the same seed gives the same adapters on
/// every backend.
pub fn attach_new_loras<B: Backend>(
    set: &mut impl LinearsMut<B>,
    names: &[String],
    spec: LoraSpec,
    seed: u64,
    device: &B::Device,
) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        set.linear_mut(name)
            .expect("invariant: the names come from the set")
            .set_new_lora(spec, &mut rng, device);
    }
}

/// Loads a PEFT adapter into the named layers (trainable, with its scale and dropout); returns
/// the adapted names. The first tensor that does not fit (a layer the set lacks, a shape) is
/// named in the error, and nothing is changed then.
pub fn attach_adapter<B: Backend>(
    set: &mut impl LinearsMut<B>,
    adapter: &Adapter,
    device: &B::Device,
) -> Result<Vec<String>, PeftError> {
    adapter.weights.check_against_model(&linear_shapes(set))?;
    let (scale, dropout) = (adapter.scale(), adapter.config.lora_dropout);
    for (name, pair) in &adapter.weights.modules {
        let a = to_tensor::<B>(&pair.a, device);
        let b = to_tensor::<B>(&pair.b, device);
        set.linear_mut(name)
            .expect("invariant: checked against the set")
            .set_lora(a, b, scale, dropout);
    }
    Ok(adapter.weights.modules.keys().cloned().collect())
}

/// The A/B of every adapted layer, keyed by name (PEFT layout: `A [r, in]`, `B [out, r]`).
pub fn lora_weights<B: Backend>(set: &impl Linears<B>) -> AdapterWeights {
    let modules: BTreeMap<String, LoraPair> = set
        .linear_names()
        .into_iter()
        .filter_map(|name| {
            let lora = set.linear(&name)?.lora.as_ref()?;
            let pair = LoraPair {
                a: to_matrix(lora.a.val()),
                b: to_matrix(lora.b.val()),
            };
            Some((name, pair))
        })
        .collect();
    AdapterWeights { modules }
}

/// A trainable adapter tensor: the layer it belongs to and which half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraParam {
    /// Layer name (`model.layers.0.self_attn.q_proj`).
    pub module: String,
    /// A or B.
    pub half: Half,
}

impl LoraParam {
    /// PEFT's tensor name without the `base_model.model.` prefix.
    pub fn name(&self) -> String {
        match self.half {
            Half::A => format!("{}.lora_A.weight", self.module),
            Half::B => format!("{}.lora_B.weight", self.module),
        }
    }

    /// The current value.
    pub fn get<B: Backend>(&self, set: &impl Linears<B>) -> Tensor<B, 2> {
        let lora = set
            .linear(&self.module)
            .and_then(|l| l.lora.as_ref())
            .expect("invariant: listed by lora_params");
        match self.half {
            Half::A => lora.a.val(),
            Half::B => lora.b.val(),
        }
    }

    /// Replaces the value (keeping the parameter id), as a trainable leaf.
    pub fn set<B: Backend>(&self, set: &mut impl LinearsMut<B>, value: Tensor<B, 2>) {
        let lora = set
            .linear_mut(&self.module)
            .and_then(|l| l.lora.as_mut())
            .expect("invariant: listed by lora_params");
        let slot = match self.half {
            Half::A => &mut lora.a,
            Half::B => &mut lora.b,
        };
        *slot = Param::initialized(slot.id, value.require_grad());
    }
}

/// The adapters' tensors, in a fixed order (layer order, A before B).
pub fn lora_params<B: Backend>(set: &impl Linears<B>) -> Vec<LoraParam> {
    set.linear_names()
        .into_iter()
        .filter(|n| set.linear(n).is_some_and(|l| l.lora.is_some()))
        .flat_map(|module| {
            [Half::A, Half::B].map(|half| LoraParam {
                module: module.clone(),
                half,
            })
        })
        .collect()
}

/// Loads adapter tensors (a checkpoint's) into the set's existing adapters; a missing layer or a
/// shape that differs is an error naming the tensor.
pub fn load_lora_values<B: Backend>(
    set: &mut impl LinearsMut<B>,
    weights: &AdapterWeights,
    device: &B::Device,
) -> Result<(), PeftError> {
    for p in lora_params(set) {
        let pair = weights
            .modules
            .get(&p.module)
            .ok_or_else(|| PeftError::ModelMismatch {
                key: p.name(),
                message: "the checkpoint has no such adapter tensor".into(),
            })?;
        let m = match p.half {
            Half::A => &pair.a,
            Half::B => &pair.b,
        };
        let current = p.get(set).dims();
        if current != m.shape {
            return Err(PeftError::ModelMismatch {
                key: p.name(),
                message: format!("shape {:?} in the checkpoint, {current:?} in the model", m.shape),
            });
        }
        p.set(set, to_tensor(m, device));
    }
    Ok(())
}

/// An adapter matrix on the device, in f32 whatever the device's default dtype.
fn to_tensor<B: Backend>(m: &LoraMatrix, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(m.data.clone(), m.shape),
        (device, burn::tensor::DType::F32),
    )
}

fn to_matrix<B: Backend>(t: Tensor<B, 2>) -> LoraMatrix {
    let shape = t.dims();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("invariant: converted to f32");
    LoraMatrix { shape, data }
}
