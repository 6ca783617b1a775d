//! The GStreamer edges: the source pipeline delivering [`Frame`]s through an appsink, the sink
//! pipeline taking them through an appsrc, and the templates in `pipelines/`.
//!
//! Uses `imaging` (frame conversions), `paths` and the error; `stream` and the doors stand on
//! it.

mod bus;
mod decoder;
mod frame;
mod init;
mod live;
pub mod matroska;
mod mosaic;
mod sink;
mod source;
mod staged;
pub mod templates;

pub use decoder::{DecoderChoice, choose as choose_decoder};
pub use frame::{Frame, swap_red_and_blue};
pub use init::init;
pub use live::{CameraFormat, LiveInput, LiveOutput};
pub use mosaic::Mosaic;
pub use sink::{FrameOutput, FrameSink};
pub use source::{FrameSource, InputInfo, Pulled, probe_file};
pub use staged::{Settled, StagedOutput};
pub use templates::OutputKind;
