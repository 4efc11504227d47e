//! LoRA on the CLIP tower (XTuner's `visual_encoder_lora`): its linear layers by name
//! (`encoder.layers.N.self_attn.{q,k,v,out}_proj`, `encoder.layers.N.mlp.fc{1,2}`; the patch
//! embedding is a convolution in transformers and never a target), fresh adapters, and
//! `visual_encoder_adapter/` in PEFT's layout with the layer names of the tower's own folder.

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use ft_lora::linear::{FtLinear, LoraSpec};
use ft_lora::linears::{Linears, LinearsMut, attach_adapter, attach_new_loras, lora_weights};
use ft_lora::peft::{
    Adapter, AdapterConfig, AdapterWeights, FtAdapterMeta, TargetModules, encoder_layer_name, resolve_targets,
};

use crate::clip::{ClipLayer, ClipVision};
use crate::error::{LlavaError, Result};

/// XTuner's CLIP LoRA targets.
pub const CLIP_LORA_TARGETS: [&str; 6] = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"];

const PARTS: [&str; 6] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.out_proj",
    "mlp.fc1",
    "mlp.fc2",
];

impl<B: Backend> Linears<B> for ClipVision<B> {
    fn linear_names(&self) -> Vec<String> {
        (0..self.layers.len())
            .flat_map(|i| PARTS.map(|part| format!("encoder.layers.{i}.{part}")))
            .collect()
    }

    fn linear(&self, name: &str) -> Option<&FtLinear<B>> {
        let (i, part) = split(name)?;
        let layer = self.layers.get(i)?;
        Some(match part {
            "self_attn.q_proj" => &layer.q_proj,
            "self_attn.k_proj" => &layer.k_proj,
            "self_attn.v_proj" => &layer.v_proj,
            "self_attn.out_proj" => &layer.out_proj,
            "mlp.fc1" => &layer.fc1,
            "mlp.fc2" => &layer.fc2,
            _ => return None,
        })
    }
}

impl<B: Backend> LinearsMut<B> for ClipVision<B> {
    fn linear_mut(&mut self, name: &str) -> Option<&mut FtLinear<B>> {
        let (i, part) = split(name)?;
        let layer: &mut ClipLayer<B> = self.layers.get_mut(i)?;
        Some(match part {
            "self_attn.q_proj" => &mut layer.q_proj,
            "self_attn.k_proj" => &mut layer.k_proj,
            "self_attn.v_proj" => &mut layer.v_proj,
            "self_attn.out_proj" => &mut layer.out_proj,
            "mlp.fc1" => &mut layer.fc1,
            "mlp.fc2" => &mut layer.fc2,
            _ => return None,
        })
    }
}

impl<B: Backend> ClipVision<B> {
    /// NF4 bases (QLoRA's 4 bits, as bitsandbytes' `Linear4bit` holds them) for the encoder's
    /// linear layers; the patch embedding (a convolution in transformers) stays dense.
    pub fn quantize_linears(&mut self, double_quant: bool) -> Result<()> {
        for name in self.linear_names() {
            self.linear_mut(&name)
                .expect("invariant: the names come from the tower")
                .quantize_base(double_quant)
                .map_err(|e| LlavaError::Input(format!("NF4 of CLIP's `{name}`: {e}")))?;
        }
        Ok(())
    }
}

/// `encoder.layers.{i}.{part}` → `(i, part)`.
fn split(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("encoder.layers.")?;
    let (index, part) = rest.split_once('.')?;
    Some((index.parse().ok()?, part))
}

/// Freezes the whole tower and attaches fresh adapters (PEFT init) to the layers `targets`
/// selects (`all-linear` = XTuner's six); returns their names.
pub fn attach_new_clip_lora<B: Backend>(
    clip: &mut ClipVision<B>,
    spec: LoraSpec,
    targets: &TargetModules,
    seed: u64,
) -> Result<Vec<String>> {
    let picked = resolve_targets(targets, &clip.linear_names(), "")
        .map_err(|e| LlavaError::Input(format!("[visual_lora] target_modules: {e}")))?;
    let device = clip.class_embedding.device();
    *clip = clip.clone().no_grad();
    attach_new_loras(clip, &picked, spec, seed, &device);
    Ok(picked)
}

/// Loads a CLIP adapter folder (`visual_encoder_adapter/`: PEFT, layer names with any prefix)
/// into a frozen tower, made NF4 first when the adapter was trained on an NF4 tower (its
/// `ft_adapter.json` says so); returns the adapted layers.
pub fn attach_clip_adapter<B: Backend>(clip: &mut ClipVision<B>, dir: &Path) -> Result<Vec<String>> {
    let mut adapter =
        Adapter::read(dir).map_err(|e| LlavaError::weights(dir, format!("CLIP adapter: {e}")))?;
    adapter.weights = canonical_names(&adapter.weights)
        .ok_or_else(|| LlavaError::weights(dir, "an adapted layer is not one of CLIP's encoder layers"))?;
    if let Some(meta) = &adapter.ft_meta
        && meta.quantization.as_deref() == Some("nf4")
    {
        clip.quantize_linears(meta.double_quant.unwrap_or(true))?;
    }
    let device = clip.class_embedding.device();
    *clip = clip.clone().no_grad();
    attach_adapter(clip, &adapter, &device).map_err(|e| LlavaError::weights(dir, e.to_string()))
}

/// The tower's adapters as a PEFT folder's contents: layer names with `key_prefix` (the tower
/// folder's own), `spec`'s r, alpha, dropout and rsLoRA, `base` as the base model's path, and in
/// `ft_adapter.json` whether the tower was NF4 (`nf4`: `Some(double_quant)`).
pub fn clip_adapter<B: Backend>(
    clip: &ClipVision<B>,
    spec: LoraSpec,
    key_prefix: &str,
    base: &Path,
    nf4: Option<bool>,
) -> Adapter {
    let weights = lora_weights(clip);
    let adapted: Vec<String> = weights.modules.keys().cloned().collect();
    let mut config = AdapterConfig::new(
        spec.r,
        spec.alpha,
        TargetModules::for_saving(&adapted, &clip.linear_names()),
    );
    config.lora_dropout = spec.dropout;
    config.use_rslora = spec.use_rslora;
    config.task_type = None;
    config.base_model_name_or_path = Some(base.display().to_string());
    let modules = weights
        .modules
        .into_iter()
        .map(|(name, pair)| (format!("{key_prefix}{name}"), pair))
        .collect();
    let mut meta = FtAdapterMeta::new(None, None);
    if let Some(double_quant) = nf4 {
        meta.quantization = Some("nf4".into());
        meta.double_quant = Some(double_quant);
    }
    Adapter {
        config,
        weights: AdapterWeights { modules },
        ft_meta: Some(meta),
    }
}

/// The weights with every layer named from `encoder.layers.` on; `None` when a name has no such
/// part.
pub fn canonical_names(weights: &AdapterWeights) -> Option<AdapterWeights> {
    let modules = weights
        .modules
        .iter()
        .map(|(name, pair)| Some((encoder_layer_name(name)?.to_owned(), pair.clone())))
        .collect::<Option<_>>()?;
    Some(AdapterWeights { modules })
}
