//! RoPE as a CubeCL kernel: one unit per element of `[batch, seq, heads, head_dim]`, reading its
//! rotate-half partner in place; the same kernel gives the gradient.

use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::{elementwise, empty};

/// Which of RoPE's two maps a launch computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    /// `y = x · cos + [x₂, x₁] · signed_sin`.
    Forward,
    /// `dx = dy · cos + swap_halves(dy · signed_sin)`.
    Backward,
}

#[cube(launch)]
fn rope_kernel<F: Float, C: Float>(
    input: &Tensor<F>,
    cos: &Tensor<C>,
    signed_sin: &Tensor<C>,
    out: &mut Tensor<F>,
    heads: usize,
    head_dim: usize,
    #[comptime] backward: bool,
    #[define(F, C)] _dtypes: [StorageType; 2],
) {
    let at = ABSOLUTE_POS;
    if at >= out.len() {
        terminate!();
    }
    let column = at % head_dim;
    let angles = (at / (heads * head_dim)) * head_dim;
    let half = head_dim / 2;
    let mut partner_column = column + half;
    if column >= half {
        partner_column = column - half;
    }
    let partner = at - column + partner_column;
    // Forward takes the sine at the element's own column, backward at its partner's.
    let mut sin_column = column;
    if backward {
        sin_column = partner_column;
    }
    let value = f32::cast_from(input[at]) * f32::cast_from(cos[angles + column])
        + f32::cast_from(input[partner]) * f32::cast_from(signed_sin[angles + sin_column]);
    out[at] = F::cast_from(value);
}

/// RoPE (or its gradient) on every head.
///
/// # Shapes
/// - input: `[batch, seq, heads, head_dim]`; cos, signed_sin: `[batch, seq, head_dim]`
/// - output: `[batch, seq, heads, head_dim]`
pub(super) fn apply<R: CubeRuntime>(
    input: CubeTensor<R>,
    cos: CubeTensor<R>,
    signed_sin: CubeTensor<R>,
    direction: Direction,
) -> CubeTensor<R> {
    let [input, cos, signed_sin] = [input, cos, signed_sin].map(into_contiguous);
    let shape = input.meta.shape().to_vec();
    let (heads, head_dim) = (shape[2], shape[3]);
    assert_eq!(
        cos.meta.num_elements() * heads,
        input.meta.num_elements(),
        "invariant: one angle row per token"
    );
    let out = empty(&input, &shape, input.dtype);
    let (cube_count, cube_dim) = elementwise(&input, input.meta.num_elements());
    let dtypes = [input.dtype.into(), cos.dtype.into()];
    let client = input.client.clone();
    rope_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        input.into_tensor_arg(),
        cos.into_tensor_arg(),
        signed_sin.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        heads,
        head_dim,
        direction == Direction::Backward,
        dtypes,
    );
    out
}
