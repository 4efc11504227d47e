//! burn-flex's kernels: every op of [`KernelBackend`] on the host in f32, multi-threaded with
//! rayon. Inputs in another float dtype are converted to f32 and results converted back. Each
//! call is a `trace`-level span named after the op (`ft bench train --profile` sums them).

use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{DType, FloatDType, Shape, TensorData};
use burn_flex::{Flex, FlexTensor};

use crate::backend::KernelBackend;
use crate::mask::AttentionMask;
use crate::nf4::Nf4Primitive;
use crate::{attention, cross_entropy, lora, nf4, rms_norm, rope, swiglu};

impl KernelBackend for Flex {
    fn nf4_dequantize_as(weight: Nf4Primitive<Self>, dtype: DType) -> FloatTensor<Self> {
        let _span = tracing::trace_span!("nf4_dequantize").entered();
        nf4::cpu::dequantize(weight, dtype)
    }

    fn fused_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &AttentionMask,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let _span = tracing::trace_span!("attention_forward").entered();
        attention::cpu::flex_forward(q, k, v, mask, scale)
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
        let _span = tracing::trace_span!("attention_backward").entered();
        attention::cpu::flex_backward(q, k, v, out, lse, grad_out, mask, scale)
    }

    fn fused_rms_norm_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let _span = tracing::trace_span!("rms_norm_forward").entered();
        let (dtype, shape) = (x.dtype(), x.layout().shape().clone());
        let (x, weight) = (HostF32::new(x), HostF32::new(weight));
        let (out, inv_rms) = rms_norm::cpu::forward(x.data(), weight.data(), eps);
        let rows = inv_rms.len();
        (
            host_tensor(out, shape, dtype),
            host_tensor(inv_rms, [rows], DType::F32),
        )
    }

    fn fused_rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        inv_rms: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        let _span = tracing::trace_span!("rms_norm_backward").entered();
        let (x_dtype, w_dtype, shape) = (x.dtype(), weight.dtype(), x.layout().shape().clone());
        let [x, weight, inv_rms, grad_out] = [x, weight, inv_rms, grad_out].map(HostF32::new);
        let (grad_x, grad_weight) =
            rms_norm::cpu::backward(x.data(), weight.data(), inv_rms.data(), grad_out.data());
        let hidden = grad_weight.len();
        [
            host_tensor(grad_x, shape, x_dtype),
            host_tensor(grad_weight, [hidden], w_dtype),
        ]
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let _span = tracing::trace_span!("swiglu_forward").entered();
        let (dtype, shape) = (gate.dtype(), gate.layout().shape().clone());
        let (gate, up) = (HostF32::new(gate), HostF32::new(up));
        let out = swiglu::cpu::forward(gate.data(), up.data());
        host_tensor(out, shape, dtype)
    }

    fn fused_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        let _span = tracing::trace_span!("swiglu_backward").entered();
        let (g_dtype, u_dtype, shape) = (gate.dtype(), up.dtype(), gate.layout().shape().clone());
        let [gate, up, grad_out] = [gate, up, grad_out].map(HostF32::new);
        let (grad_gate, grad_up) = swiglu::cpu::backward(gate.data(), up.data(), grad_out.data());
        [
            host_tensor(grad_gate, shape.clone(), g_dtype),
            host_tensor(grad_up, shape, u_dtype),
        ]
    }

    fn linear_cross_entropy_keeps_softmax(rows: usize, vocab: usize) -> bool {
        cross_entropy::fits_one_chunk(rows, vocab)
    }

    fn fused_linear_cross_entropy_forward(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let _span = tracing::trace_span!("cross_entropy_forward").entered();
        let width = hidden.layout().shape()[1];
        let (hidden, weight) = (HostF32::new(hidden), HostF32::new(weight));
        let head = cross_entropy::cpu::Head {
            hidden: hidden.data(),
            weight: weight.data(),
            targets,
            width,
        };
        let rows = targets.len();
        let loss_tensor = |loss: f32| FlexTensor::from_data(TensorData::new(vec![loss], [1]));
        if head.fits_one_chunk() {
            let (loss, probs) = head.forward_keeping_softmax();
            let vocab = probs.len() / rows.max(1);
            return (
                loss_tensor(loss),
                FlexTensor::from_data(TensorData::new(probs, [rows, vocab])),
            );
        }
        let (loss, lse) = head.forward();
        (
            loss_tensor(loss),
            FlexTensor::from_data(TensorData::new(lse, [rows])),
        )
    }

    fn fused_linear_cross_entropy_backward(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        weight_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let _span = tracing::trace_span!("cross_entropy_backward").entered();
        let (h_dtype, w_dtype) = (hidden.dtype(), weight.dtype());
        let (h_shape, w_shape) = (hidden.layout().shape().clone(), weight.layout().shape().clone());
        // The forward kept either each row's log-sum-exp `[rows]` or the softmax `[rows, vocab]`.
        let kept_softmax = lse.layout().shape().num_dims() == 2;
        let [hidden, weight, saved, grad] = [hidden, weight, lse, grad].map(HostF32::new);
        let head = cross_entropy::cpu::Head {
            hidden: hidden.data(),
            weight: weight.data(),
            targets,
            width: h_shape[1],
        };
        let grad = grad.data()[0];
        let (grad_hidden, grad_weight) = if kept_softmax {
            head.backward_from_softmax(saved.data().to_vec(), grad, weight_grad)
        } else {
            head.backward(saved.data(), grad, weight_grad)
        };
        (
            host_tensor(grad_hidden, h_shape, h_dtype),
            grad_weight.map(|g| host_tensor(g, w_shape, w_dtype)),
        )
    }

    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _span = tracing::trace_span!("rope_forward").entered();
        let (dtype, shape) = (x.dtype(), x.layout().shape().clone());
        let [x, cos, signed_sin] = [x, cos, signed_sin].map(HostF32::new);
        let out = rope::cpu::forward(x.data(), cos.data(), signed_sin.data(), shape[3]);
        host_tensor(out, shape, dtype)
    }

    fn fused_rope_backward(
        grad_out: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _span = tracing::trace_span!("rope_backward").entered();
        let (dtype, shape) = (grad_out.dtype(), grad_out.layout().shape().clone());
        let [grad_out, cos, signed_sin] = [grad_out, cos, signed_sin].map(HostF32::new);
        let grad = rope::cpu::backward(grad_out.data(), cos.data(), signed_sin.data(), shape[3]);
        host_tensor(grad, shape, dtype)
    }

    fn fused_lora_linear_forward(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let _span = tracing::trace_span!("lora_linear_forward").entered();
        let dtype = x.dtype();
        let [weight, a, b] = weights.map(HostF32::new);
        let (x, x_adapter) = (HostF32::new(x), HostF32::new(x_adapter));
        let operands = lora::cpu::Operands {
            x: x.data(),
            x_adapter: x_adapter.data(),
            weight: weight.data(),
            a: a.data(),
            b: b.data(),
            d_in: x.shape()[1],
            scale,
        };
        let (rows, d_out, rank) = (x.shape()[0], weight.shape()[0], a.shape()[0]);
        let (y, h) = operands.forward();
        (
            host_tensor(y, [rows, d_out], dtype),
            host_tensor(h, [rows, rank], dtype),
        )
    }

    fn fused_lora_linear_backward(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        h: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        scale: f32,
        wanted: [bool; 5],
    ) -> [Option<FloatTensor<Self>>; 5] {
        let _span = tracing::trace_span!("lora_linear_backward").entered();
        let dtypes = [&x, &x_adapter, &weights[0], &weights[1], &weights[2]].map(|t| t.dtype());
        let [x, x_adapter, weight, a, b, h, grad_out] = [
            x,
            x_adapter,
            weights[0].clone(),
            weights[1].clone(),
            weights[2].clone(),
            h,
            grad_out,
        ]
        .map(HostF32::new);
        let shapes = [&x, &x_adapter, &weight, &a, &b].map(|t| t.shape().clone());
        let operands = lora::cpu::Operands {
            x: x.data(),
            x_adapter: x_adapter.data(),
            weight: weight.data(),
            a: a.data(),
            b: b.data(),
            d_in: shapes[0][1],
            scale,
        };
        let grads = operands.backward(h.data(), grad_out.data(), wanted);
        let mut out = grads
            .into_iter()
            .zip(shapes)
            .zip(dtypes)
            .map(|((g, shape), dtype)| g.map(|g| host_tensor(g, shape, dtype)));
        std::array::from_fn(|_| out.next().flatten())
    }
}

/// A tensor's values as contiguous f32 on the host (a view when they already are).
pub(crate) struct HostF32(FlexTensor);

impl HostF32 {
    pub(crate) fn new(t: FlexTensor) -> Self {
        let t = if t.dtype() == DType::F32 {
            t
        } else {
            Flex::float_cast(t, FloatDType::F32)
        };
        Self(if t.as_slice::<f32>().is_some() {
            t
        } else {
            t.to_contiguous()
        })
    }

    pub(crate) fn shape(&self) -> &Shape {
        self.0.layout().shape()
    }

    pub(crate) fn data(&self) -> &[f32] {
        self.0
            .as_slice::<f32>()
            .expect("invariant: HostF32 holds a contiguous f32 tensor")
    }
}

/// f32 results on the host as a tensor of `shape` in `dtype`.
pub(crate) fn host_tensor(data: Vec<f32>, shape: impl Into<Shape>, dtype: DType) -> FlexTensor {
    cast_back(FlexTensor::from_data(TensorData::new(data, shape.into())), dtype)
}

/// `t` (f32) converted to `dtype`.
fn cast_back(t: FlexTensor, dtype: DType) -> FlexTensor {
    match dtype {
        DType::F32 => t,
        DType::F16 => Flex::float_cast(t, FloatDType::F16),
        DType::BF16 => Flex::float_cast(t, FloatDType::BF16),
        DType::F64 => Flex::float_cast(t, FloatDType::F64),
        other => unreachable!("invariant: fused ops take float tensors, got {other:?}"),
    }
}
