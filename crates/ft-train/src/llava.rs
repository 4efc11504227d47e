//! Training a LLaVA (`[llava]`): CLIP stays frozen and runs without an autodiff graph, the
//! projector trains, and the LLM trains its LoRA adapters (stage 2) or nothing (stage 1). Each
//! micro-batch's pictures are read, processed and turned into rows that replace the samples'
//! placeholders; the loss is the LLM's over the spliced rows.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use ft_data::pack::PackedRow;
use ft_llava::{
    ImageProcessor, ProjectorConfig, SpliceSample, VisionSide, load_pixels, load_projector, save_projector,
    splice,
};
use ft_lora::linear::LinearBase;
use ft_model::loss::LossSum;
use ft_model::{CausalLm, ModelConfig, TrainBackend};

use crate::error::{Result, TrainError};
use crate::params::Gradients;

/// The vision side of a LLaVA run and the pictures of its rows.
pub struct LlavaTraining<B: AutodiffBackend> {
    /// CLIP (frozen) and the projector (trained).
    pub vision: VisionSide<B>,
    /// The projector's shape, written with it.
    pub projector_config: ProjectorConfig,
    /// How pictures are processed.
    pub processor: ImageProcessor,
    /// `[data] image_folder`.
    pub image_folder: Option<PathBuf>,
    /// Pad pictures to a square first (XTuner: stage 2).
    pub pad: bool,
    /// The picture of each training row (LLaVA rows are single samples).
    pub pictures: Vec<Option<String>>,
}

impl<B: TrainBackend> LlavaTraining<B> {
    /// Σ loss of the rows `indices` (their samples spliced with their pictures' rows).
    pub fn loss_sum(
        &self,
        llm: &CausalLm<B>,
        config: &ModelConfig,
        rows: &[PackedRow],
        indices: &[usize],
    ) -> Result<LossSum<B>> {
        let mut images = Vec::new();
        for &i in indices {
            if let Some(picture) = &self.pictures[i] {
                images.push(self.picture_rows(picture)?);
            }
        }
        let samples: Vec<SpliceSample> = rows
            .iter()
            .map(|row| SpliceSample {
                input_ids: row.input_ids.clone(),
                labels: row.labels.clone(),
            })
            .collect();
        let spliced = splice(llm, &samples, images)?;
        Ok(llm.loss_sum_of_embeddings(spliced.embeddings, &spliced.input, &spliced.labels, config))
    }

    /// `[patches, llm_hidden]` rows of one picture, CLIP without a graph.
    fn picture_rows(&self, picture: &str) -> Result<Tensor<B, 2>> {
        let folder = self.image_folder.as_ref().ok_or_else(|| {
            TrainError::Training(format!(
                "a sample has the picture `{picture}`; set `[data] image_folder`"
            ))
        })?;
        let (pixels, [c, h, w]) = load_pixels(&folder.join(picture), &self.processor, self.pad)?;
        let device = self.vision.projector.layers[0]
            .bias
            .as_ref()
            .map(|b| b.device())
            .unwrap_or_default();
        let inner = Tensor::from_data(TensorData::new(pixels, [1, c, h, w]), &device);
        let rows = self.vision.image_rows_frozen_clip(inner);
        let [_, patches, hidden] = rows.dims();
        Ok(rows.reshape([patches, hidden]))
    }

    /// The optimizer's names of the projector's tensors (XTuner's keys under `projector.`).
    pub fn param_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (k, layer) in self.vision.projector.layers.iter().enumerate() {
            names.push(format!("projector.model.{}.weight", 2 * k));
            if layer.bias.is_some() {
                names.push(format!("projector.model.{}.bias", 2 * k));
            }
        }
        names
    }

    /// Each projector tensor as a matrix (biases `[1, n]`), in [`Self::param_names`] order.
    pub fn values(&self) -> Vec<Tensor<B, 2>> {
        let mut values = Vec::new();
        for layer in &self.vision.projector.layers {
            values.push(dense(&layer.base).val());
            if let Some(bias) = &layer.bias {
                values.push(bias.val().unsqueeze_dim(0));
            }
        }
        values
    }

    /// Their gradients, in the same order.
    pub fn grads(&self, grads: &Gradients<B>) -> Vec<Option<Tensor<B::InnerBackend, 2>>> {
        let mut out = Vec::new();
        for layer in &self.vision.projector.layers {
            out.push(dense(&layer.base).grad(grads));
            if let Some(bias) = &layer.bias {
                out.push(bias.grad(grads).map(|g| g.unsqueeze_dim(0)));
            }
        }
        out
    }

    /// Replaces the projector's tensors (keeping their parameter ids), in the same order.
    pub fn set(&mut self, values: Vec<Tensor<B, 2>>) {
        let mut values = values.into_iter();
        for layer in &mut self.vision.projector.layers {
            let weight = values.next().expect("invariant: one value per projector tensor");
            // Fresh leaves from the values (never a graph node).
            if let LinearBase::Dense(slot) = &mut layer.base {
                *slot = Param::initialized(slot.id, Tensor::from_inner(weight.inner()).require_grad());
            }
            if let Some(slot) = &mut layer.bias {
                let bias = values.next().expect("invariant: one value per projector tensor");
                let bias = Tensor::from_inner(bias.inner().squeeze_dim(0));
                *slot = Param::initialized(slot.id, bias.require_grad());
            }
        }
    }

    /// Writes the projector in XTuner's layout to `dir/projector`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_projector(
            &self.vision.projector.valid(),
            &self.projector_config,
            &dir.join("projector"),
        )?;
        Ok(())
    }

    /// Loads the projector a checkpoint holds (`dir/projector`).
    pub fn load(&mut self, dir: &Path, device: &B::Device) -> Result<()> {
        let (loaded, config) = load_projector::<B>(&dir.join("projector"), device)?;
        if config != self.projector_config {
            return Err(TrainError::Training(format!(
                "{}: the checkpoint's projector has another shape",
                dir.display()
            )));
        }
        let mut values = Vec::new();
        for layer in &loaded.layers {
            values.push(dense(&layer.base).val());
            if let Some(bias) = &layer.bias {
                values.push(bias.val().unsqueeze_dim(0));
            }
        }
        self.set(values);
        Ok(())
    }
}

fn dense<B: burn::tensor::backend::Backend>(base: &LinearBase<B>) -> &Param<Tensor<B, 2>> {
    match base {
        LinearBase::Dense(p) => p,
        LinearBase::Nf4(_) => unreachable!("invariant: a projector is dense"),
    }
}
