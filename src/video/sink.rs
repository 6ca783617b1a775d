//! The GStreamer sink edge: [`Frame`]s pushed into `appsrc name=out`, encoded and muxed.
//!
//! ```text
//! Frame --push--> appsrc(format=time, block, RGBA or I420) ! videoconvert ! encoder ! mux ! filesink
//!                 filesrc(input) ! decodebin ! audioconvert ! audio encoder ! mux.   (when audio)
//! ```

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::bus;
use super::frame::{Frame, geometry, plane_extent, row_start};
use super::staged::FRAME_PREFIX;
use super::templates::{
    APPSRC, AUDIO_DECODER, AUDIO_SOURCE, ENCODER, FILE_SINK, OutputKind, launch, named,
};
use crate::{Error, Result};

/// Frames of raw video the appsrc queues before `push` waits (bounded memory).
const APPSRC_QUEUED_FRAMES: u64 = 4;
/// How often a waiting `push` looks at the queue and the bus.
const PUSH_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// Where a lane's composed frames go: a sink pipeline of its own ([`FrameSink`]) or a tile of
/// one that several sources share (a `Mosaic`).
pub trait FrameOutput: Send {
    /// Pushes the next frame (in order), keeping its timestamps.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the output refuses it (encoder or writer failure).
    fn push(&mut self, frame: Frame) -> Result<()>;

    /// Ends the stream and finalises what it wrote (`interrupted`: as [`FrameSink::finish`]);
    /// returns the number of frames written.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the output fails while finishing.
    fn finish(self: Box<Self>, interrupted: bool) -> Result<u64>;
}

/// A sink pipeline accepting frames (RGBA or I420, the first frame's format) in order.
pub struct FrameSink {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    /// Size of the frames pushed, set by the first (after padding).
    size: Option<[usize; 2]>,
    /// Whether the encoder needs even sizes (4:2:0 chroma): odd frames get one more column or
    /// row, a copy of the last.
    even_size: bool,
    frames_written: u64,
}

impl FrameSink {
    /// The sink for `path` (kind by extension), with the audio of `audio_from` muxed in when
    /// given and the container carries audio.
    ///
    /// # Errors
    /// [`Error::Io`] when a PNG folder cannot be created; [`Error::Pipeline`] when the pipeline
    /// cannot be built or the output cannot be opened for writing.
    pub fn to_path(path: &Path, kind: OutputKind, audio_from: Option<&Path>) -> Result<Self> {
        let with_audio = audio_from.is_some() && kind.has_audio();
        let mut sink = Self::from_description(&kind.description(with_audio))?;
        sink.even_size = kind.needs_even_size();
        let file = sink.element(FILE_SINK)?;
        if kind == OutputKind::PngFolder {
            std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
            file.set_property("location", path.join(format!("{FRAME_PREFIX}%06d.png")));
        } else {
            file.set_property("location", path);
        }
        if let (true, Some(input)) = (with_audio, audio_from) {
            sink.element(AUDIO_SOURCE)?.set_property("location", input);
            decode_audio_only(&sink.element(AUDIO_DECODER)?)?;
        }
        Ok(sink)
    }

    /// A sink from a gst-launch description that contains `appsrc name=out`.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the description does not parse or lacks the appsrc.
    pub fn from_description(description: &str) -> Result<Self> {
        let (pipeline, appsrc) = launch::<gst_app::AppSrc>(description, "sink", "appsrc", APPSRC)?;
        appsrc.set_format(gst::Format::Time);
        // Not blocking: `push` waits itself, watching the bus, so that a pipeline that stopped
        // on an error cannot leave it blocked forever.
        appsrc.set_block(false);
        appsrc.set_is_live(false);
        Ok(FrameSink {
            pipeline,
            appsrc,
            size: None,
            even_size: false,
            frames_written: 0,
        })
    }

    /// The same sink for an encoder that needs even frame sizes (H.264 in 4:2:0).
    pub fn with_even_size(mut self) -> Self {
        self.even_size = true;
        self
    }

    /// Sets the H.264 encoder's speed preset (x264's `speed-preset`), and for live outputs its
    /// zero-latency tuning with no look-ahead. Outputs without an H.264 encoder are left as
    /// they are.
    ///
    /// # Errors
    /// [`Error::Config`] for a preset x264 does not have.
    pub fn with_preset(self, preset: &str, live: bool) -> Result<Self> {
        let Ok(encoder) = self.element(ENCODER) else {
            return Ok(self);
        };
        let set = |property: &str, value: &str| {
            use gst::glib::{ParamSpecEnum, ParamSpecFlags};
            let known = encoder.find_property(property).is_some_and(|spec| {
                match (
                    spec.downcast_ref::<ParamSpecEnum>(),
                    spec.downcast_ref::<ParamSpecFlags>(),
                ) {
                    (Some(choice), _) => choice.enum_class().value_by_nick(value).is_some(),
                    (_, Some(flags)) => flags.flags_class().value_by_nick(value).is_some(),
                    _ => false,
                }
            });
            if !known {
                return Err(Error::Config(format!(
                    "the encoder has no {property} '{value}'"
                )));
            }
            encoder.set_property_from_str(property, value);
            Ok(())
        };
        set("speed-preset", preset)?;
        if live {
            set("tune", "zerolatency")?;
            // The file templates' look-ahead would hold 10 frames back; properties set on the
            // element win over the tuning, so they are undone here.
            encoder.set_property("rc-lookahead", 0i32);
            encoder.set_property("mb-tree", false);
        }
        Ok(self)
    }

    /// Limits the H.264 encoder to `threads` (x264 otherwise takes 1.5 per core, each with
    /// frames of its own: when several outputs are encoded at once, the cores are already
    /// shared and the extra threads only hold memory). Outputs without one are left as they are.
    pub fn with_encoder_threads(self, threads: u32) -> Self {
        if let Ok(encoder) = self.element(ENCODER) {
            encoder.set_property("threads", threads);
        }
        self
    }

    /// The element named `name` of the sink pipeline.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when there is none.
    pub fn element(&self, name: &str) -> Result<gst::Element> {
        named(&self.pipeline, "sink", name)
    }

    /// Starts the pipeline; an output that cannot be opened fails here.
    ///
    /// # Errors
    /// [`Error::Pipeline`] with GStreamer's reason.
    pub fn start(&self) -> Result<()> {
        bus::set_state(&self.pipeline, gst::State::Playing)
    }

    /// Pushes the next frame (in order), keeping its timestamps.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the pipeline refuses it (encoder or writer failure).
    pub fn push(&mut self, frame: Frame) -> Result<()> {
        let frame = if self.even_size {
            padded_to_even(frame)?
        } else {
            frame
        };
        let size = [frame.width(), frame.height()];
        match self.size {
            None => self.set_caps(&frame)?,
            // The source keeps every frame at the first one's size; a sink never guesses.
            Some(first) if first != size => {
                return Err(Error::Pipeline(format!(
                    "a {}×{} frame after {}×{} ones: the output cannot change size",
                    size[0], size[1], first[0], first[1]
                )));
            }
            Some(_) => {}
        }
        self.wait_for_room()?;
        let mut buffer = gst::Buffer::from_mut_slice(frame.pixels);
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            buffer.set_pts(frame.pts);
            buffer.set_duration(frame.duration);
        }
        self.appsrc.push_buffer(buffer).map_err(|flow| {
            bus::pending_error(&self.pipeline)
                .unwrap_or_else(|| Error::Pipeline(format!("the sink refused a frame: {flow:?}")))
        })?;
        if let Some(error) = bus::pending_error(&self.pipeline) {
            return Err(error);
        }
        self.frames_written += 1;
        Ok(())
    }

    /// Takes the stream's caps from its first frame.
    fn set_caps(&mut self, frame: &Frame) -> Result<()> {
        let caps = frame
            .info
            .to_caps()
            .map_err(|e| Error::Pipeline(format!("frame caps: {e}")))?;
        self.appsrc.set_caps(Some(&caps));
        self.appsrc
            .set_max_bytes(APPSRC_QUEUED_FRAMES * frame.pixels.len() as u64);
        self.size = Some([frame.width(), frame.height()]);
        Ok(())
    }

    /// Waits until the appsrc queue has room, or fails with the pipeline's error.
    fn wait_for_room(&self) -> Result<()> {
        while self.appsrc.current_level_bytes() >= self.appsrc.max_bytes() {
            if let Some(error) = bus::pending_error(&self.pipeline) {
                return Err(error);
            }
            std::thread::sleep(PUSH_POLL);
        }
        Ok(())
    }

    /// Ends the stream and waits until the file is finalised. When `interrupted`, every source
    /// of the sink (the audio branch too) is ended at once; otherwise audio runs to its end.
    /// Returns the number of frames written.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the pipeline reports an error while finishing.
    pub fn finish(self, interrupted: bool) -> Result<u64> {
        if self.frames_written == 0 {
            // No frame, so no caps sent: nothing to finalise. And GStreamer 1.26's appsrc holds
            // back every event, end-of-stream included, until it has sent caps, so waiting for
            // the end of a stream that never had any would wait forever.
            let _ = self.pipeline.set_state(gst::State::Null);
            return Ok(0);
        }
        if interrupted {
            self.pipeline.send_event(gst::event::Eos::new());
        } else {
            // Fails only when the appsrc is already flushing, i.e. the pipeline has stopped,
            // which the bus reports below.
            let _ = self.appsrc.end_of_stream();
        }
        let result = bus::wait_for_eos(&self.pipeline);
        let _ = self.pipeline.set_state(gst::State::Null);
        result.map(|()| self.frames_written)
    }
}

impl FrameOutput for FrameSink {
    fn push(&mut self, frame: Frame) -> Result<()> {
        FrameSink::push(self, frame)
    }

    fn finish(self: Box<Self>, interrupted: bool) -> Result<u64> {
        FrameSink::finish(*self, interrupted)
    }
}

impl Drop for FrameSink {
    /// A sink dropped without [`FrameSink::finish`] (its run failed) is stopped, so that its
    /// elements are not disposed of while playing.
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// `frame` with one more column and/or row (copies of the last) when its width or height is
/// odd; said once per process. (In I420 only the luma plane grows: the chroma planes of an odd
/// side already cover one more pixel.)
fn padded_to_even(frame: Frame) -> Result<Frame> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let (width, height) = (frame.width(), frame.height());
    let (even_width, even_height) = (width.next_multiple_of(2), height.next_multiple_of(2));
    if (even_width, even_height) == (width, height) {
        return Ok(frame);
    }
    SAID.call_once(|| {
        tracing::warn!(
            "the encoder needs even frame sizes: {width}×{height} is written as \
             {even_width}×{even_height} (the last column/row repeated)"
        );
    });
    let (from, to) = (
        &frame.info,
        &geometry(
            frame.info.format(),
            even_width as u32,
            even_height as u32,
            &frame.info,
        )?,
    );
    let mut pixels = vec![0u8; to.size()];
    for plane in 0..to.n_planes() {
        let pixel = to.comp_pstride(plane as u8) as usize;
        let ((row, rows), (padded_row, padded_rows)) =
            (plane_extent(from, plane), plane_extent(to, plane));
        for y in 0..padded_rows {
            let line = &frame.pixels[row_start(from, plane, y.min(rows - 1))..][..row];
            let out = &mut pixels[row_start(to, plane, y)..][..padded_row];
            out[..row].copy_from_slice(line);
            for extra in out[row..].chunks_exact_mut(pixel) {
                extra.copy_from_slice(&line[row - pixel..]);
            }
        }
    }
    frame.resized(even_width, even_height, pixels)
}

/// Has the audio branch's `decodebin` plug no video, image or subtitle decoder (nor parser):
/// it reads the whole input a second time, and decoding the video again cost a decoder's CPU
/// and memory per output (1 s of CPU and 22 MB for a 9 s 960×540 clip) for frames nobody uses.
/// Those streams stay unlinked, as the video did after decoding before.
fn decode_audio_only(decodebin: &gst::Element) -> Result<()> {
    // `GstAutoplugSelectResult`, an enum the playback plugin registers: 0 "try", 2 "skip".
    let result_type = gst::glib::Type::from_name("GstAutoplugSelectResult").ok_or_else(|| {
        Error::Pipeline("decodebin's autoplug-select result type is missing".into())
    })?;
    decodebin.connect("autoplug-select", false, move |values| {
        let klass = values
            .get(3)
            .and_then(|v| v.get::<gst::ElementFactory>().ok())
            .and_then(|f| f.metadata(gst::ELEMENT_METADATA_KLASS).map(str::to_owned))
            .unwrap_or_default();
        let other = ["Video", "Image", "Subtitle"]
            .iter()
            .any(|media| klass.contains(media));
        gst::glib::EnumClass::with_type(result_type)?.to_value(if other { 2 } else { 0 })
    });
    Ok(())
}
