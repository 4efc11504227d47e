//! Exponentials for the CPU kernels' element-wise loops, vectorised by the compiler.
//!
//! Two things make these loops fast:
//! - a polynomial exponential made of plain arithmetic and selects (Cephes' `expf`, within
//!   about 1e-7 relative of std's), which the compiler turns into vector code (std's `f32::exp`
//!   is one libm call per element);
//! - each hot loop compiled twice, for the x86-64 baseline (SSE2, four lanes) and for AVX2 with
//!   FMA (eight lanes), with the CPU checked once at run time ([`avx2_dispatch!`]). The
//!   arithmetic is the same in both (no fused multiply-adds), so results do not depend on the
//!   CPU.

/// Lanes the loops below accumulate in (one AVX2 register).
const LANES: usize = 8;

/// Whether this CPU has AVX2 and FMA (std detects once and caches the answer).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Defines `fn name(args) -> ret { body }` compiled twice: once for the baseline and once with
/// AVX2 and FMA enabled, and called through the second on CPUs that have them. The body must be
/// plain safe code; its inlined callees (`#[inline(always)]`) are compiled with it.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn portable($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) -> $ret {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::simd::has_avx2() {
                // SAFETY: `has_avx2` found both features on this CPU.
                return unsafe { avx2($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}
pub(crate) use avx2_dispatch;

/// e^x for the arguments these kernels pass (at most 0: scores minus their maximum or
/// log-sum-exp, and −|x|): below −87.3 the answer is 0 (std gives subnormals), −∞ gives 0, NaN
/// stays NaN, and anything from 87.3 up gives +∞.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Round to the nearest integer by adding and removing 1.5 · 2²³ (no `floor`: SSE2 has none).
    const ROUND: f32 = 12_582_912.0;
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    let clamped = x.clamp(-87.3, 87.3);
    let rounded = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    // x − n · ln 2 in two parts (n · LN2_HIGH is exact).
    let r = clamped - n * LN2_HIGH - n * LN2_LOW;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let mantissa = p * r * r + r + 1.0;
    // 2ⁿ from its exponent bits. n (in −126..=126 here) is the low bits of `rounded`, read as
    // an integer without a float-to-int conversion (which the compiler does not vectorise).
    let n_bits = rounded.to_bits().wrapping_sub(ROUND.to_bits());
    let two_to_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    let e = mantissa * two_to_n;
    let e = if x < -87.3 { 0.0 } else { e };
    let e = if x >= 87.3 { f32::INFINITY } else { e };
    if x.is_nan() { x } else { e }
}

/// `1 / (1 + e^−x)`, through e^−|x| so the exponential never overflows.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let positive = 1.0 / (1.0 + e);
    if x >= 0.0 { positive } else { e * positive }
}

avx2_dispatch! {
    /// `values[i] = e^(values[i] − shift)`; returns the sum of the results (summed in eight
    /// lanes, then across them).
    pub(crate) fn exp_shifted(values: &mut [f32], shift: f32) -> f32 {
        let mut lanes = [0.0f32; LANES];
        let mut chunks = values.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (value, lane) in chunk.iter_mut().zip(lanes.iter_mut()) {
                *value = exp(*value - shift);
                *lane += *value;
            }
        }
        for (value, lane) in chunks.into_remainder().iter_mut().zip(lanes.iter_mut()) {
            *value = exp(*value - shift);
            *lane += *value;
        }
        lanes.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponentials_match_std_and_keep_exp_meaning_at_the_edges() {
        let xs: Vec<f32> = (-1900..=20).map(|i| i as f32 * 0.0437).collect();
        let mut got = xs.clone();
        let sum = exp_shifted(&mut got, 0.5);
        let want: Vec<f32> = xs.iter().map(|x| (x - 0.5).exp()).collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 2e-7 * w, "{g} vs {w}");
        }
        let want_sum: f32 = want.iter().sum();
        assert!((sum - want_sum).abs() <= 1e-5 * want_sum, "{sum} vs {want_sum}");

        let edges = [
            f32::NEG_INFINITY,
            -200.0,
            0.0,
            100.0,
            f32::INFINITY,
            f32::NAN,
            -1.0,
            1.0,
        ]
        .map(exp);
        assert_eq!(edges[..5], [0.0, 0.0, 1.0, f32::INFINITY, f32::INFINITY]);
        assert!(edges[5].is_nan());
        assert!((edges[6] - (-1.0f32).exp()).abs() < 1e-7 && (edges[7] - 1.0f32.exp()).abs() < 1e-6);
    }

    #[test]
    fn both_compilations_give_the_same_bits() {
        let xs: Vec<f32> = (-3000..=3000).map(|i| i as f32 * 0.0291).collect();
        let mut dispatched = xs.clone();
        let sum = exp_shifted(&mut dispatched, 1.25);
        let baseline: Vec<f32> = xs.iter().map(|x| exp(x - 1.25)).collect();
        assert_eq!(dispatched, baseline);
        let mut lanes = [0.0f32; LANES];
        for (i, e) in baseline.iter().enumerate() {
            lanes[i % LANES] += e;
        }
        assert_eq!(sum, lanes.iter().sum::<f32>());
    }

    #[test]
    fn sigmoid_matches_std_on_both_tails() {
        let xs = [-200.0f32, -30.0, -3.5, -0.25, 0.0, 0.25, 3.5, 30.0];
        for x in xs {
            let (got, want) = (sigmoid(x), 1.0 / (1.0 + (-x).exp()));
            assert!(
                (got - want).abs() <= 2e-7 * want.max(1e-30),
                "sigmoid({x}) = {got}, want {want}"
            );
        }
    }
}
