//! What a run of one file (`segment IN -o OUT`) and a run of several (`segment IN… -o DIR`)
//! share: the batch size when none is given, and the warning for a file that looks cut short.
//! Below both; uses the engine's report and the input's probe.

use std::path::Path;

use crate::paths::shown;
use crate::stream::Report;
use crate::video::InputInfo;

/// Share of the frames the container announces below which the input looks truncated.
const TRUNCATED_SHARE: f64 = 0.9;

/// Says so when a file that ran to its end gave clearly fewer frames than its container
/// announces (a file cut short, a damaged stream), and the frames cover clearly less time than
/// the container's duration: a variable-frame-rate file has fewer frames than its nominal rate
/// gives, but they cover its whole length.
pub(super) fn warn_if_truncated(input: &Path, info: &InputInfo, report: &Report) {
    let (Some(expected), Some(duration)) = (info.expected_frames(), info.duration) else {
        return;
    };
    let few_frames = (report.frames_read as f64) < TRUNCATED_SHARE * expected as f64;
    let short_span = report
        .input_span
        .is_none_or(|span| span.as_secs_f64() < TRUNCATED_SHARE * duration.seconds_f64());
    if !report.interrupted() && few_frames && short_span {
        eprintln!(
            "warning: {}: decoded {} frames, but the container announces about {expected}: \
             the file looks truncated or damaged",
            shown(input),
            report.frames_read
        );
    }
}
