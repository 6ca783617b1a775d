//! `segstream camera`: a live feed in, segmented frames out as they come, latency first.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;

use crate::Error;
use crate::cli::{CameraArgs, FeedKind};
use crate::imaging::Smoothing;
use crate::paths::{PORTRAIT_MODEL, shown};
use crate::stream::{
    Door, Ending, Engine, EngineConfig, Interval, Patience, Policy, Report, Ticker,
};
use crate::video::{
    CameraFormat, FrameOutput, FrameSink, FrameSource, LiveInput, LiveOutput, Mosaic, StagedOutput,
};

use super::segment::check_output_folder;
use super::{EXIT_INTERRUPTED, choose_decoder, draw, interrupt, load_model, output, report};

/// The camera used when no source is given.
const DEFAULT_DEVICE: &str = "/dev/video0";

pub fn run(args: &CameraArgs) -> anyhow::Result<u8> {
    // Claimed before anything is opened: a Ctrl-C from here on finalises what was written.
    let stop = interrupt::claim("stopping: finishing the frames in flight");
    let inputs = live_inputs(args)?;
    let config = engine_config(args, inputs.len())?;
    choose_decoder(args.decoding.decoder)?;
    let _metrics = super::serve_metrics(&args.metrics)?;
    let outputs = live_outputs(args, inputs.len())?;
    for output in outputs.named() {
        if let LiveOutput::File(path, kind) = output {
            check_output_folder(path, *kind)?;
        }
    }
    // The feeds are checked (the device exists, the pipeline parses) before anything is
    // loaded or written.
    let sources = inputs
        .iter()
        .map(LiveInput::open)
        .collect::<crate::Result<Vec<_>>>()?;
    let segmenter = load_model(&args.model, PORTRAIT_MODEL)?;
    let engine = Engine::start(segmenter, config.batching())?;
    let (feeds, tiled) = open_feeds(args, &inputs, sources, &outputs, &engine, &config, &stop)?;
    let runs: Vec<_> = std::thread::scope(|scope| {
        let running: Vec<_> = feeds
            .into_iter()
            .map(|(input, door, staged, target)| {
                let engine = &engine;
                let run = scope.spawn(move || door.run(engine));
                (input, run, staged, target)
            })
            .collect();
        running
            .into_iter()
            .map(|(input, run, staged, target)| {
                let outcome = run
                    .join()
                    .unwrap_or_else(|_| Err(Error::Pipeline("a source's run panicked".into())));
                (input, outcome, staged, target)
            })
            .collect()
    });
    // Outputs are settled first: a model that failed leaves each its frames as partial.
    let settled: Vec<_> = runs
        .into_iter()
        .map(|(input, outcome, staged, target)| {
            let outcome = output::settle(staged, outcome.map_err(|e| with_hint(input, e)));
            (input, outcome, target)
        })
        .collect();
    let tiled = tiled.map(Tiled::settle).transpose()?;
    let shared = engine.finish()?;
    let several = settled.len() > 1;
    let mut reports = Vec::new();
    let mut failures: Vec<_> = tiled.flatten().into_iter().collect();
    let label = |index: usize, input: &LiveInput| match several {
        true => format!("source {index} ({})", input.describe()),
        false => input.describe(),
    };
    for (index, (input, outcome, target)) in settled.into_iter().enumerate() {
        let mut report = match outcome {
            Ok(report) => report,
            Err(error) if !several => return Err(error),
            Err(error) => {
                failures.push(error.context(label(index, input)));
                continue;
            }
        };
        report.stages.splice(2..2, shared.iter().cloned());
        if several {
            eprintln!("{}:", label(index, input));
        }
        print_summary(&report, &target);
        if args.stats {
            report::print_stages(&report);
        }
        if let Err(error) = ending_error(&report) {
            failures.push(match several {
                true => error.context(label(index, input)),
                false => error,
            });
        }
        reports.push((label(index, input), report));
    }
    if let Some(path) = &args.stats_json {
        match reports.as_slice() {
            [(_, report)] if !several => report::write_json(path, &report::report_json(report))?,
            _ => {
                let named = reports.iter().map(|(name, report)| (name.clone(), report));
                report::write_json(path, &report::sources_json(named))?;
            }
        }
    }
    if !several && let Some(error) = failures.pop() {
        return Err(error);
    }
    for failure in &failures {
        eprintln!("error: {failure:#}");
    }
    Ok(if !failures.is_empty() {
        1
    } else if reports.iter().any(|(_, r)| r.interrupted()) {
        EXIT_INTERRUPTED
    } else {
        0
    })
}

/// The error a live run ends with when its source was lost through a failure; a source that
/// fell silent ends the run normally, said on the terminal.
fn ending_error(report: &Report) -> anyhow::Result<()> {
    if let Ending::SourceLost { silent, last_error } = &report.ending {
        let silent = silent.as_secs_f64();
        match last_error {
            None => eprintln!("the source sent nothing for {silent:.1} s; stopped"),
            // The source's own error, which names the feed.
            Some(error) => anyhow::bail!(
                "{error} (no frame for {silent:.1} s; reconnecting did not bring it back)"
            ),
        }
    }
    Ok(())
}

/// A feed ready to run: its input, its door, its own file output (when it has one) and how its
/// output is named.
type Feed<'a> = (&'a LiveInput, Door, Option<StagedOutput>, String);

/// The output all feeds share when they are tiled, and how it ended.
struct Tiled {
    mosaic: Arc<Mosaic>,
    staged: Option<StagedOutput>,
    target: String,
}

impl Tiled {
    /// Settles the shared output once every feed has ended; its failure is returned, to be
    /// reported with the feeds'.
    fn settle(self) -> anyhow::Result<Option<anyhow::Error>> {
        let outcome = self.mosaic.outcome();
        let written = outcome.as_ref().and_then(|o| o.as_ref().ok().copied());
        if let Some(staged) = self.staged {
            output::settle_file(staged, written)?;
        }
        if let (Some(pictures), Some([columns, rows])) = (written, self.mosaic.layout()) {
            eprintln!(
                "tiled the sources {columns}×{rows} into {}: {pictures} pictures",
                self.target
            );
        }
        Ok(match outcome {
            Some(Err(error)) => Some(anyhow::anyhow!("{error}").context(self.target)),
            _ => None,
        })
    }
}

/// Opens each feed's output (or the tiled one) and builds its door; sources are started
/// before the outputs they write, so that a feed that cannot start leaves no empty file.
fn open_feeds<'a>(
    args: &CameraArgs,
    inputs: &'a [LiveInput],
    sources: Vec<FrameSource>,
    outputs: &Outputs,
    engine: &Engine,
    config: &EngineConfig,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(Vec<Feed<'a>>, Option<Tiled>)> {
    let tiled = match outputs {
        Outputs::Tiled(output) => {
            let (sink, staged, target) = open_output(args, output.as_ref())?;
            let mosaic = Mosaic::new(sink, inputs.len());
            Some(Tiled {
                mosaic,
                staged,
                target,
            })
        }
        Outputs::Each(_) => None,
    };
    let mut feeds = Vec::with_capacity(inputs.len());
    for (index, (input, source)) in inputs.iter().zip(sources).enumerate() {
        let output = outputs.of(index);
        let keeps_alpha = output.is_none_or(LiveOutput::keeps_alpha);
        let compositors = draw::compositors(&args.draw, engine.card(), keeps_alpha, 1)?;
        let (sink, staged, target): (Box<dyn FrameOutput>, _, _) = match &tiled {
            Some(tiled) => {
                source.start()?;
                let target = format!("tile {index} of {}", tiled.target);
                (Box::new(tiled.mosaic.tile(index)), None, target)
            }
            None => {
                let (sink, staged, target) = open_output(args, output)?;
                source.start()?;
                sink.start()
                    .with_context(|| format!("opening the output {target}"))?;
                (Box::new(sink), staged, target)
            }
        };
        eprintln!(
            "segmenting {} live into {target} (Ctrl-C to stop)",
            input.describe()
        );
        let door = Door {
            source,
            sink,
            compositors,
            config: config.clone(),
            stop: Arc::clone(stop),
            progress: ProgressBar::hidden(),
            ticker: ticker(args.stats_interval),
            meter: crate::telemetry::source(&input.describe()),
        };
        feeds.push((input, door, staged, target));
    }
    if let Some(tiled) = &tiled {
        tiled
            .mosaic
            .start()
            .with_context(|| format!("opening the output {}", tiled.target))?;
    }
    Ok((feeds, tiled))
}

/// The sink for `output` (the sink pipeline when `None`), not started, with the file it
/// stages and how it is named.
fn open_output(
    args: &CameraArgs,
    output: Option<&LiveOutput>,
) -> crate::Result<(FrameSink, Option<StagedOutput>, String)> {
    match (&args.sink_pipeline, output) {
        (Some(description), _) => Ok((
            FrameSink::from_description(description)?,
            None,
            "the sink pipeline".to_string(),
        )),
        (None, Some(output)) => {
            let (sink, staged) = output.open()?;
            Ok((
                sink.with_preset(&args.preset, true)?,
                staged,
                output.describe(),
            ))
        }
        (None, None) => unreachable!("an output is parsed when there is no sink pipeline"),
    }
}

/// Where the feeds' frames go (`None`: the sink pipeline).
enum Outputs {
    /// Each feed to its own output, in order.
    Each(Vec<Option<LiveOutput>>),
    /// Every feed into a tile of one output.
    Tiled(Option<LiveOutput>),
}

impl Outputs {
    /// The output feed `index` writes to (through its tile when tiled).
    fn of(&self, index: usize) -> Option<&LiveOutput> {
        match self {
            Outputs::Each(each) => each[index].as_ref(),
            Outputs::Tiled(shared) => shared.as_ref(),
        }
    }

    /// Every output the options named.
    fn named(&self) -> Vec<&LiveOutput> {
        match self {
            Outputs::Each(each) => each.iter().flatten().collect(),
            Outputs::Tiled(shared) => shared.iter().collect(),
        }
    }
}

/// The outputs the options name: `-o` once per source, or once with `{index}` in it
/// (`out-{index}.mkv`); one output (a window when none is given, or the sink pipeline) for
/// several sources shows them tiled.
fn live_outputs(args: &CameraArgs, sources: usize) -> crate::Result<Outputs> {
    let several = sources > 1;
    if args.sink_pipeline.is_some() {
        return Ok(match several {
            true => Outputs::Tiled(None),
            false => Outputs::Each(vec![None]),
        });
    }
    let named: Vec<String> = match args.output.as_slice() {
        [] => vec!["window".into()],
        [pattern] if several && pattern.contains("{index}") => (0..sources)
            .map(|i| pattern.replace("{index}", &i.to_string()))
            .collect(),
        named => named.to_vec(),
    };
    let outputs = named
        .iter()
        .map(|o| LiveOutput::parse(Some(o)))
        .collect::<crate::Result<Vec<_>>>()?;
    match outputs.len() {
        1 if several => return Ok(Outputs::Tiled(outputs.into_iter().next())),
        n if n == sources => {}
        n => {
            return Err(Error::Config(format!(
                "{n} outputs (-o) for {sources} sources: give one per source, one with \
                 {{index}} in it, or one to show them all tiled"
            )));
        }
    }
    if several && outputs.contains(&LiveOutput::Window) {
        return Err(Error::Config(
            "a window with other outputs: give one -o (or none) to show every source tiled \
             in one window, or files and network outputs for each"
                .into(),
        ));
    }
    for (i, output) in outputs.iter().enumerate() {
        if outputs[..i].contains(output) {
            return Err(Error::Config(format!(
                "two sources would write {}",
                output.describe()
            )));
        }
    }
    Ok(Outputs::Each(outputs.into_iter().map(Some).collect()))
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

/// The live engine settings from the options for `sources` feeds, checked; a batch holds one
/// frame of each feed unless `--batch` says otherwise.
fn engine_config(args: &CameraArgs, sources: usize) -> crate::Result<EngineConfig> {
    let usage = |message: &str| Err(Error::Config(message.into()));
    if args.batch == Some(0) || args.every == 0 {
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
        batch_size: args.batch.unwrap_or(sources),
        max_wait: Duration::from_millis(args.max_wait_ms),
        workers: 1,
        threshold: args.draw.threshold,
        policy: Policy::DropOldest,
        every: args.every,
        smoothing: Smoothing::checked(args.smooth, args.smooth_motion)?,
        patience: Some(Patience {
            first_frame: Duration::from_secs_f64(args.start_timeout),
            reconnect: Duration::from_secs_f64(args.reconnect_timeout),
        }),
    })
}

/// The feeds the options name: source pipelines, URIs, or a camera.
fn live_inputs(args: &CameraArgs) -> crate::Result<Vec<LiveInput>> {
    if !args.source.is_empty() && (args.resolution.is_some() || args.fps.is_some()) {
        return Err(Error::Config(
            "--resolution and --fps are for cameras; a network feed has its own".into(),
        ));
    }
    // One address cannot be listened on or read twice; a source pipeline given twice (a test
    // pattern) is two feeds.
    if let Some(twice) = args
        .source
        .iter()
        .enumerate()
        .find_map(|(i, uri)| args.source[..i].contains(uri).then_some(uri))
    {
        return Err(Error::Config(format!(
            "--source {} is given twice: give each feed once (one address cannot be read twice)",
            crate::paths::escaped(twice)
        )));
    }
    // One -o per feed in the order the feeds were given, whatever their kind.
    let default_order: Vec<FeedKind> = std::iter::repeat_n(FeedKind::Uri, args.source.len())
        .chain(std::iter::repeat_n(
            FeedKind::Pipeline,
            args.source_pipeline.len(),
        ))
        .collect();
    let order = match args.feed_order.len() == default_order.len() {
        true => &args.feed_order,
        false => &default_order,
    };
    let (mut uris, mut pipelines) = (args.source.iter(), args.source_pipeline.iter());
    let inputs = order
        .iter()
        .filter_map(|kind| match kind {
            FeedKind::Uri => uris.next().map(|uri| LiveInput::from_uri(uri)),
            FeedKind::Pipeline => pipelines
                .next()
                .map(|description| Ok(LiveInput::Pipeline(description.clone()))),
        })
        .collect::<crate::Result<Vec<_>>>()?;
    if !inputs.is_empty() {
        return Ok(inputs);
    }
    let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(vec![LiveInput::Camera {
        device: args
            .device
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DEVICE)),
        format: CameraFormat {
            size: args.resolution.map(|[w, h]| (to_u32(w), to_u32(h))),
            fps: args.fps,
        },
    }])
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
