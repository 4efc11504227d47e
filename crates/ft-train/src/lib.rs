//! # ft-train
//!
//! Training for `ft`: the TOML config (`[model]`, `[data]`, `[lora]`, `[llava]`, `[train]`,
//! `[eval]`), the learning-rate schedule, checkpoints and metrics.

pub mod adamw;
pub mod adapter;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod eval_hook;
pub mod eval_loss;
pub mod llava;
pub mod metrics;
pub mod model_folder;
pub mod parallel;
pub mod params;
pub mod schedule;
pub mod trainer;

pub use error::{Result, TrainError};
