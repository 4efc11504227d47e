//! Logits, loss and greedy generation equal transformers' on tiny random checkpoints of every
//! family (goldens written by `fixtures/gen_models.py`).

use burn::tensor::{Tensor, TensorData, Tolerance};
use burn_flex::Flex;
use ft_model::session::KvSession;
use ft_model::{ModelInput, load_hf};

type B = Flex;

use crate::common;

use common::model_dir;

fn fixture(name: &str) -> std::path::PathBuf {
    model_dir(name)
}

fn check_family(name: &str) {
    common::family::check_family::<B>(name, &Default::default());
}

#[test]
fn llama_matches_transformers() {
    check_family("llama");
}

#[test]
fn llama_rope_llama3_matches_transformers() {
    check_family("llama-rope-llama3");
}

#[test]
fn llama_rope_linear_scaling_matches_transformers() {
    check_family("llama-rope-linear");
}

#[test]
fn llama_rope_dynamic_ntk_beyond_max_positions_matches_transformers() {
    check_family("llama-rope-dynamic");
}

#[test]
fn llama_rope_yarn_matches_transformers() {
    check_family("llama-rope-yarn");
}

#[test]
fn llama_rope_longrope_short_then_long_factors_match_transformers() {
    check_family("llama-rope-longrope");
}

#[test]
fn qwen2_with_biases_and_tied_embeddings_matches_transformers() {
    check_family("qwen2");
}

#[test]
fn mistral_matches_transformers() {
    check_family("mistral");
}

#[test]
fn mistral_sliding_window_matches_transformers() {
    check_family("mistral-window");
}

#[test]
fn qwen2_sliding_window_on_the_later_layer_matches_transformers() {
    check_family("qwen2-window");
}

#[test]
fn internlm2_fused_wqkv_matches_the_llama_it_was_packed_from() {
    check_family("internlm2");
}

#[test]
fn bf16_checkpoint_loads_into_f32() {
    check_family("llama-bf16");
}

#[test]
fn sharded_checkpoint_loads() {
    check_family("llama-sharded");
}

#[test]
fn kv_cache_logits_equal_full_forward_logits() {
    let device = Default::default();
    let (model, config) = load_hf::<B>(&fixture("llama"), &device).unwrap();
    let ids = [5u32, 17, 99, 3, 64];
    let full = model.forward(&ModelInput::from_ids(&ids), &config);
    let last_full: Tensor<B, 1> = full
        .slice([0..1, 4..5, 0..config.vocab_size])
        .reshape([config.vocab_size]);
    let mut session = KvSession::new(&model, &config);
    use ft_model::generate::LogitsSession;
    session.append(&ids[..3]).unwrap();
    let step = session.append(&ids[3..]).unwrap();
    last_full.into_data().assert_approx_eq::<f32>(
        &TensorData::new(step, [config.vocab_size]),
        Tolerance::absolute(1e-4),
    );
}

/// Logits of the last position of a full forward over `ids`, `[vocab]`.
fn last_logits(model: &ft_model::CausalLm<B>, config: &ft_model::ModelConfig, ids: &[u32]) -> Vec<f32> {
    let n = ids.len();
    let full = model.forward(&ModelInput::from_ids(ids), config);
    full.slice([0..1, n - 1..n, 0..config.vocab_size])
        .into_data()
        .into_vec::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn kv_cache_beyond_the_sliding_window_equals_full_forward() {
    use ft_model::generate::LogitsSession;
    let device = Default::default();
    let (model, config) = load_hf::<B>(&fixture("mistral-window"), &device).unwrap();
    assert_eq!(config.sliding_window(0), Some(4));
    let ids = [5u32, 17, 99, 3, 64, 12, 7, 88, 41, 2, 120, 9];
    let mut session = KvSession::new(&model, &config);
    // A 3-token prompt, a 2-token chunk that crosses the window, then one token at a time.
    let mut end = 0;
    for chunk in [3, 2, 1, 1, 1, 1, 1, 1, 1] {
        end += chunk;
        let step = session.append(&ids[end - chunk..end]).unwrap();
        let err = max_abs_diff(&step, &last_logits(&model, &config, &ids[..end]));
        assert!(err < 1e-4, "position {end}: max |kv − full| {err}");
    }
    assert_eq!(end, ids.len());
    // The window matters at this length: full attention gives other logits.
    let mut unwindowed = config.clone();
    unwindowed.sliding_windows = vec![None; config.num_layers];
    let full_attention = last_logits(&model, &unwindowed, &ids);
    let windowed = last_logits(&model, &config, &ids);
    assert!(max_abs_diff(&full_attention, &windowed) > 1e-2);
}

#[test]
fn packed_segments_under_a_sliding_window_equal_separate_rows() {
    let device = Default::default();
    let (model, config) = load_hf::<B>(&fixture("mistral-window"), &device).unwrap();
    let (a, b) = ([5u32, 17, 99, 3, 64, 12], [9u32, 31, 2, 44, 0, 8, 77]);
    let ids: Vec<u32> = a.iter().chain(&b).copied().collect();
    let packed = ModelInput {
        position_ids: Some((0..a.len()).chain(0..b.len()).map(|p| p as i32).collect()),
        segment_ids: Some(
            [0].repeat(a.len())
                .into_iter()
                .chain([1].repeat(b.len()))
                .collect(),
        ),
        ..ModelInput::from_ids(&ids)
    };
    let got = model
        .forward(&packed, &config)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    let vocab = config.vocab_size;
    for (offset, row) in [(0, &a[..]), (a.len(), &b[..])] {
        let alone = model
            .forward(&ModelInput::from_ids(row), &config)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        let part = &got[offset * vocab..(offset + row.len()) * vocab];
        let err = max_abs_diff(part, &alone);
        assert!(err < 1e-4, "segment at {offset}: max |packed − alone| {err}");
    }
}
