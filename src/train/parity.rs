//! The proof that an exported file keeps the model contract: burn's forward pass (inference
//! mode) and ONNX Runtime's run of the exported file agree on the same input.

use std::path::Path;

use burn::prelude::*;
use ndarray::{Array4, ArrayView4};

use super::model::SegmentationModel;
use crate::Result;
use crate::infer::{DeviceChoice, Segmenter, SegmenterOptions};

/// Largest absolute difference between burn's and ONNX Runtime's logits for `input` (N×3×H×W).
///
/// # Errors
/// When the ONNX file cannot be opened or run.
pub fn max_logit_difference(
    model: &SegmentationModel,
    onnx: &Path,
    input: ArrayView4<'_, f32>,
) -> Result<f32> {
    let expected = burn_forward(model, input);
    let options = SegmenterOptions {
        device: DeviceChoice::Cpu,
        threads: 0,
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
    let shape = input.dim();
    let data = TensorData::new(
        input.iter().copied().collect::<Vec<f32>>(),
        [shape.0, shape.1, shape.2, shape.3],
    );
    let logits = model.forward(Tensor::from_data(data, &device));
    let dims = logits.dims();
    let values = logits
        .into_data_as::<f32>()
        .try_to_vec()
        .expect("into_data_as::<f32> yields f32 data");
    Array4::from_shape_vec((dims[0], dims[1], dims[2], dims[3]), values)
        .expect("burn returns dims matching its data")
}
