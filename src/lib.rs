//! segstream: segment video as it streams. GStreamer decodes frames, a staged pipeline batches
//! them through a U-Net run by ONNX Runtime, and the composited result is encoded again.
//!
//! Modules follow the path of a frame and of a model:
//! - [`infer`]: ONNX Runtime sessions, execution providers, the model card;
//! - [`onnx`]: writing ONNX graphs;
//! - `train` (feature `train`): the U-Nets in burn, export, parity.

pub mod cli;
pub mod commands;
mod error;
pub mod infer;
pub mod onnx;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Result};
