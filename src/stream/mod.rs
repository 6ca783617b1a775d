//! The engine: stages on named threads joined by bounded crossbeam channels.
//!
//! ```text
//! source ─Frame→ preprocess(N) ─Tensor→ batcher ─Batch→ infer ─Scores→ postprocess(N) ─Frame→ sink(reorder)
//! ```
//!
//! Channel contract: every channel is bounded, so back-pressure reaches the appsink and memory
//! stays flat; a stage ends when its input disconnects, after passing on what it holds, so
//! dropping a sender flushes. A stage that fails returns its error and drops its channels: the
//! stages before it see their sends fail and stop, the ones after it drain and finish, the sink
//! finalises what it has, and [`run`] returns that error.

mod reorder;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use gstreamer as gst;
use indicatif::ProgressBar;
use ndarray::{Array3, Array4, Axis, stack};

use crate::imaging::{Compositor, Postprocessor, Preprocessor};
use crate::infer::Segmenter;
use crate::video::{Frame, FrameSink, FrameSource, Pulled};
use crate::{Error, Result};
use reorder::Reorder;
pub use stats::{StageStats, StageSummary};

/// How often the source looks at the stop flag while waiting for a frame.
const SOURCE_POLL: gst::ClockTime = gst::ClockTime::from_mseconds(100);

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Frames per inference call.
    pub batch_size: usize,
    /// Longest a frame waits in the batcher for the batch to fill.
    pub max_wait: Duration,
    /// Workers for pre- and post-processing each.
    pub workers: usize,
    /// Binary-mask threshold on the probability.
    pub threshold: f32,
}

/// Everything one run needs; the engine takes ownership.
pub struct Job {
    /// Started source.
    pub source: FrameSource,
    /// Loaded model.
    pub segmenter: Segmenter,
    /// Started sink.
    pub sink: FrameSink,
    /// One compositor per post-processing worker.
    pub compositors: Vec<Compositor>,
    /// Settings.
    pub config: EngineConfig,
    /// Set (e.g. by Ctrl-C) to stop reading input; what was read is still written.
    pub stop: Arc<AtomicBool>,
    /// Advanced once per frame written.
    pub progress: ProgressBar,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// Frames taken from the source.
    pub frames_read: u64,
    /// Frames written to the sink.
    pub frames_written: u64,
    /// Whether the run was stopped before the input ended.
    pub interrupted: bool,
    /// Wall time from start to finalised output.
    pub elapsed: Duration,
    /// Per-stage statistics, in pipeline order.
    pub stages: Vec<StageStats>,
}

impl Report {
    /// Frames written per second of wall time.
    pub fn fps(&self) -> f64 {
        self.frames_written as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Pre-processed input of one frame.
struct Tensor {
    frame: Frame,
    input: Array3<f32>,
}

/// Frames batched for one inference call.
struct Batch {
    frames: Vec<Frame>,
    input: Array4<f32>,
}

/// Logits of one frame.
struct Scores {
    frame: Frame,
    logits: Array3<f32>,
}

/// What the source stage returns besides its statistics.
struct SourceEnd {
    stats: StageStats,
    interrupted: bool,
}

/// Runs `job` to the end of its input (or until stopped) and finalises the output.
///
/// # Errors
/// The first stage error in pipeline order; the output is finalised with what reached it.
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
    } = job;
    let depth = 2 * config.batch_size.max(config.workers);
    let (frames_tx, frames_rx) = bounded::<Frame>(depth);
    let (tensors_tx, tensors_rx) = bounded::<Tensor>(depth);
    let (batches_tx, batches_rx) = bounded::<Batch>(2);
    let (scores_tx, scores_rx) = bounded::<Scores>(depth);
    let (output_tx, output_rx) = bounded::<Frame>(depth);

    let source = spawn("source", move || read_source(source, frames_tx, &stop))?;
    let card = segmenter.card().clone();
    let preprocess = (0..config.workers)
        .map(|_| {
            let (rx, tx, mut pre) = (
                frames_rx.clone(),
                tensors_tx.clone(),
                Preprocessor::new(&card),
            );
            spawn("preprocess", move || preprocess_frames(&mut pre, rx, tx))
        })
        .collect::<Result<Vec<_>>>()?;
    drop((frames_rx, tensors_tx));
    let batch_config = config.clone();
    let batcher = spawn("batcher", move || {
        batch_tensors(&batch_config, tensors_rx, batches_tx)
    })?;
    let infer = spawn("infer", move || {
        infer_batches(segmenter, batches_rx, scores_tx)
    })?;
    let postprocess = compositors
        .into_iter()
        .map(|compositor| {
            let (rx, tx, threshold) = (scores_rx.clone(), output_tx.clone(), config.threshold);
            spawn("postprocess", move || {
                postprocess_scores(threshold, compositor, rx, tx)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    drop((scores_rx, output_tx));
    let (sink_tx, sink_rx) = crossbeam_channel::bounded(1);
    let sink = spawn("sink", move || {
        let (stats, written) = write_sink(sink, output_rx, &progress, &sink_rx)?;
        Ok((stats, written))
    })?;

    let source_end = join("source", source);
    let preprocess = join_all("preprocess", preprocess);
    let batcher = join("batcher", batcher);
    let infer = join("infer", infer);
    let postprocess = join_all("postprocess", postprocess);
    // The sink learns only now whether the input was cut short, which decides how it ends.
    let interrupted = source_end.as_ref().is_ok_and(|end| end.interrupted);
    let _ = sink_tx.send(interrupted);
    let sink = join("sink", sink);

    let source_end = source_end?;
    let frames_read = source_end.stats.frames;
    let (preprocess, batcher, infer, postprocess) = (preprocess?, batcher?, infer?, postprocess?);
    let (sink_stats, frames_written) = sink?;
    let stages = vec![
        source_end.stats,
        preprocess,
        batcher,
        infer,
        postprocess,
        sink_stats,
    ];
    Ok(Report {
        frames_read,
        frames_written,
        interrupted,
        elapsed: started.elapsed(),
        stages,
    })
}

fn spawn<T: Send + 'static>(
    name: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<JoinHandle<Result<T>>> {
    thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .map_err(|e| Error::Pipeline(format!("cannot start the {name} thread: {e}")))
}

fn join<T>(name: &str, handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| Error::Pipeline(format!("the {name} stage panicked")))?
}

fn join_all(
    name: &'static str,
    handles: Vec<JoinHandle<Result<StageStats>>>,
) -> Result<StageStats> {
    let mut total = StageStats::new(name);
    let mut first_error = None;
    for handle in handles {
        match join(name, handle) {
            Ok(stats) => total.merge(stats),
            Err(error) => first_error = first_error.or(Some(error)),
        }
    }
    first_error.map_or(Ok(total), Err)
}

fn read_source(
    mut source: FrameSource,
    frames_tx: Sender<Frame>,
    stop: &AtomicBool,
) -> Result<SourceEnd> {
    let mut stats = StageStats::new("source");
    let mut interrupted = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let started = Instant::now();
        match source.pull(SOURCE_POLL)? {
            Pulled::Frame(frame) => {
                stats.record(started, 1, frames_tx.len());
                if frames_tx.send(*frame).is_err() {
                    break; // downstream stopped; its error is reported by its stage
                }
            }
            Pulled::Timeout => {}
            Pulled::End => break,
        }
    }
    source.stop();
    Ok(SourceEnd { stats, interrupted })
}

fn preprocess_frames(
    pre: &mut Preprocessor,
    frames_rx: Receiver<Frame>,
    tensors_tx: Sender<Tensor>,
) -> Result<StageStats> {
    let mut stats = StageStats::new("preprocess");
    for frame in frames_rx.iter() {
        let started = Instant::now();
        let input = pre.run(&frame.pixels, frame.width(), frame.height());
        stats.record(started, 1, frames_rx.len());
        if tensors_tx.send(Tensor { frame, input }).is_err() {
            break;
        }
    }
    Ok(stats)
}

/// Closes a batch when it is full or when its oldest frame has waited `max_wait`.
fn batch_tensors(
    config: &EngineConfig,
    tensors_rx: Receiver<Tensor>,
    batches_tx: Sender<Batch>,
) -> Result<StageStats> {
    let mut stats = StageStats::new("batcher");
    let mut pending: Vec<Tensor> = Vec::with_capacity(config.batch_size);
    let mut oldest = Instant::now();
    loop {
        let received = if pending.is_empty() {
            tensors_rx
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            tensors_rx.recv_deadline(oldest + config.max_wait)
        };
        let disconnected = match received {
            Ok(tensor) => {
                if pending.is_empty() {
                    oldest = Instant::now();
                }
                pending.push(tensor);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let full = pending.len() >= config.batch_size;
        let waited = !pending.is_empty() && oldest.elapsed() >= config.max_wait;
        if full || waited || (disconnected && !pending.is_empty()) {
            let started = Instant::now();
            let batch = make_batch(std::mem::take(&mut pending));
            stats.record(started, batch.frames.len() as u64, tensors_rx.len());
            if batches_tx.send(batch).is_err() {
                break;
            }
        }
        if disconnected {
            break;
        }
    }
    Ok(stats)
}

fn make_batch(tensors: Vec<Tensor>) -> Batch {
    let views: Vec<_> = tensors.iter().map(|t| t.input.view()).collect();
    let input = stack(Axis(0), &views).expect("every tensor has the card's input shape");
    Batch {
        frames: tensors.into_iter().map(|t| t.frame).collect(),
        input,
    }
}

fn infer_batches(
    mut segmenter: Segmenter,
    batches_rx: Receiver<Batch>,
    scores_tx: Sender<Scores>,
) -> Result<StageStats> {
    let mut stats = StageStats::new("infer");
    for batch in batches_rx.iter() {
        let started = Instant::now();
        let logits = segmenter.run(batch.input.view())?;
        stats.record(started, batch.frames.len() as u64, batches_rx.len());
        for (frame, logits) in batch.frames.into_iter().zip(logits.outer_iter()) {
            if scores_tx
                .send(Scores {
                    frame,
                    logits: logits.to_owned(),
                })
                .is_err()
            {
                return Ok(stats);
            }
        }
    }
    Ok(stats)
}

fn postprocess_scores(
    threshold: f32,
    mut compositor: Compositor,
    scores_rx: Receiver<Scores>,
    output_tx: Sender<Frame>,
) -> Result<StageStats> {
    let mut stats = StageStats::new("postprocess");
    let mut post = Postprocessor::new(threshold);
    for Scores { frame, logits } in scores_rx.iter() {
        let started = Instant::now();
        let mask = post.run(logits.view(), frame.width(), frame.height());
        let pixels = compositor.run(&frame.pixels, &mask);
        stats.record(started, 1, scores_rx.len());
        if output_tx.send(frame.with_pixels(pixels)).is_err() {
            break;
        }
    }
    Ok(stats)
}

fn write_sink(
    mut sink: FrameSink,
    output_rx: Receiver<Frame>,
    progress: &ProgressBar,
    interrupted_rx: &Receiver<bool>,
) -> Result<(StageStats, u64)> {
    let mut stats = StageStats::new("sink");
    let mut reorder = Reorder::default();
    let mut push = |sink: &mut FrameSink, frames: Vec<Frame>, depth: usize| -> Result<()> {
        for frame in frames {
            let started = Instant::now();
            sink.push(frame)?;
            stats.record(started, 1, depth);
            progress.inc(1);
        }
        Ok(())
    };
    for frame in output_rx.iter() {
        let ready = reorder.push(frame);
        push(&mut sink, ready, output_rx.len())?;
    }
    push(&mut sink, reorder.drain(), 0)?;
    let interrupted = interrupted_rx.recv().unwrap_or(false);
    let written = sink.finish(interrupted)?;
    Ok((stats, written))
}
