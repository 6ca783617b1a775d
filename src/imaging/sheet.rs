//! Contact sheets for looking at results: one row per image, holding the image, the predicted
//! mask overlaid on it and the true mask overlaid on it.

use image::RgbImage;

use crate::metrics::IGNORE;

/// White space between cells, in pixels.
const GAP: u32 = 4;
/// Weight of the class colour in an overlay.
const TINT: f32 = 0.5;

/// One row of a sheet: an image and two label maps of its size.
pub struct SheetRow<'a> {
    /// Width and height.
    pub size: [usize; 2],
    /// Packed RGB.
    pub rgb: &'a [u8],
    /// Predicted labels.
    pub predicted: &'a [u8],
    /// True labels ([`IGNORE`] pixels are left untinted).
    pub truth: &'a [u8],
}

/// Colours labels: for a binary task label 1 takes `colors[0]`; otherwise label `l` takes
/// `colors[l]`. Label 0 of a binary task and ignored pixels stay untinted.
#[derive(Debug, Clone)]
pub struct LabelColors {
    colors: Vec<Option<[u8; 3]>>,
}

impl LabelColors {
    /// The colouring for a model whose classes have `colors`.
    pub fn new(colors: &[[u8; 3]]) -> Self {
        let colors = if colors.len() == 1 {
            vec![None, Some(colors[0])]
        } else {
            colors.iter().copied().map(Some).collect()
        };
        LabelColors { colors }
    }

    /// `rgb` with each pixel tinted by its label's colour.
    pub fn overlay(&self, rgb: &[u8], labels: &[u8]) -> Vec<u8> {
        let mut out = rgb.to_vec();
        for (px, &label) in out.chunks_exact_mut(3).zip(labels) {
            if label == IGNORE {
                continue;
            }
            if let Some(Some(color)) = self.colors.get(usize::from(label)) {
                for (v, &c) in px.iter_mut().zip(color) {
                    *v = (f32::from(*v) * (1.0 - TINT) + f32::from(c) * TINT).round() as u8;
                }
            }
        }
        out
    }

    /// A grid of images of one size (width, height), each with its labels overlaid, `columns`
    /// across.
    pub fn grid(&self, cells: &[(&[u8], &[u8])], [w, h]: [usize; 2], columns: usize) -> RgbImage {
        let columns = columns.clamp(1, cells.len().max(1));
        let rows = cells.len().div_ceil(columns).max(1);
        let (w, h) = (w as u32, h as u32);
        let mut grid = RgbImage::from_pixel(
            columns as u32 * (w + GAP) + GAP,
            rows as u32 * (h + GAP) + GAP,
            image::Rgb([255; 3]),
        );
        for (i, (rgb, labels)) in cells.iter().enumerate() {
            let cell = RgbImage::from_raw(w, h, self.overlay(rgb, labels))
                .expect("a cell matches its size");
            let left = GAP + (i % columns) as u32 * (w + GAP);
            let top = GAP + (i / columns) as u32 * (h + GAP);
            image::imageops::replace(&mut grid, &cell, i64::from(left), i64::from(top));
        }
        grid
    }

    /// A sheet of `rows`: image | predicted overlay | true overlay.
    pub fn sheet(&self, rows: &[SheetRow<'_>]) -> RgbImage {
        let width = rows.iter().map(|r| r.size[0] as u32).max().unwrap_or(1);
        let height: u32 = rows.iter().map(|r| r.size[1] as u32 + GAP).sum::<u32>() + GAP;
        let mut sheet =
            RgbImage::from_pixel(width * 3 + GAP * 4, height.max(1), image::Rgb([255; 3]));
        let mut top = GAP;
        for row in rows {
            let [w, h] = [row.size[0] as u32, row.size[1] as u32];
            let cells = [
                row.rgb.to_vec(),
                self.overlay(row.rgb, row.predicted),
                self.overlay(row.rgb, row.truth),
            ];
            for (column, cell) in cells.into_iter().enumerate() {
                let cell = RgbImage::from_raw(w, h, cell).expect("a cell matches its size");
                let left = GAP + column as u32 * (width + GAP);
                image::imageops::replace(&mut sheet, &cell, i64::from(left), i64::from(top));
            }
            top += h + GAP;
        }
        sheet
    }
}
