//! Which keys each query may see: causal order, padding keys hidden, no attention across packed
//! segments, and an optional sliding window. Kernels evaluate it per tile instead of reading an
//! `[seq, seq]` bias.
//!
//! The window follows transformers' `sliding_window_overlay`: query `q` sees key `k` only when
//! `q - k < window` (itself and the `window - 1` keys before it), where `q` and `k` are indices in
//! the key sequence (cache included), not position ids.

use std::collections::HashMap;
use std::sync::Arc;

/// Large negative bias of a hidden key in [`AttentionMask::bias`] (finite, so that adding it to a
/// score never gives NaN).
pub const MASKED: f32 = -1e30;

/// The visibility rule of one attention call: `seq` new queries per row after `past` cached keys.
///
/// A query that sees no key at all (a left-padding position) gets a zero output, as in
/// FlashAttention; no other position attends to it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMask {
    /// Rows.
    pub batch: usize,
    /// New tokens (queries) per row.
    pub seq: usize,
    /// Cached keys before the new tokens (all visible to them, window aside).
    pub past: usize,
    /// Sliding window in keys, `None` for full causal attention.
    pub window: Option<usize>,
    /// `[batch, seq]`: 0 marks a padding token of the new ones (hidden as a key).
    pub attention_mask: Option<Arc<Vec<i32>>>,
    /// `[batch, seq]`: the packed sample of each new token (queries see their own segment only).
    pub segment_ids: Option<Arc<Vec<i32>>>,
    /// `[batch, past]`: 0 marks an empty slot of the cache (rows of different lengths decoded
    /// together, left-padded), hidden from every query.
    pub cache_mask: Option<Arc<Vec<i32>>>,
}

impl AttentionMask {
    /// Plain causal attention over `seq` new tokens after `past` cached ones.
    pub fn causal(batch: usize, seq: usize, past: usize) -> Self {
        Self {
            batch,
            seq,
            past,
            window: None,
            attention_mask: None,
            segment_ids: None,
            cache_mask: None,
        }
    }

    /// Whether only causal order hides keys (no window, padding, segments or cache slots).
    pub fn is_causal_only(&self) -> bool {
        self.window.is_none()
            && self.attention_mask.is_none()
            && self.segment_ids.is_none()
            && self.cache_mask.is_none()
    }

    /// Keys per row: cached plus new.
    pub fn keys(&self) -> usize {
        self.past + self.seq
    }

    /// Whether new token `i` of `row` may attend key `j` (`j < past` are cached keys).
    pub fn visible(&self, row: usize, i: usize, j: usize) -> bool {
        let query = self.past + i;
        if j > query || self.window.is_some_and(|w| query - j >= w) {
            return false;
        }
        let Some(jj) = j.checked_sub(self.past) else {
            // Cached keys are earlier tokens of the same row, unless the slot is empty.
            return self
                .cache_mask
                .as_ref()
                .is_none_or(|m| m[row * self.past + j] != 0);
        };
        let at = |i: usize| row * self.seq + i;
        let pad = self.attention_mask.as_ref().is_some_and(|m| m[at(jj)] == 0);
        let other_segment = self
            .segment_ids
            .as_ref()
            .is_some_and(|seg| seg[at(jj)] != seg[at(i)]);
        !pad && !other_segment
    }

    /// The keys query `i` may see lie in `first..=last` (never empty: `last` is the query).
    /// Padding and segments are not applied here (kernels skip whole tiles with it).
    pub fn key_range(&self, i: usize) -> (usize, usize) {
        let query = self.past + i;
        let first = self.window.map_or(0, |w| (query + 1).saturating_sub(w));
        (first, query)
    }

    /// Sets to −∞ the scores of the keys `first_key..first_key + line.len()` that new token `i`
    /// of `row` may not see; the same rule as [`AttentionMask::visible`], row at a time.
    pub fn hide_hidden_keys(&self, row: usize, i: usize, first_key: usize, line: &mut [f32]) {
        let (first, last) = self.key_range(i);
        let end = first_key + line.len();
        for (j, score) in (first_key..end).zip(line.iter_mut()) {
            if j < first || j > last {
                *score = f32::NEG_INFINITY;
            }
        }
        // Cached keys may be empty slots.
        if let Some(slots) = &self.cache_mask {
            let cached_end = end.min(self.past);
            for j in first_key.max(first)..cached_end {
                if slots[row * self.past + j] == 0 {
                    line[j - first_key] = f32::NEG_INFINITY;
                }
            }
        }
        // New keys (past the cache) may also be padding or in another segment.
        let from = first_key.max(self.past).max(first);
        let to = end.min(last + 1);
        if from >= to {
            return;
        }
        // Key j is new token j − past of the row; `line` starts at key `first_key`.
        let (base, offset) = (row * self.seq, self.past);
        let keys = from - offset..to - offset;
        let line = &mut line[from - first_key..to - first_key];
        if let Some(mask) = &self.attention_mask {
            for (score, &m) in line.iter_mut().zip(&mask[base + keys.start..base + keys.end]) {
                if m == 0 {
                    *score = f32::NEG_INFINITY;
                }
            }
        }
        if let Some(segments) = &self.segment_ids {
            let own = segments[base + i];
            for (score, &s) in line.iter_mut().zip(&segments[base + keys.start..base + keys.end]) {
                if s != own {
                    *score = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// Where each packed sample starts and ends in its row, for skipping whole tiles of other
    /// samples; `None` without segments or with cached keys (which every segment sees).
    pub(crate) fn segment_spans(&self) -> Option<SegmentSpans> {
        let segments = self.segment_ids.as_ref().filter(|_| self.past == 0)?;
        let mut first = Vec::with_capacity(segments.len());
        let mut last = Vec::with_capacity(segments.len());
        for ids in segments.chunks(self.seq.max(1)) {
            let mut spans: HashMap<i32, (usize, usize)> = HashMap::new();
            for (i, &id) in ids.iter().enumerate() {
                spans.entry(id).or_insert((i, i)).1 = i;
            }
            for id in ids {
                first.push(spans[id].0);
                last.push(spans[id].1);
            }
        }
        Some(SegmentSpans {
            first,
            last,
            seq: self.seq,
        })
    }

    /// The additive bias `[batch, 1, seq, past + seq]` (row-major): 0 where the key is visible,
    /// [`MASKED`] where it is not.
    pub fn bias(&self) -> Vec<f32> {
        let keys = self.keys();
        let mut bias = vec![0.0f32; self.batch * self.seq * keys];
        for row in 0..self.batch {
            for i in 0..self.seq {
                let line = &mut bias[(row * self.seq + i) * keys..][..keys];
                for (j, b) in line.iter_mut().enumerate() {
                    if !self.visible(row, i, j) {
                        *b = MASKED;
                    }
                }
            }
        }
        bias
    }

    /// `[batch, 1, seq, 1]`: 1 for a query that sees at least one key, 0 for one that sees none.
    pub fn seeing_rows(&self) -> Vec<f32> {
        let mut rows = vec![0.0f32; self.batch * self.seq];
        for row in 0..self.batch {
            for i in 0..self.seq {
                let (first, last) = self.key_range(i);
                if (first..=last).any(|j| self.visible(row, i, j)) {
                    rows[row * self.seq + i] = 1.0;
                }
            }
        }
        rows
    }

    /// Checks the side tables against the shape.
    ///
    /// # Panics
    /// When `attention_mask` or `segment_ids` do not hold `batch · seq` entries, or
    /// `cache_mask` not `batch · past` (a caller bug).
    pub fn assert_consistent(&self) {
        if let Some(slots) = &self.cache_mask {
            assert_eq!(
                slots.len(),
                self.batch * self.past,
                "cache_mask must hold batch · past entries"
            );
        }
        for (name, table) in [
            ("attention_mask", &self.attention_mask),
            ("segment_ids", &self.segment_ids),
        ] {
            if let Some(t) = table {
                assert_eq!(
                    t.len(),
                    self.batch * self.seq,
                    "{name} must hold batch · seq entries"
                );
            }
        }
    }
}

/// For each new token, the first and last position of its packed sample's id in its row (the
/// ids need not be contiguous runs). A query sees no key before its sample's first position, and
/// no query after a key's sample's last position sees that key.
pub(crate) struct SegmentSpans {
    first: Vec<usize>,
    last: Vec<usize>,
    seq: usize,
}

impl SegmentSpans {
    /// The earliest key that any of queries `first..first + rows` of `row` may see.
    pub(crate) fn earliest_key(&self, row: usize, first: usize, rows: usize) -> usize {
        let at = row * self.seq + first;
        self.first[at..at + rows].iter().copied().min().unwrap_or(first)
    }

    /// One past the last query of `row` that may see one of keys `first_key..first_key + cols`.
    pub(crate) fn queries_end(&self, row: usize, first_key: usize, cols: usize) -> usize {
        let at = row * self.seq + first_key;
        self.last[at..at + cols]
            .iter()
            .max()
            .map_or(first_key, |&last| last + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The visible keys of each query as a string of `x` (visible) and `.` (hidden).
    fn pattern(mask: &AttentionMask) -> Vec<String> {
        let bias = mask.bias();
        let cols = mask.keys();
        (0..mask.batch * mask.seq)
            .map(|r| {
                bias[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|&v| if v == 0.0 { 'x' } else { '.' })
                    .collect()
            })
            .collect()
    }

    fn windowed(seq: usize, past: usize, window: usize) -> AttentionMask {
        AttentionMask {
            window: Some(window),
            ..AttentionMask::causal(1, seq, past)
        }
    }

    #[test]
    fn window_keeps_the_query_and_the_window_minus_one_keys_before_it() {
        let want = ["x....", "xx...", ".xx..", "..xx.", "...xx"];
        assert_eq!(pattern(&windowed(5, 0, 2)), want);
    }

    #[test]
    fn without_a_window_the_mask_is_causal() {
        assert_eq!(pattern(&AttentionMask::causal(1, 3, 0)), ["x..", "xx.", "xxx"]);
    }

    #[test]
    fn window_reaches_into_the_cache_by_absolute_index() {
        // Two new tokens after four cached ones: queries are keys 4 and 5.
        assert_eq!(pattern(&windowed(2, 4, 3)), ["..xxx.", "...xxx"]);
    }

    #[test]
    fn window_combines_with_segments_and_padding() {
        let packed = AttentionMask {
            window: Some(2),
            attention_mask: Some(Arc::new(vec![1, 1, 1, 1, 1, 0])),
            segment_ids: Some(Arc::new(vec![0, 0, 1, 1, 1, 1])),
            ..AttentionMask::causal(1, 6, 0)
        };
        let want = ["x.....", "xx....", "..x...", "..xx..", "...xx.", "....x."];
        assert_eq!(pattern(&packed), want);
    }

    #[test]
    fn key_range_covers_every_visible_key() {
        let mask = windowed(7, 3, 4);
        for i in 0..mask.seq {
            let (first, last) = mask.key_range(i);
            for j in 0..mask.keys() {
                if mask.visible(0, i, j) {
                    assert!((first..=last).contains(&j), "query {i} key {j}");
                }
            }
        }
    }

    #[test]
    fn hiding_a_row_at_a_time_agrees_with_visible() {
        let packed = AttentionMask {
            window: Some(5),
            attention_mask: Some(Arc::new(vec![1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0])),
            segment_ids: Some(Arc::new(vec![0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 1, 1, 2, 2])),
            ..AttentionMask::causal(2, 8, 3)
        };
        for mask in [
            packed.clone(),
            AttentionMask {
                window: None,
                ..packed
            },
        ] {
            for row in 0..mask.batch {
                for i in 0..mask.seq {
                    for first_key in [0, 2, 5] {
                        let mut line = vec![0.0f32; mask.keys() - first_key];
                        mask.hide_hidden_keys(row, i, first_key, &mut line);
                        for (c, &v) in line.iter().enumerate() {
                            let j = first_key + c;
                            assert_eq!(v == 0.0, mask.visible(row, i, j), "row {row} query {i} key {j}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn empty_cache_slots_are_hidden_from_every_query() {
        // Two rows after a cache of 3 slots; the first row's first slot is empty (left padding).
        let mask = AttentionMask {
            cache_mask: Some(Arc::new(vec![0, 1, 1, 1, 1, 1])),
            ..AttentionMask::causal(2, 2, 3)
        };
        assert!(!mask.is_causal_only());
        assert_eq!(pattern(&mask)[..2], [".xxx.", ".xxxx"]);
        for row in 0..2 {
            for i in 0..2 {
                for first_key in [0, 1, 3] {
                    let mut line = vec![0.0f32; mask.keys() - first_key];
                    mask.hide_hidden_keys(row, i, first_key, &mut line);
                    for (c, &v) in line.iter().enumerate() {
                        assert_eq!(
                            v == 0.0,
                            mask.visible(row, i, first_key + c),
                            "row {row} query {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_left_padded_query_sees_nothing() {
        let mask = AttentionMask {
            attention_mask: Some(Arc::new(vec![0, 1, 1])),
            ..AttentionMask::causal(1, 3, 0)
        };
        assert_eq!(mask.seeing_rows(), [0.0, 1.0, 1.0]);
    }
}
