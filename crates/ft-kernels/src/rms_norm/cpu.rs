//! RMSNorm on burn-flex: one rayon task per block of rows, f32 statistics.

use crate::par;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 16;

/// Output and reciprocal roots of `x` (`[rows, hidden]`, row-major).
pub(crate) fn forward(x: &[f32], weight: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>) {
    let hidden = weight.len();
    let mut out = vec![0.0f32; x.len()];
    let mut inv_rms = vec![0.0f32; x.len() / hidden];
    let tasks: Vec<_> = out
        .chunks_mut(hidden * ROWS_PER_TASK)
        .zip(inv_rms.chunks_mut(ROWS_PER_TASK))
        .zip(x.chunks(hidden * ROWS_PER_TASK))
        .collect();
    par::for_each(par::worth_parallel(x.len()), tasks, |((out, inv_rms), x)| {
        for ((out, r), x) in out
            .chunks_mut(hidden)
            .zip(inv_rms.iter_mut())
            .zip(x.chunks(hidden))
        {
            let mean_square = x.iter().map(|v| v * v).sum::<f32>() / hidden as f32;
            *r = 1.0 / (mean_square + eps as f32).sqrt();
            for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
                *o = v * *r * w;
            }
        }
    });
    (out, inv_rms)
}

/// `(dx, dweight)`: dx row by row, dweight summed over rows per task and then across tasks.
pub(crate) fn backward(x: &[f32], weight: &[f32], inv_rms: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let hidden = weight.len();
    let mut grad_x = vec![0.0f32; x.len()];
    let tasks: Vec<_> = grad_x
        .chunks_mut(hidden * ROWS_PER_TASK)
        .zip(x.chunks(hidden * ROWS_PER_TASK))
        .zip(grad_out.chunks(hidden * ROWS_PER_TASK))
        .zip(inv_rms.chunks(ROWS_PER_TASK))
        .collect();
    let partials = par::map(
        par::worth_parallel(x.len()),
        tasks,
        |(((grad_x, x), grad_out), inv_rms)| {
            let mut grad_weight = vec![0.0f32; hidden];
            let rows = grad_x
                .chunks_mut(hidden)
                .zip(x.chunks(hidden))
                .zip(grad_out.chunks(hidden));
            for (((grad_x, x), grad_out), &r) in rows.zip(inv_rms) {
                let mut projection = 0.0f32;
                for (((gw, &v), &g), &w) in grad_weight.iter_mut().zip(x).zip(grad_out).zip(weight) {
                    *gw += g * v * r;
                    projection += g * w * v * r;
                }
                projection /= hidden as f32;
                for (((gx, &v), &g), &w) in grad_x.iter_mut().zip(x).zip(grad_out).zip(weight) {
                    *gx = (g * w - v * r * projection) * r;
                }
            }
            grad_weight
        },
    );
    let mut grad_weight = vec![0.0f32; hidden];
    for partial in partials {
        grad_weight.iter_mut().zip(&partial).for_each(|(a, b)| *a += b);
    }
    (grad_x, grad_weight)
}
