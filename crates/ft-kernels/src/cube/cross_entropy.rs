//! The chunked cross-entropy as CubeCL kernels around Burn's matmul. Each chunk's logits come
//! from one matmul; one cube per row then reduces their maximum and log-sum-exp in shared memory
//! and writes the row's loss, and one unit per logit turns a chunk into its gradient
//! `grad · (softmax − one-hot)` in place. When the batch's logits fit in one chunk, the forward
//! keeps their f32 softmax (as the CPU kernels do), and the backward skips recomputing them.

use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, FloatDType, Int as IntKind, Tensor as BurnTensor, TensorData};
use burn_cubecl::element::BoolElement;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;

use super::reduce::{cube_max, cube_sum};
use super::{elementwise, empty, spread};
use crate::backend::float;
use crate::cross_entropy::composite::{chunk_logits, chunks};
use crate::cross_entropy::fits_one_chunk;

/// Units per row of the loss kernel (a power of two, for the reduction).
const ROW_UNITS: usize = 256;

/// The loss of each row of a chunk `[rows, vocab]`: its log-sum-exp into `lse[first + row]`,
/// `lse − logit[target]` into `losses[first + row]`, and (when `keep_probs`) its softmax into
/// `probs[row, ..]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn row_loss_kernel<F: Float, T: Int>(
    logits: &Tensor<F>,
    targets: &Tensor<T>,
    lse: &mut Tensor<f32>,
    losses: &mut Tensor<f32>,
    probs: &mut Tensor<f32>,
    first: usize,
    rows: usize,
    vocab: usize,
    #[comptime] keep_probs: bool,
    #[define(F, T)] _dtypes: [StorageType; 2],
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let start = row * vocab;
    let unit = UNIT_POS_X as usize;
    let mut partial = SharedMemory::<f32>::new(ROW_UNITS);

    let mut largest = f32::new(-3.0e38);
    let mut j = unit;
    while j < vocab {
        let logit = f32::cast_from(logits[start + j]);
        largest = select(logit > largest, logit, largest);
        j += ROW_UNITS;
    }
    partial[unit] = largest;
    let max = cube_max(&mut partial, unit);

    let mut sum = 0.0f32;
    let mut j = unit;
    while j < vocab {
        sum += f32::exp(f32::cast_from(logits[start + j]) - max);
        j += ROW_UNITS;
    }
    partial[unit] = sum;
    let log_sum_exp = max + f32::ln(cube_sum(&mut partial, unit));

    if unit == 0 {
        let target = usize::cast_from(targets[first + row]);
        lse[first + row] = log_sum_exp;
        losses[first + row] = log_sum_exp - f32::cast_from(logits[start + target]);
    }
    if keep_probs {
        let mut j = unit;
        while j < vocab {
            probs[start + j] = f32::exp(f32::cast_from(logits[start + j]) - log_sum_exp);
            j += ROW_UNITS;
        }
    }
}

/// A chunk's f32 logits (or, `from_probs`, their softmax) `[rows, vocab]` turned in place into
/// the gradient of `grad · loss` with respect to them.
#[cube(launch)]
fn grad_logits_kernel<T: Int, G: Float>(
    values: &mut Tensor<f32>,
    lse: &Tensor<f32>,
    targets: &Tensor<T>,
    grad: &Tensor<G>,
    first: usize,
    vocab: usize,
    #[comptime] from_probs: bool,
    #[define(T, G)] _dtypes: [StorageType; 2],
) {
    let at = ABSOLUTE_POS;
    if at >= values.len() {
        terminate!();
    }
    let row = first + at / vocab;
    let mut prob = values[at];
    if !from_probs {
        prob = f32::exp(prob - lse[row]);
    }
    if at % vocab == usize::cast_from(targets[row]) {
        prob -= 1.0f32;
    }
    values[at] = f32::cast_from(grad[0]) * prob;
}

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// The targets as an int tensor `[rows]` on the device.
fn target_table<R, F, I, BT>(targets: &[u32], device: &R::Device) -> CubeTensor<R>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let ids: Vec<i32> = targets
        .iter()
        .map(|&t| i32::try_from(t).expect("invariant: target ids below 2^31"))
        .collect();
    let rows = ids.len();
    BurnTensor::<Cube<R, F, I, BT>, 1, IntKind>::from_data(TensorData::new(ids, [rows]), device)
        .into_primitive()
}

/// The summed loss `[1]` (f32), and what the backward needs: the softmax `[rows, vocab]` (f32)
/// when `keep_probs` and the batch's logits fit in one chunk, otherwise each row's log-sum-exp
/// `[rows]` (f32).
///
/// # Shapes
/// - hidden: `[rows, hidden]`; weight: `[vocab, hidden]`; targets: `rows` ids
pub(super) fn forward<R, F, I, BT>(
    hidden: CubeTensor<R>,
    weight: CubeTensor<R>,
    targets: &[u32],
    keep_probs: bool,
) -> (CubeTensor<R>, CubeTensor<R>)
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let (rows, vocab) = (targets.len(), weight.meta.shape()[0]);
    let keep_probs = keep_probs && fits_one_chunk(rows, vocab);
    let table = target_table::<R, F, I, BT>(targets, &hidden.device);
    let lse = empty(&hidden, &[rows], DType::F32);
    let losses = empty(&hidden, &[rows], DType::F32);
    let probs = empty(&hidden, &[if keep_probs { rows * vocab } else { 1 }], DType::F32);
    let (hidden, weight) = (float::<Cube<R, F, I, BT>, 2>(hidden), float(weight));
    for (first, ids) in chunks(targets, vocab) {
        let logits = into_contiguous(
            chunk_logits(&hidden, &weight, first, ids.len())
                .into_primitive()
                .tensor(),
        );
        row_loss_kernel::launch::<R>(
            &logits.client,
            spread(&logits, ids.len()),
            CubeDim::new_1d(ROW_UNITS as u32),
            logits.clone().into_tensor_arg(),
            table.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            losses.clone().into_tensor_arg(),
            probs.clone().into_tensor_arg(),
            first,
            ids.len(),
            vocab,
            keep_probs,
            [logits.dtype.into(), table.dtype.into()],
        );
    }
    let loss = Cube::<R, F, I, BT>::float_sum(losses);
    if keep_probs {
        (
            loss,
            Cube::<R, F, I, BT>::float_reshape(probs, [rows, vocab].into()),
        )
    } else {
        (loss, lse)
    }
}

/// Gradients of `grad · loss` with respect to the hidden rows and (when `weight_grad`) the
/// weight, from what [`forward`] kept.
///
/// # Shapes
/// - hidden: `[rows, hidden]`; weight: `[vocab, hidden]`; kept: `[rows]` or `[rows, vocab]`;
///   grad: `[1]`
/// - output: shaped as hidden and as weight, in their dtypes
pub(super) fn backward<R, F, I, BT>(
    hidden: CubeTensor<R>,
    weight: CubeTensor<R>,
    targets: &[u32],
    kept: CubeTensor<R>,
    grad: CubeTensor<R>,
    weight_grad: bool,
) -> (CubeTensor<R>, Option<CubeTensor<R>>)
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let vocab = weight.meta.shape()[0];
    let (hidden_dtype, weight_dtype) = (hidden.dtype, weight.dtype);
    let from_probs = kept.meta.shape().len() == 2;
    let table = target_table::<R, F, I, BT>(targets, &hidden.device);
    // The softmax is one chunk, transformed in place; the log-sum-exp is read by every chunk.
    let (mut probs, lse) = if from_probs {
        let unused_lse = empty(&kept, &[1], DType::F32);
        (Some(kept), unused_lse)
    } else {
        (None, into_contiguous(kept))
    };
    let grad = into_contiguous(grad);
    let (hidden, weight) = (
        float::<Cube<R, F, I, BT>, 2>(hidden),
        float::<Cube<R, F, I, BT>, 2>(weight),
    );
    let weight_f32 = weight.clone().cast(FloatDType::F32);
    let mut grad_hidden = Vec::new();
    let mut grad_weight = weight_grad.then(|| {
        BurnTensor::<Cube<R, F, I, BT>, 2>::zeros(weight.dims(), &weight.device()).cast(FloatDType::F32)
    });
    for (first, ids) in chunks(targets, vocab) {
        let values = into_contiguous(match probs.take() {
            Some(probs) => probs,
            None => chunk_logits(&hidden, &weight, first, ids.len())
                .into_primitive()
                .tensor(),
        });
        let (cube_count, cube_dim) = elementwise(&values, values.meta.num_elements());
        grad_logits_kernel::launch::<R>(
            &values.client,
            cube_count,
            cube_dim,
            values.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            table.clone().into_tensor_arg(),
            grad.clone().into_tensor_arg(),
            first,
            vocab,
            from_probs,
            [table.dtype.into(), grad.dtype.into()],
        );
        let grad_logits = float::<Cube<R, F, I, BT>, 2>(values);
        grad_hidden.push(grad_logits.clone().matmul(weight_f32.clone()).cast(hidden_dtype));
        if let Some(sum) = grad_weight.take() {
            let rows = hidden.clone().narrow(0, first, ids.len()).cast(FloatDType::F32);
            grad_weight = Some(sum + grad_logits.transpose().matmul(rows));
        }
    }
    (
        BurnTensor::cat(grad_hidden, 0).into_primitive().tensor(),
        grad_weight.map(|g| g.cast(weight_dtype).into_primitive().tensor()),
    )
}
