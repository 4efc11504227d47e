//! SwiGLU on burn-flex: element-wise over rayon chunks.

use crate::par;

/// Elements per rayon task.
const CHUNK: usize = 16 * 1024;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `silu(gate) ⊙ up`.
pub(crate) fn forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; gate.len()];
    let tasks: Vec<_> = out
        .chunks_mut(CHUNK)
        .zip(gate.chunks(CHUNK).zip(up.chunks(CHUNK)))
        .collect();
    par::for_each(par::worth_parallel(gate.len()), tasks, |(out, (gate, up))| {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g * sigmoid(g) * u;
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
            let items = grad_gate
                .iter_mut()
                .zip(grad_up.iter_mut())
                .zip(gate)
                .zip(up)
                .zip(grad_out);
            for ((((dg, du), &g), &u), &go) in items {
                let s = sigmoid(g);
                *du = go * g * s;
                *dg = go * u * s * (1.0 + g * (1.0 - s));
            }
        },
    );
    (grad_gate, grad_up)
}
