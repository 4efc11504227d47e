//! ft-io's integration tests in one binary: one link and one set of generic instances instead of
//! one per file. Each file beside this one is a module of it.

mod float_cast;
mod nf4_bnb_import;
mod nf4_common;
mod nf4_golden;
mod nf4_properties;
mod peft_config;
mod peft_targets;
mod peft_weights;
mod sharded_writer;
mod size_strings;
