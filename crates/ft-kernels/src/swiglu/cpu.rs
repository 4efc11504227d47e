//! SwiGLU on burn-flex: element-wise over rayon chunks, eight lanes at a time.

use wide::f32x8;

use crate::par;
use crate::simd::{self, LANES, load, store};

/// Elements per rayon task (a multiple of the lanes).
const CHUNK: usize = 16 * 1024;

/// `silu(gate) ⊙ up`.
pub(crate) fn forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; gate.len()];
    let tasks: Vec<_> = out
        .chunks_mut(CHUNK)
        .zip(gate.chunks(CHUNK).zip(up.chunks(CHUNK)))
        .collect();
    par::for_each(par::worth_parallel(gate.len()), tasks, |(out, (gate, up))| {
        for at in (0..out.len()).step_by(LANES) {
            let g = load(gate, at);
            store(g * simd::sigmoid(g) * load(up, at), out, at);
        }
    });
    out
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
            for at in (0..grad_gate.len()).step_by(LANES) {
                let (g, u, go) = (load(gate, at), load(up, at), load(grad_out, at));
                let s = simd::sigmoid(g);
                store(go * g * s, grad_up, at);
                store(go * u * s * (f32x8::ONE + g * (f32x8::ONE - s)), grad_gate, at);
            }
        },
    );
    (grad_gate, grad_up)
}
