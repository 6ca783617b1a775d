//! Training side, read as the recipe: the U-Net variants in burn, the training loop with its
//! data pipeline, augmentation, losses and schedules, checkpoints and reports, the ONNX export
//! and the parity check between the two. The CPU compute kernels it trains with are in
//! [`crate::kernels`], a room below it (the ONNX interpreter uses them too).
//!
//! Uses `kernels`, `onnx`, `dataset`, `imaging`, `infer`, `metrics`, `files` and `paths`.

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod encoder_weights;
pub mod export;
pub mod learner;
pub mod loader;
pub mod loss;
pub mod lr_find;
pub mod model;
pub mod parity;
mod plot;
pub mod pretrained;
pub mod report;
pub mod schedule;
