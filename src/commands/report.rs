//! What `segment` and `camera` print about a run: the per-stage table and the JSON figures.

use std::path::Path;

use anyhow::Context;

use crate::paths::shown;
use crate::stream::{Ending, Report, StageSummary};

/// Prints frames, busy and CPU time, latency and queue depth of each stage.
pub(super) fn print_stages(report: &Report) {
    let stages: Vec<StageSummary> = report.stages.iter().map(|s| s.summary()).collect();
    eprint!("{}", stage_table(&stages));
}

/// One line per stage: frames, busy seconds, CPU ms per frame, latency, queue depth.
pub(super) fn stage_table(stages: &[StageSummary]) -> String {
    let mut out = format!(
        "{:<12} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
        "stage", "frames", "busy s", "cpu ms", "p50 ms", "p95 ms", "queue"
    );
    for s in stages {
        out += &format!(
            "{:<12} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7.2}\n",
            s.name, s.frames, s.busy_s, s.cpu_ms_per_frame, s.p50_ms, s.p95_ms, s.mean_queue_depth
        );
    }
    out
}

/// A run's figures as one JSON object.
pub(super) fn report_json(report: &Report) -> serde_json::Value {
    let ending = match &report.ending {
        Ending::Finished => "finished",
        Ending::Interrupted => "interrupted",
        Ending::SourceLost { .. } => "source_lost",
    };
    serde_json::json!({
        "frames_read": report.frames_read,
        "frames_written": report.frames_written,
        "frames_dropped": report.frames_dropped,
        "interrupted": report.interrupted(),
        "ending": ending,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "fps": report.fps(),
        "output_fps": report.output_fps(),
        "latency": report.latency_summary(),
        "flicker": report.flicker,
        "intervals": report.intervals,
        "stages": report.stages.iter().map(|s| s.summary()).collect::<Vec<_>>(),
    })
}

/// The figures of several sources served together: each source's (named), and the totals.
pub(super) fn sources_json<'a>(
    reports: impl IntoIterator<Item = (String, &'a Report)>,
) -> serde_json::Value {
    let reports: Vec<(String, &Report)> = reports.into_iter().collect();
    let total = |count: fn(&Report) -> u64| reports.iter().map(|(_, r)| count(r)).sum::<u64>();
    let sources: Vec<serde_json::Value> = reports
        .iter()
        .map(|(name, report)| {
            let mut json = report_json(report);
            json["source"] = name.clone().into();
            json
        })
        .collect();
    serde_json::json!({
        "frames_read": total(|r| r.frames_read),
        "frames_written": total(|r| r.frames_written),
        "frames_dropped": total(|r| r.frames_dropped),
        "sources": sources,
    })
}

/// Writes `json` to `path`.
pub(super) fn write_json(path: &Path, json: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(json)?)
        .with_context(|| format!("writing {}", shown(path)))
}
