//! Object counts of a binary mask, the figures pixel scores hide: how many of the truth's
//! objects (8-connected regions of the object label: a person, or people standing together)
//! the prediction finds, by height, and how many regions it predicts where there is none (a
//! sign or a bollard taken for a person). A small person weighs little in Dice and IoU and
//! counts one here.
//!
//! Uses nothing of the crate but [`IGNORE`].

use serde::Serialize;

use super::IGNORE;

/// Regions of fewer pixels count neither as objects nor as false regions: annotation specks
/// and the fringe resampling leaves.
pub const MIN_PIXELS: usize = 16;

/// An object is found when at least this share of its pixels is predicted as the object.
pub const FOUND_SHARE: f64 = 0.5;

/// Height classes, in pixels of the image as scored: below 16, 16–31, 32–63, 64 and over.
pub const HEIGHT_EDGES: [usize; 3] = [16, 32, 64];

/// Objects found and present for one height class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HeightClass {
    /// Smallest height in the class, in pixels.
    pub min_height: usize,
    /// Largest height in the class (`None`: no bound).
    pub max_height: Option<usize>,
    pub found: u64,
    pub total: u64,
}

/// Object counts summed over images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectCounts {
    /// One entry per height class, smallest first.
    pub by_height: Vec<HeightClass>,
    /// Predicted regions with no pixel on an object (ignored pixels aside).
    pub false_regions: u64,
}

impl Default for ObjectCounts {
    fn default() -> Self {
        let mut bounds = vec![0];
        bounds.extend(HEIGHT_EDGES);
        let by_height = bounds
            .iter()
            .enumerate()
            .map(|(i, &min_height)| HeightClass {
                min_height,
                max_height: HEIGHT_EDGES.get(i).map(|next| next - 1),
                ..HeightClass::default()
            })
            .collect();
        ObjectCounts {
            by_height,
            false_regions: 0,
        }
    }
}

impl ObjectCounts {
    /// Adds one image, `width` pixels a row, with label 1 as the object: each truth object of
    /// at least [`MIN_PIXELS`] is found or missed; each predicted region of at least that many
    /// counted pixels that touches no truth object is a false region. Pixels whose truth is
    /// [`IGNORE`] are part of no object and count toward no false region.
    pub fn add(&mut self, truth: &[u8], predicted: &[u8], width: usize) {
        for object in regions(truth, width, |i| truth[i] == 1) {
            if object.pixels.len() < MIN_PIXELS {
                continue;
            }
            let height = object.height(width);
            let class = HEIGHT_EDGES.iter().take_while(|&&e| height >= e).count();
            let hits = object.pixels.iter().filter(|&&i| predicted[i] == 1).count();
            self.by_height[class].total += 1;
            self.by_height[class].found +=
                u64::from(hits as f64 >= FOUND_SHARE * object.pixels.len() as f64);
        }
        for region in regions(predicted, width, |i| predicted[i] == 1) {
            let on_object = region.pixels.iter().any(|&i| truth[i] == 1);
            let counted = region.pixels.iter().filter(|&&i| truth[i] != IGNORE);
            if !on_object && counted.count() >= MIN_PIXELS {
                self.false_regions += 1;
            }
        }
    }

    /// Objects found and present, over every height.
    pub fn found_of_total(&self) -> (u64, u64) {
        self.by_height
            .iter()
            .fold((0, 0), |(f, t), c| (f + c.found, t + c.total))
    }
}

/// One 8-connected region: its pixel indices, in the order they were reached.
struct Region {
    pixels: Vec<usize>,
}

impl Region {
    fn height(&self, width: usize) -> usize {
        let rows = self.pixels.iter().map(|&i| i / width);
        let (top, bottom) = rows.fold((usize::MAX, 0), |(t, b), r| (t.min(r), b.max(r)));
        bottom + 1 - top
    }
}

/// The 8-connected regions of the pixels of `labels` (row-major, `width` wide) where `inside`
/// holds, by flood fill.
fn regions(labels: &[u8], width: usize, inside: impl Fn(usize) -> bool) -> Vec<Region> {
    let height = labels.len() / width.max(1);
    let mut seen = vec![false; labels.len()];
    let mut found = Vec::new();
    for start in 0..width * height {
        if seen[start] || !inside(start) {
            continue;
        }
        seen[start] = true;
        let (mut pixels, mut next) = (Vec::new(), vec![start]);
        while let Some(i) = next.pop() {
            pixels.push(i);
            let (x, y) = (i % width, i / width);
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let j = ny * width + nx;
                    if !seen[j] && inside(j) {
                        seen[j] = true;
                        next.push(j);
                    }
                }
            }
        }
        found.push(Region { pixels });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `width`×`height` image of zeros with `value` over the rectangle `x0..x1` × `y0..y1`.
    fn paint(labels: &mut [u8], width: usize, [x0, x1, y0, y1]: [usize; 4], value: u8) {
        for y in y0..y1 {
            labels[y * width + x0..y * width + x1].fill(value);
        }
    }

    #[test]
    fn objects_are_found_by_height_and_false_regions_counted() {
        let width = 40;
        let mut truth = vec![0u8; width * 80];
        paint(&mut truth, width, [1, 5, 1, 11], 1); // 4×10: a small person
        paint(&mut truth, width, [10, 14, 1, 21], 1); // 4×20
        paint(&mut truth, width, [20, 24, 1, 71], 1); // 4×70: a large one
        paint(&mut truth, width, [30, 32, 1, 3], 1); // 4 pixels: a speck, not counted
        paint(&mut truth, width, [30, 40, 60, 80], IGNORE);
        let mut predicted = vec![0u8; width * 80];
        paint(&mut predicted, width, [1, 5, 1, 6], 1); // half of the small one: found
        paint(&mut predicted, width, [10, 14, 1, 9], 1); // 8 of 20 rows: missed
        paint(&mut predicted, width, [20, 24, 1, 71], 1);
        paint(&mut predicted, width, [26, 30, 30, 34], 1); // 16 pixels on nothing: false
        paint(&mut predicted, width, [33, 37, 62, 70], 1); // on ignored pixels only
        paint(&mut predicted, width, [6, 9, 40, 43], 1); // 9 pixels: too small to count

        let mut counts = ObjectCounts::default();
        counts.add(&truth, &predicted, width);
        let found: Vec<(u64, u64)> = counts
            .by_height
            .iter()
            .map(|c| (c.found, c.total))
            .collect();
        assert_eq!(found, [(1, 1), (0, 1), (0, 0), (1, 1)]);
        assert_eq!(counts.false_regions, 1);
        assert_eq!(counts.found_of_total(), (2, 3));
        assert_eq!(
            (
                counts.by_height[1].min_height,
                counts.by_height[1].max_height
            ),
            (16, Some(31))
        );
        assert_eq!(counts.by_height[3].max_height, None);

        // A second image adds to the counts.
        counts.add(&truth, &predicted, width);
        assert_eq!((counts.found_of_total(), counts.false_regions), ((4, 6), 2));
    }

    #[test]
    fn diagonal_neighbours_make_one_region() {
        // Two 4×4 squares touching at a corner are one object of height 8.
        let width = 8;
        let mut truth = vec![0u8; width * 8];
        paint(&mut truth, width, [0, 4, 0, 4], 1);
        paint(&mut truth, width, [4, 8, 4, 8], 1);
        let regions = regions(&truth, width, |i| truth[i] == 1);
        assert_eq!(regions.len(), 1);
        assert_eq!((regions[0].pixels.len(), regions[0].height(width)), (32, 8));
    }
}
