//! Losses on N×C×H×W logits with per-pixel labels: BCE-with-logits for one class,
//! cross-entropy for several, both skipping ignored pixels, and an optional soft Dice term.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu, sigmoid, softmax};

use super::loader::Batch;
use crate::dataset::Sample;
use crate::metrics::IGNORE;

/// Largest median-frequency weight: a class seen in a handful of pixels must not swamp the
/// loss.
const MAX_CLASS_WEIGHT: f64 = 10.0;
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
    pub counted: Tensor<4>,
    /// Each pixel's weight in the pixel loss: its class's weight, 0 where ignored, N×1×H×W.
    pub weight: Tensor<4>,
}

impl Targets {
    /// The labels of `batch` on `device`; `class_weights` (one per label, empty = all 1)
    /// weigh the pixel loss.
    pub fn new(batch: &Batch, device: &Device, class_weights: &[f32]) -> Self {
        let [h, w] = batch.size;
        let shape = [batch.len, 1, h, w];
        let classes: Vec<i64> = batch
            .labels
            .iter()
            .map(|&l| if l == IGNORE { 0 } else { i64::from(l) })
            .collect();
        let counted: Vec<f32> = batch
            .labels
            .iter()
            .map(|&l| f32::from(u8::from(l != IGNORE)))
            .collect();
        let weight: Vec<f32> = batch
            .labels
            .iter()
            .map(|&l| match l {
                IGNORE => 0.0,
                _ => class_weights.get(usize::from(l)).copied().unwrap_or(1.0),
            })
            .collect();
        let tensor = |values: Vec<f32>| Tensor::from_data(TensorData::new(values, shape), device);
        Targets {
            classes: Tensor::from_data(TensorData::new(classes, shape), device),
            counted: tensor(counted),
            weight: tensor(weight),
        }
    }
}

/// SegNet's median-frequency class weights over `samples`' labels: the frequency of class c is
/// its pixels over the pixels of the images where it appears; its weight is the median
/// frequency over c's, at most [`MAX_CLASS_WEIGHT`]. Rare classes weigh more; a class that
/// never appears weighs 1.
pub fn median_frequency_weights(samples: &[Sample], labels: usize) -> Vec<f32> {
    let (mut pixels, mut present_in) = (vec![0u64; labels], vec![0u64; labels]);
    for sample in samples {
        let mut counts = vec![0u64; labels];
        for &l in &sample.labels {
            if let Some(count) = counts.get_mut(usize::from(l)) {
                *count += 1;
            }
        }
        let counted: u64 = counts.iter().sum();
        for (c, &count) in counts.iter().enumerate() {
            if count > 0 {
                pixels[c] += count;
                present_in[c] += counted;
            }
        }
    }
    let frequency: Vec<Option<f64>> = pixels
        .iter()
        .zip(&present_in)
        .map(|(&p, &n)| (p > 0).then(|| p as f64 / n as f64))
        .collect();
    let mut seen: Vec<f64> = frequency.iter().flatten().copied().collect();
    seen.sort_by(f64::total_cmp);
    let Some(&median) = seen.get(seen.len() / 2) else {
        return vec![1.0; labels];
    };
    frequency
        .iter()
        .map(|f| f.map_or(1.0, |f| (median / f).min(MAX_CLASS_WEIGHT) as f32))
        .collect()
}

impl LossKind {
    /// The mean loss of `logits` against `targets` over counted pixels.
    pub fn compute(&self, logits: Tensor<4>, targets: &Targets) -> Tensor<1> {
        let channels = logits.dims()[1];
        let counted = total(targets.weight.clone()).clamp_min(1e-6);
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
        let loss = total(pixel_loss * targets.weight.clone()) / counted;
        if self.dice {
            loss + soft_dice_loss(probabilities, truth, targets.counted.clone())
        } else {
            loss
        }
    }
}

/// 1 − mean over channels of the soft Dice between probabilities and one-hot truth.
fn soft_dice_loss(probabilities: Tensor<4>, truth: Tensor<4>, weight: Tensor<4>) -> Tensor<1> {
    let channels = probabilities.dims()[1];
    let p = probabilities * weight.clone();
    let t = truth * weight;
    let intersection = (p.clone() * t.clone()).sum_dim(0).sum_dim(2).sum_dim(3);
    let both = p.sum_dim(0).sum_dim(2).sum_dim(3) + t.sum_dim(0).sum_dim(2).sum_dim(3);
    let dice = (intersection * 2.0 + DICE_SMOOTH) / (both + DICE_SMOOTH);
    (total(dice) / channels as f64).neg() + 1.0
}

/// The sum of every element of `t`, as burn's `sum` gives it, but reduced along one axis of
/// the flattened tensor: on a GPU runtime burn's whole-tensor `sum` adds its partial sums with
/// float atomics through buffer addresses (`OpAtomicFAddEXT` on a physical storage buffer),
/// and Mesa's software Vulkan device crashes compiling that kernel (in
/// `vkCreateComputePipelines`, with Mesa 22.3 and 25.0 alike); the axis reduction is the
/// kernel burn uses for `sum_dim` everywhere else.
fn total<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    t.reshape([-1]).sum_dim(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: Vec<u8>) -> Sample {
        Sample {
            name: String::new(),
            rgb: vec![0; labels.len() * 3],
            labels,
        }
    }

    #[test]
    fn rare_classes_weigh_more_and_ignored_pixels_count_nowhere() {
        // Class 0: 20 of 24 pixels; class 1: 3 of 16; class 2: 1 of 8 counted pixels.
        let samples = [
            sample([vec![0; 12], vec![1; 3], vec![0; 1]].concat()),
            sample([vec![2; 1], vec![0; 7], vec![IGNORE; 8]].concat()),
        ];
        let weights = median_frequency_weights(&samples, 4);
        let frequency = [20.0 / 24.0, 3.0 / 16.0, 1.0 / 8.0];
        let median = frequency[1];
        for (c, f) in frequency.iter().enumerate() {
            assert!(
                (weights[c] - (median / f) as f32).abs() < 1e-6,
                "{weights:?}"
            );
        }
        assert_eq!(weights[3], 1.0, "absent");
    }
}
