//! Composed frames back into buffers: the negotiated format, and everything the input buffer
//! carried besides its pixels (timestamps, duration, flags, metadata) plus the mask meta.

use gst_video::VideoFormat;
use gstreamer as gst;
use gstreamer_video as gst_video;

use super::meta;
use crate::imaging::yuv::{I420Layout, YuvMatrix};
use crate::video::{Frame, swap_red_and_blue};

/// The buffer to send for `frame` (composed from `input`) in `format`; `passthrough` sends the
/// input buffer itself with the mask added.
pub fn buffer_for(
    frame: Frame,
    input: gst::Buffer,
    format: VideoFormat,
    passthrough: bool,
    classes: &str,
) -> Result<gst::Buffer, gst::FlowError> {
    let Frame {
        pixels, mask, info, ..
    } = frame;
    let mut buffer = if passthrough {
        input
    } else {
        let mut buffer = gst::Buffer::from_mut_slice(packed(pixels, &info, format)?);
        let out = buffer.get_mut().ok_or(gst::FlowError::Error)?;
        input
            .copy_into(
                out,
                gst::BufferCopyFlags::FLAGS
                    | gst::BufferCopyFlags::TIMESTAMPS
                    | gst::BufferCopyFlags::META,
                ..,
            )
            .map_err(|_| gst::FlowError::Error)?;
        // The input's layout does not describe the new pixels.
        if let Some(video_meta) = out.meta_mut::<gst_video::VideoMeta>() {
            video_meta.remove().map_err(|_| gst::FlowError::Error)?;
        }
        buffer
    };
    if let Some(mask) = mask {
        meta::attach(buffer.make_mut(), mask, classes).map_err(|_| gst::FlowError::Error)?;
    }
    Ok(buffer)
}

/// A composed frame's `pixels` (packed RGBA or I420, laid out as `info` says) as `format` lays
/// them out (GStreamer's default strides).
fn packed(
    mut pixels: Vec<u8>,
    info: &gst_video::VideoInfo,
    format: VideoFormat,
) -> Result<Vec<u8>, gst::FlowError> {
    let (width, height) = (info.width() as usize, info.height() as usize);
    let yuv = info.format() == VideoFormat::I420;
    Ok(match format {
        VideoFormat::Bgra | VideoFormat::Bgrx if !yuv => {
            swap_red_and_blue(&mut pixels);
            pixels
        }
        VideoFormat::Gray8 => {
            // Rows of GRAY8 start on 4-byte boundaries.
            let stride = width.next_multiple_of(4);
            let mut gray = vec![0; stride * height];
            let rows = gray.chunks_exact_mut(stride);
            if yuv {
                // The mask was drawn as greys: each luma back to its grey.
                let layout = I420Layout::new(info);
                let grey = greys_of_luma(&YuvMatrix::new(&info.colorimetry()));
                for (y, row) in rows.enumerate() {
                    for (value, &luma) in row.iter_mut().zip(layout.row(&pixels, 0, y)) {
                        *value = grey[usize::from(luma)];
                    }
                }
            } else {
                for (row, rgba) in rows.zip(pixels.chunks_exact(width * 4)) {
                    for (value, px) in row.iter_mut().zip(rgba.chunks_exact(4)) {
                        *value = px[0];
                    }
                }
            }
            gray
        }
        VideoFormat::Nv12 if yuv => {
            let layout = I420Layout::new(info);
            let nv12 =
                gst_video::VideoInfo::builder(VideoFormat::Nv12, width as u32, height as u32)
                    .build()
                    .map_err(|_| gst::FlowError::Error)?;
            let mut out = vec![0; nv12.size()];
            let (offsets, strides) = (nv12.offset(), nv12.stride());
            for y in 0..height {
                let start = offsets[0] + y * strides[0] as usize;
                out[start..start + width].copy_from_slice(layout.row(&pixels, 0, y));
            }
            for y in 0..layout.plane_size(1)[1] {
                let start = offsets[1] + y * strides[1] as usize;
                let (u, v) = (layout.row(&pixels, 1, y), layout.row(&pixels, 2, y));
                for (x, pair) in out[start..start + 2 * u.len()]
                    .chunks_exact_mut(2)
                    .enumerate()
                {
                    pair.copy_from_slice(&[u[x], v[x]]);
                }
            }
            out
        }
        // The frame is in the format sent: RGBA for the RGB family, I420 for I420.
        _ if yuv == (format == VideoFormat::I420) => pixels,
        _ => return Err(gst::FlowError::NotNegotiated),
    })
}

/// For each luma value, the grey (R = G = B) that `matrix` turns into it (the darkest of
/// several): masks drawn in I420 are greys.
fn greys_of_luma(matrix: &YuvMatrix) -> [u8; 256] {
    let mut grey = [0; 256];
    let mut seen = [false; 256];
    for value in 0..=255u8 {
        let luma = usize::from(matrix.from_rgb([value; 3])[0]);
        if !seen[luma] {
            (grey[luma], seen[luma]) = (value, true);
        }
    }
    // Lumas no grey gives (outside limited range) take the grey below them.
    for luma in 1..256 {
        if !seen[luma] {
            grey[luma] = grey[luma - 1];
        }
    }
    grey
}
