//! The model card: what a segmentation model needs said about itself to be used correctly
//! (classes, colours, normalisation, input size) and how it was made. It travels inside the ONNX
//! file as `metadata_props` under `segstream.*` keys, each value JSON.

use serde::{Deserialize, Serialize};

/// Prefix of every metadata key segstream writes.
pub const METADATA_PREFIX: &str = "segstream.";

/// ImageNet statistics, the normalisation the seed lesson's models (and torchvision's) use.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Self-description of a segmentation model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// One name per output channel; a binary model has one class, the foreground.
    pub classes: Vec<String>,
    /// Overlay colour (RGB) per class.
    pub colors: Vec<[u8; 3]>,
    /// Per-channel mean of RGB in 0..1, subtracted before dividing by `std`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation of RGB in 0..1.
    pub std: [f32; 3],
    /// Height and width the model was trained at; frames are resized to this.
    pub input_size: [usize; 2],
    /// Architecture description, e.g. `unet(depth=4,base=16)`.
    pub architecture: String,
    /// How the model was made: command, data, epochs, metrics (free-form JSON).
    pub training: serde_json::Value,
}

impl ModelCard {
    /// A card with sensible defaults for a model with `num_classes` output channels.
    pub fn with_defaults(num_classes: usize, input_size: [usize; 2]) -> Self {
        let classes = if num_classes == 1 {
            vec!["foreground".to_string()]
        } else {
            (0..num_classes).map(|i| format!("class{i}")).collect()
        };
        ModelCard {
            colors: default_colors(classes.len()),
            classes,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            input_size,
            architecture: "unknown".to_string(),
            training: serde_json::Value::Null,
        }
    }

    /// Number of output channels (1 = binary).
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The card as ONNX `metadata_props` key/value pairs.
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        let entries = [
            ("classes", serde_json::json!(self.classes)),
            ("colors", serde_json::json!(self.colors)),
            ("mean", serde_json::json!(self.mean)),
            ("std", serde_json::json!(self.std)),
            ("input_size", serde_json::json!(self.input_size)),
            ("architecture", serde_json::json!(self.architecture)),
            ("training", self.training.clone()),
        ];
        entries
            .into_iter()
            .map(|(key, value)| (format!("{METADATA_PREFIX}{key}"), value.to_string()))
            .collect()
    }

    /// Reads a card back from metadata, `lookup` giving the value of a full key.
    ///
    /// Keys that are absent keep the value from `defaults`; their names are returned so the
    /// caller can warn. A key that is present but malformed is an error naming it.
    pub fn from_metadata(
        defaults: ModelCard,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(ModelCard, Vec<&'static str>), String> {
        let mut card = defaults;
        let mut missing = Vec::new();
        macro_rules! read {
            ($field:ident) => {
                read!($field, |text: &str| serde_json::from_str(text)
                    .map_err(|e| e.to_string()))
            };
            ($field:ident, $parse:expr) => {
                let key = stringify!($field);
                match lookup(&format!("{METADATA_PREFIX}{key}")) {
                    Some(text) => {
                        card.$field = $parse(&text).map_err(|e: String| {
                            format!("metadata {METADATA_PREFIX}{key} is malformed: {e}")
                        })?
                    }
                    None => missing.push(key),
                }
            };
        }
        read!(classes);
        read!(colors);
        read!(mean, rgb_values);
        read!(std, rgb_values);
        read!(input_size);
        read!(architecture);
        read!(training);
        if card.colors.len() != card.classes.len() {
            card.colors = default_colors(card.classes.len());
        }
        card.validate()?;
        Ok((card, missing))
    }

    /// Checks the values a model cannot run without: a class, finite mean, positive finite
    /// std, a non-empty input size. The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let field =
            |key: &str, problem: String| format!("metadata {METADATA_PREFIX}{key} {problem}");
        if self.classes.is_empty() {
            return Err(field("classes", "is empty".into()));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(field("mean", format!("{:?} is not finite", self.mean)));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(field(
                "std",
                format!("{:?} must be positive and finite", self.std),
            ));
        }
        if self.input_size.contains(&0) {
            return Err(field(
                "input_size",
                format!(
                    "{:?} is empty: height and width must be at least 1",
                    self.input_size
                ),
            ));
        }
        Ok(())
    }
}

/// Three numbers, one per channel (R, G, B), from a JSON array.
fn rgb_values(text: &str) -> Result<[f32; 3], String> {
    let values: Vec<f32> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    <[f32; 3]>::try_from(values.as_slice()).map_err(|_| {
        format!(
            "expected 3 values (R, G, B), found an array of length {}",
            values.len()
        )
    })
}

/// Distinct overlay colours: red for a single class, then a fixed qualitative palette.
pub fn default_colors(n: usize) -> Vec<[u8; 3]> {
    const PALETTE: [[u8; 3]; 12] = [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [170, 110, 40],
    ];
    (0..n).map(|i| PALETTE[i % PALETTE.len()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn metadata_round_trip_keeps_every_field() {
        let mut card = ModelCard::with_defaults(3, [128, 192]);
        card.architecture = "unet(depth=4,base=16)".into();
        card.training = serde_json::json!({"epochs": 3});
        let map: HashMap<String, String> = card.to_metadata().into_iter().collect();
        let (back, missing) =
            ModelCard::from_metadata(ModelCard::with_defaults(1, [1, 1]), |k| map.get(k).cloned())
                .unwrap();
        assert_eq!(back, card);
        assert!(missing.is_empty());
    }

    #[test]
    fn absent_keys_keep_defaults_and_are_reported() {
        let defaults = ModelCard::with_defaults(2, [64, 64]);
        let (card, missing) = ModelCard::from_metadata(defaults.clone(), |_| None).unwrap();
        assert_eq!(card, defaults);
        assert_eq!(missing.len(), 7);
    }

    #[test]
    fn values_a_model_cannot_run_with_are_refused_naming_the_field() {
        for (key, value) in [
            ("segstream.std", "[0.2, 0.0, 0.2]"),
            ("segstream.std", "[0.2, -1.0, 0.2]"),
            ("segstream.input_size", "[0, 0]"),
            ("segstream.classes", "[]"),
            ("segstream.mean", "[0.5, 0.5]"),
            ("segstream.std", "[0.5, 0.5, 0.5, 0.5]"),
        ] {
            let err = ModelCard::from_metadata(ModelCard::with_defaults(1, [8, 8]), |k| {
                (k == key).then(|| value.to_string())
            })
            .unwrap_err();
            assert!(err.contains(key), "{key} = {value}: {err}");
        }
    }

    #[test]
    fn malformed_key_is_an_error_naming_it() {
        let err = ModelCard::from_metadata(ModelCard::with_defaults(1, [8, 8]), |k| {
            (k == "segstream.mean").then(|| "[1, 2]".to_string())
        })
        .unwrap_err();
        assert!(err.contains("segstream.mean"), "{err}");
    }
}
