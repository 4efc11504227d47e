//! # ft-kernels
//!
//! Fused training ops with hand-written backward, after Burn's backend-extension pattern:
//! [`KernelBackend`] is a trait over `Backend` whose methods have composite defaults (plain Burn
//! tensor ops, the reference every kernel is tested against); `Autodiff<B>` implements each op as
//! one graph node whose backward is written by hand; burn-flex implements them with
//! multi-threaded CPU kernels, (behind `cuda` / `wgpu`) Burn's `CubeBackend` with CubeCL
//! kernels, and (behind `fusion`) Burn's `Fusion` wrapper of a backend with kernels, each op a
//! custom operation of the fusion stream that runs the wrapped backend's kernel.
//!
//! Ops:
//! - [`attention`]: causal and packed (block-diagonal per sample) attention with grouped K/V
//!   heads read in place and sliding windows; on the CPU, tiles of keys no query of a tile can
//!   see (earlier packed samples, outside the window) are skipped. Training keeps q, k, v, the
//!   output and a log-sum-exp per query: O(seq) memory instead of the `[heads, seq, seq]`
//!   probabilities, and the backward recomputes each tile's probabilities.
//! - [`rms_norm`]: RMSNorm with f32 statistics; training keeps the input and one f32 per row.
//! - [`swiglu`]: `silu(gate) ⊙ up`; training keeps the two inputs.
//! - [`rope()`]: rotate-half RoPE on every head in the projections' layout; training keeps only
//!   the angle tables, shared by every layer.
//! - [`lora_linear`]: a LoRA layer's `x · Wᵀ + s · (x_a · Aᵀ) · Bᵀ` as one node; every product
//!   on all cores, and no gradient for a frozen base.
//! - [`nf4_linear`]: QLoRA's NF4 base on the device, dequantised by a kernel in forward and
//!   again in backward (the dense weight is never kept).
//! - [`linear_cross_entropy`]: the LM head and the cross-entropy in chunks of rows, never the
//!   whole batch's `[rows, vocab]` logits; training keeps the rows and one log-sum-exp per row.
//! - [`checkpointed`]: gradient checkpointing of a block (a decoder layer): training keeps its
//!   input alone and backward runs the block again.

pub mod attention;
mod autodiff;
mod backend;
pub mod checkpoint;
pub mod cross_entropy;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod cube;
mod flex;
#[cfg(feature = "fusion")]
mod fusion;
pub mod lora;
pub mod mask;
pub mod nf4;
mod par;
pub mod rms_norm;
pub mod rope;
mod simd;
pub mod swiglu;
mod tile;

pub use attention::attention;
pub use backend::{KernelBackend, TrainBackend};
pub use checkpoint::checkpointed;
pub use cross_entropy::linear_cross_entropy;
pub use lora::{LoraWeights, lora_linear};
pub use mask::AttentionMask;
pub use nf4::{Nf4Device, nf4_dequantize, nf4_linear};
pub use rms_norm::rms_norm;
pub use rope::rope;
pub use swiglu::swiglu;
