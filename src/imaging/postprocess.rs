//! Post-processing: logits at model size become a per-pixel label map at frame size.
//! Binary models: sigmoid, bilinear upsampling of the probability, threshold (label 1 = object).
//! Multi-class models: softmax, upsampling of every class probability, arg-max (label = class).

use ndarray::{Array3, ArrayView3};

use super::resize::Scaler;

/// Per-pixel labels at frame size.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major labels: 0/1 for binary models, the class index for multi-class ones.
    pub labels: Vec<u8>,
}

/// Turns logits into masks; one per worker (it owns a [`Scaler`] and scratch planes).
pub struct Postprocessor {
    scaler: Scaler,
    threshold: f32,
    smoothing: f32,
    previous: Vec<f32>,
    probabilities: Vec<f32>,
    upsampled: Vec<f32>,
    best: Vec<f32>,
}

impl Postprocessor {
    /// A post-processor with the binary `threshold` (ignored for multi-class models).
    pub fn new(threshold: f32) -> Self {
        Postprocessor {
            scaler: Scaler::default(),
            threshold,
            smoothing: 0.0,
            previous: Vec::new(),
            probabilities: Vec::new(),
            upsampled: Vec::new(),
            best: Vec::new(),
        }
    }

    /// Smooths probabilities over time: `p ← s·p_previous + (1 − s)·p` (0 = off). Only for a
    /// post-processor that sees every frame of one stream in order.
    pub fn with_smoothing(mut self, smoothing: f32) -> Self {
        self.smoothing = smoothing.clamp(0.0, 0.99);
        self
    }

    /// The mask at `width`×`height` for C×h×w `logits`.
    pub fn run(&mut self, logits: ArrayView3<'_, f32>, width: usize, height: usize) -> Mask {
        let (classes, h, w) = logits.dim();
        let plane = h * w;
        self.probabilities.clear();
        if classes == 1 {
            self.probabilities
                .extend(logits.iter().map(|&x| sigmoid(x)));
        } else {
            self.probabilities.resize(classes * plane, 0.0);
            softmax_over_channels(logits, &mut self.probabilities);
        }
        if self.smoothing > 0.0 {
            if self.previous.len() == self.probabilities.len() {
                let s = self.smoothing;
                for (p, &old) in self.probabilities.iter_mut().zip(&self.previous) {
                    *p = s * old + (1.0 - s) * *p;
                }
            }
            self.previous.clone_from(&self.probabilities);
        }
        let pixels = width * height;
        self.upsampled.resize(pixels, 0.0);
        let mut labels = vec![0u8; pixels];
        if classes == 1 {
            self.scaler.plane(
                &self.probabilities,
                [w, h],
                &mut self.upsampled,
                [width, height],
            );
            for (label, &p) in labels.iter_mut().zip(&self.upsampled) {
                *label = u8::from(p >= self.threshold);
            }
        } else {
            self.best.clear();
            self.best.resize(pixels, f32::NEG_INFINITY);
            for class in 0..classes {
                let source = &self.probabilities[class * plane..(class + 1) * plane];
                self.scaler
                    .plane(source, [w, h], &mut self.upsampled, [width, height]);
                for ((label, best), &p) in labels
                    .iter_mut()
                    .zip(self.best.iter_mut())
                    .zip(&self.upsampled)
                {
                    if p > *best {
                        *best = p;
                        *label = class as u8;
                    }
                }
            }
        }
        Mask {
            width,
            height,
            labels,
        }
    }
}

/// How many labels differ between two masks of the same size (temporal flicker).
pub fn changed_labels(a: &[u8], b: &[u8]) -> u64 {
    a.iter().zip(b).filter(|(x, y)| x != y).count() as u64
}

/// Probabilities of C×h×w `logits`: sigmoid for one class, softmax over the classes for several.
pub fn probabilities(logits: ArrayView3<'_, f32>) -> Array3<f32> {
    if logits.dim().0 == 1 {
        return logits.mapv(sigmoid);
    }
    let mut out = Array3::zeros(logits.dim());
    let buffer = out
        .as_slice_mut()
        .expect("a new array is contiguous and in standard order");
    softmax_over_channels(logits, buffer);
    out
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Softmax over the first axis of C×h×w `logits` into `out` (C planes of h·w).
fn softmax_over_channels(logits: ArrayView3<'_, f32>, out: &mut [f32]) {
    let (classes, h, w) = logits.dim();
    let plane = h * w;
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let max = (0..classes)
                .map(|c| logits[[c, y, x]])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for c in 0..classes {
                let e = (logits[[c, y, x]] - max).exp();
                out[c * plane + i] = e;
                sum += e;
            }
            for c in 0..classes {
                out[c * plane + i] /= sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn binary_threshold_splits_at_the_probability() {
        let logits = Array3::from_shape_vec((1, 1, 4), vec![-3.0, -0.1, 0.1, 3.0]).unwrap();
        let mask = Postprocessor::new(0.5).run(logits.view(), 4, 1);
        assert_eq!(mask.labels, vec![0, 0, 1, 1]);
    }

    #[test]
    fn multi_class_takes_the_arg_max() {
        let logits = Array3::from_shape_vec((3, 1, 2), vec![5.0, 0.0, 1.0, 0.0, 0.0, 9.0]).unwrap();
        let mask = Postprocessor::new(0.5).run(logits.view(), 2, 1);
        assert_eq!(mask.labels, vec![0, 2]);
    }

    #[test]
    fn upsamples_to_the_frame_size() {
        let logits = Array3::from_shape_vec((1, 2, 2), vec![-5.0, 5.0, -5.0, 5.0]).unwrap();
        let mask = Postprocessor::new(0.5).run(logits.view(), 8, 6);
        assert_eq!((mask.width, mask.height, mask.labels.len()), (8, 6, 48));
        assert!(
            mask.labels
                .chunks(8)
                .all(|row| row[..4].iter().all(|&l| l == 0) && row[4..].iter().all(|&l| l == 1))
        );
    }
}
