//! Attention on burn-flex: FlashAttention-2's tiled forward (online softmax, log-sum-exp kept)
//! and a backward that recomputes each tile's probabilities, in f32, on rayon.
//!
//! The backward runs in two passes so that no two tasks write the same rows: one task per key
//! tile accumulates dK and dV over every query head of its group, one task per query tile
//! accumulates dQ. Memory beyond the inputs and outputs is a few tiles per thread.

use burn::tensor::{DType, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::flex::{HostF32, cast_back};
use crate::mask::AttentionMask;
use crate::tile::{MatRef, matmul};

/// Query rows per tile.
const QUERY_TILE: usize = 64;
/// Key columns per tile.
const KEY_TILE: usize = 64;

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
    let inputs = BackwardInputs {
        shape: &shape,
        q: q.data(),
        k: k.data(),
        v: v.data(),
        lse: lse.data(),
        grad_out: grad_out.data(),
        row_dot: &row_dots(grad_out.data(), out.data(), shape.head_dim),
        mask,
        scale,
    };
    let (dk, dv) = inputs.key_grads();
    let dq = inputs.query_grads();
    [
        shape.query_tensor(dq, q_dtype),
        shape.key_tensor(dk, k_dtype),
        shape.key_tensor(dv, v_dtype),
    ]
}

/// The sizes of one attention call.
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
            heads: qs[1],
            kv_heads: ks[1],
            seq: qs[2],
            keys: ks[2],
            head_dim: qs[3],
        }
    }

    fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Floats of one query head's rows, and of one key head's rows.
    fn query_head_len(&self) -> usize {
        self.seq * self.head_dim
    }
    fn key_head_len(&self) -> usize {
        self.keys * self.head_dim
    }

    /// Offset of key head `kv` of `row` in k or v.
    fn key_head(&self, row: usize, kv: usize) -> usize {
        (row * self.kv_heads + kv) * self.key_head_len()
    }

    fn query_tensor(&self, data: Vec<f32>, dtype: DType) -> FlexTensor {
        let shape = [self.batch, self.heads, self.seq, self.head_dim];
        cast_back(FlexTensor::from_data(TensorData::new(data, shape)), dtype)
    }

    fn key_tensor(&self, data: Vec<f32>, dtype: DType) -> FlexTensor {
        let shape = [self.batch, self.kv_heads, self.keys, self.head_dim];
        cast_back(FlexTensor::from_data(TensorData::new(data, shape)), dtype)
    }
}

/// Output `[batch, heads, seq, head_dim]` and log-sum-exp `[batch, heads, seq]`.
fn forward(
    shape: &Shapes,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &AttentionMask,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let (hd, groups) = (shape.head_dim, shape.groups());
    let mut out = vec![0.0f32; shape.batch * shape.heads * shape.query_head_len()];
    let mut lse = vec![0.0f32; shape.batch * shape.heads * shape.seq];
    out.par_chunks_mut(shape.query_head_len())
        .zip(lse.par_chunks_mut(shape.seq))
        .enumerate()
        .for_each(|(head_index, (out, lse))| {
            let (row, head) = (head_index / shape.heads, head_index % shape.heads);
            let kv = shape.key_head(row, head / groups);
            let q = &q[head_index * shape.query_head_len()..][..shape.query_head_len()];
            out.par_chunks_mut(QUERY_TILE * hd)
                .zip(lse.par_chunks_mut(QUERY_TILE))
                .enumerate()
                .for_each(|(tile, (out, lse))| {
                    let first = tile * QUERY_TILE;
                    let tile = QueryTile {
                        row,
                        first,
                        q: &q[first * hd..][..lse.len() * hd],
                        k: &k[kv..][..shape.key_head_len()],
                        v: &v[kv..][..shape.key_head_len()],
                        head_dim: hd,
                        mask,
                        scale,
                    };
                    tile.forward(out, lse);
                });
        });
    (out, lse)
}

/// One tile of query rows of one head, with that head's keys and values.
struct QueryTile<'a> {
    row: usize,
    first: usize,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    head_dim: usize,
    mask: &'a AttentionMask,
    scale: f32,
}

impl QueryTile<'_> {
    fn rows(&self) -> usize {
        self.q.len() / self.head_dim
    }

    /// Key tiles that may hold a visible key for some row of this tile.
    fn key_tiles(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (start, _) = self.mask.key_range(self.first);
        let (_, last) = self.mask.key_range(self.first + self.rows() - 1);
        (start..=last)
            .step_by(KEY_TILE)
            .map(move |j| (j, KEY_TILE.min(last + 1 - j)))
    }

    /// `scores[r, c] = scale · q[r] · k[first_key + c]`, or −∞ where the key is hidden.
    fn scores(&self, first_key: usize, cols: usize, scores: &mut [f32]) {
        let hd = self.head_dim;
        let q = MatRef::rows(self.q, self.rows(), hd, hd);
        let k = MatRef::rows(&self.k[first_key * hd..], cols, hd, hd).t();
        matmul(scores, cols, q, k, self.scale, false);
        for r in 0..self.rows() {
            for c in 0..cols {
                if !self.mask.visible(self.row, self.first + r, first_key + c) {
                    scores[r * cols + c] = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// The online softmax over key tiles; writes the normalised output and the log-sum-exp.
    fn forward(&self, out: &mut [f32], lse: &mut [f32]) {
        let (rows, hd) = (self.rows(), self.head_dim);
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
                let mut line_sum = 0.0;
                for s in line.iter_mut() {
                    *s = (*s - new_max).exp();
                    line_sum += *s;
                }
                sum[r] = sum[r] * correction + line_sum;
                max[r] = new_max;
                out[r * hd..][..hd].iter_mut().for_each(|o| *o *= correction);
            }
            let probs = MatRef::rows(scores, rows, cols, cols);
            let v = MatRef::rows(&self.v[first_key * hd..], cols, hd, hd);
            matmul(out, hd, probs, v, 1.0, true);
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
        for r in 0..self.rows() {
            for p in &mut probs[r * cols..][..cols] {
                *p = (*p - lse[r]).exp();
            }
        }
    }
}

/// `D[i] = grad_out[i] · out[i]` for every query row.
fn row_dots(grad_out: &[f32], out: &[f32], head_dim: usize) -> Vec<f32> {
    grad_out
        .par_chunks(head_dim)
        .zip(out.par_chunks(head_dim))
        .map(|(g, o)| g.iter().zip(o).map(|(g, o)| g * o).sum())
        .collect()
}

/// Everything the backward pass reads.
struct BackwardInputs<'a> {
    shape: &'a Shapes,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    lse: &'a [f32],
    grad_out: &'a [f32],
    row_dot: &'a [f32],
    mask: &'a AttentionMask,
    scale: f32,
}

impl BackwardInputs<'_> {
    /// A query tile of `head` of `row` starting at query `first`, `rows` long.
    fn query_tile(&self, row: usize, head: usize, first: usize, rows: usize) -> QueryTile<'_> {
        let s = self.shape;
        let hd = s.head_dim;
        let kv = s.key_head(row, head / s.groups());
        QueryTile {
            row,
            first,
            q: &self.q[((row * s.heads + head) * s.seq + first) * hd..][..rows * hd],
            k: &self.k[kv..][..s.key_head_len()],
            v: &self.v[kv..][..s.key_head_len()],
            head_dim: hd,
            mask: self.mask,
            scale: self.scale,
        }
    }

    /// Offset of query `first` of `head` of `row` in a `[batch, heads, seq]` table.
    fn query_row(&self, row: usize, head: usize, first: usize) -> usize {
        (row * self.shape.heads + head) * self.shape.seq + first
    }

    /// `dS = P ∘ (dP − D)` for one (query tile, key tile) pair, with `dP = dO · Vᵀ`; also
    /// returns P in `probs`.
    fn score_grads(
        &self,
        tile: &QueryTile,
        at: usize,
        first_key: usize,
        cols: usize,
        probs: &mut [f32],
        ds: &mut [f32],
    ) {
        let (rows, hd) = (tile.rows(), self.shape.head_dim);
        tile.probabilities(first_key, cols, &self.lse[at..][..rows], probs);
        let grad_out = MatRef::rows(&self.grad_out[at * hd..], rows, hd, hd);
        let v = MatRef::rows(&tile.v[first_key * hd..], cols, hd, hd).t();
        matmul(ds, cols, grad_out, v, 1.0, false);
        for r in 0..rows {
            let d = self.row_dot[at + r];
            for c in 0..cols {
                let p = probs[r * cols + c];
                ds[r * cols + c] = p * (ds[r * cols + c] - d);
            }
        }
    }

    /// dK and dV `[batch, kv_heads, keys, head_dim]`: one task per key tile, summing over every
    /// query head of the group and every query tile that can see it.
    fn key_grads(&self) -> (Vec<f32>, Vec<f32>) {
        let s = self.shape;
        let hd = s.head_dim;
        let len = s.batch * s.kv_heads * s.key_head_len();
        let (mut dk, mut dv) = (vec![0.0f32; len], vec![0.0f32; len]);
        dk.par_chunks_mut(s.key_head_len())
            .zip(dv.par_chunks_mut(s.key_head_len()))
            .enumerate()
            .for_each(|(head_index, (dk, dv))| {
                let (row, kv) = (head_index / s.kv_heads, head_index % s.kv_heads);
                dk.par_chunks_mut(KEY_TILE * hd)
                    .zip(dv.par_chunks_mut(KEY_TILE * hd))
                    .enumerate()
                    .for_each(|(tile, (dk, dv))| self.key_tile_grads(row, kv, tile * KEY_TILE, dk, dv));
            });
        (dk, dv)
    }

    fn key_tile_grads(&self, row: usize, kv: usize, first_key: usize, dk: &mut [f32], dv: &mut [f32]) {
        let s = self.shape;
        let (hd, cols) = (s.head_dim, dk.len() / s.head_dim);
        let mut probs = vec![0.0f32; QUERY_TILE * cols];
        let mut ds = vec![0.0f32; QUERY_TILE * cols];
        let queries = self.queries_seeing(first_key, cols);
        for head in kv * s.groups()..(kv + 1) * s.groups() {
            for first in queries.clone().step_by(QUERY_TILE) {
                let rows = QUERY_TILE.min(queries.end - first);
                let tile = self.query_tile(row, head, first, rows);
                let at = self.query_row(row, head, first);
                let (probs, ds) = (&mut probs[..rows * cols], &mut ds[..rows * cols]);
                self.score_grads(&tile, at, first_key, cols, probs, ds);
                let grad_out = MatRef::rows(&self.grad_out[at * hd..], rows, hd, hd);
                matmul(
                    dv,
                    hd,
                    MatRef::rows(probs, rows, cols, cols).t(),
                    grad_out,
                    1.0,
                    true,
                );
                let q = MatRef::rows(tile.q, rows, hd, hd);
                matmul(
                    dk,
                    hd,
                    MatRef::rows(ds, rows, cols, cols).t(),
                    q,
                    self.scale,
                    true,
                );
            }
        }
    }

    fn query_tile_grads(&self, row: usize, head: usize, first: usize, dq: &mut [f32]) {
        let hd = self.shape.head_dim;
        let rows = dq.len() / hd;
        let tile = self.query_tile(row, head, first, rows);
        let at = self.query_row(row, head, first);
        let mut probs = vec![0.0f32; rows * KEY_TILE];
        let mut ds = vec![0.0f32; rows * KEY_TILE];
        for (first_key, cols) in tile.key_tiles() {
            let (probs, ds) = (&mut probs[..rows * cols], &mut ds[..rows * cols]);
            self.score_grads(&tile, at, first_key, cols, probs, ds);
            let k = MatRef::rows(&tile.k[first_key * hd..], cols, hd, hd);
            matmul(dq, hd, MatRef::rows(ds, rows, cols, cols), k, self.scale, true);
        }
    }

    /// The new queries that may see a key of `first_key..first_key + cols` (causal order and
    /// the window; padding and segments are applied per element).
    fn queries_seeing(&self, first_key: usize, cols: usize) -> std::ops::Range<usize> {
        let past = self.mask.past;
        let start = first_key.saturating_sub(past);
        let end = match self.mask.window {
            Some(w) => (first_key + cols - 1 + w)
                .saturating_sub(past)
                .min(self.shape.seq),
            None => self.shape.seq,
        };
        start.min(end)..end
    }

    /// dQ `[batch, heads, seq, head_dim]`: one task per query tile.
    fn query_grads(&self) -> Vec<f32> {
        let s = self.shape;
        let hd = s.head_dim;
        let mut dq = vec![0.0f32; s.batch * s.heads * s.query_head_len()];
        dq.par_chunks_mut(s.query_head_len())
            .enumerate()
            .for_each(|(head_index, dq)| {
                let (row, head) = (head_index / s.heads, head_index % s.heads);
                dq.par_chunks_mut(QUERY_TILE * hd)
                    .enumerate()
                    .for_each(|(tile, dq)| self.query_tile_grads(row, head, tile * QUERY_TILE, dq));
            });
        dq
    }
}
