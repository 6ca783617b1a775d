//! Composed frames back into buffers: the negotiated format, and everything the input buffer
//! carried besides its pixels (timestamps, duration, flags, metadata) plus the mask meta.

use gst_video::VideoFormat;
use gstreamer as gst;
use gstreamer_video as gst_video;

use super::meta;
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
    let Frame { pixels, mask, .. } = frame;
    let (width, height) = (frame.info.width() as usize, frame.info.height() as usize);
    let mut buffer = if passthrough {
        input
    } else {
        let mut buffer = gst::Buffer::from_mut_slice(packed(pixels, format, width, height));
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

/// Packed RGBA pixels as `format` lays them out (GStreamer's default strides).
fn packed(mut pixels: Vec<u8>, format: VideoFormat, width: usize, height: usize) -> Vec<u8> {
    match format {
        VideoFormat::Bgra | VideoFormat::Bgrx => {
            swap_red_and_blue(&mut pixels);
            pixels
        }
        VideoFormat::Gray8 => {
            // Rows of GRAY8 start on 4-byte boundaries.
            let stride = width.next_multiple_of(4);
            let mut gray = vec![0; stride * height];
            for (row, rgba) in gray
                .chunks_exact_mut(stride)
                .zip(pixels.chunks_exact(width * 4))
            {
                for (value, px) in row.iter_mut().zip(rgba.chunks_exact(4)) {
                    *value = px[0];
                }
            }
            gray
        }
        _ => pixels,
    }
}
