//! Finding files that ship with the checkout (ONNX Runtime's library, the default model) from
//! wherever the binary runs.

use std::path::{Path, PathBuf};

/// Places where `relative` (a path inside the checkout) may be: below every folder above the
/// executable (so `target/release/segstream` finds its checkout), then below the checkout the
/// binary was built from.
pub fn checkout_candidates(relative: &Path) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .map(|dir| dir.ancestors().map(|a| a.join(relative)).collect())
        .unwrap_or_default();
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative));
    candidates.dedup();
    candidates
}

/// Whether `a` and `b` name the same existing file, through `..`, symbolic links or hard
/// links alike: on Unix the same device and inode, elsewhere the same canonical path.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
        matches!((id(a), id(b)), (Ok(x), Ok(y)) if x == y)
    }
    #[cfg(not(unix))]
    {
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// A path as messages show it: control characters (a newline, a tab, an escape sequence in a
/// file name) written as escapes, so that a name cannot break or forge a line of output.
pub fn shown(path: &Path) -> String {
    escaped(&path.to_string_lossy())
}

/// `text` with its control characters written as escapes (`\n`, `\u{1b}`).
pub fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(shown(Path::new("a\nb\t.mp4")), "a\\nb\\t.mp4");
        assert_eq!(shown(Path::new("plain name é.mp4")), "plain name é.mp4");
    }
}
