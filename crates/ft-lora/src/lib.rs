//! # ft-lora
//!
//! Linear layers for parameter-efficient fine-tuning: LoRA adapters and the NF4 4-bit base weights of
//! QLoRA, as Burn modules. The Burn-free parts live in `ft-io` and are re-exported here: the [`nf4`]
//! codec (plain slices, bit-exact with bitsandbytes' CUDA kernels, `ft_io::nf4`) and the [`peft`]
//! adapter folder format (`ft_io::peft`).
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

pub use ft_io::{nf4, peft};
