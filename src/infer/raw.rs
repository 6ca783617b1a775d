//! Running any ONNX model on one f32 input, outside the model contract: `import` checks its
//! rewrite against the original this way, and `quantize` reads every activation it calibrates.

use std::path::Path;

use ndarray::{ArrayD, ArrayViewD};
use ort::session::Session;
use ort::value::TensorRef;

use super::runtime;
use crate::{Error, Result};

/// Runs the model at `path` on the CPU with `input` as its only input; returns its first output.
///
/// # Errors
/// [`Error::Model`] when ONNX Runtime cannot open or run the model; [`Error::Runtime`] when the
/// library cannot be loaded.
pub fn run_once(path: &Path, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut session = RawSession::open(&bytes, path)?;
    let mut outputs = session.run(input)?;
    Ok(outputs.swap_remove(0).1)
}

/// A CPU session of a model held in memory, reporting every output.
pub struct RawSession {
    session: Session,
    /// The file the model came from, named in errors.
    origin: std::path::PathBuf,
}

impl RawSession {
    /// Opens the encoded model `bytes`; errors name `origin`.
    ///
    /// # Errors
    /// [`Error::Model`] when ONNX Runtime cannot open the model; [`Error::Runtime`] when the
    /// library cannot be loaded.
    pub fn open(bytes: &[u8], origin: &Path) -> Result<Self> {
        let session = Session::builder(runtime::environment()?)
            .map_err(|e| Error::Runtime(e.to_string()))?
            .commit_from_memory(bytes)
            .map_err(|e| Error::model(origin, e.to_string()))?;
        Ok(RawSession {
            session,
            origin: origin.to_path_buf(),
        })
    }

    /// Runs `input` through the model; returns each f32 output with its name, in order.
    ///
    /// # Errors
    /// [`Error::Model`] when ONNX Runtime rejects the input or an output is not f32.
    pub fn run(&mut self, input: ArrayViewD<'_, f32>) -> Result<Vec<(String, ArrayD<f32>)>> {
        let error = |e: ort::Error| Error::model(&self.origin, e.to_string());
        let input = input.as_standard_layout();
        let tensor = TensorRef::from_array_view(input.view()).map_err(error)?;
        let outputs = self.session.run(ort::inputs![tensor]).map_err(error)?;
        outputs
            .iter()
            .map(|(name, value)| {
                let array = value.try_extract_array::<f32>().map_err(error)?;
                Ok((name.to_string(), array.to_owned()))
            })
            .collect()
    }
}
