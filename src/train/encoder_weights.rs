//! Loading ImageNet weights saved from torchvision's `resnet34` (a `.pth` state dict or
//! `.safetensors`) into the ResNet34 U-Net's encoder. torchvision's names map to ours by a fixed
//! rule; batch-norm `weight`/`bias` become burn's `gamma`/`beta` (burn-store's PyTorch adapter).
//! The classifier (`fc.*`) and `num_batches_tracked` are not used.

use std::path::Path;

use burn::store::{
    ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use super::model::ResNet34Encoder;
use crate::{Error, Result};

/// torchvision name pattern → our name (regex replacement), applied to every tensor name.
const RENAMES: [(&str, &str); 6] = [
    (r"^conv1\.(.*)$", "stem.conv.$1"),
    (r"^bn1\.(.*)$", "stem.norm.$1"),
    (r"^(layer\d\.\d+)\.conv(\d)\.(.*)$", "$1.conv$2.conv.$3"),
    (r"^(layer\d\.\d+)\.bn(\d)\.(.*)$", "$1.conv$2.norm.$3"),
    (
        r"^(layer\d\.\d+)\.downsample\.0\.(.*)$",
        "$1.downsample.conv.$2",
    ),
    (
        r"^(layer\d\.\d+)\.downsample\.1\.(.*)$",
        "$1.downsample.norm.$2",
    ),
];

/// Loads `path` into `encoder`; returns the number of tensors loaded.
///
/// # Errors
/// An unreadable file, an unknown extension, or a file that lacks encoder tensors or has them
/// in other shapes.
pub fn load_resnet34_weights(encoder: &mut ResNet34Encoder, path: &Path) -> Result<usize> {
    let fail = |reason: String| Error::model(path, reason);
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let result: ApplyResult = match extension.as_str() {
        "safetensors" => {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(true);
            for (from, to) in RENAMES {
                store = store.with_key_remapping(from, to);
            }
            encoder
                .load_from(&mut store)
                .map_err(|e| fail(e.to_string()))?
        }
        "pth" | "pt" => {
            let mut store = PytorchStore::from_file(path).allow_partial(true);
            for (from, to) in RENAMES {
                store = store.with_key_remapping(from, to);
            }
            encoder
                .load_from(&mut store)
                .map_err(|e| fail(e.to_string()))?
        }
        _ => {
            return Err(fail(
                "encoder weights must be a .pth/.pt state dict or .safetensors".into(),
            ));
        }
    };
    if !result.errors.is_empty() {
        return Err(fail(format!(
            "tensors that do not fit the ResNet34 encoder: {:?}",
            result.errors.iter().take(3).collect::<Vec<_>>()
        )));
    }
    if !result.missing.is_empty() {
        let missing: Vec<&str> = result
            .missing
            .iter()
            .take(5)
            .map(|(p, _)| p.as_str())
            .collect();
        return Err(fail(format!(
            "{} encoder tensors missing (torchvision resnet34 names expected), e.g. {}",
            result.missing.len(),
            missing.join(", ")
        )));
    }
    Ok(result.applied.len())
}
