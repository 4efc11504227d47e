//! Decoding sequences together gives each sequence the logits it gets alone: rows of different
//! lengths (left-padded caches), rows joining and leaving between steps, sliding windows.

use burn_flex::Flex;
use ft_model::batch::BatchDecoder;
use ft_model::generate::LogitsSession;
use ft_model::session::KvSession;
use ft_model::{CausalLm, ModelConfig, load_hf};

use crate::common;

use common::model_dir;

type B = Flex;

/// A deterministic prompt of `len` ids for sequence `seed`.
fn prompt(seed: u32, len: usize, vocab: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (seed * 31 + i * 7 + 3) % vocab as u32)
        .collect()
}

/// The logits of `continuation` fed after `prompt`, one token at a time, in a session alone.
fn alone(model: &CausalLm<B>, config: &ModelConfig, prompt: &[u32], continuation: &[u32]) -> Vec<Vec<f32>> {
    let mut session = KvSession::new(model, config);
    session.append(prompt).unwrap();
    continuation
        .iter()
        .map(|&t| session.append(&[t]).unwrap())
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn prefill<'a>(
    model: &'a CausalLm<B>,
    config: &'a ModelConfig,
    ids: &[u32],
) -> Vec<ft_model::layers::LayerCache<B>> {
    let mut session = KvSession::new(model, config);
    session.append(ids).unwrap();
    session.into_caches()
}

fn check(name: &str, lengths: &[usize]) {
    let (model, config) = load_hf::<B>(&model_dir(name), &Default::default()).unwrap();
    let vocab = config.vocab_size;
    let steps = 6;
    let prompts: Vec<Vec<u32>> = lengths
        .iter()
        .enumerate()
        .map(|(k, &n)| prompt(k as u32, n, vocab))
        .collect();
    let tokens: Vec<Vec<u32>> = (0..prompts.len())
        .map(|k| prompt(k as u32 + 50, steps, vocab))
        .collect();
    let want: Vec<Vec<Vec<f32>>> = prompts
        .iter()
        .zip(&tokens)
        .map(|(p, t)| alone(&model, &config, p, t))
        .collect();

    // Rows 0 and 1 start together; row 2 joins after two steps; row 0 leaves after four.
    let mut batch = BatchDecoder::new(&model, &config);
    let mut members: Vec<usize> = vec![0, 1];
    let mut fed = vec![0usize; prompts.len()];
    batch.push(prefill(&model, &config, &prompts[0])).unwrap();
    batch.push(prefill(&model, &config, &prompts[1])).unwrap();
    let mut worst = 0.0f32;
    for step in 0..steps + 2 {
        if step == 2 {
            batch.push(prefill(&model, &config, &prompts[2])).unwrap();
            members.push(2);
        }
        if step == 4 {
            let row = members.iter().position(|&m| m == 0).unwrap();
            let caches = batch.remove(row);
            members.remove(row);
            // The removed row continues alone from its caches, as if never batched.
            let mut session = KvSession::from_caches(&model, &config, caches);
            assert_eq!(session.context_len(), prompts[0].len() + fed[0]);
            let logits = session.append(&[tokens[0][fed[0]]]).unwrap();
            worst = worst.max(max_diff(&logits, &want[0][fed[0]]));
        }
        let active: Vec<usize> = members.iter().copied().filter(|&m| fed[m] < steps).collect();
        if active.len() != members.len() {
            break;
        }
        let ids: Vec<u32> = members.iter().map(|&m| tokens[m][fed[m]]).collect();
        let logits = batch.step(&ids).unwrap();
        for (row, &m) in members.iter().enumerate() {
            worst = worst.max(max_diff(&logits[row], &want[m][fed[m]]));
            assert_eq!(batch.len_of(row), prompts[m].len() + fed[m] + 1);
            fed[m] += 1;
        }
    }
    assert!(
        fed.iter().all(|&f| f >= 2),
        "every row was decoded in the batch: {fed:?}"
    );
    assert!(
        worst < 1e-4,
        "{name}: batched logits differ from alone by {worst}"
    );
}

#[test]
fn rows_of_different_lengths_decode_as_alone() {
    check("llama", &[5, 9, 3]);
}

#[test]
fn grouped_heads_and_biases_decode_as_alone() {
    check("qwen2", &[7, 2, 11]);
}

#[test]
fn sliding_windows_count_only_real_keys() {
    check("mistral-window", &[3, 12, 6]);
}
