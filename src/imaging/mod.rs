//! Pixel work around the model: pre-processing (resize + normalise), post-processing (logits
//! to a label mask at frame size) and composition (overlay, cut-out, mask).

pub mod compose;
pub mod postprocess;
pub mod preprocess;
mod resize;

pub use compose::{Background, Compositor, LabelStyle, Mode};
pub use postprocess::{Mask, Postprocessor};
pub use preprocess::Preprocessor;
