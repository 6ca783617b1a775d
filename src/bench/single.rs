//! Throughput where users feel it, each figure the median of several timed repeats after an
//! untimed warm-up: decode only, decode + encode (no model), inference only (pre-decoded
//! frames) and end to end, per batch size; with CPU use and peak memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use gstreamer as gst;
use indicatif::ProgressBar;
use ndarray::{Array3, Array4, Axis};
use serde::Serialize;

use crate::imaging::{Compositor, LabelStyle, Mode, Preprocessor};
use crate::infer::{Provider, Segmenter, SegmenterOptions};
use crate::stream::{self, Door, EngineConfig, StageSummary};
use crate::video::{FrameSink, FrameSource, OutputKind, probe_file};
use crate::{Error, Result};

/// How long a pull may wait before the source is considered stalled.
const PULL_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);
/// Frames decoded once and reused for the inference-only figures.
const INFERENCE_FRAMES: usize = 64;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The clip.
    pub input: PathBuf,
    /// The model.
    pub model: PathBuf,
    /// How it runs.
    pub runtime: SegmenterOptions,
    /// Batch sizes to measure.
    pub batches: Vec<usize>,
    /// Timed repeats per figure.
    pub repeats: usize,
    /// Pre/post-processing workers for end-to-end runs.
    pub workers: usize,
    /// How end-to-end runs draw (overlay in the model's colours).
    pub styles: Vec<LabelStyle>,
}

/// Median, min and max of the repeats, in frames per second.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Slowest repeat.
    pub min: f64,
    /// Fastest repeat.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (at least one).
    pub(crate) fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Spread {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `decode`, `decode+encode`, `inference` or `end-to-end`.
    pub name: &'static str,
    /// Batch size, where one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Frames per second.
    pub fps: Spread,
    /// Frames per repeat.
    pub frames: u64,
    /// CPU time over wall time during the repeats (100 = one core busy).
    pub cpu_percent: f64,
    /// Per-stage figures of the median end-to-end repeat.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageSummary>,
}

/// CPU seconds per frame of the parts of a run, each measured alone.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuShares {
    /// Decoding and encoding without a model.
    pub decode_encode: f64,
    /// Inference on pre-decoded frames.
    pub inference: f64,
    /// Pre-processing (resize, normalise) and post-processing (masks, composition).
    pub pre_post: f64,
}

impl CpuShares {
    /// All parts together.
    pub fn total(&self) -> f64 {
        self.decode_encode + self.inference + self.pre_post
    }
}

/// Everything one bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// End-to-end ÷ min(decode+encode, inference), at the fastest end-to-end batch size.
    pub efficiency: f64,
    /// The batch size that efficiency is taken at.
    pub efficiency_batch: usize,
    /// CPU seconds per frame of each part at that batch size: decode+encode and inference
    /// measured alone, pre- and post-processing as their threads' CPU time in the end-to-end
    /// run.
    pub cpu_s_per_frame: CpuShares,
    /// The fps the cores allow if every part kept them busy: cores ÷ total CPU seconds per
    /// frame.
    pub cpu_bound_fps: f64,
    /// End-to-end fps ÷ [`BenchReport::cpu_bound_fps`].
    pub cpu_efficiency: f64,
    /// The execution provider used.
    pub provider: String,
    /// What the model ran on: the GPU's name under CUDA, the processor's on the CPU.
    pub device: String,
    /// The model's arithmetic: fp32, fp16 or int8.
    pub precision: &'static str,
    /// Peak resident memory of the process, in MiB.
    pub peak_rss_mib: f64,
    /// The figures.
    pub measurements: Vec<Measurement>,
}

/// Runs every measurement of `config`.
///
/// # Errors
/// An unreadable clip or model, or a failing pipeline.
pub fn run(config: &BenchConfig) -> Result<BenchReport> {
    if config.repeats == 0 || config.batches.contains(&0) {
        return Err(Error::Config(
            "--repeats and --batch values must be at least 1".into(),
        ));
    }
    // A file that cannot be decoded fails here, named, before anything is timed.
    probe_file(&config.input)?;
    let scratch = tempfile_dir()?;
    let mut measurements = vec![
        repeat(config, "decode", None, || {
            decode(&config.input).map(|n| (n, Vec::new()))
        })?,
        repeat(config, "decode+encode", None, || {
            decode_encode(&config.input, &scratch.join("passthrough.mp4")).map(|n| (n, Vec::new()))
        })?,
    ];
    let mut segmenter = Segmenter::load(&config.model, &config.runtime)?;
    let provider = segmenter.provider();
    let inputs = decoded_inputs(&config.input, &segmenter)?;
    for &batch in &config.batches {
        measurements.push(repeat(config, "inference", Some(batch), || {
            infer(&mut segmenter, &inputs, batch).map(|n| (n, Vec::new()))
        })?);
    }
    drop(segmenter);
    for &batch in &config.batches {
        measurements.push(repeat(config, "end-to-end", Some(batch), || {
            end_to_end(config, batch, &scratch.join("segmented.mp4"))
        })?);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let find = |name: &str, batch: Option<usize>| {
        measurements
            .iter()
            .find(|m| m.name == name && (batch.is_none() || m.batch == batch))
    };
    let median = |name: &str, batch: Option<usize>| find(name, batch).map_or(0.0, |m| m.fps.median);
    let best = measurements
        .iter()
        .filter(|m| m.name == "end-to-end")
        .max_by(|a, b| a.fps.median.total_cmp(&b.fps.median))
        .and_then(|m| m.batch)
        .unwrap_or(1);
    let bound = median("decode+encode", None).min(median("inference", Some(best)));
    let cpu_per_frame =
        |m: Option<&Measurement>| m.map_or(0.0, |m| m.cpu_percent / 100.0 / m.fps.median.max(1e-9));
    let pre_post = find("end-to-end", Some(best)).map_or(0.0, |m| {
        m.stages
            .iter()
            .filter(|s| s.name == "preprocess" || s.name == "postprocess")
            .map(|s| s.cpu_ms_per_frame / 1e3)
            .sum()
    });
    let cpu_s_per_frame = CpuShares {
        decode_encode: cpu_per_frame(find("decode+encode", None)),
        inference: cpu_per_frame(find("inference", Some(best))),
        pre_post,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpu_bound_fps = cores / cpu_s_per_frame.total().max(1e-9);
    Ok(BenchReport {
        efficiency: median("end-to-end", Some(best)) / bound.max(1e-9),
        efficiency_batch: best,
        cpu_s_per_frame,
        cpu_bound_fps,
        cpu_efficiency: median("end-to-end", Some(best)) / cpu_bound_fps,
        device: device_name(provider),
        precision: model_precision(&config.model)?,
        provider: format!("{provider:?}"),
        peak_rss_mib: peak_rss_mib(),
        measurements,
    })
}

/// The GPU's name (from the NVIDIA driver) for CUDA, else the processor's and its cores.
fn device_name(provider: Provider) -> String {
    if provider == Provider::Cuda {
        let smi = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=name", "--format=csv,noheader"])
            .output();
        if let Ok(out) = smi
            && out.status.success()
        {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return "an NVIDIA GPU (nvidia-smi did not answer)".into();
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown processor", |(_, name)| name.trim());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{name}, {cores} cores")
}

/// The arithmetic of the model at `path`.
fn model_precision(path: &Path) -> Result<&'static str> {
    Ok(crate::onnx::precision(&crate::onnx::read_model(path)?))
}

/// Times `run` once untimed and `config.repeats` times timed.
fn repeat(
    config: &BenchConfig,
    name: &'static str,
    batch: Option<usize>,
    mut run: impl FnMut() -> Result<(u64, Vec<StageSummary>)>,
) -> Result<Measurement> {
    run()?; // warm-up: file cache, codecs, the model's first run
    let cpu_before = cpu_seconds();
    let wall = Instant::now();
    let mut results = Vec::new();
    for _ in 0..config.repeats {
        let started = Instant::now();
        let (frames, stages) = run()?;
        results.push((
            frames as f64 / started.elapsed().as_secs_f64().max(1e-9),
            frames,
            stages,
        ));
    }
    let cpu_percent = 100.0 * (cpu_seconds() - cpu_before) / wall.elapsed().as_secs_f64().max(1e-9);
    let fps = Spread::of(results.iter().map(|r| r.0).collect());
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, frames, stages) = results.swap_remove(results.len() / 2);
    Ok(Measurement {
        name,
        batch,
        fps,
        frames,
        cpu_percent,
        stages,
    })
}

/// The source `segment` opens for an H.264 file: frames stay I420.
fn mp4_source(input: &Path) -> Result<FrameSource> {
    Ok(FrameSource::file(input)?.for_output(Some(OutputKind::Mp4)))
}

fn decode(input: &Path) -> Result<u64> {
    let mut source = mp4_source(input)?;
    source.start()?;
    let mut frames = 0;
    while source.next_frame(PULL_TIMEOUT)?.is_some() {
        frames += 1;
    }
    Ok(frames)
}

fn decode_encode(input: &Path, output: &Path) -> Result<u64> {
    let mut source = mp4_source(input)?;
    let mut sink = FrameSink::to_path(output, OutputKind::Mp4, None)?;
    sink.start()?;
    source.start()?;
    while let Some(frame) = source.next_frame(PULL_TIMEOUT)? {
        sink.push(*frame)?;
    }
    sink.finish(false)
}

/// The first frames of `input`, pre-processed for `segmenter`'s model.
fn decoded_inputs(input: &Path, segmenter: &Segmenter) -> Result<Vec<Array3<f32>>> {
    let mut source = mp4_source(input)?;
    source.start()?;
    let mut preprocessor = Preprocessor::new(segmenter.card());
    let mut inputs = Vec::new();
    while inputs.len() < INFERENCE_FRAMES {
        let Some(f) = source.next_frame(PULL_TIMEOUT)? else {
            break;
        };
        inputs.push(preprocessor.run_frame(&f.pixels, &f.info));
    }
    source.stop();
    if inputs.is_empty() {
        return Err(Error::Input {
            path: input.to_path_buf(),
            reason: "no frames".into(),
        });
    }
    Ok(inputs)
}

/// Runs the model over `inputs` in batches of `batch`; returns the frames processed.
fn infer(segmenter: &mut Segmenter, inputs: &[Array3<f32>], batch: usize) -> Result<u64> {
    for chunk in inputs.chunks(batch) {
        let views: Vec<_> = chunk.iter().map(|a| a.view()).collect();
        let stacked: Array4<f32> = ndarray::stack(Axis(0), &views).expect("inputs share one shape");
        segmenter.run(stacked.view())?;
    }
    Ok(inputs.len() as u64)
}

fn end_to_end(
    config: &BenchConfig,
    batch: usize,
    output: &Path,
) -> Result<(u64, Vec<StageSummary>)> {
    let segmenter = Segmenter::load(&config.model, &config.runtime)?;
    let compositors = (0..config.workers)
        .map(|_| Compositor::new(Mode::Overlay { opacity: 0.5 }, config.styles.clone()))
        .collect::<Result<Vec<_>>>()?;
    let sink = FrameSink::to_path(output, OutputKind::Mp4, None)?;
    sink.start()?;
    let source = mp4_source(&config.input)?;
    source.start()?;
    let report = stream::run(
        segmenter,
        Door {
            source,
            sink: Box::new(sink),
            compositors,
            config: EngineConfig {
                batch_size: batch,
                workers: config.workers,
                ..EngineConfig::default()
            },
            stop: Arc::new(AtomicBool::new(false)),
            progress: ProgressBar::hidden(),
            ticker: None,
            meter: crate::telemetry::source(&crate::paths::shown(&config.input)),
        },
    )?;
    Ok((
        report.frames_written,
        report.stages.iter().map(|s| s.summary()).collect(),
    ))
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("segstream-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, 100 ticks/s).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size of this process (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
