//! Per-stage measurements: frames, busy time, per-item latency and the depth of the input queue,
//! kept for the run's report and recorded as they happen into the process's telemetry.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::telemetry::{self, StageProbe};

/// What one stage (all its workers together) did during a run.
#[derive(Debug, Clone, Default)]
pub struct StageStats {
    /// Stage name, as its threads are named.
    pub name: &'static str,
    /// Frames passed on.
    pub frames: u64,
    /// Time spent working (not waiting for input or output), summed over workers.
    pub busy: Duration,
    latencies: Vec<Duration>,
    queue_depth_sum: u64,
    queue_samples: u64,
    /// CPU time of the worker threads since each one's first item, and the frames since then.
    cpu: Duration,
    cpu_frames: u64,
    /// This worker thread's CPU time at its first item.
    cpu_mark: Option<Duration>,
    /// Where the live figures go.
    probe: Option<StageProbe>,
}

impl StageStats {
    /// Empty statistics for stage `name`.
    pub fn new(name: &'static str) -> Self {
        StageStats {
            name,
            probe: Some(telemetry::stage(name)),
            ..Default::default()
        }
    }

    /// Records one item (of `frames` frames) whose work started at `started`, taken from a
    /// queue that then held `queue_depth` more items.
    pub fn record(&mut self, started: Instant, frames: u64, queue_depth: usize) {
        let spent = started.elapsed();
        self.frames += frames;
        self.busy += spent;
        self.latencies.push(spent);
        self.queue_depth_sum += queue_depth as u64;
        self.queue_samples += 1;
        if let Some(probe) = &self.probe {
            probe.record(spent, queue_depth);
        }
        if let Some(now) = thread_cpu_time() {
            match self.cpu_mark {
                Some(mark) => {
                    self.cpu = now.saturating_sub(mark);
                    self.cpu_frames += frames;
                }
                None => self.cpu_mark = Some(now),
            }
        }
    }

    /// Adds another worker's statistics of the same stage.
    pub fn merge(&mut self, other: StageStats) {
        self.frames += other.frames;
        self.busy += other.busy;
        self.latencies.extend(other.latencies);
        self.queue_depth_sum += other.queue_depth_sum;
        self.queue_samples += other.queue_samples;
        self.cpu += other.cpu;
        self.cpu_frames += other.cpu_frames;
    }

    /// The `p`-th percentile (0..=100) of per-item latency.
    pub fn latency_percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    /// Mean number of items waiting in the stage's input queue.
    pub fn mean_queue_depth(&self) -> f64 {
        if self.queue_samples == 0 {
            0.0
        } else {
            self.queue_depth_sum as f64 / self.queue_samples as f64
        }
    }

    /// A serialisable summary.
    pub fn summary(&self) -> StageSummary {
        StageSummary {
            name: self.name,
            frames: self.frames,
            busy_s: self.busy.as_secs_f64(),
            cpu_ms_per_frame: self.cpu.as_secs_f64() * 1e3 / self.cpu_frames.max(1) as f64,
            p50_ms: self.latency_percentile(50.0).as_secs_f64() * 1e3,
            p95_ms: self.latency_percentile(95.0).as_secs_f64() * 1e3,
            mean_queue_depth: self.mean_queue_depth(),
        }
    }
}

/// The figures `--stats` prints for a stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    /// Stage name.
    pub name: &'static str,
    /// Frames passed on.
    pub frames: u64,
    /// Busy seconds, summed over workers.
    pub busy_s: f64,
    /// CPU time of the stage's own threads per frame (not ONNX Runtime's pool), in ms.
    pub cpu_ms_per_frame: f64,
    /// Median per-item latency in milliseconds.
    pub p50_ms: f64,
    /// 95th-percentile per-item latency in milliseconds.
    pub p95_ms: f64,
    /// Mean input-queue depth.
    pub mean_queue_depth: f64,
}

/// CPU time the calling thread has run, from the kernel's scheduler statistics (ns).
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanoseconds = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanoseconds))
}

/// The `p`-th percentile (nearest rank) of `samples`; zero when there are none.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 95.0), Duration::from_millis(95));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
