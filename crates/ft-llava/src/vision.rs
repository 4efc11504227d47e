//! The vision side of a LLaVA: CLIP features of `visual_select_layer` through the projector,
//! one `[patches, llm_hidden]` block of rows per picture.

use burn::module::AutodiffModule;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use ft_kernels::{KernelBackend, TrainBackend};

use crate::clip::{ClipVision, ClipVisionConfig};
use crate::error::{LlavaError, Result};
use crate::projector::{Projector, ProjectorConfig};

/// CLIP, the projector, and which hidden state feeds it.
#[derive(Module, Debug)]
pub struct VisionSide<B: Backend> {
    /// The vision tower.
    pub clip: ClipVision<B>,
    /// The projector.
    pub projector: Projector<B>,
    /// `hidden_states` index of the features.
    pub feature_index: usize,
}

impl<B: Backend> VisionSide<B> {
    /// Puts the parts together, checking that their sizes fit each other and the LLM.
    pub fn new(
        clip: (ClipVision<B>, &ClipVisionConfig),
        projector: (Projector<B>, &ProjectorConfig),
        select_layer: i64,
        llm_hidden: usize,
    ) -> Result<Self> {
        let ((clip, clip_config), (projector, projector_config)) = (clip, projector);
        if projector_config.visual_hidden_size != clip_config.hidden_size {
            return Err(LlavaError::Input(format!(
                "the projector takes {}-wide features but the CLIP tower gives {}",
                projector_config.visual_hidden_size, clip_config.hidden_size
            )));
        }
        if projector_config.llm_hidden_size != llm_hidden {
            return Err(LlavaError::Input(format!(
                "the projector gives {}-wide rows but the LLM's hidden size is {llm_hidden}",
                projector_config.llm_hidden_size
            )));
        }
        let feature_index = clip_config.hidden_state_index(select_layer).ok_or_else(|| {
            LlavaError::Input(format!(
                "visual_select_layer {select_layer} is outside the tower's {} layers",
                clip_config.num_hidden_layers
            ))
        })?;
        Ok(Self {
            clip,
            projector,
            feature_index,
        })
    }
}

impl<B: KernelBackend> VisionSide<B> {
    /// The LLM rows of each picture.
    ///
    /// # Shapes
    /// - pixels: `[pictures, channels, side, side]`
    /// - output: `[pictures, patches, llm_hidden]`
    pub fn image_rows(&self, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
        self.projector
            .forward(self.clip.features(pixels, self.feature_index))
    }
}

impl<B: TrainBackend> VisionSide<B> {
    /// [`VisionSide::image_rows`] for training with a frozen CLIP: the tower runs on the inner
    /// backend, without an autodiff graph; only the projector is differentiated.
    ///
    /// # Shapes
    /// - pixels: `[pictures, channels, side, side]`
    /// - output: `[pictures, patches, llm_hidden]`
    pub fn image_rows_frozen_clip(&self, pixels: Tensor<B::InnerBackend, 4>) -> Tensor<B, 3> {
        let features = self.clip.valid().features(pixels, self.feature_index);
        self.projector.forward(Tensor::from_inner(features))
    }
}
