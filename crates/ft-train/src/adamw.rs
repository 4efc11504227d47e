//! AdamW exactly as `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments,
//! `eps` added after the square root), on named tensors so that its state saves and restores
//! by name (exact resume).

use ft_model::KernelBackend;
use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use crate::error::{Result, TrainError};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// β₁, β₂.
    pub betas: [f64; 2],
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// Moments of one tensor.
#[derive(Debug, Clone)]
struct Moments<B: Backend> {
    m: Tensor<B, 2>,
    v: Tensor<B, 2>,
}

/// The optimizer and its state.
#[derive(Debug, Clone)]
pub struct AdamW<B: Backend> {
    config: AdamWConfig,
    step: u64,
    state: BTreeMap<String, Moments<B>>,
}

impl<B: KernelBackend> AdamW<B> {
    /// A fresh optimizer.
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            state: BTreeMap::new(),
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Starts an optimizer step (all tensors of one step share its bias corrections).
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// Updates one tensor with its gradient at learning rate `lr`.
    pub fn update(&mut self, name: &str, param: Tensor<B, 2>, grad: Tensor<B, 2>, lr: f64) -> Tensor<B, 2> {
        let [b1, b2] = self.config.betas;
        let t = self.step.max(1) as i32;
        let moments = self.state.entry(name.to_owned()).or_insert_with(|| Moments {
            m: grad.zeros_like(),
            v: grad.zeros_like(),
        });
        moments.m = moments.m.clone().mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1);
        moments.v = moments.v.clone().mul_scalar(b2) + grad.powi_scalar(2).mul_scalar(1.0 - b2);
        let bias1 = 1.0 - b1.powi(t);
        let bias2 = 1.0 - b2.powi(t);
        let param = param.mul_scalar(1.0 - lr * self.config.weight_decay);
        let denom = moments
            .v
            .clone()
            .sqrt()
            .div_scalar(bias2.sqrt())
            .add_scalar(self.config.eps);
        param - moments.m.clone().div(denom).mul_scalar(lr / bias1)
    }

    /// The dtype each tensor's moments are stored in (`[exp_avg, exp_avg_sq]`), by name: f32 for
    /// the f32 tensors ft trains, whatever the base model's dtype.
    pub fn moment_dtypes(&self) -> BTreeMap<String, [DType; 2]> {
        self.state
            .iter()
            .map(|(name, m)| (name.clone(), [m.m.dtype(), m.v.dtype()]))
            .collect()
    }

    /// Saves the state as safetensors (`<name>.exp_avg`, `<name>.exp_avg_sq`, step in metadata).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, m) in &self.state {
            for (suffix, t) in [("exp_avg", &m.m), ("exp_avg_sq", &m.v)] {
                let dims = t.dims().to_vec();
                let values = t
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| TrainError::Checkpoint {
                        path: path.to_path_buf(),
                        message: format!("reading optimizer state: {e:?}"),
                    })?;
                tensors.push((
                    format!("{name}.{suffix}"),
                    dims,
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ));
            }
        }
        let views = tensors
            .iter()
            .map(|(n, shape, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|v| (n.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let metadata = std::collections::HashMap::from([
            ("format".to_owned(), "pt".to_owned()),
            ("step".to_owned(), self.step.to_string()),
        ]);
        safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Restores the state saved by [`AdamW::save`].
    pub fn load(config: AdamWConfig, path: &Path, device: &B::Device) -> Result<Self> {
        let err = |message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let (_, metadata) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
        let step = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("step"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("optimizer state has no step".into()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
        let mut state: BTreeMap<String, Moments<B>> = BTreeMap::new();
        for (key, view) in st.tensors() {
            let [rows, cols] = view.shape() else {
                return Err(err(format!(
                    "`{key}` has shape {:?}; optimizer moments are matrices",
                    view.shape()
                )));
            };
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(err(format!(
                    "`{key}` is {:?}; optimizer moments are F32",
                    view.dtype()
                )));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let shape = [*rows, *cols];
            let t = Tensor::<B, 2>::from_data(TensorData::new(values, shape), (device, DType::F32));
            let (name, which) = key
                .rsplit_once('.')
                .ok_or_else(|| err(format!("unexpected key {key}")))?;
            let entry = state.entry(name.to_owned()).or_insert_with(|| Moments {
                m: t.zeros_like(),
                v: t.zeros_like(),
            });
            match which {
                "exp_avg" => entry.m = t,
                "exp_avg_sq" => entry.v = t,
                _ => return Err(err(format!("unexpected key {key}"))),
            }
        }
        Ok(Self { config, step, state })
    }

    /// Checks loaded moments against the tensors a run trains (`(name, [rows, cols])`): each
    /// moment belongs to one of them, with its shape (a tensor may have none yet: one no batch
    /// has reached, e.g. the projector after text-only batches); the first that does not fit is
    /// named.
    pub fn check_against(&self, params: &[(String, [usize; 2])], origin: &Path) -> Result<()> {
        let err = |message: String| TrainError::Checkpoint {
            path: origin.to_path_buf(),
            message,
        };
        let shapes: BTreeMap<&str, [usize; 2]> = params.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        for (name, moments) in &self.state {
            let Some(&shape) = shapes.get(name.as_str()) else {
                return Err(err(format!("moments of `{name}`, which this run does not train")));
            };
            if moments.m.dims() != shape || moments.v.dims() != shape {
                return Err(err(format!(
                    "`{name}`: moments of shape {:?}, the tensor is {shape:?}",
                    moments.m.dims()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::Flex;

    #[test]
    fn two_steps_match_torch_adamw() {
        // torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01) with
        // p = [[1, -2]], grads [[0.5, 0.25]] then [[-1, 2]]:
        // step 1 → [[0.899, -2.098]] (p·(1−lr·wd) − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)).
        let device = Default::default();
        let mut opt = AdamW::<Flex>::new(AdamWConfig {
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.01,
        });
        let t = |v: [f32; 2]| Tensor::<Flex, 2>::from_data(TensorData::new(v.to_vec(), [1, 2]), &device);
        opt.begin_step();
        let p = opt.update("p", t([1.0, -2.0]), t([0.5, 0.25]), 0.1);
        let got = p.clone().into_data().into_vec::<f32>().unwrap();
        assert!(
            (got[0] - 0.899).abs() < 1e-6 && (got[1] + 2.098).abs() < 1e-6,
            "{got:?}"
        );
        opt.begin_step();
        let p = opt.update("p", p, t([-1.0, 2.0]), 0.1);
        let got = p.into_data().into_vec::<f32>().unwrap();
        let (m1, v1) = (0.1 * 0.5 * 0.9 - 0.1, 0.001 * 0.25 * 0.999 + 0.001);
        let expected0 =
            0.899 * (1.0 - 0.001) - 0.1 / (1.0 - 0.81) * m1 / ((v1 / (1.0 - 0.999f64.powi(2))).sqrt() + 1e-8);
        assert!((got[0] as f64 - expected0).abs() < 1e-5, "{got:?} vs {expected0}");
    }

    #[test]
    fn state_round_trips_through_safetensors() {
        let device = Default::default();
        let config = AdamWConfig {
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let mut opt = AdamW::<Flex>::new(config);
        let g = Tensor::<Flex, 2>::from_data(TensorData::new(vec![0.5f32, -0.25, 1.0, 2.0], [2, 2]), &device);
        opt.begin_step();
        let p = opt.update("a.lora_A.weight", g.clone(), g.clone(), 0.01);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        opt.save(&path).unwrap();
        let mut restored = AdamW::<Flex>::load(config, &path, &device).unwrap();
        assert_eq!(restored.steps(), 1);
        opt.begin_step();
        restored.begin_step();
        let a = opt.update("a.lora_A.weight", p.clone(), g.clone(), 0.01);
        let b = restored.update("a.lora_A.weight", p, g, 0.01);
        assert_eq!(
            a.into_data().into_vec::<f32>().unwrap(),
            b.into_data().into_vec::<f32>().unwrap()
        );
    }
}
