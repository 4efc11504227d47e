//! One family's check against its transformers golden (`fixtures/gen_models.py`), on any backend:
//! logits, loss and the greedy continuation.

use burn::tensor::ElementConversion;
use ft_model::generate::generate;
use ft_model::sampling::{Sampler, SamplingConfig, StopCondition};
use ft_model::session::KvSession;
use ft_model::{KernelBackend, load_hf};

use super::{Golden, host, max_logit_error, model_dir};

/// Loads the tiny checkpoint `name` on `device` and asserts that its logits (atol 1e-4 on real
/// positions), loss (1e-5) and greedy continuation equal transformers'.
pub fn check_family<B: KernelBackend>(name: &str, device: &B::Device) {
    let (model, config) = load_hf::<B>(&model_dir(name), device).unwrap();
    let g = Golden::read(&model_dir(name).join("golden.safetensors"));
    let (input, labels) = g.input();
    let got = host(model.forward(&input, &config));
    let mask = input.attention_mask.as_ref().unwrap();
    let max_err = max_logit_error(&got, g.logits(), mask, config.vocab_size);
    assert!(max_err < 1e-4, "{name}: max |logit error| {max_err}");

    let loss: f32 = model.loss(&input, &labels, &config).into_scalar().elem();
    let want_loss = g.loss();
    assert!(
        (loss - want_loss).abs() < 1e-5,
        "{name}: loss {loss} vs {want_loss}"
    );

    let prompt: Vec<u32> = g.ints["prompt"].1.iter().map(|&i| i as u32).collect();
    let want_ids: Vec<u32> = g.ints["generated"].1.iter().map(|&i| i as u32).collect();
    let mut session = KvSession::new(&model, &config);
    let out = generate(
        &mut session,
        &prompt,
        &mut Sampler::new(SamplingConfig::greedy()),
        &StopCondition::default(),
        want_ids.len(),
        &mut Vec::new(),
        |_| std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(out.tokens, want_ids, "{name}: greedy continuation");
}
