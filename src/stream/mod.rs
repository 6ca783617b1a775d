//! The engine: stages on named threads joined by bounded crossbeam channels. One shared
//! [`Engine`] (batcher and inference, one model session) serves one or several sources; each
//! source has a lane of its own (pre-processing, post-processing and composition, reordering,
//! statistics) and a door that feeds and drains it (here the CLI's source and sink pipelines).
//!
//! ```text
//! source ─Frame→ preprocess(N) ─Work→ batcher ─Batch→ infer ─Scores→ postprocess(N) ─Frame→ sink(reorder)
//!                 (per source)        (shared: any sources' frames)    (per source)           (per source)
//! ```
//!
//! Channel contract: every channel is bounded, so memory stays flat; a stage ends when its input
//! disconnects, after passing on what it holds, so dropping a sender flushes. A stage that fails
//! returns its error, drops its channels and raises its lane's abort flag (the engine's, for
//! the shared stages): the stages before it stop, the ones after it drain and finish, the sink
//! finalises what it has, and [`run`] returns that error.
//!
//! Back-pressure follows the [`Policy`]: files block (frames out = frames in); live feeds drop
//! the oldest waiting frame in front of pre-processing, so latency cannot grow.
//!
//! Uses `video` (frames, sources, outputs), `imaging` and `infer`; the doors (`commands`,
//! `element`, `bench`) stand on it.

mod engine;
pub mod lane;
mod latency;
mod outlet;
mod reconnect;
mod reorder;
mod shared;
mod stages;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
pub use engine::Engine;
use engine::{join, spawn};
use indicatif::ProgressBar;
use lane::LaneWorkers;
pub use shared::{Batching, SourceId};

use crate::imaging::{Compositor, Smoothing};
use crate::infer::Segmenter;
use crate::video::{FrameOutput, FrameSource};
use crate::{Error, Result};
pub use latency::{Interval, LatencySummary, Ticker};
pub use reorder::Reorder;
pub use stats::{StageStats, StageSummary};

use crate::telemetry::SourceMeter;

/// What the engine does when a stage is slower than its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Files: nothing is dropped; back-pressure reaches the appsink. Frames out = frames in.
    Block,
    /// Live feeds: the queues up to inference hold one item each, and a full one drops its
    /// oldest item (counted). One pre- and one post-processing worker keep frames in order,
    /// since a reorder buffer would wait forever for a dropped frame.
    DropOldest,
}

/// Inference sessions that run side by side for files on the CPU (see [`Batching::sessions`]):
/// on 2 cores, people.onnx on solidWhiteRight took 4.2 ms of CPU a frame either way, and two
/// calls at once gave 2.1 ms of wall time a frame against 4.2 on one session.
const FILE_SESSIONS: usize = 2;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Frames per inference call.
    pub batch_size: usize,
    /// Longest a frame waits in the batcher for the batch to fill.
    pub max_wait: Duration,
    /// Workers for pre-processing (and post-processing: one per compositor).
    pub workers: usize,
    /// Binary-mask threshold on the probability.
    pub threshold: f32,
    /// What to do when inference is slower than the input.
    pub policy: Policy,
    /// Run the model on every `every`-th frame and reuse the last logits in between (1 = all).
    pub every: u64,
    /// Temporal smoothing of mask probabilities; needs one post-processor.
    pub smoothing: Smoothing,
    /// Live: how long to wait for a source's frames before giving up (none: files, which end).
    pub patience: Option<Patience>,
}

/// How long a live run waits for its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// For the first frame; past it the run fails (nothing is sending).
    pub first_frame: Duration,
    /// For frames to come back once they stopped, reconnecting meanwhile; past it the run ends.
    pub reconnect: Duration,
}

impl EngineConfig {
    /// Whether a source's frames must stay in order through one pre- and one
    /// post-processing worker: live runs (a reorder buffer would wait forever for a dropped
    /// frame) and temporal smoothing.
    pub fn in_order(&self) -> bool {
        self.policy == Policy::DropOldest || self.smoothing.is_on()
    }

    /// How the shared stages batch under these settings: two inference sessions side by
    /// side when the lanes take logits in any order (files, neither smoothed nor reusing
    /// logits with `--every`).
    pub fn batching(&self) -> Batching {
        Batching {
            batch_size: self.batch_size,
            max_wait: self.max_wait,
            live: self.policy == Policy::DropOldest,
            sessions: if self.in_order() || self.every > 1 {
                1
            } else {
                FILE_SESSIONS
            },
        }
    }
}

impl Default for EngineConfig {
    /// The settings for files: batches of 4, one worker per core, nothing dropped or smoothed.
    fn default() -> Self {
        EngineConfig {
            batch_size: 4,
            max_wait: Duration::from_millis(50),
            workers: thread::available_parallelism().map_or(2, |n| n.get()),
            threshold: 0.5,
            policy: Policy::Block,
            every: 1,
            smoothing: Smoothing::OFF,
            patience: None,
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The input ended.
    Finished,
    /// The stop flag was set (Ctrl-C).
    Interrupted,
    /// A live source sent nothing for `silent` despite reconnecting; `last_error` is what it
    /// last reported, if it failed rather than fell silent.
    SourceLost {
        /// How long it had been silent.
        silent: Duration,
        /// The source's last error.
        last_error: Option<String>,
    },
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// Frames taken from the source.
    pub frames_read: u64,
    /// Frames written to the sink.
    pub frames_written: u64,
    /// Stream time the frames read cover (first frame's start to last frame's end).
    pub input_span: Option<Duration>,
    /// Frames dropped to keep latency bounded (live runs).
    pub frames_dropped: u64,
    /// Why the run ended.
    pub ending: Ending,
    /// Wall time from start to finalised output.
    pub elapsed: Duration,
    /// Time from the first to the last frame written.
    pub output_span: Duration,
    /// Per written frame, from the appsink handing it over to the appsrc taking it.
    pub latency: Vec<Duration>,
    /// Share of mask pixels that changed between consecutive frames (one post-processor only).
    pub flicker: Option<f64>,
    /// The figures of each reporting interval (with a ticker).
    pub intervals: Vec<Interval>,
    /// Per-stage statistics, in pipeline order.
    pub stages: Vec<StageStats>,
}

impl Report {
    /// Frames written per second of wall time.
    pub fn fps(&self) -> f64 {
        self.frames_written as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Frames written per second while frames were flowing (first to last written).
    pub fn output_fps(&self) -> f64 {
        self.frames_written.saturating_sub(1) as f64 / self.output_span.as_secs_f64().max(1e-9)
    }

    /// Whether the run was stopped before the input ended.
    pub fn interrupted(&self) -> bool {
        self.ending == Ending::Interrupted
    }

    /// Percentiles of [`Report::latency`].
    pub fn latency_summary(&self) -> LatencySummary {
        LatencySummary::of(&self.latency)
    }
}

/// Counters one source's stages share while running: its meter, and where this run's counts
/// begin on it (a meter outlives a run when a source of the same name comes back).
#[derive(Debug)]
struct Counters {
    meter: Arc<SourceMeter>,
    read_before: u64,
    dropped_before: u64,
    /// Raised when a stage fails, so that a live source (whose outlet never sees the failure)
    /// stops reading.
    abort: Arc<AtomicBool>,
    /// The shared engine's failure flag.
    engine_failed: Arc<AtomicBool>,
}

impl Counters {
    /// Counters for a run that starts now on `meter`, whose failures raise `abort` and
    /// `engine_failed`.
    fn new(
        meter: Arc<SourceMeter>,
        abort: Arc<AtomicBool>,
        engine_failed: Arc<AtomicBool>,
    ) -> Self {
        Counters {
            read_before: meter.read.load(Ordering::Relaxed),
            dropped_before: meter.dropped.load(Ordering::Relaxed),
            meter,
            abort,
            engine_failed,
        }
    }

    /// Frames this run took from the source.
    fn read(&self) -> u64 {
        self.meter.read.load(Ordering::Relaxed) - self.read_before
    }

    /// Frames this run dropped.
    fn dropped(&self) -> u64 {
        self.meter.dropped.load(Ordering::Relaxed) - self.dropped_before
    }

    /// Whether this source or the engine it feeds has failed.
    fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst) || self.engine_failed.load(Ordering::SeqCst)
    }
}

/// Runs `door`'s source through `segmenter` (an engine of its own) to the end of its input
/// (or until stopped) and finalises the output.
///
/// # Errors
/// [`Error::Config`] when a live or smoothed run has more than one worker; otherwise the first
/// stage error in pipeline order, with the output finalised with what reached it.
pub fn run(segmenter: Segmenter, door: Door) -> Result<Report> {
    let started = Instant::now();
    let engine = Engine::start(segmenter, door.config.batching())?;
    let outcome = door.run(&engine);
    let shared = engine.finish();
    let (mut report, shared) = match (outcome, shared) {
        (Ok(report), Ok(shared)) => (report, shared),
        // The model's own failure explains the lane's.
        (_, Err(error)) | (Err(error), _) => return Err(error),
    };
    report.stages.splice(2..2, shared);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One source and its output around a shared engine: the CLI's door (an appsink source
/// pipeline in, an appsrc sink pipeline out). Several doors may run on one engine at once.
pub struct Door {
    /// Started source.
    pub source: FrameSource,
    /// Started output.
    pub sink: Box<dyn FrameOutput>,
    /// One compositor per post-processing worker (exactly one for live runs and smoothing).
    pub compositors: Vec<Compositor>,
    /// Settings (the engine's batching is set when it starts).
    pub config: EngineConfig,
    /// Set (e.g. by Ctrl-C) to stop reading input; what was read is still written.
    pub stop: Arc<AtomicBool>,
    /// Advanced once per frame written.
    pub progress: ProgressBar,
    /// Figures every few seconds while running, when wanted.
    pub ticker: Option<Ticker>,
    /// The source's live figures (see [`crate::telemetry::source`]).
    pub meter: Arc<SourceMeter>,
}

/// A door whose threads run.
struct OpenDoor {
    source: JoinHandle<Result<stages::SourceEnd>>,
    sink: JoinHandle<Result<stages::SinkEnd>>,
    ending_tx: crossbeam_channel::Sender<Ending>,
    workers: LaneWorkers,
    counters: Arc<Counters>,
}

impl Door {
    /// Runs this source through `engine` to its end (or until stopped) and finalises the
    /// output. The report's stages are this source's own (source, pre-processing,
    /// post-processing, sink); the engine's come from [`Engine::finish`].
    ///
    /// # Errors
    /// As [`run`]; the engine failing ends every door on it with an error.
    pub fn run(self, engine: &Engine) -> Result<Report> {
        let started = Instant::now();
        let mut report = self.open(engine, started)?.finish()?;
        if engine.failed() {
            return Err(Error::Pipeline(
                "the model failed on a batch; the output holds the frames before it".into(),
            ));
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Attaches a lane for this source to `engine` and starts reading and writing.
    fn open(self, engine: &Engine, started: Instant) -> Result<OpenDoor> {
        let in_order = self.config.in_order();
        let dropped = Arc::clone(&self.meter.dropped);
        let (input, output, workers) =
            lane::attach(engine, &self.config, self.compositors, &dropped)?;
        let counters = Arc::new(Counters::new(
            self.meter,
            Arc::clone(&workers.abort),
            engine.failure_flag(),
        ));
        let abort = Arc::clone(&counters.abort);
        let source = {
            let (shared, patience, stop) = (Arc::clone(&counters), self.config.patience, self.stop);
            let source = self.source;
            spawn("source", &abort, move || {
                stages::read_source(source, &input.frames, &stop, &shared, patience)
            })?
        };
        let (ending_tx, ending_rx) = bounded(1);
        let sink = {
            let (shared, sink, progress, ticker) =
                (Arc::clone(&counters), self.sink, self.progress, self.ticker);
            spawn("sink", &abort, move || {
                let stage = stages::SinkStage {
                    reorder: !in_order,
                    progress,
                    ticker,
                    started,
                    counters: &shared,
                };
                stage.run(sink, &output.frames, &ending_rx)
            })?
        };
        Ok(OpenDoor {
            source,
            sink,
            ending_tx,
            workers,
            counters,
        })
    }
}

impl OpenDoor {
    /// Waits until the source ended and the output is finalised.
    fn finish(self) -> Result<Report> {
        let source_end = join("source", self.source);
        let lane = self.workers.join();
        // The sink learns only now how the input ended, which decides how it finishes.
        let ending = source_end
            .as_ref()
            .map_or(Ending::Finished, |end| end.ending.clone());
        let _ = self.ending_tx.send(ending.clone());
        let sink = join("sink", self.sink);
        let counters = &self.counters;
        counters.meter.end();
        if source_end.is_err() || lane.is_err() || sink.is_err() {
            counters.meter.errors.fetch_add(1, Ordering::Relaxed);
        }
        let (source_end, lane, sink) = (source_end?, lane?, sink?);
        Ok(Report {
            frames_read: counters.read(),
            frames_written: sink.written,
            input_span: source_end.span,
            frames_dropped: counters.dropped(),
            ending,
            elapsed: Duration::ZERO,
            output_span: sink.span,
            latency: sink.latency,
            flicker: lane.flicker,
            intervals: sink.intervals,
            stages: vec![
                source_end.stats,
                lane.preprocess,
                lane.postprocess,
                sink.stats,
            ],
        })
    }
}
