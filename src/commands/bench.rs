//! `segstream bench`: the table, and the JSON when asked.

use anyhow::Context as _;

use std::ffi::OsString;

use clap::ValueEnum as _;

use crate::Error;
use crate::bench::streams::{self as bench_streams, StreamsConfig};
use crate::bench::{self, BenchConfig, BenchReport};
use crate::cli::BenchArgs;
use crate::infer::Segmenter;
use crate::paths::{DEFAULT_MODEL, shown};

use super::{choose_decoder, model_path};

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.streams == 0 {
        return Err(Error::Config("--streams 0 measures nothing: give at least 1".into()).into());
    }
    let model = model_path(&args.model, DEFAULT_MODEL)?;
    choose_decoder(args.decoding.decoder)?;
    let _metrics = super::serve_metrics(&args.metrics)?;
    if args.input.len() > 1 || args.streams > 1 {
        return run_streams(args, &model);
    }
    let runtime = args.model.runtime.options().beside_video();
    let card = Segmenter::load(&model, &runtime)?.card().clone();
    let config = BenchConfig {
        input: args.input[0].clone(),
        model,
        runtime,
        batches: args.batch.clone(),
        repeats: args.repeats,
        workers: args
            .workers
            .unwrap_or(crate::stream::EngineConfig::default().workers),
        styles: crate::imaging::label_styles(&card, &[], false)?,
    };
    let report = bench::run(&config)?;
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", shown(path)))?;
    }
    Ok(())
}

/// `bench` of several streams: one process serving them all against one process each.
fn run_streams(args: &BenchArgs, model: &std::path::Path) -> anyhow::Result<()> {
    let inputs = match args.input.as_slice() {
        [one] => vec![one.clone(); args.streams],
        several => several.to_vec(),
    };
    check_room_for(inputs.len())?;
    let runtime = &args.model.runtime;
    let mut segment_options: Vec<OsString> =
        vec!["--model".into(), model.into(), "--no-audio".into()];
    if let Some(decoder) = args.decoding.decoder.to_possible_value() {
        segment_options.extend(["--decoder".into(), decoder.get_name().into()]);
    }
    if let Some(provider) = runtime.provider.to_possible_value() {
        segment_options.extend(["--provider".into(), provider.get_name().into()]);
    }
    if runtime.threads > 0 {
        segment_options.extend(["--threads".into(), runtime.threads.to_string().into()]);
    }
    if let Some(workers) = args.workers {
        segment_options.extend(["--workers".into(), workers.to_string().into()]);
    }
    let report = bench_streams::run(&StreamsConfig {
        inputs,
        segment_options,
        repeats: args.repeats,
    })?;
    println!(
        "{} streams, {} frames a run, each way {} times alternately:",
        report.streams, report.frames, args.repeats
    );
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>9} {:>10}  p95 latency per stream (ms)",
        "way", "fps", "min", "max", "wall s", "peak MiB"
    );
    for way in [&report.one_process, &report.separate] {
        let latency: Vec<String> = way
            .latency_p95_ms
            .iter()
            .map(|l| format!("{l:.0}"))
            .collect();
        println!(
            "{:<20} {:>9.1} {:>9.1} {:>9.1} {:>9.2} {:>10.0}  {}",
            way.name,
            way.fps.median,
            way.fps.min,
            way.fps.max,
            way.wall_s.median,
            way.peak_rss_mib,
            latency.join(" ")
        );
    }
    println!(
        "one process: {:.2}x the throughput at {:.2}x the memory",
        report.one_process.fps.median / report.separate.fps.median.max(1e-9),
        report.one_process.peak_rss_mib / report.separate.peak_rss_mib.max(1e-9)
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", shown(path)))?;
    }
    Ok(())
}

fn table(report: &BenchReport) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{:<14} {:>5} {:>9} {:>9} {:>9} {:>6} {:>6}\n",
        "measurement", "batch", "fps", "min", "max", "cpu%", "frames"
    );
    for m in &report.measurements {
        let batch = m.batch.map_or("-".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "{:<14} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>6.0} {:>6}",
            m.name, batch, m.fps.median, m.fps.min, m.fps.max, m.cpu_percent, m.frames
        );
    }
    if let Some(e2e) = report
        .measurements
        .iter()
        .find(|m| m.name == "end-to-end" && m.batch == Some(report.efficiency_batch))
    {
        let _ = writeln!(
            out,
            "\nstages of end-to-end, batch {}:",
            report.efficiency_batch
        );
        out += &super::report::stage_table(&e2e.stages);
    }
    let cpu = report.cpu_s_per_frame;
    let _ = writeln!(
        out,
        "\nefficiency (end-to-end ÷ min(decode+encode, inference), batch {}): {:.2}\n\
         CPU per frame: decode+encode {:.1} ms and inference {:.1} ms (each alone), pre+post \
         {:.1} ms (their threads in end-to-end); the cores allow {:.1} fps; end-to-end ÷ that CPU bound: \
         {:.2}\n\
         provider {} on {}, {} model, peak RSS {:.0} MiB",
        report.efficiency_batch,
        report.efficiency,
        1e3 * cpu.decode_encode,
        1e3 * cpu.inference,
        1e3 * cpu.pre_post,
        report.cpu_bound_fps,
        report.cpu_efficiency,
        report.provider,
        report.device,
        report.precision,
        report.peak_rss_mib
    );
    out
}

/// Resident memory of one `segment` process on a 960×540 clip (docs/segment.md, "Several
/// files, one model": four took 825 MiB): the model and runtime (about 135 MiB) and the
/// stream's decoder, encoder and frames in flight (about 70 MiB). The separate-processes side of the comparison runs one
/// such process per stream at once.
const MIB_PER_PROCESS: u64 = 210;

/// Refuses a comparison of `streams` streams that the machine's memory cannot hold, before
/// any of them starts.
fn check_room_for(streams: usize) -> crate::Result<()> {
    let need = streams as u64 * MIB_PER_PROCESS;
    match crate::infer::available_memory() {
        Some(available) if need << 20 > available => Err(Error::Config(format!(
            "--streams {streams}: the separate-processes side runs {streams} processes at once, \
             about {need} MiB (about {MIB_PER_PROCESS} MiB each), and the machine has {} MiB \
             available: give fewer streams",
            available >> 20
        ))),
        _ => Ok(()),
    }
}
