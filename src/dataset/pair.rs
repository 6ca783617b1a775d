//! [`Pair`]: one labelled example on disk, an image and its mask. The lowest room of
//! `dataset`: the layouts find pairs, the split divides them; it uses nothing of either.

use std::path::{Path, PathBuf};

/// One training example on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The image file.
    pub image: PathBuf,
    /// Its mask file.
    pub mask: PathBuf,
}

impl Pair {
    /// The image's file stem, the pair's name in reports.
    pub fn name(&self) -> String {
        stem(&self.image)
    }
}

/// A file's stem as text (empty when it has none).
pub(super) fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
