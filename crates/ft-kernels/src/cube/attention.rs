//! Attention as CubeCL kernels with O(seq) memory: no `[heads, seq, keys]` scores are ever
//! stored. The forward runs one unit per (sample, head, query) over the keys it may see with
//! an online softmax and keeps one f32 log-sum-exp per query; the backward recomputes each
//! probability from it, one unit per query for `dq` and one per (sample, kv head, key) for `dk`
//! and `dv` (summing over the query heads that share it, so grouped K/V are never repeated).
//! The mask is evaluated per pair from per-token tables (padding, packed segment ids, cached
//! slots), the same predicate as [`AttentionMask::visible`].

use burn::tensor::ops::{FloatTensorOps, IntTensorOps};
use burn::tensor::{DType, TensorData};
use burn_cubecl::element::BoolElement;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;

use super::{elementwise, empty};
use crate::mask::AttentionMask;

/// The sizes every attention kernel shares.
#[derive(CubeType, CubeLaunch)]
struct Dims {
    batch: usize,
    seq: usize,
    past: usize,
    heads: usize,
    kv_heads: usize,
    /// 0 for no sliding window.
    window: usize,
}

#[cube]
fn visible(
    attention_mask: &Tensor<i32>,
    segment_ids: &Tensor<i32>,
    cache_mask: &Tensor<i32>,
    dims: &Dims,
    sample: usize,
    i: usize,
    j: usize,
) -> bool {
    let query = dims.past + i;
    let mut seen = j <= query;
    if seen && dims.window > 0 {
        seen = query - j < dims.window;
    }
    if seen {
        if j < dims.past {
            seen = cache_mask[sample * dims.past + j] != 0;
        } else {
            let key = sample * dims.seq + j - dims.past;
            seen = attention_mask[key] != 0 && segment_ids[key] == segment_ids[sample * dims.seq + i];
        }
    }
    seen
}

/// The first key query `i` may see (the window's start).
#[cube]
fn first_key(dims: &Dims, i: usize) -> usize {
    let query = dims.past + i;
    let mut first = 0usize;
    if dims.window > 0 && query + 1 > dims.window {
        first = query + 1 - dims.window;
    }
    first
}

/// `scale · q_i · k_j` for query row offset `q_at` and key row offset `k_at`.
#[cube]
fn score<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    q_at: usize,
    k_at: usize,
    scale: f32,
    #[comptime] head_dim: usize,
) -> f32 {
    let mut dot = 0.0f32;
    #[unroll]
    for d in 0..head_dim {
        dot += f32::cast_from(q[q_at + d]) * f32::cast_from(k[k_at + d]);
    }
    dot * scale
}

/// Offsets of a query row in `[batch, seq, heads, head_dim]` and of a key row in
/// `[batch, keys, kv_heads, head_dim]`.
#[cube]
fn q_offset(dims: &Dims, sample: usize, i: usize, head: usize, #[comptime] head_dim: usize) -> usize {
    ((sample * dims.seq + i) * dims.heads + head) * head_dim
}

#[cube]
fn k_offset(dims: &Dims, sample: usize, j: usize, kv_head: usize, #[comptime] head_dim: usize) -> usize {
    ((sample * (dims.past + dims.seq) + j) * dims.kv_heads + kv_head) * head_dim
}

/// The query row a unit of the per-query kernels works on (units: queries fastest, then heads,
/// then samples), with its kv head and the offset of its row.
#[derive(CubeType)]
struct QueryUnit {
    sample: usize,
    head: usize,
    i: usize,
    kv_head: usize,
    q_at: usize,
}

#[cube]
fn query_unit(dims: &Dims, #[comptime] head_dim: usize) -> QueryUnit {
    let unit = ABSOLUTE_POS;
    let i = unit % dims.seq;
    let head = (unit / dims.seq) % dims.heads;
    let sample = unit / (dims.seq * dims.heads);
    QueryUnit {
        sample,
        head,
        i,
        kv_head: head / (dims.heads / dims.kv_heads),
        q_at: q_offset(dims, sample, i, head, head_dim),
    }
}

/// An f32 accumulator of `len` zeros.
#[cube]
fn zeros(#[comptime] len: usize) -> Array<f32> {
    let mut values = Array::<f32>::new(len);
    #[unroll]
    for d in 0..len {
        values[d] = 0.0f32;
    }
    values
}

#[cube(launch)]
fn forward_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<f32>,
    attention_mask: &Tensor<i32>,
    segment_ids: &Tensor<i32>,
    cache_mask: &Tensor<i32>,
    dims: &Dims,
    scale: f32,
    #[comptime] head_dim: usize,
    #[define(F)] _dtype: StorageType,
) {
    // One unit per (sample, head, query), queries fastest.
    if ABSOLUTE_POS >= dims.batch * dims.heads * dims.seq {
        terminate!();
    }
    let query = query_unit(dims, head_dim);
    let (sample, head, i, kv_head, q_at) = (query.sample, query.head, query.i, query.kv_head, query.q_at);

    let mut acc = zeros(head_dim);
    let mut max = f32::new(-1.0e30);
    let mut total = 0.0f32;
    for j in first_key(dims, i)..dims.past + i + 1 {
        if visible(attention_mask, segment_ids, cache_mask, dims, sample, i, j) {
            let k_at = k_offset(dims, sample, j, kv_head, head_dim);
            let s = score::<F>(q, k, q_at, k_at, scale, head_dim);
            let new_max = select(s > max, s, max);
            let correction = f32::exp(max - new_max);
            let p = f32::exp(s - new_max);
            total = total * correction + p;
            #[unroll]
            for d in 0..head_dim {
                acc[d] = acc[d] * correction + p * f32::cast_from(v[k_at + d]);
            }
            max = new_max;
        }
    }
    let mut inv_total = 0.0f32;
    if total > 0.0f32 {
        inv_total = 1.0f32 / total;
    }
    #[unroll]
    for d in 0..head_dim {
        out[q_at + d] = F::cast_from(acc[d] * inv_total);
    }
    // A query that sees no key keeps a log-sum-exp no score reaches: its probabilities are 0.
    let mut log_sum = 1.0e30f32;
    if total > 0.0f32 {
        log_sum = max + f32::ln(total);
    }
    lse[(sample * dims.heads + head) * dims.seq + i] = log_sum;
}

#[cube(launch)]
fn grad_query_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    grad_out: &Tensor<F>,
    lse: &Tensor<f32>,
    row_dot: &Tensor<f32>,
    grad_q: &mut Tensor<F>,
    attention_mask: &Tensor<i32>,
    segment_ids: &Tensor<i32>,
    cache_mask: &Tensor<i32>,
    dims: &Dims,
    scale: f32,
    #[comptime] head_dim: usize,
    #[define(F)] _dtype: StorageType,
) {
    if ABSOLUTE_POS >= dims.batch * dims.heads * dims.seq {
        terminate!();
    }
    let query = query_unit(dims, head_dim);
    let (sample, head, i, kv_head, q_at) = (query.sample, query.head, query.i, query.kv_head, query.q_at);
    let stat_at = (sample * dims.heads + head) * dims.seq + i;
    let (log_sum, delta) = (lse[stat_at], row_dot[q_at / head_dim]);

    let mut acc = zeros(head_dim);
    for j in first_key(dims, i)..dims.past + i + 1 {
        if visible(attention_mask, segment_ids, cache_mask, dims, sample, i, j) {
            let k_at = k_offset(dims, sample, j, kv_head, head_dim);
            let p = f32::exp(score::<F>(q, k, q_at, k_at, scale, head_dim) - log_sum);
            let dp = score::<F>(grad_out, v, q_at, k_at, 1.0f32, head_dim);
            let ds = p * (dp - delta);
            #[unroll]
            for d in 0..head_dim {
                acc[d] += ds * f32::cast_from(k[k_at + d]);
            }
        }
    }
    #[unroll]
    for d in 0..head_dim {
        grad_q[q_at + d] = F::cast_from(acc[d] * scale);
    }
}

#[cube(launch)]
fn grad_key_value_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    grad_out: &Tensor<F>,
    lse: &Tensor<f32>,
    row_dot: &Tensor<f32>,
    grad_k: &mut Tensor<F>,
    grad_v: &mut Tensor<F>,
    attention_mask: &Tensor<i32>,
    segment_ids: &Tensor<i32>,
    cache_mask: &Tensor<i32>,
    dims: &Dims,
    scale: f32,
    #[comptime] head_dim: usize,
    #[define(F)] _dtype: StorageType,
) {
    // One unit per (sample, kv head, key), keys fastest.
    let keys = dims.past + dims.seq;
    let unit = ABSOLUTE_POS;
    if unit >= dims.batch * dims.kv_heads * keys {
        terminate!();
    }
    let j = unit % keys;
    let kv_head = (unit / keys) % dims.kv_heads;
    let sample = unit / (keys * dims.kv_heads);
    let groups = dims.heads / dims.kv_heads;
    let k_at = k_offset(dims, sample, j, kv_head, head_dim);

    let mut acc_k = zeros(head_dim);
    let mut acc_v = zeros(head_dim);
    // Queries that may see key j: query = past + i ≥ j, and inside the window.
    let mut first = 0usize;
    if j > dims.past {
        first = j - dims.past;
    }
    let mut end = dims.seq;
    if dims.window > 0 {
        let limit = j + dims.window;
        if limit <= dims.past {
            end = 0;
        } else if limit - dims.past < dims.seq {
            end = limit - dims.past;
        }
    }
    for group in 0..groups {
        let head = kv_head * groups + group;
        for i in first..end {
            if visible(attention_mask, segment_ids, cache_mask, dims, sample, i, j) {
                let q_at = q_offset(dims, sample, i, head, head_dim);
                let stat_at = (sample * dims.heads + head) * dims.seq + i;
                let p = f32::exp(score::<F>(q, k, q_at, k_at, scale, head_dim) - lse[stat_at]);
                let dp = score::<F>(grad_out, v, q_at, k_at, 1.0f32, head_dim);
                let ds = p * (dp - row_dot[q_at / head_dim]);
                #[unroll]
                for d in 0..head_dim {
                    acc_v[d] += p * f32::cast_from(grad_out[q_at + d]);
                    acc_k[d] += ds * f32::cast_from(q[q_at + d]);
                }
            }
        }
    }
    #[unroll]
    for d in 0..head_dim {
        grad_k[k_at + d] = F::cast_from(acc_k[d] * scale);
        grad_v[k_at + d] = F::cast_from(acc_v[d]);
    }
}

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// The mask's per-token tables on the device, `[attention_mask, segment_ids, cache_mask]`, each
/// defaulting to "every token visible" when the mask has none.
fn mask_tables<R, F, I, BT>(mask: &AttentionMask, device: &R::Device) -> [CubeTensor<R>; 3]
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let new_tokens = mask.batch * mask.seq;
    let table = |values: Option<&Vec<i32>>, len: usize, fill: i32| {
        let values = values.cloned().unwrap_or_else(|| vec![fill; len.max(1)]);
        let len = values.len();
        Cube::<R, F, I, BT>::int_from_data(TensorData::new(values, [len]), device)
    };
    [
        table(mask.attention_mask.as_deref(), new_tokens, 1),
        table(mask.segment_ids.as_deref(), new_tokens, 0),
        table(mask.cache_mask.as_deref(), mask.batch * mask.past, 1),
    ]
}

/// The launch's sizes.
fn dims_of<R: CubeRuntime>(q: &CubeTensor<R>, k: &CubeTensor<R>, mask: &AttentionMask) -> DimsLaunch<R> {
    let (heads, kv_heads) = (q.meta.shape()[2], k.meta.shape()[2]);
    DimsLaunch::new(
        mask.batch,
        mask.seq,
        mask.past,
        heads,
        kv_heads,
        mask.window.unwrap_or(0),
    )
}

/// q, k, v contiguous and in q's dtype.
fn operands<R: CubeRuntime, const N: usize>(tensors: [CubeTensor<R>; N], dtype: DType) -> [CubeTensor<R>; N] {
    tensors.map(|t| into_contiguous(burn_cubecl::kernel::cast(t, dtype)))
}

/// Attention output and the f32 log-sum-exp of each query.
///
/// # Shapes
/// - q: `[batch, seq, heads, head_dim]`; k, v: `[batch, past + seq, kv_heads, head_dim]`
/// - output: `[batch, seq, heads, head_dim]` and `[batch, heads, seq]`
pub(super) fn forward<R, F, I, BT>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    mask: &AttentionMask,
    scale: f32,
) -> (CubeTensor<R>, CubeTensor<R>)
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let dtype = q.dtype;
    let [q, k, v] = operands([q, k, v], dtype);
    let shape = q.meta.shape().to_vec();
    let (heads, head_dim) = (shape[2], shape[3]);
    let out = empty(&q, &shape, dtype);
    let lse = empty(&q, &[mask.batch, heads, mask.seq], DType::F32);
    let [attention_mask, segment_ids, cache_mask] = mask_tables::<R, F, I, BT>(mask, &q.device);
    let (cube_count, cube_dim) = elementwise(&q, mask.batch * heads * mask.seq);
    let dims = dims_of(&q, &k, mask);
    let client = q.client.clone();
    forward_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        q.into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        attention_mask.into_tensor_arg(),
        segment_ids.into_tensor_arg(),
        cache_mask.into_tensor_arg(),
        dims,
        scale,
        head_dim,
        dtype.into(),
    );
    (out, lse)
}

/// `[dq, dk, dv]`, each in its input's dtype.
///
/// # Shapes
/// - as in [`forward`]; out, grad_out: `[batch, seq, heads, head_dim]`; lse: `[batch, heads, seq]`
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<R, F, I, BT>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    out: CubeTensor<R>,
    lse: CubeTensor<R>,
    grad_out: CubeTensor<R>,
    mask: &AttentionMask,
    scale: f32,
) -> [CubeTensor<R>; 3]
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let (q_dtype, k_dtype, v_dtype) = (q.dtype, k.dtype, v.dtype);
    let [q, k, v, grad_out] = operands([q, k, v, grad_out], q_dtype);
    let lse = into_contiguous(lse);
    let shape = q.meta.shape().to_vec();
    let k_shape = k.meta.shape().to_vec();
    let (heads, head_dim) = (shape[2], shape[3]);
    // Σ_d dO·O of each query row, `[batch, seq, heads]` in f32.
    let row_dot = {
        let [grad_out, out] = operands([grad_out.clone(), out], DType::F32);
        let product = Cube::<R, F, I, BT>::float_mul(grad_out, out);
        into_contiguous(Cube::<R, F, I, BT>::float_sum_dim(product, 3))
    };
    let [attention_mask, segment_ids, cache_mask] = mask_tables::<R, F, I, BT>(mask, &q.device);
    let client = q.client.clone();

    let grad_q = empty(&q, &shape, q_dtype);
    let (cube_count, cube_dim) = elementwise(&q, mask.batch * heads * mask.seq);
    grad_query_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        q.clone().into_tensor_arg(),
        k.clone().into_tensor_arg(),
        v.clone().into_tensor_arg(),
        grad_out.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        row_dot.clone().into_tensor_arg(),
        grad_q.clone().into_tensor_arg(),
        attention_mask.clone().into_tensor_arg(),
        segment_ids.clone().into_tensor_arg(),
        cache_mask.clone().into_tensor_arg(),
        dims_of(&q, &k, mask),
        scale,
        head_dim,
        q_dtype.into(),
    );

    let grad_k = empty(&q, &k_shape, q_dtype);
    let grad_v = empty(&q, &k_shape, q_dtype);
    let kv_units = k_shape[0] * k_shape[1] * k_shape[2];
    let (cube_count, cube_dim) = elementwise(&q, kv_units);
    let dims = dims_of(&q, &k, mask);
    grad_key_value_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        q.into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        grad_out.into_tensor_arg(),
        lse.into_tensor_arg(),
        row_dot.into_tensor_arg(),
        grad_k.clone().into_tensor_arg(),
        grad_v.clone().into_tensor_arg(),
        attention_mask.into_tensor_arg(),
        segment_ids.into_tensor_arg(),
        cache_mask.into_tensor_arg(),
        dims,
        scale,
        head_dim,
        q_dtype.into(),
    );
    [
        grad_q,
        burn_cubecl::kernel::cast(grad_k, k_dtype),
        burn_cubecl::kernel::cast(grad_v, v_dtype),
    ]
}
