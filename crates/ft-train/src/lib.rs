//! # ft-train
//!
//! Training for `ft`: the TOML config (`[model]`, `[data]`, `[lora]`, `[train]`, `[eval]`), the
//! learning-rate schedule, checkpoints and metrics.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod metrics;
pub mod schedule;

pub use error::{Result, TrainError};
