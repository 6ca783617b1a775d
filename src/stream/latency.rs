//! Per-frame latency (the appsink handing a frame over to the appsrc taking it) and the figures
//! a live run reports every few seconds.

use std::time::Duration;

use serde::Serialize;

use super::stats::percentile;

/// Latency percentiles over a set of frames.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencySummary {
    /// Frames measured.
    pub frames: u64,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile, in milliseconds.
    pub p95_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// Largest, in milliseconds.
    pub max_ms: f64,
}

impl LatencySummary {
    /// The summary of `samples`.
    pub fn of(samples: &[Duration]) -> Self {
        let ms = |p: f64| percentile(samples, p).as_secs_f64() * 1e3;
        LatencySummary {
            frames: samples.len() as u64,
            p50_ms: ms(50.0),
            p95_ms: ms(95.0),
            p99_ms: ms(99.0),
            max_ms: ms(100.0),
        }
    }
}

/// What happened during one reporting interval of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// Seconds from the start of the run to the end of the interval.
    pub at_s: f64,
    /// Length of the interval in seconds.
    pub seconds: f64,
    /// Frames taken from the source.
    pub frames_read: u64,
    /// Frames written to the sink.
    pub frames_written: u64,
    /// Frames dropped to keep latency bounded.
    pub frames_dropped: u64,
    /// Frames written per second.
    pub fps: f64,
    /// Latency of the frames written.
    pub latency: LatencySummary,
}

/// Periodic figures while a run goes on.
pub struct Ticker {
    /// Interval length.
    pub every: Duration,
    /// Called at the end of each interval.
    pub report: Box<dyn FnMut(&Interval) + Send>,
}
