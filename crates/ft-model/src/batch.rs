//! Decoding several sequences together: each step runs one forward over a token of every
//! sequence, so the weights are read once per step instead of once per sequence. Every sequence
//! keeps its own keys and values; the caches are left-padded to a common width, and the empty
//! slots are hidden from attention (so the real keys stay next to the new token, and sliding
//! windows count them as in a single sequence).

use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorData};
use ft_kernels::KernelBackend;

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::layers::LayerCache;
use crate::model::{CausalLm, ModelInput};
use crate::session::logits_rows;

/// Sequences decoded together.
pub struct BatchDecoder<'a, B: KernelBackend> {
    model: &'a CausalLm<B>,
    config: &'a ModelConfig,
    /// One per layer: `[rows, width, kv_heads, head_dim]`, left-padded.
    caches: Vec<LayerCache<B>>,
    /// Per row, `width` entries: 1 for a real key, 0 for an empty slot.
    slots: Vec<Vec<i32>>,
    /// Per row: its tokens so far (the next token's position).
    lengths: Vec<usize>,
}

impl<'a, B: KernelBackend> BatchDecoder<'a, B> {
    /// No sequence yet.
    pub fn new(model: &'a CausalLm<B>, config: &'a ModelConfig) -> Self {
        Self {
            model,
            config,
            caches: Vec::new(),
            slots: Vec::new(),
            lengths: Vec::new(),
        }
    }

    /// Sequences being decoded.
    pub fn rows(&self) -> usize {
        self.lengths.len()
    }

    /// Tokens of sequence `row` so far.
    pub fn len_of(&self, row: usize) -> usize {
        self.lengths[row]
    }

    fn width(&self) -> usize {
        self.slots.first().map_or(0, Vec::len)
    }

    /// Adds a sequence whose prompt is already in `caches` (one per layer, batch 1, as a
    /// [`crate::session::KvSession`] leaves them); it becomes the last row.
    pub fn push(&mut self, caches: Vec<LayerCache<B>>) -> Result<(), ModelError> {
        let len = caches.first().map_or(0, LayerCache::len);
        if len == 0 || caches.len() != self.config.num_layers {
            return Err(ModelError::Input(
                "a sequence joins a batch with its prompt cached in every layer".into(),
            ));
        }
        if self.rows() == 0 {
            self.caches = caches;
            self.slots.push(vec![1; len]);
            self.lengths.push(len);
            return Ok(());
        }
        let width = self.width();
        let (mut row, mut batch) = (caches, std::mem::take(&mut self.caches));
        if len < width {
            row = row.into_iter().map(|c| pad_left(c, width - len)).collect();
        } else if len > width {
            batch = batch.into_iter().map(|c| pad_left(c, len - width)).collect();
            for slots in &mut self.slots {
                slots.splice(0..0, std::iter::repeat_n(0, len - width));
            }
        }
        self.caches = batch
            .into_iter()
            .zip(row)
            .map(|(b, r)| LayerCache {
                k: Some(Tensor::cat(vec![expect(b.k), expect(r.k)], 0)),
                v: Some(Tensor::cat(vec![expect(b.v), expect(r.v)], 0)),
            })
            .collect();
        let new_width = width.max(len);
        let mut slots = vec![0; new_width - len];
        slots.extend(std::iter::repeat_n(1, len));
        self.slots.push(slots);
        self.lengths.push(len);
        Ok(())
    }

    /// Removes sequence `row`; returns its caches (batch 1, padding dropped), which a
    /// [`crate::session::KvSession`] can continue from.
    pub fn remove(&mut self, row: usize) -> Vec<LayerCache<B>> {
        let (width, len) = (self.width(), self.lengths[row]);
        let rows = self.rows();
        let device = self.model.embed.device();
        let others: Vec<i64> = (0..rows).filter(|&r| r != row).map(|r| r as i64).collect();
        let keep = Tensor::<B, 1, Int>::from_data(TensorData::new(others.clone(), [others.len()]), &device);
        let own = |t: &Tensor<B, 4>| {
            let [_, _, h, d] = t.dims();
            t.clone().slice([row..row + 1, width - len..width, 0..h, 0..d])
        };
        let mut removed = Vec::with_capacity(self.caches.len());
        for cache in &mut self.caches {
            let (k, v) = (expect(cache.k.take()), expect(cache.v.take()));
            removed.push(LayerCache {
                k: Some(own(&k)),
                v: Some(own(&v)),
            });
            if !others.is_empty() {
                cache.k = Some(k.select(0, keep.clone()));
                cache.v = Some(v.select(0, keep.clone()));
            }
        }
        self.slots.remove(row);
        self.lengths.remove(row);
        if self.rows() == 0 {
            self.caches.clear();
        } else {
            self.trim_empty_columns();
        }
        removed
    }

    /// Drops leading cache columns that no remaining row uses.
    fn trim_empty_columns(&mut self) {
        let width = self.width();
        let unused = self.lengths.iter().map(|&len| width - len).min().unwrap_or(0);
        if unused == 0 {
            return;
        }
        for cache in &mut self.caches {
            let cut = |t: Tensor<B, 4>| {
                let [r, _, h, d] = t.dims();
                t.slice([0..r, unused..width, 0..h, 0..d])
            };
            cache.k = cache.k.take().map(cut);
            cache.v = cache.v.take().map(cut);
        }
        for slots in &mut self.slots {
            slots.drain(0..unused);
        }
    }

    /// Feeds `ids[row]` to every row; returns each row's next-token logits `[vocab]`.
    pub fn step(&mut self, ids: &[u32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let rows = self.rows();
        if ids.len() != rows || rows == 0 {
            return Err(ModelError::Input(format!(
                "a batch step takes one token per row ({rows} rows, {} tokens)",
                ids.len()
            )));
        }
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.config.vocab_size) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.config.vocab_size
            )));
        }
        let input = ModelInput {
            batch: rows,
            seq: 1,
            input_ids: ids.iter().map(|&i| i as i32).collect(),
            attention_mask: None,
            position_ids: Some(self.lengths.iter().map(|&l| l as i32).collect()),
            segment_ids: None,
        };
        let padded = self.slots.iter().any(|s| s.contains(&0));
        let cache_mask = padded.then(|| Arc::new(self.slots.concat()));
        let hidden =
            self.model
                .hidden_states_over(&input, self.config, Some(&mut self.caches), cache_mask.as_ref());
        for slots in &mut self.slots {
            slots.push(1);
        }
        for len in &mut self.lengths {
            *len += 1;
        }
        logits_rows(self.model, hidden)
    }
}

fn expect<B: KernelBackend>(t: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
    t.expect("invariant: a batch row's caches hold keys and values")
}

/// `extra` empty slots before the cached keys and values.
fn pad_left<B: KernelBackend>(cache: LayerCache<B>, extra: usize) -> LayerCache<B> {
    let pad = |t: Tensor<B, 4>| {
        let [r, _, h, d] = t.dims();
        let zeros = Tensor::<B, 4>::zeros([r, extra, h, d], &t.device()).cast(t.dtype());
        Tensor::cat(vec![zeros, t], 1)
    };
    LayerCache {
        k: cache.k.map(pad),
        v: cache.v.map(pad),
    }
}
