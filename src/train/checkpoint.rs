//! Checkpoints: the model's weights (burnpack, which keeps parameter ids so the optimiser state
//! matches them again), the optimiser state (Adam's moments and step count) and where training
//! stood. A checkpoint is replaced as a whole: the weights and the optimiser state are written
//! under new names, then `state.json`, which names them, replaces the previous one in one rename
//! (the commit), and only then are the previous files removed. A save that fails halfway (a
//! full disk) leaves the previous checkpoint as it was, and a resume refuses files that do not
//! belong together.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};

use super::model::SegmentationModel;
use super::report::EpochRecord;
use crate::paths::shown;
use crate::{Error, Result};

/// Where training stands: the next step to take is batch `batch` of epoch `epoch` of stage
/// `stage` (all 0-based).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Index into the stages (sizes).
    pub stage: usize,
    /// Epoch within the stage.
    pub epoch: usize,
    /// Batch within the epoch (non-zero only after an interruption).
    pub batch: usize,
}

/// The best validation result so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Dice (binary) or mean IoU (multi-class).
    pub score: f64,
    /// Global epoch number (1-based) it was reached at.
    pub epoch: usize,
}

/// A checkpoint's small part, saved as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Where to continue.
    pub position: Position,
    /// Best validation so far.
    pub best: Option<Best>,
    /// Every completed epoch's figures.
    pub history: Vec<EpochRecord>,
    /// Seconds spent training so far (over all sessions).
    pub seconds: f64,
}

/// What `state.json` holds: the training state and the files of the same save.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    state: TrainingState,
    /// The weights and optimiser files of this save, with their sizes (absent in checkpoints
    /// written before saves named their files).
    #[serde(default)]
    files: Option<SavedFiles>,
}

/// The files of one save, by name within the checkpoint folder, and their sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedFiles {
    model: String,
    model_bytes: u64,
    optimizer: String,
    optimizer_bytes: u64,
}

/// The checkpoint files of a run folder.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    /// The checkpoints of run folder `run`.
    pub fn new(run: &Path) -> Self {
        Checkpoints {
            dir: run.join("checkpoint"),
        }
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Where checkpoints written before saves named their files kept the weights and the
    /// optimiser state.
    fn legacy_files(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("model.bpk"), self.dir.join("optimizer.bpk"))
    }

    /// The weights of the best epoch.
    pub fn best_model_file(&self) -> PathBuf {
        self.dir.join("best.bpk")
    }

    /// Whether a checkpoint exists.
    pub fn exists(&self) -> bool {
        self.state_file().is_file()
    }

    /// Saves model, optimiser and state as one checkpoint that replaces the previous one
    /// whole, or not at all.
    ///
    /// # Errors
    /// A file that cannot be written; the previous checkpoint is then still the one on disk.
    pub fn save(
        &self,
        model: &SegmentationModel,
        optimizer: &ModuleOptimizer,
        state: &TrainingState,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let previous = self.saved_files();
        let tag = unique_tag();
        let (model_name, optimizer_name) =
            (format!("model-{tag}.bpk"), format!("optimizer-{tag}.bpk"));
        let (model_file, optimizer_file) =
            (self.dir.join(&model_name), self.dir.join(&optimizer_name));
        let written = save_model(model, &model_file)
            .and_then(|()| save_optimizer(optimizer, &optimizer_file))
            .and_then(|()| {
                let files = SavedFiles {
                    model: model_name,
                    model_bytes: file_size(&model_file)?,
                    optimizer: optimizer_name,
                    optimizer_bytes: file_size(&optimizer_file)?,
                };
                let manifest = Manifest {
                    state: state.clone(),
                    files: Some(files),
                };
                let json = serde_json::to_vec_pretty(&manifest).expect("the state serialises");
                write_then_rename(&self.state_file(), &json)
            });
        if written.is_err() {
            // The new files are not named by any state: removing them frees the space they
            // took and leaves the previous checkpoint alone.
            let _ = std::fs::remove_file(&model_file);
            let _ = std::fs::remove_file(&optimizer_file);
            return written;
        }
        // Committed: the previous save's files are named by nothing any more.
        for old in previous {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// The weights and optimiser files the checkpoint on disk uses (none when there is none).
    fn saved_files(&self) -> Vec<PathBuf> {
        let (legacy_model, legacy_optimizer) = self.legacy_files();
        let mut files = vec![legacy_model, legacy_optimizer];
        if let Ok(Manifest {
            files: Some(saved), ..
        }) = self.read_manifest()
        {
            files.extend([self.dir.join(saved.model), self.dir.join(saved.optimizer)]);
        }
        files
    }

    fn read_manifest(&self) -> Result<Manifest> {
        let state_file = self.state_file();
        let text = std::fs::read(&state_file).map_err(|e| Error::io(&state_file, e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::Config(format!("{}: not a checkpoint: {e}", shown(&state_file))))
    }

    /// The weights and optimiser files that belong to the state on disk.
    ///
    /// # Errors
    /// [`Error::Config`] when a file the state names is missing or has another size, or (in a
    /// checkpoint from before saves named their files) when the weights or the optimiser state
    /// were written after the state: a save that failed halfway, whose parts do not match.
    fn matching_files(&self, files: Option<SavedFiles>) -> Result<(PathBuf, PathBuf)> {
        let mixed = |why: String| {
            Error::Config(format!(
                "the checkpoint in {} cannot be resumed: {why}; its parts come from different \
                 saves (one that failed halfway, e.g. on a full disk). Start the run again, or \
                 fine-tune its exported model with --init-from",
                shown(&self.dir)
            ))
        };
        let Some(files) = files else {
            let (model, optimizer) = self.legacy_files();
            let written = |p: &Path| {
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .map_err(|e| Error::io(p, e))
            };
            let state_time = written(&self.state_file())?;
            for part in [&model, &optimizer] {
                if written(part)? > state_time {
                    return Err(mixed(format!(
                        "{} was written after state.json",
                        part.file_name().unwrap_or_default().to_string_lossy()
                    )));
                }
            }
            return Ok((model, optimizer));
        };
        let check = |name: &str, bytes: u64| {
            let path = self.dir.join(name);
            match file_size(&path) {
                Ok(size) if size == bytes => Ok(path),
                Ok(size) => Err(mixed(format!(
                    "{name} holds {size} bytes, the state names {bytes}"
                ))),
                Err(_) => Err(mixed(format!("{name}, which the state names, is missing"))),
            }
        };
        Ok((
            check(&files.model, files.model_bytes)?,
            check(&files.optimizer, files.optimizer_bytes)?,
        ))
    }

    /// The weights file of the checkpoint on disk (checked to belong to its state).
    ///
    /// # Errors
    /// As [`Checkpoints::load`], for a missing or mixed checkpoint.
    pub fn model_file(&self) -> Result<PathBuf> {
        let Manifest { files, .. } = self.read_manifest()?;
        Ok(self.matching_files(files)?.0)
    }

    /// Saves `model` as the best so far.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save_best(&self, model: &SegmentationModel) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        save_model(model, &self.best_model_file())
    }

    /// Loads the state and puts the saved weights and optimiser state into `model` and
    /// `optimizer`.
    ///
    /// # Errors
    /// Missing or unreadable files, weights that do not fit `model`, or files that do not
    /// belong to the state (see [`Checkpoints::save`]).
    pub fn load(
        &self,
        model: &mut SegmentationModel,
        optimizer: ModuleOptimizer,
    ) -> Result<(ModuleOptimizer, TrainingState)> {
        let Manifest { state, files } = self.read_manifest()?;
        let (model_file, optimizer_file) = self.matching_files(files)?;
        load_model(model, &model_file)?;
        let optimizer = optimizer
            .load(&optimizer_file)
            .map_err(|e| Error::Config(format!("loading {}: {e}", shown(&optimizer_file))))?;
        Ok((optimizer, state))
    }
}

/// Writes `model`'s weights to `path` (burnpack).
///
/// # Errors
/// A file that cannot be written.
pub fn save_model(model: &SegmentationModel, path: &Path) -> Result<()> {
    written_aside(path, |partial| {
        let mut store = BurnpackStore::from_file(partial)
            .auto_extension(false)
            .overwrite(true);
        model
            .save_into(&mut store)
            .map_err(|e| Error::Config(format!("saving {}: {e}", shown(partial))))
    })
}

/// Writes the optimiser state to `path` (burnpack).
fn save_optimizer(optimizer: &ModuleOptimizer, path: &Path) -> Result<()> {
    written_aside(path, |partial| {
        optimizer
            .save(partial)
            .map_err(|e| Error::Config(format!("saving {}: {e}", shown(partial))))
    })
}

/// Runs `write` on `NAME.partial.EXT` and renames it to `path` when it succeeds; removes what
/// it wrote when it fails.
fn written_aside(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let extension = path.extension().map_or_else(
        || "partial".into(),
        |e| format!("partial.{}", e.to_string_lossy()),
    );
    let partial = path.with_extension(extension);
    let result = write(&partial).and_then(|()| rename(&partial, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Reads weights saved by [`save_model`] into `model`.
///
/// # Errors
/// A missing file or weights that do not fit `model`.
pub fn load_model(model: &mut SegmentationModel, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    model
        .load_from(&mut store)
        .map_err(|e| Error::Config(format!("loading {}: {e}", shown(path))))?;
    Ok(())
}

fn write_then_rename(path: &Path, bytes: &[u8]) -> Result<()> {
    written_aside(path, |partial| {
        std::fs::write(partial, bytes).map_err(|e| Error::io(partial, e))
    })
}

fn file_size(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| Error::io(path, e))
}

/// A name part no earlier save of this checkpoint used: the time in microseconds and the
/// process id.
fn unique_tag() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{micros}-{}", std::process::id())
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))
}
