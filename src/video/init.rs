//! Initialising GStreamer, once per process: the lowest room of `video`, which every pipeline
//! builder calls first. Uses nothing of the crate but its error.

use gstreamer as gst;

use crate::{Error, Result};

/// Initialises GStreamer once.
///
/// # Errors
/// [`Error::Pipeline`] when GStreamer's libraries cannot be initialised.
pub fn init() -> Result<()> {
    gst::init().map_err(|e| Error::Pipeline(format!("cannot initialise GStreamer: {e}")))
}
