//! Training side: the U-Net variants in burn, their ONNX export and the parity check between
//! the two.

pub mod export;
pub mod model;
pub mod parity;
