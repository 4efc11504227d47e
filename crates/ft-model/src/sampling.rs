//! Next-token choice: greedy or sampled with temperature, top-k, top-p and a repetition
//! penalty, in the order transformers applies its logits processors; and stop conditions.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to pick the next token. `temperature == 0` means greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 = greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p`; 1 = off.
    pub top_p: f32,
    /// CTRL-style penalty on tokens already in the sequence; 1 = off.
    pub repetition_penalty: f32,
    /// Seed of the sampler's random stream.
    pub seed: u64,
}

impl Default for SamplingConfig {
    /// XTuner chat's defaults: temperature 0.1, top-k 40, top-p 0.75.
    fn default() -> Self {
        Self {
            temperature: 0.1,
            top_k: 40,
            top_p: 0.75,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

/// A seeded sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplingConfig,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler with its own random stream.
    pub fn new(config: SamplingConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self { config, rng }
    }

    /// The configuration.
    pub fn config(&self) -> &SamplingConfig {
        &self.config
    }

    /// Picks the next token from `logits` (one row over the vocabulary); `history` holds the ids
    /// seen so far (prompt and generated) for the repetition penalty. `logits` is modified.
    pub fn next_token(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        apply_repetition_penalty(logits, history, self.config.repetition_penalty);
        if self.config.temperature <= 0.0 {
            return argmax(logits);
        }
        for l in logits.iter_mut() {
            *l /= self.config.temperature;
        }
        let mut candidates: Vec<(u32, f32)> =
            logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.config.top_k > 0 && self.config.top_k < candidates.len() {
            candidates.truncate(self.config.top_k);
        }
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.config.top_p < 1.0 {
            // Keep tokens while the mass *before* them is below top_p (the top token always stays).
            let mut mass = 0.0;
            let keep = probs
                .iter()
                .take_while(|&&p| {
                    let keep = mass < self.config.top_p;
                    mass += p;
                    keep
                })
                .count()
                .max(1);
            candidates.truncate(keep);
            probs.truncate(keep);
            let total: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        let draw: f32 = self.rng.random();
        let mut acc = 0.0;
        for ((id, _), p) in candidates.iter().zip(&probs) {
            acc += p;
            if draw < acc {
                return *id;
            }
        }
        candidates
            .last()
            .map(|(id, _)| *id)
            .expect("invariant: at least one candidate")
    }
}

/// Index of the largest logit (the first one on ties, like torch.argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// transformers' `RepetitionPenaltyLogitsProcessor`: a seen token's logit is divided by the
/// penalty when positive and multiplied when negative.
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let seen: HashSet<u32> = history.iter().copied().collect();
    for id in seen {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// When to stop: on any of the stop token ids (EOS, template stop tokens), or when the decoded
/// text ends with a stop string that is not a single token.
#[derive(Debug, Clone, Default)]
pub struct StopCondition {
    /// Token ids that end generation.
    pub ids: HashSet<u32>,
    /// Strings that end generation once the text ends with them.
    pub strings: Vec<String>,
}

impl StopCondition {
    /// Whether `token` stops generation.
    pub fn is_stop_token(&self, token: u32) -> bool {
        self.ids.contains(&token)
    }

    /// The stop string `text` ends with, if any.
    pub fn stop_string_in<'a>(&'a self, text: &str) -> Option<&'a str> {
        self.strings
            .iter()
            .find(|s| !s.is_empty() && text.ends_with(s.as_str()))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_argmax_after_repetition_penalty() {
        let mut sampler = Sampler::new(SamplingConfig {
            repetition_penalty: 2.0,
            ..SamplingConfig::greedy()
        });
        // Token 1 is best, but already seen: 3.0 / 2 = 1.5 < 2.0.
        let mut logits = vec![0.0, 3.0, 2.0];
        assert_eq!(sampler.next_token(&mut logits, &[1]), 2);
        let mut logits = vec![-1.0, -3.0, -2.0];
        assert_eq!(
            sampler.next_token(&mut logits, &[0]),
            0,
            "-1 * 2 = -2 ties with token 2; first wins"
        );
    }

    #[test]
    fn top_k_one_is_greedy_and_seeds_repeat() {
        let mut sampler = Sampler::new(SamplingConfig {
            temperature: 1.0,
            top_k: 1,
            ..SamplingConfig::default()
        });
        for _ in 0..10 {
            assert_eq!(sampler.next_token(&mut [0.1, 0.5, 0.2], &[]), 1);
        }
        let draws = |seed| {
            let mut s = Sampler::new(SamplingConfig {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                seed,
                ..SamplingConfig::default()
            });
            (0..20)
                .map(|_| s.next_token(&mut [0.0; 8], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // Probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.7 keeps the first two only.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut seen = HashSet::new();
        let mut s = Sampler::new(SamplingConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.7,
            repetition_penalty: 1.0,
            seed: 1,
        });
        for _ in 0..200 {
            seen.insert(s.next_token(&mut logits.to_vec(), &[]));
        }
        assert_eq!(seen, HashSet::from([0, 1]));
    }

    #[test]
    fn stop_condition_matches_ids_and_suffix_strings() {
        let stop = StopCondition {
            ids: HashSet::from([2]),
            strings: vec!["</answer>".into()],
        };
        assert!(stop.is_stop_token(2) && !stop.is_stop_token(3));
        assert_eq!(stop.stop_string_in("x</answer>"), Some("</answer>"));
        assert_eq!(stop.stop_string_in("x</ans"), None);
    }
}
