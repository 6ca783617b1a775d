//! Augmentation that moves masks with images: the same flip and rotation are applied to both
//! (bilinear for the image, nearest-neighbour for the labels); lighting changes only the image.

use rand::RngExt;
use rand::rngs::StdRng;

use crate::dataset::Sample;

/// How strongly to augment; the defaults are the seed lesson's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augmentation {
    /// Probability of a horizontal flip.
    pub flip: f64,
    /// Largest rotation either way, in degrees.
    pub max_rotate_deg: f32,
    /// Largest brightness and contrast change either way (0.05 = ±5%).
    pub lighting: f32,
}

impl Default for Augmentation {
    fn default() -> Self {
        Augmentation {
            flip: 0.5,
            max_rotate_deg: 4.0,
            lighting: 0.05,
        }
    }
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
}

impl Augmentation {
    /// Draws a transform from `rng`.
    pub fn draw(&self, rng: &mut StdRng) -> Transform {
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
        }
    }
}

impl Transform {
    /// `sample` (height × width `size`) transformed; pixels rotated in from outside the image
    /// take the nearest edge pixel, so no label is invented.
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
                let (dx, dy) = (xo - cx, y as f32 - cy);
                let sx = (cos * dx - sin * dy + cx).clamp(0.0, w as f32 - 1.0);
                let sy = (sin * dx + cos * dy + cy).clamp(0.0, h as f32 - 1.0);
                let out = y * w + x;
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
