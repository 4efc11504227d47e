//! ft-gguf's integration tests in one binary: one link and one set of generic instances instead of
//! one per file. Each file beside this one is a module of it.

mod corrupt;
mod export;
mod export_edges;
mod quant_types;
mod smollm2;
mod tiny_llama;
mod value_types;
