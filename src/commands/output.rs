//! What happens to a file output once a run is over: moved into place when the run finalised
//! it, kept as partial or removed when the run failed (see [`StagedOutput`]).

use crate::paths::shown;
use crate::stream::Report;
use crate::video::{Settled, StagedOutput};

/// Settles `staged` (when the output is a file) after a run that ended with `outcome`, and
/// passes the outcome on.
///
/// # Errors
/// The run's own error, or the error of moving the output into place.
pub(super) fn settle(
    staged: Option<StagedOutput>,
    outcome: Result<Report, impl Into<anyhow::Error>>,
) -> anyhow::Result<Report> {
    let Some(staged) = staged else {
        return outcome.map_err(Into::into);
    };
    match outcome {
        Ok(report) => {
            settle_file(staged, Some(report.frames_written))?;
            Ok(report)
        }
        Err(error) => {
            settle_file(staged, None)?;
            Err(error.into())
        }
    }
}

/// Moves `staged` into place when its run finalised it with `written` frames; when the run
/// failed (`None`), keeps what it holds as partial or removes it.
///
/// # Errors
/// The error of moving a finalised output into place.
pub(super) fn settle_file(staged: StagedOutput, written: Option<u64>) -> anyhow::Result<()> {
    let Some(frames) = written else {
        match staged.abandon() {
            Ok(Settled::Partial(path)) => eprintln!(
                "the run failed; the frames written before it are kept in {}",
                shown(&path)
            ),
            Ok(_) => {}
            Err(move_error) => eprintln!("{move_error}"),
        }
        return Ok(());
    };
    if staged.commit(frames)? == Settled::Removed {
        eprintln!("no frame was written: no output file was made and nothing was replaced");
    }
    Ok(())
}

/// Each of `parallel` jobs' share of the cores, at least one.
pub(super) fn cores_each(parallel: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / parallel.max(1)).max(1)
}

/// Threads for each of `parallel` H.264 encoders running at once: [`cores_each`]. x264's own
/// default, 1.5 frame threads a core, suits an encoder that has the machine to itself; beside
/// decoding and inference the extra frame threads only hold memory (4 MiB each at 768×432).
pub(super) fn encoder_threads(parallel: usize) -> u32 {
    u32::try_from(cores_each(parallel)).unwrap_or(1)
}
