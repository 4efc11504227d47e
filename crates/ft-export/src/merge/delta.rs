//! The LoRA delta `scale · (B @ A)` added to a base weight in f32.

use ft_io::peft::LoraPair;

/// Adds `scale · (B @ A)` to `w` in place, in f32, rounding exactly as PEFT on torch's CPU does:
/// for each output row `o`, `d = Σₖ B[o,k]·A[k,:]` accumulated with fused multiply-adds, k
/// ascending (torch's sgemm kernel), then `d · scale` and `w + …` as two separately rounded f32
/// operations (PEFT: `delta = (B @ A) * scaling`, then `W += delta`). With the fixtures this gives
/// PEFT's merged f32 weights bit for bit; a plain multiply-then-add accumulation differs by an ulp
/// in about 30% of the values (and then, rarely, in the bf16 cast).
///
/// A row loop: the rank is small, so each row is `r` vectorised FMA axpys over `in` values. On
/// x86-64 the loop is compiled for AVX2+FMA and chosen at run time; elsewhere `f32::mul_add` is used
/// (same results, as an FMA is exactly rounded).
///
/// # Shapes
/// - `w`: `[out, in]` row-major
/// - `pair.a`: `[r, in]`, `pair.b`: `[out, r]`
pub fn add_lora_delta(w: &mut [f32], pair: &LoraPair, scale: f32) {
    let (out, inp, r) = (pair.out_features(), pair.in_features(), pair.rank());
    assert_eq!(
        w.len(),
        out * inp,
        "invariant: weight is [out, in] of the adapter"
    );
    assert_eq!(pair.b.shape[1], r, "invariant: lora_B is [out, r]");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the running CPU has the features `delta_rows_avx2_fma` is compiled for.
        unsafe { delta_rows_avx2_fma(w, &pair.a.data, &pair.b.data, inp, r, scale) };
        return;
    }
    delta_rows(w, &pair.a.data, &pair.b.data, inp, r, scale);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn delta_rows_avx2_fma(w: &mut [f32], a: &[f32], b: &[f32], inp: usize, r: usize, scale: f32) {
    delta_rows(w, a, b, inp, r, scale);
}

/// # Shapes
/// - `w`: `[out, inp]`, `a`: `[r, inp]`, `b`: `[out, r]`, all row-major
#[inline(always)]
fn delta_rows(w: &mut [f32], a: &[f32], b: &[f32], inp: usize, r: usize, scale: f32) {
    let mut d = vec![0.0f32; inp];
    for (w_row, b_row) in w.chunks_exact_mut(inp).zip(b.chunks_exact(r)) {
        d.fill(0.0);
        for (&bk, a_row) in b_row.iter().zip(a.chunks_exact(inp)) {
            for (di, &ai) in d.iter_mut().zip(a_row) {
                *di = bk.mul_add(ai, *di);
            }
        }
        for (wi, &di) in w_row.iter_mut().zip(&d) {
            *wi += di * scale;
        }
    }
}
