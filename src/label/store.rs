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
use crate::paths::write_through_temp;
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
}

impl Store {
    /// Opens (or starts) the dataset at `root` for masks of `model`, continuing its manifest.
    ///
    /// # Errors
    /// When the folder cannot be made or its manifest is unreadable (it is left as it is).
    pub fn open(root: &Path, model: ModelIdentity) -> Result<Self> {
        let binary = model.classes.len() == 1;
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
        let image_path = self.root.join(&image);
        write_png(
            &image_path,
            image::RgbImage::from_raw(width, height, rgb).map(image::DynamicImage::ImageRgb8),
        )?;
        write_png(
            &self.root.join(&mask),
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
        self.input_keys.push(same_file_key(provenance.input));
        self.manifest.entries.push(entry.clone());
        let json = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| Error::Config(format!("writing the manifest: {e}")))?;
        let manifest = self.root.join(MANIFEST);
        write_through_temp(&manifest, |temp| {
            std::fs::write(temp, &json).map_err(|e| Error::io(&manifest, e))
        })?;
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

/// What identifies an input across runs: its canonical path when it exists.
fn same_file_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Saves `image` (`None`: its buffer did not match its size) as PNG at `path`.
fn write_png(path: &Path, image: Option<image::DynamicImage>) -> Result<()> {
    let image =
        image.ok_or_else(|| Error::Config("a picture's size does not match its pixels".into()))?;
    write_through_temp(path, |temp| {
        image
            .save_with_format(temp, image::ImageFormat::Png)
            .map_err(|e| Error::io(path, std::io::Error::other(e)))
    })
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
        assert_eq!(
            Store::open(dir.path(), identity()).unwrap().entries().len(),
            2
        );
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
