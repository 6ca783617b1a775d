//! Post-processing: logits at model size become a per-pixel label map at frame size.
//! Binary models: sigmoid, bilinear upsampling of the probability, threshold (label 1 = object).
//! Multi-class models: softmax and arg-max on the model's grid.
//!
//! Either way the grid's decisions are up-sampled, and only where the four grid points around a
//! pixel disagree (a band along the boundaries) are probabilities interpolated bilinearly and
//! compared, as up-sampling every plane would, at a fraction of the cost. A binary model's
//! coverage goes the same way: it is monotone in the probability, so four grid points of equal
//! coverage give it to every pixel between them.

use ndarray::{Array3, ArrayView3};

use super::grid::{Coverage, Grid, interpolate};
use super::matte;
use super::smoothing::{Smoother, Smoothing};

/// Per-pixel labels at frame size.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major labels: 0/1 for binary models, the class index for multi-class ones.
    pub labels: Vec<u8>,
    /// The object's coverage for soft edges, when asked of a binary model's post-processor.
    pub coverage: Option<Coverage>,
}

/// Turns logits into masks; one per worker (it owns scratch planes).
pub struct Postprocessor {
    threshold: f32,
    smoother: Option<Smoother>,
    coverage: bool,
    probabilities: Vec<f32>,
    /// Labels on the model's grid (thresholded or arg-max).
    coarse: Vec<u8>,
}

impl Postprocessor {
    /// A post-processor with the binary `threshold` (ignored for multi-class models).
    pub fn new(threshold: f32) -> Self {
        Postprocessor {
            threshold,
            smoother: None,
            coverage: false,
            probabilities: Vec::new(),
            coarse: Vec::new(),
        }
    }

    /// Smooths probabilities over time (see [`super::smoothing`]). Only for a post-processor
    /// that sees every frame of one stream in order.
    pub fn with_smoothing(mut self, smoothing: Smoothing) -> Self {
        self.smoother = smoothing.is_on().then(|| Smoother::new(smoothing));
        self
    }

    /// Has binary masks carry the object's [`Coverage`] (for soft edges).
    pub fn with_coverage(mut self, coverage: bool) -> Self {
        self.coverage = coverage;
        self
    }

    /// The mask at `width`×`height` for C×h×w `logits`.
    pub fn run(&mut self, logits: ArrayView3<'_, f32>, width: usize, height: usize) -> Mask {
        self.run_moving(logits, width, height, None)
    }

    /// [`Postprocessor::run`] for a frame whose luma at the model's grid (h×w) is `luma`:
    /// what motion-aware smoothing follows.
    pub fn run_moving(
        &mut self,
        logits: ArrayView3<'_, f32>,
        width: usize,
        height: usize,
        luma: Option<&[u8]>,
    ) -> Mask {
        let (classes, h, w) = logits.dim();
        let plane = h * w;
        self.probabilities.clear();
        if classes == 1 {
            match logits.as_slice() {
                Some(contiguous) => self
                    .probabilities
                    .extend(contiguous.iter().map(|&x| sigmoid(x))),
                None => self
                    .probabilities
                    .extend(logits.iter().map(|&x| sigmoid(x))),
            }
        } else {
            self.probabilities.resize(classes * plane, 0.0);
            softmax_over_channels(logits, &mut self.probabilities);
        }
        if let Some(smoother) = &mut self.smoother {
            smoother.smooth(&mut self.probabilities, [w, h], luma);
        }
        let mut labels = vec![0u8; width * height];
        let mut coverage = None;
        if classes == 1 {
            let threshold = self.threshold;
            self.coarse.clear();
            self.coarse
                .extend(self.probabilities.iter().map(|&p| u8::from(p >= threshold)));
            let grid = Grid::new([w, h], [width, height]);
            grid.upsample(&self.coarse, &mut labels, |corners, weights| {
                u8::from(interpolate(&self.probabilities, corners, weights) >= threshold)
            });
            coverage = self.coverage.then(|| {
                let coarse: Vec<u8> = self
                    .probabilities
                    .iter()
                    .map(|&p| matte::coverage(p, threshold))
                    .collect();
                let mut values = vec![0u8; width * height];
                grid.upsample(&coarse, &mut values, |corners, weights| {
                    matte::coverage(
                        interpolate(&self.probabilities, corners, weights),
                        threshold,
                    )
                });
                Coverage {
                    values,
                    cell: (width as f32 / w as f32).max(height as f32 / h as f32),
                }
            });
        } else {
            self.coarse.clear();
            self.coarse
                .extend((0..plane).map(|i| arg_max(&self.probabilities, plane, classes, i)));
            let probabilities = &self.probabilities;
            Grid::new([w, h], [width, height]).upsample(
                &self.coarse,
                &mut labels,
                |corners, weights| {
                    let score = |class: u8| {
                        interpolate(
                            &probabilities[usize::from(class) * plane..],
                            corners,
                            weights,
                        )
                    };
                    corners
                        .iter()
                        .map(|&c| self.coarse[c])
                        .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                        .expect("four corners")
                },
            );
        }
        Mask {
            width,
            height,
            labels,
            coverage,
        }
    }
}

/// The class with the highest probability at grid point `i` (planes of `plane` values).
pub(crate) fn arg_max(probabilities: &[f32], plane: usize, classes: usize, i: usize) -> u8 {
    let mut best = 0;
    for class in 1..classes {
        if probabilities[class * plane + i] > probabilities[best * plane + i] {
            best = class;
        }
    }
    best as u8
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
    use crate::imaging::grid::bilinear_taps;
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
    fn multi_class_labels_match_upsampling_every_class() {
        // Three classes on an 8×6 grid with smooth fields, up-sampled to 61×47.
        let (classes, h, w) = (3, 6, 8);
        let logits = Array3::from_shape_fn((classes, h, w), |(c, y, x)| match c {
            0 => x as f32 * 0.9 - 3.0,
            1 => y as f32 * 1.1 - 2.5,
            _ => ((x as f32 - 4.0).powi(2) + (y as f32 - 3.0).powi(2)).sqrt() * -1.3 + 2.0,
        });
        let (width, height) = (61, 47);
        let fast = Postprocessor::new(0.5).run(logits.view(), width, height);
        // Reference: every class's probability plane up-sampled bilinearly, then the arg-max.
        let probabilities = probabilities(logits.view());
        let planes: Vec<Vec<f32>> = (0..classes)
            .map(|c| {
                let (columns, rows) = (bilinear_taps(w, width), bilinear_taps(h, height));
                let at = |y: usize, x: usize| probabilities[[c, y, x]];
                rows.iter()
                    .flat_map(|&(y0, y1, fy)| {
                        columns.iter().map(move |&(x0, x1, fx)| {
                            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                            top * (1.0 - fy) + bottom * fy
                        })
                    })
                    .collect()
            })
            .collect();
        let differing = (0..width * height)
            .filter(|&i| {
                let best = (0..classes)
                    .max_by(|&a, &b| planes[a][i].total_cmp(&planes[b][i]))
                    .unwrap();
                usize::from(fast.labels[i]) != best
            })
            .count();
        assert!(fast.labels.contains(&0) && fast.labels.contains(&1) && fast.labels.contains(&2));
        assert_eq!(
            differing,
            0,
            "{differing} of {} pixels differ",
            width * height
        );
    }

    #[test]
    fn binary_labels_and_coverage_match_upsampling_the_probability() {
        // A blob on a 12×9 grid, its edge soft and hard in places, up-sampled to 97×61.
        let (h, w) = (9, 12);
        let logits = Array3::from_shape_fn((1, h, w), |(_, y, x)| {
            let r = ((x as f32 - 5.0).powi(2) + (y as f32 * 1.4 - 5.0).powi(2)).sqrt();
            (3.5 - r) * if x < 6 { 0.8 } else { 6.0 }
        });
        let (width, height) = (97, 61);
        let fast = Postprocessor::new(0.5)
            .with_coverage(true)
            .run(logits.view(), width, height);
        // Reference: the whole probability plane up-sampled bilinearly, then each pixel decided.
        let probabilities = probabilities(logits.view());
        let mut upsampled = vec![0.0f32; width * height];
        crate::imaging::resize::Scaler::default().plane(
            probabilities.as_slice().unwrap(),
            [w, h],
            &mut upsampled,
            [width, height],
        );
        let coverage = fast.coverage.unwrap().values;
        let mut differing = 0;
        for (i, &p) in upsampled.iter().enumerate() {
            differing += usize::from(fast.labels[i] != u8::from(p >= 0.5));
            let expected = matte::coverage(p, 0.5);
            assert!(
                coverage[i].abs_diff(expected) <= 1,
                "pixel {i}: {} against {expected}",
                coverage[i]
            );
        }
        assert!(fast.labels.contains(&0) && fast.labels.contains(&1));
        assert!(coverage.iter().any(|&c| c > 0 && c < 255));
        assert_eq!(
            differing,
            0,
            "{differing} of {} labels differ",
            width * height
        );
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
