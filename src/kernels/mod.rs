//! The CPU compute kernels training runs on burn's CPU backend (autodiff over Flex): GEMM
//! convolutions, depthwise and transposed ones, batch norm, bilinear resizing, element-wise
//! ops and activations, plane sums, the allocator and subnormal settings. A backend concern,
//! below both the training recipe (`train`) and the ONNX interpreter (`onnx::interpret`) that
//! use them; each falls back to burn's own op on any other device. Uses burn and nothing of the
//! crate above it.

pub mod activation;
pub mod conv;
mod conv_depthwise;
mod conv_gemm;
pub mod conv_transpose;
pub mod elementwise;
mod flex_data;
pub mod memory;
pub mod norm;
pub mod resize;
pub mod subnormals;
mod sums;

/// Whether `device` trains on burn's CPU backend (autodiff over Flex), where segstream's own
/// kernels run ([`conv`], [`conv_transpose`], [`norm`], [`activation`], [`elementwise`],
/// [`resize`]).
pub(crate) fn trains_on_cpu(device: &burn::prelude::Device) -> bool {
    device.is_autodiff() && device.clone().inner() == burn::prelude::Device::flex()
}
