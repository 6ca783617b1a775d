//! Writing files without losing any: an output that is its input is refused, every file is
//! written under a temporary name beside it, flushed to the disk and moved into place only
//! when whole, and the temporaries of a process that a signal ends are removed. Uses the
//! crate's error and `paths` to show names.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::paths::shown;

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
