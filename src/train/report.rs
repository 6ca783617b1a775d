//! What a run folder shows a person: `metrics.csv` (one row per epoch), `curves.png` (losses and
//! validation scores) and the per-epoch summary line.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::plot::{Panel, draw_panels};
use crate::metrics::Scores;
use crate::{Error, Result};

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number over all stages, from 1.
    pub epoch: usize,
    /// Stage index, from 0.
    pub stage: usize,
    /// Training size (height, width).
    pub size: [usize; 2],
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Mean validation loss per pixel.
    pub valid_loss: f64,
    /// Validation scores at the training size.
    pub scores: Scores,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Training throughput.
    pub images_per_s: f64,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
}

impl EpochRecord {
    /// The one-line summary printed after each epoch.
    pub fn summary(&self, total_epochs: usize) -> String {
        let s = &self.scores;
        let headline = match (s.dice, s.mean_iou) {
            (Some(dice), _) => format!("dice {dice:.4}"),
            (_, Some(miou)) => format!("mIoU {miou:.4}"),
            _ => String::new(),
        };
        format!(
            "epoch {:>3}/{total_epochs} {}x{}  train loss {:.4}  valid loss {:.4}  {headline}  \
             acc {:.4}  lr {:.2e}  {:.1} img/s  {:.0} s",
            self.epoch,
            self.size[0],
            self.size[1],
            self.train_loss,
            self.valid_loss,
            s.pixel_accuracy,
            self.lr,
            self.images_per_s,
            self.seconds
        )
    }
}

/// Writes `history` as CSV to `path`; multi-class runs get one IoU column per class.
///
/// # Errors
/// A file that cannot be written.
pub fn write_csv(path: &Path, history: &[EpochRecord], class_names: &[String]) -> Result<()> {
    let binary = class_names.len() == 1;
    let mut csv = String::from("epoch,stage,height,width,train_loss,valid_loss,pixel_accuracy");
    if binary {
        csv.push_str(",dice,iou");
    } else {
        csv.push_str(",mean_iou");
        for name in class_names {
            let _ = write!(csv, ",iou_{name}");
        }
    }
    csv.push_str(",lr,images_per_s,seconds\n");
    let number = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for r in history {
        let s = &r.scores;
        let _ = write!(
            csv,
            "{},{},{},{},{:.6},{:.6},{:.6}",
            r.epoch, r.stage, r.size[0], r.size[1], r.train_loss, r.valid_loss, s.pixel_accuracy
        );
        if binary {
            let _ = write!(csv, ",{},{}", number(s.dice), number(s.iou));
        } else {
            let _ = write!(csv, ",{}", number(s.mean_iou));
            for iou in &s.per_class_iou {
                let _ = write!(csv, ",{}", number(*iou));
            }
        }
        let _ = writeln!(csv, ",{:.3e},{:.2},{:.1}", r.lr, r.images_per_s, r.seconds);
    }
    std::fs::write(path, csv).map_err(|e| Error::io(path, e))
}

/// Draws the loss and score curves of `history` into the PNG `path`.
///
/// # Errors
/// No usable font, or a file that cannot be written.
pub fn draw_curves(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let series = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    let headline_name = if history.iter().any(|r| r.scores.dice.is_some()) {
        "dice"
    } else {
        "mean IoU"
    };
    let panels = [
        Panel {
            title: "loss",
            x_label: "epoch",
            series: vec![
                ("train", series(&|r| Some(r.train_loss))),
                ("validation", series(&|r| Some(r.valid_loss))),
            ],
        },
        Panel {
            title: "validation scores",
            x_label: "epoch",
            series: vec![
                (
                    headline_name,
                    series(&|r| r.scores.dice.or(r.scores.mean_iou)),
                ),
                ("pixel accuracy", series(&|r| Some(r.scores.pixel_accuracy))),
            ],
        },
    ];
    draw_panels(path, &panels)
}
