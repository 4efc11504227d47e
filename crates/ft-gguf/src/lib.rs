//! `ft-gguf`: a pure-Rust reader for GGUF files (llama.cpp's format), with no Burn dependency.
//!
//! - [`GgufFile`]: header, metadata ([`Metadata`], [`MetadataValue`]), tensor infos, memory-mapped data.
//! - [`dequantize`]: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K,
//!   Q6_K → f32, bit-exact with ggml.
//! - Llama-family files map to Hugging Face names and layout ([`GgufFile::hf_tensor_names`],
//!   [`GgufFile::tensor_f32`], [`GgufFile::hf_config`]), with llama.cpp's q/k row permutation undone.
//! - [`GgufFile::tokenizer`] rebuilds a `tokenizers::Tokenizer` from the tokenizer metadata.
//! - Writing: [`GgufWriter`] (GGUF v3, aligned, atomic), [`quantize`] (F32/F16/Q8_0, bit-exact with
//!   gguf-py) and [`export_gguf`], which converts a Llama/Mistral/Qwen2 Hugging Face folder the way
//!   llama.cpp's `convert_hf_to_gguf.py` does.
//!
//! ```no_run
//! let gguf = ft_gguf::GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let config = gguf.hf_config()?;
//! let (q, shape) = gguf.tensor_f32("model.layers.0.self_attn.q_proj.weight")?; // shape [576, 576]
//! let tok = gguf.tokenizer()?;
//! # Ok::<(), ft_gguf::GgufError>(())
//! ```

mod cursor;
mod dequant;
mod error;
mod export;
mod export_config;
mod export_tokenizer;
mod file;
mod ggml_type;
mod llama;
mod metadata;
mod quantize;
mod tokenizer;
mod writer;

pub use dequant::dequantize;
pub use error::{GgufError, Result};
pub use export::{ExportSummary, HfTensors, OutType, export_gguf};
pub use export_config::SUPPORTED_ARCHITECTURES;
pub use export_tokenizer::export_tokenizer;
pub use file::{DEFAULT_ALIGNMENT, GgufFile, TensorInfo};
pub use ggml_type::GgmlType;
pub use llama::{gguf_name, hf_name, permute_rows, unpermute_rows};
pub use metadata::{Metadata, MetadataValue, value_type_name};
pub use quantize::{Q8_0_BLOCK, quantize};
pub use tokenizer::{GgufSpecialToken, GgufSpecialTokens, GgufTokenizer};
pub use writer::{GgufWriter, PlannedTensor, check_output};
