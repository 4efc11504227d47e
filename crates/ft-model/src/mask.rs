//! The additive attention bias, built on the host: causal, padding keys hidden, no attention
//! across packed segments, and (Mistral, some Qwen2 layers) a sliding window.
//!
//! The window follows transformers' `sliding_window_overlay`: query `q` sees key `k` only when
//! `q - k < window` (itself and the `window - 1` keys before it), where `q` and `k` are indices
//! in the key sequence (cache included), not position ids.

use crate::model::ModelInput;

/// Large negative attention bias for masked positions (finite, so fully masked padding rows
/// give a uniform softmax instead of NaN).
pub(crate) const MASKED: f32 = -1e30;

/// The additive bias `[batch, 1, seq, past + seq]` (row-major) for `input`'s new tokens after
/// `past` cached ones: 0 where the key is visible, [`MASKED`] where it is not.
pub(crate) fn attention_bias(input: &ModelInput, past: usize, window: Option<usize>) -> Vec<f32> {
    let (b, s) = (input.batch, input.seq);
    let total = past + s;
    let mut bias = vec![0.0f32; b * s * total];
    for row in 0..b {
        for i in 0..s {
            for j in 0..total {
                if !visible(input, row, past, i, j, window) {
                    bias[(row * s + i) * total + j] = MASKED;
                }
            }
        }
    }
    bias
}

/// Whether new token `i` of `row` may attend key `j` (`j < past` are cached keys).
fn visible(input: &ModelInput, row: usize, past: usize, i: usize, j: usize, window: Option<usize>) -> bool {
    let query = past + i;
    if j > query || window.is_some_and(|w| query - j >= w) {
        return false;
    }
    let Some(jj) = j.checked_sub(past) else {
        return true; // cached keys are earlier tokens of the same (unpadded) row
    };
    let s = input.seq;
    let pad = input
        .attention_mask
        .as_ref()
        .is_some_and(|m| m[row * s + jj] == 0);
    let other_segment = input
        .segment_ids
        .as_ref()
        .is_some_and(|seg| seg[row * s + jj] != seg[row * s + i]);
    !pad && !other_segment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(seq: usize) -> ModelInput {
        ModelInput::from_ids(&vec![1; seq])
    }

    /// The visible keys of each query as a string of `x` (visible) and `.` (hidden).
    fn pattern(bias: &[f32], rows: usize, cols: usize) -> Vec<String> {
        (0..rows)
            .map(|r| {
                bias[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|&v| if v == 0.0 { 'x' } else { '.' })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn window_keeps_the_query_and_the_window_minus_one_keys_before_it() {
        let bias = attention_bias(&input(5), 0, Some(2));
        let want = ["x....", "xx...", ".xx..", "..xx.", "...xx"];
        assert_eq!(pattern(&bias, 5, 5), want);
    }

    #[test]
    fn without_a_window_the_mask_is_causal() {
        let bias = attention_bias(&input(3), 0, None);
        assert_eq!(pattern(&bias, 3, 3), ["x..", "xx.", "xxx"]);
    }

    #[test]
    fn window_reaches_into_the_cache_by_absolute_index() {
        // Two new tokens after four cached ones: queries are keys 4 and 5.
        let bias = attention_bias(&input(2), 4, Some(3));
        assert_eq!(pattern(&bias, 2, 6), ["..xxx.", "...xxx"]);
    }

    #[test]
    fn window_combines_with_segments_and_padding() {
        let packed = ModelInput {
            batch: 1,
            seq: 6,
            input_ids: vec![1; 6],
            attention_mask: Some(vec![1, 1, 1, 1, 1, 0]),
            position_ids: Some(vec![0, 1, 0, 1, 2, 3]),
            segment_ids: Some(vec![0, 0, 1, 1, 1, 1]),
        };
        let bias = attention_bias(&packed, 0, Some(2));
        let want = ["x.....", "xx....", "..x...", "..xx..", "...xx.", "....x."];
        assert_eq!(pattern(&bias, 6, 6), want);
    }
}
