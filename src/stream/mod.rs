//! The engine: stages on named threads joined by bounded crossbeam channels.
//!
//! ```text
//! source ─Frame→ preprocess(N) ─Tensor→ batcher ─Batch→ infer ─Scores→ postprocess(N) ─Frame→ sink(reorder)
//! ```
//!
//! Channel contract: every channel is bounded, so memory stays flat; a stage ends when its input
//! disconnects, after passing on what it holds, so dropping a sender flushes. A stage that fails
//! returns its error, drops its channels and raises the abort flag: the stages before it stop,
//! the ones after it drain and finish, the sink finalises what it has, and [`run`] returns that
//! error.
//!
//! Back-pressure follows the [`Policy`]: files block (frames out = frames in); live feeds drop
//! the oldest waiting frame in front of inference, so latency cannot grow.

mod latency;
mod outlet;
mod reconnect;
mod reorder;
mod stages;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use indicatif::ProgressBar;

use crate::imaging::Compositor;
use crate::infer::Segmenter;
use crate::video::{FrameSink, FrameSource};
use crate::{Error, Result};
pub use latency::{Interval, LatencySummary, Ticker};
use outlet::Outlet;
pub use stats::{StageStats, StageSummary};

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
    /// Temporal smoothing of mask probabilities, 0..1 (0 = off); needs one post-processor.
    pub smoothing: f32,
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
            smoothing: 0.0,
            patience: None,
        }
    }
}

/// Everything one run needs; the engine takes ownership.
pub struct Job {
    /// Started source.
    pub source: FrameSource,
    /// Loaded model.
    pub segmenter: Segmenter,
    /// Started sink.
    pub sink: FrameSink,
    /// One compositor per post-processing worker (exactly one for live runs and smoothing).
    pub compositors: Vec<Compositor>,
    /// Settings.
    pub config: EngineConfig,
    /// Set (e.g. by Ctrl-C) to stop reading input; what was read is still written.
    pub stop: Arc<AtomicBool>,
    /// Advanced once per frame written.
    pub progress: ProgressBar,
    /// Figures every few seconds while running, when wanted.
    pub ticker: Option<Ticker>,
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

/// Counters the stages share while running.
#[derive(Debug, Default)]
struct Counters {
    read: AtomicU64,
    dropped: Arc<AtomicU64>,
    /// Raised when a stage fails, so that a live source (whose outlet never sees the failure)
    /// stops reading.
    abort: AtomicBool,
}

/// Runs `job` to the end of its input (or until stopped) and finalises the output.
///
/// # Errors
/// [`Error::Config`] when a live or smoothed run has more than one worker; otherwise the first
/// stage error in pipeline order, with the output finalised with what reached it.
pub fn run(job: Job) -> Result<Report> {
    let started = Instant::now();
    let Job {
        source,
        segmenter,
        sink,
        compositors,
        config,
        stop,
        progress,
        ticker,
    } = job;

    let in_order = config.policy == Policy::DropOldest || config.smoothing > 0.0;
    if in_order && (config.workers != 1 || compositors.len() != 1) {
        return Err(Error::Config(
            "live runs and temporal smoothing need one pre- and one post-processing worker".into(),
        ));
    }
    let counters = Arc::new(Counters::default());
    let policy = config.policy;
    let (depth, batch_depth) = match policy {
        Policy::Block => (2 * config.batch_size.max(config.workers), 2),
        Policy::DropOldest => (1, 1),
    };
    let (frames_tx, frames_rx) = bounded(depth);
    let (tensors_tx, tensors_rx) = bounded(depth);
    let (batches_tx, batches_rx) = bounded(batch_depth);
    let (scores_tx, scores_rx) = bounded(depth);
    let (output_tx, output_rx) = bounded(depth);
    let frames_out = Outlet::new(frames_tx, &frames_rx, policy, &counters.dropped);
    let tensors_out = Outlet::new(tensors_tx, &tensors_rx, policy, &counters.dropped);
    let batches_out = Outlet::new(batches_tx, &batches_rx, policy, &counters.dropped);

    let source = {
        let (shared, patience) = (Arc::clone(&counters), config.patience);
        spawn("source", &counters, move || {
            stages::read_source(source, &frames_out, &stop, &shared, patience)
        })?
    };
    let card = segmenter.card().clone();
    let preprocess = (0..config.workers)
        .map(|_| {
            let (rx, tx, card) = (frames_rx.clone(), tensors_out.clone(), card.clone());
            spawn("preprocess", &counters, move || {
                stages::preprocess_frames(&card, &rx, &tx)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    drop((frames_rx, tensors_out));
    let batcher = {
        let config = config.clone();
        spawn("batcher", &counters, move || {
            stages::batch_tensors(&config, &tensors_rx, &batches_out)
        })?
    };
    let every = config.every;
    let infer = spawn("infer", &counters, move || {
        stages::infer_batches(segmenter, every, &batches_rx, &scores_tx)
    })?;
    let measure_flicker = compositors.len() == 1;
    let postprocess = compositors
        .into_iter()
        .map(|compositor| {
            let (rx, tx, config) = (scores_rx.clone(), output_tx.clone(), config.clone());
            spawn("postprocess", &counters, move || {
                stages::postprocess_scores(&config, measure_flicker, compositor, &rx, &tx)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    drop((scores_rx, output_tx));
    let (ending_tx, ending_rx) = bounded(1);
    let sink = {
        let shared = Arc::clone(&counters);
        spawn("sink", &counters, move || {
            let stage = stages::SinkStage {
                reorder: !in_order,
                progress,
                ticker,
                started,
                counters: &shared,
            };
            stage.run(sink, &output_rx, &ending_rx)
        })?
    };

    let source_end = join("source", source);
    let preprocess = join_all("preprocess", preprocess);
    let batcher = join("batcher", batcher);
    let infer = join("infer", infer);
    let postprocess = join_all("postprocess", postprocess);
    // The sink learns only now how the input ended, which decides how it finishes.
    let ending = source_end
        .as_ref()
        .map_or(Ending::Finished, |end| end.ending.clone());
    let _ = ending_tx.send(ending.clone());
    let sink = join("sink", sink);

    let source_end = source_end?;
    let (preprocess, batcher, infer) = (preprocess?, batcher?, infer?);
    let postprocess = postprocess?;
    let sink = sink?;
    let flicker = match postprocess.as_slice() {
        [(_, flicker)] => flicker.rate(),
        _ => None,
    };
    Ok(Report {
        frames_read: counters.read.load(Ordering::Relaxed),
        frames_written: sink.written,
        input_span: source_end.span,
        frames_dropped: counters.dropped.load(Ordering::Relaxed),
        ending,
        elapsed: started.elapsed(),
        output_span: sink.span,
        latency: sink.latency,
        flicker,
        intervals: sink.intervals,
        stages: vec![
            source_end.stats,
            merged("preprocess", preprocess),
            batcher,
            infer,
            merged(
                "postprocess",
                postprocess.into_iter().map(|(stats, _)| stats),
            ),
            sink.stats,
        ],
    })
}

/// Starts stage `name` on its own thread; its failure raises the abort flag.
fn spawn<T: Send + 'static>(
    name: &'static str,
    counters: &Arc<Counters>,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<JoinHandle<Result<T>>> {
    let counters = Arc::clone(counters);
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let result = work();
            if result.is_err() {
                counters.abort.store(true, Ordering::SeqCst);
            }
            result
        })
        .map_err(|e| Error::Pipeline(format!("cannot start the {name} thread: {e}")))
}

fn join<T>(name: &str, handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| Error::Pipeline(format!("the {name} stage panicked")))?
}

/// Joins every worker of stage `name` (all of them, even after a failure); the first error wins.
fn join_all<T>(name: &str, handles: Vec<JoinHandle<Result<T>>>) -> Result<Vec<T>> {
    let results: Vec<Result<T>> = handles.into_iter().map(|h| join(name, h)).collect();
    results.into_iter().collect()
}

/// One stage's statistics from those of its workers.
fn merged(name: &'static str, parts: impl IntoIterator<Item = StageStats>) -> StageStats {
    parts
        .into_iter()
        .fold(StageStats::new(name), |mut total, part| {
            total.merge(part);
            total
        })
}
