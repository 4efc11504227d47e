//! The LoRA product on burn-flex: every product through the gemm crate on all cores (Burn's own
//! matmul runs the small rank-`r` products on one thread).

use crate::tile::{MatRef, matmul_parallel};

/// One layer's f32 operands, row-major.
pub(crate) struct Operands<'a> {
    /// `[rows, in]`.
    pub x: &'a [f32],
    /// `[rows, in]`.
    pub x_adapter: &'a [f32],
    /// `[out, in]`.
    pub weight: &'a [f32],
    /// `[r, in]`.
    pub a: &'a [f32],
    /// `[out, r]`.
    pub b: &'a [f32],
    pub d_in: usize,
    pub scale: f32,
}

impl Operands<'_> {
    fn rows(&self) -> usize {
        self.x.len() / self.d_in
    }
    fn d_out(&self) -> usize {
        self.weight.len() / self.d_in
    }
    fn rank(&self) -> usize {
        self.a.len() / self.d_in
    }

    /// `y [rows, out]` and `h = x_adapter · Aᵀ [rows, r]`.
    pub(crate) fn forward(&self) -> (Vec<f32>, Vec<f32>) {
        let (rows, d_in, d_out, r) = (self.rows(), self.d_in, self.d_out(), self.rank());
        let mut h = vec![0.0f32; rows * r];
        let a_t = MatRef::rows(self.a, r, d_in, d_in).t();
        matmul_parallel(
            &mut h,
            r,
            MatRef::rows(self.x_adapter, rows, d_in, d_in),
            a_t,
            1.0,
            false,
        );
        let mut y = vec![0.0f32; rows * d_out];
        let w_t = MatRef::rows(self.weight, d_out, d_in, d_in).t();
        matmul_parallel(
            &mut y,
            d_out,
            MatRef::rows(self.x, rows, d_in, d_in),
            w_t,
            1.0,
            false,
        );
        let b_t = MatRef::rows(self.b, d_out, r, r).t();
        matmul_parallel(&mut y, d_out, MatRef::rows(&h, rows, r, r), b_t, self.scale, true);
        (y, h)
    }

    /// `[dx, dx_adapter, dweight, da, db]`, each only where `wanted`.
    pub(crate) fn backward(&self, h: &[f32], grad_out: &[f32], wanted: [bool; 5]) -> [Option<Vec<f32>>; 5] {
        let (rows, d_in, d_out, r) = (self.rows(), self.d_in, self.d_out(), self.rank());
        let dy = MatRef::rows(grad_out, rows, d_out, d_out);
        let mut grad_h = vec![0.0f32; rows * r];
        matmul_parallel(
            &mut grad_h,
            r,
            dy,
            MatRef::rows(self.b, d_out, r, r),
            self.scale,
            false,
        );
        let grad_h_ref = MatRef::rows(&grad_h, rows, r, r);
        let product = |len: usize, stride: usize, lhs: MatRef, rhs: MatRef, scale: f32| {
            let mut out = vec![0.0f32; len];
            matmul_parallel(&mut out, stride, lhs, rhs, scale, false);
            out
        };
        let [want_x, want_xa, want_w, want_a, want_b] = wanted;
        [
            want_x.then(|| {
                product(
                    rows * d_in,
                    d_in,
                    dy,
                    MatRef::rows(self.weight, d_out, d_in, d_in),
                    1.0,
                )
            }),
            want_xa.then(|| {
                product(
                    rows * d_in,
                    d_in,
                    grad_h_ref,
                    MatRef::rows(self.a, r, d_in, d_in),
                    1.0,
                )
            }),
            want_w.then(|| {
                product(
                    d_out * d_in,
                    d_in,
                    dy.t(),
                    MatRef::rows(self.x, rows, d_in, d_in),
                    1.0,
                )
            }),
            want_a.then(|| {
                product(
                    r * d_in,
                    d_in,
                    grad_h_ref.t(),
                    MatRef::rows(self.x_adapter, rows, d_in, d_in),
                    1.0,
                )
            }),
            want_b.then(|| product(d_out * r, r, dy.t(), MatRef::rows(h, rows, r, r), self.scale)),
        ]
    }
}
