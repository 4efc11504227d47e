//! ft-model's integration tests in one binary: one link and one set of generic instances instead of
//! one per file. Each file beside this one is a module of it; `wgpu.rs` has its own (the GPU suite,
//! built with the `wgpu` feature).

mod batch_decode;
mod checkpointing;
mod common;
mod load_errors;
mod lora_peft;
mod parity;
mod precision;
mod qlora;
