//! Training a LLaVA (`[llava]`): the projector trains; the LLM trains its LoRA adapters (stage 2)
//! or nothing (stage 1); CLIP stays frozen and runs without an autodiff graph, unless
//! `[visual_lora]` gives it adapters, which train too. Each micro-batch's pictures are read,
//! processed and turned into rows that replace the samples' placeholders; the loss is the LLM's
//! over the spliced rows.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use ft_data::pack::PackedRow;
use ft_llava::clip_lora::{canonical_names, clip_adapter};
use ft_llava::{
    PictureReader, ProjectorConfig, SpliceSample, VisionSide, load_projector, save_projector, splice,
};
use ft_lora::linear::{LinearBase, LoraSpec};
use ft_lora::linears::{LoraParam, load_lora_values, lora_params};
use ft_lora::peft::{Adapter, AdapterDtype};
use ft_model::loss::LossSum;
use ft_model::{CausalLm, ModelConfig, TrainBackend};

use crate::error::{Result, TrainError};
use crate::params::Gradients;

/// What evaluation sees of a LLaVA run: the vision side without a graph, and where pictures
/// are.
pub struct EvalVision<'a, B: burn::tensor::backend::Backend> {
    /// CLIP (with any adapters) and the projector.
    pub vision: &'a VisionSide<B>,
    /// The run's pictures.
    pub reader: &'a PictureReader,
}

/// The vision side of a LLaVA run and the pictures of its rows.
pub struct LlavaTraining<B: AutodiffBackend> {
    /// CLIP (frozen) and the projector (trained).
    pub vision: VisionSide<B>,
    /// The projector's shape, written with it.
    pub projector_config: ProjectorConfig,
    /// Where pictures are (`[data] image_folder`) and how they are processed (padded to a
    /// square in XTuner's stage 2).
    pub picture_reader: PictureReader,
    /// The picture of each training row (LLaVA rows are single samples).
    pub pictures: Vec<Option<String>>,
    /// `[visual_lora]`: the shape of CLIP's adapters (attached to `vision.clip`).
    pub visual_lora: Option<LoraSpec>,
    /// The prefix of the CLIP folder's tensor names (the saved adapter names layers with it).
    pub clip_key_prefix: String,
    /// The CLIP folder (the saved adapter's base model).
    pub visual_encoder: PathBuf,
    /// `Some(double_quant)` when CLIP's linears are NF4 (`[llava] visual_quantization`).
    pub visual_nf4: Option<bool>,
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

    /// `[patches, llm_hidden]` rows of one picture; CLIP runs without a graph unless it has
    /// adapters.
    fn picture_rows(&self, picture: &str) -> Result<Tensor<B, 2>> {
        let device = self.vision.clip.class_embedding.device();
        let rows = match self.visual_lora {
            Some(_) => self
                .vision
                .image_rows(self.picture_reader.tensor(picture, &device)?),
            None => self
                .vision
                .image_rows_frozen_clip(self.picture_reader.tensor(picture, &device)?),
        };
        let [_, patches, hidden] = rows.dims();
        Ok(rows.reshape([patches, hidden]))
    }

    /// CLIP's trainable adapter tensors (none without `[visual_lora]`).
    fn clip_params(&self) -> Vec<LoraParam> {
        lora_params(&self.vision.clip)
    }

    /// The optimizer's names of the trained tensors: the projector's (XTuner's keys under
    /// `projector.`), then CLIP's adapters' (under `visual_encoder.`).
    pub fn param_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (k, layer) in self.vision.projector.layers.iter().enumerate() {
            names.push(format!("projector.model.{}.weight", 2 * k));
            if layer.bias.is_some() {
                names.push(format!("projector.model.{}.bias", 2 * k));
            }
        }
        names.extend(
            self.clip_params()
                .iter()
                .map(|p| format!("visual_encoder.{}", p.name())),
        );
        names
    }

    /// Each trained tensor as a matrix (biases `[1, n]`), in [`Self::param_names`] order.
    pub fn values(&self) -> Vec<Tensor<B, 2>> {
        let mut values = projector_values(&self.vision.projector);
        values.extend(self.clip_params().iter().map(|p| p.get(&self.vision.clip)));
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
        out.extend(
            self.clip_params()
                .iter()
                .map(|p| p.get(&self.vision.clip).grad(grads)),
        );
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
        for p in self.clip_params() {
            let value = values
                .next()
                .expect("invariant: one value per CLIP adapter tensor");
            p.set(&mut self.vision.clip, Tensor::from_inner(value.inner()));
        }
    }

    /// Writes the projector in XTuner's layout to `dir/projector`, and CLIP's adapters (PEFT)
    /// to `dir/visual_encoder_adapter`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_projector(
            &self.vision.projector.valid(),
            &self.projector_config,
            &dir.join("projector"),
        )?;
        if let Some(spec) = self.visual_lora {
            clip_adapter(
                &self.vision.clip,
                spec,
                &self.clip_key_prefix,
                &self.visual_encoder,
                self.visual_nf4,
            )
            .write(dir.join("visual_encoder_adapter"), AdapterDtype::F32)?;
        }
        Ok(())
    }

    /// Loads the projector a checkpoint holds (`dir/projector`) and CLIP's adapters
    /// (`dir/visual_encoder_adapter`).
    pub fn load(&mut self, dir: &Path, device: &B::Device) -> Result<()> {
        let (loaded, config) = load_projector::<B>(&dir.join("projector"), device)?;
        if config != self.projector_config {
            return Err(TrainError::Training(format!(
                "{}: the checkpoint's projector has another shape",
                dir.display()
            )));
        }
        let mut values = projector_values(&loaded);
        if self.visual_lora.is_some() {
            let adapter_dir = dir.join("visual_encoder_adapter");
            let adapter = Adapter::read(&adapter_dir)?;
            let weights = canonical_names(&adapter.weights).ok_or_else(|| {
                TrainError::Training(format!(
                    "{}: an adapted layer is not one of CLIP's",
                    adapter_dir.display()
                ))
            })?;
            let mut clip = self.vision.clip.clone();
            load_lora_values(&mut clip, &weights, device)
                .map_err(|e| TrainError::Training(format!("{}: {e}", adapter_dir.display())))?;
            values.extend(self.clip_params().iter().map(|p| p.get(&clip)));
        }
        self.set(values);
        Ok(())
    }
}

/// The projector's tensors as matrices (biases `[1, n]`), layer by layer.
fn projector_values<B: burn::tensor::backend::Backend>(
    projector: &ft_llava::Projector<B>,
) -> Vec<Tensor<B, 2>> {
    let mut values = Vec::new();
    for layer in &projector.layers {
        values.push(dense(&layer.base).val());
        if let Some(bias) = &layer.bias {
            values.push(bias.val().unsqueeze_dim(0));
        }
    }
    values
}

fn dense<B: burn::tensor::backend::Backend>(base: &LinearBase<B>) -> &Param<Tensor<B, 2>> {
    match base {
        LinearBase::Dense(p) => p,
        LinearBase::Nf4(_) => unreachable!("invariant: a projector is dense"),
    }
}
