//! Writing a run's scalars as a TensorBoard event file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ft_io::IoError;
use prost::Message;

use crate::error::Result;
use crate::tensorboard::proto::Event;
use crate::tensorboard::record::write_record;

/// TensorBoard's folder inside a run's `output_dir` (Hugging Face's `logging_dir` default).
pub const TENSORBOARD_DIR: &str = "runs";

/// Files started by this process, to keep names unique within a second.
static FILES_STARTED: AtomicUsize = AtomicUsize::new(0);

/// Appends events to a new `events.out.tfevents.*` file; each event is written through to the
/// file at once (a crash loses nothing already logged).
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl EventWriter {
    /// Starts a new event file in `dir` (created if missing). For a run resumed after optimizer
    /// step `resumed_after`, the file starts by purging later steps of the earlier files.
    pub fn create(dir: &Path, resumed_after: Option<usize>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(IoError::at("creating", dir))?;
        let now = wall_time();
        let (path, file) = new_event_file(dir, now)?;
        let mut writer = Self { path, file };
        match resumed_after {
            None => writer.write_event(&Event::file_version(now, 0))?,
            Some(step) => {
                let purge = step as i64 + 1;
                writer.write_event(&Event::file_version(now, purge))?;
                writer.write_event(&Event::session_start(now, purge))?;
            }
        }
        Ok(writer)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars at `step`, stamped now.
    pub fn add_scalars(&mut self, step: usize, scalars: &[(&str, f64)]) -> Result<()> {
        self.write_event(&Event::scalars(wall_time(), step as i64, scalars))
    }

    /// Appends one event.
    pub fn write_event(&mut self, event: &Event) -> Result<()> {
        let mut framed = Vec::with_capacity(event.encoded_len() + 16);
        write_record(&mut framed, &event.encode_to_vec()).expect("invariant: writing to a Vec");
        self.file
            .write_all(&framed)
            .and_then(|()| self.file.flush())
            .map_err(IoError::at("appending to", &self.path))?;
        Ok(())
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `events.out.tfevents.{seconds}.{host}.{pid}.{n}`, created exclusively.
fn new_event_file(dir: &Path, now: f64) -> Result<(PathBuf, std::fs::File)> {
    let host = hostname();
    loop {
        let n = FILES_STARTED.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "events.out.tfevents.{:010}.{host}.{}.{n}",
            now as u64,
            std::process::id()
        );
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(IoError::at("creating", &path)(e).into()),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().replace(['/', '\\'], "_"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::proto::What;
    use crate::tensorboard::record::read_events;

    #[test]
    fn a_new_file_starts_with_the_file_version_then_holds_the_scalars() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path(), None).unwrap();
        w.add_scalars(1, &[("train/loss", 2.5), ("train/lr", 0.0)])
            .unwrap();
        let events = read_events(w.path()).unwrap();
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
        assert_eq!(events[1].step, 1);
        assert_eq!(
            events[1].scalar_values(),
            vec![("train/loss".to_string(), 2.5), ("train/lr".to_string(), 0.0)]
        );
        assert!(
            w.path()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("events.out.tfevents.")
        );
    }

    #[test]
    fn a_resumed_file_purges_the_steps_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let first = EventWriter::create(dir.path(), None).unwrap();
        let second = EventWriter::create(dir.path(), Some(3)).unwrap();
        assert_ne!(first.path(), second.path());
        let events = read_events(second.path()).unwrap();
        assert_eq!(events[0].step, 4);
        assert!(matches!(&events[1].what, Some(What::SessionLog(s)) if s.status == 1));
        assert_eq!(events[1].step, 4);
    }
}
