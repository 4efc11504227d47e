//! # ft-lora
//!
//! Linear layers for parameter-efficient fine-tuning: LoRA adapters and the NF4 4-bit base weights of
//! QLoRA. The [`nf4`] codec works on plain slices (no Burn), bit-exact with bitsandbytes' CUDA kernels.
//! The [`peft`] module reads and writes PEFT LoRA adapter folders (plain Rust, no Burn).
//!
//! ```
//! use ft_lora::nf4::Nf4Tensor;
//!
//! let w: Vec<f32> = (0..128).map(|i| (i as f32 - 64.0) / 64.0).collect();
//! let q = Nf4Tensor::quantize(&w, &[2, 64], false).unwrap();
//! assert_eq!(q.dequantize()[0], -1.0);
//! ```

mod base;
pub mod linear;
pub mod linears;
pub mod nf4;
pub mod peft;
