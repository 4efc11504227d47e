//! RoPE on burn-flex: one rayon task per block of positions, every head of a position at once.

use crate::par;

/// Positions per rayon task.
const POSITIONS_PER_TASK: usize = 32;

/// `y[j] = x[j] · a[j] + x[j ± half] · b[j]` for every head of every position: the forward with
/// `(a, b) = (cos, signed_sin)`. `x` is `[positions, heads, head_dim]`, the tables
/// `[positions, head_dim]`.
pub(crate) fn forward(x: &[f32], cos: &[f32], signed_sin: &[f32], head_dim: usize) -> Vec<f32> {
    let heads = x.len() / cos.len();
    let mut out = vec![0.0f32; x.len()];
    let width = heads * head_dim;
    let tasks: Vec<_> = out
        .chunks_mut(width * POSITIONS_PER_TASK)
        .zip(x.chunks(width * POSITIONS_PER_TASK))
        .zip(
            cos.chunks(head_dim * POSITIONS_PER_TASK)
                .zip(signed_sin.chunks(head_dim * POSITIONS_PER_TASK)),
        )
        .collect();
    par::for_each(par::worth_parallel(x.len()), tasks, |((out, x), (cos, sin))| {
        let positions = out.chunks_mut(width).zip(x.chunks(width));
        for ((out, x), (cos, sin)) in positions.zip(cos.chunks(head_dim).zip(sin.chunks(head_dim))) {
            for (out, x) in out.chunks_mut(head_dim).zip(x.chunks(head_dim)) {
                rotate(out, x, cos, sin);
            }
        }
    });
    out
}

/// The gradient: `dx[j] = dy[j] · cos[j] + dy[j ± half] · signed_sin[j ± half]`.
pub(crate) fn backward(grad_out: &[f32], cos: &[f32], signed_sin: &[f32], head_dim: usize) -> Vec<f32> {
    let heads = grad_out.len() / cos.len();
    let mut grad = vec![0.0f32; grad_out.len()];
    let width = heads * head_dim;
    let half = head_dim / 2;
    let tasks: Vec<_> = grad
        .chunks_mut(width * POSITIONS_PER_TASK)
        .zip(grad_out.chunks(width * POSITIONS_PER_TASK))
        .zip(
            cos.chunks(head_dim * POSITIONS_PER_TASK)
                .zip(signed_sin.chunks(head_dim * POSITIONS_PER_TASK)),
        )
        .collect();
    par::for_each(
        par::worth_parallel(grad_out.len()),
        tasks,
        |((grad, grad_out), (cos, sin))| {
            let positions = grad.chunks_mut(width).zip(grad_out.chunks(width));
            for ((grad, grad_out), (cos, sin)) in
                positions.zip(cos.chunks(head_dim).zip(sin.chunks(head_dim)))
            {
                for (grad, dy) in grad.chunks_mut(head_dim).zip(grad_out.chunks(head_dim)) {
                    for j in 0..head_dim {
                        let partner = (j + half) % head_dim;
                        grad[j] = dy[j] * cos[j] + dy[partner] * sin[partner];
                    }
                }
            }
        },
    );
    grad
}

fn rotate(out: &mut [f32], x: &[f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at(half);
    let (out1, out2) = out.split_at_mut(half);
    for j in 0..half {
        out1[j] = x1[j] * cos[j] + x2[j] * sin[j];
        out2[j] = x2[j] * cos[half + j] + x1[j] * sin[half + j];
    }
}
