//! The GStreamer edges: the source pipeline delivering [`Frame`]s through an appsink, the sink
//! pipeline taking them through an appsrc, and the templates in `pipelines/`.

mod bus;
mod decoder;
mod frame;
mod live;
pub mod matroska;
mod mosaic;
mod sink;
mod source;
mod staged;
pub mod templates;

pub use decoder::{DecoderChoice, choose as choose_decoder};
pub use frame::{Frame, swap_red_and_blue};
pub use live::{CameraFormat, LiveInput, LiveOutput};
pub use mosaic::Mosaic;
pub use sink::{FrameOutput, FrameSink};
pub use source::{FrameSource, InputInfo, Pulled, init, probe_file};
pub use staged::{Settled, StagedOutput};
pub use templates::OutputKind;
