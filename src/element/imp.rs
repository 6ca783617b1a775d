//! The `segstream` element: its sink pad is a door into the engine (a lane of the shared
//! [`Engine`](crate::stream::Engine)), its source pad's task the door out.
//!
//! ```text
//! sink pad (chain) ─Frame→ lane: preprocess → [engine: batcher → infer] → postprocess/compose ─Frame→ src pad task (reorder, push)
//!      └─ the input buffer and the serialized events, in arrival order (pending) ─────────────┘
//! ```
//!
//! The streaming thread only copies a frame in and returns, so upstream decoding, the engine
//! and downstream encoding overlap. Serialized events wait in `pending` behind the buffers
//! that came before them, so they leave in the order they came. EOS ends the lane; its last
//! frames are pushed before the EOS. A flush (or going to READY) detaches the lane: what it
//! still holds is drained on a thread of its own and never pushed.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoFormat;
use gstreamer as gst;
use gstreamer_video as gst_video;

use super::instances::{self, SharedEngine};
use super::latency::LatencyWatch;
use super::output;
use super::settings::{INPUT_FORMATS, PROPERTIES, Settings, output_format};
use crate::imaging::{Compositor, Edge, LabelStyle, Mode, label_styles};
use crate::stream::lane::{self, LaneInput, LaneOutput, LaneWorkers};
use crate::stream::{EngineConfig, Policy, Reorder};
use crate::telemetry::server::{self, MetricsServer};
use crate::telemetry::{self, SourceMeter};
use crate::video::Frame;

/// Input buffers a leaky element keeps for frames in flight. A live lane holds a few frames
/// (one a queue up to inference); when downstream takes nothing for a while, the oldest inputs
/// beyond these belong to frames that are dropped or too late anyway, and keeping them all
/// grew memory by a frame a frame (35 MB/s at 640×480, 30 fps).
const LEAKY_PENDING: usize = 32;

/// Forgets the oldest input buffers of `pending` beyond `keep` (events stay, in order).
fn forget_oldest_beyond(pending: &mut VecDeque<Pending>, keep: usize) {
    let buffers = pending
        .iter()
        .filter(|p| matches!(p, Pending::Buffer { .. }))
        .count();
    let mut excess = buffers.saturating_sub(keep);
    pending.retain(|p| match p {
        Pending::Buffer { .. } if excess > 0 => {
            excess -= 1;
            false
        }
        _ => true,
    });
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segstream",
        gst::DebugColorFlags::empty(),
        Some("segstream: segmentation by a U-Net in ONNX Runtime"),
    )
});

/// What waits to be sent downstream, in arrival order.
enum Pending {
    /// An input buffer whose composed frame has sequence number `seq`.
    Buffer {
        seq: u64,
        buffer: gst::Buffer,
        format: VideoFormat,
    },
    /// A serialized event that came after the buffers before it.
    Event(gst::Event),
}

/// The lane this element feeds and its bookkeeping.
struct Lane {
    /// `None` once the input ended (EOS); shared with a chain call that is sending.
    input: Option<Arc<LaneInput>>,
    output: LaneOutput,
    workers: LaneWorkers,
    /// Sequence number of the next frame in.
    next_seq: u64,
    /// Puts frames back in order when several workers compose them.
    reorder: Option<Reorder>,
}

/// What the element holds between READY and PAUSED.
struct State {
    engine: Option<Arc<SharedEngine>>,
    /// Settings frozen when the element started.
    config: Option<EngineConfig>,
    mode: Option<Mode>,
    /// How cut-out edges are drawn.
    edge: Edge,
    /// How each label is drawn, for the compositors of each new lane.
    styles: Vec<LabelStyle>,
    /// The model's class names, comma-separated, for the mask meta.
    classes: Arc<str>,
    /// The negotiated input.
    info: Option<gst_video::VideoInfo>,
    lane: Option<Lane>,
    pending: VecDeque<Pending>,
    /// The last downstream flow result, returned upstream by the chain function.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    flushing: bool,
    /// The latency the element reports.
    latency: Option<LatencyWatch>,
    /// The input's time segment, to place buffers in running time.
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// Quality of service: the running time before which a frame would reach the sink late
    /// (from downstream's last QoS event), and the frames taken and dropped for it.
    qos: Qos,
    /// This element's live figures, and the endpoint serving them (`metrics-port`).
    meter: Option<Arc<SourceMeter>>,
    metrics: Option<Arc<MetricsServer>>,
}

/// What quality of service knows: frames earlier than `earliest` (running time) are dropped
/// before inference, counted.
#[derive(Debug, Default, Clone, Copy)]
struct Qos {
    earliest: Option<gst::ClockTime>,
    processed: u64,
    dropped: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            engine: None,
            config: None,
            mode: None,
            edge: Edge::default(),
            styles: Vec::new(),
            classes: Arc::from(""),
            info: None,
            lane: None,
            pending: VecDeque::new(),
            flow: Ok(gst::FlowSuccess::Ok),
            flushing: false,
            latency: None,
            segment: gst::FormattedSegment::new(),
            qos: Qos::default(),
            meter: None,
            metrics: None,
        }
    }
}

/// The element.
pub struct Segstream {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Wakes the source pad's task (a new lane, a flush, a stop).
    wake: (Sender<()>, Receiver<()>),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[glib::object_subclass]
impl ObjectSubclass for Segstream {
    const NAME: &'static str = "GstSegstream";
    type Type = super::Segstream;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let template = klass
            .pad_template("sink")
            .expect("the class has a sink template");
        let sinkpad = gst::Pad::builder_from_template(&template)
            .chain_function(|pad, parent, buffer| {
                Segstream::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                Segstream::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                Segstream::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_query(pad, query),
                )
            })
            .build();
        let template = klass
            .pad_template("src")
            .expect("the class has a src template");
        let srcpad = gst::Pad::builder_from_template(&template)
            .activatemode_function(|pad, parent, mode, active| {
                Segstream::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic activating the source pad")),
                    |this| this.src_activate(pad, mode, active),
                )
            })
            .query_function(|pad, parent, query| {
                Segstream::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_query(pad, query),
                )
            })
            .event_function(|pad, parent, event| {
                Segstream::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_event(pad, event),
                )
            })
            .build();
        Segstream {
            sinkpad,
            srcpad,
            settings: Mutex::default(),
            state: Mutex::default(),
            wake: bounded(1),
        }
    }
}

impl ObjectImpl for Segstream {
    fn properties() -> &'static [glib::ParamSpec] {
        &PROPERTIES
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        // Every setting is taken when the stream starts: as GStreamer's own elements do for
        // properties flagged mutable in READY, a change while running is refused aloud and the
        // old value kept (and read back), not silently ignored.
        let current = self.obj().current_state();
        if pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_READY) && current > gst::State::Ready {
            gst::warning!(
                CAT,
                imp = self,
                "property {} can change only in the NULL or READY state, not {current:?}: kept \
                 as it was (set it before the pipeline starts)",
                pspec.name()
            );
            return;
        }
        lock(&self.settings).set(pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        lock(&self.settings).get(pspec.name())
    }

    fn constructed(&self) {
        self.parent_constructed();
        let element = self.obj();
        element
            .add_pad(&self.sinkpad)
            .expect("a new element takes its sink pad");
        element
            .add_pad(&self.srcpad)
            .expect("a new element takes its source pad");
    }
}

impl GstObjectImpl for Segstream {}

impl ElementImpl for Segstream {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Segmentation",
                "Filter/Effect/Video",
                "Segments every frame with a U-Net run by ONNX Runtime (frames of several \
                 elements batched into one inference) and draws an overlay, a cut-out, a \
                 blurred or replaced background or the mask; the labels travel as \
                 SegstreamMaskMeta",
                "segstream developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = |formats: &[VideoFormat]| {
                gst_video::VideoCapsBuilder::new()
                    .format_list(formats.iter().copied())
                    .build()
            };
            let mut outputs = INPUT_FORMATS.to_vec();
            outputs.push(VideoFormat::Gray8);
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps(&INPUT_FORMATS),
                )
                .expect("valid sink template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps(&outputs),
                )
                .expect("valid src template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            self.start()?;
        }
        let success = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            let mut state = lock(&self.state);
            self.detach_lane(&mut state);
            if let Some(meter) = &state.meter {
                meter.end();
            }
            *state = State::default();
        }
        Ok(success)
    }
}

impl Segstream {
    /// Loads (or joins) the engine and checks the drawing settings: every mistake in them
    /// fails the change to PAUSED with a message naming it.
    fn start(&self) -> Result<(), gst::StateChangeError> {
        let settings = lock(&self.settings).clone();
        let edge = settings.edge();
        let port = u16::try_from(settings.metrics_port).unwrap_or(u16::MAX);
        let metrics = (port != 0)
            .then(|| server::shared_on_loopback(port))
            .transpose();
        let prepared = metrics.and_then(|metrics| {
            let (engine, joined) = instances::acquire(&settings)?;
            let mode = settings.mode()?;
            let card = engine.engine().card();
            let cutout = matches!(mode, Mode::Cutout { .. });
            let styles = label_styles(card, &settings.classes, cutout)?;
            // Reads a background image now, so that a bad one fails the start.
            compositors(&mode, &styles, edge, 1)?;
            Ok((engine, joined, mode, styles, metrics))
        });
        let (engine, joined, mode, styles, metrics) = prepared.map_err(|error| {
            gst::element_imp_error!(self, gst::LibraryError::Settings, ("{error}"));
            gst::StateChangeError
        })?;
        let provider = engine.engine().provider();
        match (joined, &settings.model_instance) {
            (true, Some(name)) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "joined model-instance '{name}' on {provider}"
                )
            }
            _ => gst::info!(
                CAT,
                imp = self,
                "model loaded on {provider}; it adds {:?} of latency",
                engine.latency
            ),
        }
        let mut state = lock(&self.state);
        state.latency = Some(LatencyWatch::new(engine.latency));
        state.classes = Arc::from(engine.engine().card().classes.join(","));
        state.engine = Some(engine);
        state.config = Some(settings.engine_config());
        state.mode = Some(mode);
        state.edge = edge;
        state.styles = styles;
        state.flow = Ok(gst::FlowSuccess::Ok);
        if let Some(metrics) = &metrics {
            gst::info!(
                CAT,
                imp = self,
                "metrics on http://{}/metrics",
                metrics.address()
            );
        }
        state.meter = Some(telemetry::source(&self.obj().name()));
        state.metrics = metrics;
        Ok(())
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let received = Instant::now();
        let (info, format, late) = {
            let mut state = lock(&self.state);
            state.flow?;
            let (Some(mode), false) = (state.mode.as_ref(), state.flushing) else {
                return Err(gst::FlowError::Flushing);
            };
            let Some(info) = state.info.clone() else {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("a buffer came before its caps")
                );
                return Err(gst::FlowError::NotNegotiated);
            };
            let format = output_format(mode, info.format());
            let late = self.lateness(&mut state, &buffer);
            if let Some(meter) = &state.meter {
                meter.read.fetch_add(1, Ordering::Relaxed);
                if late.is_some() {
                    meter.drop_one();
                }
            }
            (info, format, late)
        };
        if let Some(message) = late {
            let _ = self.obj().post_message(message);
            return Ok(gst::FlowSuccess::Ok);
        }
        // YUV in, RGBA out (a transparent cut-out): the frame is converted on the way in.
        let rgba_out = !matches!(
            format,
            VideoFormat::I420 | VideoFormat::Nv12 | VideoFormat::Gray8
        );
        let mut frame = Frame::from_buffer(&buffer, &info, 0, received)
            .and_then(|frame| {
                if rgba_out {
                    frame.into_rgba()
                } else {
                    Ok(frame)
                }
            })
            .map_err(|error| {
                gst::element_imp_error!(self, gst::StreamError::Decode, ("{error}"));
                gst::FlowError::Error
            })?;
        let input = {
            let mut state = lock(&self.state);
            if state.lane.is_none() {
                gst::debug!(CAT, imp = self, "attaching a lane to the engine");
                let lane = self.attach_lane(&state)?;
                state.lane = Some(lane);
                self.wake();
            }
            let Some(lane) = state.lane.as_mut() else {
                return Err(gst::FlowError::Error);
            };
            let Some(input) = lane.input.clone() else {
                return Err(gst::FlowError::Eos);
            };
            frame.seq = lane.next_seq;
            lane.next_seq += 1;
            state.pending.push_back(Pending::Buffer {
                seq: frame.seq,
                buffer,
                format,
            });
            if state
                .config
                .as_ref()
                .is_some_and(|c| c.policy == Policy::DropOldest)
            {
                forget_oldest_beyond(&mut state.pending, LEAKY_PENDING);
            }
            input
        };
        // Sent without the state locked: a full lane waits here, and a flush must get in.
        if !input.send(frame) {
            return Err(self.flow_after_stop());
        }
        let state = lock(&self.state);
        if state.flushing {
            return Err(gst::FlowError::Flushing);
        }
        state.flow
    }

    /// What the chain function returns when the lane stopped taking frames.
    fn flow_after_stop(&self) -> gst::FlowError {
        let state = lock(&self.state);
        match (state.flushing, state.flow) {
            (true, _) => gst::FlowError::Flushing,
            (false, Err(flow)) => flow,
            (false, Ok(_)) => gst::FlowError::Error,
        }
    }

    /// A new lane on the engine, drawing as the settings say.
    fn attach_lane(&self, state: &State) -> Result<Lane, gst::FlowError> {
        let (Some(engine), Some(config), Some(mode), Some(meter)) =
            (&state.engine, &state.config, &state.mode, &state.meter)
        else {
            return Err(gst::FlowError::Flushing);
        };
        let attached =
            compositors(mode, &state.styles, state.edge, config.workers).and_then(|compositors| {
                lane::attach(engine.engine(), config, compositors, &meter.dropped)
            });
        let (input, output, workers) = attached.map_err(|error| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("{error}"));
            gst::FlowError::Error
        })?;
        Ok(Lane {
            input: Some(Arc::new(input)),
            output,
            workers,
            next_seq: 0,
            reorder: (!config.in_order()).then(Reorder::default),
        })
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::Caps(caps) => {
                let caps = caps.caps_owned();
                match self.output_caps(&caps) {
                    Some(output) => self.forward_in_order(gst::event::Caps::new(&output)),
                    None => false,
                }
            }
            EventView::Eos(_) => {
                let mut state = lock(&self.state);
                let Some(lane) = state.lane.as_mut() else {
                    drop(state);
                    return self.srcpad.push_event(event);
                };
                // The lane ends after its last frame; the EOS follows them out.
                lane.input = None;
                state.pending.push_back(Pending::Event(event));
                true
            }
            EventView::FlushStart(_) => {
                let forwarded = self.srcpad.push_event(event);
                self.stop_output();
                forwarded
            }
            EventView::Segment(segment) => {
                if let Ok(time) = segment.segment().clone().downcast::<gst::ClockTime>() {
                    lock(&self.state).segment = time;
                }
                self.forward_in_order(event)
            }
            EventView::FlushStop(_) => {
                {
                    let mut state = lock(&self.state);
                    state.flushing = false;
                    state.flow = Ok(gst::FlowSuccess::Ok);
                    state.qos.earliest = None;
                }
                let forwarded = self.srcpad.push_event(event);
                self.start_task();
                forwarded
            }
            _ if event.is_serialized() => self.forward_in_order(event),
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    /// Events from downstream: a QoS event sets the running time before which frames are
    /// dropped (its timestamp plus how late the last frame was), then goes upstream.
    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if let gst::EventView::Qos(qos) = event.view() {
            let (_, _, diff, timestamp) = qos.get();
            let earliest = timestamp.map(|t| {
                let late = gst::ClockTime::from_nseconds(diff.unsigned_abs());
                if diff > 0 {
                    t + late
                } else {
                    t.saturating_sub(late)
                }
            });
            lock(&self.state).qos.earliest = earliest;
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    /// Counts `buffer` as taken, or, when it would reach the sink late (by the last QoS event),
    /// as dropped: then the QoS message that says so, to be posted once `state` is unlocked.
    fn lateness(&self, state: &mut State, buffer: &gst::BufferRef) -> Option<gst::Message> {
        let running_time = buffer
            .pts()
            .and_then(|pts| state.segment.to_running_time(pts));
        let late = matches!(
            (running_time, state.qos.earliest),
            (Some(time), Some(earliest)) if time < earliest
        );
        if !late {
            state.qos.processed += 1;
            return None;
        }
        state.qos.dropped += 1;
        let Qos {
            processed, dropped, ..
        } = state.qos;
        gst::debug!(CAT, imp = self, "dropped a late frame ({dropped} so far)");
        let stream_time = buffer
            .pts()
            .and_then(|pts| state.segment.to_stream_time(pts));
        let message = gst::message::Qos::builder(true)
            .running_time(running_time)
            .stream_time(stream_time)
            .timestamp(buffer.pts())
            .duration(buffer.duration())
            .stats(
                gst::format::Buffers::from_u64(processed),
                gst::format::Buffers::from_u64(dropped),
            )
            .src(&*self.obj())
            .build();
        Some(message)
    }

    /// Sends a serialized event now when nothing waits, else behind what waits.
    fn forward_in_order(&self, event: gst::Event) -> bool {
        let mut state = lock(&self.state);
        if state.pending.is_empty() {
            drop(state);
            return self.srcpad.push_event(event);
        }
        state.pending.push_back(Pending::Event(event));
        true
    }

    /// The caps the element sends for input `caps`, or `None` (with an error posted) when it
    /// cannot take them or downstream cannot take what it would send.
    fn output_caps(&self, caps: &gst::Caps) -> Option<gst::Caps> {
        let info = gst_video::VideoInfo::from_caps(caps)
            .ok()
            .filter(|info| INPUT_FORMATS.contains(&info.format()));
        let Some(info) = info else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("segstream takes video/x-raw in I420, NV12, RGBA, RGBx, BGRx or BGRA, not {caps}: put videoconvert in front of it")
            );
            return None;
        };
        let mut state = lock(&self.state);
        let format = output_format(state.mode.as_ref()?, info.format());
        let mut output = caps.clone();
        output.make_mut().set("format", format.to_str());
        state.info = Some(info);
        drop(state);
        if self.srcpad.is_linked() && !self.srcpad.peer_query_accept_caps(&output) {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("downstream does not take {output} (what this mode sends): put videoconvert after segstream")
            );
            return None;
        }
        Some(output)
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            // Any raw video is accepted here, so that the caps event can say what is wrong
            // with a format instead of a bare not-negotiated.
            QueryViewMut::AcceptCaps(q) => {
                let raw = q
                    .caps()
                    .structure(0)
                    .is_some_and(|s| s.name() == "video/x-raw");
                q.set_result(raw);
                true
            }
            QueryViewMut::Allocation(_) => false,
            QueryViewMut::Caps(q) => {
                // Modes that send the format they take offer what downstream takes among
                // theirs, so that a decoder before and an encoder after agree with no
                // converter; when downstream takes none of them, all (the caps event says why).
                let ours = pad.pad_template_caps();
                let caps = match self.fixed_output_format() {
                    Some(_) => ours,
                    None => {
                        let downstream = self.srcpad.peer_query_caps(None);
                        let both =
                            downstream.intersect_with_mode(&ours, gst::CapsIntersectMode::First);
                        if both.is_empty() { ours } else { both }
                    }
                };
                q.set_result(&filtered(caps, q.filter()));
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    /// The one format a mode sends whatever it takes (GRAY8 masks, RGBA transparent
    /// cut-outs), if it is such a mode.
    fn fixed_output_format(&self) -> Option<VideoFormat> {
        lock(&self.state)
            .mode
            .as_ref()
            .map(|mode| output_format(mode, VideoFormat::Unknown))
            .filter(|&format| format != VideoFormat::Unknown)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            QueryViewMut::Latency(q) => {
                let mut upstream = gst::query::Latency::new();
                if !self.sinkpad.peer_query(&mut upstream) {
                    return false;
                }
                let (live, min, max) = upstream.result();
                let ours = lock(&self.state)
                    .latency
                    .as_ref()
                    .map_or(Duration::ZERO, LatencyWatch::reported);
                let ours = gst::ClockTime::try_from(ours).unwrap_or(gst::ClockTime::ZERO);
                q.set(live, min + ours, max.map(|max| max + ours));
                true
            }
            QueryViewMut::Caps(q) => {
                // Masks and transparent cut-outs have one output format; other modes send
                // what they take.
                let caps = match self.fixed_output_format() {
                    Some(format) => gst_video::VideoCapsBuilder::new().format(format).build(),
                    None => pad.pad_template_caps(),
                };
                q.set_result(&filtered(caps, q.filter()));
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn src_activate(
        &self,
        _pad: &gst::Pad,
        _mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if active {
            lock(&self.state).flushing = false;
            self.start_task();
        } else {
            self.stop_output();
            self.srcpad
                .stop_task()
                .map_err(|e| gst::loggable_error!(CAT, "cannot stop the output task: {e}"))?;
        }
        Ok(())
    }

    /// Starts (or resumes) the source pad's task.
    fn start_task(&self) {
        let element = self.obj().downgrade();
        let started = self.srcpad.start_task(move || {
            if let Some(element) = element.upgrade() {
                element.imp().push_output();
            }
        });
        if let Err(error) = started {
            gst::element_imp_error!(
                self,
                gst::CoreError::Thread,
                ("cannot start the output task: {error}")
            );
        }
    }

    /// Flush or stop: nothing more is pushed, what is in flight is dropped, the task pauses.
    fn stop_output(&self) {
        let mut state = lock(&self.state);
        state.flushing = true;
        self.detach_lane(&mut state);
        state.pending.clear();
        drop(state);
        // The task holds the stream lock while it waits: woken, it sees `flushing` and
        // pauses itself, and only then can `pause_task` take the lock.
        self.wake();
        let _ = self.srcpad.pause_task();
    }

    /// Ends the current lane without waiting: its input closes, and a thread of its own
    /// drains and discards what it still holds, so a chain call waiting to send returns.
    fn detach_lane(&self, state: &mut State) {
        let Some(lane) = state.lane.take() else {
            return;
        };
        gst::debug!(
            CAT,
            imp = self,
            "detaching the lane; what it holds is discarded"
        );
        let Lane {
            output, workers, ..
        } = lane;
        let drained = std::thread::Builder::new()
            .name("segstream-drain".into())
            .spawn(move || {
                for _ in output.frames().iter() {}
                let _ = workers.join();
            });
        if let Err(error) = drained {
            gst::warning!(
                CAT,
                imp = self,
                "cannot start a thread to drain a flushed lane: {error}"
            );
        }
    }

    fn wake(&self) {
        let _ = self.wake.0.try_send(());
    }

    /// One turn of the source pad's task: the next composed frame out (with the events and
    /// dropped frames before it), or the lane's end.
    fn push_output(&self) {
        let frames = {
            let state = lock(&self.state);
            if state.flushing {
                drop(state);
                let _ = self.srcpad.pause_task();
                return;
            }
            state.lane.as_ref().map(|lane| lane.output.frames().clone())
        };
        let wake = &self.wake.1;
        let Some(frames) = frames else {
            let _ = wake.recv();
            return;
        };
        select! {
            recv(frames) -> frame => match frame {
                Ok(frame) => self.deliver(frame),
                Err(_) => self.finish_lane(&frames),
            },
            recv(wake) -> _ => {}
        }
    }

    /// Pushes `frame` (once the frames before it are out) after what waits before it.
    fn deliver(&self, frame: Frame) {
        // Timed up to composition (see `latency`): a synchronised sink holds each push until the
        // reported latency has passed, and the frames behind it wait for that.
        let taken = frame.engine_time();
        let ready = {
            let mut state = lock(&self.state);
            let changed = state
                .latency
                .as_mut()
                .is_some_and(|watch| watch.record(taken));
            if changed {
                // The pipeline asks every element again and sets the larger latency.
                let element = self.obj();
                let _ =
                    element.post_message(gst::message::Latency::builder().src(&*element).build());
            }
            match state.lane.as_mut().and_then(|lane| lane.reorder.as_mut()) {
                Some(reorder) => reorder.push(frame),
                None => vec![frame],
            }
        };
        for frame in ready {
            if self.send_frame(frame).is_err() {
                return;
            }
        }
    }

    /// Sends the events waiting before `frame`, then `frame` as a buffer.
    fn send_frame(&self, frame: Frame) -> Result<(), gst::FlowError> {
        let (before, input) = {
            let mut state = lock(&self.state);
            let mut before = Vec::new();
            let mut input = None;
            while let Some(item) = state.pending.pop_front() {
                match item {
                    Pending::Event(event) => before.push(event),
                    // A frame the lane dropped (leaky) or that never made it.
                    Pending::Buffer { seq, .. } if seq < frame.seq => {}
                    // This frame's input was forgotten while downstream took nothing (leaky):
                    // the frame goes too.
                    later @ Pending::Buffer { seq, .. } if seq > frame.seq => {
                        state.pending.push_front(later);
                        break;
                    }
                    Pending::Buffer { buffer, format, .. } => {
                        input = Some((buffer, format));
                        break;
                    }
                }
            }
            (before, input)
        };
        for event in before {
            self.srcpad.push_event(event);
        }
        let Some((input, format)) = input else {
            return Ok(());
        };
        let (passthrough, classes, meter) = {
            let state = lock(&self.state);
            let passthrough = matches!(state.mode, Some(Mode::Passthrough));
            (passthrough, Arc::clone(&state.classes), state.meter.clone())
        };
        // As the latency watch times it: up to composition, not waiting for downstream.
        let latency = frame.engine_time();
        let result = output::buffer_for(frame, input, format, passthrough, &classes)
            .and_then(|buffer| self.srcpad.push(buffer));
        if let Err(flow) = result {
            self.stop_on(flow);
            return Err(flow);
        }
        if let Some(meter) = meter {
            meter.wrote(latency);
        }
        Ok(())
    }

    /// Records a flow error from downstream (the chain function returns it upstream) and
    /// pauses the task; one that no other element reports is posted as an error.
    fn stop_on(&self, flow: gst::FlowError) {
        gst::debug!(CAT, imp = self, "downstream returned {flow:?}");
        lock(&self.state).flow = Err(flow);
        let _ = self.srcpad.pause_task();
        if matches!(
            flow,
            gst::FlowError::NotLinked | gst::FlowError::NotNegotiated
        ) {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("streaming stopped, reason {flow:?}")
            );
        }
    }

    /// The lane whose output is `frames` has ended: the frames still held for reordering and
    /// the events after the last frame (the EOS) go out, and a failure is posted.
    fn finish_lane(&self, frames: &Receiver<Frame>) {
        let (lane, engine_failed) = {
            let mut state = lock(&self.state);
            let current = state
                .lane
                .as_ref()
                .is_some_and(|lane| lane.output.frames().same_channel(frames));
            if !current {
                return;
            }
            let failed = state
                .engine
                .as_ref()
                .is_some_and(|engine| engine.engine().failed());
            (state.lane.take(), failed)
        };
        let Some(mut lane) = lane else { return };
        gst::debug!(CAT, imp = self, "the lane has ended");
        for frame in lane
            .reorder
            .as_mut()
            .map(Reorder::drain)
            .unwrap_or_default()
        {
            if self.send_frame(frame).is_err() {
                return;
            }
        }
        let outcome = lane.workers.join();
        if engine_failed || outcome.is_err() {
            if let Some(meter) = &lock(&self.state).meter {
                meter.errors.fetch_add(1, Ordering::Relaxed);
            }
            let reason = outcome.err().map_or_else(
                || "the model failed on a batch".to_string(),
                |error| error.to_string(),
            );
            lock(&self.state).flow = Err(gst::FlowError::Error);
            let _ = self.srcpad.pause_task();
            gst::element_imp_error!(self, gst::StreamError::Failed, ("{reason}"));
            return;
        }
        let rest: Vec<gst::Event> = lock(&self.state)
            .pending
            .drain(..)
            .filter_map(|item| match item {
                Pending::Event(event) => Some(event),
                Pending::Buffer { .. } => None,
            })
            .collect();
        for event in rest {
            self.srcpad.push_event(event);
        }
    }
}

/// `workers` compositors drawing `mode` with one style per label and `edge` edges.
fn compositors(
    mode: &Mode,
    styles: &[LabelStyle],
    edge: Edge,
    workers: usize,
) -> crate::Result<Vec<Compositor>> {
    (0..workers)
        .map(|_| Compositor::new(mode.clone(), styles.to_vec()).map(|c| c.with_edge(edge)))
        .collect()
}

/// `caps` as a caps query's `filter` narrows them, in the filter's order.
fn filtered(caps: gst::Caps, filter: Option<&gst::CapsRef>) -> gst::Caps {
    match filter {
        Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
        None => caps,
    }
}
