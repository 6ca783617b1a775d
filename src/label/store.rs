//! The labelled dataset `label` writes: `images/` + `masks/` (the generic layout `train`
//! reads), `test/images/` + `test/masks/` for frames held back for evaluation, and
//! `manifest.json`, which says where each pair came from and how it was made.
//!
//! Nothing is overwritten: a name already taken gets a suffix, and every file (the manifest
//! too) is written under a temporary name and renamed, so an interrupted run leaves only whole
//! files and a valid manifest.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::candidates::Origin;
use super::rank::Scores;
use crate::files::write_synced;
use crate::{Error, Result};

/// The manifest's file name in the dataset folder.
pub const MANIFEST: &str = "manifest.json";

/// The manifest's format version.
const FORMAT: u32 = 1;

/// Which side of the dataset a pair is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// `images/` + `masks/`: what `train --data DATASET` reads.
    Train,
    /// `test/images/` + `test/masks/`: held back for `eval --data DATASET/test`.
    Test,
}

impl Split {
    /// The folder holding this split's `images/` and `masks/`.
    fn folder(self, root: &Path) -> PathBuf {
        match self {
            Split::Train => root.to_path_buf(),
            Split::Test => root.join("test"),
        }
    }
}

/// How the saved mask was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The offered mask, accepted as it was.
    Accepted,
    /// Corrected by the person.
    Edited,
}

/// The model that proposed the masks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelIdentity {
    /// Its file name.
    pub file: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Its card's classes and architecture.
    pub classes: Vec<String>,
    /// Its card's architecture.
    pub architecture: String,
}

/// One saved pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// File stem of the pair.
    pub name: String,
    /// Where it went.
    pub split: Split,
    /// The image, relative to the dataset folder.
    pub image: String,
    /// The mask, relative to the dataset folder.
    pub mask: String,
    /// The input video or folder, as given.
    pub input: String,
    /// The video's frame, counted from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<u64>,
    /// The folder's image file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The model that proposed the mask.
    pub model: ModelIdentity,
    /// Why it was queued.
    pub scores: Scores,
    /// Its place in the ranked queue, from 1.
    pub rank: usize,
    /// Accepted or edited.
    pub decision: Decision,
    /// The pair whose corrected mask was carried to this frame, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_from: Option<String>,
    /// When it was saved, seconds since 1970 (UTC).
    pub saved_unix_s: u64,
}

/// What a save records besides the pixels.
#[derive(Debug, Clone)]
pub struct Provenance<'a> {
    /// The input, as given.
    pub input: &'a Path,
    /// Where in it.
    pub origin: &'a Origin,
    /// The queue's scores and rank.
    pub scores: Scores,
    /// Its place in the ranked queue, from 1.
    pub rank: usize,
    /// Accepted or edited.
    pub decision: Decision,
    /// The pair a carried mask came from.
    pub carried_from: Option<String>,
    /// Train or test.
    pub split: Split,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Manifest {
    format: u32,
    entries: Vec<Entry>,
}

/// A dataset folder being added to.
pub struct Store {
    root: PathBuf,
    manifest: Manifest,
    /// Each entry's input as [`same_file_key`] gives it, worked out once.
    input_keys: Vec<PathBuf>,
    model: ModelIdentity,
    binary: bool,
    /// Held while the store is open: a second session on the same folder is refused.
    _lock: std::fs::File,
}

impl Store {
    /// Opens (or starts) the dataset at `root` for masks of `model`, continuing its manifest.
    ///
    /// # Errors
    /// When the folder cannot be made or its manifest is unreadable (it is left as it is).
    pub fn open(root: &Path, model: ModelIdentity) -> Result<Self> {
        let binary = model.classes.len() == 1;
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        check_writable(root)?;
        let lock = lock(root)?;
        let path = root.join(MANIFEST);
        let manifest = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Dataset {
                path: path.clone(),
                reason: format!("the manifest is not valid JSON ({e}); move it away to start anew"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest {
                format: FORMAT,
                entries: Vec::new(),
            },
            Err(e) => return Err(Error::io(&path, e)),
        };
        for split in [Split::Train, Split::Test] {
            for kind in ["images", "masks"] {
                let dir = split.folder(root).join(kind);
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                check_writable(&dir)?;
            }
        }
        let input_keys = manifest
            .entries
            .iter()
            .map(|e: &Entry| same_file_key(Path::new(&e.input)))
            .collect();
        Ok(Store {
            root: root.to_path_buf(),
            manifest,
            input_keys,
            model,
            binary,
            _lock: lock,
        })
    }

    /// The saved pairs, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.manifest.entries
    }

    /// Whether the picture at `origin` of `input` was saved by an earlier run.
    pub fn has(&self, input: &Path, origin: &Origin) -> bool {
        let wanted = same_file_key(input);
        let mut entries = self.manifest.entries.iter().zip(&self.input_keys);
        entries.any(|(entry, key)| {
            *key == wanted
                && match origin {
                    Origin::Frame(index) => entry.frame == Some(*index),
                    Origin::File(path) => entry.file.as_deref() == file_name(path).as_deref(),
                }
        })
    }

    /// Writes the picture (packed RGBA, `[width, height]`) and its class ids as a new pair,
    /// then the manifest with its entry.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn save(
        &mut self,
        rgba: &[u8],
        size: [usize; 2],
        labels: &[u8],
        provenance: Provenance<'_>,
    ) -> Result<Entry> {
        let name = self.free_name(&provenance.origin.stem(provenance.input));
        let folder = provenance.split.folder(&self.root);
        let relative = |kind: &str| {
            let path = folder.join(kind).join(format!("{name}.png"));
            path.strip_prefix(&self.root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned()
        };
        let (image, mask) = (relative("images"), relative("masks"));
        let [width, height] = size.map(|v| v as u32);
        let rgb: Vec<u8> = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let scale = if self.binary { 255 } else { 1 };
        let ids: Vec<u8> = labels.iter().map(|&l| l * scale).collect();
        let encoded = |image: Option<image::DynamicImage>| {
            image
                .ok_or_else(|| Error::Config("a picture's size does not match its pixels".into()))
                .and_then(|image| encode_png(&image))
        };
        let image_png = encoded(
            image::RgbImage::from_raw(width, height, rgb).map(image::DynamicImage::ImageRgb8),
        )?;
        let mask_png = encoded(
            image::GrayImage::from_raw(width, height, ids).map(image::DynamicImage::ImageLuma8),
        )?;
        let entry = Entry {
            name,
            split: provenance.split,
            image,
            mask,
            input: provenance.input.to_string_lossy().into_owned(),
            frame: match provenance.origin {
                Origin::Frame(index) => Some(*index),
                Origin::File(_) => None,
            },
            file: match provenance.origin {
                Origin::File(path) => file_name(path),
                Origin::Frame(_) => None,
            },
            model: self.model.clone(),
            scores: provenance.scores,
            rank: provenance.rank,
            decision: provenance.decision,
            carried_from: provenance.carried_from,
            saved_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        // The manifest on disk gains the entry only once both halves of the pair are whole, and
        // the one in memory only once the manifest is written: a failed save leaves neither
        // half behind and nothing of it in the next manifest.
        let manifest = Manifest {
            format: self.manifest.format,
            entries: [
                self.manifest.entries.as_slice(),
                std::slice::from_ref(&entry),
            ]
            .concat(),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Config(format!("writing the manifest: {e}")))?;
        let (image_path, mask_path) = (self.root.join(&entry.image), self.root.join(&entry.mask));
        let written = write_synced(&image_path, &image_png)
            .and_then(|()| write_synced(&mask_path, &mask_png))
            .and_then(|()| write_synced(&self.root.join(MANIFEST), &json));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&image_path);
            let _ = std::fs::remove_file(&mask_path);
            return Err(error);
        }
        self.manifest = manifest;
        self.input_keys.push(same_file_key(provenance.input));
        Ok(entry)
    }

    /// `stem`, or `stem-2`, `stem-3`… : the first name no pair of either split has.
    fn free_name(&self, stem: &str) -> String {
        let taken = |name: &str| {
            self.manifest.entries.iter().any(|e| e.name == name)
                || [Split::Train, Split::Test].iter().any(|split| {
                    let folder = split.folder(&self.root);
                    ["images", "masks"]
                        .iter()
                        .any(|kind| folder.join(kind).join(format!("{name}.png")).exists())
                })
        };
        (1..)
            .map(|n| match n {
                1 => stem.to_string(),
                n => format!("{stem}-{n}"),
            })
            .find(|name| !taken(name))
            .expect("some suffix is free")
    }
}

/// The lock file in a dataset folder, holding the labelling process's id.
const LOCK: &str = ".segstream-label.lock";

/// Takes the dataset folder `root` for this process: one session at a time writes a folder, as
/// each rewrites the manifest from what it holds. The lock is the kernel's (`flock`), so it
/// goes with the process however that ends.
fn lock(root: &Path) -> Result<std::fs::File> {
    use std::io::{Read as _, Seek as _, Write as _};
    use std::os::fd::AsRawFd as _;
    let path = root.join(LOCK);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // SAFETY: flock on a descriptor this function owns; it only sets the lock.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => "another process".to_string(),
            pid => format!("process {pid}"),
        };
        return Err(Error::Dataset {
            path: root.to_path_buf(),
            reason: format!(
                "another `segstream label` ({holder}) is saving into this folder; finish that \
                 one first, or label into another folder"
            ),
        });
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()));
    written.map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

/// Fails when nothing can be written in `dir` (a read-only folder or file system), found
/// before the page is served rather than at the first save of a drawn correction.
fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".segstream-write-test.{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::Dataset {
            path: dir.to_path_buf(),
            reason: format!("cannot write in this folder ({e}); label into a writable folder"),
        }),
    }
}

/// What identifies an input across runs: its canonical path when it exists.
fn same_file_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// `image` encoded as PNG, in memory: for a file written whole, or for the page.
pub(super) fn encode_png(image: &image::DynamicImage) -> Result<Vec<u8>> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| Error::Config(format!("encoding a PNG: {e}")))?;
    Ok(bytes.into_inner())
}

/// The identity of the model file at `path` with its card's `classes` and `architecture`.
///
/// # Errors
/// When the file cannot be read.
pub fn model_identity(
    path: &Path,
    classes: Vec<String>,
    architecture: String,
) -> Result<ModelIdentity> {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let digest = sha2::Sha256::digest(&bytes);
    Ok(ModelIdentity {
        file: file_name(path).unwrap_or_default(),
        sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        classes,
        architecture,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> ModelIdentity {
        ModelIdentity {
            file: "m.onnx".into(),
            sha256: "00".into(),
            classes: vec!["person".into()],
            architecture: "unet".into(),
        }
    }

    fn provenance<'a>(input: &'a Path, origin: &'a Origin, split: Split) -> Provenance<'a> {
        Provenance {
            input,
            origin,
            scores: Scores {
                uncertainty: 0.5,
                flip: 0.1,
                flicker: 0.0,
            },
            rank: 1,
            decision: Decision::Edited,
            carried_from: None,
            split,
        }
    }

    #[test]
    fn saves_never_overwrite_and_the_manifest_continues() {
        let dir = tempfile::tempdir().unwrap();
        let input = Path::new("clip.mp4");
        let origin = Origin::Frame(7);
        let rgba = vec![9u8; 2 * 2 * 4];
        let mut store = Store::open(dir.path(), identity()).unwrap();
        let first = store
            .save(
                &rgba,
                [2, 2],
                &[0, 1, 1, 0],
                provenance(input, &origin, Split::Train),
            )
            .unwrap();
        assert_eq!(first.image, "images/clip-f000007.png");
        let mask = image::open(dir.path().join(&first.mask))
            .unwrap()
            .to_luma8();
        assert_eq!(mask.into_raw(), [0, 255, 255, 0]);
        assert!(store.has(input, &origin));
        drop(store);

        let mut again = Store::open(dir.path(), identity()).unwrap();
        assert_eq!(again.entries().len(), 1);
        let second = again
            .save(
                &rgba,
                [2, 2],
                &[1; 4],
                provenance(input, &origin, Split::Test),
            )
            .unwrap();
        assert_eq!(second.image, "test/images/clip-f000007-2.png");
        let kept = image::open(dir.path().join(&first.mask))
            .unwrap()
            .to_luma8();
        assert_eq!(kept.into_raw(), [0, 255, 255, 0]);
        drop(again);
        assert_eq!(
            Store::open(dir.path(), identity()).unwrap().entries().len(),
            2
        );
    }

    #[test]
    fn a_second_store_on_one_folder_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path(), identity()).unwrap();
        let error = Store::open(dir.path(), identity())
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains(&format!("process {}", std::process::id())),
            "{error}"
        );
        drop(first);
        Store::open(dir.path(), identity()).unwrap();
    }

    #[test]
    fn an_unreadable_manifest_is_an_error_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), "{ not json").unwrap();
        let error = Store::open(dir.path(), identity())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("not valid JSON"), "{error}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap(),
            "{ not json"
        );
    }
}
