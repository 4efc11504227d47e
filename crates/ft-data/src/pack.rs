//! Packing: encoded samples concatenated and cut into rows of exactly `max_length` tokens
//! (XTuner's packer: samples may split across rows), with per-sample boundaries and restarting
//! position ids for variable-length (block-diagonal) attention. Unlike XTuner, nothing is lost:
//! the final partial row is kept, and shuffling is seeded.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::encode::EncodedSample;

/// One packed row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackedRow {
    /// Token ids, at most `max_length`.
    pub input_ids: Vec<i32>,
    /// Labels, same length.
    pub labels: Vec<i32>,
    /// Position ids restarting at 0 at every sample boundary.
    pub position_ids: Vec<i32>,
    /// Sample boundaries within the row: `[0, b1, ..., len]` (XTuner's `cumulative_len`).
    pub cu_seqlens: Vec<usize>,
}

impl PackedRow {
    /// Labels a causal LM is trained on (positions 1.., not `IGNORE_INDEX`), as
    /// [`crate::batch::Batch::supervised_targets`] counts them for a batch of rows.
    pub fn supervised_targets(&self) -> usize {
        let ignored = crate::encode::IGNORE_INDEX;
        self.labels.iter().skip(1).filter(|&&l| l != ignored).count()
    }

    /// Length of the longest segment (XTuner's `max_seqlen`).
    pub fn max_seqlen(&self) -> usize {
        self.cu_seqlens.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }

    /// A row holding one unpacked sample.
    pub fn single(sample: &EncodedSample) -> Self {
        let n = sample.input_ids.len();
        Self {
            input_ids: sample.input_ids.clone(),
            labels: sample.labels.clone(),
            position_ids: (0..n as i32).collect(),
            cu_seqlens: vec![0, n],
        }
    }
}

/// Returns the indices `0..n` shuffled deterministically by `seed` (ChaCha8, the same on every
/// platform).
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

/// Packs `samples` in the given order into rows of `max_length` tokens.
pub fn pack(samples: &[EncodedSample], max_length: usize) -> Vec<PackedRow> {
    assert!(
        max_length > 0,
        "invariant: max_length > 0 is checked by the config"
    );
    let mut rows = Vec::new();
    let mut row = PackedRow {
        cu_seqlens: vec![0],
        ..Default::default()
    };
    for sample in samples {
        let mut offset = 0;
        while offset < sample.input_ids.len() {
            let room = max_length - row.input_ids.len();
            let take = room.min(sample.input_ids.len() - offset);
            let end = offset + take;
            row.input_ids.extend_from_slice(&sample.input_ids[offset..end]);
            row.labels.extend_from_slice(&sample.labels[offset..end]);
            row.position_ids.extend(0..take as i32);
            row.cu_seqlens.push(row.input_ids.len());
            offset = end;
            if row.input_ids.len() == max_length {
                rows.push(std::mem::replace(
                    &mut row,
                    PackedRow {
                        cu_seqlens: vec![0],
                        ..Default::default()
                    },
                ));
            }
        }
    }
    if !row.input_ids.is_empty() {
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, start: i32) -> EncodedSample {
        EncodedSample {
            input_ids: (start..start + n as i32).collect(),
            labels: (start..start + n as i32).collect(),
            truncated: false,
        }
    }

    #[test]
    fn splits_samples_across_rows_and_restarts_positions() {
        let rows = pack(&[sample(3, 0), sample(4, 10)], 5);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].input_ids, vec![0, 1, 2, 10, 11]);
        assert_eq!(rows[0].position_ids, vec![0, 1, 2, 0, 1]);
        assert_eq!(rows[0].cu_seqlens, vec![0, 3, 5]);
        assert_eq!(rows[1].input_ids, vec![12, 13]);
        assert_eq!(rows[1].position_ids, vec![0, 1]);
        assert_eq!(rows[1].cu_seqlens, vec![0, 2]);
        assert_eq!(rows[0].max_seqlen(), 3);
    }

    #[test]
    fn shuffle_is_deterministic_and_seed_dependent() {
        assert_eq!(shuffled_indices(50, 7), shuffled_indices(50, 7));
        assert_ne!(shuffled_indices(50, 7), shuffled_indices(50, 8));
        let mut sorted = shuffled_indices(50, 7);
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
