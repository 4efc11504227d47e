//! Exponentials eight lanes at a time for the CPU kernels, through the `wide` crate's
//! polynomial (within about 1e-7 relative of std's): std's `f32::exp` is one libm call per
//! element, and was the largest single cost of the softmax, cross-entropy and SwiGLU loops.

use wide::{CmpGe, f32x8};

/// Lanes per vector.
pub(crate) const LANES: usize = 8;

/// e^x per lane, for the arguments these kernels pass (at most 0: scores minus their maximum or
/// log-sum-exp, and −|x|): below −87.3 the answer is 0 (std gives subnormals), −∞ gives 0, NaN
/// stays NaN, and anything from 87.3 up gives +∞.
pub(crate) fn exp(x: f32x8) -> f32x8 {
    // wide answers 0 for |x| ≥ 87.3 and for any non-finite x: right below, not above or for NaN.
    let e = x.exp();
    let e = x.cmp_ge(f32x8::splat(87.3)).blend(f32x8::splat(f32::INFINITY), e);
    x.is_nan().blend(x, e)
}

/// `1 / (1 + e^−x)` per lane, through e^−|x| so the exponential never overflows.
pub(crate) fn sigmoid(x: f32x8) -> f32x8 {
    let e = exp(-x.abs());
    let positive = f32x8::ONE / (f32x8::ONE + e);
    x.cmp_ge(f32x8::ZERO).blend(positive, e * positive)
}

/// `values[i] = e^(values[i] − shift)`; returns the sum of the results.
pub(crate) fn exp_shifted(values: &mut [f32], shift: f32) -> f32 {
    let shift = f32x8::splat(shift);
    let mut sum = f32x8::ZERO;
    for at in (0..values.len()).step_by(LANES) {
        let e = exp(load(values, at) - shift);
        let written = store(e, values, at);
        sum += if written == LANES {
            e
        } else {
            f32x8::from(lanes_or_zero(&e.to_array()[..written]))
        };
    }
    sum.reduce_add()
}

/// The lanes `values[at..at + 8]`, zero past the end.
pub(crate) fn load(values: &[f32], at: usize) -> f32x8 {
    match values.get(at..at + LANES) {
        Some(lanes) => f32x8::from(<[f32; LANES]>::try_from(lanes).expect("invariant: eight lanes")),
        None => f32x8::from(lanes_or_zero(&values[at..])),
    }
}

/// Writes the lanes of `v` that fit into `values[at..]`; returns how many.
pub(crate) fn store(v: f32x8, values: &mut [f32], at: usize) -> usize {
    let lanes = v.to_array();
    let count = LANES.min(values.len() - at);
    values[at..at + count].copy_from_slice(&lanes[..count]);
    count
}

/// Up to eight values, zero-padded.
fn lanes_or_zero(values: &[f32]) -> [f32; LANES] {
    let mut lanes = [0.0f32; LANES];
    lanes[..values.len()].copy_from_slice(values);
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_match_std_and_keep_exp_meaning_at_the_edges() {
        let xs: Vec<f32> = (-1900..=20).map(|i| i as f32 * 0.0437).collect();
        let mut got = xs.clone();
        let sum = exp_shifted(&mut got, 0.5);
        let want: Vec<f32> = xs.iter().map(|x| (x - 0.5).exp()).collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 2e-7 * w, "{g} vs {w}");
        }
        let want_sum: f32 = want.iter().sum();
        assert!((sum - want_sum).abs() <= 1e-5 * want_sum, "{sum} vs {want_sum}");

        let edges = exp(f32x8::from([
            f32::NEG_INFINITY,
            -200.0,
            0.0,
            100.0,
            f32::INFINITY,
            f32::NAN,
            -1.0,
            1.0,
        ]));
        let edges = edges.to_array();
        assert_eq!(edges[..5], [0.0, 0.0, 1.0, f32::INFINITY, f32::INFINITY]);
        assert!(edges[5].is_nan());
        assert!((edges[6] - (-1.0f32).exp()).abs() < 1e-7 && (edges[7] - 1.0f32.exp()).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_matches_std_on_both_tails() {
        let xs = [-200.0f32, -30.0, -3.5, -0.25, 0.0, 0.25, 3.5, 30.0];
        let got = sigmoid(f32x8::from(xs)).to_array();
        for (g, x) in got.iter().zip(xs) {
            let want = 1.0 / (1.0 + (-x).exp());
            assert!(
                (g - want).abs() <= 2e-7 * want.max(1e-30),
                "sigmoid({x}) = {g}, want {want}"
            );
        }
    }
}
