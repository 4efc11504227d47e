//! CubeCL kernels for the GPU backends: one implementation of [`KernelBackend`] for Burn's
//! `CubeBackend`, which is what `Cuda<F>` and `Wgpu` are (without Burn's `fusion` feature; with
//! it they wrap this backend, see `crate::fusion`). Attention with O(seq) memory (no stored scores; backward recomputes the
//! probabilities), NF4 dequantisation, RMSNorm, SwiGLU and RoPE, forward and backward, each run
//! as kernels of their own instead of chains of Burn ops; arithmetic is f32 whatever each
//! tensor's storage dtype, which is read at launch. The LoRA product and the cross-entropy run
//! their full-size products through Burn's tuned matmul and the rest as kernels: the adapter's
//! low-rank term added into the base output, each row's log-sum-exp and loss, and the logits'
//! gradient in place. The LoRA backward is all matmuls and keeps the composite.

mod attention;
mod cross_entropy;
mod lora;
mod nf4;
mod reduce;
mod rms_norm;
mod rope;
mod swiglu;

use burn::tensor::DType;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn_cubecl::element::BoolElement;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::{CubeCount, CubeDim};
use cubecl::server::CubeCountSelection;

use crate::backend::KernelBackend;
use crate::mask::AttentionMask;
use crate::nf4::Nf4Primitive;

impl<R, F, I, BT> KernelBackend for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn fused_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &AttentionMask,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        attention::forward::<R, F, I, BT>(q, k, v, mask, scale)
    }

    fn fused_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        mask: &AttentionMask,
        scale: f32,
    ) -> [FloatTensor<Self>; 3] {
        attention::backward::<R, F, I, BT>(q, k, v, out, lse, grad_out, mask, scale)
    }

    fn nf4_dequantize_as(weight: Nf4Primitive<Self>, dtype: DType) -> FloatTensor<Self> {
        nf4::dequantize(weight, dtype)
    }

    fn fused_rms_norm_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        rms_norm::forward(x, weight, eps)
    }

    fn fused_rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        inv_rms: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        let (grad_x, partial_sums) = rms_norm::backward(x, weight.clone(), inv_rms, grad_out);
        let hidden = weight.meta.shape()[0];
        let summed = Self::float_sum_dim(partial_sums, 0);
        let grad_weight = Self::float_reshape(summed, [hidden].into());
        let grad_weight = match weight.dtype {
            DType::F32 => grad_weight,
            dtype => Self::float_cast(grad_weight, dtype.into()),
        };
        [grad_x, grad_weight]
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        swiglu::forward(gate, up)
    }

    fn fused_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        swiglu::backward(gate, up, grad_out)
    }

    fn fused_linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
    ) -> FloatTensor<Self> {
        cross_entropy::forward::<R, F, I, BT>(hidden, weight, targets, false).0
    }

    fn linear_cross_entropy_keeps_softmax(rows: usize, vocab: usize) -> bool {
        crate::cross_entropy::fits_one_chunk(rows, vocab)
    }

    fn fused_linear_cross_entropy_forward(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        cross_entropy::forward::<R, F, I, BT>(hidden, weight, targets, true)
    }

    fn fused_linear_cross_entropy_backward(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
        kept: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        weight_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        cross_entropy::backward::<R, F, I, BT>(hidden, weight, targets, kept, grad, weight_grad)
    }

    fn fused_lora_linear_forward(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        lora::forward::<R, F, I, BT>(x, x_adapter, weights, scale)
    }

    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        rope::apply(x, cos, signed_sin, rope::Direction::Forward)
    }

    fn fused_rope_backward(
        grad_out: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        rope::apply(grad_out, cos, signed_sin, rope::Direction::Backward)
    }
}

/// A new contiguous tensor on `like`'s device.
fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: &[usize], dtype: DType) -> CubeTensor<R> {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape.into(), dtype)
}

/// One unit per element in cubes of up to 256: the launch shape of the element-wise kernels.
fn elementwise<R: CubeRuntime>(like: &CubeTensor<R>, elements: usize) -> (CubeCount, CubeDim) {
    let cube_dim = CubeDim::new(&like.client, elements);
    let cube_count = cubecl::calculate_cube_count_elemwise(&like.client, elements, cube_dim);
    (cube_count, cube_dim)
}

/// `cubes` cubes spread over the grid's axes within the device's limits (kernels index them
/// by `CUBE_POS` and skip the extra ones).
fn spread<R: CubeRuntime>(like: &CubeTensor<R>, cubes: usize) -> CubeCount {
    let cubes = u32::try_from(cubes).expect("invariant: fewer than 2^32 rows");
    CubeCountSelection::new(&like.client, cubes).cube_count()
}
