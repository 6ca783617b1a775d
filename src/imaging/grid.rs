//! A model's grid laid over the frame: [`Grid`] up-samples a plane of the model's size to the
//! frame's bilinearly (pixel centres aligned), [`interpolate`] gives one pixel's value, and
//! [`Coverage`] is the up-sampled object coverage a binary model hands to the matte. The lowest
//! room of post-processing: `postprocess` and `matte` use it; it uses neither.

/// A binary model's object coverage at frame size: the up-sampled probability through the
/// contrast curve of `matte::coverage` (128 at the threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Row-major, 0..=255.
    pub values: Vec<u8>,
    /// Frame pixels per model pixel (the larger of the two axes).
    pub cell: f32,
}

/// Where output pixel `out` of `to` falls between grid points of `from` (pixel centres
/// aligned): the two neighbours and the weight of the second.
pub(super) fn bilinear_taps(from: usize, to: usize) -> Vec<(usize, usize, f32)> {
    let scale = from as f32 / to as f32;
    (0..to)
        .map(|out| {
            let at = ((out as f32 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f32);
            let first = at.floor() as usize;
            (first, (first + 1).min(from - 1), at - first as f32)
        })
        .collect()
}

/// The bilinear value at `corners` (indices into `plane`: top left, top right, bottom left,
/// bottom right) with their `weights`.
pub(super) fn interpolate(plane: &[f32], corners: [usize; 4], weights: [f32; 4]) -> f32 {
    corners
        .iter()
        .zip(weights)
        .map(|(&c, weight)| plane[c] * weight)
        .sum()
}

/// A model's grid (`[w, h]`) laid over a frame (`[width, height]`) for bilinear up-sampling.
pub(super) struct Grid {
    size: [usize; 2],
    out: [usize; 2],
    rows: Vec<(usize, usize, f32)>,
    /// Runs of output columns between the same two grid columns: (left, right, first, end).
    runs: Vec<(usize, usize, usize, usize)>,
    columns: Vec<(usize, usize, f32)>,
}

impl Grid {
    pub(super) fn new(size: [usize; 2], out: [usize; 2]) -> Self {
        let columns = bilinear_taps(size[0], out[0]);
        let mut runs: Vec<(usize, usize, usize, usize)> = Vec::new();
        for (x, &(left, right, _)) in columns.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if run.0 == left => run.3 = x + 1,
                _ => runs.push((left, right, x, x + 1)),
            }
        }
        Grid {
            size,
            out,
            rows: bilinear_taps(size[1], out[1]),
            runs,
            columns,
        }
    }

    /// Up-samples `coarse` values on the grid into `values` at the frame's size: where the four
    /// grid points around a pixel hold the same value, that value; elsewhere `between` of the
    /// corners and their bilinear weights. Rows between the same two grid rows share their
    /// settled part, which is worked out once.
    pub(super) fn upsample(
        &self,
        coarse: &[u8],
        values: &mut [u8],
        mut between: impl FnMut([usize; 4], [f32; 4]) -> u8,
    ) {
        self.upsample_where(
            coarse,
            values,
            |_| true,
            |_, corners, weights| between(corners, weights),
        );
    }

    /// [`Grid::upsample`] where only grid values for which `settles` holds can settle a pixel,
    /// and `between` also gets the pixel's position (x, y).
    pub(super) fn upsample_where(
        &self,
        coarse: &[u8],
        values: &mut [u8],
        settles: impl Fn(u8) -> bool,
        mut between: impl FnMut([usize; 2], [usize; 4], [f32; 4]) -> u8,
    ) {
        let (w, width) = (self.size[0], self.out[0]);
        let mut settled = vec![0u8; width];
        let mut band: Vec<(usize, usize, usize, usize)> = Vec::new();
        let mut pair = None;
        let rows = self.rows.iter().zip(values.chunks_exact_mut(width));
        for (y, (&(top, bottom, fy), row)) in rows.enumerate() {
            if pair != Some((top, bottom)) {
                pair = Some((top, bottom));
                band.clear();
                for &(left, right, first, end) in &self.runs {
                    let corners = [top * w + left, top * w + right, bottom * w + left];
                    let value = coarse[bottom * w + right];
                    if settles(value) && corners.iter().all(|&c| coarse[c] == value) {
                        settled[first..end].fill(value);
                    } else {
                        band.push((left, right, first, end));
                    }
                }
            }
            row.copy_from_slice(&settled);
            for &(left, right, first, end) in &band {
                let corners = [
                    top * w + left,
                    top * w + right,
                    bottom * w + left,
                    bottom * w + right,
                ];
                for (x, value) in (first..end).zip(&mut row[first..end]) {
                    let fx = self.columns[x].2;
                    let weights = [
                        (1.0 - fx) * (1.0 - fy),
                        fx * (1.0 - fy),
                        (1.0 - fx) * fy,
                        fx * fy,
                    ];
                    *value = between([x, y], corners, weights);
                }
            }
        }
    }
}
