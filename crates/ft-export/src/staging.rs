//! Output folders that appear complete or not at all: everything is written into a hidden sibling
//! folder, which is renamed onto the final path only at the end.

use std::path::{Path, PathBuf};

use crate::error::io_err;
use crate::{ExportError, Result};

/// What to do when the output folder already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Refuse with [`ExportError::OutputExists`] (the default).
    #[default]
    Refuse,
    /// Replace it, once the new folder is complete (`--force`).
    Replace,
}

/// A hidden staging folder `<parent>/.<name>.ft-partial-<pid>-<n>` for the output `<parent>/<name>`.
/// [`StagingDir::commit`] renames it onto the output; dropping it uncommitted deletes it, and a killed
/// process leaves only the hidden partial folder, never something named like a finished export.
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
            .ok_or_else(|| ExportError::Io {
                action: "using as output folder",
                path: target.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no final component"),
            })?
            .to_string_lossy()
            .into_owned();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
        let pid = std::process::id();
        let mut n = 0u32;
        loop {
            let path = parent.join(format!(".{name}.ft-partial-{pid}-{n}"));
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
                Err(e) => return Err(io_err("creating", path)(e)),
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

    /// Renames the staging folder onto the target. With [`Overwrite::Replace`] an existing target is
    /// first moved aside and deleted only after the rename succeeded.
    pub fn commit(mut self) -> Result<PathBuf> {
        refuse_existing(&self.target, self.overwrite)?;
        let old = if self.target.exists() {
            let mut aside = self.path.clone().into_os_string();
            aside.push(".old");
            let aside = PathBuf::from(aside);
            std::fs::rename(&self.target, &aside).map_err(io_err("moving aside", &self.target))?;
            Some(aside)
        } else {
            None
        };
        std::fs::rename(&self.path, &self.target)
            .map_err(io_err("renaming staging folder to", &self.target))?;
        self.committed = true;
        if let Some(old) = old {
            let removal = if old.is_dir() {
                std::fs::remove_dir_all(&old)
            } else {
                std::fs::remove_file(&old)
            };
            removal.map_err(io_err("removing the replaced output", &old))?;
        }
        Ok(self.target.clone())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: an abandoned export must not leave its partial folder behind.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn refuse_existing(target: &Path, overwrite: Overwrite) -> Result<()> {
    if overwrite == Overwrite::Refuse && target.exists() {
        return Err(ExportError::OutputExists {
            path: target.to_path_buf(),
        });
    }
    Ok(())
}
