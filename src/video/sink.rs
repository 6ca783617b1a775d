//! The GStreamer sink edge: [`Frame`]s pushed into `appsrc name=out`, encoded and muxed.
//!
//! ```text
//! Frame --push--> appsrc(format=time, block) ! videoconvert ! encoder ! mux ! filesink
//!                 filesrc(input) ! decodebin ! audioconvert ! audio encoder ! mux.   (when audio)
//! ```

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::bus;
use super::frame::Frame;
use super::templates::{APPSRC, AUDIO_SOURCE, FILE_SINK, OutputKind, launch, named};
use crate::{Error, Result};

/// Frames of raw video the appsrc queues before `push` waits (bounded memory).
const APPSRC_QUEUED_FRAMES: u64 = 4;
/// How often a waiting `push` looks at the queue and the bus.
const PUSH_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// A sink pipeline accepting RGBA frames in order.
pub struct FrameSink {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    caps_set: bool,
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
        let sink = Self::from_description(&kind.description(with_audio))?;
        let file = sink.element(FILE_SINK)?;
        if kind == OutputKind::PngFolder {
            std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
            file.set_property("location", path.join("frame-%06d.png"));
        } else {
            file.set_property("location", path);
        }
        if let (true, Some(input)) = (with_audio, audio_from) {
            sink.element(AUDIO_SOURCE)?.set_property("location", input);
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
            caps_set: false,
            frames_written: 0,
        })
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
        if !self.caps_set {
            let caps = frame
                .info
                .to_caps()
                .map_err(|e| Error::Pipeline(format!("frame caps: {e}")))?;
            self.appsrc.set_caps(Some(&caps));
            self.appsrc
                .set_max_bytes(APPSRC_QUEUED_FRAMES * frame.pixels.len() as u64);
            self.caps_set = true;
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
        self.frames_written += 1;
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
