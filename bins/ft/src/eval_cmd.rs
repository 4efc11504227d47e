//! `ft eval`: mean loss over supervised tokens and perplexity of a dataset, encoded exactly as
//! for training (no packing); optionally the logits of every sample.

use ft_model::KernelBackend;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ft_data::config::DataConfig;
use ft_data::dataset::prepare;
use ft_model::ModelInput;

use crate::backend::{BackendTask, DType, DeviceKind, dispatch};
use crate::model_load::ModelArgs;

/// Arguments of `ft eval`.
#[derive(Args, Clone)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Dataset file (any format `ft` reads).
    #[arg(long)]
    pub data: PathBuf,
    /// Dataset format; detected when absent.
    #[arg(long)]
    pub format: Option<String>,
    /// System text for samples without one.
    #[arg(long)]
    pub system: Option<String>,
    /// Samples are cut to this many tokens.
    #[arg(long, default_value_t = 2048)]
    pub max_length: usize,
    /// Print `{"loss": .., "perplexity": .., "tokens": ..}`.
    #[arg(long)]
    pub json: bool,
    /// Write each sample's logits `[seq, vocab]` (f32) as tensor `sample.N` to this safetensors file.
    #[arg(long)]
    pub dump_logits: Option<PathBuf>,
    /// A LLaVA folder (XTuner's layout: `projector/`, optionally `llm_adapter/`,
    /// `visual_encoder/`, `visual_encoder_adapter/`; or a Hugging Face LLaVA folder, then MODEL
    /// is that folder): evaluate MODEL as its language model, pictures included.
    #[arg(long)]
    pub llava: Option<PathBuf>,
    /// The LLaVA's CLIP (default: the LLaVA folder's `visual_encoder/`).
    #[arg(long, requires = "llava")]
    pub visual_encoder: Option<PathBuf>,
    /// Folder the dataset's `image` paths are relative to.
    #[arg(long, requires = "llava")]
    pub image_folder: Option<PathBuf>,
    /// The CLIP hidden state the projector takes.
    #[arg(long, default_value_t = -2, allow_hyphen_values = true)]
    pub visual_select_layer: i64,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    pub device: DeviceKind,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t = DType::F32)]
    pub dtype: DType,
}

impl BackendTask for EvalArgs {
    type Output = ();

    fn run<B: KernelBackend>(self, device: B::Device, label: &str) -> anyhow::Result<()> {
        let llava = match &self.llava {
            Some(dir) => Some(ft_llava::LlavaParts::find(dir, self.visual_encoder.as_deref())?),
            None => None,
        };
        let mut model_args = self.model.clone();
        if let Some(adapter) = llava.as_ref().and_then(|p| p.llm_adapter.clone()) {
            anyhow::ensure!(
                model_args.adapter.is_none(),
                "--adapter and the LLaVA folder's llm_adapter/ both name an adapter"
            );
            model_args.adapter = Some(adapter);
        }
        let (loaded, template) = model_args.load::<B>(&device)?;
        let vision = match &llava {
            Some(parts) => {
                Some(parts.load_vision::<B>(self.visual_select_layer, loaded.config.hidden_size, &device)?)
            }
            None => None,
        };
        let mut data = DataConfig::new(vec![self.data.clone()]);
        data.format = self.format.clone();
        data.system = self.system.clone();
        data.max_length = self.max_length;
        data.pack = false;
        let base = std::env::current_dir()?;
        data.validate(&base)?;
        let prepared = prepare(&data, &loaded.tokenizer, &template)?;
        tracing::info!("{} samples on {label}", prepared.samples.len());
        let (mut sum, mut count) = (0f64, 0usize);
        let mut dumped: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (i, sample) in prepared.samples.iter().enumerate() {
            let (hidden, loss) = match (&sample.image, &vision) {
                (Some(image), Some(vision)) => self.picture_sample(&loaded, vision, sample, image)?,
                (Some(_), None) => anyhow::bail!(
                    "sample {i} ({}) has a picture; evaluate it with --llava",
                    sample.origin
                ),
                (None, _) => {
                    let ids: Vec<u32> = sample.encoded.input_ids.iter().map(|&i| i as u32).collect();
                    let input = ModelInput::from_ids(&ids);
                    let loss = loaded
                        .model
                        .loss_sum(&input, &sample.encoded.labels, &loaded.config);
                    (
                        self.dump_logits
                            .is_some()
                            .then(|| loaded.model.hidden_states(&input, &loaded.config, None)),
                        loss,
                    )
                }
            };
            sum += loss.sum.into_scalar().elem::<f64>();
            count += loss.count;
            if let Some(hidden) = hidden {
                let logits = loaded.model.head(hidden);
                let [_, seq, vocab] = logits.dims();
                let values = logits
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                dumped.push((format!("sample.{i}"), vec![seq, vocab], bytes));
            }
        }
        if count == 0 {
            anyhow::bail!("{}: no supervised tokens to evaluate", self.data.display());
        }
        let loss = sum / count as f64;
        let perplexity = loss.exp();
        if self.json {
            println!(
                "{}",
                serde_json::json!({"loss": loss, "perplexity": perplexity, "tokens": count})
            );
        } else {
            println!(
                "loss {loss:.6}  perplexity {perplexity:.4}  tokens {count}  samples {}",
                prepared.samples.len()
            );
        }
        if let Some(path) = &self.dump_logits {
            write_logits(path, &dumped)?;
        }
        Ok(())
    }
}

type Hidden<B> = Option<burn::tensor::Tensor<B, 3>>;

impl EvalArgs {
    /// A LLaVA sample: its picture (padded to a square, as XTuner's chat and stage 2 do) through
    /// CLIP and the projector, spliced at the placeholder; the hidden states when logits are
    /// dumped, and the loss.
    fn picture_sample<B: KernelBackend>(
        &self,
        loaded: &crate::model_load::LoadedModel<B>,
        (vision, processor): &(ft_llava::VisionSide<B>, ft_llava::ImageProcessor),
        sample: &ft_data::dataset::Sample,
        image: &str,
    ) -> anyhow::Result<(Hidden<B>, ft_model::loss::LossSum<B>)> {
        let folder = self.image_folder.as_ref().with_context(|| {
            format!(
                "{} has a picture; name its folder with --image-folder",
                sample.origin
            )
        })?;
        let reader = ft_llava::PictureReader {
            processor: processor.clone(),
            folder: Some(folder.clone()),
            pad: true,
        };
        let context = || format!("the picture of {}", sample.origin);
        let pixels = reader
            .tensor(image, &loaded.model.embed.device())
            .with_context(context)?;
        let spliced = vision
            .spliced_sample(
                &loaded.model,
                pixels,
                ft_llava::SpliceSample {
                    input_ids: sample.encoded.input_ids.clone(),
                    labels: sample.encoded.labels.clone(),
                },
            )
            .with_context(context)?;
        let config = &loaded.config;
        let states = self.dump_logits.is_some().then(|| {
            loaded
                .model
                .hidden_states_of_embeddings(spliced.embeddings.clone(), &spliced.input, config)
        });
        let loss =
            loaded
                .model
                .loss_sum_of_embeddings(spliced.embeddings, &spliced.input, &spliced.labels, config);
        Ok((states, loss))
    }
}

fn write_logits(path: &Path, tensors: &[(String, Vec<usize>, Vec<u8>)]) -> anyhow::Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<_, _>>()?;
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let bytes = safetensors::serialize(views, Some(metadata))?;
    ft_io::write_file_atomically(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs `ft eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    dispatch(args.device, args.dtype, args)
}

use burn::tensor::ElementConversion;
