//! Training side: the U-Net variants in burn, the training loop with its data pipeline,
//! augmentation, losses and schedules, checkpoints and reports, the ONNX export and the parity
//! check between the two.

pub mod activation;
pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod conv;
mod conv_depthwise;
mod conv_gemm;
pub mod conv_transpose;
pub mod elementwise;
pub mod encoder_weights;
pub mod export;
mod flex_data;
pub mod learner;
pub mod loader;
pub mod loss;
pub mod lr_find;
pub mod memory;
pub mod model;
pub mod norm;
pub mod parity;
mod plot;
pub mod pretrained;
pub mod report;
pub mod resize;
pub mod schedule;
pub mod subnormals;
mod sums;

/// Whether `device` trains on burn's CPU backend (autodiff over Flex), where segstream's own
/// kernels run ([`conv`], [`conv_transpose`], [`norm`], [`activation`], [`elementwise`],
/// [`resize`]).
pub(crate) fn trains_on_cpu(device: &burn::prelude::Device) -> bool {
    device.is_autodiff() && device.clone().inner() == burn::prelude::Device::flex()
}
