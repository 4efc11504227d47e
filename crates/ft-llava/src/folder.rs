//! Where a LLaVA's parts are. Two layouts:
//! - XTuner's converted layout (which ft's checkpoints use too): `projector/`, optionally
//!   `visual_encoder/` (a CLIP), `llm_adapter/` (PEFT), `visual_encoder_adapter/` (PEFT, a LoRA
//!   on CLIP);
//! - a Hugging Face `LlavaForConditionalGeneration` folder (`config.json` with `model_type`
//!   `llava`): CLIP, projector and language model in one set of tensors.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde_json::Value;

use crate::clip::load_clip;
use crate::clip_lora::attach_clip_adapter;
use crate::error::{LlavaError, Result};
use crate::image::ImageProcessor;
use crate::projector::{load_hf_llava_projector, load_projector};
use crate::vision::VisionSide;

/// Which layout a LLaVA folder has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlavaLayout {
    /// XTuner's: `projector/` and side folders.
    Xtuner,
    /// transformers': one `LlavaForConditionalGeneration` folder.
    HuggingFace {
        /// Its `vision_feature_layer`.
        select_layer: i64,
    },
}

/// Where a LLaVA's parts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlavaParts {
    /// The folder's layout.
    pub layout: LlavaLayout,
    /// `projector/` (the folder itself for a Hugging Face LLaVA).
    pub projector: PathBuf,
    /// The CLIP folder: `--visual-encoder`, else the LLaVA folder's `visual_encoder/` (the folder
    /// itself for a Hugging Face LLaVA).
    pub visual_encoder: PathBuf,
    /// `llm_adapter/`, when present.
    pub llm_adapter: Option<PathBuf>,
    /// `visual_encoder_adapter/` (a LoRA on CLIP), when present.
    pub visual_encoder_adapter: Option<PathBuf>,
}

impl LlavaParts {
    /// Finds the parts of the LLaVA folder `dir`; `visual_encoder` overrides its own CLIP.
    pub fn find(dir: &Path, visual_encoder: Option<&Path>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(LlavaError::config(
                dir,
                "a LLaVA folder (with `projector/`, or a Hugging Face LLaVA) was expected",
            ));
        }
        if let Some(select_layer) = hf_llava_select_layer(dir)? {
            return Ok(Self {
                layout: LlavaLayout::HuggingFace { select_layer },
                projector: dir.to_path_buf(),
                visual_encoder: visual_encoder.unwrap_or(dir).to_path_buf(),
                llm_adapter: None,
                visual_encoder_adapter: None,
            });
        }
        let projector = dir.join("projector");
        if !projector.is_dir() {
            return Err(LlavaError::config(
                dir,
                "no `projector/` in this LLaVA folder, and no Hugging Face LLaVA `config.json`",
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
        let visual_encoder_adapter = Some(dir.join("visual_encoder_adapter")).filter(|p| p.is_dir());
        Ok(Self {
            layout: LlavaLayout::Xtuner,
            projector,
            visual_encoder,
            llm_adapter,
            visual_encoder_adapter,
        })
    }

    /// Loads CLIP (with its adapter, XTuner's order: tower, adapter, projector) and the
    /// projector, checked against the LLM's hidden size; and the picture processor of the CLIP
    /// folder (CLIP ViT-L/14-336's when it has no `preprocessor_config.json`). A Hugging Face
    /// LLaVA's own `vision_feature_layer` replaces `select_layer`.
    pub fn load_vision<B: Backend>(
        &self,
        select_layer: i64,
        llm_hidden: usize,
        device: &B::Device,
    ) -> Result<(VisionSide<B>, ImageProcessor)> {
        let (mut clip, clip_config) = load_clip::<B>(&self.visual_encoder, device)?;
        if let Some(adapter) = &self.visual_encoder_adapter {
            attach_clip_adapter(&mut clip, adapter)?;
        }
        let (projector, projector_config, select_layer) = match self.layout {
            LlavaLayout::Xtuner => {
                let (projector, config) = load_projector::<B>(&self.projector, device)?;
                (projector, config, select_layer)
            }
            LlavaLayout::HuggingFace { select_layer } => {
                let (projector, config) = load_hf_llava_projector::<B>(&self.projector, device)?;
                (projector, config, select_layer)
            }
        };
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

/// A Hugging Face LLaVA folder's `vision_feature_layer` (−2 when absent); `None` when `dir` is
/// not one.
fn hf_llava_select_layer(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join("config.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| LlavaError::io(&path, e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| LlavaError::config(&path, e.to_string()))?;
    if !ft_model::config::is_llava(&json) {
        return Ok(None);
    }
    let strategy = json.get("vision_feature_select_strategy").and_then(Value::as_str);
    if strategy.is_some_and(|s| s != "default") {
        return Err(LlavaError::config(
            &path,
            "`vision_feature_select_strategy` must be `default` (the class token dropped)",
        ));
    }
    match json.get("vision_feature_layer") {
        None => Ok(Some(-2)),
        Some(layer) => layer.as_i64().map(Some).ok_or_else(|| {
            LlavaError::config(
                &path,
                "`vision_feature_layer` must be one layer (a list of layers is not supported)",
            )
        }),
    }
}
