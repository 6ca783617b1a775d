//! The GStreamer source edge: a pipeline ending in `appsink name=frames`, pulled into [`Frame`]s.
//!
//! ```text
//! filesrc ! decodebin ! videoconvert ! appsink(RGBA or I420, max-buffers) --pull--> Frame{seq, pts, ...}
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_pbutils as gst_pbutils;
use gstreamer_video as gst_video;
use gstreamer_video::VideoFormat;

use super::bus;
use super::frame::{Frame, geometry};
use super::init::init;
use super::templates::{
    APPSINK, FILE_SOURCE, FILE_SOURCE_TEMPLATE, OutputKind, launch, named, strip_comments,
};
use crate::imaging::resize::Scaler;
use crate::imaging::yuv::{I420Layout, YuvMatrix, fit_i420};
use crate::{Error, Result};

/// Frames the appsink holds before it blocks the decoder (back-pressure, bounded memory).
const APPSINK_MAX_BUFFERS: u32 = 4;
/// The smallest frame side segstream works on: below it there is nothing to segment, and the
/// encoders refuse such frames anyway.
pub const MIN_FRAME_SIDE: u32 = 16;
/// How long a file's source may send nothing after its frames covered the file's whole
/// duration before the file counts as ended: some demuxers (GStreamer's GIF reader among them)
/// spin after their last frame instead of ending the stream.
const SILENT_AFTER_END: Duration = Duration::from_secs(2);
/// Share of a file's duration its frames must cover for a silence to count as its end.
const COVERED_SHARE: f64 = 0.95;
/// How long a file's source may send nothing, short of its end, before the run says it waits.
const SILENT_WARNING: Duration = Duration::from_secs(10);
/// How long probing a file may take.
const PROBE_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(15);

/// What probing an input file found.
#[derive(Debug, Clone)]
pub struct InputInfo {
    /// Length of the file, when the container says.
    pub duration: Option<gst::ClockTime>,
    /// Frames per second of the video stream (0 when unknown or variable).
    pub fps: f64,
    /// Whether the file has an audio stream.
    pub has_audio: bool,
    /// Width and height of the video stream as stored (before any orientation tag).
    pub size: (u32, u32),
}

impl InputInfo {
    /// Expected number of frames, from duration × frame rate.
    pub fn expected_frames(&self) -> Option<u64> {
        let seconds = self.duration?.nseconds() as f64 / 1e9;
        (self.fps > 0.0).then(|| (seconds * self.fps).round() as u64)
    }
}

/// Checks that `path` is a readable video and finds its duration, frame rate and audio.
///
/// # Errors
/// [`Error::Input`] naming the file when it is missing, empty, not a media file, has no video
/// stream, needs a decoder that is not installed, or has frames smaller than
/// [`MIN_FRAME_SIDE`].
pub fn probe_file(path: &Path) -> Result<InputInfo> {
    let input_error = |reason: String| Error::Input {
        path: path.to_path_buf(),
        reason,
    };
    if path == Path::new("-") {
        return Err(input_error(
            "reading standard input is not supported: give a file, or read a pipe with \
             --source-pipeline 'fdsrc fd=0 ! decodebin ! videoconvert ! appsink name=frames'"
                .into(),
        ));
    }
    let metadata =
        std::fs::metadata(path).map_err(|e| input_error(format!("cannot read it: {e}")))?;
    if !metadata.is_file() {
        return Err(input_error("not a file".into()));
    }
    if metadata.len() == 0 {
        return Err(input_error("the file is empty".into()));
    }
    init()?;
    let absolute = std::path::absolute(path).map_err(|e| input_error(e.to_string()))?;
    let uri =
        gst::glib::filename_to_uri(&absolute, None).map_err(|e| input_error(e.to_string()))?;
    let discoverer =
        gst_pbutils::Discoverer::new(PROBE_TIMEOUT).map_err(|e| input_error(e.to_string()))?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| input_error(format!("GStreamer cannot read it as video: {e}")))?;
    if info.result() == gst_pbutils::DiscovererResult::MissingPlugins {
        let missing = info.missing_elements_installer_details().join(", ");
        return Err(input_error(format!(
            "unsupported codec: no GStreamer decoder installed ({missing})"
        )));
    }
    let Some(video) = info.video_streams().into_iter().next() else {
        return Err(input_error("no video stream in the file".into()));
    };
    let size = (video.width(), video.height());
    if size.0 < MIN_FRAME_SIDE || size.1 < MIN_FRAME_SIDE {
        return Err(input_error(format!(
            "its frames are {}×{} pixels; segstream needs at least {MIN_FRAME_SIDE}×{MIN_FRAME_SIDE}",
            size.0, size.1
        )));
    }
    let rate = video.framerate();
    let fps = if rate.denom() > 0 {
        f64::from(rate.numer()) / f64::from(rate.denom())
    } else {
        0.0
    };
    Ok(InputInfo {
        duration: info.duration(),
        fps,
        has_audio: !info.audio_streams().is_empty(),
        size,
    })
}

/// What [`FrameSource::pull`] got.
#[derive(Debug)]
pub enum Pulled {
    /// The next frame (boxed: a frame's header is large beside the other variants).
    Frame(Box<Frame>),
    /// Nothing within the timeout (the source is still running).
    Timeout,
    /// The source reached its end.
    End,
}

/// How frames get their presentation timestamps.
#[derive(Debug, Clone, Copy)]
enum Timing {
    /// The stream's own timestamps, repaired where missing or out of order (files).
    Stream,
    /// Time of arrival since the first frame (live feeds): continuous across dropped frames
    /// and reconnections, and the output plays at the pace the frames came.
    Arrival { first: Option<Instant> },
}

/// Builds a live feed's source pipeline anew (a reconnection).
type Reopen = Box<dyn Fn() -> Result<FrameSource> + Send + Sync>;

/// A running source pipeline delivering RGBA frames, or I420 ones ([`FrameSource::for_output`]).
pub struct FrameSource {
    pipeline: gst::Pipeline,
    appsink: gst_app::AppSink,
    next_seq: u64,
    timing: Timing,
    /// The live feed's name (device or URI), given in its errors.
    origin: Option<PathBuf>,
    /// A live feed's pipeline built anew, for a reconnection.
    reopen: Option<Reopen>,
    /// Where the next frame should start, for filling in missing timestamps.
    expected_pts: gst::ClockTime,
    /// Frames whose timestamp was missing or out of order.
    repaired_timestamps: u64,
    /// Size of the first frame: every later frame is delivered at this size.
    first_size: Option<[usize; 2]>,
    /// Frames of another size, fitted into the first size.
    refitted: u64,
    /// When the last frame came (or the source started), and whether its silence since was
    /// reported.
    last_frame: Option<Instant>,
    silence_reported: bool,
    scaler: Scaler,
}

impl FrameSource {
    /// The file source of `pipelines/sources/file.gst` reading `path`.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the pipeline cannot be built.
    pub fn file(path: &Path) -> Result<Self> {
        let mut source = Self::from_description(&strip_comments(FILE_SOURCE_TEMPLATE))?;
        source.element(FILE_SOURCE)?.set_property("location", path);
        source.origin = Some(path.to_path_buf());
        Ok(source)
    }

    /// A source from a gst-launch description that contains `appsink name=frames`.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the description does not parse or lacks the appsink.
    pub fn from_description(description: &str) -> Result<Self> {
        let (pipeline, appsink) =
            launch::<gst_app::AppSink>(description, "source", "appsink", APPSINK)?;
        deliver(&appsink, VideoFormat::Rgba);
        super::decoder::watch(&pipeline);
        appsink.set_max_buffers(APPSINK_MAX_BUFFERS);
        appsink.set_drop(false);
        appsink.set_sync(false);
        Ok(FrameSource {
            pipeline,
            appsink,
            next_seq: 0,
            timing: Timing::Stream,
            origin: None,
            reopen: None,
            expected_pts: gst::ClockTime::ZERO,
            repaired_timestamps: 0,
            first_size: None,
            refitted: 0,
            last_frame: None,
            silence_reported: false,
            scaler: Scaler::default(),
        })
    }

    /// The same source delivering its frames in the format an output of `kind` takes: I420
    /// when the output stores 4:2:0 ([`OutputKind::takes_i420`]) — the decoder's own format
    /// for most video, so the `videoconvert` before the appsink passes it through and
    /// converts once when the decoder gives another — and RGBA otherwise, as for a custom
    /// sink pipeline (`None`), which is promised RGBA.
    pub fn for_output(self, kind: Option<OutputKind>) -> Self {
        if kind.is_some_and(OutputKind::takes_i420) {
            deliver(&self.appsink, VideoFormat::I420);
        }
        self
    }

    /// The same source as the live feed `name`: frames are stamped with their arrival time,
    /// errors are [`Error::Input`]s naming the feed, and [`FrameSource::restart`] rebuilds its
    /// pipeline with `reopen`.
    pub fn live(
        mut self,
        name: &str,
        reopen: impl Fn() -> Result<FrameSource> + Send + Sync + 'static,
    ) -> Self {
        self.timing = Timing::Arrival { first: None };
        self.origin = Some(PathBuf::from(name));
        self.reopen = Some(Box::new(reopen));
        self
    }

    /// A pipeline error of a file or live feed as an input error naming it.
    fn attributed(&self, error: Error) -> Error {
        match (error, &self.origin) {
            (Error::Pipeline(reason), Some(path)) => Error::Input {
                path: path.clone(),
                reason,
            },
            (error, _) => error,
        }
    }

    /// The element named `name` of the source pipeline.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when there is none.
    pub fn element(&self, name: &str) -> Result<gst::Element> {
        named(&self.pipeline, "source", name)
    }

    /// Starts decoding.
    ///
    /// # Errors
    /// [`Error::Pipeline`] with GStreamer's reason when the pipeline will not play.
    pub fn start(&self) -> Result<()> {
        bus::set_state(&self.pipeline, gst::State::Playing).map_err(|e| self.attributed(e))
    }

    /// Stops and starts the source again: a network source reconnects, a decoder resets. A
    /// live feed's pipeline is built anew (an element that adds its pads while playing, such
    /// as `rtspsrc`, is not linked again by a restarted pipeline); frame numbers and arrival
    /// times go on.
    ///
    /// # Errors
    /// [`Error::Pipeline`] (or [`Error::Input`] naming a live feed) when the pipeline will not
    /// be built or play again.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        if let Some(reopen) = &self.reopen {
            let mut fresh = reopen()?;
            fresh.appsink.set_caps(self.appsink.caps().as_ref());
            std::mem::swap(&mut self.pipeline, &mut fresh.pipeline);
            std::mem::swap(&mut self.appsink, &mut fresh.appsink);
        }
        self.start()
    }

    /// Waits up to `timeout` for the next frame.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the pipeline posted an error (decoder failure, unreadable file).
    pub fn pull(&mut self, timeout: gst::ClockTime) -> Result<Pulled> {
        match self.appsink.try_pull_sample(timeout) {
            Some(sample) => {
                let received = Instant::now();
                self.last_frame = Some(received);
                let mut frame = frame_from_sample(&sample, self.next_seq, received)?;
                self.next_seq += 1;
                self.keep_first_size(&mut frame)?;
                match &mut self.timing {
                    Timing::Stream => self.fill_timestamps(&mut frame),
                    Timing::Arrival { first } => {
                        let since = received - *first.get_or_insert(received);
                        frame.pts = Some(gst::ClockTime::from_nseconds(since.as_nanos() as u64));
                    }
                }
                Ok(Pulled::Frame(Box::new(frame)))
            }
            None => match bus::pending_error(&self.pipeline) {
                Some(error) => Err(self.attributed(error)),
                None if self.appsink.is_eos() => Ok(Pulled::End),
                None if self.ended_without_saying() => Ok(Pulled::End),
                None => Ok(Pulled::Timeout),
            },
        }
    }

    /// Whether a stream-timed source (a file) has gone silent after frames covering its whole
    /// duration: its demuxer spins instead of ending (GStreamer's GIF reader does), and the
    /// run ends as at the end of the file, saying so. A silence short of the end is reported
    /// once, as a wait that Ctrl-C stops.
    fn ended_without_saying(&mut self) -> bool {
        if !matches!(self.timing, Timing::Stream) {
            return false;
        }
        let Some(silent) = self.last_frame.map(|last| last.elapsed()) else {
            self.last_frame = Some(Instant::now());
            return false;
        };
        let duration = self.pipeline.query_duration::<gst::ClockTime>();
        let covered = self.next_seq > 0
            && duration.is_some_and(|duration| {
                self.expected_pts.nseconds() as f64 >= COVERED_SHARE * duration.nseconds() as f64
            });
        if covered && silent >= SILENT_AFTER_END {
            tracing::warn!(
                "the input sent its frames up to its duration ({}) but did not end its stream \
                 (its demuxer keeps running, as GStreamer's GIF reader does); ending it there",
                self.expected_pts
            );
            return true;
        }
        if silent >= SILENT_WARNING && !self.silence_reported {
            self.silence_reported = true;
            tracing::warn!(
                frames = self.next_seq,
                "no frame from the input for {} s and it has not ended; still waiting (Ctrl-C \
                 stops and finalises the output)",
                silent.as_secs()
            );
        }
        false
    }

    /// The next frame where input never pauses (a file): `None` at the end.
    ///
    /// # Errors
    /// As [`FrameSource::pull`], and [`Error::Pipeline`] when no frame comes within `timeout`.
    pub fn next_frame(&mut self, timeout: gst::ClockTime) -> Result<Option<Box<Frame>>> {
        match self.pull(timeout)? {
            Pulled::Frame(frame) => Ok(Some(frame)),
            Pulled::End => Ok(None),
            Pulled::Timeout => Err(Error::Pipeline(format!(
                "no frame for {timeout}: the source stalled"
            ))),
        }
    }

    /// A stream can change resolution midway (clips joined in MPEG-TS or Matroska, a camera
    /// switching modes), but an encoder keeps the size it started with: a frame of another
    /// size is fitted into the first size (aspect ratio kept, black borders), said once.
    fn keep_first_size(&mut self, frame: &mut Frame) -> Result<()> {
        let size = [frame.width(), frame.height()];
        let first = *self.first_size.get_or_insert(size);
        if size == first {
            return Ok(());
        }
        self.refitted += 1;
        if self.refitted == 1 {
            tracing::warn!(
                frame = frame.seq,
                "the input changes resolution from {}×{} to {}×{}; fitting later frames into {}×{}",
                first[0],
                first[1],
                size[0],
                size[1],
                first[0],
                first[1]
            );
        }
        let pixels = match frame.i420_layout() {
            None => self.scaler.rgba_fit(&frame.pixels, size, first),
            Some(layout) => {
                let target = geometry(
                    VideoFormat::I420,
                    first[0] as u32,
                    first[1] as u32,
                    &frame.info,
                )?;
                let black = YuvMatrix::new(&frame.info.colorimetry()).from_rgb([0, 0, 0]);
                fit_i420(
                    &mut self.scaler,
                    &frame.pixels,
                    &layout,
                    &I420Layout::new(&target),
                    black,
                )
            }
        };
        *frame = frame.resized(first[0], first[1], pixels)?;
        Ok(())
    }

    /// Damaged files can yield frames without timestamps, or with timestamps that repeat or go
    /// backwards (e.g. `Megamind_bugy.avi`), which muxers refuse. Such a frame is moved to where
    /// the previous one ended; a missing duration becomes one frame interval.
    fn fill_timestamps(&mut self, frame: &mut Frame) {
        let fps = frame.info.fps();
        let interval = (fps.numer() > 0)
            .then(|| gst::ClockTime::SECOND.mul_div_floor(fps.denom() as u64, fps.numer() as u64))
            .flatten();
        let tolerance = interval.map_or(gst::ClockTime::ZERO, |i| i / 2);
        let pts = match frame.pts {
            Some(pts) if pts + tolerance >= self.expected_pts => pts,
            _ => {
                self.repaired_timestamps += 1;
                if self.repaired_timestamps == 1 {
                    tracing::warn!(
                        frame = frame.seq,
                        "the input has broken timestamps; repairing them"
                    );
                }
                self.expected_pts
            }
        };
        frame.pts = Some(pts);
        if frame.duration.is_none() {
            frame.duration = interval;
        }
        self.expected_pts = pts + frame.duration.unwrap_or_default();
    }

    /// Stops the pipeline.
    pub fn stop(&self) {
        // Going to Null cannot fail in a way the caller could act on.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for FrameSource {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Has `appsink` take frames in `format`.
fn deliver(appsink: &gst_app::AppSink, format: VideoFormat) {
    appsink.set_caps(Some(
        &gst_video::VideoCapsBuilder::new().format(format).build(),
    ));
}

/// Copies a sample into a [`Frame`] (as [`Frame::from_buffer`] reads it).
fn frame_from_sample(sample: &gst::Sample, seq: u64, received: Instant) -> Result<Frame> {
    let caps = sample
        .caps()
        .ok_or_else(|| Error::Pipeline("appsink sample without caps".into()))?;
    let info = gst_video::VideoInfo::from_caps(caps)
        .map_err(|e| Error::Pipeline(format!("appsink caps {caps}: {e}")))?;
    let buffer = sample
        .buffer()
        .ok_or_else(|| Error::Pipeline("appsink sample without buffer".into()))?;
    Frame::from_buffer(buffer, &info, seq, received)
}
