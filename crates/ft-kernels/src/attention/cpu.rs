//! Attention on burn-flex: FlashAttention-2's tiled forward (online softmax, log-sum-exp kept)
//! and a backward that recomputes each tile's probabilities, in f32, on rayon.
//!
//! Inputs are read in place in the projections' layout (`[batch, seq, heads, head_dim]`: a
//! head's rows are strided). Each task writes its own head-major block (`[batch, heads, seq,
//! head_dim]`), transposed back into the projections' layout at the end.
//!
//! The backward is one pass over (key tile, query tile) pairs, five tile products each (scores,
//! dP, dV, dK, dQ), as FlashAttention-2's. So that no two tasks write the same rows, each task
//! (one query head of one row, and a chunk of its keys) owns its keys' rows of a per-head dK and
//! dV and its own dQ; those are summed over kv groups and key chunks at the end. Memory beyond
//! the inputs and outputs is one dQ per extra key chunk (only when heads are fewer than
//! threads), a per-head dK and dV under GQA, and a few tiles per thread.

use burn::tensor::{DType, TensorData};
use burn_flex::FlexTensor;

use crate::flex::{HostF32, host_tensor};
use crate::mask::{AttentionMask, SegmentSpans};
use crate::tile::{MatRef, matmul, zeroed};
use crate::{par, simd};
use rayon::prelude::*;

/// Query rows per tile.
const QUERY_TILE: usize = 128;
/// Key columns per tile (128 × 128 measured fastest on `cargo bench --bench attention`: the
/// tile products are large enough for gemm, and a tile's scores stay in L2).
const KEY_TILE: usize = 128;

/// Output and log-sum-exp (see `KernelBackend::fused_attention_forward`).
pub(crate) fn flex_forward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    mask: &AttentionMask,
    scale: f32,
) -> (FlexTensor, FlexTensor) {
    let dtype = q.dtype();
    let shape = Shapes::of(&q, &k);
    let (q, k, v) = (HostF32::new(q), HostF32::new(k), HostF32::new(v));
    let (out, lse) = forward(&shape, q.data(), k.data(), v.data(), mask, scale);
    (
        shape.query_tensor(out, dtype),
        FlexTensor::from_data(TensorData::new(lse, [shape.batch, shape.heads, shape.seq])),
    )
}

/// `[dq, dk, dv]` (see `KernelBackend::fused_attention_backward`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn flex_backward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    out: FlexTensor,
    lse: FlexTensor,
    grad_out: FlexTensor,
    mask: &AttentionMask,
    scale: f32,
) -> [FlexTensor; 3] {
    let (q_dtype, k_dtype, v_dtype) = (q.dtype(), k.dtype(), v.dtype());
    let shape = Shapes::of(&q, &k);
    let [q, k, v, out, lse, grad_out] = [q, k, v, out, lse, grad_out].map(HostF32::new);
    let spans = mask.segment_spans();
    let inputs = BackwardInputs {
        shape: &shape,
        q: q.data(),
        k: k.data(),
        v: v.data(),
        lse: lse.data(),
        grad_out: grad_out.data(),
        row_dot: &shape.row_dots(grad_out.data(), out.data()),
        mask,
        spans: spans.as_ref(),
        scale,
    };
    let [dq, dk, dv] = inputs.grads();
    [
        shape.query_tensor(dq, q_dtype),
        shape.key_tensor(dk, k_dtype),
        shape.key_tensor(dv, v_dtype),
    ]
}

/// The sizes of one attention call; q is `[batch, seq, heads, head_dim]`, k and v
/// `[batch, keys, kv_heads, head_dim]`.
struct Shapes {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    seq: usize,
    keys: usize,
    head_dim: usize,
}

impl Shapes {
    fn of(q: &FlexTensor, k: &FlexTensor) -> Self {
        let (qs, ks) = (q.layout().shape(), k.layout().shape());
        Self {
            batch: qs[0],
            seq: qs[1],
            heads: qs[2],
            keys: ks[1],
            kv_heads: ks[2],
            head_dim: qs[3],
        }
    }

    /// Whether the call is big enough for rayon (a decoding step is not).
    fn worth_parallel(&self) -> bool {
        par::worth_parallel(self.batch * self.heads * self.seq * self.keys * self.head_dim)
    }

    fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Floats between consecutive rows of one query head, and of one key head.
    fn query_stride(&self) -> usize {
        self.heads * self.head_dim
    }
    fn key_stride(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Offset of query `i` of `head` of `row` in q (and in the output and its gradient).
    fn query_at(&self, row: usize, head: usize, i: usize) -> usize {
        ((row * self.seq + i) * self.heads + head) * self.head_dim
    }

    /// Offset of key `j` of kv head `kv` of `row` in k and v.
    fn key_at(&self, row: usize, kv: usize, j: usize) -> usize {
        ((row * self.keys + j) * self.kv_heads + kv) * self.head_dim
    }

    /// Offset of query `i` of `head` of `row` in a head-major `[batch, heads, seq]` table.
    fn lse_at(&self, row: usize, head: usize, i: usize) -> usize {
        (row * self.heads + head) * self.seq + i
    }

    /// `D = grad_out · out` per query, head-major.
    fn row_dots(&self, grad_out: &[f32], out: &[f32]) -> Vec<f32> {
        let (hd, per_head) = (self.head_dim, self.seq);
        let rows: Vec<usize> = (0..self.batch * self.heads * self.seq).collect();
        par::map(par::worth_parallel(grad_out.len()), rows, |at| {
            let (row, head, i) = (
                at / (self.heads * per_head),
                (at / per_head) % self.heads,
                at % per_head,
            );
            let from = self.query_at(row, head, i);
            grad_out[from..from + hd]
                .iter()
                .zip(&out[from..from + hd])
                .map(|(g, o)| g * o)
                .sum()
        })
    }

    /// A head-major `[batch, heads, seq, head_dim]` buffer as a `[batch, seq, heads, head_dim]`
    /// tensor.
    fn query_tensor(&self, head_major: Vec<f32>, dtype: DType) -> FlexTensor {
        let data = to_row_major(&head_major, self.batch, self.heads, self.seq, self.head_dim);
        let shape = [self.batch, self.seq, self.heads, self.head_dim];
        host_tensor(data, shape, dtype)
    }

    /// A head-major `[batch, kv_heads, keys, head_dim]` buffer as `[batch, keys, kv_heads,
    /// head_dim]`.
    fn key_tensor(&self, head_major: Vec<f32>, dtype: DType) -> FlexTensor {
        let data = to_row_major(&head_major, self.batch, self.kv_heads, self.keys, self.head_dim);
        let shape = [self.batch, self.keys, self.kv_heads, self.head_dim];
        host_tensor(data, shape, dtype)
    }
}

/// `[batch, heads, len, dim]` → `[batch, len, heads, dim]`, one rayon task per output row.
fn to_row_major(src: &[f32], batch: usize, heads: usize, len: usize, dim: usize) -> Vec<f32> {
    let mut dst = vec![0.0f32; src.len()];
    let lines: Vec<_> = dst.chunks_mut(heads * dim).enumerate().collect();
    par::for_each(par::worth_parallel(src.len()), lines, |(at, line)| {
        let (row, i) = (at / len, at % len);
        for (head, out) in line.chunks_mut(dim).enumerate() {
            let from = ((row * heads + head) * len + i) * dim;
            out.copy_from_slice(&src[from..from + dim]);
        }
    });
    debug_assert_eq!(dst.len(), batch * heads * len * dim);
    dst
}

/// Head-major output `[batch, heads, seq, head_dim]` and log-sum-exp `[batch, heads, seq]`.
fn forward(
    shape: &Shapes,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &AttentionMask,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let (hd, seq) = (shape.head_dim, shape.seq);
    let mut out = zeroed(shape.batch * shape.heads * seq * hd);
    let mut lse = vec![0.0f32; shape.batch * shape.heads * seq];
    let spans = mask.segment_spans();
    let inputs = Inputs {
        shape,
        q,
        k,
        v,
        mask,
        spans: spans.as_ref(),
        scale,
    };
    let tile = |head_index: usize, tile: usize, out: &mut [f32], lse: &mut [f32]| {
        let (row, head) = (head_index / shape.heads, head_index % shape.heads);
        inputs
            .query_tile(row, head, tile * QUERY_TILE, lse.len())
            .forward(out, lse);
    };
    let heads = out.chunks_mut(seq * hd).zip(lse.chunks_mut(seq)).enumerate();
    if !shape.worth_parallel() {
        for (head_index, (out, lse)) in heads {
            let tiles = out.chunks_mut(QUERY_TILE * hd).zip(lse.chunks_mut(QUERY_TILE));
            tiles
                .enumerate()
                .for_each(|(t, (out, lse))| tile(head_index, t, out, lse));
        }
        return (out, lse);
    }
    // Nested, so that rayon splits heads first and steals tiles (measured faster than one flat
    // list of tiles).
    let heads = out
        .par_chunks_mut(seq * hd)
        .zip(lse.par_chunks_mut(seq))
        .enumerate();
    heads.for_each(|(head_index, (out, lse))| {
        let tiles = out
            .par_chunks_mut(QUERY_TILE * hd)
            .zip(lse.par_chunks_mut(QUERY_TILE));
        tiles
            .enumerate()
            .for_each(|(t, (out, lse))| tile(head_index, t, out, lse));
    });
    (out, lse)
}

/// What every tile reads.
struct Inputs<'a> {
    shape: &'a Shapes,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    mask: &'a AttentionMask,
    spans: Option<&'a SegmentSpans>,
    scale: f32,
}

impl Inputs<'_> {
    /// Queries `first..first + rows` of `head` of `row`, with that head's keys and values.
    fn query_tile(&self, row: usize, head: usize, first: usize, rows: usize) -> QueryTile<'_> {
        let s = self.shape;
        let kv = head / s.groups();
        QueryTile {
            row,
            first,
            rows,
            q: &self.q[s.query_at(row, head, first)..],
            k: &self.k[s.key_at(row, kv, 0)..],
            v: &self.v[s.key_at(row, kv, 0)..],
            query_stride: s.query_stride(),
            key_stride: s.key_stride(),
            head_dim: s.head_dim,
            mask: self.mask,
            spans: self.spans,
            scale: self.scale,
        }
    }
}

/// One tile of query rows of one head, with that head's keys and values (strided rows).
struct QueryTile<'a> {
    row: usize,
    first: usize,
    rows: usize,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    query_stride: usize,
    key_stride: usize,
    head_dim: usize,
    mask: &'a AttentionMask,
    spans: Option<&'a SegmentSpans>,
    scale: f32,
}

impl QueryTile<'_> {
    fn queries(&self) -> MatRef<'_> {
        MatRef::rows(self.q, self.rows, self.head_dim, self.query_stride)
    }

    /// Keys (or values) `first_key..first_key + cols` as a `cols × head_dim` matrix.
    fn key_rows<'b>(&self, data: &'b [f32], first_key: usize, cols: usize) -> MatRef<'b> {
        MatRef::rows(
            &data[first_key * self.key_stride..],
            cols,
            self.head_dim,
            self.key_stride,
        )
    }

    /// Key tiles that may hold a visible key for some row of this tile (none before the
    /// earliest packed sample of its rows).
    fn key_tiles(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (mut start, _) = self.mask.key_range(self.first);
        if let Some(spans) = self.spans {
            start = start.max(spans.earliest_key(self.row, self.first, self.rows));
        }
        let (_, last) = self.mask.key_range(self.first + self.rows - 1);
        (start..=last)
            .step_by(KEY_TILE)
            .map(move |j| (j, KEY_TILE.min(last + 1 - j)))
    }

    /// `scores[r, c] = scale · q[r] · k[first_key + c]`, or −∞ where the key is hidden.
    fn scores(&self, first_key: usize, cols: usize, scores: &mut [f32]) {
        let keys = self.key_rows(self.k, first_key, cols).t();
        matmul(scores, cols, self.queries(), keys, self.scale, false);
        if self.mask.is_causal_only() {
            // Key j is hidden from query i exactly when j > past + i: only tiles crossing the
            // diagonal have hidden keys, and they are a suffix of each row.
            let past = self.mask.past;
            for r in 0..self.rows {
                let visible = (past + self.first + r + 1).saturating_sub(first_key).min(cols);
                scores[r * cols + visible..(r + 1) * cols].fill(f32::NEG_INFINITY);
            }
            return;
        }
        for (r, line) in scores.chunks_mut(cols).take(self.rows).enumerate() {
            self.mask
                .hide_hidden_keys(self.row, self.first + r, first_key, line);
        }
    }

    /// The online softmax over key tiles; writes the normalised output (`rows × head_dim`,
    /// dense) and the log-sum-exp.
    fn forward(&self, out: &mut [f32], lse: &mut [f32]) {
        let (rows, hd) = (self.rows, self.head_dim);
        let mut max = vec![f32::NEG_INFINITY; rows];
        let mut sum = vec![0.0f32; rows];
        let mut scores = vec![0.0f32; rows * KEY_TILE];
        for (first_key, cols) in self.key_tiles() {
            let scores = &mut scores[..rows * cols];
            self.scores(first_key, cols, scores);
            for r in 0..rows {
                let line = &mut scores[r * cols..][..cols];
                let tile_max = line.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let new_max = max[r].max(tile_max);
                if new_max == f32::NEG_INFINITY {
                    line.fill(0.0);
                    continue;
                }
                let correction = (max[r] - new_max).exp();
                let line_sum = simd::exp_shifted(line, new_max);
                sum[r] = sum[r] * correction + line_sum;
                max[r] = new_max;
                out[r * hd..][..hd].iter_mut().for_each(|o| *o *= correction);
            }
            let probs = MatRef::rows(scores, rows, cols, cols);
            matmul(out, hd, probs, self.key_rows(self.v, first_key, cols), 1.0, true);
        }
        for r in 0..rows {
            if sum[r] > 0.0 {
                out[r * hd..][..hd].iter_mut().for_each(|o| *o /= sum[r]);
                lse[r] = max[r] + sum[r].ln();
            } else {
                lse[r] = f32::INFINITY; // sees no key: zero output, zero gradients
            }
        }
    }

    /// `probs[r, c] = exp(score − lse[r])` (0 where hidden) for one key tile.
    fn probabilities(&self, first_key: usize, cols: usize, lse: &[f32], probs: &mut [f32]) {
        self.scores(first_key, cols, probs);
        for r in 0..self.rows {
            simd::exp_shifted(&mut probs[r * cols..][..cols], lse[r]);
        }
    }
}

/// Everything the backward pass reads; `lse` and `row_dot` are head-major.
struct BackwardInputs<'a> {
    shape: &'a Shapes,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    lse: &'a [f32],
    grad_out: &'a [f32],
    row_dot: &'a [f32],
    mask: &'a AttentionMask,
    spans: Option<&'a SegmentSpans>,
    scale: f32,
}

impl BackwardInputs<'_> {
    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            shape: self.shape,
            q: self.q,
            k: self.k,
            v: self.v,
            mask: self.mask,
            spans: self.spans,
            scale: self.scale,
        }
    }

    /// `grad_out` rows of a query tile, as a `rows × head_dim` matrix.
    fn grad_out_rows(&self, row: usize, head: usize, first: usize, rows: usize) -> MatRef<'_> {
        let s = self.shape;
        MatRef::rows(
            &self.grad_out[s.query_at(row, head, first)..],
            rows,
            s.head_dim,
            s.query_stride(),
        )
    }

    /// `dS = P ∘ (dP − D)` for one (query tile, key tile) pair, with `dP = dO · Vᵀ`; also
    /// returns P in `probs`.
    #[allow(clippy::too_many_arguments)]
    fn score_grads(
        &self,
        tile: &QueryTile,
        head: usize,
        first_key: usize,
        cols: usize,
        probs: &mut [f32],
        ds: &mut [f32],
    ) {
        let rows = tile.rows;
        let at = self.shape.lse_at(tile.row, head, tile.first);
        tile.probabilities(first_key, cols, &self.lse[at..][..rows], probs);
        let grad_out = self.grad_out_rows(tile.row, head, tile.first, rows);
        matmul(
            ds,
            cols,
            grad_out,
            tile.key_rows(tile.v, first_key, cols).t(),
            1.0,
            false,
        );
        for r in 0..rows {
            let d = self.row_dot[at + r];
            for c in 0..cols {
                let p = probs[r * cols + c];
                ds[r * cols + c] = p * (ds[r * cols + c] - d);
            }
        }
    }

    /// Head-major `[dq, dk, dv]` (`[batch, heads, seq, head_dim]` and `[batch, kv_heads, keys,
    /// head_dim]`) in one pass over (query tile, key tile) pairs.
    ///
    /// One task per (row, query head, chunk of keys) writes its keys' dK and dV rows and its own
    /// dQ; the per-head dK and dV are then summed over each kv group, and the chunks' dQ over
    /// chunks. Keys are split into chunks only when there are too few heads to keep every thread
    /// busy, so the extra memory is at most a few copies of dQ.
    fn grads(&self) -> [Vec<f32>; 3] {
        let s = self.shape;
        let (hd, heads) = (s.head_dim, s.batch * s.heads);
        let chunk_keys = self.keys_per_task();
        let chunks = s.keys.div_ceil(chunk_keys).max(1);
        let (per_query_head, per_key_head) = (s.seq * hd, s.keys * hd);
        let mut dq_parts = zeroed(chunks * heads * per_query_head);
        let mut dk = zeroed(heads * per_key_head);
        let mut dv = zeroed(heads * per_key_head);
        let mut dq_of_chunk: Vec<_> = dq_parts
            .chunks_mut(heads * per_query_head)
            .map(|part| part.chunks_mut(per_query_head))
            .collect();
        let mut tasks = Vec::with_capacity(heads * chunks);
        let key_heads = dk.chunks_mut(per_key_head).zip(dv.chunks_mut(per_key_head));
        for (head_index, (dk, dv)) in key_heads.enumerate() {
            let key_chunks = dk.chunks_mut(chunk_keys * hd).zip(dv.chunks_mut(chunk_keys * hd));
            for (chunk, (dk, dv)) in key_chunks.enumerate() {
                let dq = dq_of_chunk[chunk]
                    .next()
                    .expect("one dQ block per head and chunk");
                tasks.push((head_index, chunk * chunk_keys, dq, dk, dv));
            }
        }
        par::for_each(
            s.worth_parallel(),
            tasks,
            |(head_index, first_key, dq, dk, dv)| {
                let (row, head) = (head_index / s.heads, head_index % s.heads);
                self.key_chunk_grads(row, head, first_key, dq, dk, dv);
            },
        );
        drop(dq_of_chunk);
        [
            sum_blocks(dq_parts, chunks, heads * per_query_head),
            sum_groups(dk, s.groups(), per_key_head),
            sum_groups(dv, s.groups(), per_key_head),
        ]
    }

    /// Keys per task: all of them when rows × heads keep every thread busy, else fewer (whole
    /// key tiles), so that there are about two tasks per thread.
    fn keys_per_task(&self) -> usize {
        let s = self.shape;
        let key_tiles = s.keys.div_ceil(KEY_TILE).max(1);
        if !s.worth_parallel() {
            return key_tiles * KEY_TILE;
        }
        let wanted_tasks = 2 * rayon::current_num_threads();
        let chunks = wanted_tasks.div_ceil(s.batch * s.heads).clamp(1, key_tiles);
        key_tiles.div_ceil(chunks) * KEY_TILE
    }

    /// One task of [`Self::grads`]: keys `first_key..` (as many as `dk` holds rows) against every
    /// query tile that can see them, for one query head of one row.
    fn key_chunk_grads(
        &self,
        row: usize,
        head: usize,
        first_key: usize,
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
    ) {
        let hd = self.shape.head_dim;
        let chunk_keys = dk.len() / hd;
        let mut probs = vec![0.0f32; QUERY_TILE * KEY_TILE];
        let mut ds = vec![0.0f32; QUERY_TILE * KEY_TILE];
        let inputs = self.inputs();
        for tile_start in (0..chunk_keys).step_by(KEY_TILE) {
            let cols = KEY_TILE.min(chunk_keys - tile_start);
            let tile_key = first_key + tile_start;
            let dk = &mut dk[tile_start * hd..][..cols * hd];
            let dv = &mut dv[tile_start * hd..][..cols * hd];
            let queries = self.queries_seeing(row, tile_key, cols);
            for first in queries.clone().step_by(QUERY_TILE) {
                let rows = QUERY_TILE.min(queries.end - first);
                let tile = inputs.query_tile(row, head, first, rows);
                let (probs, ds) = (&mut probs[..rows * cols], &mut ds[..rows * cols]);
                self.score_grads(&tile, head, tile_key, cols, probs, ds);
                let grad_out = self.grad_out_rows(row, head, first, rows);
                let (probs, ds) = (
                    MatRef::rows(probs, rows, cols, cols),
                    MatRef::rows(ds, rows, cols, cols),
                );
                matmul(dv, hd, probs.t(), grad_out, 1.0, true);
                matmul(dk, hd, ds.t(), tile.queries(), self.scale, true);
                let keys = tile.key_rows(tile.k, tile_key, cols);
                let dq = &mut dq[first * hd..][..rows * hd];
                matmul(dq, hd, ds, keys, self.scale, true);
            }
        }
    }

    /// The new queries of `row` that may see a key of `first_key..first_key + cols` (causal
    /// order, the window and the keys' packed samples; padding and segments are then applied
    /// per element).
    fn queries_seeing(&self, row: usize, first_key: usize, cols: usize) -> std::ops::Range<usize> {
        let past = self.mask.past;
        let start = first_key.saturating_sub(past);
        let mut end = match self.mask.window {
            Some(w) => (first_key + cols - 1 + w)
                .saturating_sub(past)
                .min(self.shape.seq),
            None => self.shape.seq,
        };
        if let Some(spans) = self.spans {
            end = end.min(spans.queries_end(row, first_key, cols));
        }
        start.min(end)..end
    }
}

/// The sum of `count` consecutive blocks of `len` floats (the first block, when `count` is 1).
fn sum_blocks(mut blocks: Vec<f32>, count: usize, len: usize) -> Vec<f32> {
    let (first, rest) = blocks.split_at_mut(len);
    for block in rest.chunks(len).take(count - 1) {
        first.iter_mut().zip(block).for_each(|(sum, x)| *sum += x);
    }
    blocks.truncate(len);
    blocks
}

/// Per-query-head blocks `[batch, heads, len]` summed over each group of `groups` consecutive
/// heads: `[batch, heads / groups, len]`.
fn sum_groups(per_head: Vec<f32>, groups: usize, len: usize) -> Vec<f32> {
    if groups == 1 {
        return per_head;
    }
    per_head
        .chunks(groups * len)
        .flat_map(|group| {
            let mut sum = group[..len].to_vec();
            for block in group[len..].chunks(len) {
                sum.iter_mut().zip(block).for_each(|(s, x)| *s += x);
            }
            sum
        })
        .collect()
}
