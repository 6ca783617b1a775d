//! The shared part of the engine: one batcher and one inference stage serving every source
//! attached to it.
//!
//! ```text
//! lane 0: preprocess ─┐                                           ┌─ Scores → lane 0: postprocess
//! lane 1: preprocess ─┼─Work→ batcher ─Batched→ infer(sessions) ─┼─ Scores → lane 1: postprocess
//! lane N: preprocess ─┘   (full, or oldest frame's budget)        └─ …
//! ```
//!
//! A batch may hold frames of several sources. Inference routes each frame's logits back to
//! its own source's lane; everything with memory across frames (`--every` reuse here, smoothing
//! and reordering in the lanes) is per source. A lane ends its source with a [`Work::End`]
//! marker after its last frame: the batcher flushes what it holds, then inference drops the
//! lane's route once none of the source's batches is still queued or running, which ends the
//! lane's post-processing.
//!
//! On the CPU, files run [`Batching::sessions`] inference calls side by side, each on a session
//! of its own (ONNX Runtime's Rust API runs one call per session at a time): one frame's
//! inference beside another's keeps every core busy for a fraction of the CPU that splitting
//! each frame's layers between threads costs. Their logits may reach a lane out of order,
//! which only runs that need no order get (see [`Batching`]).
//!
//! The shared queues block (never drop): a live lane drops its own oldest frame before
//! pre-processing, so that one source's drops never cost another source a frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, bounded};

use super::outlet::Outlet;
use super::shared::{Batching, Route, Routes, Scores, SourceId, Work, lock};
use super::stages;
use super::stats::StageStats;
use crate::infer::{ModelCard, Provider, Segmenter};
use crate::{Error, Result};

/// The shared batcher and inference stage, and the sources attached to them.
pub struct Engine {
    work: Sender<Work>,
    routes: Routes,
    next_source: AtomicU32,
    card: ModelCard,
    provider: Provider,
    failed: Arc<AtomicBool>,
    threads: Vec<(&'static str, JoinHandle<Result<StageStats>>)>,
}

impl Engine {
    /// Starts the batcher and the inference stage for `segmenter`.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when a thread cannot be started.
    pub fn start(segmenter: Segmenter, batching: Batching) -> Result<Self> {
        let card = segmenter.card().clone();
        let provider = segmenter.provider();
        let batch_size = batching.batch_size.max(1);
        let (work, work_rx) = bounded(batch_size);
        // Live: a batch is handed over only when inference takes it, so the one in front of
        // the model can still take newer frames.
        let (batches_tx, batches_rx) = bounded(usize::from(!batching.live));
        let routes: Routes = Arc::default();
        let failed = Arc::new(AtomicBool::new(false));
        let batcher = {
            let routes = Arc::clone(&routes);
            spawn("batcher", &failed, move || match batching.live {
                true => stages::batch_live_work(batching, &work_rx, &batches_tx, &routes),
                false => stages::batch_work(batching, &work_rx, &batches_tx, &routes),
            })?
        };
        let sessions = match provider {
            Provider::Cpu => batching.sessions.max(1),
            Provider::Cuda => 1,
        };
        let reopen = segmenter.reopen();
        let running = Arc::new(AtomicUsize::new(sessions));
        let mut first = Some(segmenter);
        let mut threads = vec![("batcher", batcher)];
        for _ in 0..sessions {
            let (routes, batches_rx) = (Arc::clone(&routes), batches_rx.clone());
            let (segmenter, reopen) = (first.take(), reopen.clone());
            let running = Arc::clone(&running);
            let infer = spawn("infer", &failed, move || {
                // The other sessions open on their own threads, while the first one runs.
                let result = match segmenter.map_or_else(|| reopen.open(), Ok) {
                    Ok(segmenter) => stages::infer_batches(segmenter, &batches_rx, &routes),
                    Err(error) => Err(error),
                };
                // However the last inference thread ended, no more logits come: every lane's
                // post-processing may finish with what it has.
                if running.fetch_sub(1, Ordering::SeqCst) == 1 || result.is_err() {
                    lock(&routes).clear();
                }
                result
            })?;
            threads.push(("infer", infer));
        }
        Ok(Engine {
            work,
            routes,
            next_source: AtomicU32::new(0),
            card,
            provider,
            failed,
            threads,
        })
    }

    /// The model's card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The execution provider the model runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Whether a shared stage has failed (the model refused a batch): every lane ends.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The flag [`Engine::failed`] reads, for threads that outlive a borrow of the engine.
    pub(super) fn failure_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.failed)
    }

    /// Attaches a new source whose logits go to `scores`, the model running on every
    /// `every`-th of its frames and the frames dropped for it counted in `dropped`; returns its
    /// id and where its lane sends work.
    pub(super) fn attach(
        &self,
        scores: Outlet<Scores>,
        every: u64,
        dropped: &Arc<AtomicU64>,
    ) -> (SourceId, Sender<Work>) {
        let source = self.next_source.fetch_add(1, Ordering::Relaxed);
        lock(&self.routes).insert(source, Route::new(scores, every, dropped));
        (source, self.work.clone())
    }

    /// Ends the shared stages once every lane has ended; returns their statistics (batcher,
    /// inference, its sessions together).
    ///
    /// # Errors
    /// The first shared stage's error (the model failing on a batch).
    pub fn finish(self) -> Result<Vec<StageStats>> {
        let Engine { work, threads, .. } = self;
        drop(work);
        let results: Vec<Result<StageStats>> = threads
            .into_iter()
            .map(|(name, handle)| join(name, handle))
            .collect();
        let mut stages: Vec<StageStats> = Vec::new();
        for part in results.into_iter().collect::<Result<Vec<_>>>()? {
            match stages.iter_mut().find(|stage| stage.name == part.name) {
                Some(stage) => stage.merge(part),
                None => stages.push(part),
            }
        }
        Ok(stages)
    }
}

/// Starts stage `name` on its own thread; its failure raises `failed`.
pub(super) fn spawn<T: Send + 'static>(
    name: &'static str,
    failed: &Arc<AtomicBool>,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<JoinHandle<Result<T>>> {
    let failed = Arc::clone(failed);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let result = work();
            if result.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            result
        })
        .map_err(|e| Error::Pipeline(format!("cannot start the {name} thread: {e}")))
}

/// Waits for stage `name`'s thread and returns its result.
pub(super) fn join<T>(name: &str, handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| Error::Pipeline(format!("the {name} stage panicked")))?
}
