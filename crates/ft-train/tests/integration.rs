//! ft-train's integration tests in one binary: one link and one set of generic instances instead of
//! one per file. Each file beside this one is a module of it; `bf16_lora.rs` has its own (its
//! process computes in bf16: it sets the default float dtype), so has `checkpointed_dropout.rs`
//! (its runs need the process-wide random generator to themselves).

mod common;
mod data_parallel;
mod gradient_checkpointing;
mod llava_step;
mod torch_parity;
mod train_loop;
