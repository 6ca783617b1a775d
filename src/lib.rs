//! segstream: segment video as it streams. GStreamer decodes frames, a staged pipeline batches
//! them through a U-Net run by ONNX Runtime, and the composited result is encoded again.
//!
//! Modules follow the path of a frame and of a model:
//! - [`video`]: the GStreamer edges (appsink source, appsrc sink, `pipelines/` templates);
//! - [`imaging`]: pre-processing, post-processing, composition;
//! - [`infer`]: ONNX Runtime sessions, execution providers, the model card;
//! - [`onnx`]: writing ONNX graphs;
//! - [`dataset`], [`metrics`] and [`eval`]: labelled images, their scores, model evaluation;
//! - [`element`]: the GStreamer plugin (`segstream` element), one more door into the engine;
//! - [`label`]: the labelling page, which turns corrected frames into a dataset;
//! - [`telemetry`]: live figures of a run for Prometheus, and the endpoint that serves them;
//! - [`bench`]: decode, inference and end-to-end throughput, and N streams in one process
//!   against N processes;
//! - `train` (feature `train`): the U-Nets in burn, export, parity; `kernels` (feature
//!   `train`): the CPU compute kernels training and the ONNX interpreter run on.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod dataset;
pub mod element;
mod error;
pub mod eval;
pub mod files;
pub mod imaging;
pub mod infer;
#[cfg(feature = "train")]
pub mod kernels;
pub mod label;
pub mod metrics;
pub mod onnx;
pub mod paths;
pub mod stream;
pub mod telemetry;
#[cfg(feature = "train")]
pub mod train;
pub mod video;

pub use error::{Error, Result};
