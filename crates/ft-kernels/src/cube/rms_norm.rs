//! RMSNorm as CubeCL kernels: one cube per row reduces the sum of squares (forward) or the
//! projection `Σ dŷ·ŷ` (backward) in shared memory; the weight's gradient is summed over chunks
//! of rows by one unit per column, and the chunks' partial sums added by the caller.

use burn::tensor::DType;
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::reduce::cube_sum;
use super::{empty, spread};

/// Units per row: a power of two (the reduction halves it), at most 256.
fn units_per_row(hidden: usize) -> usize {
    hidden.next_power_of_two().clamp(32, 256)
}

/// Rows summed by one unit of the weight-gradient kernel: 64, or more where the chunks would
/// not fit the grid's second axis.
fn rows_per_chunk(rows: usize) -> usize {
    rows.div_ceil(u16::MAX as usize).max(64)
}

/// Units per cube of the weight-gradient kernel, one per column.
const COLUMN_UNITS: u32 = 256;

#[cube(launch)]
fn forward_kernel<F: Float, W: Float>(
    x: &Tensor<F>,
    weight: &Tensor<W>,
    out: &mut Tensor<F>,
    inv_rms: &mut Tensor<f32>,
    rows: usize,
    eps: f32,
    #[comptime] units: usize,
    #[define(F, W)] _dtypes: [StorageType; 2],
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let hidden = weight.len();
    let start = row * hidden;
    let unit = UNIT_POS_X as usize;
    let mut partial = SharedMemory::<f32>::new(units);

    let mut squares = 0.0f32;
    let mut j = unit;
    while j < hidden {
        let value = f32::cast_from(x[start + j]);
        squares += value * value;
        j += units;
    }
    partial[unit] = squares;
    let total = cube_sum(&mut partial, unit);
    let inv = 1.0f32 / f32::sqrt(total / f32::cast_from(hidden) + eps);
    if unit == 0 {
        inv_rms[row] = inv;
    }

    let mut j = unit;
    while j < hidden {
        // Normalised in f32, stored in x's dtype, then scaled: the reference's order.
        let normed = F::cast_from(f32::cast_from(x[start + j]) * inv);
        out[start + j] = F::cast_from(f32::cast_from(normed) * f32::cast_from(weight[j]));
        j += units;
    }
}

#[cube(launch)]
fn grad_input_kernel<F: Float, W: Float, G: Float>(
    x: &Tensor<F>,
    weight: &Tensor<W>,
    inv_rms: &Tensor<f32>,
    grad_out: &Tensor<G>,
    grad_x: &mut Tensor<F>,
    rows: usize,
    #[comptime] units: usize,
    #[define(F, W, G)] _dtypes: [StorageType; 3],
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let hidden = weight.len();
    let start = row * hidden;
    let unit = UNIT_POS_X as usize;
    let inv = inv_rms[row];
    let mut partial = SharedMemory::<f32>::new(units);

    let mut dot = 0.0f32;
    let mut j = unit;
    while j < hidden {
        let normed = f32::cast_from(x[start + j]) * inv;
        let grad_normed = f32::cast_from(grad_out[start + j]) * f32::cast_from(weight[j]);
        dot += grad_normed * normed;
        j += units;
    }
    partial[unit] = dot;
    let projection = cube_sum(&mut partial, unit) / f32::cast_from(hidden);

    let mut j = unit;
    while j < hidden {
        let normed = f32::cast_from(x[start + j]) * inv;
        let grad_normed = f32::cast_from(grad_out[start + j]) * f32::cast_from(weight[j]);
        grad_x[start + j] = F::cast_from((grad_normed - normed * projection) * inv);
        j += units;
    }
}

#[cube(launch)]
fn grad_weight_kernel<F: Float, G: Float>(
    x: &Tensor<F>,
    inv_rms: &Tensor<f32>,
    grad_out: &Tensor<G>,
    partial_sums: &mut Tensor<f32>,
    hidden: usize,
    rows_per_chunk: usize,
    #[define(F, G)] _dtypes: [StorageType; 2],
) {
    let column = ABSOLUTE_POS_X as usize;
    if column >= hidden {
        terminate!();
    }
    let chunk = CUBE_POS_Y as usize;
    let rows = inv_rms.len();
    let first = chunk * rows_per_chunk;
    let mut last = first + rows_per_chunk;
    if last > rows {
        last = rows;
    }
    let mut sum = 0.0f32;
    for row in first..last {
        let at = row * hidden + column;
        sum += f32::cast_from(grad_out[at]) * (f32::cast_from(x[at]) * inv_rms[row]);
    }
    partial_sums[chunk * hidden + column] = sum;
}

/// The normalised rows and the f32 reciprocal root of each.
///
/// # Shapes
/// - x: `[..., hidden]`; weight: `[hidden]`
/// - output: shaped as x, and `[rows]`
pub(super) fn forward<R: CubeRuntime>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    eps: f64,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let (x, weight) = (into_contiguous(x), into_contiguous(weight));
    let shape = x.meta.shape().to_vec();
    let hidden = weight.meta.shape()[0];
    let rows = x.meta.num_elements() / hidden;
    let out = empty(&x, &shape, x.dtype);
    let inv_rms = empty(&x, &[rows], DType::F32);
    let units = units_per_row(hidden);
    forward_kernel::launch::<R>(
        &x.client,
        spread(&x, rows),
        CubeDim::new_1d(units as u32),
        x.clone().into_tensor_arg(),
        weight.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        inv_rms.clone().into_tensor_arg(),
        rows,
        eps as f32,
        units,
        [x.dtype.into(), weight.dtype.into()],
    );
    (out, inv_rms)
}

/// The input's gradient, and the weight's gradient as f32 partial sums over chunks of rows.
///
/// # Shapes
/// - x, grad_out: `[..., hidden]`; weight: `[hidden]`; inv_rms: `[rows]`
/// - output: shaped as x, and `[chunks, hidden]`
pub(super) fn backward<R: CubeRuntime>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    inv_rms: CubeTensor<R>,
    grad_out: CubeTensor<R>,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let [x, weight, inv_rms, grad_out] = [x, weight, inv_rms, grad_out].map(into_contiguous);
    let (x_dtype, grad_dtype) = (x.dtype, grad_out.dtype);
    let shape = x.meta.shape().to_vec();
    let hidden = weight.meta.shape()[0];
    let rows = x.meta.num_elements() / hidden;
    let grad_x = empty(&x, &shape, x.dtype);
    let units = units_per_row(hidden);
    grad_input_kernel::launch::<R>(
        &x.client,
        spread(&x, rows),
        CubeDim::new_1d(units as u32),
        x.clone().into_tensor_arg(),
        weight.clone().into_tensor_arg(),
        inv_rms.clone().into_tensor_arg(),
        grad_out.clone().into_tensor_arg(),
        grad_x.clone().into_tensor_arg(),
        rows,
        units,
        [x_dtype.into(), weight.dtype.into(), grad_dtype.into()],
    );

    let rows_per_chunk = rows_per_chunk(rows);
    let chunks = rows.div_ceil(rows_per_chunk).max(1);
    let partial_sums = empty(&x, &[chunks, hidden], DType::F32);
    let columns = hidden.div_ceil(COLUMN_UNITS as usize) as u32;
    grad_weight_kernel::launch::<R>(
        &x.client,
        CubeCount::Static(columns, chunks as u32, 1),
        CubeDim::new_1d(COLUMN_UNITS),
        x.clone().into_tensor_arg(),
        inv_rms.into_tensor_arg(),
        grad_out.into_tensor_arg(),
        partial_sums.clone().into_tensor_arg(),
        hidden,
        rows_per_chunk,
        [x_dtype.into(), grad_dtype.into()],
    );
    (grad_x, partial_sums)
}
