//! The reference chunked cross-entropy in Burn tensor ops (any backend).

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, IndexingUpdateOp, Int, Tensor, TensorData};

use super::rows_per_chunk;

/// Summed loss `[1]` (f32) and the log-sum-exp of every row `[rows]` (f32).
///
/// # Shapes
/// - hidden: `[rows, hidden]`; weight: `[vocab, hidden]`; targets: `rows` ids
pub fn forward<B: Backend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: &[u32],
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let device = hidden.device();
    let mut loss = Tensor::<B, 1>::zeros([1], &device).cast(FloatDType::F32);
    let mut lse_chunks = Vec::new();
    for (first, ids) in chunks(targets, weight.dims()[0]) {
        let logits = chunk_logits(&hidden, &weight, first, ids.len());
        let max = logits.clone().max_dim(1);
        let lse = max.clone() + (logits.clone() - max).exp().sum_dim(1).log();
        let picked = logits.gather(1, target_index::<B>(ids, &device));
        loss = loss + (lse.clone() - picked).sum();
        lse_chunks.push(lse.squeeze_dim(1));
    }
    (loss, Tensor::cat(lse_chunks, 0))
}

/// Gradients with respect to the hidden rows and (when `weight_grad`) the weight, for an
/// upstream gradient `grad` `[1]` of the summed loss.
///
/// # Shapes
/// - hidden: `[rows, hidden]`; weight: `[vocab, hidden]`; lse: `[rows]`; grad: `[1]`
/// - output: `[rows, hidden]` and `[vocab, hidden]`, in their inputs' dtypes
pub fn backward<B: Backend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: &[u32],
    lse: Tensor<B, 1>,
    grad: Tensor<B, 1>,
    weight_grad: bool,
) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
    let device = hidden.device();
    let (h_dtype, w_dtype) = (hidden.dtype(), weight.dtype());
    let grad = grad.cast(FloatDType::F32).unsqueeze_dim::<2>(1);
    let weight_f32 = weight.clone().cast(FloatDType::F32);
    let mut grad_hidden = Vec::new();
    let mut grad_weight =
        weight_grad.then(|| Tensor::<B, 2>::zeros(weight.dims(), &device).cast(FloatDType::F32));
    for (first, ids) in chunks(targets, weight.dims()[0]) {
        let rows = ids.len();
        let logits = chunk_logits(&hidden, &weight, first, rows);
        let lse = lse
            .clone()
            .narrow(0, first, rows)
            .cast(FloatDType::F32)
            .unsqueeze_dim(1);
        let minus_one = Tensor::<B, 2>::ones([rows, 1], &device)
            .cast(FloatDType::F32)
            .neg();
        let probs = (logits - lse).exp();
        let grad_logits = probs.scatter(
            1,
            target_index::<B>(ids, &device),
            minus_one,
            IndexingUpdateOp::Add,
        ) * grad.clone();
        grad_hidden.push(grad_logits.clone().matmul(weight_f32.clone()).cast(h_dtype));
        if let Some(acc) = grad_weight.take() {
            let rows_in = hidden.clone().narrow(0, first, rows).cast(FloatDType::F32);
            grad_weight = Some(acc + grad_logits.transpose().matmul(rows_in));
        }
    }
    (Tensor::cat(grad_hidden, 0), grad_weight.map(|g| g.cast(w_dtype)))
}

/// `(first row, targets)` of each chunk.
pub(crate) fn chunks(targets: &[u32], vocab: usize) -> impl Iterator<Item = (usize, &[u32])> {
    let size = rows_per_chunk(vocab);
    targets
        .chunks(size)
        .enumerate()
        .map(move |(i, ids)| (i * size, ids))
}

/// f32 logits `[rows, vocab]` of rows `first..first + rows`.
pub(crate) fn chunk_logits<B: Backend>(
    hidden: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    first: usize,
    rows: usize,
) -> Tensor<B, 2> {
    let chunk = hidden.clone().narrow(0, first, rows);
    chunk.matmul(weight.clone().transpose()).cast(FloatDType::F32)
}

/// The targets as a `[rows, 1]` index.
fn target_index<B: Backend>(ids: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
    let rows = ids.len();
    Tensor::from_data(TensorData::new(ids, [rows, 1]), device)
}
