//! Output folders that appear complete or not at all: everything is written into a hidden sibling
//! folder, which is fsynced and renamed onto the final path only at the end.

use std::path::{Path, PathBuf};

use crate::atomic::sync_parent;
use crate::error::{IoError, Result};

/// The marker in the names of staging folders: `.<name>.ft-partial-<pid>-<n>`.
const PARTIAL: &str = ".ft-partial-";

/// What to do when the output folder already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Refuse with [`IoError::OutputExists`] (the default).
    #[default]
    Refuse,
    /// Replace it, once the new folder is complete (`--force`, a re-saved checkpoint).
    Replace,
}

/// A hidden staging folder `<parent>/.<name>.ft-partial-<pid>-<n>` for the output `<parent>/<name>`.
/// [`StagingDir::commit`] renames it onto the output; dropping it uncommitted deletes it, and a killed
/// process leaves only the hidden partial folder, never something named like a finished output.
#[derive(Debug)]
pub struct StagingDir {
    target: PathBuf,
    path: PathBuf,
    overwrite: Overwrite,
    committed: bool,
}

impl StagingDir {
    /// Creates the staging folder next to `target` (creating `target`'s parents).
    pub fn new(target: impl AsRef<Path>, overwrite: Overwrite) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        refuse_existing(&target, overwrite)?;
        let name = target
            .file_name()
            .ok_or_else(|| {
                IoError::at("using as output folder", &target)(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "path has no final component",
                ))
            })?
            .to_string_lossy()
            .into_owned();
        let parent = parent_of(&target);
        std::fs::create_dir_all(&parent).map_err(IoError::at("creating", &parent))?;
        let pid = std::process::id();
        let mut n = 0u32;
        loop {
            let path = parent.join(format!(".{name}{PARTIAL}{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Self {
                        target,
                        path,
                        overwrite,
                        committed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(IoError::at("creating", path)(e)),
            }
        }
    }

    /// The folder to write into.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The final output path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Fsyncs everything written, then renames the staging folder onto the target. With
    /// [`Overwrite::Replace`] an existing target is first moved aside and deleted only after the
    /// rename succeeded, so at every moment either the old or the new folder is complete.
    pub fn commit(mut self) -> Result<PathBuf> {
        refuse_existing(&self.target, self.overwrite)?;
        sync_tree(&self.path)?;
        let old = if self.target.exists() {
            let mut aside = self.path.clone().into_os_string();
            aside.push(".old");
            let aside = PathBuf::from(aside);
            std::fs::rename(&self.target, &aside).map_err(IoError::at("moving aside", &self.target))?;
            Some(aside)
        } else {
            None
        };
        std::fs::rename(&self.path, &self.target)
            .map_err(IoError::at("renaming staging folder to", &self.target))?;
        self.committed = true;
        sync_parent(&self.target);
        if let Some(old) = old {
            let removal = if old.is_dir() {
                std::fs::remove_dir_all(&old)
            } else {
                std::fs::remove_file(&old)
            };
            removal.map_err(IoError::at("removing the replaced output", &old))?;
        }
        Ok(self.target.clone())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: an abandoned output must not leave its partial folder behind.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the staging folders (and folders moved aside) that killed processes left in `dir`:
/// those whose process id no longer runs. Returns what was removed. Where process ids cannot be
/// checked (no `/proc`), nothing is removed.
pub fn remove_stale_staging(dir: &Path) -> Result<Vec<PathBuf>> {
    if !Path::new("/proc/self").exists() {
        return Ok(Vec::new());
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = staging_pid(&name) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        let removal = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removal.map_err(IoError::at("removing a stale staging folder", &path))?;
        removed.push(path);
    }
    Ok(removed)
}

/// The process id in a staging folder's name (`.<name>.ft-partial-<pid>-<n>[.old]`).
fn staging_pid(name: &str) -> Option<u32> {
    let rest = &name[name.rfind(PARTIAL)? + PARTIAL.len()..];
    rest.split('-').next()?.parse().ok()
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fsyncs every file and folder under `dir`.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(IoError::at("listing", dir))? {
        let path = entry.map_err(IoError::at("listing", dir))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(IoError::at("syncing", &path))?;
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn refuse_existing(target: &Path, overwrite: Overwrite) -> Result<()> {
    if overwrite == Overwrite::Refuse && target.exists() {
        return Err(IoError::OutputExists {
            path: target.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn a_committed_folder_replaces_the_old_one_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("final");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("old.txt"), "old").unwrap();
        let staging = StagingDir::new(&out, Overwrite::Replace).unwrap();
        std::fs::create_dir(staging.path().join("sub")).unwrap();
        std::fs::write(staging.path().join("sub/new.txt"), "new").unwrap();
        staging.commit().unwrap();
        assert_eq!(names(&out), vec!["sub"]);
        assert_eq!(names(dir.path()), vec!["final"]);
    }

    #[test]
    fn an_existing_output_is_refused_unless_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        std::fs::create_dir(&out).unwrap();
        let err = StagingDir::new(&out, Overwrite::Refuse).unwrap_err();
        assert!(matches!(err, IoError::OutputExists { .. }), "{err}");
    }

    #[test]
    fn a_dropped_staging_folder_is_removed_and_the_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("checkpoint-3");
        std::fs::create_dir(&out).unwrap();
        {
            let staging = StagingDir::new(&out, Overwrite::Replace).unwrap();
            std::fs::write(staging.path().join("half"), "x").unwrap();
        }
        assert_eq!(names(dir.path()), vec!["checkpoint-3"]);
    }

    #[test]
    fn stale_staging_of_dead_processes_is_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Process ids above the kernel's maximum (4194304) never run.
        let dead = dir.path().join(".checkpoint-2.ft-partial-4999999-0");
        let dead_aside = dir.path().join(".final.ft-partial-4999998-1.old");
        let live = dir
            .path()
            .join(format!(".final.ft-partial-{}-0", std::process::id()));
        for d in [&dead, &dead_aside, &live] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::create_dir(dir.path().join("checkpoint-1")).unwrap();
        let mut removed = remove_stale_staging(dir.path()).unwrap();
        removed.sort();
        assert_eq!(removed, vec![dead, dead_aside]);
        assert!(live.exists() && dir.path().join("checkpoint-1").exists());
    }

    #[test]
    fn staging_names_carry_the_process_id() {
        assert_eq!(staging_pid(".checkpoint-2.ft-partial-123-0"), Some(123));
        assert_eq!(staging_pid(".final.ft-partial-7-2.old"), Some(7));
        assert_eq!(staging_pid("checkpoint-2"), None);
    }
}
