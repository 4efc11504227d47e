//! The LoRA product's forward on CubeCL: the two full-size products through Burn's matmul, then
//! one kernel adds the adapter's low-rank term `s · h · Bᵀ` into the base output in place (one
//! unit per output element, summing over the rank in f32), instead of scaling B, materialising
//! the `[rows, out]` product and adding it. The backward's products are all matmuls and keep the
//! composite.

use burn::tensor::Tensor as BurnTensor;
use burn_cubecl::element::BoolElement;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;

use super::elementwise;
use crate::backend::float;

/// `y[i, j] += scale · Σ_k h[i, k] · b[j, k]`.
#[cube(launch)]
fn add_low_rank_kernel<F: Float, H: Float, W: Float>(
    y: &mut Tensor<F>,
    h: &Tensor<H>,
    b: &Tensor<W>,
    scale: f32,
    rank: usize,
    d_out: usize,
    #[define(F, H, W)] _dtypes: [StorageType; 3],
) {
    let at = ABSOLUTE_POS;
    if at >= y.len() {
        terminate!();
    }
    let h_row = (at / d_out) * rank;
    let b_row = (at % d_out) * rank;
    let mut sum = 0.0f32;
    for k in 0..rank {
        sum += f32::cast_from(h[h_row + k]) * f32::cast_from(b[b_row + k]);
    }
    y[at] = F::cast_from(f32::cast_from(y[at]) + scale * sum);
}

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// `y = x · Wᵀ + scale · h · Bᵀ` and `h = x_adapter · Aᵀ`.
///
/// # Shapes
/// - x, x_adapter: `[rows, in]`; weight `[out, in]`, a `[r, in]`, b `[out, r]`
/// - output: `[rows, out]` and `[rows, r]`
pub(super) fn forward<R, F, I, BT>(
    x: CubeTensor<R>,
    x_adapter: CubeTensor<R>,
    [weight, a, b]: [CubeTensor<R>; 3],
    scale: f32,
) -> (CubeTensor<R>, CubeTensor<R>)
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let [rank, d_out] = [a.meta.shape()[0], weight.meta.shape()[0]];
    let product = |lhs: CubeTensor<R>, rhs: CubeTensor<R>| {
        let lhs: BurnTensor<Cube<R, F, I, BT>, 2> = float(lhs);
        into_contiguous(lhs.matmul(float(rhs).transpose()).into_primitive().tensor())
    };
    let h = product(x_adapter, a);
    let y = product(x, weight);
    let b = into_contiguous(b);
    let (cube_count, cube_dim) = elementwise(&y, y.meta.num_elements());
    let dtypes = [y.dtype.into(), h.dtype.into(), b.dtype.into()];
    add_low_rank_kernel::launch::<R>(
        &y.client,
        cube_count,
        cube_dim,
        y.clone().into_tensor_arg(),
        h.clone().into_tensor_arg(),
        b.into_tensor_arg(),
        scale,
        rank,
        d_out,
        dtypes,
    );
    (y, h)
}
