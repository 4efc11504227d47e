//! Which keys each new token sees, from the batch: causal, padding keys hidden, no attention
//! across packed segments, and (Mistral, some Qwen2 layers) a sliding window. The rule itself
//! lives in [`ft_kernels::AttentionMask`].

use std::sync::Arc;

use ft_kernels::AttentionMask;

use crate::model::ModelInput;

/// The mask of `input`'s new tokens after `past` cached ones (`cache_mask`: `[batch, past]`,
/// 0 for an empty slot of a left-padded cache).
pub(crate) fn attention_mask(
    input: &ModelInput,
    past: usize,
    window: Option<usize>,
    cache_mask: Option<&Arc<Vec<i32>>>,
) -> AttentionMask {
    AttentionMask {
        cache_mask: cache_mask.cloned(),
        batch: input.batch,
        seq: input.seq,
        past,
        window,
        attention_mask: input.attention_mask.clone().map(Arc::new),
        segment_ids: input.segment_ids.clone().map(Arc::new),
    }
}
