//! Boundary IoU (Cheng et al., 2021): the IoU of the bands along each mask's contour, so that
//! a score moves with the quality of the edges rather than with the bulk of large objects. A
//! band is the mask's pixels within `d` (chessboard distance) of its contour, the image's edge
//! counting as contour, exactly what eroding the mask `d` times with a 3×3 square takes away;
//! `d` is 2 % of the image's diagonal.

use super::IGNORE;

/// The band width for an image of `[width, height]`: 2 % of its diagonal, at least a pixel.
pub fn band_width([width, height]: [usize; 2]) -> usize {
    let diagonal = ((width * width + height * height) as f64).sqrt();
    ((0.02 * diagonal).round() as usize).max(1)
}

/// Which pixels of `class` in `labels` (row-major, `width` wide) lie within `d` of the class's
/// contour: each pixel's chessboard distance to the nearest pixel outside the class (or outside
/// the image), by the two-pass chamfer transform, compared with `d`.
pub fn band(labels: &[u8], class: u8, width: usize, d: usize) -> Vec<bool> {
    let height = labels.len() / width.max(1);
    let mut distance: Vec<usize> = labels
        .iter()
        .map(|&l| if l == class { usize::MAX } else { 0 })
        .collect();
    // Outside the image is outside the class: distance 0.
    let at = |distance: &[usize], x: isize, y: isize| -> usize {
        if x < 0 || y < 0 || x >= width as isize || y >= height as isize {
            0
        } else {
            distance[y as usize * width + x as usize]
        }
    };
    let passes: [(&[(isize, isize)], bool); 2] = [
        (&[(-1, 0), (-1, -1), (0, -1), (1, -1)], true),
        (&[(1, 0), (1, 1), (0, 1), (-1, 1)], false),
    ];
    for (neighbours, forward) in passes {
        for step in 0..width * height {
            let i = if forward {
                step
            } else {
                width * height - 1 - step
            };
            if distance[i] == 0 {
                continue;
            }
            let (x, y) = ((i % width) as isize, (i / width) as isize);
            let nearest = neighbours
                .iter()
                .map(|&(dx, dy)| at(&distance, x + dx, y + dy))
                .min()
                .unwrap_or(0);
            distance[i] = distance[i].min(nearest.saturating_add(1));
        }
    }
    distance.iter().map(|&v| v != 0 && v <= d).collect()
}

/// Boundary intersections and unions per class, summed over images.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundaryCounts {
    intersection: Vec<u64>,
    union: Vec<u64>,
}

impl BoundaryCounts {
    /// Empty counts over `classes` labels.
    pub fn new(classes: usize) -> Self {
        BoundaryCounts {
            intersection: vec![0; classes],
            union: vec![0; classes],
        }
    }

    /// Adds one image of `width` pixels a row, for each of `scored` classes, with bands `d`
    /// wide; pixels whose truth is [`IGNORE`] count nowhere.
    pub fn add(&mut self, truth: &[u8], predicted: &[u8], width: usize, d: usize, scored: &[u8]) {
        for &class in scored {
            let (t, p) = (
                band(truth, class, width, d),
                band(predicted, class, width, d),
            );
            let c = usize::from(class);
            for ((&t, &p), &label) in t.iter().zip(&p).zip(truth) {
                if label == IGNORE {
                    continue;
                }
                self.intersection[c] += u64::from(t && p);
                self.union[c] += u64::from(t || p);
            }
        }
    }

    /// Adds every count of `other` (same classes).
    pub fn merge(&mut self, other: &BoundaryCounts) {
        for (a, b) in self.intersection.iter_mut().zip(&other.intersection) {
            *a += b;
        }
        for (a, b) in self.union.iter_mut().zip(&other.union) {
            *a += b;
        }
    }

    /// Boundary IoU: the mean over the classes with a boundary in truth or prediction; `None`
    /// when there is none at all.
    pub fn iou(&self) -> Option<f64> {
        let scores: Vec<f64> = self
            .intersection
            .iter()
            .zip(&self.union)
            .filter(|&(_, &union)| union > 0)
            .map(|(&i, &u)| i as f64 / u as f64)
            .collect();
        (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 6×6 image holding a rectangle of ones over `columns` × `rows`.
    fn rectangle(
        columns: std::ops::RangeInclusive<usize>,
        rows: std::ops::RangeInclusive<usize>,
    ) -> Vec<u8> {
        (0..36)
            .map(|i| u8::from(columns.contains(&(i % 6)) && rows.contains(&(i / 6))))
            .collect()
    }

    #[test]
    fn the_band_is_what_erosion_takes_away() {
        // A 4×4 square: with d = 1 its ring of 12 pixels; the image's edge is contour too.
        let square = rectangle(1..=4, 1..=4);
        let ring = band(&square, 1, 6, 1);
        assert_eq!(ring.iter().filter(|&&b| b).count(), 12);
        assert!(!ring[2 * 6 + 2] && !ring[3 * 6 + 3] && ring[6 + 1] && ring[4 * 6 + 4]);
        let at_edge = rectangle(2..=5, 1..=4);
        let ring = band(&at_edge, 1, 6, 1);
        assert_eq!(ring.iter().filter(|&&b| b).count(), 12);
        assert!(
            ring[2 * 6 + 5] && !ring[2 * 6 + 4],
            "the image's edge bounds the mask"
        );
        assert_eq!(band(&square, 1, 6, 2).iter().filter(|&&b| b).count(), 16);
    }

    #[test]
    fn hand_worked_boundary_iou() {
        // Two 4×4 squares one column apart: the rings share rows 1 and 4 at columns 2–4
        // (6 pixels) of 12 + 12 − 6 = 18.
        let (truth, predicted) = (rectangle(1..=4, 1..=4), rectangle(2..=5, 1..=4));
        let mut counts = BoundaryCounts::new(2);
        counts.add(&truth, &predicted, 6, 1, &[1]);
        assert_eq!(counts.iou(), Some(6.0 / 18.0));
        let mut same = BoundaryCounts::new(2);
        same.add(&truth, &truth, 6, 1, &[1]);
        assert_eq!(same.iou(), Some(1.0));
        let mut none = BoundaryCounts::new(2);
        none.add(&[0; 36], &[0; 36], 6, 1, &[1]);
        assert_eq!(none.iou(), None);
        counts.merge(&same);
        assert_eq!(counts.iou(), Some((6.0 + 12.0) / (18.0 + 12.0)));
    }

    #[test]
    fn ignored_pixels_count_nowhere_and_the_band_follows_the_diagonal() {
        let truth = rectangle(1..=4, 1..=4);
        let mut ignored = truth.clone();
        ignored[6 + 1] = IGNORE;
        let mut counts = BoundaryCounts::new(2);
        counts.add(&ignored, &truth, 6, 1, &[1]);
        // The ignored pixel is outside the truth's mask (so its inner neighbour joins the
        // truth's band) and counts nowhere: 11 pixels shared of 12.
        assert_eq!(counts.iou(), Some(11.0 / 12.0));
        assert_eq!(band_width([960, 540]), 22);
        assert_eq!(band_width([10, 10]), 1);
    }
}
