//! What the `ft` and `llava-chat` binaries share: the run-time choice of device and dtype,
//! loading a model (folder or GGUF, NF4, adapter, template), and the chat session (with a
//! picture for a LLaVA).

pub mod backend;
pub mod chat_cmd;
pub mod chat_session;
pub mod model_load;
pub mod picture;
pub mod reply;
