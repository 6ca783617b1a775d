//! `segstream label`: the model's most instructive frames, corrected in a local web page and
//! saved as a dataset `train` reads.
//!
//! - [`candidates`]: frames sampled over a video, or a folder's images;
//! - [`rank`]: what a correction would teach (uncertainty, mirror disagreement, flicker), a
//!   diverse ranked queue, scenes;
//! - [`store`]: the dataset folder and its manifest, never overwritten;
//! - [`session`]: the queue behind the page and the page's requests;
//! - [`server`]: the loopback HTTP server.
//!
//! Uses `dataset`, `video`, `infer`, `imaging`, `metrics`, `files` and `paths`.

pub mod candidates;
pub mod rank;
pub mod server;
pub mod session;
pub mod store;

use std::path::Path;

pub use candidates::{Candidate, Origin};
pub use rank::{Ranker, Scored, Scores};
pub use server::Listener;
pub use session::Session;
pub use store::{Entry, Split, Store};

use crate::Result;

/// Candidates kept per queued frame while scoring: the best-scored ones, so that memory holds
/// a few frames for each queued one however many are scored (near-duplicates, the only ones
/// the queue leaves out for other reasons, are rare at [`rank::DUPLICATE`]).
const KEPT_PER_FRAME: usize = 2;

/// Scores up to `candidates` pictures of `input` that `store` does not hold yet, calling
/// `progress` after each, and returns the ranked, diverse queue of at most `frames`.
///
/// # Errors
/// An unreadable input or a failed inference.
pub fn ranked_queue(
    input: &Path,
    ranker: &mut Ranker,
    store: &Store,
    frames: usize,
    candidates: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Scored>> {
    let kept = frames.saturating_mul(KEPT_PER_FRAME);
    let mut scored = Vec::new();
    let mut read = 0;
    candidates::read(input, candidates, |candidate| {
        if !store.has(input, &candidate.origin) {
            scored.push(ranker.score(candidate)?);
            if scored.len() >= 2 * kept {
                rank::keep_best(&mut scored, kept);
            }
        }
        read += 1;
        progress(read);
        Ok(())
    })?;
    Ok(rank::select(scored, frames))
}
