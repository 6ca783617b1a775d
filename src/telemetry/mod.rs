//! Live figures of a running process, for Prometheus: per source (frames read, written and
//! dropped, errors, reconnects, frames per second, frame latency, whether it delivers), per
//! stage (latency, input-queue depth) and the size of the batches inference ran.
//!
//! One registry per process, as Prometheus' own clients keep it: every run, file, feed and
//! element of the process records into it whether or not anything serves it (an atomic add and
//! a histogram bucket per frame), and [`server`] serves it while a door asks for it
//! (`--metrics`, the element's `metrics-port`).
//!
//! Uses `prometheus-client` and `tiny_http` only; `stream` and `element` record into it.

pub mod server;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// A source that wrote no frame for this long is not delivering (`/healthz`).
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// The window frames per second are counted over.
const FPS_WINDOW: Duration = Duration::from_secs(5);

/// Latency buckets in seconds: 0.5 ms to about 8 s, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The live figures of one source (a file, a feed, an element's stream).
#[derive(Debug)]
pub struct SourceMeter {
    name: String,
    /// Frames taken from the source.
    pub read: AtomicU64,
    written: AtomicU64,
    /// Frames dropped to keep latency bounded (shared with the lane that drops them).
    pub dropped: Arc<AtomicU64>,
    /// Failures: of the source (each one before a reconnection) or of a stage.
    pub errors: AtomicU64,
    /// Times the source was restarted.
    pub reconnects: AtomicU64,
    latency: Histogram,
    /// When the frames of the last [`FPS_WINDOW`] were written.
    recent: Mutex<VecDeque<Instant>>,
    ended: AtomicBool,
}

impl SourceMeter {
    fn new(name: String) -> Self {
        SourceMeter {
            name,
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped: Arc::default(),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            latency: latency_buckets(),
            recent: Mutex::default(),
            ended: AtomicBool::new(false),
        }
    }

    /// The source's name, as its metrics are labelled.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts a frame written, `latency` after its source handed it over.
    pub fn wrote(&self, latency: Duration) {
        self.written.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(latency.as_secs_f64());
        let now = Instant::now();
        let mut recent = lock(&self.recent);
        recent.push_back(now);
        forget_before(&mut recent, now);
    }

    /// Frames written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Counts one more frame dropped.
    pub fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks the source as ended: it no longer counts for `/healthz` (its counters stay).
    pub fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Frames written per second over the last [`FPS_WINDOW`] (or since the first frame).
    fn fps(&self, now: Instant) -> f64 {
        let mut recent = lock(&self.recent);
        forget_before(&mut recent, now);
        match recent.front() {
            Some(&first) if recent.len() > 1 => {
                let span = now.duration_since(first).max(Duration::from_millis(1));
                (recent.len() - 1) as f64 / span.as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// What `/healthz` says of this source.
    fn state(&self, now: Instant) -> SourceState {
        let last = lock(&self.recent).back().copied();
        let status = match (self.ended(), last) {
            (true, _) => Status::Ended,
            (false, None) => Status::Starting,
            (false, Some(at)) if now.duration_since(at) <= STALE_AFTER => Status::Delivering,
            (false, Some(_)) => Status::Stalled,
        };
        SourceState {
            source: self.name.clone(),
            status,
            frames_written: self.written(),
            seconds_since_last_frame: last.map(|at| now.duration_since(at).as_secs_f64()),
        }
    }
}

/// Drops the write times older than the fps window.
fn forget_before(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|&at| now.duration_since(at) > FPS_WINDOW)
    {
        recent.pop_front();
    }
}

/// What a source is doing, as `/healthz` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    /// No frame written yet.
    Starting,
    /// A frame written within [`STALE_AFTER`].
    Delivering,
    /// None written for [`STALE_AFTER`].
    Stalled,
    /// The source ended; it no longer counts for health.
    Ended,
}

/// One source's line in `/healthz`.
#[derive(Debug, Serialize)]
struct SourceState {
    source: String,
    status: Status,
    frames_written: u64,
    seconds_since_last_frame: Option<f64>,
}

/// `/healthz`'s answer: whether every running source delivers, and each source's state.
#[derive(Debug, Serialize)]
pub struct Health {
    /// True when at least one source runs and every running source wrote a frame within
    /// [`STALE_AFTER`].
    pub healthy: bool,
    sources: Vec<SourceState>,
}

/// Where a stage records each item: its latency and the depth of its input queue.
#[derive(Debug, Clone)]
pub struct StageProbe {
    latency: Histogram,
    queue: Gauge,
}

impl StageProbe {
    /// Records one item that took `spent`, taken from a queue then `depth` items deep.
    pub fn record(&self, spent: Duration, depth: usize) {
        self.latency.observe(spent.as_secs_f64());
        self.queue.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}

type StageLabels = [(&'static str, &'static str); 1];
type HistogramFamily = Family<StageLabels, Histogram, fn() -> Histogram>;

/// The process's figures.
struct Telemetry {
    registry: Registry,
    sources: Arc<Mutex<Vec<Arc<SourceMeter>>>>,
    stage_latency: HistogramFamily,
    queue_depth: Family<StageLabels, Gauge>,
    batch_frames: Histogram,
}

static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("segstream");
    let sources = Arc::default();
    let stage_latency = HistogramFamily::new_with_constructor(latency_buckets);
    let queue_depth = Family::<StageLabels, Gauge>::default();
    let batch_frames = Histogram::new([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0]);
    registry.register(
        "stage_latency_seconds",
        "Time a stage spent on one item (a frame; a batch for inference), all sources together",
        stage_latency.clone(),
    );
    registry.register(
        "stage_queue_depth",
        "Items waiting in front of a stage when it last took one",
        queue_depth.clone(),
    );
    registry.register(
        "inference_batch_frames",
        "Frames in each inference call",
        batch_frames.clone(),
    );
    registry.register_collector(Box::new(Sources(Arc::clone(&sources))));
    Telemetry {
        registry,
        sources,
        stage_latency,
        queue_depth,
        batch_frames,
    }
});

/// A meter for a new source called `name`. A source of that name that has ended is taken up
/// again (its counters go on, as Prometheus expects of a restarted stream); a running one keeps
/// its name and the new one gets `name#2`, `name#3`, ….
pub fn source(name: &str) -> Arc<SourceMeter> {
    let mut sources = lock(&TELEMETRY.sources);
    let taken = |candidate: &str| {
        sources
            .iter()
            .find(|meter| meter.name == candidate)
            .cloned()
    };
    let mut candidate = name.to_string();
    for n in 2.. {
        match taken(&candidate) {
            None => break,
            Some(meter) if meter.ended() => {
                meter.ended.store(false, Ordering::SeqCst);
                return meter;
            }
            Some(_) => candidate = format!("{name}#{n}"),
        }
    }
    let meter = Arc::new(SourceMeter::new(candidate));
    sources.push(Arc::clone(&meter));
    meter
}

/// The probe stage `name` records into.
pub fn stage(name: &'static str) -> StageProbe {
    let labels = [("stage", name)];
    StageProbe {
        latency: TELEMETRY.stage_latency.get_or_create(&labels).clone(),
        queue: TELEMETRY.queue_depth.get_or_create(&labels).clone(),
    }
}

/// Counts an inference call on `frames` frames.
pub fn inference_batch(frames: usize) {
    TELEMETRY.batch_frames.observe(frames as f64);
}

/// Every figure, in Prometheus' text format (version 0.0.4).
pub fn encode() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; the encoder only passes on fmt::Write's result.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &TELEMETRY.registry);
    text
}

/// Whether every running source delivers frames, and what each one does.
pub fn health() -> Health {
    let now = Instant::now();
    let sources: Vec<SourceState> = lock(&TELEMETRY.sources)
        .iter()
        .map(|meter| meter.state(now))
        .collect();
    let running: Vec<&SourceState> = sources
        .iter()
        .filter(|s| s.status != Status::Ended)
        .collect();
    let healthy = !running.is_empty() && running.iter().all(|s| s.status == Status::Delivering);
    Health { healthy, sources }
}

/// The per-source figures, read from the meters at each scrape.
#[derive(Debug)]
struct Sources(Arc<Mutex<Vec<Arc<SourceMeter>>>>);

/// A per-source counter: its name, help and how to read it.
type SourceCounter = (&'static str, &'static str, fn(&SourceMeter) -> u64);

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sources = lock(&self.0).clone();
        let now = Instant::now();
        let counters: [SourceCounter; 5] = [
            ("frames_read", "Frames taken from the source", |m| {
                m.read.load(Ordering::Relaxed)
            }),
            ("frames_written", "Frames written to the output", |m| {
                m.written()
            }),
            (
                "frames_dropped",
                "Frames dropped to keep latency bounded (late, or behind newer ones)",
                |m| m.dropped.load(Ordering::Relaxed),
            ),
            (
                "errors",
                "Failures of the source (each before a reconnection) or of a stage",
                |m| m.errors.load(Ordering::Relaxed),
            ),
            ("reconnects", "Times the source was restarted", |m| {
                m.reconnects.load(Ordering::Relaxed)
            }),
        ];
        for (name, help, read) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for meter in &sources {
                let labels = [("source", meter.name.as_str())];
                ConstCounter::new(read(meter)).encode(family.encode_family(&labels)?)?;
            }
        }
        let help = "Frames written per second over the last 5 s";
        let mut family = encoder.encode_descriptor("fps", help, None, MetricType::Gauge)?;
        for meter in &sources {
            let labels = [("source", meter.name.as_str())];
            ConstGauge::new(meter.fps(now)).encode(family.encode_family(&labels)?)?;
        }
        let help = "1 while the source delivers frames (one written within 5 s), else 0";
        let mut family = encoder.encode_descriptor("source_up", help, None, MetricType::Gauge)?;
        for meter in &sources {
            let labels = [("source", meter.name.as_str())];
            let up = i64::from(meter.state(now).status == Status::Delivering);
            ConstGauge::new(up).encode(family.encode_family(&labels)?)?;
        }
        let help = "From the source handing a frame over to the output taking it";
        let mut family = encoder.encode_descriptor(
            "frame_latency_seconds",
            help,
            None,
            MetricType::Histogram,
        )?;
        for meter in &sources {
            let labels = [("source", meter.name.as_str())];
            meter.latency.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Locks `mutex`, taking over a poisoned one (the figures stay usable).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_name_is_not_shared_and_an_ended_one_is_taken_up_again() {
        let first = source("unit-test-feed");
        let second = source("unit-test-feed");
        assert_eq!(second.name(), "unit-test-feed#2");
        first.wrote(Duration::from_millis(3));
        first.end();
        let again = source("unit-test-feed");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(again.written(), 1, "counters go on after a restart");
    }

    #[test]
    fn the_text_holds_each_source_and_stage() {
        let meter = source("unit-test-encode");
        meter.read.fetch_add(3, Ordering::Relaxed);
        meter.wrote(Duration::from_millis(20));
        meter.wrote(Duration::from_millis(30));
        stage("unit-test-stage").record(Duration::from_millis(2), 4);
        let text = encode();
        assert!(text.contains("segstream_frames_read_total{source=\"unit-test-encode\"} 3"));
        assert!(text.contains("segstream_frames_written_total{source=\"unit-test-encode\"} 2"));
        assert!(
            text.contains("segstream_frame_latency_seconds_count{source=\"unit-test-encode\"} 2")
        );
        assert!(text.contains("segstream_stage_queue_depth{stage=\"unit-test-stage\"} 4"));
        assert!(text.contains("segstream_source_up{source=\"unit-test-encode\"} 1"));
    }
}
