//! `segstream camera`: a live feed in, segmented frames out as they come, latency first.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;

use crate::Error;
use crate::cli::CameraArgs;
use crate::paths::shown;
use crate::stream::{self, Door, Ending, EngineConfig, Interval, Patience, Policy, Report, Ticker};
use crate::video::{CameraFormat, FrameSink, LiveInput, LiveOutput};

use super::segment::check_output_folder;
use super::{EXIT_INTERRUPTED, draw, interrupt, load_model, output, report};

/// The camera used when no source is given.
const DEFAULT_DEVICE: &str = "/dev/video0";

pub fn run(args: &CameraArgs) -> anyhow::Result<u8> {
    // Claimed before anything is opened: a Ctrl-C from here on finalises what was written.
    let stop = interrupt::claim("stopping: finishing the frames in flight");
    let config = engine_config(args)?;
    let input = live_input(args)?;
    let output = match &args.sink_pipeline {
        Some(_) => None,
        None => Some(LiveOutput::parse(args.output.as_deref())?),
    };
    if let Some(LiveOutput::File(path, kind)) = &output {
        check_output_folder(path, *kind)?;
    }
    // The feed is checked (the device exists, the pipeline parses) before anything is loaded
    // or written.
    let source = input.open()?;
    let segmenter = load_model(&args.model)?;
    let keeps_alpha = output.as_ref().is_none_or(LiveOutput::keeps_alpha);
    let compositors = draw::compositors(&args.draw, segmenter.card(), keeps_alpha, 1)?;

    let (sink, staged, target) = match (&args.sink_pipeline, &output) {
        (Some(description), _) => (
            FrameSink::from_description(description)?,
            None,
            "the sink pipeline".to_string(),
        ),
        (None, Some(output)) => {
            let (sink, staged) = output.open()?;
            (
                sink.with_preset(&args.preset, true)?,
                staged,
                output.describe(),
            )
        }
        (None, None) => unreachable!("an output is parsed when there is no sink pipeline"),
    };
    // Started before the output, so that a feed that cannot start leaves no empty file behind.
    source.start()?;
    sink.start()
        .with_context(|| format!("opening the output {target}"))?;
    eprintln!(
        "segmenting {} live into {target} (Ctrl-C to stop)",
        input.describe()
    );

    let outcome = stream::run(
        segmenter,
        Door {
            source,
            sink,
            compositors,
            config,
            stop,
            progress: ProgressBar::hidden(),
            ticker: ticker(args.stats_interval),
        },
    )
    .map_err(|error| with_hint(&input, error));
    let report = output::settle(staged, outcome)?;

    print_summary(&report, &target);
    if args.stats {
        report::print_stages(&report);
    }
    if let Some(path) = &args.stats_json {
        report::write_json(path, &report)?;
    }
    match &report.ending {
        Ending::Finished => Ok(0),
        Ending::Interrupted => Ok(EXIT_INTERRUPTED),
        Ending::SourceLost { silent, last_error } => {
            let silent = silent.as_secs_f64();
            match last_error {
                None => {
                    eprintln!("the source sent nothing for {silent:.1} s; stopped");
                    Ok(0)
                }
                // The source's own error, which names the feed.
                Some(error) => Err(anyhow::anyhow!(
                    "{error} (no frame for {silent:.1} s; reconnecting did not bring it back)"
                )),
            }
        }
    }
}

/// `error`, with how to find a format the camera offers when it refused the one asked for.
fn with_hint(input: &LiveInput, error: Error) -> anyhow::Error {
    match input {
        LiveInput::Camera { device, format }
            if *format != CameraFormat::default() && error.to_string().contains("not-negotiated") =>
        {
            anyhow::Error::new(error).context(format!(
                "{} does not offer the size or rate asked for; its formats: v4l2-ctl -d {} --list-formats-ext",
                shown(device),
                shown(device)
            ))
        }
        _ => error.into(),
    }
}

/// The live engine settings from the options, checked.
fn engine_config(args: &CameraArgs) -> crate::Result<EngineConfig> {
    let usage = |message: &str| Err(Error::Config(message.into()));
    if args.batch == 0 || args.every == 0 {
        return usage("--batch and --every must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.smooth) {
        return usage("--smooth is between 0 (off) and 1");
    }
    let positive = |s: f64| s > 0.0 && s.is_finite();
    if ![args.start_timeout, args.reconnect_timeout]
        .into_iter()
        .all(positive)
        || args.stats_interval.is_some_and(|s| !positive(s))
    {
        return usage(
            "--start-timeout, --reconnect-timeout and --stats-interval are positive seconds",
        );
    }
    Ok(EngineConfig {
        batch_size: args.batch,
        max_wait: Duration::from_millis(10),
        workers: 1,
        threshold: args.draw.threshold,
        policy: Policy::DropOldest,
        every: args.every,
        smoothing: args.smooth,
        patience: Some(Patience {
            first_frame: Duration::from_secs_f64(args.start_timeout),
            reconnect: Duration::from_secs_f64(args.reconnect_timeout),
        }),
    })
}

/// The feed the options name: a source pipeline, a URI, or a camera.
fn live_input(args: &CameraArgs) -> crate::Result<LiveInput> {
    if let Some(description) = &args.source_pipeline {
        return Ok(LiveInput::Pipeline(description.clone()));
    }
    if let Some(uri) = &args.source {
        if args.resolution.is_some() || args.fps.is_some() {
            return Err(Error::Config(
                "--resolution and --fps are for cameras; a network feed has its own".into(),
            ));
        }
        return LiveInput::from_uri(uri);
    }
    let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(LiveInput::Camera {
        device: args
            .device
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DEVICE)),
        format: CameraFormat {
            size: args.resolution.map(|[w, h]| (to_u32(w), to_u32(h))),
            fps: args.fps,
        },
    })
}

/// A ticker printing one line per interval, when asked.
fn ticker(seconds: Option<f64>) -> Option<Ticker> {
    let every = Duration::from_secs_f64(seconds?);
    Some(Ticker {
        every,
        report: Box::new(|interval: &Interval| {
            let l = &interval.latency;
            let latency = if interval.frames_written == 0 {
                "no frames".to_string()
            } else {
                format!(
                    "latency p50 {:>6.1} ms  p95 {:>6.1} ms  p99 {:>6.1} ms",
                    l.p50_ms, l.p95_ms, l.p99_ms
                )
            };
            eprintln!(
                "{:>7.1} s  {:>5.1} fps  dropped {:>4} of {:<4}  {latency}",
                interval.at_s, interval.fps, interval.frames_dropped, interval.frames_read,
            );
        }),
    })
}

fn print_summary(report: &Report, target: &str) {
    let how = if report.interrupted() {
        "interrupted: "
    } else {
        ""
    };
    let dropped_share = report.frames_dropped as f64 / report.frames_read.max(1) as f64;
    let l = report.latency_summary();
    eprintln!(
        "{how}wrote {} of {} frames to {target} in {:.1} s ({:.1} fps); dropped {} ({:.1}%)",
        report.frames_written,
        report.frames_read,
        report.elapsed.as_secs_f64(),
        report.output_fps(),
        report.frames_dropped,
        100.0 * dropped_share
    );
    if report.frames_written > 0 {
        eprintln!(
            "latency (appsink to appsrc): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
        );
    }
    if let Some(flicker) = report.flicker {
        eprintln!(
            "mask flicker: {:.4} of pixels change between frames",
            flicker
        );
    }
}
