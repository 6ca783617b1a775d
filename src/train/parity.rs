//! The proof that an exported file keeps the model contract: burn's forward pass (inference
//! mode) and ONNX Runtime's run of the exported file agree on the same input; and that the
//! graph interpreter runs an ONNX file as ONNX Runtime does.

use std::path::Path;

use burn::prelude::*;
use ndarray::{Array4, ArrayView4};

use super::model::SegmentationModel;

use crate::infer::{DeviceChoice, Segmenter, SegmenterOptions};
use crate::onnx::interpret::GraphModel;
use crate::onnx::read_model;
use crate::{Error, Result};

/// Largest absolute difference between burn's and ONNX Runtime's logits for `input` (N×3×H×W).
///
/// # Errors
/// When the ONNX file cannot be opened or run.
pub fn max_logit_difference(
    model: &SegmentationModel,
    onnx: &Path,
    input: ArrayView4<'_, f32>,
) -> Result<f32> {
    difference_from_runtime(&burn_forward(model, input), onnx, input)
}

/// Largest absolute difference between the graph interpreter's logits (the ONNX file read as a
/// burn module, the way `train --init-from` reads it) and ONNX Runtime's, for `input`.
///
/// # Errors
/// When the file cannot be read, interpreted or run.
pub fn interpreter_difference(onnx: &Path, input: ArrayView4<'_, f32>) -> Result<f32> {
    let proto = read_model(onnx)?;
    let device = Device::flex();
    let graph = GraphModel::from_onnx(&proto, &device).map_err(|e| Error::model(onnx, e))?;
    let logits = graph.forward(tensor_from(input, &device));
    difference_from_runtime(&array_from(logits), onnx, input)
}

/// Largest absolute difference between `expected` and ONNX Runtime's run of `onnx` on `input`.
fn difference_from_runtime(
    expected: &Array4<f32>,
    onnx: &Path,
    input: ArrayView4<'_, f32>,
) -> Result<f32> {
    let options = SegmenterOptions {
        device: DeviceChoice::Cpu,
        ..SegmenterOptions::default()
    };
    let actual = Segmenter::load(onnx, &options)?.run(input)?;
    if expected.shape() != actual.shape() {
        return Ok(f32::INFINITY);
    }
    Ok(expected
        .iter()
        .zip(actual.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max))
}

/// Runs `model` in inference mode on the flex CPU device.
pub fn burn_forward(model: &SegmentationModel, input: ArrayView4<'_, f32>) -> Array4<f32> {
    let device = Device::flex();
    let model = model.valid().to_device(&device);
    array_from(model.forward(tensor_from(input, &device)))
}

fn tensor_from(input: ArrayView4<'_, f32>, device: &Device) -> Tensor<4> {
    let shape = input.dim();
    let data = TensorData::new(
        input.iter().copied().collect::<Vec<f32>>(),
        [shape.0, shape.1, shape.2, shape.3],
    );
    Tensor::from_data(data, device)
}

fn array_from(logits: Tensor<4>) -> Array4<f32> {
    let dims = logits.dims();
    let values = logits
        .into_data_as::<f32>()
        .try_to_vec()
        .expect("into_data_as::<f32> yields f32 data");
    Array4::from_shape_vec((dims[0], dims[1], dims[2], dims[3]), values)
        .expect("burn returns dims matching its data")
}
