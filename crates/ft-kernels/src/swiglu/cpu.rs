//! SwiGLU on burn-flex: element-wise over rayon chunks, each chunk a loop the compiler
//! vectorises (eight lanes on AVX2, see `crate::simd`).

use crate::par;
use crate::simd::{avx2_dispatch, sigmoid};

/// Elements per rayon task.
const CHUNK: usize = 16 * 1024;

/// `silu(gate) ⊙ up`.
pub(crate) fn forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; gate.len()];
    let tasks: Vec<_> = out
        .chunks_mut(CHUNK)
        .zip(gate.chunks(CHUNK).zip(up.chunks(CHUNK)))
        .collect();
    par::for_each(par::worth_parallel(gate.len()), tasks, |(out, (gate, up))| {
        forward_chunk(gate, up, out)
    });
    out
}

avx2_dispatch! {
    fn forward_chunk(gate: &[f32], up: &[f32], out: &mut [f32]) -> () {
        for ((out, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *out = g * sigmoid(g) * u;
        }
    }
}

/// `(dgate, dup)`.
pub(crate) fn backward(gate: &[f32], up: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut grad_gate, mut grad_up) = (vec![0.0f32; gate.len()], vec![0.0f32; gate.len()]);
    let tasks: Vec<_> = grad_gate
        .chunks_mut(CHUNK)
        .zip(grad_up.chunks_mut(CHUNK))
        .zip(
            gate.chunks(CHUNK)
                .zip(up.chunks(CHUNK))
                .zip(grad_out.chunks(CHUNK)),
        )
        .collect();
    par::for_each(
        par::worth_parallel(gate.len()),
        tasks,
        |((grad_gate, grad_up), ((gate, up), grad_out))| {
            backward_chunk([gate, up, grad_out], grad_gate, grad_up)
        },
    );
    (grad_gate, grad_up)
}

avx2_dispatch! {
    /// `[gate, up, grad_out]` → `grad_gate`, `grad_up`.
    fn backward_chunk(inputs: [&[f32]; 3], grad_gate: &mut [f32], grad_up: &mut [f32]) -> () {
        let [gate, up, grad_out] = inputs;
        let grads = grad_gate.iter_mut().zip(grad_up.iter_mut());
        for ((grad_gate, grad_up), ((&g, &u), &go)) in grads.zip(gate.iter().zip(up).zip(grad_out)) {
            let s = sigmoid(g);
            *grad_up = go * g * s;
            *grad_gate = go * u * s * (1.0 + g * (1.0 - s));
        }
    }
}
