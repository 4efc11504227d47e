//! ft-llava's integration tests in one binary: one link and one set of generic instances instead of
//! one per file. Each file beside this one is a module of it; `bf16_projector.rs` has its own (its
//! process computes in bf16: it sets the default float dtype).

mod clip_lora;
mod common;
mod goldens;
mod llava_forward;
mod llava_grads;
