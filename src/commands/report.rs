//! What `segment` and `camera` print about a run: the per-stage table and the JSON figures.

use std::path::Path;

use anyhow::Context;

use crate::stream::{Ending, Report};

/// Prints frames, busy time, latency and queue depth of each stage.
pub(super) fn print_stages(report: &Report) {
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

/// Writes the run's figures to `path` as one JSON object.
pub(super) fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    let ending = match &report.ending {
        Ending::Finished => "finished",
        Ending::Interrupted => "interrupted",
        Ending::SourceLost { .. } => "source_lost",
    };
    let json = serde_json::json!({
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
    });
    std::fs::write(path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))
}
