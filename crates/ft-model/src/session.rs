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

    /// A session continuing from `caches` (one per layer, batch 1), e.g. a sequence taken out
    /// of a [`crate::batch::BatchDecoder`].
    pub fn from_caches(model: &'a CausalLm<B>, config: &'a ModelConfig, caches: Vec<LayerCache<B>>) -> Self {
        assert_eq!(caches.len(), config.num_layers, "one cache per layer");
        Self {
            model,
            config,
            caches,
        }
    }

    /// Appends rows given as input embeddings (a LLaVA's spliced text and image rows) and
    /// returns the next-token logits `[vocab]`; positions continue from the context.
    ///
    /// # Shapes
    /// - embeddings: `[rows, hidden]`
    pub fn append_embeddings(
        &mut self,
        embeddings: burn::tensor::Tensor<B, 2>,
    ) -> Result<Vec<f32>, ModelError> {
        let [rows, hidden] = embeddings.dims();
        if rows == 0 || hidden != self.config.hidden_size {
            return Err(ModelError::Input(format!(
                "append_embeddings takes [rows ≥ 1, {}] rows, got [{rows}, {hidden}]",
                self.config.hidden_size
            )));
        }
        let past = self.caches.first().map_or(0, LayerCache::len);
        let input = ModelInput {
            batch: 1,
            seq: rows,
            input_ids: vec![0; rows],
            attention_mask: None,
            position_ids: Some((past..past + rows).map(|p| p as i32).collect()),
            segment_ids: None,
        };
        let hidden = self.model.hidden_states_of_embeddings_cached(
            embeddings.unsqueeze_dim::<3>(0),
            &input,
            self.config,
            &mut self.caches,
        );
        let mut rows = logits_rows(self.model, hidden)?;
        Ok(rows.swap_remove(0))
    }

    /// The per-layer caches (batch 1), e.g. to join a [`crate::batch::BatchDecoder`].
    pub fn into_caches(self) -> Vec<LayerCache<B>> {
        self.caches
    }
}

/// The next-token logits of each row: the last position's hidden state through the head.
///
/// # Shapes
/// - hidden: `[rows, seq, hidden]`
/// - output: `rows` vectors of `[vocab]`
pub(crate) fn logits_rows<B: KernelBackend>(
    model: &CausalLm<B>,
    hidden: burn::tensor::Tensor<B, 3>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let [rows, s, h] = hidden.dims();
    let last = hidden.slice([0..rows, s - 1..s, 0..h]);
    let logits = model.head(last);
    let vocab = logits.dims()[2];
    let flat = logits
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ModelError::Input(format!("reading logits: {e:?}")))?;
    Ok(flat.chunks(vocab).map(<[f32]>::to_vec).collect())
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
        let mut rows = logits_rows(self.model, hidden)?;
        Ok(rows.swap_remove(0))
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
