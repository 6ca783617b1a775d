//! [`Frame`]: one decoded picture as it travels through the engine.

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use crate::imaging::compose::luma;
use crate::imaging::yuv::{I420Layout, YuvMatrix, i420_to_rgba};
use crate::imaging::{Mask, Scaler};
use crate::{Error, Result};

/// A picture with its position in the stream: packed RGBA, or I420 in GStreamer's default
/// layout (the decoder's format, kept when the output is encoded and nothing needs alpha).
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
    /// Format, geometry, colorimetry and frame rate: RGBA with stride = 4 × width, or I420
    /// with the planes where `info` puts them.
    pub info: gst_video::VideoInfo,
    /// The picture's bytes (`info.size()` of them).
    pub pixels: Vec<u8>,
    /// When the appsink handed the frame over: the start of its latency.
    pub received: Instant,
    /// The labels post-processing found (none before it).
    pub mask: Option<Mask>,
    /// When post-processing finished the frame (none before it): with `received`, the time
    /// the engine took, whatever then holds the frame back downstream.
    pub composed: Option<Instant>,
}

impl Frame {
    /// How long the engine took with the frame: from its arrival until post-processing finished
    /// it (until now, before that), whatever then holds it back downstream.
    pub fn engine_time(&self) -> Duration {
        self.composed.unwrap_or_else(Instant::now) - self.received
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.info.width() as usize
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.info.height() as usize
    }

    /// Where the planes lie, when the frame is I420 (`None` for RGBA).
    pub fn i420_layout(&self) -> Option<I420Layout> {
        (self.info.format() == gst_video::VideoFormat::I420).then(|| I420Layout::new(&self.info))
    }

    /// The frame's luma shrunk to `size` (width, height), each value the mean of its area.
    pub fn luma_at(&self, scaler: &mut Scaler, size: [usize; 2]) -> Vec<u8> {
        let full = [self.width(), self.height()];
        match self.i420_layout() {
            Some(layout) => scaler.gray(&layout.packed_plane(&self.pixels, 0), full, size),
            None => luma(&scaler.rgba(&self.pixels, full, size)),
        }
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
            composed: None,
        }
    }

    /// The frame in `buffer` (of geometry `info`: I420, NV12, RGBA, RGBx, BGRA or BGRx, any
    /// row stride), with the buffer's timestamps: I420 and NV12 become I420 (in the default
    /// layout; NV12's interleaved chroma is split into its planes), the others packed RGBA.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the buffer cannot be read or its format is another.
    pub fn from_buffer(
        buffer: &gst::BufferRef,
        info: &gst_video::VideoInfo,
        seq: u64,
        received: Instant,
    ) -> Result<Frame> {
        use gst_video::VideoFormat as F;
        let mapped = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
            .map_err(|e| Error::Pipeline(format!("cannot map a frame: {e}")))?;
        let format = match info.format() {
            F::I420 | F::Nv12 => F::I420,
            F::Rgba | F::Rgbx | F::Bgra | F::Bgrx => F::Rgba,
            other => {
                return Err(Error::Pipeline(format!(
                    "frames in {other:?}: only I420, NV12, RGBA, RGBx, BGRA and BGRx are read"
                )));
            }
        };
        let packed = geometry(format, info.width(), info.height(), info)?;
        let nv12 = info.format() == F::Nv12;
        // Rows are appended in order; only the packed layout's padding, if any, is zeroed.
        let mut pixels = Vec::with_capacity(packed.size());
        for to in 0..packed.n_planes() {
            // NV12 interleaves I420's U and V planes in its second plane, U first.
            let (from, interleaved) = match (nv12, to) {
                (true, 1 | 2) => (1, Some(to as usize - 1)),
                _ => (to, None),
            };
            let data = mapped
                .plane_data(from)
                .map_err(|e| Error::Pipeline(format!("cannot read a frame: {e}")))?;
            let from_stride = mapped.info().stride()[from as usize] as usize;
            let (row, rows) = plane_extent(&packed, to);
            for y in 0..rows {
                pixels.resize(row_start(&packed, to, y), 0);
                let source = &data[y * from_stride..];
                match interleaved {
                    Some(first) => pixels.extend(source[..2 * row].iter().skip(first).step_by(2)),
                    None => pixels.extend_from_slice(&source[..row]),
                }
            }
        }
        pixels.resize(packed.size(), 0);
        if matches!(info.format(), F::Bgra | F::Bgrx) {
            swap_red_and_blue(&mut pixels);
        }
        Ok(Frame {
            source: 0,
            seq,
            pts: buffer.pts(),
            duration: buffer.duration(),
            info: packed,
            pixels,
            received,
            mask: None,
            composed: None,
        })
    }

    /// The frame as packed RGBA (an I420 frame converted with its colorimetry; an RGBA one as
    /// it is).
    ///
    /// # Errors
    /// [`Error::Pipeline`] when GStreamer refuses the geometry.
    pub fn into_rgba(self) -> Result<Frame> {
        let Some(layout) = self.i420_layout() else {
            return Ok(self);
        };
        let matrix = YuvMatrix::new(&self.info.colorimetry());
        let info = geometry(
            gst_video::VideoFormat::Rgba,
            self.info.width(),
            self.info.height(),
            &self.info,
        )?;
        Ok(Frame {
            pixels: i420_to_rgba(&self.pixels, &layout, &matrix),
            info,
            ..self
        })
    }

    /// The same frame (sequence, timestamps, format, frame rate, arrival) at another size:
    /// `pixels` are of `width` × `height` in the frame's format.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when GStreamer refuses the geometry.
    pub fn resized(&self, width: usize, height: usize, pixels: Vec<u8>) -> Result<Frame> {
        let mut frame = self.with_pixels(pixels);
        frame.info = geometry(self.info.format(), width as u32, height as u32, &self.info)?;
        Ok(frame)
    }
}

/// Turns packed RGBA into BGRA and back.
pub fn swap_red_and_blue(pixels: &mut [u8]) {
    for px in pixels.chunks_exact_mut(4) {
        px.swap(0, 2);
    }
}

/// Bytes per row and rows of plane `plane` of `info` (for I420 and packed RGBA, whose
/// component `plane` lies in plane `plane`).
pub fn plane_extent(info: &gst_video::VideoInfo, plane: u32) -> (usize, usize) {
    let component = plane as u8;
    let row = info.comp_width(component) as usize * info.comp_pstride(component) as usize;
    (row, info.comp_height(component) as usize)
}

/// Where row `y` of plane `plane` of `info` starts.
pub fn row_start(info: &gst_video::VideoInfo, plane: u32, y: usize) -> usize {
    info.offset()[plane as usize] + y * info.stride()[plane as usize] as usize
}

/// The default layout of `format` at `width` × `height`, with the frame rate, pixel aspect,
/// colorimetry and chroma siting of `like`.
///
/// # Errors
/// [`Error::Pipeline`] when GStreamer refuses the geometry.
pub fn geometry(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    like: &gst_video::VideoInfo,
) -> Result<gst_video::VideoInfo> {
    let builder = gst_video::VideoInfo::builder(format, width, height)
        .fps(like.fps())
        .par(like.par());
    let builder = if format == gst_video::VideoFormat::I420 {
        builder
            .colorimetry(&like.colorimetry())
            .chroma_site(like.chroma_site())
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| Error::Pipeline(format!("frame geometry: {e}")))
}
