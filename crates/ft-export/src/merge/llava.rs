//! A LLaVA as one Hugging Face `LlavaForConditionalGeneration` folder: the LLM with its
//! `llm_adapter/` folded in (`language_model.*`), the CLIP vision tower with its
//! `visual_encoder_adapter/` folded in (`vision_tower.*`), the
//! projector (`multi_modal_projector.linear_{1,2}.*`), an `<image>` token added to the tokenizer
//! (the embeddings grow by one row, the mean of the others, as transformers'
//! `resize_token_embeddings` does), `preprocessor_config.json` and `processor_config.json`.

use std::path::Path;

use ft_io::hf_folder::HfFolder;
use ft_io::json::read_json_object;
use ft_io::peft::{Adapter, encoder_layer_name};
use serde_json::{Map, Value, json};

use super::side_files::{copy_tokenizer_files, write_generation_config};
use super::{
    BaseQuantization, MergeOptions, MergePlan, Payload, check_adapter_against_base, is_clip_nf4_quantised,
    is_nf4_quantised, output_dtype,
};
use crate::error::io_err;
use crate::{Dtype, ExportError, ExportSummary, Result, ShardedWriter};

/// The placeholder token a LLaVA folder's processor expands.
const IMAGE_TOKEN: &str = "<image>";
/// CLIP tensors LLaVA does not use.
const CLIP_SKIPPED: [&str; 5] = [
    "text_model.",
    "visual_projection",
    "text_projection",
    "logit_scale",
    "position_ids",
];

/// What [`merge_llava`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaMergeSummary {
    /// The weight files written.
    pub export: ExportSummary,
    /// Tensors the adapters changed (the LLM's, then CLIP's).
    pub merged_tensors: Vec<String>,
    /// The `<image>` token's id.
    pub image_token_id: u32,
}

/// Writes `out_dir` from the LLM folder `llm_dir`, the LLaVA folder `llava_dir` (XTuner's layout:
/// `projector/`, optionally `llm_adapter/`) and the CLIP folder `clip_dir`.
pub fn merge_llava(
    llm_dir: &Path,
    llava_dir: &Path,
    clip_dir: &Path,
    out_dir: &Path,
    select_layer: i64,
    options: &MergeOptions,
) -> Result<LlavaMergeSummary> {
    let llm = HfFolder::open(llm_dir)?;
    let clip = HfFolder::open(clip_dir)?;
    let projector = HfFolder::open(&llava_dir.join("projector"))?;
    let adapter_dir = llava_dir.join("llm_adapter");
    let adapter = adapter_dir
        .is_dir()
        .then(|| {
            Adapter::read(&adapter_dir).map_err(|source| ExportError::Adapter {
                dir: adapter_dir.clone(),
                source,
            })
        })
        .transpose()?;
    if let Some(adapter) = &adapter {
        check_adapter_against_base(adapter, &llm)?;
    }
    // Typed for the reads, kept whole to be copied into the LLaVA's `text_config`.
    let text_config = llm
        .config
        .clone()
        .ok_or_else(|| invalid(llm_dir, "config.json is missing"))?;
    let typed = llm
        .hf_config()?
        .expect("invariant: config.json is present (checked above)");
    let (vocab, tied) = (typed.vocab_size, typed.tie_word_embeddings);
    let output_dtype = output_dtype(options, &llm)?;
    let mut writer = ShardedWriter::with_overwrite(out_dir, options.max_shard_bytes, options.overwrite)?;

    let plan = MergePlan {
        adapter: adapter.as_ref(),
        nf4_base: options
            .base_quantization
            .resolve(adapter.as_ref().map(|_| adapter_dir.as_path()))?,
        quantised: is_nf4_quantised,
        output_dtype,
        scale: adapter.as_ref().map_or(0.0, |a| a.scale() as f32),
    };
    let mut wrote_head = false;
    let merged_tensors = plan.for_each_tensor(&llm, |entry, dtype, payload| {
        let grows = entry.name == "model.embed_tokens.weight" || entry.name == "lm_head.weight";
        let name = match entry.name.strip_prefix("model.") {
            Some(rest) => format!("language_model.model.{rest}"),
            None => format!("language_model.{}", entry.name),
        };
        if !grows {
            return match payload {
                Payload::Raw(bytes) => Ok(writer.add(&name, dtype, &entry.shape, &bytes)?),
                Payload::Values(values) => Ok(writer.add_f32(&name, &entry.shape, &values, dtype)?),
            };
        }
        let values = match payload {
            Payload::Values(values) => values,
            Payload::Raw(bytes) => {
                ft_io::dtype::decode_to_f32(&bytes, entry.dtype).ok_or_else(|| ExportError::NotFloat {
                    name: entry.name.clone(),
                    dtype: entry.dtype,
                })?
            }
        };
        let (grown, shape) = with_mean_row(&values, &entry.shape);
        writer.add_f32(&name, &shape, &grown, dtype)?;
        if entry.name == "lm_head.weight" {
            wrote_head = true;
        } else if tied {
            writer.add_f32("language_model.lm_head.weight", &shape, &grown, dtype)?;
            wrote_head = true;
        }
        Ok(())
    })?;
    if !wrote_head {
        return Err(invalid(
            llm_dir,
            "no `lm_head.weight` and the embeddings are not tied",
        ));
    }
    let clip_adapter = clip_adapter(llava_dir, &clip)?;
    let mut merged_tensors = merged_tensors;
    merged_tensors.extend(copy_vision_tower(
        &clip,
        llava_dir,
        clip_adapter.as_ref(),
        &mut writer,
    )?);
    copy_projector(&projector, llava_dir, &mut writer)?;

    let staging = writer.staging_dir().to_path_buf();
    write_generation_config(llm_dir, Some(&text_config), &options.extra_eos_ids, &staging)?;
    copy_tokenizer_files(llm_dir, &staging)?;
    let image_token_id = add_image_token(&staging, vocab as u32)?;
    let vision_config = vision_config(clip_dir)?;
    let (patches, patch_size) =
        patches_of(&vision_config).ok_or_else(|| invalid(clip_dir, "`image_size` / `patch_size` missing"))?;
    write_config(
        &staging,
        text_config,
        vision_config,
        output_dtype,
        image_token_id,
        select_layer,
        patches,
        tied,
    )?;
    copy_processor_files(clip_dir, &staging, patch_size)?;
    let export = writer.finish()?;
    Ok(LlavaMergeSummary {
        export,
        merged_tensors,
        image_token_id,
    })
}

fn invalid(path: &Path, message: &str) -> ExportError {
    ExportError::Invalid {
        path: path.to_path_buf(),
        message: message.to_owned(),
    }
}

/// The rows of a `[rows, hidden]` matrix plus one: their mean.
fn with_mean_row(values: &[f32], shape: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let (rows, hidden) = (shape[0], shape[1]);
    let mut mean = vec![0f64; hidden];
    for row in values.chunks(hidden) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v);
        }
    }
    let mut grown = values.to_vec();
    grown.extend(mean.iter().map(|m| (m / rows as f64) as f32));
    (grown, vec![rows + 1, hidden])
}

/// The LLaVA folder's `visual_encoder_adapter/`, its layers named as the CLIP folder's tensors
/// (adapters name them with whatever prefix their tower had), checked against them.
fn clip_adapter(llava_dir: &Path, clip: &HfFolder) -> Result<Option<Adapter>> {
    let dir = llava_dir.join("visual_encoder_adapter");
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut adapter = Adapter::read(&dir).map_err(|source| ExportError::Adapter {
        dir: dir.clone(),
        source,
    })?;
    let vision_weights: Vec<&str> = clip
        .files
        .iter()
        .flat_map(|f| &f.header.entries)
        .filter(|e| !e.name.starts_with("text_model."))
        .filter_map(|e| e.name.strip_suffix(".weight"))
        .collect();
    let mut modules = std::collections::BTreeMap::new();
    for (name, pair) in std::mem::take(&mut adapter.weights.modules) {
        let layer = encoder_layer_name(&name);
        let module = vision_weights
            .iter()
            .find(|m| layer.is_some() && encoder_layer_name(m) == layer)
            .ok_or_else(|| invalid(&dir, &format!("`{name}` is not a layer of the CLIP tower")))?;
        modules.insert((*module).to_owned(), pair);
    }
    adapter.weights.modules = modules;
    check_adapter_against_base(&adapter, clip)?;
    Ok(Some(adapter))
}

/// The vision tower's tensors under `vision_tower.` (CLIP's text side dropped), with its adapter
/// folded in; returns the tensors it changed.
fn copy_vision_tower(
    clip: &HfFolder,
    llava_dir: &Path,
    adapter: Option<&Adapter>,
    writer: &mut ShardedWriter,
) -> Result<Vec<String>> {
    // A tower trained NF4 is merged on its NF4 round trip, as the LLM of a QLoRA adapter.
    let nf4_base = match adapter {
        Some(_) => BaseQuantization::FromAdapter.resolve(Some(&llava_dir.join("visual_encoder_adapter")))?,
        None => None,
    };
    let plan = MergePlan {
        adapter,
        nf4_base,
        quantised: is_clip_nf4_quantised,
        output_dtype: None,
        scale: adapter.map_or(0.0, |a| a.scale() as f32),
    };
    plan.for_each_tensor(clip, |entry, dtype, payload| {
        let name = entry.name.strip_prefix("vision_model.").unwrap_or(&entry.name);

        if CLIP_SKIPPED
            .iter()
            .any(|s| name.starts_with(s) || name.ends_with(s))
        {
            return Ok(());
        }
        let name = format!("vision_tower.{name}");
        match payload {
            Payload::Raw(bytes) => Ok(writer.add(&name, dtype, &entry.shape, &bytes)?),
            Payload::Values(values) => Ok(writer.add_f32(&name, &entry.shape, &values, dtype)?),
        }
    })
}

/// XTuner's `model.0.*` / `model.2.*` as `multi_modal_projector.linear_1.*` / `linear_2.*`.
fn copy_projector(projector: &HfFolder, llava_dir: &Path, writer: &mut ShardedWriter) -> Result<()> {
    let depth = projector
        .config
        .as_ref()
        .and_then(|c| c.get("depth"))
        .and_then(Value::as_u64)
        .unwrap_or(2);
    if depth != 2 {
        return Err(invalid(
            &llava_dir.join("projector"),
            "transformers' LLaVA has a 2-layer projector; this one has another depth",
        ));
    }
    for file in &projector.files {
        let mut handle = std::fs::File::open(&file.path).map_err(io_err("opening", &file.path))?;
        for entry in &file.header.entries {
            let name = match entry.name.as_str() {
                n if n.starts_with("model.0.") => {
                    n.replacen("model.0.", "multi_modal_projector.linear_1.", 1)
                }
                n if n.starts_with("model.2.") => {
                    n.replacen("model.2.", "multi_modal_projector.linear_2.", 1)
                }
                other => {
                    return Err(invalid(
                        &llava_dir.join("projector"),
                        &format!("unexpected tensor `{other}`"),
                    ));
                }
            };
            let bytes = file.read_tensor(&mut handle, entry)?;
            writer.add(&name, entry.dtype, &entry.shape, &bytes)?;
        }
    }
    Ok(())
}

/// Adds `<image>` (id `id`) to `tokenizer.json` and `tokenizer_config.json`; returns its id
/// (the existing one when the tokenizer already has it).
fn add_image_token(dir: &Path, id: u32) -> Result<u32> {
    let path = dir.join("tokenizer.json");
    let mut tokenizer = read_json_object(&path)?;
    let added = tokenizer
        .entry("added_tokens")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| invalid(&path, "`added_tokens` is not a list"))?;
    if let Some(existing) = added.iter().find(|t| t["content"] == IMAGE_TOKEN) {
        return existing["id"]
            .as_u64()
            .map(|i| i as u32)
            .ok_or_else(|| invalid(&path, "`<image>` has no id"));
    }
    let token = json!({"id": id, "content": IMAGE_TOKEN, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true});
    added.push(token.clone());
    write_json(&path, &tokenizer)?;
    let config_path = dir.join("tokenizer_config.json");
    if config_path.exists() {
        let mut config = read_json_object(&config_path)?;
        let mut entry = token;
        entry
            .as_object_mut()
            .expect("invariant: built as an object")
            .remove("id");
        if let Some(decoder) = config
            .get_mut("added_tokens_decoder")
            .and_then(Value::as_object_mut)
        {
            decoder.insert(id.to_string(), entry);
        }
        config.insert("image_token".into(), Value::from(IMAGE_TOKEN));
        write_json(&config_path, &config)?;
    }
    Ok(id)
}

/// The CLIP's vision config (`vision_config` of a `CLIPModel`, or a `CLIPVisionModel`'s own).
fn vision_config(clip_dir: &Path) -> Result<Map<String, Value>> {
    let config = read_json_object(&clip_dir.join("config.json"))?;
    let mut vision = match config.get("vision_config").and_then(Value::as_object) {
        Some(v) => v.clone(),
        None => config,
    };
    vision.insert("model_type".into(), Value::from("clip_vision_model"));
    vision.remove("architectures");
    Ok(vision)
}

/// Patches per picture and the patch side.
fn patches_of(vision: &Map<String, Value>) -> Option<(usize, usize)> {
    let image = vision.get("image_size")?.as_u64()?;
    let patch = vision.get("patch_size")?.as_u64()?;
    Some((((image / patch) * (image / patch)) as usize, patch as usize))
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    mut text: Map<String, Value>,
    vision: Map<String, Value>,
    dtype: Option<Dtype>,
    image_token_id: u32,
    select_layer: i64,
    patches: usize,
    tied: bool,
) -> Result<()> {
    if let Some(vocab) = text.get("vocab_size").and_then(Value::as_u64)
        && u64::from(image_token_id) >= vocab
    {
        text.insert("vocab_size".into(), Value::from(vocab + 1));
    }
    let mut config = json!({
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "text_config": text,
        "vision_config": vision,
        "image_token_index": image_token_id,
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": true,
        "vision_feature_layer": select_layer,
        "vision_feature_select_strategy": "default",
        "image_seq_length": patches,
        "tie_word_embeddings": tied,
    });
    if let Some(name) = dtype.and_then(ft_io::dtype::torch_dtype_name) {
        config["dtype"] = Value::from(name);
    }
    write_json(
        &dir.join("config.json"),
        config.as_object().expect("invariant: built as an object"),
    )
}

/// CLIP's `preprocessor_config.json`, and `processor_config.json` for `LlavaProcessor`.
fn copy_processor_files(clip_dir: &Path, dir: &Path, patch_size: usize) -> Result<()> {
    let source = clip_dir.join("preprocessor_config.json");
    if source.exists() {
        let mut config = read_json_object(&source)?;
        config.insert("processor_class".into(), Value::from("LlavaProcessor"));
        write_json(&dir.join("preprocessor_config.json"), &config)?;
    }
    let processor = json!({
        "processor_class": "LlavaProcessor",
        "image_token": IMAGE_TOKEN,
        "num_additional_image_tokens": 1,
        "vision_feature_select_strategy": "default",
        "patch_size": patch_size,
    });
    write_json(
        &dir.join("processor_config.json"),
        processor.as_object().expect("invariant: built as an object"),
    )
}

fn write_json(path: &Path, value: &Map<String, Value>) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("invariant: JSON map serialises");
    text.push('\n');
    std::fs::write(path, text).map_err(io_err("writing", path))
}
