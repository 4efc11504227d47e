//! Masked causal-LM cross-entropy, our own: labels shifted by one, positions labelled −100
//! ignored by position (never by token id), log-sum-exp in f32, and the LM head applied only to
//! the rows that have a target (prompt and padding rows never reach the head). A plain head
//! (tied, or dense without bias or adapter) goes through `ft_kernels::linear_cross_entropy`,
//! which never holds the batch's `[targets, vocab]` logits.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use ft_kernels::KernelBackend;

use crate::ModelConfig;
use crate::model::{CausalLm, ModelInput};

/// Label of an ignored position.
pub const IGNORE_INDEX: i32 = -100;

/// The summed loss of a batch and the number of targets it sums over.
#[derive(Debug, Clone)]
pub struct LossSum<B: Backend> {
    /// Σ cross-entropy over the batch's targets, `[1]`.
    pub sum: Tensor<B, 1>,
    /// Number of targets (labels ≠ −100 after the shift).
    pub count: usize,
}

/// Positions whose next label is trained: `(row-major position, target id)`.
pub fn shifted_targets(labels: &[i32], batch: usize, seq: usize) -> Vec<(usize, u32)> {
    assert_eq!(labels.len(), batch * seq, "labels must be [batch, seq]");
    let mut out = Vec::new();
    for b in 0..batch {
        for s in 0..seq.saturating_sub(1) {
            let label = labels[b * seq + s + 1];
            if label != IGNORE_INDEX {
                out.push((b * seq + s, label as u32));
            }
        }
    }
    out
}

/// Σ cross-entropy of the rows of `logits` against `targets`; the log-softmax (log-sum-exp)
/// runs in f32 whatever the logits' dtype, and the result is f32 (transformers upcasts too).
///
/// # Shapes
/// - logits: `[rows, vocab]`
/// - targets: `rows` ids
/// - output: `[1]`
pub fn cross_entropy_sum<B: KernelBackend>(logits: Tensor<B, 2>, targets: &[u32]) -> Tensor<B, 1> {
    let device = logits.device();
    let rows = targets.len();
    let ids: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let index = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, 1]), &device);
    let picked = log_softmax(logits.cast(FloatDType::F32), 1).gather(1, index);
    picked.sum().neg()
}

impl<B: KernelBackend> CausalLm<B> {
    /// Summed loss of a batch with labels; the head runs only on rows with a target.
    ///
    /// # Shapes
    /// - input: `[batch, seq]`; labels: `[batch, seq]` (−100 = ignored)
    /// - output: Σ CE `[1]` and the target count
    pub fn loss_sum(&self, input: &ModelInput, labels: &[i32], config: &ModelConfig) -> LossSum<B> {
        self.loss_sum_over(labels, input.batch, input.seq, || {
            self.hidden_states(input, config, None)
        })
    }

    /// [`Self::loss_sum`] of input embeddings (a LLaVA's spliced rows).
    ///
    /// # Shapes
    /// - embeddings: `[batch, seq, hidden]`; labels: `[batch, seq]` (−100 = ignored)
    /// - output: Σ CE `[1]` and the target count
    pub fn loss_sum_of_embeddings(
        &self,
        embeddings: Tensor<B, 3>,
        input: &ModelInput,
        labels: &[i32],
        config: &ModelConfig,
    ) -> LossSum<B> {
        self.loss_sum_over(labels, input.batch, input.seq, || {
            self.hidden_states_of_embeddings(embeddings, input, config)
        })
    }

    /// The loss of the hidden states `hidden()` gives (not computed when nothing is trained).
    fn loss_sum_over(
        &self,
        labels: &[i32],
        batch: usize,
        seq: usize,
        hidden: impl FnOnce() -> Tensor<B, 3>,
    ) -> LossSum<B> {
        let targets = shifted_targets(labels, batch, seq);
        let device = self.embed.device();
        if targets.is_empty() {
            return LossSum {
                sum: Tensor::<B, 1>::zeros([1], &device).cast(FloatDType::F32),
                count: 0,
            };
        }
        let hidden = hidden();
        let [b, s, h] = hidden.dims();
        let rows: Vec<i64> = targets.iter().map(|(p, _)| *p as i64).collect();
        let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [targets.len()]), &device);
        let picked = hidden.reshape([b * s, h]).select(0, rows);
        let ids: Vec<u32> = targets.iter().map(|(_, t)| *t).collect();
        let sum = match self.plain_head_weight() {
            Some(weight) => ft_kernels::linear_cross_entropy(picked, weight, &ids),
            None => cross_entropy_sum(self.head(picked.unsqueeze_dim::<3>(0)).squeeze_dim::<2>(0), &ids),
        };
        LossSum {
            sum,
            count: targets.len(),
        }
    }

    /// The LM head's weight `[vocab, hidden]` when the head is a plain product (tied, or dense
    /// without bias or adapter), so the fused chunked loss can apply it.
    fn plain_head_weight(&self) -> Option<Tensor<B, 2>> {
        match &self.lm_head {
            None => Some(self.embed.val()),
            Some(head) if head.lora.is_none() && head.bias.is_none() => head.dense_weight().map(|w| w.val()),
            Some(_) => None,
        }
    }

    /// Mean loss over the batch's targets (transformers' convention), `[1]`.
    pub fn loss(&self, input: &ModelInput, labels: &[i32], config: &ModelConfig) -> Tensor<B, 1> {
        let LossSum { sum, count } = self.loss_sum(input, labels, config);
        sum.div_scalar(count.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_shift_left_and_skip_ignored_positions() {
        // Row 0: labels at positions 1 and 3 are trained → predicted from positions 0 and 2.
        let labels = [-100, 5, -100, 7, 9, -100, -100, -100];
        assert_eq!(shifted_targets(&labels, 2, 4), vec![(0, 5), (2, 7)]);
    }
}
