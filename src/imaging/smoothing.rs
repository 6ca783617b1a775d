//! Temporal smoothing of a stream's probabilities on the model's grid, strong where the
//! picture is still and weak where it moves.
//!
//! Each grid point keeps a share `k` of its previous (smoothed) probability:
//! `p ← k·p_previous + (1 − k)·p`. With plain smoothing `k` is the strength `s` everywhere, an
//! exponential moving average: it steadies a mask that flickers on a still scene, and drags a
//! ghost behind anything that moves. Motion-aware smoothing lowers `k` where the frame's luma
//! (averaged over each grid cell) changed since the last frame: `d` the largest change in the
//! point's 3×3 neighbourhood (the model's edge spreads over a few cells), `k = s` while
//! `d ≤ M/4` (compression and sensor noise), falling linearly to 0 at `d = M`. A model's
//! flicker on a still picture is a change of probability without a change of picture, so it
//! stays smoothed; a moving arm changes the picture where it leaves and arrives, so there the
//! mask follows at once.

use crate::{Error, Result};

/// How a stream's probabilities are smoothed over time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoothing {
    /// The share of the previous probability kept where the picture is still, 0..0.99 (0: off).
    pub strength: f32,
    /// The change of luma (levels of 255, per grid cell) at which nothing is kept; 0: keep
    /// `strength` everywhere, however the picture moves.
    pub motion: f32,
}

impl Smoothing {
    /// No smoothing.
    pub const OFF: Smoothing = Smoothing {
        strength: 0.0,
        motion: 0.0,
    };

    /// The default motion scale: a grid cell whose mean luma moved by this many levels is
    /// not smoothed (chosen by measurement; see docs/camera.md, on `--smooth`).
    pub const MOTION: f32 = 24.0;

    /// Smoothing of `strength` (as given) with the motion scale `motion` from a user.
    ///
    /// # Errors
    /// [`Error::Config`] naming `--smooth-motion` when `motion` is negative or not finite.
    pub fn checked(strength: f32, motion: f32) -> Result<Smoothing> {
        if !(motion >= 0.0 && motion.is_finite()) {
            return Err(Error::Config(
                "--smooth-motion is a change of luma from 0 (ignore motion) to 255".into(),
            ));
        }
        Ok(Smoothing { strength, motion })
    }

    /// Smoothing of `strength` that follows motion at the default scale.
    pub fn following_motion(strength: f32) -> Smoothing {
        Smoothing {
            strength,
            motion: Self::MOTION,
        }
    }

    /// Whether it smooths at all.
    pub fn is_on(&self) -> bool {
        self.strength > 0.0
    }

    /// Whether it needs the frame's luma on the model's grid.
    pub fn follows_motion(&self) -> bool {
        self.is_on() && self.motion > 0.0
    }
}

/// The state of one stream's smoothing: the last probabilities and luma.
pub struct Smoother {
    smoothing: Smoothing,
    previous: Vec<f32>,
    previous_luma: Vec<u8>,
    /// Each grid point's share kept, this frame.
    keep: Vec<f32>,
}

impl Smoother {
    /// A smoother that has seen no frame yet.
    pub fn new(smoothing: Smoothing) -> Self {
        let strength = smoothing.strength.clamp(0.0, 0.99);
        Smoother {
            smoothing: Smoothing {
                strength,
                ..smoothing
            },
            previous: Vec::new(),
            previous_luma: Vec::new(),
            keep: Vec::new(),
        }
    }

    /// Smooths `probabilities` (planes of `[w, h]` grid points, one per class) in place.
    /// `luma` is the frame's luma at the grid's size; without it (or with `motion` 0) every
    /// point keeps the full strength.
    pub fn smooth(&mut self, probabilities: &mut [f32], [w, h]: [usize; 2], luma: Option<&[u8]>) {
        let plane = w * h;
        let fresh = self.previous.len() != probabilities.len();
        let luma = luma.filter(|l| self.smoothing.motion > 0.0 && l.len() == plane);
        match luma.filter(|_| self.previous_luma.len() == plane) {
            Some(luma) => self.keep_where_still(luma, [w, h]),
            None => {
                self.keep.clear();
                self.keep.resize(plane, self.smoothing.strength);
            }
        }
        if let Some(luma) = luma {
            self.previous_luma.clear();
            self.previous_luma.extend_from_slice(luma);
        }
        if !fresh {
            for (class, old) in probabilities
                .chunks_exact_mut(plane)
                .zip(self.previous.chunks_exact(plane))
            {
                for ((p, &old), &k) in class.iter_mut().zip(old).zip(&self.keep) {
                    *p = k * old + (1.0 - k) * *p;
                }
            }
        }
        self.previous.clear();
        self.previous.extend_from_slice(probabilities);
    }

    /// Sets `keep` from the change between the previous and this `luma`: the strength where
    /// the largest change in each point's 3×3 neighbourhood is at most a quarter of the
    /// motion scale, nothing from the scale up, linear between.
    fn keep_where_still(&mut self, luma: &[u8], [w, h]: [usize; 2]) {
        let Smoothing { strength, motion } = self.smoothing;
        let quiet = motion / 4.0;
        let by_change: [f32; 256] = std::array::from_fn(|d| {
            strength * ((motion - d as f32) / (motion - quiet)).clamp(0.0, 1.0)
        });
        let change = picture_change(&self.previous_luma, luma, [w, h]);
        self.keep.clear();
        self.keep
            .extend(change.iter().map(|&d| by_change[usize::from(d)]));
    }
}

/// How much the picture moved at each point of a `[w, h]` grid between two lumas of it: the
/// largest change of luma in the point's 3×3 neighbourhood.
pub fn picture_change(previous: &[u8], luma: &[u8], size: [usize; 2]) -> Vec<u8> {
    let change: Vec<u8> = luma
        .iter()
        .zip(previous)
        .map(|(&a, &b)| a.abs_diff(b))
        .collect();
    neighbourhood_max(&change, size)
}

/// The largest value in each point's 3×3 neighbourhood of a `[w, h]` plane.
fn neighbourhood_max(plane: &[u8], [w, h]: [usize; 2]) -> Vec<u8> {
    // Along each row, then down each column.
    let mut across = vec![0u8; plane.len()];
    for (row, out) in plane.chunks_exact(w).zip(across.chunks_exact_mut(w)) {
        for x in 0..w {
            out[x] = row[x.saturating_sub(1)..(x + 2).min(w)]
                .iter()
                .fold(0, |m, &v| m.max(v));
        }
    }
    let mut out = vec![0u8; plane.len()];
    for y in 0..h {
        let row = &mut out[y * w..(y + 1) * w];
        for r in y.saturating_sub(1)..(y + 2).min(h) {
            for (o, &v) in row.iter_mut().zip(&across[r * w..(r + 1) * w]) {
                *o = (*o).max(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_smoothing_is_an_exponential_moving_average() {
        let mut smoother = Smoother::new(Smoothing {
            strength: 0.5,
            motion: 0.0,
        });
        let mut first = vec![1.0, 0.0];
        smoother.smooth(&mut first, [2, 1], None);
        assert_eq!(first, [1.0, 0.0], "the first frame passes unchanged");
        let mut second = vec![0.0, 1.0];
        smoother.smooth(&mut second, [2, 1], Some(&[0, 255]));
        assert_eq!(second, [0.5, 0.5]);
    }

    #[test]
    fn motion_aware_smoothing_keeps_the_past_only_where_the_picture_is_still() {
        // A 5×1 strip: the picture changes at its right end only.
        let mut smoother = Smoother::new(Smoothing::following_motion(0.8));
        let mut first = vec![0.0; 5];
        smoother.smooth(&mut first, [5, 1], Some(&[100; 5]));
        let mut second = vec![1.0; 5];
        let moved = [100, 102, 100, 100, 200];
        smoother.smooth(&mut second, [5, 1], Some(&moved));
        // Noise of 2 levels keeps the full strength; the moved point and its neighbour follow.
        assert!((second[0] - 0.2).abs() < 1e-6, "{second:?}");
        assert!((second[1] - 0.2).abs() < 1e-6, "{second:?}");
        assert!((second[2] - 0.2).abs() < 1e-6, "{second:?}");
        assert_eq!(second[3], 1.0, "{second:?}");
        assert_eq!(second[4], 1.0, "{second:?}");
    }

    #[test]
    fn the_neighbourhood_maximum_spreads_one_point_each_way() {
        let plane = [0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            neighbourhood_max(&plane, [4, 3]),
            [9, 9, 9, 0, 9, 9, 9, 0, 9, 9, 9, 0]
        );
    }
}
