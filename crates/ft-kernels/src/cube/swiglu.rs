//! SwiGLU as CubeCL kernels: one unit per element, f32 arithmetic.

use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::{elementwise, empty};

#[cube]
fn sigmoid(value: f32) -> f32 {
    1.0f32 / (1.0f32 + f32::exp(-value))
}

#[cube(launch)]
fn forward_kernel<F: Float, U: Float>(
    gate: &Tensor<F>,
    up: &Tensor<U>,
    out: &mut Tensor<F>,
    #[define(F, U)] _dtypes: [StorageType; 2],
) {
    let at = ABSOLUTE_POS;
    if at >= out.len() {
        terminate!();
    }
    let gate = f32::cast_from(gate[at]);
    out[at] = F::cast_from(gate * sigmoid(gate) * f32::cast_from(up[at]));
}

#[cube(launch)]
fn backward_kernel<F: Float, U: Float, G: Float>(
    gate: &Tensor<F>,
    up: &Tensor<U>,
    grad_out: &Tensor<G>,
    grad_gate: &mut Tensor<F>,
    grad_up: &mut Tensor<U>,
    #[define(F, U, G)] _dtypes: [StorageType; 3],
) {
    let at = ABSOLUTE_POS;
    if at >= grad_gate.len() {
        terminate!();
    }
    let gate = f32::cast_from(gate[at]);
    let grad = f32::cast_from(grad_out[at]);
    let s = sigmoid(gate);
    let slope = s * (1.0f32 + gate * (1.0f32 - s));
    grad_gate[at] = F::cast_from(grad * f32::cast_from(up[at]) * slope);
    grad_up[at] = U::cast_from(grad * gate * s);
}

/// `silu(gate) ⊙ up`.
///
/// # Shapes
/// - gate, up, output: the same shape
pub(super) fn forward<R: CubeRuntime>(gate: CubeTensor<R>, up: CubeTensor<R>) -> CubeTensor<R> {
    let (gate, up) = (into_contiguous(gate), into_contiguous(up));
    let elements = gate.meta.num_elements();
    let out = empty(&gate, gate.meta.shape(), gate.dtype);
    let (cube_count, cube_dim) = elementwise(&gate, elements);
    let dtypes = [gate.dtype.into(), up.dtype.into()];
    forward_kernel::launch::<R>(
        &gate.client,
        cube_count,
        cube_dim,
        gate.clone().into_tensor_arg(),
        up.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        dtypes,
    );
    out
}

/// `[dgate, dup]`.
///
/// # Shapes
/// - gate, up, grad_out, outputs: the same shape
pub(super) fn backward<R: CubeRuntime>(
    gate: CubeTensor<R>,
    up: CubeTensor<R>,
    grad_out: CubeTensor<R>,
) -> [CubeTensor<R>; 2] {
    let [gate, up, grad_out] = [gate, up, grad_out].map(into_contiguous);
    let elements = gate.meta.num_elements();
    let grad_gate = empty(&gate, gate.meta.shape(), gate.dtype);
    let grad_up = empty(&gate, up.meta.shape(), up.dtype);
    let (cube_count, cube_dim) = elementwise(&gate, elements);
    let dtypes = [gate.dtype.into(), up.dtype.into(), grad_out.dtype.into()];
    backward_kernel::launch::<R>(
        &gate.client,
        cube_count,
        cube_dim,
        gate.clone().into_tensor_arg(),
        up.into_tensor_arg(),
        grad_out.into_tensor_arg(),
        grad_gate.clone().into_tensor_arg(),
        grad_up.clone().into_tensor_arg(),
        dtypes,
    );
    [grad_gate, grad_up]
}
