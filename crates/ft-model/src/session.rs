//! A KV-cache session over a loaded model (batch 1): the prompt is processed once, then one
//! token at a time, positions continuing.

use burn::tensor::backend::Backend;
use ft_kernels::KernelBackend;

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::generate::LogitsSession;
use crate::layers::LayerCache;
use crate::model::{CausalLm, ModelInput};

/// Generation state: the model, its config and the per-layer key/value cache.
pub struct KvSession<'a, B: Backend> {
    model: &'a CausalLm<B>,
    config: &'a ModelConfig,
    caches: Vec<LayerCache<B>>,
}

impl<'a, B: KernelBackend> KvSession<'a, B> {
    /// An empty session.
    pub fn new(model: &'a CausalLm<B>, config: &'a ModelConfig) -> Self {
        Self {
            model,
            config,
            caches: (0..config.num_layers).map(|_| LayerCache::default()).collect(),
        }
    }
}

impl<B: KernelBackend> LogitsSession for KvSession<'_, B> {
    type Error = ModelError;

    fn append(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        if ids.is_empty() {
            return Err(ModelError::Input("append needs at least one token".into()));
        }
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.config.vocab_size) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.config.vocab_size
            )));
        }
        let input = ModelInput::from_ids(ids);
        let hidden = self
            .model
            .hidden_states(&input, self.config, Some(&mut self.caches));
        let [_, s, h] = hidden.dims();
        let last = hidden.slice([0..1, s - 1..s, 0..h]);
        let logits = self.model.head(last);
        logits
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| ModelError::Input(format!("reading logits: {e:?}")))
    }

    fn reset(&mut self) {
        self.caches = (0..self.config.num_layers)
            .map(|_| LayerCache::default())
            .collect();
    }

    fn truncate(&mut self, len: usize) {
        if len == 0 {
            return self.reset();
        }
        for cache in &mut self.caches {
            cache.truncate(len);
        }
    }

    fn context_len(&self) -> usize {
        self.caches.first().map_or(0, |c| c.len())
    }

    fn max_context(&self) -> usize {
        match self.config.rope_scaling {
            // Dynamic NTK scaling exists to run past `max_position_embeddings` (transformers
            // sets no limit either).
            crate::rope::RopeScaling::Dynamic { .. } => usize::MAX,
            _ => self.config.max_position_embeddings,
        }
    }
}
