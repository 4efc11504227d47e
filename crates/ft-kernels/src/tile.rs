//! Dense products on row-major f32 matrices, through the `gemm` crate burn-flex multiplies with:
//! single-threaded for tiles (the callers already run one tile per rayon task), or on every core
//! for large products.

/// `len` zeros written into fresh memory, for buffers that products accumulate into.
///
/// `vec![0.0; len]` gets untouched zero pages from the kernel: the first read maps the shared
/// zero page and the first write then copies it and flushes every core's TLB, which cost about
/// 12% of the attention backward. Writing the zeros up front faults each page in once.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut buffer = Vec::with_capacity(len);
    buffer.resize(len, 0.0f32);
    buffer
}

/// A read-only matrix inside a slice: element `(r, c)` is `data[r · row_stride + c · col_stride]`.
/// A transposed view swaps the strides.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// `rows × cols` stored row by row with `row_stride` floats per row.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// One past the largest index read.
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }
}

/// `dst = scale · a · b` (or `dst += …` when `accumulate`), with `dst` row-major
/// `a.rows × b.cols` and `dst_stride` floats per row.
///
/// # Panics
/// When the inner sizes differ or a view reaches past its slice.
pub(crate) fn matmul(dst: &mut [f32], dst_stride: usize, a: MatRef, b: MatRef, scale: f32, accumulate: bool) {
    matmul_with(dst, dst_stride, a, b, scale, accumulate, gemm::Parallelism::None);
}

/// [`matmul`] on every core of rayon's pool when the product is big enough to pay for it.
pub(crate) fn matmul_parallel(
    dst: &mut [f32],
    dst_stride: usize,
    a: MatRef,
    b: MatRef,
    scale: f32,
    accumulate: bool,
) {
    let parallelism = if crate::par::worth_parallel(a.rows * a.cols * b.cols) {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    matmul_with(dst, dst_stride, a, b, scale, accumulate, parallelism);
}

fn matmul_with(
    dst: &mut [f32],
    dst_stride: usize,
    a: MatRef,
    b: MatRef,
    scale: f32,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "tile product: inner sizes differ");
    assert!(
        a.extent() <= a.data.len() && b.extent() <= b.data.len(),
        "tile view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * dst_stride + n <= dst.len(), "tile output out of bounds");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_stride..][..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: every index gemm touches lies inside the slices (checked above from the strides
    // and sizes), `dst` is borrowed mutably and so aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef, b: MatRef) -> Vec<f32> {
        let mut out = vec![0.0; a.rows * b.cols];
        for r in 0..a.rows {
            for c in 0..b.cols {
                out[r * b.cols + c] = (0..a.cols)
                    .map(|i| {
                        a.data[r * a.row_stride + i * a.col_stride]
                            * b.data[i * b.row_stride + c * b.col_stride]
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn products_of_transposed_views_match_the_naive_loop() {
        let a: Vec<f32> = (0..12).map(|x| x as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..15).map(|x| (x as f32).sin()).collect();
        let a = MatRef::rows(&a, 4, 3, 3); // 4×3
        let b = MatRef::rows(&b, 5, 3, 3).t(); // (5×3)ᵀ = 3×5
        let mut out = vec![1.0; 20];
        matmul(&mut out, 5, a, b, 2.0, false);
        let want: Vec<f32> = naive(a, b).iter().map(|x| 2.0 * x).collect();
        for (got, want) in out.iter().zip(&want) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        matmul(&mut out, 5, a, b, 1.0, true);
        for (got, want) in out.iter().zip(&want) {
            assert!((got - 1.5 * want).abs() < 1e-5, "{got} vs {}", 1.5 * want);
        }
    }
}
