//! ft-data's integration tests in one binary: one link and one set of generic instances instead of
//! one per file. Each file beside this one is a module of it.

mod cache;
mod cache_props;
mod chat_goldens;
mod encode_head;
mod fast_path_configs;
mod goldens;
mod pack_props;
mod sentencepiece;
mod tokenizer_load;
