//! [`Frame`]: one decoded picture as it travels through the engine.

use std::time::Instant;

use gstreamer as gst;
use gstreamer_video as gst_video;

use crate::imaging::Mask;
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
    /// The labels post-processing found (none before it).
    pub mask: Option<Mask>,
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

    /// The same frame (source, sequence, timestamps, geometry, arrival) with other pixels and
    /// no mask.
    pub fn with_pixels(&self, pixels: Vec<u8>) -> Frame {
        Frame {
            source: self.source,
            seq: self.seq,
            pts: self.pts,
            duration: self.duration,
            info: self.info.clone(),
            pixels,
            received: self.received,
            mask: None,
        }
    }

    /// The frame in `buffer` (of geometry `info`: RGBA, RGBx, BGRA or BGRx, any row stride)
    /// as packed RGBA, with the buffer's timestamps.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the buffer cannot be read or its format is another.
    pub fn from_buffer(
        buffer: &gst::BufferRef,
        info: &gst_video::VideoInfo,
        seq: u64,
        received: Instant,
    ) -> Result<Frame> {
        let swap_red_blue = match info.format() {
            gst_video::VideoFormat::Rgba | gst_video::VideoFormat::Rgbx => false,
            gst_video::VideoFormat::Bgra | gst_video::VideoFormat::Bgrx => true,
            other => {
                return Err(Error::Pipeline(format!(
                    "frames in {other:?}: only RGBA, RGBx, BGRA and BGRx are read"
                )));
            }
        };
        let mapped = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
            .map_err(|e| Error::Pipeline(format!("cannot map a frame: {e}")))?;
        let (width, height) = (info.width() as usize, info.height() as usize);
        let row = width * 4;
        let stride = info.stride()[0] as usize;
        let data = mapped
            .plane_data(0)
            .map_err(|e| Error::Pipeline(format!("cannot read a frame: {e}")))?;
        let mut pixels = if stride == row {
            data[..row * height].to_vec()
        } else {
            data.chunks(stride)
                .take(height)
                .flat_map(|r| &r[..row])
                .copied()
                .collect()
        };
        if swap_red_blue {
            swap_red_and_blue(&mut pixels);
        }
        Ok(Frame {
            source: 0,
            seq,
            pts: buffer.pts(),
            duration: buffer.duration(),
            info: packed_rgba(info.width(), info.height(), info)?,
            pixels,
            received,
            mask: None,
        })
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

/// Turns packed RGBA into BGRA and back.
pub fn swap_red_and_blue(pixels: &mut [u8]) {
    for px in pixels.chunks_exact_mut(4) {
        px.swap(0, 2);
    }
}

/// Packed RGBA geometry of `width` × `height`, with the frame rate and pixel aspect of `like`.
///
/// # Errors
/// [`Error::Pipeline`] when GStreamer refuses the geometry.
fn packed_rgba(
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
