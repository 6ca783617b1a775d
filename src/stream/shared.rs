//! What the engine and its shared stages (batcher, inference) both use, below either: the
//! items that travel to and from the shared stages ([`Work`], [`Tensor`], [`Batched`],
//! [`Batch`], [`Scores`]), the routes that take each source's logits back to its own lane, and
//! how the shared stages batch ([`Batching`]). Uses the outlet and the video frame only.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ndarray::{Array3, Array4};

use super::outlet::{Frames, Outlet};
use crate::video::Frame;

/// Identifies one source of frames (an input file, a live feed, an element's stream) within
/// an engine.
pub type SourceId = u32;

/// What lanes hand the engine: one frame's model input (boxed: a frame's header is large
/// beside a source id), or the end of a source.
pub(super) enum Work {
    Tensor(Box<Tensor>),
    End(SourceId),
}

/// What the batcher hands inference.
pub(super) enum Batched {
    Batch(Batch),
    End(SourceId),
}

/// Where a source's logits go, its model cadence, and the count of its dropped frames.
pub(super) struct Route {
    pub scores: Outlet<Scores>,
    pub cadence: Cadence,
    pub dropped: Arc<AtomicU64>,
    /// Batches with frames of this source that are queued for inference or running.
    in_flight: usize,
    /// The source has ended: the route goes when nothing of it is in flight.
    ended: bool,
}

impl Route {
    /// A new source's route: its logits go to `scores`, the model runs on every `every`-th of
    /// its frames, and the frames dropped for it are counted in `dropped`.
    pub fn new(scores: Outlet<Scores>, every: u64, dropped: &Arc<AtomicU64>) -> Self {
        Route {
            scores,
            cadence: Cadence::new(every),
            dropped: Arc::clone(dropped),
            in_flight: 0,
            ended: false,
        }
    }
}

/// The routes of the attached sources.
pub(super) type Routes = Arc<Mutex<HashMap<SourceId, Route>>>;

/// Locks `routes`; a poisoned lock still holds valid routes (a panicking holder changed none
/// half-way).
pub(super) fn lock(routes: &Routes) -> MutexGuard<'_, HashMap<SourceId, Route>> {
    routes.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a batch with frames of `sources` (each once) as in flight, before it is queued.
pub(super) fn hold(routes: &Routes, sources: &[SourceId]) {
    let mut routes = lock(routes);
    for source in sources {
        if let Some(route) = routes.get_mut(source) {
            route.in_flight += 1;
        }
    }
}

/// A batch with frames of `sources` has been delivered; the routes of ended sources with
/// nothing left in flight go.
pub(super) fn release(routes: &Routes, sources: &[SourceId]) {
    let mut routes = lock(routes);
    for source in sources {
        if let Some(route) = routes.get_mut(source) {
            route.in_flight = route.in_flight.saturating_sub(1);
            if route.ended && route.in_flight == 0 {
                routes.remove(source);
            }
        }
    }
}

/// `source` has ended: its route goes now, or when its last batch in flight is delivered.
pub(super) fn end(routes: &Routes, source: SourceId) {
    let mut routes = lock(routes);
    if let Some(route) = routes.get_mut(&source) {
        route.ended = true;
        if route.in_flight == 0 {
            routes.remove(&source);
        }
    }
}

/// Which frames of one source the model runs on: every `every`-th by sequence number, counted
/// from the last one it ran on (so dropped frames cannot starve it); the frames after that one
/// reuse its logits. A frame from before it (parallel pre-processing can swap neighbours)
/// always runs.
pub(super) struct Cadence {
    every: u64,
    last_run: Option<u64>,
    last_logits: Option<ndarray::Array3<f32>>,
}

impl Cadence {
    pub fn new(every: u64) -> Self {
        Cadence {
            every: every.max(1),
            last_run: None,
            last_logits: None,
        }
    }

    /// Whether the model must run on frame `seq`; if so it becomes the last one run.
    pub fn take(&mut self, seq: u64) -> bool {
        let due = self
            .last_run
            .is_none_or(|last| seq < last || seq >= last + self.every);
        if due {
            self.last_run = Some(seq);
        }
        due
    }

    /// The logits for the next frame: `fresh` when the model ran on it, else the last ones.
    pub fn logits(&mut self, fresh: Option<ndarray::Array3<f32>>) -> Option<ndarray::Array3<f32>> {
        if let Some(fresh) = fresh {
            self.last_logits = Some(fresh);
        }
        self.last_logits.clone()
    }
}

/// How the shared stages batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batching {
    /// Frames per inference call.
    pub batch_size: usize,
    /// Longest a frame waits in the batcher for the batch to fill.
    pub max_wait: Duration,
    /// Live sources: a batch keeps only the newest frame of each source and waits in front of
    /// inference for nothing (see `batch_live_work`); files: nothing is dropped.
    pub live: bool,
    /// Inference calls that may run side by side on the CPU, each on a session of its own
    /// (under CUDA one: it batches instead). More than one only for runs whose lanes take
    /// logits in any order (no live source, smoothing or `--every` reuse).
    pub sessions: usize,
}

/// Pre-processed input of one frame.
pub(super) struct Tensor {
    pub frame: Frame,
    pub input: Array3<f32>,
}

/// Frames batched for one inference call (of one or several sources).
pub(super) struct Batch {
    pub frames: Vec<Frame>,
    pub input: Array4<f32>,
}

impl Batch {
    /// The sources of the batch's frames, each once.
    pub fn sources(&self) -> Vec<SourceId> {
        let mut sources: Vec<SourceId> = self.frames.iter().map(|f| f.source).collect();
        sources.sort_unstable();
        sources.dedup();
        sources
    }
}

/// Logits of one frame.
pub(super) struct Scores {
    pub frame: Frame,
    pub logits: Array3<f32>,
}

impl Frames for Scores {
    fn frames(&self) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadence_runs_every_nth_frame_even_across_gaps() {
        let mut cadence = Cadence::new(3);
        let due: Vec<u64> = [0, 1, 2, 3, 4, 7, 8, 9, 10]
            .into_iter()
            .filter(|&seq| cadence.take(seq))
            .collect();
        assert_eq!(due, vec![0, 3, 7, 10]);
        let mut after_nine = Cadence::new(3);
        assert!(after_nine.take(9));
        let due: Vec<u64> = [10, 11, 12]
            .into_iter()
            .filter(|&s| after_nine.take(s))
            .collect();
        assert_eq!(due, vec![12]);
        let mut every_frame = Cadence::new(1);
        assert!([1, 0, 2, 4, 3].into_iter().all(|seq| every_frame.take(seq)));
    }
}
