//! The resized cache (the seed lesson's `train-128` folders): each pair is decoded and resized
//! to a training size once, in parallel, and kept as raw RGB + labels keyed by the size, the
//! class encoding and each source file's path, length and modification time. Later runs read
//! the raw bytes instead of decoding JPEGs again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::classes::ClassSet;
use super::pair::Pair;
use super::read::read_pair;
use crate::imaging::Scaler;
use crate::{Error, Result};

/// First bytes of a cache file; a change of format changes this.
const MAGIC: &[u8; 4] = b"SSC1";

/// One pair at a training size.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The image's name (file stem).
    pub name: String,
    /// Packed RGB, height × width × 3.
    pub rgb: Vec<u8>,
    /// Class labels, height × width.
    pub labels: Vec<u8>,
}

/// Pairs resized to one size, and what it took.
#[derive(Debug)]
pub struct Resized {
    /// Height and width.
    pub size: [usize; 2],
    /// The samples, in the order of the pairs.
    pub samples: Vec<Sample>,
    /// Masks that had another size than their image (resized nearest-neighbour).
    pub masks_resized: usize,
    /// Samples read from the cache rather than decoded.
    pub from_cache: usize,
}

/// The default cache folder: `$XDG_CACHE_HOME/segstream/resized` or
/// `~/.cache/segstream/resized`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("segstream").join("resized"))
}

/// Loads every pair resized to `size` (height, width), from `cache_dir` where it holds them,
/// decoding and caching the rest with `workers` threads.
///
/// # Errors
/// The first pair that cannot be read (see [`read_pair`]), or a cache file that cannot be
/// written.
pub fn load_resized(
    pairs: &[Pair],
    size: [usize; 2],
    classes: &ClassSet,
    cache_dir: Option<&Path>,
    workers: usize,
) -> Result<Resized> {
    let dir = cache_dir.map(|d| d.join(format!("{}x{}", size[0], size[1])));
    if let Some(dir) = &dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let next = AtomicUsize::new(0);
    let work = || -> Result<Vec<(usize, Entry)>> {
        let mut scaler = Scaler::default();
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(pair) = pairs.get(i) else {
                return Ok(done);
            };
            let file = dir.as_ref().map(|d| d.join(cache_name(pair, classes)));
            done.push((
                i,
                load_one(pair, size, classes, file.as_deref(), &mut scaler)?,
            ));
        }
    };
    let mut entries: Vec<(usize, Entry)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1)).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<_>>>()
            .map(|parts| parts.into_iter().flatten().collect())
    })?;
    entries.sort_by_key(|(i, _)| *i);
    Ok(Resized {
        size,
        masks_resized: entries.iter().filter(|(_, e)| e.mask_resized).count(),
        from_cache: entries.iter().filter(|(_, e)| e.from_cache).count(),
        samples: entries.into_iter().map(|(_, e)| e.sample).collect(),
    })
}

struct Entry {
    sample: Sample,
    mask_resized: bool,
    from_cache: bool,
}

fn load_one(
    pair: &Pair,
    [h, w]: [usize; 2],
    classes: &ClassSet,
    file: Option<&Path>,
    scaler: &mut Scaler,
) -> Result<Entry> {
    let name = pair.name();
    if let Some(bytes) = file.and_then(|f| std::fs::read(f).ok())
        && let Some((mask_resized, rgb, labels)) = parse(&bytes, h * w)
    {
        return Ok(Entry {
            sample: Sample {
                name,
                rgb: rgb.to_vec(),
                labels: labels.to_vec(),
            },
            mask_resized,
            from_cache: true,
        });
    }
    let full = read_pair(pair, classes, scaler)?;
    let sample = Sample {
        name,
        rgb: scaler.rgb(&full.rgb, full.size, [w, h]),
        labels: scaler.labels(&full.labels, full.size, [w, h]),
    };
    if let Some(file) = file {
        let mut bytes = Vec::with_capacity(5 + sample.rgb.len() + sample.labels.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(u8::from(full.mask_resized));
        bytes.extend_from_slice(&sample.rgb);
        bytes.extend_from_slice(&sample.labels);
        // Written aside and renamed, so a concurrent or interrupted run never reads half a file.
        let partial = file.with_extension(format!("part{}", std::process::id()));
        std::fs::write(&partial, &bytes).map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, file).map_err(|e| Error::io(file, e))?;
    }
    Ok(Entry {
        sample,
        mask_resized: full.mask_resized,
        from_cache: false,
    })
}

/// Splits a cache file into (mask resized, RGB, labels); `None` when it does not fit `pixels`.
fn parse(bytes: &[u8], pixels: usize) -> Option<(bool, &[u8], &[u8])> {
    let body = bytes.strip_prefix(MAGIC)?;
    let (&flag, rest) = body.split_first()?;
    (rest.len() == pixels * 4).then(|| {
        let (rgb, labels) = rest.split_at(pixels * 3);
        (flag == 1, rgb, labels)
    })
}

/// The cache file name of `pair`: a hash of both files' identity and the class encoding.
fn cache_name(pair: &Pair, classes: &ClassSet) -> String {
    let mut hasher = DefaultHasher::new();
    classes.encoding().hash(&mut hasher);
    for path in [&pair.image, &pair.mask] {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        absolute.hash(&mut hasher);
        if let Ok(meta) = std::fs::metadata(path) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    format!("{}-{:016x}.bin", pair.name(), hasher.finish())
}
