//! `train --init-from`: the ONNX model a run starts from. Its graph is read by the interpreter
//! and trained as it is; when the run has other classes than the model, its head (the layer
//! producing the output) is replaced by a fresh one, or by a U-Net decoder (`--decoder unet`);
//! its card gives the normalisation.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::prelude::*;

use crate::infer::{ModelCard, check_input_size};
use crate::onnx::decoder::with_unet_decoder;
use crate::onnx::interpret::{GraphModel, fixed_input_size, with_new_head};
use crate::onnx::proto::ModelProto;
use crate::onnx::read_model;
use crate::paths::shown;
use crate::{Error, Result};

/// What replaces a pretrained body's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Decoder {
    /// A fresh head like the old one, only when the classes differ (the body's output size).
    #[default]
    Head,
    /// A U-Net decoder back to the input's size with skip connections from the body
    /// ([`with_unet_decoder`]), always.
    UNet,
}

impl FromStr for Decoder {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "head" => Ok(Self::Head),
            "unet" => Ok(Self::UNet),
            other => Err(format!("'{other}': expected head or unet")),
        }
    }
}

/// A pretrained model ready to be trained further.
#[derive(Debug, Clone)]
pub struct Pretrained {
    /// The file it came from.
    pub path: PathBuf,
    /// Its graph, with the new head when there is one.
    proto: ModelProto,
    /// Its card as read from the file.
    pub card: ModelCard,
    /// The output channels it had, when a new head replaced them.
    pub replaced_head: Option<usize>,
}

impl Pretrained {
    /// Reads `path` for a run with `classes` output channels; a new head (seeded by `seed`)
    /// replaces the old one when the counts differ, a U-Net decoder whenever `decoder` asks.
    ///
    /// # Errors
    /// [`Error::Model`] when the file is not an ONNX model in segstream's contract (foreign
    /// models go through `segstream import` first), or has no head to replace.
    pub fn read(path: &Path, classes: usize, seed: u64, decoder: Decoder) -> Result<Self> {
        let proto = read_model(path)?;
        let metadata = |key: &str| {
            proto
                .metadata_props
                .iter()
                .find(|p| p.key.as_deref() == Some(key))
                .and_then(|p| p.value.clone())
        };
        let (card, missing) =
            ModelCard::from_metadata(ModelCard::with_defaults(1, [0, 0]), metadata)
                .map_err(|reason| Error::model(path, reason))?;
        if !missing.is_empty() {
            return Err(Error::model(
                path,
                "it has no segstream card: bring it in with `segstream import` first",
            ));
        }
        let replaced_head = (card.num_classes() != classes || decoder == Decoder::UNet)
            .then_some(card.num_classes());
        let size = fixed_input_size(&proto).unwrap_or(card.input_size);
        let proto = match (replaced_head, decoder) {
            (Some(_), Decoder::Head) => with_new_head(&proto, classes, seed)
                .map_err(|reason| Error::model(path, format!("a new head: {reason}")))?,
            (Some(_), Decoder::UNet) => with_unet_decoder(&proto, classes, seed, size)
                .map_err(|reason| Error::model(path, format!("a U-Net decoder: {reason}")))?,
            (None, _) => proto,
        };
        check_input_size(1, size, classes).map_err(|reason| Error::model(path, reason))?;
        // The graph must run before a run is started on it.
        GraphModel::from_onnx(&proto, &Device::flex()).map_err(|e| Error::model(path, e))?;
        Ok(Pretrained {
            path: path.to_path_buf(),
            proto,
            card,
            replaced_head,
        })
    }

    /// The graph as a trainable module on `device`.
    ///
    /// # Errors
    /// [`Error::Model`] when the interpreter cannot run it (checked by [`Pretrained::read`]).
    pub fn model(&self, device: &Device) -> Result<GraphModel> {
        GraphModel::from_onnx(&self.proto, device).map_err(|e| Error::model(&self.path, e))
    }

    /// Checks the training sizes against the graph's: a graph whose input fixes its height and
    /// width (fixed-size pooling, literal reshapes) trains at that size only; any other needs
    /// sides that are multiples of its largest down-sampling.
    ///
    /// # Errors
    /// [`Error::Config`] naming the size the graph needs.
    pub fn check_sizes(&self, sizes: &[[usize; 2]]) -> Result<()> {
        if let Some(fixed) = fixed_input_size(&self.proto) {
            return match sizes.iter().any(|s| *s != fixed) {
                true => Err(Error::Config(format!(
                    "{} takes {}x{} inputs only (its graph fixes the size): train with --size \
                     {}x{}",
                    shown(&self.path),
                    fixed[0],
                    fixed[1],
                    fixed[0],
                    fixed[1]
                ))),
                false => Ok(()),
            };
        }
        let stride = self
            .model(&Device::flex())?
            .trace_sizes(self.card.input_size)
            .stride;
        match sizes
            .iter()
            .find(|[h, w]| h % stride != 0 || w % stride != 0)
        {
            Some([h, w]) => Err(Error::Config(format!(
                "--size {h}x{w}: {} needs sides that are multiples of {stride}",
                shown(&self.path)
            ))),
            None => Ok(()),
        }
    }
}
