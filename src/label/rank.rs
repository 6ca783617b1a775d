//! Which frames a person's correction teaches most: the model's uncertainty along its mask's
//! boundary, its disagreement with itself on the mirrored frame, and its flicker against the
//! next frame. Near-duplicates of a frame already queued are left out, so the queue is diverse,
//! and frames are grouped into scenes, so that a fix can be carried to the rest of its scene.

use ndarray::{ArrayView3, Axis, s};

use super::candidates::Candidate;
use crate::Result;
use crate::imaging::compose::luma;
use crate::imaging::postprocess::{arg_max, probabilities};
use crate::imaging::{Postprocessor, Preprocessor, Scaler};
use crate::infer::Segmenter;
use crate::metrics::band_width;

/// Side of the grey thumbnails frames are compared by.
const THUMBNAIL: usize = 64;

/// A thumbnail pixel whose grey level moved by more than this has changed (compression noise
/// and flicker of the light stay below it).
const CHANGED_LEVEL: u8 = 12;

/// Pictures whose thumbnails differ in fewer than this share of pixels are the same picture:
/// the later one is not queued.
pub const DUPLICATE: f64 = 0.002;

/// Consecutive candidates further apart than this (mean absolute difference of their
/// thumbnails, share of the grey range) start a new scene.
const SCENE_CUT: f64 = 0.12;

/// The binary threshold of the masks scored and offered.
const THRESHOLD: f32 = 0.5;

/// How much a correction of a frame is likely to teach; each part lies in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    /// Mean uncertainty along the mask's boundary band (binary entropy in bits for binary
    /// models, 1 − the margin between the two likeliest classes otherwise); over the whole
    /// frame when the mask has no boundary.
    pub uncertainty: f64,
    /// Disagreement with the mask of the mirrored frame: 1 − their IoU.
    pub flip: f64,
    /// Disagreement with the next frame's mask: 1 − their IoU (0 without a next frame).
    pub flicker: f64,
}

impl Scores {
    /// The ranking key: the sum of the parts.
    pub fn total(&self) -> f64 {
        self.uncertainty + self.flip + self.flicker
    }
}

/// A candidate with the model's view of it.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The picture.
    pub candidate: Candidate,
    /// Its scores.
    pub scores: Scores,
    /// The model's labels at the picture's size (class ids).
    pub labels: Vec<u8>,
    /// Per-pixel uncertainty at the model's size (0..=255), for the page's heat map.
    pub uncertainty: Vec<u8>,
    /// The model's input size, `[width, height]`: the size of `uncertainty`.
    pub model_size: [usize; 2],
    /// Grey thumbnail, `THUMBNAIL`² pixels.
    pub thumbnail: Vec<u8>,
    /// Scene number, counted in reading order.
    pub scene: usize,
}

/// Scores candidates with one model.
pub struct Ranker {
    segmenter: Segmenter,
    preprocessor: Preprocessor,
    postprocessor: Postprocessor,
    scaler: Scaler,
    /// The last candidate's thumbnail and scene, for scene cuts.
    last: Option<(Vec<u8>, usize)>,
}

impl Ranker {
    /// A ranker running `segmenter`.
    pub fn new(segmenter: Segmenter) -> Self {
        Ranker {
            preprocessor: Preprocessor::new(segmenter.card()),
            postprocessor: Postprocessor::new(THRESHOLD),
            scaler: Scaler::default(),
            segmenter,
            last: None,
        }
    }

    /// Runs the model on `candidate`, its mirror image and its next frame (one batch), and
    /// scores it. Candidates must come in reading order (scenes are cut between neighbours).
    ///
    /// # Errors
    /// A failed inference.
    pub fn score(&mut self, mut candidate: Candidate) -> Result<Scored> {
        let [width, height] = candidate.size;
        let following = candidate.next.take();
        let input = self.preprocessor.run(&candidate.rgba, width, height);
        let mirrored = input.slice(s![.., .., ..;-1]).to_owned();
        let mut views = vec![input.view(), mirrored.view()];
        let next = following
            .as_ref()
            .map(|next| self.preprocessor.run(next, width, height));
        views.extend(next.as_ref().map(|n| n.view()));
        let batch = ndarray::stack(Axis(0), &views).expect("inputs of one size");
        let logits = self.segmenter.run(batch.view())?;
        let (_, _, model_h, model_w) = logits.dim();
        let [own, mirror] = [0, 1].map(|k| probabilities(logits.index_axis(Axis(0), k)));
        let labels = coarse_labels(own.view());
        let mut unmirrored = coarse_labels(mirror.view());
        unmirrored
            .chunks_exact_mut(model_w)
            .for_each(<[u8]>::reverse);
        let flicker = match next {
            Some(_) => {
                let next = probabilities(logits.index_axis(Axis(0), 2));
                1.0 - iou(&labels, &coarse_labels(next.view()))
            }
            None => 0.0,
        };
        let uncertainty = uncertainty_map(own.view());
        let band = boundary_band(&labels, model_w, band_width([model_w, model_h]));
        let scores = Scores {
            uncertainty: mean_over(&uncertainty, &band),
            flip: 1.0 - iou(&labels, &unmirrored),
            flicker,
        };
        let full = self
            .postprocessor
            .run(logits.index_axis(Axis(0), 0), width, height)
            .labels;
        let thumbnail = self.thumbnail(&candidate.rgba, candidate.size);
        let scene = match &self.last {
            Some((last, scene)) if difference(last, &thumbnail) <= SCENE_CUT => *scene,
            Some((_, scene)) => scene + 1,
            None => 0,
        };
        self.last = Some((thumbnail.clone(), scene));
        Ok(Scored {
            candidate,
            scores,
            labels: full,
            uncertainty: uncertainty
                .iter()
                .map(|&u| (u * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect(),
            model_size: [model_w, model_h],
            thumbnail,
            scene,
        })
    }

    /// The grey thumbnail of an RGBA picture.
    fn thumbnail(&mut self, rgba: &[u8], size: [usize; 2]) -> Vec<u8> {
        self.scaler.gray(&luma(rgba), size, [THUMBNAIL; 2])
    }
}

/// Keeps the `count` best-scored of `scored`.
pub fn keep_best(scored: &mut Vec<Scored>, count: usize) {
    scored.sort_by(|a, b| b.scores.total().total_cmp(&a.scores.total()));
    scored.truncate(count);
}

/// The ranked queue: highest total score first, each picture at least [`DUPLICATE`] away from
/// every one queued before it, at most `count` of them.
pub fn select(mut scored: Vec<Scored>, count: usize) -> Vec<Scored> {
    keep_best(&mut scored, usize::MAX);
    let mut queue: Vec<Scored> = Vec::with_capacity(count);
    for candidate in scored {
        if queue.len() == count {
            break;
        }
        if queue
            .iter()
            .all(|q| changed(&q.thumbnail, &candidate.thumbnail) >= DUPLICATE)
        {
            queue.push(candidate);
        }
    }
    queue
}

/// The share of thumbnail pixels that changed between two pictures.
pub fn changed(a: &[u8], b: &[u8]) -> f64 {
    let count = a
        .iter()
        .zip(b)
        .filter(|&(&x, &y)| x.abs_diff(y) > CHANGED_LEVEL)
        .count();
    count as f64 / a.len().max(1) as f64
}

/// Mean absolute difference of two thumbnails, as a share of the grey range.
fn difference(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / (255.0 * a.len().max(1) as f64)
}

/// Labels on the model's grid: the threshold of a binary model's probability, the likeliest
/// class of a multi-class one.
fn coarse_labels(probabilities: ArrayView3<'_, f32>) -> Vec<u8> {
    match probabilities.dim().0 {
        1 => probabilities
            .iter()
            .map(|&p| u8::from(p > THRESHOLD))
            .collect(),
        classes => {
            let plane = probabilities.dim().1 * probabilities.dim().2;
            let values = probabilities.as_slice().expect("planes in standard layout");
            (0..plane)
                .map(|i| arg_max(values, plane, classes, i))
                .collect()
        }
    }
}

/// Per-pixel uncertainty in 0..=1: binary entropy (bits) of a binary model's probability,
/// 1 − (p₁ − p₂) of the two likeliest classes of a multi-class one.
fn uncertainty_map(probabilities: ArrayView3<'_, f32>) -> Vec<f32> {
    let (classes, h, w) = probabilities.dim();
    (0..h * w)
        .map(|i| {
            let (y, x) = (i / w, i % w);
            if classes == 1 {
                let p = probabilities[[0, y, x]].clamp(1e-6, 1.0 - 1e-6);
                -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
            } else {
                let (mut first, mut second) = (0.0f32, 0.0f32);
                for c in 0..classes {
                    let p = probabilities[[c, y, x]];
                    if p > first {
                        (first, second) = (p, first);
                    } else if p > second {
                        second = p;
                    }
                }
                1.0 - (first - second)
            }
        })
        .collect()
}

/// Pixels within `d` (chessboard distance) of a place where the labels change.
fn boundary_band(labels: &[u8], width: usize, d: usize) -> Vec<bool> {
    let height = labels.len() / width.max(1);
    let mut edge = vec![false; labels.len()];
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            if x + 1 < width && labels[i] != labels[i + 1] {
                (edge[i], edge[i + 1]) = (true, true);
            }
            if y + 1 < height && labels[i] != labels[i + width] {
                (edge[i], edge[i + width]) = (true, true);
            }
        }
    }
    let rows = dilate_lines(&edge, width, height, d, [1, width]);
    dilate_lines(&rows, height, width, d, [width, 1])
}

/// Dilates `lines` lines of `length` cells by `d` cells along them; `[step, line_step]` are the
/// index strides along a line and from one line to the next.
fn dilate_lines(
    cells: &[bool],
    length: usize,
    lines: usize,
    d: usize,
    [step, line_step]: [usize; 2],
) -> Vec<bool> {
    let mut out = vec![false; cells.len()];
    for line in 0..lines {
        let at = |k: usize| line * line_step + k * step;
        // Count of set cells in the window [k − d, k + d], kept as the window slides.
        let mut count = (0..=d.min(length.saturating_sub(1)))
            .filter(|&k| cells[at(k)])
            .count();
        for k in 0..length {
            out[at(k)] = count > 0;
            if k + d + 1 < length && cells[at(k + d + 1)] {
                count += 1;
            }
            if k >= d && cells[at(k - d)] {
                count -= 1;
            }
        }
    }
    out
}

/// Mean of `values` where `mask` is set; of all of them when it is set nowhere.
fn mean_over(values: &[f32], mask: &[bool]) -> f64 {
    let (sum, n) = values
        .iter()
        .zip(mask)
        .filter(|&(_, &m)| m)
        .fold((0.0f64, 0usize), |(s, n), (&v, _)| {
            (s + f64::from(v), n + 1)
        });
    match n {
        0 => values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64,
        _ => sum / n as f64,
    }
}

/// IoU of the non-background pixels of two label maps, counting a pixel of both only when
/// the classes agree; 1 when both are empty.
fn iou(a: &[u8], b: &[u8]) -> f64 {
    let (mut both, mut either) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        if x != 0 || y != 0 {
            either += 1;
            both += usize::from(x == y);
        }
    }
    match either {
        0 => 1.0,
        _ => both as f64 / either as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_follows_label_changes_only() {
        // A 6×3 map split into 0 | 1 between columns 2 and 3.
        let labels: Vec<u8> = (0..18).map(|i| u8::from(i % 6 >= 3)).collect();
        let band = boundary_band(&labels, 6, 1);
        let columns: Vec<usize> = (0..6).filter(|&x| band[x]).collect();
        assert_eq!(columns, [1, 2, 3, 4]);
        assert!(boundary_band(&[0; 18], 6, 1).iter().all(|&b| !b));
    }

    #[test]
    fn entropy_peaks_at_an_even_chance() {
        let p = ndarray::Array3::from_shape_vec((1, 1, 3), vec![0.5, 0.999, 0.0]).unwrap();
        let u = uncertainty_map(p.view());
        assert!((u[0] - 1.0).abs() < 1e-6);
        assert!(u[1] < 0.02 && u[2] < 1e-4);
    }

    #[test]
    fn iou_counts_agreeing_objects() {
        assert_eq!(iou(&[0, 1, 1, 0], &[0, 1, 0, 0]), 0.5);
        assert_eq!(iou(&[0, 0], &[0, 0]), 1.0);
        assert_eq!(iou(&[2, 1], &[1, 1]), 0.5);
    }
}
