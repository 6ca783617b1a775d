//! Segmentation metrics from a confusion matrix: pixel accuracy, Dice, IoU per class and mean
//! IoU; the boundary's IoU ([`boundary`]) and objects found or invented ([`objects`]). Labels
//! are class indices; [`IGNORE`] marks pixels that count nowhere.
//!
//! Uses nothing of the crate.

mod boundary;
mod objects;

pub use boundary::{BoundaryCounts, band_width};
pub use objects::{FOUND_SHARE, HeightClass, MIN_PIXELS, ObjectCounts};

use serde::{Deserialize, Serialize};

/// Label value of a pixel excluded from loss and metrics.
pub const IGNORE: u8 = 255;

/// Counts of (true class, predicted class) over all pixels seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    classes: usize,
    /// Row = truth, column = prediction; one extra column for predictions outside the classes.
    counts: Vec<u64>,
}

impl Confusion {
    /// An empty matrix over `classes` labels (2 for a binary model: background and object).
    pub fn new(classes: usize) -> Self {
        Confusion {
            classes,
            counts: vec![0; classes * (classes + 1)],
        }
    }

    /// Adds one image: `truth` and `predicted` hold one label per pixel. Truth pixels equal to
    /// [`IGNORE`] are skipped; labels outside the matrix count as wrong predictions.
    pub fn add(&mut self, truth: &[u8], predicted: &[u8]) {
        for (&t, &p) in truth.iter().zip(predicted) {
            let t = usize::from(t);
            if t >= self.classes {
                continue;
            }
            let p = usize::from(p).min(self.classes);
            self.counts[t * (self.classes + 1) + p] += 1;
        }
    }

    /// Adds every count of `other` (same number of classes).
    pub fn merge(&mut self, other: &Confusion) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Pixels counted (ignored ones excluded).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * (self.classes + 1) + predicted]
    }

    /// Fraction of counted pixels whose prediction is right (1 when nothing was counted).
    pub fn pixel_accuracy(&self) -> f64 {
        let correct: u64 = (0..self.classes).map(|c| self.count(c, c)).sum();
        ratio(correct, self.total())
    }

    fn true_false_counts(&self, class: usize) -> (u64, u64, u64) {
        let tp = self.count(class, class);
        let truth: u64 = (0..=self.classes).map(|p| self.count(class, p)).sum();
        let predicted: u64 = (0..self.classes).map(|t| self.count(t, class)).sum();
        (tp, truth - tp, predicted - tp)
    }

    /// Intersection over union of `class`; `None` when the class is neither present nor predicted.
    pub fn iou(&self, class: usize) -> Option<f64> {
        let (tp, fn_, fp) = self.true_false_counts(class);
        let union = tp + fn_ + fp;
        (union > 0).then(|| tp as f64 / union as f64)
    }

    /// Dice (F1) of `class`; 1 when the class is neither present nor predicted.
    pub fn dice(&self, class: usize) -> f64 {
        let (tp, fn_, fp) = self.true_false_counts(class);
        ratio(2 * tp, 2 * tp + fn_ + fp)
    }

    /// IoU of every class (`None` where the class never occurs).
    pub fn per_class_iou(&self) -> Vec<Option<f64>> {
        (0..self.classes).map(|c| self.iou(c)).collect()
    }

    /// Mean IoU over the classes that occur in truth or prediction.
    pub fn mean_iou(&self) -> f64 {
        let present: Vec<f64> = self.per_class_iou().into_iter().flatten().collect();
        if present.is_empty() {
            1.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        }
    }

    /// The figures users quote, for a model with `model_classes` outputs (1 = binary).
    pub fn scores(&self, model_classes: usize) -> Scores {
        if model_classes == 1 {
            Scores {
                pixel_accuracy: self.pixel_accuracy(),
                dice: Some(self.dice(1)),
                iou: self.iou(1).or(Some(1.0)),
                mean_iou: None,
                per_class_iou: Vec::new(),
            }
        } else {
            Scores {
                pixel_accuracy: self.pixel_accuracy(),
                dice: None,
                iou: None,
                mean_iou: Some(self.mean_iou()),
                per_class_iou: self.per_class_iou(),
            }
        }
    }
}

/// Summary scores: binary models fill `dice` and `iou`, multi-class ones `mean_iou` and
/// `per_class_iou`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Fraction of pixels labelled right.
    pub pixel_accuracy: f64,
    /// Dice of the object class (binary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dice: Option<f64>,
    /// IoU of the object class (binary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iou: Option<f64>,
    /// Mean IoU over the classes present (multi-class).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_iou: Option<f64>,
    /// IoU per class, `null` for a class that never occurs (multi-class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_class_iou: Vec<Option<f64>>,
}

impl Scores {
    /// The one figure that ranks models: Dice (binary) or mean IoU (multi-class).
    pub fn headline(&self) -> f64 {
        self.dice.or(self.mean_iou).unwrap_or(self.pixel_accuracy)
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_hand_worked() {
        // truth:  1 1 0 0 ; predicted: 1 0 1 0 → tp 1, fn 1, fp 1, tn 1.
        let mut m = Confusion::new(2);
        m.add(&[1, 1, 0, 0], &[1, 0, 1, 0]);
        assert_eq!(m.pixel_accuracy(), 0.5);
        assert_eq!(m.dice(1), 0.5);
        assert_eq!(m.iou(1), Some(1.0 / 3.0));
    }

    #[test]
    fn empty_masks_and_all_foreground() {
        let mut empty = Confusion::new(2);
        empty.add(&[0; 8], &[0; 8]);
        assert_eq!(empty.dice(1), 1.0, "nothing to find, nothing found");
        assert_eq!(empty.iou(1), None);
        assert_eq!(empty.scores(1).iou, Some(1.0));
        let mut missed = Confusion::new(2);
        missed.add(&[1; 8], &[0; 8]);
        assert_eq!(missed.dice(1), 0.0);
        assert_eq!(missed.pixel_accuracy(), 0.0);
        let mut all = Confusion::new(2);
        all.add(&[1; 8], &[1; 8]);
        assert_eq!((all.dice(1), all.iou(1)), (1.0, Some(1.0)));
    }

    #[test]
    fn ignored_pixels_count_nowhere() {
        let mut m = Confusion::new(3);
        m.add(&[0, 1, 2, IGNORE, IGNORE], &[0, 1, 1, 2, 0]);
        assert_eq!(m.total(), 3);
        assert!((m.pixel_accuracy() - 2.0 / 3.0).abs() < 1e-12);
        // class 0: 1/1; class 1: tp 1, fp 1 → 1/2; class 2: fn 1 → 0.
        assert_eq!(m.per_class_iou(), vec![Some(1.0), Some(0.5), Some(0.0)]);
        assert!((m.mean_iou() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn absent_classes_leave_the_mean() {
        let mut m = Confusion::new(4);
        m.add(&[0, 0, 1, 1], &[0, 0, 1, 0]);
        assert_eq!(m.iou(3), None);
        // class 0: 2/3, class 1: 1/2.
        assert!((m.mean_iou() - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
    }
}
