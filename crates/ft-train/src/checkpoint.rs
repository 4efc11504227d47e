//! Checkpoint folders: `output_dir/checkpoint-STEP/` and `output_dir/final/`, written under a
//! temporary name and renamed into place (a crash never leaves a folder that looks complete),
//! rotated to `save_total_limit`, found again for `--resume`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Prefix of step checkpoints.
pub const CHECKPOINT_PREFIX: &str = "checkpoint-";
/// The trainer's state file inside a checkpoint.
pub const TRAINER_STATE: &str = "trainer_state.json";

/// Where training stands: enough to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub global_step: usize,
    /// Micro-batches done.
    pub micro_step: usize,
    /// Epoch of the next micro-batch (0-based).
    pub epoch: usize,
    /// Index of the next row within the epoch's order (the data cursor).
    pub cursor: usize,
    /// Optimizer steps of the whole run.
    pub total_steps: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Hash of the config that produced the run (a changed config is warned about on resume).
    pub config_hash: String,
    /// That config (so a resume names the keys that changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// The logged metrics so far.
    #[serde(default)]
    pub log_history: Vec<serde_json::Value>,
}

impl TrainerState {
    /// Reads `trainer_state.json` from a checkpoint folder.
    pub fn read(checkpoint: &Path) -> Result<Self> {
        let path = checkpoint.join(TRAINER_STATE);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            message: format!("cannot read the trainer state: {e}"),
        })?;
        serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
            path,
            message: format!("invalid trainer state: {e}"),
        })
    }

    /// Writes `trainer_state.json` into a folder.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(TRAINER_STATE);
        let text = serde_json::to_string_pretty(self).expect("invariant: state serialises");
        std::fs::write(&path, text).map_err(|e| TrainError::io(path, e))
    }
}

/// The folder of the checkpoint after optimizer step `step`.
pub fn checkpoint_dir(output_dir: &Path, step: usize) -> PathBuf {
    output_dir.join(format!("{CHECKPOINT_PREFIX}{step}"))
}

/// Writes a checkpoint folder atomically: `write` fills a hidden staging folder, whose files are
/// fsynced before it is renamed to `final_dir`. An older folder of that name is moved aside first
/// and removed only once the new one is in place, so a crash at any moment leaves a complete
/// checkpoint under every `checkpoint-N` name (the last one may be missing, never half-written).
pub fn write_atomically(final_dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staging = ft_io::StagingDir::new(final_dir, ft_io::Overwrite::Replace)?;
    write(staging.path())?;
    staging.commit()?;
    Ok(())
}

/// The dotted keys whose values differ between two configs (as JSON), each with both values.
pub fn changed_keys(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let mut changed = Vec::new();
    diff("", old, new, &mut changed);
    changed
}

fn diff(at: &str, old: &serde_json::Value, new: &serde_json::Value, changed: &mut Vec<String>) {
    use serde_json::Value;
    let (Value::Object(a), Value::Object(b)) = (old, new) else {
        if old != new {
            changed.push(format!("{at} ({old} → {new})"));
        }
        return;
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        let missing = serde_json::Value::Null;
        diff(
            &path,
            a.get(key).unwrap_or(&missing),
            b.get(key).unwrap_or(&missing),
            changed,
        );
    }
}

/// Step checkpoints in `output_dir`, oldest first. Temporary folders are ignored.
pub fn list_checkpoints(output_dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix(CHECKPOINT_PREFIX)?.parse().ok()?;
            e.path().join(TRAINER_STATE).exists().then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint of `output_dir`.
pub fn latest_checkpoint(output_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(output_dir)?.pop().map(|(_, p)| p))
}

/// Deletes the oldest step checkpoints beyond `limit` (0 keeps all).
pub fn rotate_checkpoints(output_dir: &Path, limit: usize) -> Result<Vec<PathBuf>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let all = list_checkpoints(output_dir)?;
    let excess = all.len().saturating_sub(limit);
    let mut removed = Vec::new();
    for (_, path) in all.into_iter().take(excess) {
        // Renamed out of sight first: a crash mid-removal leaves a hidden folder (cleared by the
        // next run), never a half-deleted `checkpoint-N`.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let doomed = output_dir.join(format!(".{name}.ft-partial-{}-rotated.old", std::process::id()));
        std::fs::rename(&path, &doomed).map_err(|e| TrainError::io(&path, e))?;
        std::fs::remove_dir_all(&doomed).map_err(|e| TrainError::io(&doomed, e))?;
        removed.push(path);
    }
    Ok(removed)
}

/// Fails early (before step 1) when `output_dir` cannot be created or written.
pub fn ensure_writable(output_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(output_dir).map_err(|e| TrainError::io(output_dir, e))?;
    let probe = output_dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, vec![0u8; 1 << 20]).map_err(|e| TrainError::io(output_dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| TrainError::io(&probe, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize) -> TrainerState {
        TrainerState {
            global_step: step,
            micro_step: step * 2,
            epoch: 0,
            cursor: step * 2,
            total_steps: 10,
            seed: 1,
            config_hash: "h".into(),
            config: None,
            log_history: vec![],
        }
    }

    #[test]
    fn atomic_write_then_rotate_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for step in [2, 4, 6] {
            write_atomically(&checkpoint_dir(dir.path(), step), |tmp| state(step).write(tmp)).unwrap();
        }
        assert_eq!(list_checkpoints(dir.path()).unwrap().len(), 3);
        let removed = rotate_checkpoints(dir.path(), 2).unwrap();
        assert_eq!(removed, vec![checkpoint_dir(dir.path(), 2)]);
        let latest = latest_checkpoint(dir.path()).unwrap().unwrap();
        assert_eq!(TrainerState::read(&latest).unwrap(), state(6));
    }

    #[test]
    fn a_failed_write_leaves_nothing_that_looks_complete() {
        let dir = tempfile::tempdir().unwrap();
        let target = checkpoint_dir(dir.path(), 3);
        let err = write_atomically(&target, |tmp| {
            state(3).write(tmp)?;
            Err(TrainError::io(tmp, std::io::Error::other("disk full")))
        });
        assert!(err.is_err());
        assert!(!target.exists());
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "temporary folder removed"
        );
        assert_eq!(latest_checkpoint(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_failed_rewrite_keeps_the_complete_old_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let target = checkpoint_dir(dir.path(), 3);
        write_atomically(&target, |tmp| state(3).write(tmp)).unwrap();
        let err = write_atomically(&target, |tmp| {
            state(4).write(tmp)?;
            Err(TrainError::io(tmp, std::io::Error::other("killed")))
        });
        assert!(err.is_err());
        assert_eq!(TrainerState::read(&target).unwrap(), state(3));
        write_atomically(&target, |tmp| state(5).write(tmp)).unwrap();
        assert_eq!(TrainerState::read(&target).unwrap(), state(5));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing left aside"
        );
    }

    #[test]
    fn unwritable_output_dir_fails_early() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        assert!(ensure_writable(&file.join("out")).is_err());
        assert!(ensure_writable(&dir.path().join("out")).is_ok());
    }
}
