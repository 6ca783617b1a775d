//! Running any ONNX model once on one f32 input, outside the model contract: `import` checks
//! its rewrite against the original this way.

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
    let error = |e: ort::Error| Error::model(path, e.to_string());
    let mut session = Session::builder(runtime::environment()?)
        .map_err(|e| Error::Runtime(e.to_string()))?
        .commit_from_file(path)
        .map_err(error)?;
    let input = input.as_standard_layout();
    let tensor = TensorRef::from_array_view(input.view()).map_err(error)?;
    let outputs = session.run(ort::inputs![tensor]).map_err(error)?;
    let output = outputs[0].try_extract_array::<f32>().map_err(error)?;
    Ok(output.to_owned())
}
