//! Packing and ordering over a token cache by index: a row is a range of the concatenated
//! stream of the ordered samples, so only the order (`u32` per sample) and its prefix sums
//! (`u64` per sample) live in memory; tokens are read from the map when a row is built.
//! The rows are exactly those of [`crate::pack::pack`] over the same ordered samples.

use std::sync::Arc;

use super::store::TokenCache;
use crate::pack::PackedRow;
use crate::rows::RowSource;

/// Rows over a cache: packed into `max_length` rows, or one row per sample.
#[derive(Debug, Clone)]
pub struct CachedRows {
    cache: Arc<TokenCache>,
    order: Vec<u32>,
    /// `[order.len() + 1]` start of each ordered sample in the packed stream.
    starts: Vec<u64>,
    max_length: usize,
    pack: bool,
}

impl CachedRows {
    /// Rows of the samples `order` (repeats allowed), packed when `pack`.
    pub fn new(cache: Arc<TokenCache>, order: Vec<u32>, max_length: usize, pack: bool) -> Self {
        assert!(
            max_length > 0,
            "invariant: max_length > 0 is checked by the config"
        );
        let mut starts = Vec::with_capacity(order.len() + 1);
        let mut total = 0u64;
        starts.push(0);
        for &i in &order {
            total += cache.sample_len(i as usize) as u64;
            starts.push(total);
        }
        Self {
            cache,
            order,
            starts,
            max_length,
            pack,
        }
    }

    /// The cache read from.
    pub fn cache(&self) -> &Arc<TokenCache> {
        &self.cache
    }

    /// Samples in row order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Tokens over all rows.
    pub fn total_tokens(&self) -> u64 {
        *self.starts.last().expect("invariant: starts has a first entry")
    }
}

impl RowSource for CachedRows {
    fn len(&self) -> usize {
        if self.pack {
            self.total_tokens().div_ceil(self.max_length as u64) as usize
        } else {
            self.order.len()
        }
    }

    fn row(&self, r: usize) -> PackedRow {
        if !self.pack {
            return PackedRow::single(&self.cache.sample(self.order[r] as usize));
        }
        let start = r as u64 * self.max_length as u64;
        let end = (start + self.max_length as u64).min(self.total_tokens());
        let mut row = PackedRow {
            cu_seqlens: vec![0],
            ..PackedRow::default()
        };
        // The ordered sample holding `start`: the last whose start is ≤ it.
        let mut k = self.starts.partition_point(|&s| s <= start) - 1;
        let mut at = start;
        while at < end {
            let (s0, s1) = (self.starts[k], self.starts[k + 1]);
            let piece_end = s1.min(end);
            if piece_end > at {
                let span = self.cache.span(self.order[k] as usize);
                let from = span.start + (at - s0) as usize;
                let to = span.start + (piece_end - s0) as usize;
                row.input_ids.extend(self.cache.ids(from..to));
                row.labels.extend(self.cache.labels(from..to));
                row.position_ids.extend(0..(to - from) as i32);
                row.cu_seqlens.push(row.input_ids.len());
                at = piece_end;
            }
            k += 1;
        }
        row
    }
}
