//! Pixel work around the model: pre-processing (resize + normalise), post-processing (logits
//! to a label mask at frame size), soft alpha along the edges, composition (overlay, cut-out,
//! mask) and contact sheets.
//!
//! Uses `infer` (the model card) and the error; below `stream`, `video`, `dataset`, `eval`,
//! `label` and `train`.

pub mod compose;
pub mod grid;
pub mod matte;
pub mod postprocess;
pub mod preprocess;
pub mod resize;
pub mod sheet;
pub mod smoothing;
mod styles;
pub mod yuv;

pub use compose::{Background, Compositor, LabelStyle, Mode};
pub use matte::Edge;
pub use postprocess::{Mask, Postprocessor};
pub use preprocess::{Normalizer, Preprocessor};
pub use resize::Scaler;
pub use sheet::{LabelColors, SheetRow};
pub use smoothing::Smoothing;
pub use styles::label_styles;
