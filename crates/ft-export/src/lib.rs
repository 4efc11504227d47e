//! # ft-export
//!
//! Writing what `ft` produces: safetensors checkpoints in the layout transformers reads
//! (`model.safetensors`, or `model-0000k-of-0000N.safetensors` shards plus
//! `model.safetensors.index.json`), LoRA adapters merged into their base ([`merge`]), f32 → bf16/f16 casts that match torch bit for bit, shard-size
//! strings parsed like transformers, and output folders that appear only when complete.
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

mod dtype;
mod error;
pub mod merge;
pub mod safetensors_io;
mod sharded_writer;
mod size;

pub use dtype::{
    BF16_CANONICAL_NAN, Dtype, cast_f32_into, decode_to_f32, dtype_from_torch_name, extend_decoded_f32,
    f32_to_bf16_bits, f32_to_f16_bits, torch_dtype_name,
};
pub use error::{ExportError, Result};
pub use ft_io::{Overwrite, StagingDir};
pub use sharded_writer::{ExportSummary, INDEX_FILE_NAME, SINGLE_FILE_NAME, ShardedWriter};
pub use size::parse_size;
