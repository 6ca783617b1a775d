//! The engine's stages, one function each, and the items that travel between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender};
use gstreamer as gst;
use indicatif::ProgressBar;
use ndarray::{Array3, Axis, stack};

use super::latency::{Interval, LatencySummary, Ticker};
use super::outlet::{Frames, Outlet};
use super::reconnect::{Reconnect, Verdict};
use super::reorder::Reorder;
use super::shared::{self, Batch, Batched, Batching, Routes, Scores, SourceId, Tensor, Work, lock};
use super::stats::StageStats;
use super::{Counters, Ending, EngineConfig, Patience};
use crate::Result;
use crate::imaging::postprocess::changed_labels;
use crate::imaging::{Compositor, Postprocessor, Preprocessor, Scaler};
use crate::infer::{ModelCard, Segmenter};
use crate::telemetry::{self, SourceMeter};
use crate::video::{Frame, FrameOutput, FrameSource, Pulled};

/// How often the source looks at the stop flag while waiting for a frame.
const SOURCE_POLL: gst::ClockTime = gst::ClockTime::from_mseconds(100);

impl Frames for Frame {
    fn frames(&self) -> u64 {
        1
    }
}

/// What the source stage returns besides its statistics.
pub(super) struct SourceEnd {
    pub stats: StageStats,
    pub ending: Ending,
    /// From the first frame's start to the last one's end, in stream time.
    pub span: Option<Duration>,
}

/// The stream time the frames read cover: the earliest start and the latest end.
#[derive(Default)]
struct Timeline {
    first: Option<gst::ClockTime>,
    end: Option<gst::ClockTime>,
}

impl Timeline {
    fn add(&mut self, frame: &Frame) {
        let Some(pts) = frame.pts else { return };
        let end = pts + frame.duration.unwrap_or_default();
        self.first = Some(self.first.map_or(pts, |first| first.min(pts)));
        self.end = Some(self.end.map_or(end, |last| last.max(end)));
    }

    fn span(&self) -> Option<Duration> {
        let (first, end) = (self.first?, self.end?);
        Some(Duration::from_nanos((end - first).nseconds()))
    }
}

/// Pulls frames until the input ends (end of stream), the stop flag is set or a stage fails.
/// With `patience` (live), a silent or failing source is reconnected instead of ending.
pub(super) fn read_source(
    mut source: FrameSource,
    frames_out: &Outlet<Frame>,
    stop: &AtomicBool,
    counters: &Counters,
    patience: Option<Patience>,
) -> Result<SourceEnd> {
    let mut stats = StageStats::new("source");
    let mut watch = patience.map(|patience| Reconnect::new(patience, Arc::clone(&counters.meter)));
    let mut timeline = Timeline::default();
    let ending = loop {
        if stop.load(Ordering::SeqCst) {
            break Ending::Interrupted;
        }
        if counters.aborted() {
            break Ending::Finished; // the failing stage reports its error
        }
        let started = Instant::now();
        let error = match source.pull(SOURCE_POLL) {
            Ok(Pulled::Frame(frame)) => {
                if let Some(watch) = watch.as_mut() {
                    watch.frame_arrived();
                }
                stats.record(started, 1, frames_out.len());
                counters.meter.read.fetch_add(1, Ordering::Relaxed);
                timeline.add(&frame);
                if frames_out.send(*frame).is_err() {
                    break Ending::Finished; // downstream stopped; its stage reports why
                }
                continue;
            }
            Ok(Pulled::Timeout) => None,
            // A live source that failed may end its stream too: that end is part of the
            // failure, and reconnecting goes on.
            Ok(Pulled::End) if watch.as_ref().is_some_and(Reconnect::failing) => {
                std::thread::sleep(Duration::from_nanos(SOURCE_POLL.nseconds()));
                None
            }
            // Otherwise the source says it is done, live or not: nothing to reconnect.
            Ok(Pulled::End) => break Ending::Finished,
            Err(error) => Some(error),
        };
        match (watch.as_mut(), error) {
            (None, Some(error)) => return Err(error),
            (None, None) => {}
            (Some(watch), error) => {
                if let Verdict::Lost { silent, last_error } = watch.idle(&mut source, error)? {
                    break Ending::SourceLost { silent, last_error };
                }
            }
        }
    };
    source.stop();
    Ok(SourceEnd {
        stats,
        ending,
        span: timeline.span(),
    })
}

/// Pre-processes the frames of `source` into model inputs for the shared batcher.
pub(super) fn preprocess_frames(
    source: SourceId,
    card: &ModelCard,
    frames_rx: &Receiver<Frame>,
    work: &Sender<Work>,
) -> Result<StageStats> {
    let mut stats = StageStats::new("preprocess");
    let mut pre = Preprocessor::new(card);
    for mut frame in frames_rx.iter() {
        let started = Instant::now();
        frame.source = source;
        let input = pre.run_frame(&frame.pixels, &frame.info);
        stats.record(started, 1, frames_rx.len());
        if work
            .send(Work::Tensor(Box::new(Tensor { frame, input })))
            .is_err()
        {
            break;
        }
    }
    Ok(stats)
}

/// Closes a batch when it is full or when its oldest frame has waited `max_wait`; a source's
/// end closes the batch at once (its last frames wait for nothing) and is passed on after it.
pub(super) fn batch_work(
    batching: Batching,
    work_rx: &Receiver<Work>,
    batches_tx: &Sender<Batched>,
    routes: &Routes,
) -> Result<StageStats> {
    let mut stats = StageStats::new("batcher");
    let mut pending: Vec<Tensor> = Vec::with_capacity(batching.batch_size);
    let mut oldest = Instant::now();
    loop {
        let received = if pending.is_empty() {
            work_rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            work_rx.recv_deadline(oldest + batching.max_wait)
        };
        let (ended, disconnected) = match received {
            Ok(Work::Tensor(tensor)) => {
                if pending.is_empty() {
                    oldest = Instant::now();
                }
                pending.push(*tensor);
                (None, false)
            }
            Ok(Work::End(source)) => (Some(source), false),
            Err(RecvTimeoutError::Timeout) => (None, false),
            Err(RecvTimeoutError::Disconnected) => (None, true),
        };
        let full = pending.len() >= batching.batch_size;
        let waited = !pending.is_empty() && oldest.elapsed() >= batching.max_wait;
        let flush = ended.is_some() || disconnected;
        if full || waited || (flush && !pending.is_empty()) {
            let started = Instant::now();
            let batch = make_batch(std::mem::take(&mut pending));
            stats.record(started, batch.frames.len() as u64, work_rx.len());
            shared::hold(routes, &batch.sources());
            if batches_tx.send(Batched::Batch(batch)).is_err() {
                break;
            }
        }
        if let Some(source) = ended
            && batches_tx.send(Batched::End(source)).is_err()
        {
            break;
        }
        if disconnected {
            break;
        }
    }
    Ok(stats)
}

/// The live batcher: a batch holds at most one frame per source, the newest (a newer frame
/// of the same source replaces the one waiting, which is dropped and counted), and it is
/// handed over only when inference takes it (a rendezvous), so the frames waiting in front of
/// the model stay the newest ones and latency cannot grow. It closes when it holds one frame of
/// each attached source (at most `batch_size`) or when its oldest frame has waited `max_wait`.
pub(super) fn batch_live_work(
    batching: Batching,
    work_rx: &Receiver<Work>,
    batches_tx: &Sender<Batched>,
    routes: &Routes,
) -> Result<StageStats> {
    let mut stats = StageStats::new("batcher");
    let mut pending: Vec<Tensor> = Vec::with_capacity(batching.batch_size);
    let mut ends: Vec<SourceId> = Vec::new();
    let mut oldest = Instant::now();
    let mut disconnected = false;
    loop {
        if pending.is_empty() {
            for source in ends.drain(..) {
                if batches_tx.send(Batched::End(source)).is_err() {
                    return Ok(stats);
                }
            }
            if disconnected {
                return Ok(stats);
            }
        }
        // One frame of each attached source fills a batch (up to the batch size).
        let sources = lock(routes).len().max(1);
        let due = !pending.is_empty()
            && (pending.len() >= batching.batch_size.min(sources)
                || oldest.elapsed() >= batching.max_wait
                || !ends.is_empty()
                || disconnected);
        let mut select = Select::new();
        let receive = (!disconnected).then(|| select.recv(work_rx));
        let hand_over = due.then(|| select.send(batches_tx));
        let operation = match (due, pending.is_empty()) {
            (false, false) => match select.select_deadline(oldest + batching.max_wait) {
                Ok(operation) => operation,
                Err(_) => continue, // the oldest frame's budget is spent: the batch is due
            },
            _ => select.select(),
        };
        let index = operation.index();
        debug_assert!(Some(index) == hand_over || Some(index) == receive);
        if Some(index) == hand_over {
            let started = Instant::now();
            let batch = make_batch(std::mem::take(&mut pending));
            stats.record(started, batch.frames.len() as u64, work_rx.len());
            shared::hold(routes, &batch.sources());
            if operation.send(batches_tx, Batched::Batch(batch)).is_err() {
                return Ok(stats);
            }
            continue;
        }
        match operation.recv(work_rx) {
            Ok(Work::Tensor(tensor)) => {
                let source = tensor.frame.source;
                match pending.iter_mut().find(|t| t.frame.source == source) {
                    Some(waiting) => {
                        *waiting = *tensor;
                        if let Some(route) = lock(routes).get(&source) {
                            route.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        if pending.is_empty() {
                            oldest = Instant::now();
                        }
                        pending.push(*tensor);
                    }
                }
            }
            Ok(Work::End(source)) => ends.push(source),
            Err(_) => disconnected = true,
        }
    }
}

fn make_batch(tensors: Vec<Tensor>) -> Batch {
    let (frames, inputs): (Vec<Frame>, Vec<Array3<f32>>) =
        tensors.into_iter().map(|t| (t.frame, t.input)).unzip();
    // A batch of one (the CPU's default) takes its tensor as it is, without a copy.
    let input = match <[Array3<f32>; 1]>::try_from(inputs) {
        Ok([input]) => input.insert_axis(Axis(0)),
        Err(inputs) => {
            let views: Vec<_> = inputs.iter().map(|input| input.view()).collect();
            stack(Axis(0), &views).expect("every tensor has the card's input shape")
        }
    };
    Batch { frames, input }
}

/// Runs the model on each batch (on the frames their source's cadence makes due) and routes
/// each frame's logits to its source's lane; a source's end drops its route.
pub(super) fn infer_batches(
    mut segmenter: Segmenter,
    batches_rx: &Receiver<Batched>,
    routes: &Routes,
) -> Result<StageStats> {
    let mut stats = StageStats::new("infer");
    for item in batches_rx.iter() {
        let batch = match item {
            Batched::Batch(batch) => batch,
            Batched::End(source) => {
                shared::end(routes, source);
                continue;
            }
        };
        let sources = batch.sources();
        let started = Instant::now();
        let due: Vec<usize> = {
            let mut routes = lock(routes);
            (0..batch.frames.len())
                .filter(|&i| {
                    let frame = &batch.frames[i];
                    routes
                        .get_mut(&frame.source)
                        .is_some_and(|route| route.cadence.take(frame.seq))
                })
                .collect()
        };
        let logits = if due.is_empty() {
            None
        } else if due.len() == batch.frames.len() {
            Some(segmenter.run(batch.input.view())?)
        } else {
            Some(segmenter.run(batch.input.select(Axis(0), &due).view())?)
        };
        if logits.is_some() {
            // The infer stage counts the frames the model ran on, not those that reused logits.
            stats.record(started, due.len() as u64, batches_rx.len());
            telemetry::inference_batch(due.len());
        }
        let mut rows = logits.iter().flat_map(|l| l.outer_iter());
        let deliveries: Vec<_> = {
            let mut routes = lock(routes);
            batch
                .frames
                .into_iter()
                .enumerate()
                .filter_map(|(i, frame)| {
                    let fresh = due.contains(&i).then(|| rows.next().map(|r| r.to_owned()));
                    let route = routes.get_mut(&frame.source)?;
                    let logits = route.cadence.logits(fresh.flatten())?;
                    Some((route.scores.clone(), Scores { frame, logits }))
                })
                .collect()
        };
        // Sent without the routes locked: a lane waiting for room must not stop others
        // from attaching or ending.
        for (outlet, scores) in deliveries {
            // A lane that stopped taking logits has ended; the others go on.
            let _ = outlet.send(scores);
        }
        shared::release(routes, &sources);
    }
    Ok(stats)
}

/// Mask pixels that changed between consecutive frames, and pixels compared.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Flicker {
    changed: u64,
    pixels: u64,
}

impl Flicker {
    /// The share of compared pixels that changed, when any were compared.
    pub fn rate(&self) -> Option<f64> {
        (self.pixels > 0).then(|| self.changed as f64 / self.pixels as f64)
    }
}

/// Post-processes and composes; with `measure_flicker` (one worker, frames in order) it also
/// counts the mask pixels that change from frame to frame.
pub(super) fn postprocess_scores(
    config: &EngineConfig,
    measure_flicker: bool,
    mut compositor: Compositor,
    scores_rx: &Receiver<Scores>,
    output_tx: &Sender<Frame>,
) -> Result<(StageStats, Flicker)> {
    let mut stats = StageStats::new("postprocess");
    let mut post = Postprocessor::new(config.threshold)
        .with_smoothing(config.smoothing)
        .with_coverage(compositor.wants_coverage());
    let (mut flicker, mut previous) = (Flicker::default(), Vec::<u8>::new());
    let mut scaler = Scaler::default();
    for Scores { mut frame, logits } in scores_rx.iter() {
        let started = Instant::now();
        let (_, h, w) = logits.dim();
        let luma = config
            .smoothing
            .follows_motion()
            .then(|| frame.luma_at(&mut scaler, [w, h]));
        let mut mask = post.run_moving(
            logits.view(),
            frame.width(),
            frame.height(),
            luma.as_deref(),
        );
        match frame.i420_layout() {
            Some(_) => compositor.run_i420(&mut frame.pixels, &frame.info, &mask),
            None => frame.pixels = compositor.run(std::mem::take(&mut frame.pixels), &mask),
        }
        stats.record(started, 1, scores_rx.len());
        if measure_flicker {
            if previous.len() == mask.labels.len() {
                flicker.changed += changed_labels(&previous, &mask.labels);
                flicker.pixels += mask.labels.len() as u64;
            }
            previous.clone_from(&mask.labels);
        }
        // The mask travels on with its labels; the coverage was only for composing.
        mask.coverage = None;
        frame.mask = Some(mask);
        frame.composed = Some(Instant::now());
        if output_tx.send(frame).is_err() {
            break;
        }
    }
    Ok((stats, flicker))
}

/// What the sink stage returns.
pub(super) struct SinkEnd {
    pub stats: StageStats,
    pub written: u64,
    pub span: Duration,
    pub latency: Vec<Duration>,
    pub intervals: Vec<Interval>,
}

/// The last stage: frames into the sink (in sequence order), latency per frame, and the
/// periodic figures.
pub(super) struct SinkStage<'a> {
    /// Whether frames may arrive out of order (parallel post-processing).
    pub reorder: bool,
    pub progress: ProgressBar,
    pub ticker: Option<Ticker>,
    pub started: Instant,
    pub counters: &'a Counters,
}

/// Where the current reporting interval began.
struct Tally {
    at: Instant,
    read: u64,
    dropped: u64,
    /// Index of the interval's first latency sample.
    first_latency: usize,
}

/// What the sink stage has written: statistics, each frame's latency, first and last write.
struct Written {
    meter: Arc<SourceMeter>,
    stats: StageStats,
    latency: Vec<Duration>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Written {
    /// Pushes `frame` into `sink` and records it (`depth`: frames still waiting).
    fn push(
        &mut self,
        sink: &mut dyn FrameOutput,
        frame: Frame,
        depth: usize,
        progress: &ProgressBar,
    ) -> Result<()> {
        let (started, received) = (Instant::now(), frame.received);
        sink.push(frame)?;
        let now = Instant::now();
        self.latency.push(now - received);
        self.meter.wrote(now - received);
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.stats.record(started, 1, depth);
        progress.inc(1);
        Ok(())
    }
}

impl SinkStage<'_> {
    /// Writes what arrives until the post-processors finish, then finishes the sink as the
    /// input's `ending` (received once the source has stopped) requires.
    pub fn run(
        mut self,
        mut sink: Box<dyn FrameOutput>,
        output_rx: &Receiver<Frame>,
        ending_rx: &Receiver<Ending>,
    ) -> Result<SinkEnd> {
        let mut written = Written {
            meter: Arc::clone(&self.counters.meter),
            stats: StageStats::new("sink"),
            latency: Vec::new(),
            first: None,
            last: None,
        };
        let mut reorder = Reorder::default();
        let mut intervals = Vec::new();
        let mut tally = Tally {
            at: self.started,
            read: 0,
            dropped: 0,
            first_latency: 0,
        };
        loop {
            let received = match &self.ticker {
                Some(ticker) => output_rx.recv_deadline(tally.at + ticker.every),
                None => output_rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let frames = match received {
                Ok(frame) if self.reorder => reorder.push(frame),
                Ok(frame) => vec![frame],
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                Err(RecvTimeoutError::Disconnected) => break,
            };
            for frame in frames {
                written.push(sink.as_mut(), frame, output_rx.len(), &self.progress)?;
            }
            self.tick(&mut tally, &written.latency, &mut intervals);
        }
        for frame in reorder.drain() {
            written.push(sink.as_mut(), frame, 0, &self.progress)?;
        }
        let ending = ending_rx.recv().unwrap_or(Ending::Finished);
        let count = sink.finish(ending == Ending::Interrupted)?;
        let Written {
            stats,
            latency,
            first,
            last,
            ..
        } = written;
        Ok(SinkEnd {
            stats,
            written: count,
            span: first.zip(last).map_or(Duration::ZERO, |(a, b)| b - a),
            latency,
            intervals,
        })
    }

    /// Reports the interval that ends now, if one does.
    fn tick(&mut self, tally: &mut Tally, latency: &[Duration], intervals: &mut Vec<Interval>) {
        let Some(ticker) = self.ticker.as_mut() else {
            return;
        };
        let begun = tally.at;
        let now = Instant::now();
        if now < begun + ticker.every {
            return;
        }
        let (read, dropped) = (self.counters.read(), self.counters.dropped());
        let seconds = (now - begun).as_secs_f64();
        let written = &latency[tally.first_latency..];
        let interval = Interval {
            at_s: (now - self.started).as_secs_f64(),
            seconds,
            frames_read: read - tally.read,
            frames_written: written.len() as u64,
            frames_dropped: dropped - tally.dropped,
            fps: written.len() as f64 / seconds,
            latency: LatencySummary::of(written),
        };
        (ticker.report)(&interval);
        intervals.push(interval);
        *tally = Tally {
            at: now,
            read,
            dropped,
            first_latency: latency.len(),
        };
    }
}
