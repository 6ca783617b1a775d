//! Integration tests: real ONNX Runtime, real models written by our exporter.

mod cli;
mod helpers;
mod media;
mod model_errors;
#[cfg(feature = "train")]
mod parity;
mod segment;
