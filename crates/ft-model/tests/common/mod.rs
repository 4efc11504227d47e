//! Helpers shared by the LoRA / QLoRA tests: fixture paths, golden files, the golden batch.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use ft_model::ModelInput;
use safetensors::{Dtype, SafeTensors};

pub mod family;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn lora_dir(name: &str) -> PathBuf {
    fixtures().join("lora").join(name)
}

/// Integer and f32 tensors of a golden safetensors file.
pub struct Golden {
    pub ints: HashMap<String, (Vec<usize>, Vec<i64>)>,
    pub floats: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Golden {
    pub fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut g = Golden {
            ints: HashMap::new(),
            floats: HashMap::new(),
        };
        for (key, view) in st.tensors() {
            let shape = view.shape().to_vec();
            match view.dtype() {
                Dtype::I64 => {
                    let v = view
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    g.ints.insert(key, (shape, v));
                }
                Dtype::F32 => {
                    let v = view
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    g.floats.insert(key, (shape, v));
                }
                other => panic!("unexpected dtype {other:?}"),
            }
        }
        g
    }

    /// The batch and its labels.
    pub fn input(&self) -> (ModelInput, Vec<i32>) {
        let (shape, ids) = &self.ints["input_ids"];
        let mask = &self.ints["attention_mask"].1;
        let labels = &self.ints["labels"].1;
        (
            ModelInput {
                batch: shape[0],
                seq: shape[1],
                input_ids: ids.iter().map(|&i| i as i32).collect(),
                attention_mask: Some(mask.iter().map(|&m| m as i32).collect()),
                position_ids: None,
                segment_ids: None,
            },
            labels.iter().map(|&l| l as i32).collect(),
        )
    }

    pub fn logits(&self) -> &[f32] {
        &self.floats["logits"].1
    }

    pub fn loss(&self) -> f32 {
        self.floats["loss"].1[0]
    }
}

pub fn host<B: Backend, const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}

/// Largest |got − want| over the positions whose attention mask is 1 (padding is not compared).
pub fn max_logit_error(got: &[f32], want: &[f32], mask: &[i32], vocab: usize) -> f32 {
    let mut max_err = 0f32;
    for (pos, &m) in mask.iter().enumerate() {
        if m == 0 {
            continue;
        }
        for v in 0..vocab {
            max_err = max_err.max((got[pos * vocab + v] - want[pos * vocab + v]).abs());
        }
    }
    max_err
}

/// Asserts `|got − want| ≤ rtol·|want| + atol` elementwise.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= rtol * w.abs() + atol, "{what}[{i}]: {g} vs {w}");
    }
}
