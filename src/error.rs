//! The crate's one error type. Variants are grouped by what the user has to fix; every message
//! names the file, element or option involved and, where there is one, the fix.

use std::path::PathBuf;

use crate::paths::shown;

/// Everything that can go wrong in segstream's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input video or image cannot be used.
    #[error("input {}: {reason}", shown(path))]
    Input { path: PathBuf, reason: String },

    /// The model file is missing, unreadable or does not follow the model contract.
    #[error("model {}: {reason}", shown(path))]
    Model { path: PathBuf, reason: String },

    /// ONNX Runtime could not be loaded or refused to run.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),

    /// A dataset for training or evaluation is incomplete or inconsistent.
    #[error("dataset {}: {reason}", shown(path))]
    Dataset { path: PathBuf, reason: String },

    /// A GStreamer pipeline failed to build or reported an error while running.
    #[error("pipeline: {0}")]
    Pipeline(String),

    /// Options that contradict each other or are out of range.
    #[error("{0}")]
    Config(String),

    /// Reading or writing a file failed.
    #[error("{}: {source}", shown(path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A model could not be written as ONNX.
    #[error("ONNX export: {0}")]
    Export(String),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A model error on `path`.
    pub fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
