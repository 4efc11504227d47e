//! Cross-entropy over the LM head in chunks of rows: `Σ −log softmax(hidden · Wᵀ)[target]`
//! without ever holding `[rows, vocab]` logits for the whole batch. Training keeps the hidden
//! rows and one f32 log-sum-exp per row; the backward recomputes each chunk's logits.

pub(crate) mod autodiff;
pub mod composite;
pub(crate) mod cpu;

use burn::tensor::Tensor;

use crate::backend::{KernelBackend, float};

/// Rows per chunk for a vocabulary: about 16M logits (64 MB of f32) at a time.
pub fn rows_per_chunk(vocab: usize) -> usize {
    (16 * 1024 * 1024 / vocab.max(1)).max(1)
}

/// Whether a batch's logits fit in one chunk, so that the kernels' forward keeps their softmax
/// for the backward instead of each row's log-sum-exp.
pub fn fits_one_chunk(rows: usize, vocab: usize) -> bool {
    rows <= rows_per_chunk(vocab)
}

/// Σ over rows of the cross-entropy of `hidden · weightᵀ` against `targets`, log-sum-exp in f32
/// whatever the dtype; the result is f32 (as transformers upcasts).
///
/// # Shapes
/// - hidden: `[rows, hidden]`
/// - weight: `[vocab, hidden]` (the LM head, PyTorch layout)
/// - targets: `rows` ids below `vocab`
/// - output: `[1]`
///
/// # Panics
/// When the sizes disagree or a target is out of the vocabulary (a caller bug).
pub fn linear_cross_entropy<B: KernelBackend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: &[u32],
) -> Tensor<B, 1> {
    let ([rows, width], [vocab, weight_width]) = (hidden.dims(), weight.dims());
    assert_eq!(
        width, weight_width,
        "linear_cross_entropy: hidden and weight widths differ"
    );
    assert_eq!(rows, targets.len(), "linear_cross_entropy: one target per row");
    assert!(
        targets.iter().all(|&t| (t as usize) < vocab),
        "linear_cross_entropy: target past the vocabulary"
    );
    let loss = B::fused_linear_cross_entropy(
        hidden.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        targets,
    );
    float(loss)
}
