//! A LLaVA forward pass against transformers' `LlavaForConditionalGeneration` on the same
//! weights (`fixtures/gen_llava.py`): the bundled tiny LLM, the clip-vision tower and a
//! projector; a right-padded batch of two image samples and a text-only one. The spliced input
//! embeddings, the logits and the loss match.

use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use ft_llava::{SpliceSample, VisionSide, load_clip, load_projector, splice};
use ft_model::{CausalLm, ModelConfig};

use crate::common;

use common::fixtures;

type B = Flex;

fn golden(name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = common::golden(name);
    (t.shape, t.data)
}

fn setup() -> (CausalLm<B>, ModelConfig, VisionSide<B>) {
    common::tiny_llava()
}

fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

/// The largest difference over the positions that are not padding.
fn max_diff_real(got: &[f32], want: &[f32], lengths: &[usize], width: usize, inner: usize) -> f32 {
    let mut worst = 0.0f32;
    for (row, &len) in lengths.iter().enumerate() {
        let start = row * width * inner;
        let end = start + len * inner;
        for (a, b) in got[start..end].iter().zip(&want[start..end]) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

#[test]
fn spliced_embeddings_logits_and_loss_match_transformers() {
    let (llm, config, vision) = setup();
    let batch = common::batch();
    let spliced = common::spliced(&llm, &batch, |pixels| {
        let shape = [1, pixels.shape[0], pixels.shape[1], pixels.shape[2]];
        vision.image_rows(Tensor::from_data(
            TensorData::new(pixels.data, shape),
            &Default::default(),
        ))
    });
    assert_eq!((spliced.input.batch, spliced.input.seq), (3, batch.width));

    let (shape, want) = golden("llava.embeds");
    assert_eq!(shape, vec![3, batch.width, config.hidden_size]);
    let got = host(spliced.embeddings.clone());
    let diff = max_diff_real(&got, &want, &batch.lengths, batch.width, config.hidden_size);
    assert!(diff < 1e-5, "spliced embeddings max |Δ| {diff}");

    let hidden = llm.hidden_states_of_embeddings(spliced.embeddings.clone(), &spliced.input, &config);
    let logits = host(llm.head(hidden));
    let (_, want) = golden("llava.logits");
    let diff = max_diff_real(&logits, &want, &batch.lengths, batch.width, config.vocab_size);
    assert!(diff < 1e-4, "logits max |Δ| {diff}");

    let loss = llm.loss_sum_of_embeddings(spliced.embeddings, &spliced.input, &spliced.labels, &config);
    let mean = host(loss.sum)[0] / loss.count as f32;
    let (_, want) = golden("llava.loss");
    assert!(
        (mean - want[0]).abs() < 1e-5,
        "loss {mean} vs transformers {}",
        want[0]
    );
}

#[test]
fn images_and_placeholders_must_agree() {
    let (llm, config, vision) = setup();
    let sample = SpliceSample {
        input_ids: vec![5, -200, 6],
        labels: vec![-100, -100, 6],
    };
    let err = splice(&llm, std::slice::from_ref(&sample), vec![])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("1 samples hold an image placeholder but 0 images"),
        "{err}"
    );
    let two = SpliceSample {
        input_ids: vec![-200, 5, -200],
        labels: vec![-100; 3],
    };
    let rows = Tensor::<B, 2>::zeros([4, config.hidden_size], &Default::default());
    let err = splice(&llm, &[two], vec![rows]).err().unwrap().to_string();
    assert!(err.contains("2 image placeholders"), "{err}");
    drop(vision);
}

#[test]
fn parts_of_different_sizes_are_refused() {
    let device = Default::default();
    let (clip, clip_config) = load_clip::<B>(&fixtures().join("llava/clip-vision"), &device).unwrap();
    let (projector, projector_config) =
        load_projector::<B>(&fixtures().join("llava/projector"), &device).unwrap();
    let err = VisionSide::new((clip, &clip_config), (projector, &projector_config), -2, 128)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("48-wide rows") && err.contains("128"), "{err}");
}
