//! `segstream segment`: a video file in, a segmented video out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::Error;
use crate::cli::{ModeArg, SegmentArgs};
use crate::imaging::{Background, Compositor, LabelStyle, Mode};
use crate::infer::{ModelCard, Segmenter, SegmenterOptions};
use crate::paths::checkout_candidates;
use crate::stream::{self, EngineConfig, Job, Report};
use crate::video::{self, FrameSink, FrameSource, OutputKind};

use super::{EXIT_INTERRUPTED, interrupt_flag};

/// The model `segment` and `bench` use without `--model`, relative to the checkout: the shipped
/// person model, since people are what the README demo clip shows (models/README.md).
const DEFAULT_MODEL: &str = "models/people.onnx";

pub fn run(args: &SegmentArgs) -> anyhow::Result<u8> {
    validate(args)?;
    let input_info = match (&args.input, &args.source_pipeline) {
        (Some(input), None) => Some(video::probe_file(input)?),
        _ => None,
    };
    let model = model_path(args.model.as_deref())?;
    let options = SegmenterOptions {
        device: args.runtime.device,
        threads: args.runtime.threads,
    };
    let segmenter = Segmenter::load(&model, &options)?;
    let kind = args
        .output
        .as_deref()
        .map(OutputKind::from_path)
        .transpose()?;
    let mode = mode(args, kind)?;
    let styles = label_styles(segmenter.card(), &args.classes, args.mode)?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let compositors = (0..workers)
        .map(|_| Compositor::new(mode.clone(), styles.clone()))
        .collect::<crate::Result<Vec<_>>>()?;

    let audio_from = match (&args.input, &input_info) {
        (Some(input), Some(info)) if info.has_audio && !args.no_audio => Some(input.as_path()),
        _ => None,
    };
    let sink = match (&args.sink_pipeline, &args.output, kind) {
        (Some(description), _, _) => FrameSink::from_description(description)?,
        (None, Some(output), Some(kind)) => FrameSink::to_path(output, kind, audio_from)?,
        _ => unreachable!("validate() requires an output or a sink pipeline"),
    };
    sink.start().context("opening the output")?;
    let source = match (&args.source_pipeline, &args.input) {
        (Some(description), _) => FrameSource::from_description(description)?,
        (None, Some(input)) => FrameSource::file(input)?,
        _ => unreachable!("validate() requires an input or a source pipeline"),
    };
    source.start().context("starting the input")?;

    let stop = interrupt_flag("stopping: finishing the frames already read")?;

    let progress = progress_bar(input_info.as_ref().and_then(|i| i.expected_frames()));
    let job = Job {
        source,
        segmenter,
        sink,
        compositors,
        config: EngineConfig {
            batch_size: args.batch,
            max_wait: Duration::from_millis(args.max_wait_ms),
            workers,
            threshold: args.threshold,
        },
        stop,
        progress: progress.clone(),
    };
    let report = stream::run(job)?;
    progress.finish_and_clear();
    print_report(args, &report)?;
    Ok(if report.interrupted {
        EXIT_INTERRUPTED
    } else {
        0
    })
}

fn validate(args: &SegmentArgs) -> crate::Result<()> {
    let usage = |message: String| Err(Error::Config(message));
    if args.batch == 0 {
        return usage("--batch must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.threshold) || !(0.0..=1.0).contains(&args.opacity) {
        return usage("--threshold and --opacity are between 0 and 1".into());
    }
    if let (Some(output), None) = (&args.output, &args.sink_pipeline) {
        let kind = OutputKind::from_path(output)?;
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let folder = if kind == OutputKind::PngFolder {
            output.as_path()
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
            return usage(format!(
                "{}: the output folder does not exist or is not writable",
                output.display()
            ));
        }
    }
    Ok(())
}

pub(super) fn model_path(model: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(model) = model {
        return Ok(model.to_path_buf());
    }
    let found = checkout_candidates(Path::new(DEFAULT_MODEL))
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!("the default model {DEFAULT_MODEL} was not found; give --model")
        })?;
    tracing::info!("no --model: using the shipped {}", found.display());
    Ok(found)
}

fn mode(args: &SegmentArgs, kind: Option<OutputKind>) -> anyhow::Result<Mode> {
    Ok(match args.mode {
        ModeArg::Overlay => Mode::Overlay {
            opacity: args.opacity,
        },
        ModeArg::Mask => Mode::Mask,
        ModeArg::Cutout => {
            let mut background = Background::parse(&args.background)?;
            if background == Background::Transparent && kind.is_some_and(|k| !k.keeps_alpha()) {
                tracing::warn!(
                    "this container cannot keep transparency (use .mov or a folder); background is black"
                );
                background = Background::Color([0, 0, 0]);
            }
            Mode::Cutout { background }
        }
    })
}

/// One style per mask label: binary models have labels 0 (background) and 1 (object);
/// multi-class models one label per class, drawn when selected by `--classes`.
pub(super) fn label_styles(
    card: &ModelCard,
    selected: &[String],
    mode: ModeArg,
) -> anyhow::Result<Vec<LabelStyle>> {
    let colors = &card.colors;
    if card.num_classes() == 1 {
        let background = LabelStyle {
            color: None,
            foreground: false,
            mask_value: 0,
        };
        let object = LabelStyle {
            color: Some(colors[0]),
            foreground: true,
            mask_value: 255,
        };
        return Ok(vec![background, object]);
    }
    let mut shown = vec![selected.is_empty(); card.num_classes()];
    if selected.is_empty() && mode == ModeArg::Cutout {
        shown[0] = false;
    }
    for name in selected {
        let index = card
            .classes
            .iter()
            .position(|c| c == name)
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|&i| i < card.num_classes())
            })
            .with_context(|| {
                format!(
                    "--classes: '{name}' is not one of {}",
                    card.classes.join(", ")
                )
            })?;
        shown[index] = true;
    }
    Ok(shown
        .iter()
        .enumerate()
        .map(|(i, &on)| LabelStyle {
            color: on.then_some(colors[i]),
            foreground: on,
            mask_value: i as u8,
        })
        .collect())
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

fn print_report(args: &SegmentArgs, report: &Report) -> anyhow::Result<()> {
    let target = args.output.as_ref().map_or_else(
        || "the sink pipeline".to_string(),
        |p| p.display().to_string(),
    );
    let how = if report.interrupted {
        "interrupted: "
    } else {
        ""
    };
    eprintln!(
        "{how}wrote {} frames to {target} in {:.1} s ({:.1} fps)",
        report.frames_written,
        report.elapsed.as_secs_f64(),
        report.fps()
    );
    if args.stats {
        eprintln!(
            "{:<12} {:>7} {:>9} {:>9} {:>9} {:>7}",
            "stage", "frames", "busy s", "p50 ms", "p95 ms", "queue"
        );
        for stage in &report.stages {
            let s = stage.summary();
            eprintln!(
                "{:<12} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>7.2}",
                s.name, s.frames, s.busy_s, s.p50_ms, s.p95_ms, s.mean_queue_depth
            );
        }
    }
    if let Some(path) = &args.stats_json {
        let json = serde_json::json!({
            "frames_read": report.frames_read,
            "frames_written": report.frames_written,
            "interrupted": report.interrupted,
            "elapsed_s": report.elapsed.as_secs_f64(),
            "fps": report.fps(),
            "stages": report.stages.iter().map(|s| s.summary()).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
