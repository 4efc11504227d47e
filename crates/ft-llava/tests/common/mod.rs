//! What the LLaVA suites share: fixture paths, goldens, and the fixture batch
//! (`fixtures/llava/llava_batch.json`) spliced with each picture's rows.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use ft_kernels::KernelBackend;
use ft_llava::{SpliceSample, SplicedBatch, VisionSide, load_clip, load_projector, splice};
use ft_model::weights::{HostTensor, SafetensorsSource, TensorSource};
use ft_model::{CausalLm, ModelConfig, load_hf};
use serde::Deserialize;

/// `fixtures/` of the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A tensor of `fixtures/llava/golden.safetensors`.
pub fn golden(name: &str) -> HostTensor {
    let path = fixtures().join("llava/golden.safetensors");
    let source = SafetensorsSource::open_files(&path, std::slice::from_ref(&path)).unwrap();
    source.read(name).unwrap_or_else(|e| panic!("golden {name}: {e}"))
}

/// The fixture batch, in ft's form.
#[derive(Deserialize)]
pub struct Batch {
    /// Samples (ids with −200 at the picture).
    pub samples: Vec<Sample>,
    /// transformers' row lengths (the placeholder widened).
    pub lengths: Vec<usize>,
    /// Their padded width.
    pub width: usize,
}

/// One sample of the batch.
#[derive(Deserialize)]
pub struct Sample {
    /// Ids.
    pub input_ids: Vec<i32>,
    /// Labels.
    pub labels: Vec<i32>,
    /// Its picture's name in `images/`.
    pub image: Option<String>,
}

/// Reads `fixtures/llava/llava_batch.json`.
pub fn batch() -> Batch {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("llava/llava_batch.json")).unwrap())
        .unwrap()
}

/// The batch spliced, each picture's golden pixel values turned into rows by `rows_of`
/// (`[1, 3, side, side]` in, `[1, patches, hidden]` out).
pub fn spliced<B: KernelBackend>(
    llm: &CausalLm<B>,
    batch: &Batch,
    rows_of: impl Fn(HostTensor) -> Tensor<B, 3>,
) -> SplicedBatch<B> {
    let images = batch
        .samples
        .iter()
        .filter_map(|s| s.image.as_ref())
        .map(|picture| {
            let rows = rows_of(golden(&format!("pixels.{picture}")));
            let [_, patches, hidden] = rows.dims();
            rows.reshape([patches, hidden])
        })
        .collect();
    let samples: Vec<SpliceSample> = batch
        .samples
        .iter()
        .map(|s| SpliceSample {
            input_ids: s.input_ids.clone(),
            labels: s.labels.clone(),
        })
        .collect();
    splice(llm, &samples, images).unwrap()
}

/// The fixture LLaVA: the bundled tiny LLM, the clip-vision tower and the projector of
/// `xtuner-llava/`.
pub fn tiny_llava<B: KernelBackend>() -> (CausalLm<B>, ModelConfig, VisionSide<B>) {
    let device = Default::default();
    let (llm, config) = load_hf::<B>(&fixtures().join("tiny-base"), &device).unwrap();
    let (clip, clip_config) = load_clip::<B>(&fixtures().join("llava/clip-vision"), &device).unwrap();
    let (projector, projector_config) =
        load_projector::<B>(&fixtures().join("llava/xtuner-llava/projector"), &device).unwrap();
    let vision = VisionSide::new(
        (clip, &clip_config),
        (projector, &projector_config),
        -2,
        config.hidden_size,
    )
    .unwrap();
    (llm, config, vision)
}
