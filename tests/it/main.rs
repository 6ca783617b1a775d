//! Integration tests: real ONNX Runtime, real models written by our exporter.

mod bad_input;
mod bench;
mod camera;
mod cli;
#[cfg(feature = "train")]
mod dataset;
mod docs;
mod element;
#[cfg(feature = "train")]
mod encoder_weights;
mod encoding;
mod eval;
#[cfg(feature = "train")]
mod fine_tune;
mod gpu;
mod helpers;
mod import;
mod label;
mod label_hostile;
mod label_page;
mod many;
mod media;
mod metrics;
mod model_errors;
mod outputs;
#[cfg(feature = "train")]
mod parity;
mod quantize;
mod rtsp_server;
mod segment;
mod shipped;
#[cfg(feature = "train")]
mod train;
mod views;
mod yuv;
