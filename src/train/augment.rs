//! Augmentation that moves masks with images: the same flip, rotation and zoom are applied to
//! both (bilinear for the image, nearest-neighbour for the labels); lighting changes only the
//! image. Copy-paste cuts objects out of other training images with their masks and pastes
//! them, scaled and flipped, into the image: the labels follow the pasted pixels exactly.

use rand::RngExt;
use rand::rngs::StdRng;

use crate::dataset::Sample;
use crate::metrics::IGNORE;

/// Smallest object (in pixels at the training size) worth pasting.
const MIN_OBJECT_PIXELS: usize = 64;

/// How strongly to augment; the defaults are the seed lesson's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augmentation {
    /// Probability of a horizontal flip.
    pub flip: f64,
    /// Largest rotation either way, in degrees.
    pub max_rotate_deg: f32,
    /// Largest brightness and contrast change either way (0.05 = ±5%).
    pub lighting: f32,
    /// Zoom range, drawn log-uniformly: above 1 crops in, below 1 shrinks the image (the
    /// border is black and ignored), so objects appear at many sizes. `[1, 1]` = off.
    #[serde(default = "no_zoom")]
    pub zoom: [f32; 2],
    /// Objects pasted in from other images (`None` = off).
    #[serde(default)]
    pub paste: Option<CopyPaste>,
}

fn no_zoom() -> [f32; 2] {
    [1.0, 1.0]
}

impl Default for Augmentation {
    fn default() -> Self {
        Augmentation {
            flip: 0.5,
            max_rotate_deg: 4.0,
            lighting: 0.05,
            zoom: no_zoom(),
            paste: None,
        }
    }
}

/// Copy-paste augmentation: the objects of a donor image (its pixels of `labels`) are cut out
/// with their mask, scaled to a drawn share of the frame height, maybe flipped, and pasted at
/// a random place.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CopyPaste {
    /// Share of images that get pasted objects.
    pub probability: f64,
    /// Most donors pasted into one image.
    pub max_objects: usize,
    /// Height of a pasted object as a share of the frame height (least, most), drawn
    /// log-uniformly.
    pub height: [f32; 2],
    /// Labels that make up objects.
    pub labels: Vec<u8>,
}

/// One draw of the random transform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Mirror left–right.
    pub flip: bool,
    /// Rotation in degrees, counter-clockwise.
    pub rotate_deg: f32,
    /// Added to every channel (in 0..1 units).
    pub brightness: f32,
    /// Contrast factor around mid-grey.
    pub contrast: f32,
    /// Zoom factor (above 1 = closer).
    pub zoom: f32,
    /// Offset of the view's centre, in pixels (x, y).
    pub shift: [f32; 2],
}

impl Augmentation {
    /// Draws a transform for an image of `size` (height, width) from `rng`.
    pub fn draw(&self, rng: &mut StdRng, [h, w]: [usize; 2]) -> Transform {
        let zoom = log_uniform(rng, self.zoom);
        // As far as the view can move with the image still filling it (zoom in) or with all of
        // it still in view (zoom out).
        let reach = (1.0 - 1.0 / zoom).abs() / 2.0;
        let mut offset = |side: usize| match reach > 0.0 {
            true => rng.random_range(-reach..=reach) * side as f32,
            false => 0.0,
        };
        let shift = [offset(w), offset(h)];
        let mut spread = |max: f32| {
            if max > 0.0 {
                rng.random_range(-max..=max)
            } else {
                0.0
            }
        };
        let rotate_deg = spread(self.max_rotate_deg);
        let brightness = spread(self.lighting);
        let contrast = 1.0 + spread(self.lighting);
        Transform {
            flip: self.flip > 0.0 && rng.random_bool(self.flip),
            rotate_deg,
            brightness,
            contrast,
            zoom,
            shift,
        }
    }
}

/// A draw in `[low, high]` whose logarithm is uniform (as likely to halve as to double).
fn log_uniform(rng: &mut StdRng, [low, high]: [f32; 2]) -> f32 {
    if high > low {
        rng.random_range(low.ln()..=high.ln()).exp()
    } else {
        low
    }
}

impl Transform {
    /// `sample` (height × width `size`) transformed; pixels brought in from outside the image
    /// are black and ignored (label [`IGNORE`]), so no label is invented.
    pub fn apply(&self, sample: &Sample, [h, w]: [usize; 2]) -> Sample {
        let (sin, cos) = self.rotate_deg.to_radians().sin_cos();
        let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
        let mut rgb = vec![0u8; h * w * 3];
        let mut labels = vec![0u8; h * w];
        let lut = self.lighting_table();
        for y in 0..h {
            for x in 0..w {
                let xo = if self.flip { w - 1 - x } else { x } as f32;
                // Inverse rotation: where in the source this output pixel comes from.
                let (dx, dy) = ((xo - cx) / self.zoom, (y as f32 - cy) / self.zoom);
                let sx = cos * dx - sin * dy + cx + self.shift[0];
                let sy = sin * dx + cos * dy + cy + self.shift[1];
                let out = y * w + x;
                let outside = |v: f32, side: usize| v < -0.5 || v > side as f32 - 0.5;
                if outside(sx, w) || outside(sy, h) {
                    labels[out] = IGNORE;
                    continue;
                }
                let (sx, sy) = (sx.clamp(0.0, w as f32 - 1.0), sy.clamp(0.0, h as f32 - 1.0));
                labels[out] = sample.labels[sy.round() as usize * w + sx.round() as usize];
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                for c in 0..3 {
                    let at = |yy: usize, xx: usize| f32::from(sample.rgb[(yy * w + xx) * 3 + c]);
                    let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                    let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                    let value = (top * (1.0 - fy) + bottom * fy).round() as usize;
                    rgb[out * 3 + c] = lut[value.min(255)];
                }
            }
        }
        Sample {
            name: sample.name.clone(),
            rgb,
            labels,
        }
    }

    /// Brightness and contrast as a lookup table over 0..=255.
    fn lighting_table(&self) -> [u8; 256] {
        std::array::from_fn(|v| {
            let v = v as f32 / 255.0;
            let lit = (v - 0.5) * self.contrast + 0.5 + self.brightness;
            (lit.clamp(0.0, 1.0) * 255.0).round() as u8
        })
    }
}

impl CopyPaste {
    /// The samples holding an object worth pasting.
    pub fn donors(&self, samples: &[Sample]) -> Vec<usize> {
        samples
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.labels.iter().filter(|l| self.labels.contains(l)).count() >= MIN_OBJECT_PIXELS
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Pastes the objects of up to `max_objects` donors (indices into `samples`) into `sample`
    /// (height × width `size`).
    pub fn apply(
        &self,
        sample: &mut Sample,
        samples: &[Sample],
        donors: &[usize],
        size: [usize; 2],
        rng: &mut StdRng,
    ) {
        if donors.is_empty() || !rng.random_bool(self.probability) {
            return;
        }
        for _ in 0..rng.random_range(1..=self.max_objects.max(1)) {
            let donor = &samples[donors[rng.random_range(0..donors.len())]];
            self.paste_one(sample, donor, size, rng);
        }
    }

    fn paste_one(&self, sample: &mut Sample, donor: &Sample, [h, w]: [usize; 2], rng: &mut StdRng) {
        let Some([top, left, bottom, right]) = self.bounds(donor, w) else {
            return;
        };
        let (box_h, box_w) = ((bottom - top + 1) as f32, (right - left + 1) as f32);
        let height = log_uniform(rng, self.height) * h as f32;
        let scale = (height / box_h).min(w as f32 / box_w);
        let (out_h, out_w) = (
            ((box_h * scale).round() as usize).clamp(1, h),
            ((box_w * scale).round() as usize).clamp(1, w),
        );
        let flip = rng.random_bool(0.5);
        let y0 = rng.random_range(0..=h - out_h);
        let x0 = rng.random_range(0..=w - out_w);
        for y in 0..out_h {
            let sy = top + ((y as f32 + 0.5) / scale) as usize;
            for x in 0..out_w {
                let xx = if flip { out_w - 1 - x } else { x };
                let sx = left + ((xx as f32 + 0.5) / scale) as usize;
                let from = sy.min(bottom) * w + sx.min(right);
                let label = donor.labels[from];
                if !self.labels.contains(&label) {
                    continue;
                }
                let to = (y0 + y) * w + x0 + x;
                sample.labels[to] = label;
                sample.rgb[to * 3..to * 3 + 3].copy_from_slice(&donor.rgb[from * 3..from * 3 + 3]);
            }
        }
    }

    /// The box (top, left, bottom, right, inclusive) around `donor`'s object pixels.
    fn bounds(&self, donor: &Sample, width: usize) -> Option<[usize; 4]> {
        let mut found: Option<[usize; 4]> = None;
        for (i, label) in donor.labels.iter().enumerate() {
            if *label == IGNORE || !self.labels.contains(label) {
                continue;
            }
            let (y, x) = (i / width, i % width);
            found = Some(match found {
                None => [y, x, y, x],
                Some([t, l, b, r]) => [t.min(y), l.min(x), b.max(y), r.max(x)],
            });
        }
        found
    }
}
