//! `segstream segment`: a video file in, a segmented video out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::Error;
use crate::cli::SegmentArgs;
use crate::files::refuse_overwriting;
use crate::paths::{DEFAULT_MODEL, shown};
use crate::stream::{self, Door, EngineConfig};
use crate::telemetry;
use crate::video::{self, FrameSink, FrameSource, InputInfo, OutputKind, StagedOutput};

use super::file_run::warn_if_truncated;
use super::{EXIT_INTERRUPTED, batch, choose_decoder, draw, interrupt, load_model, output, report};

pub fn run(args: &SegmentArgs) -> anyhow::Result<u8> {
    // Claimed before anything is opened: a Ctrl-C from here on finalises what was written.
    let stop = interrupt::claim("stopping: finishing the frames already read");
    if args.batch == Some(0) || args.workers == Some(0) || args.parallel == 0 {
        return Err(
            Error::Config("--batch, --workers and --parallel must be at least 1".into()).into(),
        );
    }
    choose_decoder(args.decoding.decoder)?;
    let _metrics = super::serve_metrics(&args.metrics)?;
    if batch::wanted(args) {
        return batch::run(args, &stop);
    }
    let input = args.input.first();
    validate(input, args)?;
    // The model loads while the input is probed: each takes a fifth of a second or so.
    let (input_info, loaded) = std::thread::scope(|scope| {
        let loading = scope.spawn(|| load_model(&args.model, DEFAULT_MODEL));
        let input_info = match (input, &args.source_pipeline) {
            (Some(input), None) => Some(video::probe_file(input)),
            _ => None,
        };
        (input_info, loading.join())
    });
    let input_info = input_info.transpose()?;
    let segmenter = loaded.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    let kind = args
        .output
        .as_deref()
        .map(OutputKind::from_path)
        .transpose()?;
    let workers = args.workers.unwrap_or(EngineConfig::default().workers);
    // A custom sink pipeline may keep alpha; only a known container can say it does not.
    let keeps_alpha = kind.is_none_or(OutputKind::keeps_alpha);
    let compositors = draw::compositors(&args.draw, segmenter.card(), keeps_alpha, workers)?;

    let audio_from = match (input, &input_info) {
        (Some(input), Some(info)) if info.has_audio && !args.no_audio => Some(input.as_path()),
        _ => None,
    };
    let (sink, staged) = match (&args.sink_pipeline, &args.output, kind) {
        (Some(description), _, _) => (FrameSink::from_description(description)?, None),
        (None, Some(output), Some(kind)) => {
            let staged = StagedOutput::new(output, kind);
            let sink = FrameSink::to_path(staged.temp_path(), kind, audio_from)?
                .with_preset(&args.preset, false)?
                .with_encoder_threads(output::encoder_threads(1));
            (sink, Some(staged))
        }
        _ => unreachable!("validate() requires an output or a sink pipeline"),
    };
    sink.start().context("opening the output")?;
    let source = match (&args.source_pipeline, input) {
        (Some(description), _) => FrameSource::from_description(description)?,
        (None, Some(input)) => FrameSource::file(input)?,
        _ => unreachable!("validate() requires an input or a source pipeline"),
    };
    // A custom sink pipeline takes the place of the output's kind.
    let source = source.for_output(kind.filter(|_| args.sink_pipeline.is_none()));
    source.start().context("starting the input")?;

    let progress = progress_bar(input_info.as_ref().and_then(InputInfo::expected_frames));
    let batch_size = args.batch.unwrap_or(segmenter.provider().file_batch());
    let door = Door {
        source,
        sink: Box::new(sink),
        compositors,
        config: EngineConfig {
            batch_size,
            max_wait: Duration::from_millis(args.max_wait_ms),
            workers,
            threshold: args.draw.threshold,
            ..EngineConfig::default()
        },
        stop,
        progress: progress.clone(),
        ticker: None,
        meter: telemetry::source(&input.map_or_else(|| "--source-pipeline".into(), |p| shown(p))),
    };
    let outcome = stream::run(segmenter, door);
    progress.finish_and_clear();
    let report = output::settle(staged, outcome)?;
    let how = if report.interrupted() {
        "interrupted: "
    } else {
        ""
    };
    if report.frames_written > 0 {
        let target = args
            .output
            .as_ref()
            .map_or_else(|| "the sink pipeline".to_string(), |p| shown(p));
        eprintln!(
            "{how}wrote {} frames to {target} in {:.1} s ({:.1} fps)",
            report.frames_written,
            report.elapsed.as_secs_f64(),
            report.fps()
        );
    }
    if let (Some(info), Some(input)) = (&input_info, input) {
        warn_if_truncated(input, info, &report);
    }
    if args.stats {
        report::print_stages(&report);
    }
    if let Some(path) = &args.stats_json {
        report::write_json(path, &report::report_json(&report))?;
    }
    Ok(if report.interrupted() {
        EXIT_INTERRUPTED
    } else {
        0
    })
}

fn validate(input: Option<&PathBuf>, args: &SegmentArgs) -> crate::Result<()> {
    if let (Some(input), Some(output)) = (input, &args.output) {
        refuse_overwriting(input, output)?;
    }
    match (&args.output, &args.sink_pipeline) {
        (Some(output), None) => check_output_folder(output, OutputKind::from_path(output)?),
        _ => Ok(()),
    }
}

/// Fails early, before any frame is read, when the folder `output` goes to cannot be written.
pub(super) fn check_output_folder(output: &Path, kind: OutputKind) -> crate::Result<()> {
    if let Ok(metadata) = std::fs::metadata(output)
        && !metadata.is_file()
        && !metadata.is_dir()
    {
        return Err(Error::Config(format!(
            "{}: not a regular file or folder (a device, a pipe or a socket): segstream writes \
             a video file, through a temporary name beside it, or a folder of PNG frames",
            shown(output)
        )));
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = if kind == OutputKind::PngFolder {
        output
    } else {
        parent
    };
    let existing = folder
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("."));
    let writable =
        std::fs::metadata(existing).is_ok_and(|m| m.is_dir() && !m.permissions().readonly());
    if !writable || (kind != OutputKind::PngFolder && !parent.is_dir()) {
        return Err(Error::Config(format!(
            "{}: the output folder does not exist or is not writable",
            shown(output)
        )));
    }
    Ok(())
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::new(total.unwrap_or(0));
    let template = if total.is_some() {
        "{bar:40} {pos}/{len} frames  {per_sec}  eta {eta}"
    } else {
        "{spinner} {pos} frames  {per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
