//! `segstream segment IN1 IN2 … -o DIR/`: several files through one model session and one
//! batcher, each written as a single-file run writes it; and the slice of a long input list
//! that one job of a cluster array takes (`--shard K/N`, Kubernetes Indexed Jobs, Slurm arrays).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::ProgressBar;

use crate::Error;
use crate::cli::SegmentArgs;
use crate::files::refuse_overwriting;
use crate::paths::{DEFAULT_MODEL, shown};
use crate::stream::{Door, Engine, EngineConfig, Report};
use crate::video::{self, FrameSink, FrameSource, OutputKind, StagedOutput};

use super::{EXIT_INTERRUPTED, draw, load_model, output, report};

/// The environment variables a cluster array sets for each of its jobs: the job's index
/// (Kubernetes Indexed Jobs; Slurm job arrays), and the array's size (Slurm).
const INDEX_VARIABLES: [&str; 2] = ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"];
const COUNT_VARIABLE: &str = "SLURM_ARRAY_TASK_COUNT";

/// Whether `args` ask for several inputs (or a shard of a list) rather than one file.
pub(super) fn wanted(args: &SegmentArgs) -> bool {
    args.input.len() > 1
        || args.inputs.is_some()
        || args.format.is_some()
        || args.shard.is_some()
        || args.shards.is_some()
}

/// One input and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    input: PathBuf,
    output: PathBuf,
}

/// How one input's run ended.
enum Outcome {
    Written(Report),
    Skipped,
    NotStarted,
    Failed(anyhow::Error),
}

pub(super) fn run(args: &SegmentArgs, stop: &Arc<AtomicBool>) -> anyhow::Result<u8> {
    let folder = args
        .output
        .as_deref()
        .ok_or_else(|| Error::Config("several inputs need -o FOLDER".into()))?;
    let kind = output_kind(args.format.as_deref())?;
    let inputs = shard(&input_list(args)?, selected_shard(args)?);
    let items = plan(&inputs, folder, kind)?;
    std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
    let segmenter = load_model(&args.model, DEFAULT_MODEL)?;
    let parallel = args.parallel.clamp(1, items.len().max(1));
    let config = EngineConfig {
        batch_size: args.batch.unwrap_or(segmenter.provider().file_batch()),
        max_wait: Duration::from_millis(args.max_wait_ms),
        // Lanes run side by side: each takes its share of the cores, as its encoder does,
        // rather than one pre- and post-processing worker per core that only hold frames.
        workers: args.workers.unwrap_or(output::cores_each(parallel)),
        threshold: args.draw.threshold,
        ..EngineConfig::default()
    };
    let engine = Engine::start(segmenter, config.batching())?;
    eprintln!(
        "segmenting {} inputs into {}, {parallel} at a time",
        items.len(),
        shown(folder),
    );
    let encoder_threads = output::encoder_threads(parallel);
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..items.len()).collect());
    let outcomes: Mutex<Vec<Option<(Outcome, Duration)>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                while let Some(index) = next(&queue) {
                    let started = Instant::now();
                    let outcome = if stop.load(Ordering::SeqCst) {
                        Outcome::NotStarted
                    } else if args.skip_done && is_done(&items[index]) {
                        Outcome::Skipped
                    } else {
                        let item = &items[index];
                        match run_item(args, &engine, &config, kind, item, encoder_threads, stop) {
                            Ok(report) => Outcome::Written(report),
                            Err(error) => Outcome::Failed(error),
                        }
                    };
                    let mut outcomes = outcomes.lock().unwrap_or_else(|e| e.into_inner());
                    outcomes[index] = Some((outcome, started.elapsed()));
                }
            });
        }
    });
    let shared = engine.finish();
    let outcomes: Vec<(Outcome, Duration)> = outcomes
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|o| o.unwrap_or((Outcome::NotStarted, Duration::ZERO)))
        .collect();
    print_table(&items, &outcomes);
    shared.context("the model failed")?;
    if let Some(path) = &args.stats_json {
        let written =
            items
                .iter()
                .zip(&outcomes)
                .filter_map(|(item, (outcome, _))| match outcome {
                    Outcome::Written(report) => Some((shown(&item.input), report)),
                    _ => None,
                });
        report::write_json(path, &report::sources_json(written))?;
    }
    let failed = outcomes
        .iter()
        .filter(|(o, _)| matches!(o, Outcome::Failed(_)))
        .count();
    let interrupted = stop.load(Ordering::SeqCst);
    Ok(match (interrupted, failed) {
        (true, _) => EXIT_INTERRUPTED,
        (false, 0) => 0,
        (false, _) => {
            eprintln!("{failed} of {} inputs failed", items.len());
            1
        }
    })
}

fn next(queue: &Mutex<VecDeque<usize>>) -> Option<usize> {
    queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
}

/// Segments one input through the shared `engine` into its staged output.
fn run_item(
    args: &SegmentArgs,
    engine: &Engine,
    config: &EngineConfig,
    kind: OutputKind,
    item: &Item,
    encoder_threads: u32,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Report> {
    let info = video::probe_file(&item.input)?;
    let audio_from = (info.has_audio && !args.no_audio).then_some(item.input.as_path());
    let compositors = draw::compositors(
        &args.draw,
        engine.card(),
        kind.keeps_alpha(),
        config.workers,
    )?;
    let staged = StagedOutput::new(&item.output, kind);
    let sink = FrameSink::to_path(staged.temp_path(), kind, audio_from)?
        .with_preset(&args.preset, false)?
        .with_encoder_threads(encoder_threads);
    sink.start().context("opening the output")?;
    let source = FrameSource::file(&item.input)?.for_output(Some(kind));
    source.start().context("starting the input")?;
    let door = Door {
        source,
        sink: Box::new(sink),
        compositors,
        config: config.clone(),
        stop: Arc::clone(stop),
        progress: ProgressBar::hidden(),
        ticker: None,
        meter: crate::telemetry::source(&shown(&item.input)),
    };
    let report = output::settle(Some(staged), door.run(engine))?;
    super::file_run::warn_if_truncated(&item.input, &info, &report);
    Ok(report)
}

/// The inputs: those on the command line, then those of `--inputs` (one path per line; empty
/// lines and lines starting with `#` are skipped).
fn input_list(args: &SegmentArgs) -> crate::Result<Vec<PathBuf>> {
    let mut inputs = args.input.clone();
    if let Some(list) = &args.inputs {
        let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
        // Editors on some systems start a UTF-8 file with a byte-order mark: not part of a name.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        inputs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(PathBuf::from),
        );
    }
    if inputs.is_empty() {
        return Err(Error::Config(
            "no inputs: give files or --inputs LIST".into(),
        ));
    }
    Ok(inputs)
}

/// The output kind `--format` names (`mp4` by default).
fn output_kind(format: Option<&str>) -> crate::Result<OutputKind> {
    match format.unwrap_or("mp4") {
        "png" => Ok(OutputKind::PngFolder),
        other => OutputKind::from_path(Path::new(&format!("output.{other}"))),
    }
}

/// Each input with its output `FOLDER/<stem>.<ext>`; two inputs that would write the same
/// output, an output that is one of the inputs (through `..`, symbolic or hard links), or a
/// folder that is a file, are refused before anything starts.
fn plan(inputs: &[PathBuf], folder: &Path, kind: OutputKind) -> crate::Result<Vec<Item>> {
    if folder.exists() && !folder.is_dir() {
        return Err(Error::Config(format!(
            "-o {}: not a folder; several inputs are written into a folder, one file each",
            shown(folder)
        )));
    }
    let mut items: Vec<Item> = Vec::with_capacity(inputs.len());
    for input in inputs {
        let stem = input
            .file_stem()
            .ok_or_else(|| Error::Config(format!("input {}: no file name", shown(input))))?;
        let mut name = stem.to_os_string();
        if let Some(extension) = kind.extension() {
            name.push(".");
            name.push(extension);
        }
        let output = folder.join(name);
        if let Some(other) = items.iter().find(|item| item.output == output) {
            return Err(Error::Config(format!(
                "inputs {} and {} would both write {}: rename one or run them apart",
                shown(&other.input),
                shown(input),
                shown(&output)
            )));
        }
        for other in inputs {
            refuse_overwriting(other, &output)?;
        }
        items.push(Item {
            input: input.clone(),
            output,
        });
    }
    Ok(items)
}

/// Which slice of the inputs this process takes: `--shard K/N`, else K from the cluster's
/// index variable and N from `--shards` or Slurm's count. `None`: all of them.
fn selected_shard(args: &SegmentArgs) -> crate::Result<Option<(usize, usize)>> {
    let environment = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let from_environment = || {
        INDEX_VARIABLES
            .iter()
            .find_map(|name| environment(name).map(|value| (*name, value)))
    };
    let (index, count) = match (&args.shard, args.shards) {
        (Some(spec), None) => {
            let (k, n) = spec
                .split_once('/')
                .ok_or_else(|| Error::Config(format!("--shard {spec}: expected K/N, e.g. 0/4")))?;
            (
                parse_count("--shard", spec, k)?,
                parse_count("--shard", spec, n)?,
            )
        }
        (Some(_), Some(_)) => {
            return Err(Error::Config(
                "give --shard K/N or --shards N, not both".into(),
            ));
        }
        (None, shards) => {
            let Some((name, value)) = from_environment() else {
                return match shards {
                    Some(_) => Err(Error::Config(format!(
                        "--shards needs the job's index in {} or {}",
                        INDEX_VARIABLES[0], INDEX_VARIABLES[1]
                    ))),
                    None => Ok(None),
                };
            };
            let index = parse_count(name, &value, &value)?;
            let count = match (shards, environment(COUNT_VARIABLE)) {
                (Some(n), _) => n,
                (None, Some(n)) => parse_count(COUNT_VARIABLE, &n, &n)?,
                (None, None) => {
                    return Err(Error::Config(format!(
                        "{name} is set but the number of shards is not: give --shards N"
                    )));
                }
            };
            (index, count)
        }
    };
    if count == 0 || index >= count {
        return Err(Error::Config(format!(
            "shard {index}/{count}: K must be below N (shards are numbered from 0)"
        )));
    }
    Ok(Some((index, count)))
}

fn parse_count(what: &str, spec: &str, number: &str) -> crate::Result<usize> {
    number
        .trim()
        .parse()
        .map_err(|_| Error::Config(format!("{what} {spec}: '{number}' is not a whole number")))
}

/// The inputs of shard `K/N`: every N-th input from the K-th (each input in exactly one
/// shard, the same one on every run of the same list).
fn shard(inputs: &[PathBuf], selected: Option<(usize, usize)>) -> Vec<PathBuf> {
    match selected {
        Some((index, count)) => inputs.iter().skip(index).step_by(count).cloned().collect(),
        None => inputs.to_vec(),
    }
}

/// Whether `item`'s output exists and is complete: a finalised file (an interrupted run's is
/// finalised too) whose duration covers the input's. A Matroska or WebM file announces its
/// duration in its header, so one cut short after finalising must also hold its whole Segment.
fn is_done(item: &Item) -> bool {
    if video::matroska::is_whole(&item.output) == Some(false) {
        return false;
    }
    let Ok(written) = video::probe_file(&item.output) else {
        return false;
    };
    let Ok(input) = video::probe_file(&item.input) else {
        return false;
    };
    match (written.duration, input.duration) {
        (Some(written), Some(input)) => written.nseconds() as f64 >= 0.95 * input.nseconds() as f64,
        _ => true,
    }
}

/// The table of outcomes: each input's frames, frames per second and what became of it.
fn print_table(items: &[Item], outcomes: &[(Outcome, Duration)]) {
    let width = items
        .iter()
        .map(|i| shown(&i.input).chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    eprintln!(
        "{:<width$}  {:>7}  {:>7}  outcome",
        "input", "frames", "fps"
    );
    for (item, (outcome, took)) in items.iter().zip(outcomes) {
        let name = shown(&item.input);
        let (frames, fps, said) = match outcome {
            Outcome::Written(report) => (
                report.frames_written.to_string(),
                format!(
                    "{:.1}",
                    report.frames_written as f64 / took.as_secs_f64().max(1e-9)
                ),
                match report.interrupted() {
                    true => format!("interrupted, finalised: {}", shown(&item.output)),
                    false => format!("written: {}", shown(&item.output)),
                },
            ),
            Outcome::Skipped => ("-".into(), "-".into(), "skipped: done already".into()),
            Outcome::NotStarted => ("-".into(), "-".into(), "not started (interrupted)".into()),
            Outcome::Failed(error) => ("-".into(), "-".into(), format!("failed: {error:#}")),
        };
        eprintln!("{name:<width$}  {frames:>7}  {fps:>7}  {said}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_the_list() {
        let inputs: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("{i}.mp4"))).collect();
        let mut seen: Vec<PathBuf> = (0..3).flat_map(|k| shard(&inputs, Some((k, 3)))).collect();
        seen.sort();
        let mut all = inputs.clone();
        all.sort();
        assert_eq!(seen, all);
        assert_eq!(shard(&inputs, Some((1, 3))).len(), 3);
    }

    #[test]
    fn two_inputs_writing_one_output_are_refused() {
        let inputs = [PathBuf::from("a/clip.mp4"), PathBuf::from("b/clip.mkv")];
        let err = plan(&inputs, Path::new("out"), OutputKind::Mp4).unwrap_err();
        assert!(err.to_string().contains("out/clip.mp4"), "{err}");
        let items = plan(&inputs[..1], Path::new("out"), OutputKind::Mkv).unwrap();
        assert_eq!(items[0].output, Path::new("out/clip.mkv"));
    }
}
