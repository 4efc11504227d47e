//! # ft-io
//!
//! The files and folders `ft` writes, written so that a crash never leaves one half-written:
//! - a file goes to a temporary name in the same folder, is fsynced, and is renamed over the target
//!   ([`write_file_atomically`]);
//! - a folder (a checkpoint, an exported model) is filled under a hidden staging name, every file
//!   in it is fsynced, an existing folder of the same name is moved aside, the staging folder is
//!   renamed into place, and only then is the old one removed ([`StagingDir`]).
//!
//! Either way the parent folder is fsynced too, so the rename itself survives a power cut.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("loss.svg");
//! ft_io::write_file_atomically(&path, b"<svg/>").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"<svg/>");
//!
//! let out = dir.path().join("checkpoint-1");
//! let staging = ft_io::StagingDir::new(&out, ft_io::Overwrite::Replace).unwrap();
//! std::fs::write(staging.path().join("trainer_state.json"), "{}").unwrap();
//! staging.commit().unwrap();
//! assert!(out.join("trainer_state.json").is_file());
//! ```
//!
//! It also holds the file formats every other crate shares, in plain Rust:
//! - safetensors files ([`safetensors`]: checked headers, whole-file writes), a streaming writer of
//!   sharded checkpoints laid out like transformers' `save_pretrained` ([`ShardedWriter`], shard
//!   sizes parsed like transformers by [`parse_size`]), and model folders opened tensor by tensor
//!   ([`hf_folder::HfFolder`]);
//! - safetensors dtypes and the f32 ↔ bf16/f16 casts that match torch bit for bit ([`dtype`]);
//! - a decoder LLM's `config.json`, typed once ([`hf_config::HfConfig`]) for the model, the GGUF
//!   exporter and the merge;
//! - JSON side files ([`json::read_json_object`]);
//! - the one reading of `config.json`'s RoPE scaling ([`rope::RopeScaling`]) that the model, the
//!   GGUF exporter and the GGUF importer share;
//! - the NF4 4-bit codec of bitsandbytes ([`nf4`]), which `ft-lora` wraps in a Burn module;
//! - PEFT LoRA adapter folders ([`peft`]): `adapter_config.json`, `adapter_model.safetensors`.
//!
//! Errors: file operations and the formats above fail with [`IoError`]; the NF4 codec and the
//! PEFT format keep their own `thiserror` enums with what they check ([`nf4::Nf4Error`],
//! [`peft::PeftError`]).
//!
//! This crate has no Burn dependency, and depends on no other `ft` crate.

pub mod atomic;
pub mod dtype;
pub mod error;
pub mod hf_config;
pub mod hf_folder;
pub mod json;
pub mod nf4;
pub mod peft;
pub mod rope;
pub mod safetensors;
pub mod sharded;
pub mod size;
pub mod staging;

pub use atomic::{sync_parent, temporary_sibling, write_file_atomically};
pub use dtype::{
    BF16_CANONICAL_NAN, Dtype, cast_f32_into, decode_to_f32, dtype_from_torch_name, extend_decoded_f32,
    f32_to_bf16_bits, f32_to_f16_bits, torch_dtype_name,
};
pub use error::{IoError, Result};
pub use sharded::{ExportSummary, INDEX_FILE_NAME, SINGLE_FILE_NAME, ShardedWriter};
pub use size::parse_size;
pub use staging::{Overwrite, StagingDir, remove_stale_staging};
