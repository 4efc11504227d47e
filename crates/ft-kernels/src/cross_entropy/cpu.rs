//! Chunked cross-entropy on burn-flex: each chunk's logits come from one multi-threaded gemm,
//! then rayon works row by row (log-sum-exp forward; softmax minus one-hot backward). When the
//! batch's logits fit in one chunk, the forward keeps their softmax for the backward instead of
//! the log-sum-exp, which saves recomputing the logits and their exponentials.

use rayon::prelude::*;

use super::{fits_one_chunk, rows_per_chunk};
use crate::simd;
use crate::tile::{MatRef, matmul_parallel, zeroed};

/// The head and the rows it is applied to, all f32 row-major.
pub(crate) struct Head<'a> {
    /// `[rows, width]`.
    pub hidden: &'a [f32],
    /// `[vocab, width]`.
    pub weight: &'a [f32],
    pub targets: &'a [u32],
    pub width: usize,
}

impl Head<'_> {
    fn vocab(&self) -> usize {
        self.weight.len() / self.width
    }

    /// `(first row, rows)` of each chunk.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (rows, size) = (self.targets.len(), rows_per_chunk(self.vocab()));
        (0..rows)
            .step_by(size)
            .map(move |first| (first, size.min(rows - first)))
    }

    /// Logits `[rows, vocab]` of rows `first..first + rows`, into `logits`.
    fn logits(&self, first: usize, rows: usize, logits: &mut [f32]) {
        let (width, vocab) = (self.width, self.vocab());
        let hidden = MatRef::rows(&self.hidden[first * width..], rows, width, width);
        let weight = MatRef::rows(self.weight, vocab, width, width).t();
        matmul_parallel(logits, vocab, hidden, weight, 1.0, false);
    }

    /// Summed loss and the log-sum-exp of every row.
    pub(crate) fn forward(&self) -> (f32, Vec<f32>) {
        let vocab = self.vocab();
        let mut lse = vec![0.0f32; self.targets.len()];
        let mut logits = Vec::new();
        let mut loss = 0.0f64;
        for (first, rows) in self.chunks() {
            logits.resize(rows * vocab, 0.0);
            self.logits(first, rows, &mut logits);
            let targets = &self.targets[first..first + rows];
            loss += logits
                .par_chunks_mut(vocab)
                .zip(lse[first..first + rows].par_iter_mut())
                .zip(targets.par_iter())
                .map(|((line, lse), &target)| {
                    let picked = line[target as usize];
                    *lse = log_sum_exp(line);
                    f64::from(*lse - picked)
                })
                .sum::<f64>();
        }
        (loss as f32, lse)
    }

    /// Whether the whole batch's logits fit in one chunk (then the softmax is kept).
    pub(crate) fn fits_one_chunk(&self) -> bool {
        fits_one_chunk(self.targets.len(), self.vocab())
    }

    /// Summed loss and the softmax `[rows, vocab]` of the logits (one chunk).
    pub(crate) fn forward_keeping_softmax(&self) -> (f32, Vec<f32>) {
        let (rows, vocab) = (self.targets.len(), self.vocab());
        let mut probs = vec![0.0f32; rows * vocab];
        self.logits(0, rows, &mut probs);
        let loss = probs
            .par_chunks_mut(vocab)
            .zip(self.targets.par_iter())
            .map(|(line, &target)| {
                let picked = line[target as usize];
                let max = line.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum = simd::exp_shifted(line, max);
                line.iter_mut().for_each(|l| *l /= sum);
                f64::from(max + sum.ln() - picked)
            })
            .sum::<f64>();
        (loss as f32, probs)
    }

    /// [`Head::backward`] from the softmax kept by [`Head::forward_keeping_softmax`].
    pub(crate) fn backward_from_softmax(
        &self,
        mut probs: Vec<f32>,
        grad: f32,
        weight_grad: bool,
    ) -> (Vec<f32>, Option<Vec<f32>>) {
        let vocab = self.vocab();
        probs
            .par_chunks_mut(vocab)
            .zip(self.targets.par_iter())
            .for_each(|(line, &target)| {
                line.iter_mut().for_each(|p| *p *= grad);
                line[target as usize] -= grad;
            });
        let mut grad_hidden = vec![0.0f32; self.hidden.len()];
        let mut grad_weight = weight_grad.then(|| zeroed(self.weight.len()));
        self.accumulate_gradients(0, &probs, &mut grad_hidden, grad_weight.as_mut());
        (grad_hidden, grad_weight)
    }

    /// Gradients of `grad · loss` with respect to the hidden rows and, when asked, the weight.
    pub(crate) fn backward(&self, lse: &[f32], grad: f32, weight_grad: bool) -> (Vec<f32>, Option<Vec<f32>>) {
        let vocab = self.vocab();
        let mut grad_hidden = vec![0.0f32; self.hidden.len()];
        let mut grad_weight = weight_grad.then(|| zeroed(self.weight.len()));
        let mut logits = Vec::new();
        for (first, rows) in self.chunks() {
            logits.resize(rows * vocab, 0.0);
            self.logits(first, rows, &mut logits);
            let targets = &self.targets[first..first + rows];
            logits
                .par_chunks_mut(vocab)
                .zip(lse[first..first + rows].par_iter())
                .zip(targets.par_iter())
                .for_each(|((line, &lse), &target)| {
                    simd::exp_shifted(line, lse);
                    line.iter_mut().for_each(|l| *l *= grad);
                    line[target as usize] -= grad;
                });
            self.accumulate_gradients(first, &logits, &mut grad_hidden, grad_weight.as_mut());
        }
        (grad_hidden, grad_weight)
    }
}

impl Head<'_> {
    /// Adds the gradients of rows `first..` from their logits' gradient `[rows, vocab]`: writes
    /// those rows of `grad_hidden`, and adds to `grad_weight` when the weight is trained.
    fn accumulate_gradients(
        &self,
        first: usize,
        grad_logits: &[f32],
        grad_hidden: &mut [f32],
        grad_weight: Option<&mut Vec<f32>>,
    ) {
        let (width, vocab) = (self.width, self.vocab());
        let rows = grad_logits.len() / vocab;
        let grad_logits = MatRef::rows(grad_logits, rows, vocab, vocab);
        let weight = MatRef::rows(self.weight, vocab, width, width);
        matmul_parallel(
            &mut grad_hidden[first * width..],
            width,
            grad_logits,
            weight,
            1.0,
            false,
        );
        if let Some(grad_weight) = grad_weight {
            let hidden = MatRef::rows(&self.hidden[first * width..], rows, width, width);
            matmul_parallel(grad_weight, width, grad_logits.t(), hidden, 1.0, true);
        }
    }
}

/// The log-sum-exp of `line`, which is left holding `e^(logit − max)`.
fn log_sum_exp(line: &mut [f32]) -> f32 {
    let max = line.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + simd::exp_shifted(line, max).ln()
}
