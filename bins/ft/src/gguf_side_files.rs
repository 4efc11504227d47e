//! The files a Hugging Face folder holds beside its weights, for a model given as a folder (its
//! own) or as a GGUF file (made from the metadata: `config.json`, `tokenizer.json`,
//! `tokenizer_config.json` with the chat template, `generation_config.json`). Full fine-tuning
//! checkpoints, `ft convert hf` and `ft merge` of a GGUF base write them.

use std::path::Path;

use anyhow::Context;
use ft_data::tokenizer::FtTokenizer;
use ft_train::model_folder::BaseFiles;
use serde_json::json;

/// The side files of the model at `path` (whose tokenizer is `tokenizer`).
pub fn base_files(path: &Path, tokenizer: &FtTokenizer) -> anyhow::Result<BaseFiles> {
    if path.is_dir() {
        return Ok(BaseFiles::Folder(path.to_path_buf()));
    }
    let gguf = ft_gguf::GgufFile::open(path).with_context(|| format!("reading {}", path.display()))?;
    let config = match gguf.hf_config()? {
        serde_json::Value::Object(map) => map,
        _ => anyhow::bail!("{}: no model configuration in the metadata", path.display()),
    };
    let tokenizer_json = tokenizer
        .inner()
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("serialising the tokenizer of {}: {e}", path.display()))?;
    let special = tokenizer.special();
    let mut tokenizer_config = json!({
        "add_bos_token": special.add_bos_token,
        "bos_token": special.bos.as_ref().map(|t| t.content.clone()),
        "eos_token": special.eos.as_ref().map(|t| t.content.clone()),
        "pad_token": special.pad.as_ref().map(|t| t.content.clone()),
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let Some(template) = tokenizer.chat_template() {
        tokenizer_config["chat_template"] = json!(template);
    }
    let generation_config = json!({
        "bos_token_id": special.bos.as_ref().map(|t| t.id),
        "eos_token_id": special.eos.as_ref().map(|t| t.id),
        "pad_token_id": special.pad.as_ref().map(|t| t.id),
    });
    Ok(BaseFiles::Generated {
        config,
        files: vec![
            ("tokenizer.json".into(), tokenizer_json.into_bytes()),
            (
                "tokenizer_config.json".into(),
                serde_json::to_vec_pretty(&tokenizer_config)?,
            ),
            (
                "generation_config.json".into(),
                serde_json::to_vec_pretty(&generation_config)?,
            ),
        ],
    })
}
