//! ft-kernels's integration tests in one binary: one link and one set of generic instances instead
//! of one per file. Each file beside this one is a module of it; `wgpu.rs` has its own (the GPU
//! suite, built with the `wgpu` feature).

mod attention;
mod checkpoint;
mod common;
mod concurrent_backward;
mod cross_entropy;
mod dtypes;
mod elementwise;
mod lora;
mod nf4;
#[path = "../../ft-io/tests/nf4_common/mod.rs"]
mod nf4_common;
