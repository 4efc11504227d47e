//! # ft-data
//!
//! The data path of `ft`, from a user's dataset file to the `input_ids` / `labels` that training
//! consumes, byte-exact with XTuner's behaviour:
//!
//! file → [`formats`] (records) → [`template`] (segments) → [`encode`] (ids + labels) →
//! [`pack`] (fixed-length rows) → [`batch`] (padded batches).
//!
//! ```
//! use ft_data::record::{Conversation, Turn};
//! use ft_data::template::{Segment, Template};
//!
//! let template = Template::resolve("qwen_chat", None).unwrap();
//! let conversation = Conversation { conversation: vec![Turn::new("Hi", "Hello!")], ..Default::default() };
//! let segments = template.segments(&conversation, None).unwrap();
//! assert_eq!(segments[2], Segment::Answer { text: "Hello!<|im_end|>".into(), loss: true });
//! ```
//!
//! Large corpora go through the [`cache`]: tokenised once (streamed, in parallel) into
//! memory-mapped files, then packed and shuffled by index ([`rows::RowSource`]).
//!
//! This crate has no Burn dependency.

pub mod assistant;
pub mod batch;
pub mod cache;
pub mod chat;
pub mod config;
pub mod dataset;
pub mod encode;
pub mod error;
pub mod formats;
pub mod pack;
pub mod record;
pub mod rows;
pub mod split;
pub mod template;
pub mod tokenizer;

pub use error::{DataError, Result};
