//! Finding files that ship with the checkout (ONNX Runtime's library, the default model) from
//! wherever the binary (or the GStreamer plugin) runs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Refuses an `output` that is the file `input` (through `..`, symbolic or hard links): writing
/// it would destroy the input.
///
/// # Errors
/// [`crate::Error::Config`] naming both.
pub fn refuse_overwriting(input: &Path, output: &Path) -> crate::Result<()> {
    if !same_file(input, output) {
        return Ok(());
    }
    let input_named = match input == output {
        true => String::new(),
        false => format!(" {}", shown(input)),
    };
    Err(crate::Error::Config(format!(
        "the output {} is the input file{input_named}; writing it would destroy the input: \
         choose another output name",
        shown(output)
    )))
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

/// Temporary files being written now, removed by [`remove_temporaries`] when a signal ends the
/// process before their writer could.
static TEMPORARIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes every temporary file [`write_through_temp`] is writing: the signal handler calls it
/// before the process exits, so that no `.NAME.*.part` is left behind.
pub fn remove_temporaries() {
    let temporaries = TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner());
    for temp in temporaries.iter() {
        let _ = std::fs::remove_file(temp);
    }
}

/// Writes `path` through a temporary file beside it (`.NAME.PID.N.part`, unique to this
/// process and this write, so that two writers never share one), moved into place only when
/// `write` (given the temporary path) succeeds and removed when it fails, so a reader never
/// sees a half-written file and an earlier one stays whole until the new one is.
///
/// # Errors
/// `write`'s error, or [`crate::Error::Io`] when the rename fails.
pub fn write_through_temp<E: From<crate::Error>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let serial = WRITES.fetch_add(1, Ordering::Relaxed);
    let temp = path.with_file_name(format!(".{name}.{}.{serial}.part", std::process::id()));
    let registered = |add: bool| {
        let mut temporaries = TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner());
        match add {
            true => temporaries.push(temp.clone()),
            false => temporaries.retain(|t| *t != temp),
        }
    };
    registered(true);
    let result = write(&temp).and_then(|()| {
        std::fs::rename(&temp, path).map_err(|e| E::from(crate::Error::io(path, e)))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    registered(false);
    result
}

/// Writes `bytes` to `path` through a temporary file ([`write_through_temp`]), flushed to the
/// disk before it is moved into place: a full disk is an error here, not a short file later.
///
/// # Errors
/// [`crate::Error::Io`] naming `path` when a write, the flush or the rename fails.
pub fn write_synced(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    write_through_temp(path, |temp| {
        write_file_synced(temp, bytes).map_err(|e| crate::Error::io(path, e))
    })
}

/// Creates `path` with `bytes` and flushes it to the disk.
///
/// # Errors
/// The first failing write, or the flush.
pub fn write_file_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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
