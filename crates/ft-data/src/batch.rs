//! Batching: rows right-padded to the longest row, with attention masks from true lengths
//! (never from `input_ids != pad`), labels padded with −100.

use crate::encode::IGNORE_INDEX;
use crate::pack::PackedRow;

/// Pad id for `input_ids` (XTuner pads with 0; the mask, not the id, marks padding).
pub const PAD_ID: i32 = 0;

/// A batch in row-major flat buffers of shape `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Number of rows.
    pub batch_size: usize,
    /// Padded length.
    pub seq_len: usize,
    /// `[batch, seq_len]` token ids, padded with [`PAD_ID`].
    pub input_ids: Vec<i32>,
    /// `[batch, seq_len]` labels, padded with −100.
    pub labels: Vec<i32>,
    /// `[batch, seq_len]`: 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i32>,
    /// `[batch, seq_len]` positions (restarting per packed sample; 0 on padding).
    pub position_ids: Vec<i32>,
    /// `[batch, seq_len]` segment index of each token within its row (−1 on padding); tokens
    /// attend only within their segment.
    pub segment_ids: Vec<i32>,
}

impl Batch {
    /// Positions whose label is not −100 (after the model's shift, the loss uses the count of
    /// labels[..., 1:] instead; see `supervised_targets`).
    pub fn supervised_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    /// Number of labels that a causal LM is trained on: labels at positions 1.. of each row.
    pub fn supervised_targets(&self) -> usize {
        self.labels
            .chunks(self.seq_len.max(1))
            .map(|row| row.iter().skip(1).filter(|&&l| l != IGNORE_INDEX).count())
            .sum()
    }

    /// Real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }
}

/// Collates rows into a right-padded batch.
pub fn collate(rows: &[&PackedRow]) -> Batch {
    let seq_len = rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
    let n = rows.len() * seq_len;
    let mut batch = Batch {
        batch_size: rows.len(),
        seq_len,
        input_ids: Vec::with_capacity(n),
        labels: Vec::with_capacity(n),
        attention_mask: Vec::with_capacity(n),
        position_ids: Vec::with_capacity(n),
        segment_ids: Vec::with_capacity(n),
    };
    for row in rows {
        let pad = seq_len - row.input_ids.len();
        batch.input_ids.extend_from_slice(&row.input_ids);
        batch.input_ids.extend(std::iter::repeat_n(PAD_ID, pad));
        batch.labels.extend_from_slice(&row.labels);
        batch.labels.extend(std::iter::repeat_n(IGNORE_INDEX, pad));
        batch
            .attention_mask
            .extend(std::iter::repeat_n(1, row.input_ids.len()));
        batch.attention_mask.extend(std::iter::repeat_n(0, pad));
        batch.position_ids.extend_from_slice(&row.position_ids);
        batch.position_ids.extend(std::iter::repeat_n(0, pad));
        for (segment, bounds) in row.cu_seqlens.windows(2).enumerate() {
            batch
                .segment_ids
                .extend(std::iter::repeat_n(segment as i32, bounds[1] - bounds[0]));
        }
        batch.segment_ids.extend(std::iter::repeat_n(-1, pad));
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_right_and_masks_by_length_not_by_id() {
        // Token 0 is a real token here: the mask must still cover it.
        let a = PackedRow {
            input_ids: vec![0, 5, 0],
            labels: vec![-100, 5, 0],
            position_ids: vec![0, 1, 2],
            cu_seqlens: vec![0, 3],
        };
        let b = PackedRow {
            input_ids: vec![7],
            labels: vec![7],
            position_ids: vec![0],
            cu_seqlens: vec![0, 1],
        };
        let batch = collate(&[&a, &b]);
        assert_eq!(batch.seq_len, 3);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.labels, vec![-100, 5, 0, 7, -100, -100]);
        assert_eq!(batch.segment_ids, vec![0, 0, 0, 0, -1, -1]);
        assert_eq!(batch.supervised_targets(), 2);
    }
}
