//! Which samples train and which are held out, and in what order they are packed: the
//! `[data] eval_split`, `weights` and `shuffle_before_pack` keys, applied to sample indices
//! only (never to tokens), so the in-memory path and the token cache share one definition.
//!
//! - **eval_split**: `round(n × eval_split)` samples (at least 1 when the split is positive and
//!   there are two samples or more, never all) chosen by a seeded shuffle are held out.
//! - **weights**: per epoch, file `f` contributes its training samples `floor(w)` times, plus a
//!   seeded subset of `round(frac(w) × count)` of them (so `0.5` keeps half, `2` repeats twice).
//! - **shuffle_before_pack**: the resulting list is shuffled with `seed` before packing.
//!
//! ```
//! use ft_data::split::{SplitKeys, split_samples};
//! let files = [0u32, 0, 1, 1];
//! let keys = SplitKeys { weights: Some(vec![2.0, 0.0]), ..SplitKeys::default() };
//! let split = split_samples(&files, 2, &keys);
//! assert_eq!(split.train, vec![0, 1, 0, 1]);
//! ```

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::config::DataConfig;
use crate::pack::shuffled_indices;

/// Salt of the eval hold-out's RNG (so it differs from the packing shuffle of the same seed).
const EVAL_SALT: u64 = 0x6576_616c_5f73_706c;
/// Salt of the fractional-weight subsets.
const WEIGHT_SALT: u64 = 0x7765_6967_6874_7300;

/// The `[data]` keys that choose and order samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitKeys {
    /// Per-file weights.
    pub weights: Option<Vec<f64>>,
    /// Held-out fraction.
    pub eval_split: f64,
    /// Shuffle the training list before packing.
    pub shuffle: bool,
    /// Seed of every choice.
    pub seed: u64,
}

impl SplitKeys {
    /// The keys of a `[data]` config.
    pub fn of(config: &DataConfig) -> Self {
        Self {
            weights: config.weights.clone(),
            eval_split: config.eval_split,
            shuffle: config.pack && config.shuffle_before_pack,
            seed: config.seed,
        }
    }
}

/// Sample indices for training (in packing order, repeats allowed) and for evaluation
/// (ascending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Training samples, in the order they are packed.
    pub train: Vec<u32>,
    /// Held-out samples.
    pub eval: Vec<u32>,
}

/// Number of held-out samples for `n` samples.
pub fn eval_count(n: usize, eval_split: f64) -> usize {
    if eval_split <= 0.0 || n < 2 {
        return 0;
    }
    ((n as f64 * eval_split).round() as usize).clamp(1, n - 1)
}

/// Splits samples whose source file indices are `files` (one per sample, dataset order).
pub fn split_samples(files: &[u32], n_files: usize, keys: &SplitKeys) -> Split {
    let n = files.len();
    let k = eval_count(n, keys.eval_split);
    let mut held_out = vec![false; n];
    let mut eval: Vec<u32> = shuffled_indices(n, keys.seed ^ EVAL_SALT)
        .into_iter()
        .take(k)
        .map(|i| i as u32)
        .collect();
    eval.sort_unstable();
    for &i in &eval {
        held_out[i as usize] = true;
    }
    let kept = (0..n as u32).filter(|&i| !held_out[i as usize]);
    let mut train: Vec<u32> = match &keys.weights {
        None => kept.collect(),
        Some(weights) => {
            let mut per_file: Vec<Vec<u32>> = vec![Vec::new(); n_files];
            for i in kept {
                per_file[files[i as usize] as usize].push(i);
            }
            let mut out = Vec::new();
            for (f, samples) in per_file.iter().enumerate() {
                let w = weights.get(f).copied().unwrap_or(1.0);
                for _ in 0..w.floor() as usize {
                    out.extend_from_slice(samples);
                }
                let m = ((w - w.floor()) * samples.len() as f64).round() as usize;
                if m > 0 {
                    let mut rng = ChaCha8Rng::seed_from_u64(keys.seed ^ WEIGHT_SALT.wrapping_add(f as u64));
                    let mut chosen = sample(&mut rng, samples.len(), m.min(samples.len())).into_vec();
                    chosen.sort_unstable();
                    out.extend(chosen.into_iter().map(|j| samples[j]));
                }
            }
            out
        }
    };
    if keys.shuffle {
        let order = shuffled_indices(train.len(), keys.seed);
        train = order.into_iter().map(|i| train[i]).collect();
    }
    Split { train, eval }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_keys_is_identity_and_shuffle_matches_the_packing_shuffle() {
        let files = vec![0u32; 10];
        let plain = split_samples(&files, 1, &SplitKeys::default());
        assert_eq!(plain.train, (0..10).collect::<Vec<_>>());
        let keys = SplitKeys {
            shuffle: true,
            seed: 3,
            ..SplitKeys::default()
        };
        let shuffled = split_samples(&files, 1, &keys);
        let want: Vec<u32> = shuffled_indices(10, 3).into_iter().map(|i| i as u32).collect();
        assert_eq!(shuffled.train, want);
    }

    #[test]
    fn eval_split_is_disjoint_deterministic_and_never_everything() {
        let files = vec![0u32; 100];
        let keys = SplitKeys {
            eval_split: 0.1,
            seed: 1,
            ..SplitKeys::default()
        };
        let a = split_samples(&files, 1, &keys);
        assert_eq!(a, split_samples(&files, 1, &keys));
        assert_eq!(a.eval.len(), 10);
        assert_eq!(a.train.len(), 90);
        assert!(a.eval.iter().all(|e| !a.train.contains(e)));
        assert_eq!(eval_count(2, 0.9), 1);
        assert_eq!(eval_count(1, 0.5), 0);
    }

    #[test]
    fn fractional_weights_subsample_and_integer_weights_repeat() {
        let files: Vec<u32> = (0..30).map(|i| u32::from(i >= 10)).collect();
        let keys = SplitKeys {
            weights: Some(vec![3.0, 0.5]),
            ..SplitKeys::default()
        };
        let s = split_samples(&files, 2, &keys);
        assert_eq!(s.train.iter().filter(|&&i| i < 10).count(), 30);
        assert_eq!(s.train.iter().filter(|&&i| i >= 10).count(), 10);
    }
}
