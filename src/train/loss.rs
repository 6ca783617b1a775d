//! Losses on N×C×H×W logits with per-pixel labels: BCE-with-logits for one class,
//! cross-entropy for several, both skipping ignored pixels, optionally only over the hardest
//! pixels (OHEM), and an optional soft Dice term.

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
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossKind {
    /// Add (1 − soft Dice) to the pixel loss.
    pub dice: bool,
    /// Average the pixel loss over the hardest pixels only.
    #[serde(default)]
    pub ohem: Option<Ohem>,
}

impl std::fmt::Display for LossKind {
    /// As the model card records it: `ce`, `ce+dice`, `ohem(0.7, 0.0625) ce+dice`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(Ohem { below, min_share }) = self.ohem {
            write!(f, "ohem({below}, {min_share}) ")?;
        }
        f.write_str(if self.dice { "ce+dice" } else { "ce" })
    }
}

/// Online hard example mining (the real-time street models' loss, as in PSPNet's and
/// BiSeNet's code): the pixel loss counts only the pixels whose true class the model gives
/// less than `below` probability, and at least the `min_share` hardest of a batch's counted
/// pixels, so the many easy pixels (road, sky) stop drowning the thin and rare ones.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ohem {
    /// A pixel is hard while its true class's probability is below this (0.7 in the anchors).
    pub below: f32,
    /// Share of the counted pixels always kept, the hardest first.
    pub min_share: f32,
}

impl Ohem {
    /// The 0/1 mask of the pixels that count: hard ones, or the hardest `min_share` of the
    /// counted ones when fewer are hard. Read on the host (a sort of the batch's losses) and
    /// outside the gradient: which pixels count is chosen, not learned.
    fn hardest(&self, pixel_loss: &Tensor<4>, counted: &Tensor<4>) -> Tensor<4> {
        let device = pixel_loss.device();
        let shape = pixel_loss.dims();
        let losses = pixel_loss.clone().detach().into_data_as::<f32>();
        let counted_data = counted.clone().into_data_as::<f32>();
        let (losses, counts) = (
            losses.as_slice::<f32>().expect("f32 data"),
            counted_data.as_slice::<f32>().expect("f32 data"),
        );
        let mut candidates: Vec<f32> = losses
            .iter()
            .zip(counts)
            .filter(|&(_, &c)| c > 0.0)
            .map(|(&l, _)| l)
            .collect();
        // −ln(p) is the pixel loss of a true-class probability p, for BCE and cross-entropy.
        let hard = -self.below.ln();
        let min_kept = ((candidates.len() as f32 * self.min_share).ceil() as usize).max(1);
        let cut = if candidates.iter().filter(|&&l| l > hard).count() >= min_kept {
            hard
        } else if candidates.is_empty() {
            f32::INFINITY
        } else {
            let k = min_kept.min(candidates.len()) - 1;
            *candidates
                .select_nth_unstable_by(k, |a, b| b.total_cmp(a))
                .1
        };
        let keep: Vec<f32> = losses
            .iter()
            .zip(counts)
            .map(|(&l, &c)| f32::from(u8::from(c > 0.0 && (l > hard || l >= cut))))
            .collect();
        Tensor::from_data(TensorData::new(keep, shape), &device)
    }
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
        let weight = match &self.ohem {
            Some(ohem) => targets.weight.clone() * ohem.hardest(&pixel_loss, &targets.counted),
            None => targets.weight.clone(),
        };
        let loss = total(pixel_loss * weight.clone()) / total(weight).clamp_min(1e-6);
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

    /// Binary logits whose pixel losses are known: label 1 everywhere but the ignored last.
    fn losses_of(logits: &[f32]) -> (Tensor<4>, Targets, Vec<f32>) {
        let device = Device::flex();
        let n = logits.len();
        let mut labels = vec![1u8; n];
        labels[n - 1] = IGNORE;
        let batch = Batch {
            len: 1,
            size: [1, n],
            images: vec![0.0; 3 * n],
            labels,
        };
        let targets = Targets::new(&batch, &device, &[]);
        let tensor = Tensor::from_data(TensorData::new(logits.to_vec(), [1, 1, 1, n]), &device);
        // BCE of label 1: ln(1 + e^−x).
        let losses = logits[..n - 1].iter().map(|x| (-x).exp().ln_1p()).collect();
        (tensor, targets, losses)
    }

    #[test]
    fn ohem_averages_over_the_hard_pixels_and_keeps_at_least_its_share() {
        // Probabilities of the true class: 0.95, 0.9, 0.6, 0.3, 0.1 (and one ignored pixel).
        let logits = [2.944, 2.197, 0.405, -0.847, -2.197, -5.0];
        let (tensor, targets, losses) = losses_of(&logits);
        let mean = |picked: &[f32]| picked.iter().sum::<f32>() / picked.len() as f32;
        let loss = |ohem| {
            LossKind { dice: false, ohem }
                .compute(tensor.clone(), &targets)
                .into_scalar::<f32>()
        };
        let plain = loss(None);
        assert!((plain - mean(&losses)).abs() < 1e-5, "{plain}");
        // Below 0.7: the three hardest (0.6, 0.3, 0.1); the ignored pixel never counts.
        let hard = loss(Some(Ohem {
            below: 0.7,
            min_share: 0.0,
        }));
        assert!(
            (hard - mean(&losses[2..])).abs() < 1e-5,
            "{hard} vs {losses:?}"
        );
        // Only 0.1 is below 0.2, but a share of 0.4 of five pixels keeps the two hardest.
        let kept = loss(Some(Ohem {
            below: 0.2,
            min_share: 0.4,
        }));
        assert!(
            (kept - mean(&losses[3..])).abs() < 1e-5,
            "{kept} vs {losses:?}"
        );
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
