//! `bench --input A --input B …` (or `--streams N` on one clip): N streams served by one
//! process (one model session, one batcher) against N `segment` processes run at the same
//! time, the way a user would otherwise run them. Both ways run as child processes of this
//! binary, alternately, `repeats` times each: wall time, aggregate fps, peak memory (the one
//! process's, the separate processes' summed) and each stream's latency.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::single::Spread;
use crate::{Error, Result};

/// What to compare.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// One clip per stream.
    pub inputs: Vec<PathBuf>,
    /// Options every `segment` run gets (model and runtime).
    pub segment_options: Vec<OsString>,
    /// Timed repeats of each way.
    pub repeats: usize,
}

/// One way of serving the streams.
#[derive(Debug, Clone, Serialize)]
pub struct Way {
    /// `one process` or `separate processes`.
    pub name: &'static str,
    /// Frames written per second of wall time, all streams together.
    pub fps: Spread,
    /// Wall time until every stream was written.
    pub wall_s: Spread,
    /// Peak resident memory: the process's, or the processes' summed (the largest repeat).
    pub peak_rss_mib: f64,
    /// Each stream's p95 latency (appsink to appsrc) in the last repeat, in milliseconds.
    pub latency_p95_ms: Vec<f64>,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct StreamsReport {
    /// Number of streams.
    pub streams: usize,
    /// Frames written per repeat, all streams together.
    pub frames: u64,
    /// All streams in one process.
    pub one_process: Way,
    /// One process per stream, run at the same time.
    pub separate: Way,
}

/// One repeat of one way.
struct Run {
    wall: Duration,
    frames: u64,
    peak_rss_kib: u64,
    latency_p95_ms: Vec<f64>,
}

/// Runs both ways alternately `repeats` times.
///
/// # Errors
/// [`Error::Config`] for fewer than two streams; [`Error::Pipeline`] when a run fails.
pub fn run(config: &StreamsConfig) -> Result<StreamsReport> {
    if config.inputs.len() < 2 {
        return Err(Error::Config(
            "a streams comparison needs two streams or more (--input twice, or --streams N)".into(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("segstream-streams-{}", std::process::id()));
    let result = compare(config, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn compare(config: &StreamsConfig, dir: &Path) -> Result<StreamsReport> {
    let (mut one, mut separate) = (Vec::new(), Vec::new());
    for _ in 0..config.repeats.max(1) {
        one.push(one_process(config, &dir.join("one"))?);
        separate.push(separate_processes(config, &dir.join("separate"))?);
    }
    Ok(StreamsReport {
        streams: config.inputs.len(),
        frames: one[0].frames,
        one_process: summary("one process", one),
        separate: summary("separate processes", separate),
    })
}

fn summary(name: &'static str, runs: Vec<Run>) -> Way {
    let fps = runs
        .iter()
        .map(|r| r.frames as f64 / r.wall.as_secs_f64().max(1e-9))
        .collect();
    Way {
        name,
        fps: Spread::of(fps),
        wall_s: Spread::of(runs.iter().map(|r| r.wall.as_secs_f64()).collect()),
        peak_rss_mib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
        latency_p95_ms: runs
            .last()
            .map(|r| r.latency_p95_ms.clone())
            .unwrap_or_default(),
    }
}

/// Every stream through one `segment` run of several inputs.
fn one_process(config: &StreamsConfig, dir: &Path) -> Result<Run> {
    let inputs = stream_copies(config, dir)?;
    let stats = dir.join("stats.json");
    let mut args: Vec<OsString> = vec!["segment".into()];
    args.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
    args.extend(["-o".into(), dir.join("out").into_os_string()]);
    args.extend(["--parallel".into(), inputs.len().to_string().into()]);
    args.extend(["--stats-json".into(), stats.clone().into_os_string()]);
    args.extend(config.segment_options.iter().cloned());
    let started = Instant::now();
    let peak = wait_measured(spawn(&args)?)?;
    let wall = started.elapsed();
    let json = read_json(&stats)?;
    let sources = json["sources"].as_array().cloned().unwrap_or_default();
    Ok(Run {
        wall,
        frames: json["frames_written"].as_u64().unwrap_or(0),
        peak_rss_kib: peak,
        latency_p95_ms: sources.iter().map(p95).collect(),
    })
}

/// One `segment` process per stream, all started at once.
fn separate_processes(config: &StreamsConfig, dir: &Path) -> Result<Run> {
    let inputs = stream_copies(config, dir)?;
    let started = Instant::now();
    let children = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let mut args: Vec<OsString> = vec!["segment".into(), input.as_os_str().to_owned()];
            args.extend([
                "-o".into(),
                dir.join(format!("out-{i}.mp4")).into_os_string(),
            ]);
            args.extend(["--stats-json".into(), stats_path(dir, i).into_os_string()]);
            args.extend(config.segment_options.iter().cloned());
            spawn(&args)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut peak = 0;
    for child in children {
        peak += wait_measured(child)?;
    }
    let wall = started.elapsed();
    let stats = (0..inputs.len())
        .map(|i| read_json(&stats_path(dir, i)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Run {
        wall,
        frames: stats
            .iter()
            .map(|s| s["frames_written"].as_u64().unwrap_or(0))
            .sum(),
        peak_rss_kib: peak,
        latency_p95_ms: stats.iter().map(p95).collect(),
    })
}

fn stats_path(dir: &Path, stream: usize) -> PathBuf {
    dir.join(format!("stats-{stream}.json"))
}

fn p95(stats: &serde_json::Value) -> f64 {
    stats["latency"]["p95_ms"].as_f64().unwrap_or(f64::NAN)
}

/// A fresh folder `dir` with links to the inputs under distinct names (a clip may stand for
/// several streams; outputs are named after their inputs).
fn stream_copies(config: &StreamsConfig, dir: &Path) -> Result<Vec<PathBuf>> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    config
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let absolute = std::path::absolute(input).map_err(|e| Error::io(input, e))?;
            let extension = input.extension().unwrap_or_default().to_string_lossy();
            let link = dir.join(format!("stream-{i}.{extension}"));
            std::os::unix::fs::symlink(&absolute, &link).map_err(|e| Error::io(&link, e))?;
            Ok(link)
        })
        .collect()
}

fn spawn(args: &[OsString]) -> Result<Child> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Pipeline(format!("cannot find this program: {e}")))?;
    Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Pipeline(format!("cannot start segment: {e}")))
}

/// Waits for `child` and returns its peak resident memory in KiB (the kernel's account of the
/// finished process).
///
/// # Errors
/// [`Error::Pipeline`] with its messages when it failed.
fn wait_measured(mut child: Child) -> Result<u64> {
    let stderr = child.stderr.take();
    let messages = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    });
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid we hold; `status` and `usage` outlive the call.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let text = messages.join().unwrap_or_default();
    if waited < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(Error::Pipeline(format!("a segment run failed: {text}")));
    }
    Ok(u64::try_from(usage.ru_maxrss).unwrap_or(0))
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Pipeline(format!("{}: not JSON: {e}", crate::paths::shown(path))))
}
