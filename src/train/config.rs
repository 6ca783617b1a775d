//! A training run's settings (saved as the run folder's `config.json`, read back by `--resume`)
//! and the data they select: classes, pairs and the validation split.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::augment::Augmentation;
use super::loss::LossKind;
use super::model::Architecture;
use crate::dataset::{ClassSet, DataSource, Dataset, Layout, Pair};
use crate::paths::shown;
use crate::{Error, Result};

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Dataset folders, each with its class mapping and sampling weight.
    #[serde(deserialize_with = "one_or_many")]
    pub data: Vec<DataSource>,
    /// Their layout (`None` = detected for each).
    pub layout: Option<Layout>,
    /// `--classes` as given (`None` = the first folder's: CamVid's table for the CamVid
    /// layout, else binary).
    pub classes: Option<String>,
    /// Mask value to ignore (overrides the class table's).
    pub ignore_index: Option<u8>,
    /// Network.
    pub architecture: Architecture,
    /// Training sizes (height, width), one per stage.
    pub sizes: Vec<[usize; 2]>,
    /// Epochs per stage.
    pub epochs: Vec<usize>,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate of each stage's one-cycle schedule.
    pub lr: f64,
    /// Decoupled weight decay (AdamW); 0 = plain Adam.
    pub weight_decay: f64,
    /// Loss.
    pub loss: LossKind,
    /// Share of images held out when the layout has no validation folder.
    pub valid_frac: f64,
    /// Regex whose first capture names an image's group (default: Carvana's car id).
    pub group_by: Option<String>,
    /// Seed of weights, split, shuffles and augmentation.
    pub seed: u64,
    /// Which share of the grouped split is held out (k-fold cross-validation).
    #[serde(default)]
    pub fold: usize,
    /// Validate on this group (a CamVid sequence, a Carvana car, a `group_by` group) and train
    /// on every other image of the folders, their validation folders included.
    #[serde(default)]
    pub hold_out: Option<String>,
    /// Train on the validation images too (the final fit); they are still scored, as images
    /// the model saw.
    #[serde(default)]
    pub train_on_all: bool,
    /// Export the last epoch's weights instead of the best by the validation score.
    #[serde(default)]
    pub keep_last: bool,
    /// Data-loading threads.
    pub workers: usize,
    /// Augmentation (`None` = off).
    pub augment: Option<Augmentation>,
    /// Use at most this many training pairs (and a quarter as many validation pairs).
    pub limit: Option<usize>,
    /// Resized-image cache folder (`None` = no cache).
    pub cache: Option<PathBuf>,
    /// ResNet34 U-Net: torchvision ResNet34 weights for the encoder.
    pub encoder_weights: Option<PathBuf>,
    /// Train only the new parts in the first stage: the ResNet34 U-Net's decoder, or the head
    /// of a model started from `init_from`.
    pub freeze_encoder: bool,
    /// A pretrained ResNet34 encoder or `init_from` body learns at this × `lr` once unfrozen.
    pub encoder_lr_ratio: f64,
    /// Start from this ONNX model (fine-tuning): its graph is trained as it is, with a new
    /// head when the classes differ.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// With `init_from`: what replaces its head.
    #[serde(default)]
    pub decoder: crate::train::pretrained::Decoder,
    /// Weigh each class's pixels by SegNet's median-frequency weights in the pixel loss.
    #[serde(default)]
    pub median_frequency: bool,
}

impl TrainConfig {
    /// Whether the run exports its last epoch: asked for, or implied by `train_on_all` (whose
    /// validation images trained too, so they cannot choose an epoch).
    pub fn keeps_last(&self) -> bool {
        self.keep_last || self.train_on_all
    }

    /// Which epoch's weights the run exports: the last, or the best by the validation score.
    pub fn kept(&self) -> &'static str {
        if self.keeps_last() { "last" } else { "best" }
    }

    /// Checks the settings against each other.
    ///
    /// # Errors
    /// [`Error::Config`] naming the option at fault.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::Config(m));
        if self.sizes.is_empty() || self.sizes.len() != self.epochs.len() {
            return fail(format!(
                "--size has {} value(s) but --epochs has {}: give one epoch count per size",
                self.sizes.len(),
                self.epochs.len()
            ));
        }
        let multiple = if self.init_from.is_some() {
            1
        } else {
            self.architecture.size_multiple()
        };
        if let Some([h, w]) = self
            .sizes
            .iter()
            .find(|[h, w]| h % multiple != 0 || w % multiple != 0)
        {
            return fail(format!(
                "--size {h}x{w}: {} needs multiples of {multiple}",
                self.architecture
            ));
        }
        if self.batch_size == 0 || self.epochs.contains(&0) {
            return fail("--batch and every --epochs value must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return fail(format!("--lr {} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.valid_frac) {
            return fail(format!("--valid-frac {} must be in 0..1", self.valid_frac));
        }
        let resnet = self.architecture == Architecture::ResNet34;
        if self.init_from.is_some() && (resnet || self.encoder_weights.is_some()) {
            return fail(
                "--init-from brings its own network: leave out --arch and --encoder-weights".into(),
            );
        }
        if self.init_from.is_none() && self.decoder != crate::train::pretrained::Decoder::Head {
            return fail("--decoder needs --init-from (a pretrained body to graft it onto)".into());
        }
        if !resnet && self.init_from.is_none() && self.freeze_encoder {
            return fail(
                "--freeze-encoder needs --arch resnet34 (--freeze-body needs --init-from)".into(),
            );
        }
        if !resnet && self.encoder_weights.is_some() {
            return fail("--encoder-weights needs --arch resnet34".into());
        }
        self.group_regex().map(|_| ())
    }

    fn group_regex(&self) -> Result<Option<Regex>> {
        self.group_by
            .as_deref()
            .map(|p| Regex::new(p).map_err(|e| Error::Config(format!("--group-by: {e}"))))
            .transpose()
    }

    /// The model's classes: `--classes`, else those of the first folder's layout.
    ///
    /// # Errors
    /// A bad `--classes`.
    pub fn model_classes(&self, first_layout: Layout) -> Result<ClassSet> {
        let mut classes = match &self.classes {
            Some(spec) => ClassSet::parse(spec)?,
            None => ClassSet::of_layout(first_layout),
        };
        if self.ignore_index.is_some() {
            classes.ignore = self.ignore_index;
        }
        Ok(classes)
    }

    /// Opens the datasets and resolves classes and each one's train/validation split.
    ///
    /// # Errors
    /// Dataset errors (see [`Dataset::open`]), bad `--classes` or mappings, or too few images
    /// to split — each naming the folder.
    pub fn prepare(&self) -> Result<PreparedData> {
        let datasets = self
            .data
            .iter()
            .map(|source| Dataset::open(&source.path, self.layout))
            .collect::<Result<Vec<_>>>()?;
        let first = datasets
            .first()
            .ok_or_else(|| Error::Config("no --data".into()))?;
        let classes = self.model_classes(first.layout)?;
        let group = self.group_regex()?;
        // Among several folders, a held-out group is taken from those that have groups (a
        // CamVid sequence beside a folder of portraits); the others keep their own split.
        let holds_out = |layout: Layout| {
            self.hold_out
                .as_ref()
                .filter(|_| self.data.len() == 1 || group.is_some() || layout.groups().is_some())
        };
        if let Some(held) = &self.hold_out
            && !datasets
                .iter()
                .any(|dataset| holds_out(dataset.layout).is_some())
        {
            return Err(Error::Config(format!(
                "--hold-out {held}: none of the --data folders has groups of its own: say \
                 with --group-by REGEX what names an image's group"
            )));
        }
        let sources = self
            .data
            .iter()
            .zip(datasets)
            .map(|(source, dataset)| {
                let (mut train, mut valid) = match holds_out(dataset.layout) {
                    Some(held) => dataset.hold_out(group.as_ref(), held)?,
                    None => dataset.train_valid(
                        self.valid_frac,
                        group.as_ref(),
                        self.seed,
                        self.fold,
                    )?,
                };
                if self.train_on_all {
                    train.extend(valid.iter().cloned());
                    train.sort_by(|a, b| a.image.cmp(&b.image));
                }
                if let Some(limit) = self.limit {
                    train.truncate(limit);
                    valid.truncate(limit.div_ceil(4));
                }
                if train.is_empty() || valid.is_empty() {
                    return Err(Error::Dataset {
                        path: source.path.clone(),
                        reason: format!(
                            "{} training and {} validation images: both need at least one \
                             (raise --valid-frac or add images)",
                            train.len(),
                            valid.len()
                        ),
                    });
                }
                Ok(SourceData {
                    reading: source.reading(dataset.layout, &classes)?,
                    source: source.clone(),
                    layout: dataset.layout,
                    train,
                    valid,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PreparedData { classes, sources })
    }
}

/// `data` as one folder (configs written before several were allowed) or a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<DataSource>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(DataSource),
        Many(Vec<DataSource>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(source) => vec![source],
        OneOrMany::Many(sources) => sources,
    })
}

/// Which part of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training pairs.
    Train,
    /// The validation pairs.
    Valid,
}

/// The data a configuration selects.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// The model's classes and ignored value.
    pub classes: ClassSet,
    /// Each folder's pairs, in `--data` order.
    pub sources: Vec<SourceData>,
}

impl PreparedData {
    /// How many pairs `split` holds over all folders.
    pub fn count(&self, split: Split) -> usize {
        self.sources.iter().map(|s| s.pairs(split).len()).sum()
    }
}

/// One folder's pairs and how its masks are read.
#[derive(Debug, Clone)]
pub struct SourceData {
    /// The `--data` value.
    pub source: DataSource,
    /// Its layout.
    pub layout: Layout,
    /// Its masks read as the model's labels.
    pub reading: ClassSet,
    /// Training pairs.
    pub train: Vec<Pair>,
    /// Validation pairs.
    pub valid: Vec<Pair>,
}

impl SourceData {
    /// The pairs of `split`.
    pub fn pairs(&self, split: Split) -> &[Pair] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
        }
    }
}

/// Reads a run folder's `config.json`.
///
/// # Errors
/// A missing or malformed file.
pub fn read_config(run: &Path) -> Result<TrainConfig> {
    let path = run.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::Config(format!("{}: not a training config: {e}", shown(&path))))
}

/// Writes `config` as `run/config.json`.
///
/// # Errors
/// A file that cannot be written.
pub fn write_config(run: &Path, config: &TrainConfig) -> Result<()> {
    let path = run.join("config.json");
    let json = serde_json::to_vec_pretty(config).expect("the config serialises");
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))
}
