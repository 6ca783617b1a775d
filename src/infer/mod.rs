//! Inference with ONNX Runtime: loading the library, opening a model, checking it against the
//! model contract, reading its card and running batches.
//!
//! Uses `paths` and the error only; every room that runs a model stands on it.

mod limits;
pub mod model_card;
pub mod raw;
mod runtime;
mod segmenter;

pub use limits::{
    MAX_INPUT_SIDE, available_memory, check_input_size, check_working_memory,
    working_bytes_per_pixel,
};
pub use model_card::ModelCard;
pub use segmenter::{
    CudnnOptions, CudnnSearch, DeviceChoice, Provider, Reopen, Segmenter, SegmenterOptions,
};
