//! A LLaVA folder with a LoRA on CLIP (`visual_encoder_adapter/`, saved by PEFT's
//! `save_pretrained` in `fixtures/gen_llava_step.py`) loads as PEFT runs it: the tower's
//! features and the whole LLaVA's logits (with `llm_adapter/` too) equal PyTorch's; adapters that
//! do not fit the tower are refused, naming the layer.

use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use ft_llava::LlavaParts;
use ft_lora::peft::Adapter;
use ft_model::adapters::attach_peft_adapter;
use ft_model::weights::{HostTensor, SafetensorsSource, TensorSource};

use crate::common;

use common::fixtures;

type B = Flex;

fn step_golden(name: &str) -> HostTensor {
    let path = fixtures().join("llava/step_golden.safetensors");
    let source = SafetensorsSource::open_files(&path, std::slice::from_ref(&path)).unwrap();
    source.read(name).unwrap_or_else(|e| panic!("golden {name}: {e}"))
}

fn pixels(name: &str) -> Tensor<B, 4> {
    let p = common::golden(&format!("pixels.{name}"));
    let shape = [1, p.shape[0], p.shape[1], p.shape[2]];
    Tensor::from_data(TensorData::new(p.data, shape), &Default::default())
}

fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn parts() -> LlavaParts {
    let parts = LlavaParts::find(
        &fixtures().join("llava/step"),
        Some(&fixtures().join("llava/clip-vision")),
    )
    .unwrap();
    assert!(parts.visual_encoder_adapter.is_some() && parts.llm_adapter.is_some());
    parts
}

#[test]
fn clip_with_its_peft_adapter_gives_peft_features() {
    let (vision, _) = parts().load_vision::<B>(-2, 128, &Default::default()).unwrap();
    for name in ["wide_rgb", "tall_rgba"] {
        let features = vision.clip.features(pixels(name), vision.feature_index);
        let want = step_golden(&format!("features.{name}"));
        let got = features.into_data().into_vec::<f32>().unwrap();
        let diff = max_diff(&got, &want.data);
        assert!(diff < 1e-4, "{name}: features max |Δ| {diff}");
    }
    // Without the adapter the features are the plain tower's: the adapter mattered.
    let plain = common::golden("features.vision.wide_rgb");
    let want = step_golden("features.wide_rgb");
    assert!(max_diff(&plain.data, &want.data) > 1e-2);
}

#[test]
fn the_llava_with_both_adapters_gives_peft_logits() {
    let parts = parts();
    let device = Default::default();
    let (mut llm, config) = ft_model::load_hf::<B>(&fixtures().join("tiny-base"), &device).unwrap();
    let adapter = Adapter::read(parts.llm_adapter.as_ref().unwrap()).unwrap();
    attach_peft_adapter(&mut llm, &config, &adapter).unwrap();
    let (vision, _) = parts.load_vision::<B>(-2, config.hidden_size, &device).unwrap();
    let batch = common::batch();
    let spliced = common::spliced(&llm, &batch, |p| {
        let shape = [1, p.shape[0], p.shape[1], p.shape[2]];
        vision.image_rows(Tensor::from_data(TensorData::new(p.data, shape), &device))
    });
    let hidden = llm.hidden_states_of_embeddings(spliced.embeddings, &spliced.input, &config);
    let logits = llm.head(hidden);
    let [_, width, vocab] = logits.dims();
    let first = logits.slice([0..1, 0..width, 0..vocab]);
    let got = first.into_data().into_vec::<f32>().unwrap();
    let want = step_golden("logits");
    assert_eq!(want.shape, vec![width, vocab], "sample 0 is the longest row");
    let diff = max_diff(&got, &want.data);
    assert!(diff < 1e-4, "logits max |Δ| {diff}");
}

#[test]
fn an_adapter_that_does_not_fit_the_tower_is_refused_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("llava/step/visual_encoder_adapter");
    let target = dir.path().join("visual_encoder_adapter");
    std::fs::create_dir_all(&target).unwrap();
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(source.join(file), target.join(file)).unwrap();
    }
    // The 3-layer adapter on a tower cut to 2 layers: its third layer has no home.
    let (mut clip, _) =
        ft_llava::load_clip::<B>(&fixtures().join("llava/clip-vision"), &Default::default()).unwrap();
    clip.layers.truncate(2);
    let err = ft_llava::attach_clip_adapter(&mut clip, &target)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("visual_encoder_adapter") && err.contains("encoder.layers.2."),
        "{err}"
    );
}

#[test]
fn a_transformers_llava_folder_loads_whole_with_transformers_logits() {
    let dir = fixtures().join("llava/hf-llava");
    let device = Default::default();
    let (llm, config) = ft_model::load_hf::<B>(&dir, &device).unwrap();
    let parts = LlavaParts::find(&dir, None).unwrap();
    assert_eq!(
        parts.layout,
        ft_llava::folder::LlavaLayout::HuggingFace { select_layer: -2 }
    );
    // The folder's own vision_feature_layer wins over the caller's default.
    let (vision, _) = parts.load_vision::<B>(0, config.hidden_size, &device).unwrap();
    let ids: Vec<i32> = step_golden("hf_llava.ids")
        .data
        .iter()
        .map(|&v| v as i32)
        .collect();
    let labels = vec![-100; ids.len()];
    let spliced = vision
        .spliced_sample(
            &llm,
            pixels("wide_rgb"),
            ft_llava::SpliceSample {
                input_ids: ids,
                labels,
            },
        )
        .unwrap();
    let hidden = llm.hidden_states_of_embeddings(spliced.embeddings, &spliced.input, &config);
    let got = llm.head(hidden).into_data().into_vec::<f32>().unwrap();
    let want = step_golden("hf_llava.logits");
    let diff = max_diff(&got, &want.data);
    assert!(diff < 1e-4, "logits max |Δ| {diff}");
}

#[test]
fn an_nf4_tower_gives_the_features_of_bitsandbytes_4bit_weights() {
    let device = Default::default();
    let (mut clip, config) =
        ft_llava::load_clip::<B>(&fixtures().join("llava/clip-vision"), &device).unwrap();
    clip.quantize_linears(true).unwrap();
    assert!(clip.layers[0].fc1.nf4_weight().is_some() && clip.patch_embedding.nf4_weight().is_none());
    let index = config.hidden_state_index(-2).unwrap();
    for name in ["wide_rgb", "tall_rgba"] {
        let got = clip
            .features(pixels(name), index)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        let want = step_golden(&format!("nf4.features.{name}"));
        let diff = max_diff(&got, &want.data);
        assert!(diff < 1e-4, "{name}: NF4 features max |Δ| {diff}");
        let dense = common::golden(&format!("features.vision.{name}"));
        assert!(
            max_diff(&dense.data, &want.data) > 1e-3,
            "4 bits change the features"
        );
    }
}
