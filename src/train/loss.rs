//! Losses on N×C×H×W logits with per-pixel labels: BCE-with-logits for one class,
//! cross-entropy for several, both skipping ignored pixels, and an optional soft Dice term.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu, sigmoid, softmax};

use super::loader::Batch;
use crate::metrics::IGNORE;

/// Smoothing of the soft Dice ratio (keeps empty masks finite).
const DICE_SMOOTH: f32 = 1.0;

/// Which loss to minimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LossKind {
    /// Add (1 − soft Dice) to the pixel loss.
    pub dice: bool,
}

/// A batch's labels as tensors on the training device.
pub struct Targets {
    /// Class index per pixel (ignored pixels hold 0), N×1×H×W.
    pub classes: Tensor<4, Int>,
    /// 1 where a pixel counts, 0 where it is ignored, N×1×H×W.
    pub weight: Tensor<4>,
}

impl Targets {
    /// The labels of `batch` on `device`.
    pub fn new(batch: &Batch, device: &Device) -> Self {
        let [h, w] = batch.size;
        let shape = [batch.len, 1, h, w];
        let classes: Vec<i64> = batch
            .labels
            .iter()
            .map(|&l| if l == IGNORE { 0 } else { i64::from(l) })
            .collect();
        let weight: Vec<f32> = batch
            .labels
            .iter()
            .map(|&l| f32::from(u8::from(l != IGNORE)))
            .collect();
        Targets {
            classes: Tensor::from_data(TensorData::new(classes, shape), device),
            weight: Tensor::from_data(TensorData::new(weight, shape), device),
        }
    }
}

impl LossKind {
    /// The mean loss of `logits` against `targets` over counted pixels.
    pub fn compute(&self, logits: Tensor<4>, targets: &Targets) -> Tensor<1> {
        let channels = logits.dims()[1];
        let counted = targets.weight.clone().sum().clamp_min(1.0);
        let (pixel_loss, probabilities, truth) = if channels == 1 {
            let y = targets.classes.clone().float();
            // BCE with logits, stable form: max(x,0) − x·y + log(1 + e^−|x|).
            let loss = relu(logits.clone()) - logits.clone() * y.clone()
                + logits.clone().abs().neg().exp().log1p();
            (loss, sigmoid(logits), y)
        } else {
            let log_p = log_softmax(logits.clone(), 1);
            let loss = log_p.gather(1, targets.classes.clone()).neg();
            let truth = Tensor::cat(
                (0..channels)
                    .map(|c| targets.classes.clone().equal_elem(c as i64).float())
                    .collect(),
                1,
            );
            (loss, softmax(logits, 1), truth)
        };
        let loss = (pixel_loss * targets.weight.clone()).sum() / counted;
        if self.dice {
            loss + soft_dice_loss(probabilities, truth, targets.weight.clone())
        } else {
            loss
        }
    }
}

/// 1 − mean over channels of the soft Dice between probabilities and one-hot truth.
fn soft_dice_loss(probabilities: Tensor<4>, truth: Tensor<4>, weight: Tensor<4>) -> Tensor<1> {
    let p = probabilities * weight.clone();
    let t = truth * weight;
    let intersection = (p.clone() * t.clone()).sum_dim(0).sum_dim(2).sum_dim(3);
    let total = p.sum_dim(0).sum_dim(2).sum_dim(3) + t.sum_dim(0).sum_dim(2).sum_dim(3);
    let dice = (intersection * 2.0 + DICE_SMOOTH) / (total + DICE_SMOOTH);
    dice.mean().neg() + 1.0
}
