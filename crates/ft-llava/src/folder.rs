//! A LLaVA's folder in XTuner's converted layout (which ft's checkpoints use too): `projector/`,
//! optionally `visual_encoder/` (a CLIP), `llm_adapter/` (PEFT), `visual_encoder_adapter/`.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use crate::clip::load_clip;
use crate::error::{LlavaError, Result};
use crate::image::ImageProcessor;
use crate::projector::load_projector;
use crate::vision::VisionSide;

/// Where a LLaVA's parts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlavaParts {
    /// `projector/`.
    pub projector: PathBuf,
    /// The CLIP folder: `--visual-encoder`, else the LLaVA folder's `visual_encoder/`.
    pub visual_encoder: PathBuf,
    /// `llm_adapter/`, when present.
    pub llm_adapter: Option<PathBuf>,
}

impl LlavaParts {
    /// Finds the parts of the LLaVA folder `dir`; `visual_encoder` overrides its own CLIP.
    pub fn find(dir: &Path, visual_encoder: Option<&Path>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(LlavaError::config(
                dir,
                "a LLaVA folder (with `projector/`) was expected",
            ));
        }
        let projector = dir.join("projector");
        if !projector.is_dir() {
            return Err(LlavaError::config(dir, "no `projector/` in this LLaVA folder"));
        }
        if dir.join("visual_encoder_adapter").exists() {
            return Err(LlavaError::config(
                dir,
                "`visual_encoder_adapter/` (a LoRA on CLIP) cannot be applied by this ft yet",
            ));
        }
        let visual_encoder = match visual_encoder {
            Some(path) => path.to_path_buf(),
            None if dir.join("visual_encoder").is_dir() => dir.join("visual_encoder"),
            None => {
                return Err(LlavaError::config(
                    dir,
                    "no `visual_encoder/` here: name the CLIP folder with --visual-encoder",
                ));
            }
        };
        let llm_adapter = Some(dir.join("llm_adapter")).filter(|p| p.is_dir());
        Ok(Self {
            projector,
            visual_encoder,
            llm_adapter,
        })
    }

    /// Loads CLIP and the projector, checked against the LLM's hidden size; and the picture
    /// processor of the CLIP folder (CLIP ViT-L/14-336's when it has no
    /// `preprocessor_config.json`).
    pub fn load_vision<B: Backend>(
        &self,
        select_layer: i64,
        llm_hidden: usize,
        device: &B::Device,
    ) -> Result<(VisionSide<B>, ImageProcessor)> {
        let (clip, clip_config) = load_clip::<B>(&self.visual_encoder, device)?;
        let (projector, projector_config) = load_projector::<B>(&self.projector, device)?;
        let processor = if self.visual_encoder.join("preprocessor_config.json").exists() {
            ImageProcessor::from_dir(&self.visual_encoder)?
        } else {
            ImageProcessor::clip(clip_config.image_size as u32)
        };
        let vision = VisionSide::new(
            (clip, &clip_config),
            (projector, &projector_config),
            select_layer,
            llm_hidden,
        )?;
        Ok((vision, processor))
    }
}
