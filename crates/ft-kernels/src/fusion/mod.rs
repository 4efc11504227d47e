//! [`KernelBackend`] for Burn's `Fusion` wrapper (what `Cuda` and `Wgpu` are when Burn's `fusion`
//! feature is on): each op whose wrapped backend has a kernel of its own (attention, NF4,
//! RMSNorm, SwiGLU, RoPE, the LoRA forward, the cross-entropy) is one custom operation of the
//! fusion stream that runs that kernel, so it keeps its memory and speed; fusion still fuses the
//! plain tensor ops around it. The ops the wrapped backend leaves to the composite (the LoRA
//! backward's products, the NF4 linear's composition) keep the composite here too, written in
//! fusion's own ops.

mod custom_op;

use burn::tensor::DType;
use burn::tensor::Shape;
use burn::tensor::ops::FloatTensor;
use burn_fusion::{Fusion, FusionBackend};

use crate::backend::KernelBackend;
use crate::mask::AttentionMask;
use crate::nf4::{AbsmaxPrimitive, Nf4Primitive};
use custom_op::{Wrapped, fixed, launch, launch_one, like};

impl<B: FusionBackend + KernelBackend> KernelBackend for Fusion<B> {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &AttentionMask,
        scale: f32,
    ) -> FloatTensor<Self> {
        let (out, mask) = (like::<B>(&q), mask.clone());
        launch_one::<B, _>("ft.attention", vec![q, k, v], out, move |inputs| {
            let [q, k, v] = inputs.floats();
            B::fused_attention(q, k, v, &mask, scale)
        })
    }

    fn fused_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &AttentionMask,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let lse = (Shape::new([mask.batch, q.shape[2], mask.seq]), DType::F32);
        let (outputs, mask) = ([like::<B>(&q), lse], mask.clone());
        let [out, lse] = fixed(launch::<B, _>(
            "ft.attention_forward",
            vec![q, k, v],
            &outputs,
            move |inputs| {
                let [q, k, v] = inputs.floats();
                let (out, lse) = B::fused_attention_forward(q, k, v, &mask, scale);
                vec![out, lse]
            },
        ));
        (out, lse)
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
        let (outputs, mask) = ([&q, &k, &v].map(like::<B>), mask.clone());
        fixed(launch::<B, _>(
            "ft.attention_backward",
            vec![q, k, v, out, lse, grad_out],
            &outputs,
            move |inputs| {
                let [q, k, v, out, lse, grad_out] = inputs.floats();
                B::fused_attention_backward(q, k, v, out, lse, grad_out, &mask, scale).into()
            },
        ))
    }

    fn fused_rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let out = like::<B>(&x);
        launch_one::<B, _>("ft.rms_norm", vec![x, weight], out, move |inputs| {
            let [x, weight] = inputs.floats();
            B::fused_rms_norm(x, weight, eps)
        })
    }

    fn fused_rms_norm_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let rows = x.shape.num_elements() / x.shape[x.shape.num_dims() - 1];
        let outputs = [like::<B>(&x), (Shape::new([rows]), DType::F32)];
        let [out, inv_rms] = fixed(launch::<B, _>(
            "ft.rms_norm_forward",
            vec![x, weight],
            &outputs,
            move |inputs| {
                let [x, weight] = inputs.floats();
                let (out, inv_rms) = B::fused_rms_norm_forward(x, weight, eps);
                vec![out, inv_rms]
            },
        ));
        (out, inv_rms)
    }

    fn fused_rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        inv_rms: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        let outputs = [like::<B>(&x), like::<B>(&weight)];
        fixed(launch::<B, _>(
            "ft.rms_norm_backward",
            vec![x, weight, inv_rms, grad_out],
            &outputs,
            |inputs| {
                let [x, weight, inv_rms, grad_out] = inputs.floats();
                B::fused_rms_norm_backward(x, weight, inv_rms, grad_out).into()
            },
        ))
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = like::<B>(&gate);
        launch_one::<B, _>("ft.swiglu", vec![gate, up], out, |inputs| {
            let [gate, up] = inputs.floats();
            B::fused_swiglu(gate, up)
        })
    }

    fn fused_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        let outputs = [like::<B>(&gate), like::<B>(&up)];
        fixed(launch::<B, _>(
            "ft.swiglu_backward",
            vec![gate, up, grad_out],
            &outputs,
            |inputs| {
                let [gate, up, grad_out] = inputs.floats();
                B::fused_swiglu_backward(gate, up, grad_out).into()
            },
        ))
    }

    fn fused_linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
    ) -> FloatTensor<Self> {
        let targets = targets.to_vec();
        let loss = (Shape::new([1]), DType::F32);
        launch_one::<B, _>(
            "ft.linear_cross_entropy",
            vec![hidden, weight],
            loss,
            move |inputs| {
                let [hidden, weight] = inputs.floats();
                B::fused_linear_cross_entropy(hidden, weight, &targets)
            },
        )
    }

    fn fused_linear_cross_entropy_forward(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (rows, vocab) = (targets.len(), weight.shape[0]);
        let kept = match B::linear_cross_entropy_keeps_softmax(rows, vocab) {
            true => Shape::new([rows, vocab]),
            false => Shape::new([rows]),
        };
        let outputs = [(Shape::new([1]), DType::F32), (kept, DType::F32)];
        let targets = targets.to_vec();
        let [loss, kept] = fixed(launch::<B, _>(
            "ft.linear_cross_entropy_forward",
            vec![hidden, weight],
            &outputs,
            move |inputs| {
                let [hidden, weight] = inputs.floats();
                let (loss, kept) = B::fused_linear_cross_entropy_forward(hidden, weight, &targets);
                vec![loss, kept]
            },
        ));
        (loss, kept)
    }

    fn linear_cross_entropy_keeps_softmax(rows: usize, vocab: usize) -> bool {
        B::linear_cross_entropy_keeps_softmax(rows, vocab)
    }

    fn fused_linear_cross_entropy_backward(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: &[u32],
        kept: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        weight_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let mut outputs = vec![like::<B>(&hidden)];
        if weight_grad {
            outputs.push(like::<B>(&weight));
        }
        let targets = targets.to_vec();
        let mut grads = launch::<B, _>(
            "ft.linear_cross_entropy_backward",
            vec![hidden, weight, kept, grad],
            &outputs,
            move |inputs| {
                let [hidden, weight, kept, grad] = inputs.floats();
                let (grad_hidden, grad_weight) =
                    B::fused_linear_cross_entropy_backward(hidden, weight, &targets, kept, grad, weight_grad);
                [Some(grad_hidden), grad_weight].into_iter().flatten().collect()
            },
        )
        .into_iter();
        let grad_hidden = grads
            .next()
            .expect("invariant: the hidden rows' gradient is declared");
        (grad_hidden, grads.next())
    }

    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let out = like::<B>(&x);
        launch_one::<B, _>("ft.rope", vec![x, cos, signed_sin], out, |inputs| {
            let [x, cos, signed_sin] = inputs.floats();
            B::fused_rope(x, cos, signed_sin)
        })
    }

    fn fused_rope_backward(
        grad_out: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let out = like::<B>(&grad_out);
        launch_one::<B, _>(
            "ft.rope_backward",
            vec![grad_out, cos, signed_sin],
            out,
            |inputs| {
                let [grad_out, cos, signed_sin] = inputs.floats();
                B::fused_rope_backward(grad_out, cos, signed_sin)
            },
        )
    }

    fn fused_lora_linear(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        scale: f32,
    ) -> FloatTensor<Self> {
        let out = lora_output::<B>(&x, &weights);
        let [weight, a, b] = weights;
        launch_one::<B, _>(
            "ft.lora_linear",
            vec![x, x_adapter, weight, a, b],
            out,
            move |inputs| {
                let [x, x_adapter, weight, a, b] = inputs.floats();
                B::fused_lora_linear(x, x_adapter, [weight, a, b], scale)
            },
        )
    }

    fn fused_lora_linear_forward(
        x: FloatTensor<Self>,
        x_adapter: FloatTensor<Self>,
        weights: [FloatTensor<Self>; 3],
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let h = (
            Shape::new([x_adapter.shape[0], weights[1].shape[0]]),
            x_adapter.dtype,
        );
        let outputs = [lora_output::<B>(&x, &weights), h];
        let [weight, a, b] = weights;
        let [y, h] = fixed(launch::<B, _>(
            "ft.lora_linear_forward",
            vec![x, x_adapter, weight, a, b],
            &outputs,
            move |inputs| {
                let [x, x_adapter, weight, a, b] = inputs.floats();
                let (y, h) = B::fused_lora_linear_forward(x, x_adapter, [weight, a, b], scale);
                vec![y, h]
            },
        ));
        (y, h)
    }

    fn nf4_dequantize_as(weight: Nf4Primitive<Self>, dtype: DType) -> FloatTensor<Self> {
        let Nf4Primitive { codes, absmax, shape } = weight;
        let out = (Shape::new(shape), dtype);
        let (inputs, double_quant_offset) = match absmax {
            AbsmaxPrimitive::Full(absmax) => (vec![codes, absmax], None),
            AbsmaxPrimitive::Double(absmax_codes, absmax2, offset) => {
                (vec![codes, absmax_codes, absmax2], Some(offset))
            }
        };
        launch_one::<B, _>("ft.nf4_dequantize", inputs, out, move |inputs| {
            let codes = inputs.int();
            let absmax = match double_quant_offset {
                None => AbsmaxPrimitive::Full(inputs.float()),
                Some(offset) => AbsmaxPrimitive::Double(inputs.int(), inputs.float(), offset),
            };
            B::nf4_dequantize_as(Nf4Primitive { codes, absmax, shape }, dtype)
        })
    }
}

/// The LoRA product's output `[rows, out]`, in x's dtype.
fn lora_output<B: FusionBackend>(x: &Wrapped<B>, weights: &[Wrapped<B>; 3]) -> (Shape, DType) {
    (Shape::new([x.shape[0], weights[0].shape[0]]), x.dtype)
}
