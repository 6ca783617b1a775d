//! Finding image/mask pairs on disk in the layouts people actually have:
//!
//! - generic: `images/NAME.ext` + `masks/NAME.ext` (matched by file stem);
//! - Carvana: `train/ID_NN.jpg` + `train_masks/ID_NN_mask.gif`;
//! - CamVid: `train/` + `trainannot/` and `val/` + `valannot/` (same file names).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use regex::Regex;

use super::pair::{Pair, stem};
use super::split::{CAMVID_GROUP, CARVANA_GROUP, grouped_split, hold_out_group};
use crate::paths::shown;
use crate::{Error, Result};

/// Extensions read as images or masks.
const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "gif"];

/// How a dataset folder is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `images/` + `masks/`, matched by stem.
    Generic,
    /// `train/` + `train_masks/` with a `_mask` suffix.
    Carvana,
    /// `train/` + `trainannot/`, `val/` + `valannot/`.
    CamVid,
}

impl Layout {
    /// The regex naming an image's group in this layout (a CamVid sequence, a Carvana car), or
    /// `None` where each image stands alone.
    pub fn groups(self) -> Option<&'static str> {
        match self {
            Layout::CamVid => Some(CAMVID_GROUP),
            Layout::Carvana => Some(CARVANA_GROUP),
            Layout::Generic => None,
        }
    }
}

impl FromStr for Layout {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "generic" => Ok(Layout::Generic),
            "carvana" => Ok(Layout::Carvana),
            "camvid" => Ok(Layout::CamVid),
            _ => Err(Error::Config(format!(
                "unknown layout '{text}': use generic, carvana or camvid"
            ))),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Generic => "generic",
            Layout::Carvana => "carvana",
            Layout::CamVid => "camvid",
        })
    }
}

impl Layout {
    /// The layout whose folders exist under `root`.
    ///
    /// # Errors
    /// When none matches.
    pub fn detect(root: &Path) -> Result<Self> {
        let has = |name: &str| root.join(name).is_dir();
        if has("images") && has("masks") {
            Ok(Layout::Generic)
        } else if has("train") && has("train_masks") {
            Ok(Layout::Carvana)
        } else if has("train") && has("trainannot") {
            Ok(Layout::CamVid)
        } else {
            Err(dataset_error(
                root,
                "no known layout: expected images/ + masks/ (generic), train/ + train_masks/ \
                 (Carvana) or train/ + trainannot/ (CamVid)",
            ))
        }
    }
}

/// The pairs of a dataset folder.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder.
    pub root: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// Training pairs (all pairs when the layout has no validation folder).
    pub train: Vec<Pair>,
    /// Pairs of the layout's own validation folder, if it has one.
    pub valid: Option<Vec<Pair>>,
}

impl Dataset {
    /// Reads the pairs under `root`, detecting the layout unless one is given.
    ///
    /// # Errors
    /// A missing folder, an image without a mask, or a folder with no images.
    pub fn open(root: &Path, layout: Option<Layout>) -> Result<Self> {
        if !root.is_dir() {
            return Err(dataset_error(root, "not a folder"));
        }
        let layout = match layout {
            Some(layout) => layout,
            None => Layout::detect(root)?,
        };
        let (train, valid) = match layout {
            Layout::Generic => (pairs(root, "images", "masks", "")?, None),
            Layout::Carvana => (pairs(root, "train", "train_masks", "_mask")?, None),
            Layout::CamVid => (
                pairs(root, "train", "trainannot", "")?,
                root.join("val")
                    .is_dir()
                    .then(|| pairs(root, "val", "valannot", ""))
                    .transpose()?,
            ),
        };
        Ok(Dataset {
            root: root.to_path_buf(),
            layout,
            train,
            valid,
        })
    }

    /// (train, valid): the layout's own validation folder, or else fold `fold` of a grouped
    /// split of `valid_frac` of the images (groups from `group_by`, Carvana's car id by
    /// default).
    ///
    /// # Errors
    /// [`Error::Config`] for a fold other than 0 with the layout's own validation folder, or a
    /// fold past the last one.
    pub fn train_valid(
        &self,
        valid_frac: f64,
        group_by: Option<&Regex>,
        seed: u64,
        fold: usize,
    ) -> Result<(Vec<Pair>, Vec<Pair>)> {
        if let Some(valid) = &self.valid {
            if fold > 0 {
                return Err(Error::Config(format!(
                    "--fold {fold}: {} has its own validation folder, so it has no folds",
                    shown(&self.root)
                )));
            }
            return Ok((self.train.clone(), valid.clone()));
        }
        let carvana = (self.layout == Layout::Carvana)
            .then(|| Regex::new(CARVANA_GROUP).expect("a valid built-in regex"));
        let (train, valid) = grouped_split(
            self.train.clone(),
            valid_frac,
            group_by.or(carvana.as_ref()),
            seed,
            fold,
        );
        if valid.is_empty() && fold > 0 {
            return Err(Error::Config(format!(
                "--fold {fold} holds out nothing: at --valid-frac {valid_frac}, the folds of \
                 these {} images end before it",
                train.len()
            )));
        }
        Ok((train, valid))
    }

    /// (train, valid) with every image of group `held` (a CamVid sequence, a Carvana car, a
    /// group of `group_by`) held out for validation and every other image of the folder, its
    /// own validation folder included, for training: a model chosen and scored on a group it
    /// never saw anything of.
    ///
    /// # Errors
    /// [`Error::Config`] for a layout without groups and no `group_by`, or a group the folder
    /// does not have (naming those it has).
    pub fn hold_out(&self, group_by: Option<&Regex>, held: &str) -> Result<(Vec<Pair>, Vec<Pair>)> {
        let built_in = self
            .layout
            .groups()
            .map(|pattern| Regex::new(pattern).expect("a valid built-in regex"));
        let Some(group_by) = group_by.or(built_in.as_ref()) else {
            return Err(Error::Config(format!(
                "--hold-out {held}: {} has no groups of its own: say with --group-by REGEX \
                 what names an image's group",
                shown(&self.root)
            )));
        };
        let everything = self
            .train
            .iter()
            .chain(self.valid.iter().flatten())
            .cloned();
        let (train, valid, groups) = hold_out_group(everything.collect(), group_by, held);
        if valid.is_empty() || train.is_empty() {
            let listed: Vec<String> = groups.iter().map(|(g, n)| format!("{g} ({n})")).collect();
            return Err(Error::Config(format!(
                "--hold-out {held}: {} must keep images on both sides; its groups (images): {}",
                shown(&self.root),
                listed.join(", ")
            )));
        }
        Ok((train, valid))
    }
}

/// Pairs of `root/images_dir` with `root/masks_dir/<stem><suffix>.<ext>`, sorted by name.
fn pairs(root: &Path, images_dir: &str, masks_dir: &str, suffix: &str) -> Result<Vec<Pair>> {
    let images = image_files(&root.join(images_dir))?;
    let mask_dir = root.join(masks_dir);
    let masks: HashMap<String, PathBuf> = image_files(&mask_dir)?
        .into_iter()
        .map(|path| {
            let name = stem(&path);
            let key = name.strip_suffix(suffix).unwrap_or(&name).to_string();
            (key, path)
        })
        .collect();
    if images.is_empty() {
        return Err(dataset_error(
            &root.join(images_dir),
            format!("no images ({}) in this folder", EXTENSIONS.join(", ")),
        ));
    }
    images
        .into_iter()
        .map(|image| {
            let name = stem(&image);
            match masks.get(&name) {
                Some(mask) => Ok(Pair {
                    image,
                    mask: mask.clone(),
                }),
                None => Err(dataset_error(
                    &image,
                    format!(
                        "no mask for this image: expected {}/{name}{suffix}.<{}>",
                        shown(&mask_dir),
                        EXTENSIONS.join("|")
                    ),
                )),
            }
        })
        .collect()
}

/// Image files directly in `dir`, sorted.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let known = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if known && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

pub(crate) fn dataset_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Dataset {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
