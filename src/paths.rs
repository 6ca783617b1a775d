//! Paths: finding files that ship with the checkout (ONNX Runtime's library, the default model)
//! from wherever the binary (or the GStreamer plugin) runs, and showing a path in a message.
//! The lowest room of the crate: it uses nothing of it.

use std::path::{Path, PathBuf};

/// The file this code runs from: the GStreamer plugin's library when a host program loaded
/// it, otherwise the executable.
pub fn this_module() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    // SAFETY: `dladdr` only looks the address up and fills `info`; `dli_fname` points to a
    // string owned by the loader that lives as long as the module.
    let library = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let found = libc::dladdr(this_module as *const libc::c_void, &mut info) != 0;
        (found && !info.dli_fname.is_null())
            .then(|| std::ffi::CStr::from_ptr(info.dli_fname).to_bytes().to_vec())
    };
    // For the executable itself the loader may give only the name it was started by.
    library
        .map(|name| PathBuf::from(std::ffi::OsStr::from_bytes(&name)))
        .filter(|path| path.is_absolute() && path.to_string_lossy().contains(".so"))
        .or_else(|| std::env::current_exe().ok())
}

/// Places where `relative` (a path inside the checkout) may be: below every folder above the
/// executable or plugin (so `target/release/segstream` and `target/release/libsegstream.so`
/// find their checkout), then below the checkout the binary was built from.
pub fn checkout_candidates(relative: &Path) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = this_module()
        .and_then(|module| module.parent().map(Path::to_path_buf))
        .map(|dir| dir.ancestors().map(|a| a.join(relative)).collect())
        .unwrap_or_default();
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative));
    candidates.dedup();
    candidates
}

/// The model used when none is named, relative to the checkout: the shipped person model,
/// since people are what the README demo clip shows (models/README.md).
pub const DEFAULT_MODEL: &str = "models/people.onnx";

/// `camera`'s model when none is named: webcams mostly show one or two people close up, where
/// the portrait model scores best (models/README.md).
pub const PORTRAIT_MODEL: &str = "models/portrait.onnx";

/// Where the shipped model `relative` (to the checkout) is, if it is anywhere
/// [`checkout_candidates`] looks.
pub fn shipped_model(relative: &str) -> Option<PathBuf> {
    checkout_candidates(Path::new(relative))
        .into_iter()
        .find(|p| p.is_file())
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
