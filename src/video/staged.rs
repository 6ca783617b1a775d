//! [`StagedOutput`]: an output written under a temporary name beside its final path and moved
//! into place only at the end, so that a failed run never leaves a file that looks like output
//! and never destroys the previous one.
//!
//! ```text
//! out.mp4  ← rename ←  .out.mp4.<pid>.tmp   (finished or interrupted and finalised)
//! out.partial.mp4 ← rename ←  (failed, but what was written is a finalised video)
//!                     removed               (failed, nothing usable)
//! ```

use std::path::{Path, PathBuf};

use super::source::probe_file;
use super::templates::OutputKind;
use crate::{Error, Result};

/// File names of the frames of a PNG-folder output: `frame-000000.png`, …
pub(super) const FRAME_PREFIX: &str = "frame-";

/// What became of a staged output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Moved to its final path.
    Kept(PathBuf),
    /// Kept under a name that says it is partial.
    Partial(PathBuf),
    /// Removed: it held nothing usable.
    Removed,
}

/// An output being written under a temporary name; removed on drop unless settled.
#[derive(Debug)]
pub struct StagedOutput {
    target: PathBuf,
    temp: PathBuf,
    kind: OutputKind,
    settled: bool,
}

impl StagedOutput {
    /// Stages the output `target` of `kind`: the temporary path is a hidden name in the same
    /// folder (so the final rename stays on one file system).
    pub fn new(target: &Path, kind: OutputKind) -> Self {
        let name = target
            .file_name()
            .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        let temp = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        StagedOutput {
            target: target.to_path_buf(),
            temp,
            kind,
            settled: false,
        }
    }

    /// Where the pipeline writes meanwhile.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The run finalised the output: it replaces whatever was at the target. An output with no
    /// frame in it is removed instead (nothing to keep).
    ///
    /// # Errors
    /// [`Error::Io`] when the output cannot be moved into place.
    pub fn commit(mut self, frames: u64) -> Result<Settled> {
        self.settled = true;
        if frames == 0 {
            self.remove();
            return Ok(Settled::Removed);
        }
        self.move_to(&self.target)?;
        Ok(Settled::Kept(self.target.clone()))
    }

    /// The run failed: what was written is kept as `NAME.partial.EXT` when it is a finalised,
    /// readable video (or PNG frames), else removed.
    ///
    /// # Errors
    /// [`Error::Io`] when a readable partial output cannot be moved.
    pub fn abandon(mut self) -> Result<Settled> {
        self.settled = true;
        if !self.holds_frames() {
            self.remove();
            return Ok(Settled::Removed);
        }
        let partial = self.partial_path();
        self.move_to(&partial)?;
        Ok(Settled::Partial(partial))
    }

    /// Whether the temporary output holds frames someone could use.
    fn holds_frames(&self) -> bool {
        if self.kind == OutputKind::PngFolder {
            return frame_files(&self.temp).is_ok_and(|frames| !frames.is_empty());
        }
        probe_file(&self.temp).is_ok_and(|info| info.duration.is_some_and(|d| !d.is_zero()))
    }

    /// `out.mp4` → `out.partial.mp4`; `frames/` → `frames.partial/`.
    fn partial_path(&self) -> PathBuf {
        let stem = self
            .target
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        let name = match self.target.extension() {
            Some(ext) if self.kind != OutputKind::PngFolder => {
                format!("{stem}.partial.{}", ext.to_string_lossy())
            }
            _ => format!("{stem}.partial"),
        };
        self.target.with_file_name(name)
    }

    /// Moves the temporary output to `to`: a file by renaming it; PNG frames one by one into
    /// the folder `to`, after removing the frames a previous run left there (nothing else in
    /// that folder is touched).
    fn move_to(&self, to: &Path) -> Result<()> {
        if self.kind != OutputKind::PngFolder {
            return std::fs::rename(&self.temp, to).map_err(|e| Error::io(to, e));
        }
        std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
        for old in frame_files(to).map_err(|e| Error::io(to, e))? {
            std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        }
        for frame in frame_files(&self.temp).map_err(|e| Error::io(&self.temp, e))? {
            let destination = to.join(frame.file_name().unwrap_or_default());
            std::fs::rename(&frame, &destination).map_err(|e| Error::io(&destination, e))?;
        }
        self.remove();
        Ok(())
    }

    fn remove(&self) {
        // Best effort: what cannot be removed is a hidden temporary name, not a false output.
        let _ = if self.temp.is_dir() {
            std::fs::remove_dir_all(&self.temp)
        } else {
            std::fs::remove_file(&self.temp)
        };
    }
}

impl Drop for StagedOutput {
    fn drop(&mut self) {
        if !self.settled {
            self.remove();
        }
    }
}

/// The frame files (`frame-*.png`) in `folder`, sorted.
fn frame_files(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut frames = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(FRAME_PREFIX) && name.ends_with(".png") {
            frames.push(path);
        }
    }
    frames.sort();
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_keep_the_extension() {
        let staged = StagedOutput::new(Path::new("dir/out.mp4"), OutputKind::Mp4);
        assert_eq!(staged.partial_path(), Path::new("dir/out.partial.mp4"));
        assert!(
            staged.temp_path().starts_with("dir")
                && staged
                    .temp_path()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".out.mp4.")
        );
        let folder = StagedOutput::new(Path::new("frames"), OutputKind::PngFolder);
        assert_eq!(folder.partial_path(), Path::new("frames.partial"));
    }

    #[test]
    fn png_frames_replace_only_the_previous_frames() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("frames");
        std::fs::create_dir(&target).unwrap();
        for name in ["frame-000000.png", "frame-000001.png", "notes.txt"] {
            std::fs::write(target.join(name), "old").unwrap();
        }
        let staged = StagedOutput::new(&target, OutputKind::PngFolder);
        std::fs::create_dir(staged.temp_path()).unwrap();
        std::fs::write(staged.temp_path().join("frame-000000.png"), "new").unwrap();
        assert_eq!(staged.commit(1).unwrap(), Settled::Kept(target.clone()));
        let mut left: Vec<_> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["frame-000000.png", "notes.txt"]);
        assert_eq!(
            std::fs::read_to_string(target.join("frame-000000.png")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn an_unsettled_output_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let staged = StagedOutput::new(&dir.path().join("out.mkv"), OutputKind::Mkv);
        std::fs::write(staged.temp_path(), "half").unwrap();
        drop(staged);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
