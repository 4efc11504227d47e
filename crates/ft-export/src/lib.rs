//! # ft-export
//!
//! LoRA adapters merged into their base model ([`merge`]), for plain LLMs and LLaVA folders, with
//! the merged model written as safetensors checkpoints in the layout transformers reads
//! (`model.safetensors`, or `model-0000k-of-0000N.safetensors` shards plus
//! `model.safetensors.index.json`) into output folders that appear only when complete.
//!
//! The file layer is `ft-io`'s (the sharded writer, f32 → bf16/f16 casts that match torch bit for
//! bit, shard-size strings parsed like transformers, staging folders); it is re-exported here so
//! exporters need one import.
//!
//! ```
//! use ft_export::{Dtype, ShardedWriter, parse_size};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut w = ShardedWriter::new(dir.path().join("merged"), parse_size("20KB").unwrap()).unwrap();
//! for i in 0..3 {
//!     w.add_f32(&format!("model.layers.{i}.mlp.up_proj.weight"), &[32, 64], &[0.5; 2048], Dtype::F32).unwrap();
//! }
//! let summary = w.finish().unwrap(); // 3 × 8192 bytes: 2 shards of ≤ 20 000 bytes
//! assert_eq!(summary.shard_files, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
//! assert!(dir.path().join("merged/model.safetensors.index.json").exists());
//! ```

mod error;
pub mod merge;

pub use error::{ExportError, Result};
pub use ft_io::{
    BF16_CANONICAL_NAN, Dtype, ExportSummary, INDEX_FILE_NAME, Overwrite, SINGLE_FILE_NAME, ShardedWriter,
    StagingDir, cast_f32_into, decode_to_f32, dtype_from_torch_name, extend_decoded_f32, f32_to_bf16_bits,
    f32_to_f16_bits, parse_size, torch_dtype_name,
};
