//! One source's stages around the shared [`Engine`]: pre-processing into the engine, and
//! post-processing and composition of what it routes back. A door (the CLI's appsink/appsrc
//! pair, the GStreamer element's pads) puts frames into [`LaneInput`] and takes composed frames
//! from [`LaneOutput`]; the stages between are the same code for every door.
//!
//! ```text
//! door → LaneInput ─Frame→ preprocess(N) ─Work→ [engine] ─Scores→ postprocess(N) ─Frame→ LaneOutput → door
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};

use super::engine::{Engine, join, spawn};
use super::outlet::Outlet;
use super::shared::{SourceId, Work};
use super::stages::{self, Flicker};
use super::stats::StageStats;
use super::{EngineConfig, Policy};
use crate::imaging::Compositor;
use crate::video::Frame;
use crate::{Error, Result};

/// Where a door puts its source's frames (numbered from 0 in arrival order). Dropping it ends
/// the source: the frames already given are still processed.
pub struct LaneInput {
    pub(super) frames: Outlet<Frame>,
}

impl LaneInput {
    /// Sends `frame` on (waiting for room, or dropping the oldest waiting frame under
    /// [`Policy::DropOldest`]); `false` when the lane has stopped taking frames.
    pub fn send(&self, frame: Frame) -> bool {
        self.frames.send(frame).is_ok()
    }

    /// Frames waiting to be pre-processed.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a door takes its source's composed frames: in sequence order when the lane has one
/// post-processing worker, else in any order (the door reorders them).
pub struct LaneOutput {
    pub(super) frames: Receiver<Frame>,
}

impl LaneOutput {
    /// The receiving end of the composed frames; it disconnects when the lane has ended.
    pub fn frames(&self) -> &Receiver<Frame> {
        &self.frames
    }
}

/// The worker threads of one lane.
pub struct LaneWorkers {
    /// The lane's source id in its engine.
    pub source: SourceId,
    preprocess: Vec<JoinHandle<Result<StageStats>>>,
    postprocess: Vec<JoinHandle<Result<(StageStats, Flicker)>>>,
    /// Raised when one of this lane's stages fails.
    pub abort: Arc<AtomicBool>,
}

/// What a lane's stages did.
pub struct LaneStats {
    /// Pre-processing, all workers together.
    pub preprocess: StageStats,
    /// Post-processing and composition, all workers together.
    pub postprocess: StageStats,
    /// Mask flicker, when the lane had one post-processing worker.
    pub flicker: Option<f64>,
}

/// Attaches a lane to `engine`: `config.workers` pre-processing workers and one
/// post-processing worker per compositor; the frames it drops (live policy) are added to
/// `dropped`.
///
/// # Errors
/// [`Error::Config`] when a lane that must keep frames in order (live, smoothed) has more than
/// one worker; [`Error::Pipeline`] when a thread cannot be started.
pub fn attach(
    engine: &Engine,
    config: &EngineConfig,
    compositors: Vec<Compositor>,
    dropped: &Arc<AtomicU64>,
) -> Result<(LaneInput, LaneOutput, LaneWorkers)> {
    if config.in_order() && (config.workers != 1 || compositors.len() != 1) {
        return Err(Error::Config(
            "live runs and temporal smoothing need one pre- and one post-processing worker".into(),
        ));
    }
    let depth = match config.policy {
        Policy::Block => config.batch_size.max(config.workers) + 1,
        Policy::DropOldest => 1,
    };
    let (frames_tx, frames_rx) = bounded(depth);
    let (scores_tx, scores_rx) = bounded(depth);
    let (output_tx, output_rx) = bounded(depth);
    let frames = Outlet::new(frames_tx, &frames_rx, config.policy, dropped);
    let scores = Outlet::new(scores_tx, &scores_rx, config.policy, dropped);
    let (source, work) = engine.attach(scores, config.every, dropped);
    let abort = Arc::new(AtomicBool::new(false));

    let remaining = Arc::new(AtomicUsize::new(config.workers));
    let card = engine.card().clone();
    let preprocess = (0..config.workers)
        .map(|_| {
            let (rx, work, card) = (frames_rx.clone(), work.clone(), card.clone());
            let remaining = Arc::clone(&remaining);
            spawn("preprocess", &abort, move || {
                let stats = stages::preprocess_frames(source, &card, &rx, &work);
                // The last worker to finish ends the source, after all of its frames.
                if remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                    let _ = work.send(Work::End(source));
                }
                stats
            })
        })
        .collect::<Result<Vec<_>>>()?;
    drop((frames_rx, work));
    let measure_flicker = compositors.len() == 1;
    let postprocess = compositors
        .into_iter()
        .map(|compositor| {
            let (rx, tx, config) = (scores_rx.clone(), output_tx.clone(), config.clone());
            spawn("postprocess", &abort, move || {
                stages::postprocess_scores(&config, measure_flicker, compositor, &rx, &tx)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((
        LaneInput { frames },
        LaneOutput { frames: output_rx },
        LaneWorkers {
            source,
            preprocess,
            postprocess,
            abort,
        },
    ))
}

impl LaneWorkers {
    /// Waits for every worker (all of them, even after a failure).
    ///
    /// # Errors
    /// The first worker's error.
    pub fn join(self) -> Result<LaneStats> {
        let preprocess = join_all("preprocess", self.preprocess);
        let postprocess = join_all("postprocess", self.postprocess);
        let (preprocess, postprocess) = (preprocess?, postprocess?);
        let flicker = match postprocess.as_slice() {
            [(_, flicker)] => flicker.rate(),
            _ => None,
        };
        Ok(LaneStats {
            preprocess: merged("preprocess", preprocess),
            postprocess: merged(
                "postprocess",
                postprocess.into_iter().map(|(stats, _)| stats),
            ),
            flicker,
        })
    }
}

/// Joins every worker of stage `name`; the first error wins.
pub(super) fn join_all<T>(name: &str, handles: Vec<JoinHandle<Result<T>>>) -> Result<Vec<T>> {
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
