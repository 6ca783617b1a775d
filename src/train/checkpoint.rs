//! Checkpoints: the model's weights (burnpack, which keeps parameter ids so the optimiser state
//! matches them again), the optimiser state (Adam's moments and step count) and where training
//! stood. Everything is written aside and renamed, so an interrupted save never leaves a broken
//! checkpoint.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};

use super::model::SegmentationModel;
use super::report::EpochRecord;
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

    fn model_file(&self) -> PathBuf {
        self.dir.join("model.bpk")
    }

    fn optimizer_file(&self) -> PathBuf {
        self.dir.join("optimizer.bpk")
    }

    /// The weights of the best epoch.
    pub fn best_model_file(&self) -> PathBuf {
        self.dir.join("best.bpk")
    }

    /// Whether a checkpoint exists.
    pub fn exists(&self) -> bool {
        self.state_file().is_file()
    }

    /// Saves model, optimiser and state.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(
        &self,
        model: &SegmentationModel,
        optimizer: &ModuleOptimizer,
        state: &TrainingState,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        save_model(model, &self.model_file())?;
        let optimizer_file = self.optimizer_file();
        let partial = optimizer_file.with_extension("partial.bpk");
        optimizer
            .save(&partial)
            .map_err(|e| Error::Config(format!("saving {}: {e}", partial.display())))?;
        rename(&partial, &optimizer_file)?;
        let json = serde_json::to_vec_pretty(state).expect("the state serialises");
        write_then_rename(&self.state_file(), &json)
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
    /// Missing or unreadable files, or weights that do not fit `model`.
    pub fn load(
        &self,
        model: &mut SegmentationModel,
        optimizer: ModuleOptimizer,
    ) -> Result<(ModuleOptimizer, TrainingState)> {
        let state_file = self.state_file();
        let text = std::fs::read(&state_file).map_err(|e| Error::io(&state_file, e))?;
        let state: TrainingState = serde_json::from_slice(&text).map_err(|e| {
            Error::Config(format!("{}: not a checkpoint: {e}", state_file.display()))
        })?;
        load_model(model, &self.model_file())?;
        let optimizer_file = self.optimizer_file();
        let optimizer = optimizer
            .load(&optimizer_file)
            .map_err(|e| Error::Config(format!("loading {}: {e}", optimizer_file.display())))?;
        Ok((optimizer, state))
    }
}

/// Writes `model`'s weights to `path` (burnpack).
///
/// # Errors
/// A file that cannot be written.
pub fn save_model(model: &SegmentationModel, path: &Path) -> Result<()> {
    let partial = path.with_extension("partial.bpk");
    let mut store = BurnpackStore::from_file(&partial)
        .auto_extension(false)
        .overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| Error::Config(format!("saving {}: {e}", partial.display())))?;
    rename(&partial, path)
}

/// Reads weights saved by [`save_model`] into `model`.
///
/// # Errors
/// A missing file or weights that do not fit `model`.
pub fn load_model(model: &mut SegmentationModel, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    model
        .load_from(&mut store)
        .map_err(|e| Error::Config(format!("loading {}: {e}", path.display())))?;
    Ok(())
}

fn write_then_rename(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| Error::io(&partial, e))?;
    rename(&partial, path)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))
}
