//! Moving f32 values in and out of burn's CPU backend tensors, for segstream's own kernels.

use std::borrow::Cow;

use burn::tensor::TensorData;
use burn_flex::FlexTensor;

/// An f32 tensor's values in order (borrowed when it is contiguous already).
pub fn values(x: &FlexTensor) -> Cow<'_, [f32]> {
    match x.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(
            x.to_contiguous()
                .as_slice::<f32>()
                .expect("training runs in f32")
                .to_vec(),
        ),
    }
}

/// A tensor of `shape` holding `values`.
pub fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
