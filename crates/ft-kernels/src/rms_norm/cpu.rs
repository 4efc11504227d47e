//! RMSNorm on burn-flex: one rayon task per block of rows, f32 statistics.

use rayon::prelude::*;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 16;

/// Output and reciprocal roots of `x` (`[rows, hidden]`, row-major).
pub(crate) fn forward(x: &[f32], weight: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>) {
    let hidden = weight.len();
    let mut out = vec![0.0f32; x.len()];
    let mut inv_rms = vec![0.0f32; x.len() / hidden];
    out.par_chunks_mut(hidden * ROWS_PER_TASK)
        .zip(inv_rms.par_chunks_mut(ROWS_PER_TASK))
        .zip(x.par_chunks(hidden * ROWS_PER_TASK))
        .for_each(|((out, inv_rms), x)| {
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
    let grad_weight = grad_x
        .par_chunks_mut(hidden * ROWS_PER_TASK)
        .zip(x.par_chunks(hidden * ROWS_PER_TASK))
        .zip(grad_out.par_chunks(hidden * ROWS_PER_TASK))
        .zip(inv_rms.par_chunks(ROWS_PER_TASK))
        .map(|(((grad_x, x), grad_out), inv_rms)| {
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
        })
        .reduce(
            || vec![0.0f32; hidden],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    (grad_x, grad_weight)
}
