//! [`Frame`]: one decoded picture as it travels through the engine.

use std::time::Instant;

use gstreamer as gst;
use gstreamer_video as gst_video;

use crate::{Error, Result};

/// A tightly packed RGBA picture with its position in the stream.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The source the frame comes from, when an engine serves several (0 for the first).
    pub source: u32,
    /// Arrival order from its source, from 0; with `source`, the only ordering key downstream.
    pub seq: u64,
    /// Presentation timestamp from the source.
    pub pts: Option<gst::ClockTime>,
    /// Duration from the source.
    pub duration: Option<gst::ClockTime>,
    /// Geometry and frame rate (format RGBA, stride = 4 × width).
    pub info: gst_video::VideoInfo,
    /// Row-major RGBA bytes, `4 × width × height` of them.
    pub pixels: Vec<u8>,
    /// When the appsink handed the frame over: the start of its latency.
    pub received: Instant,
}

impl Frame {
    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.info.width() as usize
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.info.height() as usize
    }

    /// The same frame (source, sequence, timestamps, geometry, arrival) with other pixels.
    pub fn with_pixels(&self, pixels: Vec<u8>) -> Frame {
        Frame {
            source: self.source,
            seq: self.seq,
            pts: self.pts,
            duration: self.duration,
            info: self.info.clone(),
            pixels,
            received: self.received,
        }
    }

    /// The same frame (sequence, timestamps, frame rate, arrival) at another size: `pixels`
    /// are packed RGBA of `width` × `height`.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when GStreamer refuses the geometry.
    pub fn resized(&self, width: usize, height: usize, pixels: Vec<u8>) -> Result<Frame> {
        let mut frame = self.with_pixels(pixels);
        frame.info = packed_rgba(width as u32, height as u32, &self.info)?;
        Ok(frame)
    }
}

/// Packed RGBA geometry of `width` × `height`, with the frame rate and pixel aspect of `like`.
///
/// # Errors
/// [`Error::Pipeline`] when GStreamer refuses the geometry.
pub(super) fn packed_rgba(
    width: u32,
    height: u32,
    like: &gst_video::VideoInfo,
) -> Result<gst_video::VideoInfo> {
    gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgba, width, height)
        .fps(like.fps())
        .par(like.par())
        .build()
        .map_err(|e| Error::Pipeline(format!("frame geometry: {e}")))
}
