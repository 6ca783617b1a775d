//! One `--data` value: a dataset folder, which of its classes become the model's, and how often
//! its images are drawn — `PATH[:SOURCE=MODEL,...][@WEIGHT]`, e.g.
//! `../camvid:Pedestrian=person,Bicyclist=person@0.5`.
//!
//! A mapping reads the folder's masks in their own classes (CamVid's table for the CamVid
//! layout, object/background otherwise) and turns each into a model class, `background` or
//! `ignore`. Classes it does not name become background for a binary model and are ignored
//! for a multi-class one; ignored mask values stay ignored.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::classes::ClassSet;
use super::layout::Layout;
use crate::Error;
use crate::metrics::IGNORE;
use crate::paths::shown;

type Result<T, E = Error> = std::result::Result<T, E>;

/// A dataset folder in a training or evaluation run.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSource {
    /// The folder.
    pub path: PathBuf,
    /// `(source class, model class)` pairs, as given; empty = the masks hold model classes.
    pub mapping: Vec<(String, String)>,
    /// How often its images are drawn per epoch (1 = each once; 0.5 = a random half; 2 = each
    /// twice).
    pub weight: f64,
}

impl FromStr for DataSource {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |why: String| Error::Config(format!("--data {spec}: {why}"));
        let (rest, weight) = match spec.rsplit_once('@') {
            Some((rest, weight)) => match weight.parse::<f64>() {
                Ok(w) if w > 0.0 && w.is_finite() => (rest, w),
                _ => return Err(bad(format!("weight '{weight}' must be a positive number"))),
            },
            None => (spec, 1.0),
        };
        let (path, mapping) = match rest.rsplit_once(':') {
            Some((path, mapping)) if mapping.contains('=') => {
                let pairs = mapping
                    .split(',')
                    .map(|entry| match entry.split_once('=') {
                        Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                            Ok((from.trim().to_string(), to.trim().to_string()))
                        }
                        _ => Err(bad(format!("'{entry}' is not SOURCE=MODEL"))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                (path, pairs)
            }
            _ => (rest, Vec::new()),
        };
        if path.is_empty() {
            return Err(bad("no folder".into()));
        }
        Ok(DataSource {
            path: PathBuf::from(path),
            mapping,
            weight,
        })
    }
}

impl From<PathBuf> for DataSource {
    /// The folder as it is: masks in the model's classes, each image once per epoch.
    fn from(path: PathBuf) -> Self {
        DataSource {
            path,
            mapping: Vec::new(),
            weight: 1.0,
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", shown(&self.path))?;
        if !self.mapping.is_empty() {
            let pairs: Vec<String> = self
                .mapping
                .iter()
                .map(|(a, b)| format!("{a}={b}"))
                .collect();
            write!(f, ":{}", pairs.join(","))?;
        }
        if self.weight != 1.0 {
            write!(f, "@{}", self.weight)?;
        }
        Ok(())
    }
}

impl DataSource {
    /// How this source's masks are read as `model` labels: `model` itself without a mapping,
    /// else the layout's own classes followed by the mapping.
    ///
    /// # Errors
    /// A mapping naming a class the source or the model does not have, naming this source.
    pub fn reading(&self, layout: Layout, model: &ClassSet) -> Result<ClassSet> {
        let own = ClassSet::of_layout(layout);
        let bad = |why: String| Error::Config(format!("--data {self}: {why}"));
        if self.mapping.is_empty() {
            if model.is_binary() && !own.is_binary() {
                return Err(bad(format!(
                    "its masks hold {} classes ({}) and the model one ('{}'): say which of \
                     them are the model's object, e.g. --data {}:{}={}",
                    own.names.len(),
                    own.names.join(", "),
                    model.names[0],
                    shown(&self.path),
                    own.names.last().map_or("CLASS", String::as_str),
                    model.names[0]
                )));
            }
            return Ok(model.clone());
        }
        let unlisted = if model.is_binary() { 0 } else { IGNORE };
        let mut table = [unlisted; 256];
        table[usize::from(IGNORE)] = IGNORE;
        for (from, to) in &self.mapping {
            let source = own.label_named(from).ok_or_else(|| {
                bad(format!(
                    "the folder has no class '{from}' (its classes: {})",
                    own.label_names().join(", ")
                ))
            })?;
            let target = match to.to_ascii_lowercase().as_str() {
                "ignore" => IGNORE,
                _ => model.label_named(to).ok_or_else(|| {
                    bad(format!(
                        "the model has no class '{to}' (its classes: {}, or ignore)",
                        model.label_names().join(", ")
                    ))
                })?,
            };
            table[usize::from(source)] = target;
        }
        Ok(model.reading_through(own, table, self.to_string()))
    }
}

// Configs store `--data` as it was typed.
impl serde::Serialize for DataSource {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DataSource {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
