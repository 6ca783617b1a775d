//! Soft alpha for cut-outs: the model's up-sampled foreground probability, sharpened by a
//! contrast curve around the threshold and refined at frame resolution by a guided filter
//! (He, Sun and Tang, "Guided Image Filtering", 2013) that takes the frame's luma as its guide,
//! so the alpha's transitions move onto the frame's own edges instead of following the model's
//! coarse grid.
//!
//! The guided filter fits, in each window of radius r, the alpha as an affine function of the
//! guide, `q = a·I + b`: `a = cov(I, p) ÷ (var(I) + ε)`, `b = mean(p) − a·mean(I)`, then
//! averages `a` and `b` over the windows covering each pixel. Where the guide is flat, `a` is 0
//! and the alpha is the window's mean probability (a feathered edge `r` pixels wide); where the
//! guide has an edge that the probability also crosses, the alpha steps with the guide. A second
//! contrast curve around 0.5 clears what remains of the probability's ramp beside such a step.
//! It runs
//! as the fast guided filter (He and Sun, 2015): the windows' statistics on a picture shrunk by
//! `s`, only `q = a·I + b` at full size, with `a` and `b` grown back bilinearly, and only along
//! the object's boundary: elsewhere the alpha is 0 or 255 (see [`Matte::alpha`]).

use std::borrow::Cow;

use super::grid::{Coverage, Grid, interpolate};
use super::resize::Scaler;

/// How a cut-out's edge is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Edge {
    /// Alpha 0 or 255, from the thresholded mask.
    Hard,
    /// Partial alpha along the edge, from the probability refined by the frame's edges.
    Soft {
        /// Radius of the refinement in frame pixels (the transition's width where the frame
        /// has no edge to follow); `None`: one model pixel's size in frame pixels, at least 2.
        feather: Option<f32>,
    },
}

impl Default for Edge {
    fn default() -> Self {
        Edge::Soft { feather: None }
    }
}

/// Gain of the contrast curves, `0.5 + g·(p − t)` clamped, applied to the probability before
/// refinement and to the refined alpha. The bilinear up-sampling spreads the model's boundary
/// over about two model pixels: the first curve narrows that ramp; the second clears the haze
/// the filter leaves on either side of an edge it follows (its windows also see the ramp).
const CONTRAST: f32 = 2.0;
/// The guided filter's ε for a guide in 0..1: edges of lower contrast than about √ε are
/// smoothed over rather than followed (sensor noise stays well below).
const EPSILON: f32 = 1e-3;

/// A window whose object share is within this of 0 or 1 holds only background or only object
/// (the running sums leave rounding residue of about 1e-7).
const SETTLED: f32 = 1.0 / 512.0;

/// Computes soft alphas; one per compositor (it owns scratch planes).
#[derive(Default)]
pub struct Matte {
    scaler: Scaler,
    /// Low-resolution planes: guide, probability, and the products and statistics.
    guide: Vec<f32>,
    input: Vec<f32>,
    product: Vec<f32>,
    square: Vec<f32>,
    scratch: Vec<f32>,
    sums: Vec<f32>,
    /// The object's share of each window of the hard mask (coverage ≥ 128), low resolution.
    object: Vec<f32>,
}

impl Matte {
    /// [`Matte::alpha`] of a mask's `coverage`, over `feather` frame pixels (default: one
    /// model pixel, at least 2).
    pub fn of_coverage(
        &mut self,
        guide: &[u8],
        stride: usize,
        coverage: &Coverage,
        size: [usize; 2],
        feather: Option<f32>,
    ) -> Vec<u8> {
        let radius = feather.unwrap_or(coverage.cell.max(2.0));
        self.alpha(guide, stride, &coverage.values, size, radius)
    }

    /// The alpha (0..=255, row-major at `size`) of the foreground of `coverage` (see
    /// [`coverage`]), refined along `guide` (the frame's luma, rows `stride` bytes apart) over
    /// `radius` frame pixels.
    pub fn alpha(
        &mut self,
        guide: &[u8],
        stride: usize,
        coverage: &[u8],
        size: [usize; 2],
        radius: f32,
    ) -> Vec<u8> {
        let [width, height] = size;
        // Statistics on a picture shrunk at least by 2, so that the window keeps a radius of
        // 1 or 2 there.
        let step = ((radius / 2.0).round() as usize).max(2);
        let small_radius = ((radius / step as f32).round() as usize).max(1);
        let small = [width.div_ceil(step), height.div_ceil(step)];
        let guide_plane: Cow<'_, [u8]> = match stride == width {
            true => Cow::Borrowed(&guide[..width * height]),
            false => Cow::Owned(
                (0..height)
                    .flat_map(|y| &guide[y * stride..][..width])
                    .copied()
                    .collect(),
            ),
        };
        for (plane, out) in [
            (&*guide_plane, &mut self.guide),
            (coverage, &mut self.input),
        ] {
            let shrunk = self.scaler.gray(plane, size, small);
            out.clear();
            out.extend(shrunk.iter().map(|&v| f32::from(v) / 255.0));
        }
        self.product.clear();
        self.product
            .extend(self.guide.iter().zip(&self.input).map(|(i, p)| i * p));
        self.square.clear();
        self.square.extend(self.guide.iter().map(|i| i * i));
        for plane in [
            &mut self.guide,
            &mut self.input,
            &mut self.product,
            &mut self.square,
        ] {
            box_mean(
                plane,
                small,
                small_radius,
                &mut self.scratch,
                &mut self.sums,
            );
        }
        // The means become a (in `product`) and b (in `input`).
        for (((mean_i, mean_p), corr_ip), corr_ii) in self
            .guide
            .iter()
            .zip(self.input.iter_mut())
            .zip(self.product.iter_mut())
            .zip(&self.square)
        {
            let a = (*corr_ip - mean_i * *mean_p) / (corr_ii - mean_i * mean_i + EPSILON);
            *corr_ip = a;
            *mean_p -= a * mean_i;
        }
        box_mean(
            &mut self.product,
            small,
            small_radius,
            &mut self.scratch,
            &mut self.sums,
        );
        box_mean(
            &mut self.input,
            small,
            small_radius,
            &mut self.scratch,
            &mut self.sums,
        );
        self.object_shares(coverage, size, small, small_radius);
        // `a`, `b` and the object's share grow back bilinearly, each pixel's only where the
        // share is not settled around it: partial alpha only where the window holds both
        // object and background, along the hard mask's boundary. A faint probability that
        // never reaches the threshold leaves no haze, and a hole that never drops below it
        // none.
        let settled: Vec<u8> = self
            .object
            .iter()
            .map(|&share| match share {
                s if s < SETTLED => 0,
                s if s > 1.0 - SETTLED => 255,
                _ => 128,
            })
            .collect();
        let mut alpha = vec![0u8; width * height];
        let (slope, offset, object) = (&self.product, &self.input, &self.object);
        Grid::new(small, size).upsample_where(
            &settled,
            &mut alpha,
            |value| value != 128,
            |[x, y], corners, weights| {
                let share = interpolate(object, corners, weights);
                if share < SETTLED {
                    return 0;
                }
                if share > 1.0 - SETTLED {
                    return 255;
                }
                let (a, b) = (
                    interpolate(slope, corners, weights),
                    interpolate(offset, corners, weights),
                );
                let i = f32::from(guide[y * stride + x]) / 255.0;
                let q = 0.5 + CONTRAST * (a * i + b - 0.5);
                (q.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
            },
        );
        alpha
    }

    /// Sets `object` (at `small`) to the share of the hard mask (coverage ≥ 128) that is
    /// object in the filter's window around each pixel, computed as the filter's statistics
    /// are, on the picture shrunk to `small`.
    fn object_shares(
        &mut self,
        coverage: &[u8],
        size: [usize; 2],
        small: [usize; 2],
        small_radius: usize,
    ) {
        let hard: Vec<u8> = coverage
            .iter()
            .map(|&c| if c >= 128 { 255 } else { 0 })
            .collect();
        let shrunk = self.scaler.gray(&hard, size, small);
        self.object.clear();
        self.object
            .extend(shrunk.iter().map(|&v| f32::from(v) / 255.0));
        box_mean(
            &mut self.object,
            small,
            small_radius,
            &mut self.scratch,
            &mut self.sums,
        );
    }
}

/// The first contrast curve: the foreground's coverage (0..=255, 128 at the threshold) for the
/// probability `p` of the binary `threshold`, as the post-processor hands it to the matte.
pub fn coverage(p: f32, threshold: f32) -> u8 {
    ((0.5 + CONTRAST * (p - threshold)).clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

/// For each position along a side of `length`, 1 ÷ the number of points of the window of
/// `radius` around it that lie on the side.
fn window_weights(length: usize, radius: usize) -> Vec<f32> {
    (0..length)
        .map(|i| 1.0 / ((i + radius).min(length - 1) - i.saturating_sub(radius) + 1) as f32)
        .collect()
}

/// Replaces `plane` (of `size`) by its mean over the (2r+1)² window around each point, the
/// window cut at the borders, with running sums along rows and then down columns. `scratch`
/// and `sums` are reused buffers.
fn box_mean(
    plane: &mut [f32],
    size: [usize; 2],
    radius: usize,
    scratch: &mut Vec<f32>,
    sums: &mut Vec<f32>,
) {
    let [width, height] = size;
    let (across, down) = (
        window_weights(width, radius),
        window_weights(height, radius),
    );
    scratch.clear();
    scratch.resize(plane.len(), 0.0);
    for (row, out) in plane
        .chunks_exact(width)
        .zip(scratch.chunks_exact_mut(width))
    {
        let mut sum: f32 = row[..=radius.min(width - 1)].iter().sum();
        for (x, (value, weight)) in out.iter_mut().zip(&across).enumerate() {
            *value = sum * weight;
            if let Some(entering) = row.get(x + radius + 1) {
                sum += entering;
            }
            if x >= radius {
                sum -= row[x - radius];
            }
        }
    }
    sums.clear();
    sums.resize(width, 0.0);
    for row in scratch.chunks_exact(width).take(radius + 1) {
        sums.iter_mut().zip(row).for_each(|(sum, v)| *sum += v);
    }
    for (y, (out, weight)) in plane.chunks_exact_mut(width).zip(&down).enumerate() {
        out.iter_mut()
            .zip(sums.iter())
            .for_each(|(value, sum)| *value = sum * weight);
        if let Some(entering) = scratch.chunks_exact(width).nth(y + radius + 1) {
            sums.iter_mut().zip(entering).for_each(|(sum, v)| *sum += v);
        }
        if y >= radius {
            let leaving = &scratch[(y - radius) * width..][..width];
            sums.iter_mut().zip(leaving).for_each(|(sum, v)| *sum -= v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_mean_averages_the_window_cut_at_the_borders() {
        let mut plane: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let (mut scratch, mut sums) = (Vec::new(), Vec::new());
        box_mean(&mut plane, [4, 3], 1, &mut scratch, &mut sums);
        // Corner (0,0): mean of 0,1,4,5; centre (1,1): mean of 0,1,2,4,5,6,8,9,10.
        assert!((plane[0] - 2.5).abs() < 1e-5, "{plane:?}");
        assert!((plane[5] - 5.0).abs() < 1e-5, "{plane:?}");
        assert!((plane[11] - 8.5).abs() < 1e-5, "{plane:?}");
    }

    /// A disk on a background, its probability as a model's coarse grid up-sampled gives it: a
    /// blocky ramp. The refined alpha lies closer to the disk's true coverage than the hard
    /// mask does, and steps where the picture steps.
    #[test]
    fn alpha_follows_the_pictures_edge_closer_than_the_hard_mask() {
        let size = [160usize, 120];
        let (cx, cy, r) = (80.0f32, 60.0, 37.3);
        let inside = |x: usize, y: usize| {
            ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt() < r
        };
        let guide: Vec<u8> = (0..size[0] * size[1])
            .map(|i| {
                if inside(i % size[0], i / size[0]) {
                    200
                } else {
                    60
                }
            })
            .collect();
        // The probability on an 8× coarser grid, grown back bilinearly.
        let coarse_size = [20usize, 15];
        let coarse: Vec<f32> = (0..300)
            .map(|i| {
                let (bx, by) = (i % 20, i / 20);
                let hits = (0..64)
                    .filter(|k| inside(bx * 8 + k % 8, by * 8 + k / 8))
                    .count();
                hits as f32 / 64.0
            })
            .collect();
        let mut grown = vec![0.0; size[0] * size[1]];
        Scaler::default().plane(&coarse, coarse_size, &mut grown, size);
        let probability: Vec<u8> = grown.iter().map(|&p| coverage(p, 0.5)).collect();
        let alpha = Matte::default().alpha(&guide, size[0], &probability, size, 4.0);
        let truth: Vec<f32> = (0..size[0] * size[1])
            .map(|i| f32::from(u8::from(inside(i % size[0], i / size[0]))))
            .collect();
        let error = |values: &mut dyn Iterator<Item = f32>| -> f32 {
            values.zip(&truth).map(|(v, t)| (v - t).abs()).sum::<f32>()
        };
        let hard = error(&mut probability.iter().map(|&p| f32::from(u8::from(p >= 128))));
        let soft = error(&mut alpha.iter().map(|&a| f32::from(a) / 255.0));
        assert!(soft < 0.5 * hard, "soft {soft} hard {hard}");
        // Away from the edge the alpha is exactly 0 or 255.
        assert_eq!(alpha[0], 0);
        assert_eq!(alpha[60 * size[0] + 80], 255);
        // With no edge in the picture to follow, the edge is feathered: partial alpha in a band
        // a few pixels wide around the probability's threshold, rising outwards-in.
        let flat = vec![128u8; guide.len()];
        let feathered = Matte::default().alpha(&flat, size[0], &probability, size, 4.0);
        let row = &feathered[60 * size[0]..][..size[0]];
        let partial: Vec<usize> = (0..80).filter(|&x| (1..255).contains(&row[x])).collect();
        assert!((3..=12).contains(&partial.len()), "{row:?}");
        assert!(
            partial.iter().all(|&x| (x as f32 - (cx - r)).abs() < 8.0),
            "{row:?}"
        );
        assert!(row[..80].windows(2).all(|w| w[0] <= w[1]), "{row:?}");
    }
}
