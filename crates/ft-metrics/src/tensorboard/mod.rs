//! TensorBoard event files: the scalars of a run under `output_dir/runs/`, in the format
//! TensorBoard (and `torch.utils.tensorboard`) read and write.
//!
//! A file is a sequence of records (see [`record`]), each an [`Event`] protobuf: the first carries
//! the file version, the others a [`Summary`] of scalar values at a step. A resumed run starts a
//! new file in the same folder whose first events purge the steps after the checkpoint (a
//! `SessionLog` START at the resumed step, as `SummaryWriter(purge_step=…)` writes), so
//! TensorBoard shows one continuous curve.

pub mod proto;
pub mod record;
pub mod writer;

pub use proto::{Event, SessionLog, Summary, SummaryValue};
pub use record::{read_events, read_records, write_record};
pub use writer::{EventWriter, TENSORBOARD_DIR};
