//! Evaluation: an ONNX model scored against labelled images through exactly `segment`'s
//! runtime path (same pre-processing, session and post-processing). By default predictions are
//! compared at each image's original resolution (probabilities upsampled, then thresholded or
//! arg-maxed); `at_model_size` compares at the model's input size instead.

use std::time::Instant;

use ndarray::Axis;

use std::path::Path;

use gstreamer as gst;

use crate::dataset::{ClassSet, LabelledImage, Pair, read_pair};
use crate::imaging::compose::luma;
use crate::imaging::matte::Matte;
use crate::imaging::postprocess::changed_labels;
use crate::imaging::smoothing::picture_change;
use crate::imaging::{Edge, Postprocessor, Preprocessor, Scaler, Smoothing};
use crate::infer::Segmenter;
use crate::metrics::{BoundaryCounts, Confusion, IGNORE, ObjectCounts, Scores, band_width};
use crate::video::{FrameSource, probe_file};
use crate::{Error, Result};

/// How to score.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Compare at the model's input size instead of the image's.
    pub at_model_size: bool,
    /// Binary threshold on the probability.
    pub threshold: f32,
    /// Binary models at original resolution: score the labels (hard) or the soft alpha that
    /// cut-outs draw, refined along the image's edges, where it is at least half (soft).
    pub edge: Edge,
}

/// One image's result.
#[derive(Debug, Clone)]
pub struct ImageScore {
    /// The image's name.
    pub name: String,
    /// Its pair (to look at it again).
    pub pair: Pair,
    /// Its scores.
    pub scores: Scores,
    /// Its Boundary IoU (`None` when neither mask has a boundary).
    pub boundary_iou: Option<f64>,
}

/// The result over a set of images.
#[derive(Debug)]
pub struct Evaluation {
    /// Every pixel of every image.
    pub total: Confusion,
    /// The boundary bands of every image.
    pub boundary: BoundaryCounts,
    /// Objects found and false regions, binary models only.
    pub objects: Option<ObjectCounts>,
    /// Per image, in input order.
    pub images: Vec<ImageScore>,
    /// Wall time, decoding included.
    pub seconds: f64,
}

impl Evaluation {
    /// Images scored per second of wall time.
    pub fn images_per_s(&self) -> f64 {
        self.images.len() as f64 / self.seconds.max(1e-9)
    }
}

/// An image with its prediction, at the resolution it was scored at.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Width and height.
    pub size: [usize; 2],
    /// Packed RGB.
    pub rgb: Vec<u8>,
    /// Predicted labels.
    pub predicted: Vec<u8>,
    /// True labels.
    pub truth: Vec<u8>,
}

impl Prediction {
    /// The `window` (width, height; the whole where the image is smaller) of this prediction
    /// that holds the most pixels whose predicted label is not the true one (ignored pixels
    /// aside): where the edges go wrong, to look at at 100 %. Searched on a grid of 8 pixels
    /// with a summed-area table.
    pub fn zoomed(&self, window: [usize; 2]) -> Prediction {
        let [w, h] = self.size;
        let [ww, wh] = [window[0].min(w), window[1].min(h)];
        let mut table = vec![0u32; (w + 1) * (h + 1)];
        for y in 0..h {
            let mut row = 0;
            for x in 0..w {
                let (p, t) = (self.predicted[y * w + x], self.truth[y * w + x]);
                row += u32::from(t != IGNORE && p != t);
                table[(y + 1) * (w + 1) + x + 1] = table[y * (w + 1) + x + 1] + row;
            }
        }
        let at = |x: usize, y: usize| table[y * (w + 1) + x];
        let wrong = |&(x, y): &(usize, usize)| {
            at(x + ww, y + wh) + at(x, y) - at(x + ww, y) - at(x, y + wh)
        };
        let (x, y) = (0..=h - wh)
            .step_by(8)
            .flat_map(|y| (0..=w - ww).step_by(8).map(move |x| (x, y)))
            .max_by_key(wrong)
            .unwrap_or((0, 0));
        let crop = |plane: &[u8], channels: usize| -> Vec<u8> {
            (y..y + wh)
                .flat_map(|row| &plane[(row * w + x) * channels..(row * w + x + ww) * channels])
                .copied()
                .collect()
        };
        Prediction {
            size: [ww, wh],
            rgb: crop(&self.rgb, 3),
            predicted: crop(&self.predicted, 1),
            truth: crop(&self.truth, 1),
        }
    }
}

/// Runs a model over labelled images.
pub struct Evaluator<'a> {
    segmenter: &'a mut Segmenter,
    classes: &'a ClassSet,
    options: EvalOptions,
    preprocessor: Preprocessor,
    postprocessor: Postprocessor,
    scaler: Scaler,
    matte: Matte,
}

impl<'a> Evaluator<'a> {
    /// An evaluator of `segmenter` on masks encoded as `classes`.
    ///
    /// # Errors
    /// When the model's class count does not match `classes`.
    pub fn new(
        segmenter: &'a mut Segmenter,
        classes: &'a ClassSet,
        options: EvalOptions,
    ) -> Result<Self> {
        let card = segmenter.card().clone();
        if card.num_classes() != classes.names.len() {
            return Err(Error::Config(format!(
                "the model has {} output classes but the dataset is read as {} ({})",
                card.num_classes(),
                classes.names.len(),
                classes.names.join(", ")
            )));
        }
        Ok(Evaluator {
            segmenter,
            classes,
            options,
            preprocessor: Preprocessor::new(&card),
            postprocessor: Postprocessor::new(options.threshold)
                .with_coverage(options.edge != Edge::Hard && !options.at_model_size),
            scaler: Scaler::default(),
            matte: Matte::default(),
        })
    }

    /// Scores every pair; images are decoded on a second thread while the model runs.
    ///
    /// # Errors
    /// The first unreadable pair, or a failed inference.
    pub fn run(&mut self, pairs: &[Pair]) -> Result<Evaluation> {
        let started = Instant::now();
        let labels = self.classes.label_count();
        let mut total = Confusion::new(labels);
        let mut boundary = BoundaryCounts::new(labels);
        let mut objects = self.classes.is_binary().then(ObjectCounts::default);
        // Binary models are scored on the object's boundary, multi-class ones on every class's.
        let scored: Vec<u8> = match self.classes.is_binary() {
            true => vec![1],
            false => (0..labels).filter_map(|c| u8::try_from(c).ok()).collect(),
        };
        let mut images = Vec::with_capacity(pairs.len());
        let classes = self.classes;
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = crossbeam_channel::bounded(4);
            scope.spawn(move || {
                let mut scaler = Scaler::default();
                for pair in pairs {
                    if tx.send(read_pair(pair, classes, &mut scaler)).is_err() {
                        return;
                    }
                }
            });
            for (pair, image) in pairs.iter().zip(rx) {
                let prediction = self.predict(image?)?;
                let mut confusion = Confusion::new(labels);
                confusion.add(&prediction.truth, &prediction.predicted);
                total.merge(&confusion);
                let mut edges = BoundaryCounts::new(labels);
                let [width, _] = prediction.size;
                let d = band_width(prediction.size);
                edges.add(&prediction.truth, &prediction.predicted, width, d, &scored);
                boundary.merge(&edges);
                if let Some(objects) = &mut objects {
                    objects.add(&prediction.truth, &prediction.predicted, width);
                }
                images.push(ImageScore {
                    name: pair.name(),
                    pair: pair.clone(),
                    scores: confusion.scores(self.classes.names.len()),
                    boundary_iou: edges.iou(),
                });
            }
            Ok(())
        })?;
        Ok(Evaluation {
            total,
            boundary,
            objects,
            images,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The prediction for one decoded image.
    ///
    /// # Errors
    /// A failed inference.
    pub fn predict(&mut self, image: LabelledImage) -> Result<Prediction> {
        let [width, height] = image.size;
        let rgba: Vec<u8> = image
            .rgb
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        let input = self.preprocessor.run(&rgba, width, height);
        let logits = self.segmenter.run(input.insert_axis(Axis(0)).view())?;
        let logits = logits.index_axis(Axis(0), 0);
        if self.options.at_model_size {
            let (_, h, w) = logits.dim();
            let mask = self.postprocessor.run(logits, w, h);
            return Ok(Prediction {
                size: [w, h],
                rgb: self.scaler.rgb(&image.rgb, image.size, [w, h]),
                predicted: mask.labels,
                truth: self.scaler.labels(&image.labels, image.size, [w, h]),
            });
        }
        let mask = self.postprocessor.run(logits, width, height);
        let predicted = match (&mask.coverage, self.options.edge) {
            (Some(coverage), Edge::Soft { feather }) => self
                .matte
                .of_coverage(&luma(&rgba), width, coverage, image.size, feather)
                .into_iter()
                .map(|alpha| u8::from(alpha >= 128))
                .collect(),
            _ => mask.labels,
        };
        Ok(Prediction {
            size: image.size,
            rgb: image.rgb,
            predicted,
            truth: image.labels,
        })
    }
}

/// Mean, median and the `worst` lowest of per-image headline scores (Dice or mean IoU).
pub fn distribution(images: &[ImageScore], worst: usize) -> (f64, f64, Vec<&ImageScore>) {
    let mut sorted: Vec<&ImageScore> = images.iter().collect();
    sorted.sort_by(|a, b| a.scores.headline().total_cmp(&b.scores.headline()));
    let values: Vec<f64> = sorted.iter().map(|i| i.scores.headline()).collect();
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let median = match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    };
    (mean, median, sorted.into_iter().take(worst).collect())
}

/// A grid point stands still between two frames when its luma, and its neighbours', moved by
/// at most this many levels (compression and sensor noise; a quarter of
/// [`Smoothing::MOTION`]).
const STILL_LEVELS: u8 = 6;

/// How steady masks are over a clip, without and with temporal smoothing (lower is steadier).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stability {
    /// Frames compared.
    pub frames: usize,
    /// Flip rate without smoothing: the share of mask pixels whose label changes between
    /// consecutive frames (motion included).
    pub flip_rate: f64,
    /// Flip rate with smoothing.
    pub flip_rate_smoothed: f64,
    /// Blink rate without smoothing: the share of pixels whose label differs from both
    /// neighbouring frames' while those two agree — a flip that comes straight back, which
    /// steady motion does not make (flicker proper).
    pub blink_rate: f64,
    /// Blink rate with smoothing.
    pub blink_rate_smoothed: f64,
    /// Blink rate without smoothing where the picture stands still (over both frame pairs,
    /// [`STILL_LEVELS`]), as a share of such pixels: a model's flicker on a still scene.
    pub still_blink_rate: f64,
    /// The same with smoothing.
    pub still_blink_rate_smoothed: f64,
    /// Share of the pixels that stood still.
    pub still_share: f64,
    /// Lag of the smoothed mask: the share of pixels it still marks as object that the
    /// unsmoothed mask of the same frame no longer does (a ghost trailing motion).
    pub lag_smoothed: f64,
    /// The smoothing used.
    pub smoothing: f32,
    /// Its motion scale (0: plain moving average).
    pub motion: f32,
}

/// Flips and blinks of one sequence of masks.
#[derive(Default)]
struct Steadiness {
    /// The last two masks, older first.
    last: [Vec<u8>; 2],
    flips: u64,
    blinks: u64,
    still_blinks: u64,
}

impl Steadiness {
    /// Counts `mask`'s flips, and the blinks of the mask before it, which stood still where
    /// `still` (of that mask's frame) says.
    fn push(&mut self, mask: Vec<u8>, still: Option<&[bool]>) {
        let [older, last] = &self.last;
        if last.len() == mask.len() {
            self.flips += changed_labels(last, &mask);
        }
        if older.len() == mask.len() {
            let blinking = older
                .iter()
                .zip(last)
                .zip(&mask)
                .map(|((&a, &b), &c)| a == c && b != a);
            for (i, blink) in blinking.enumerate() {
                self.blinks += u64::from(blink);
                self.still_blinks += u64::from(blink && still.is_some_and(|s| s[i]));
            }
        }
        self.last = [std::mem::take(&mut self.last[1]), mask];
    }
}

/// Runs `segmenter` over every frame of `video` and measures mask flicker at the model's
/// size, raw and with `smoothing`.
///
/// # Errors
/// An unreadable clip or a failed inference.
pub fn temporal_stability(
    segmenter: &mut Segmenter,
    video: &Path,
    smoothing: Smoothing,
) -> Result<Stability> {
    let card = segmenter.card().clone();
    let [h, w] = card.input_size;
    let mut preprocessor = Preprocessor::new(&card);
    let mut raw = Postprocessor::new(0.5);
    let mut smoothed = Postprocessor::new(0.5).with_smoothing(smoothing);
    let mut scaler = Scaler::default();
    probe_file(video)?;
    let mut source = FrameSource::file(video)?;
    source.start()?;
    let (mut plain, mut steadied) = (Steadiness::default(), Steadiness::default());
    let (mut lagging, mut frames, mut still_pixels) = (0u64, 0usize, 0u64);
    // The last frame's luma and how it moved from the one before.
    let (mut last_luma, mut last_change) = (None::<Vec<u8>>, None::<Vec<u8>>);
    while let Some(frame) = source.next_frame(gst::ClockTime::from_seconds(10))? {
        let input = preprocessor.run(&frame.pixels, frame.width(), frame.height());
        let logits = segmenter.run(input.insert_axis(Axis(0)).view())?;
        let logits = logits.index_axis(Axis(0), 0);
        let luma = frame.luma_at(&mut scaler, [w, h]);
        let masks = (
            raw.run(logits, w, h).labels,
            smoothed.run_moving(logits, w, h, Some(&luma)).labels,
        );
        lagging += masks
            .0
            .iter()
            .zip(&masks.1)
            .filter(|&(&raw, &smooth)| raw == 0 && smooth != 0)
            .count() as u64;
        let change = last_luma
            .as_ref()
            .map(|last| picture_change(last, &luma, [w, h]));
        // The last frame stood still where it moved little from the frame before and to this.
        let still: Option<Vec<bool>> = last_change.as_ref().zip(change.as_ref()).map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(&a, &b)| a.max(b) <= STILL_LEVELS)
                .collect()
        });
        still_pixels += still.iter().flatten().filter(|&&s| s).count() as u64;
        plain.push(masks.0, still.as_deref());
        steadied.push(masks.1, still.as_deref());
        (last_luma, last_change) = (Some(luma), change);
        frames += 1;
    }
    source.stop();
    let rate = |n: u64, compared: usize| n as f64 / (compared * w * h).max(1) as f64;
    let still_rate = |n: u64| n as f64 / still_pixels.max(1) as f64;
    Ok(Stability {
        frames,
        flip_rate: rate(plain.flips, frames.saturating_sub(1)),
        flip_rate_smoothed: rate(steadied.flips, frames.saturating_sub(1)),
        blink_rate: rate(plain.blinks, frames.saturating_sub(2)),
        blink_rate_smoothed: rate(steadied.blinks, frames.saturating_sub(2)),
        still_blink_rate: still_rate(plain.still_blinks),
        still_blink_rate_smoothed: still_rate(steadied.still_blinks),
        still_share: rate(still_pixels, frames.saturating_sub(2)),
        lag_smoothed: rate(lagging, frames),
        smoothing: smoothing.strength,
        motion: smoothing.motion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zooming_finds_where_the_prediction_goes_wrong_and_keeps_the_planes_aligned() {
        // 64×48: the prediction misses a 10×10 patch at (40, 30) and one stray pixel.
        let [w, h] = [64, 48];
        let truth = vec![1u8; w * h];
        let mut predicted = truth.clone();
        for y in 30..40 {
            predicted[y * w + 40..y * w + 50].fill(0);
        }
        predicted[2 * w + 2] = 0;
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| [i as u8, (i / w) as u8, 0])
            .collect();
        let prediction = Prediction {
            size: [w, h],
            rgb,
            predicted,
            truth,
        };
        let zoomed = prediction.zoomed([16, 16]);
        assert_eq!(zoomed.size, [16, 16]);
        assert_eq!(zoomed.predicted.iter().filter(|&&l| l == 0).count(), 100);
        // The only window on the 8-pixel grid that holds the whole patch starts at (40, 24):
        // the crop's first pixel is the image's pixel there, and the patch's top-left corner
        // is at (0, 6) in the crop.
        assert_eq!(zoomed.rgb[..3], [(24 * w + 40) as u8, 24, 0]);
        assert_eq!(zoomed.predicted[6 * 16 - 1..6 * 16 + 1], [1, 0]);
        assert_eq!(
            prediction.zoomed([100, 100]).size,
            [w, h],
            "a window larger than the image gives the whole image"
        );
    }
}
