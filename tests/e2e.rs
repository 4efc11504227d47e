//! ft's end-to-end suites (they run the `ft` binary, or cross crates) in one binary: one link and
//! one set of generic instances instead of one per file. Each file beside this one is a module of
//! it, but for `wgpu.rs` (the GPU suite, built with the `wgpu` feature) and `fuzz_readers.rs` (its
//! global allocator refuses any allocation over 1 GiB), which have their own, and `llava_chat.rs`,
//! which belongs to the `llava-chat` binary. One suite: `cargo test -p ft --test e2e cli_train::`.

mod browser_page;
mod cli_convert;
mod cli_data;
mod cli_data_cache;
mod cli_gguf_base;
mod cli_llava;
mod cli_merge;
mod cli_model;
mod cli_parallel;
mod cli_plot;
mod cli_serve;
mod cli_train;
mod common;
mod crash_resume;
mod peft_roundtrip;
mod smollm2;
