//! One-group 2-D convolution on contiguous f32 N×C×H×W data as matrix products over each
//! image's column matrix (im2col), forward and backward, the images spread over the cores.
//!
//! An image's column matrix has one row per (input channel, kernel row, kernel column) and one
//! column per output pixel. The weight, in burn's own Cout×Cin×kh×kw order, is already the
//! Cout × (Cin·kh·kw) matrix that multiplies it, and the product is the output in N×C×H×W order:
//! nothing is reordered. Each row is a copy of input rows (whole runs at stride 1). burn 0.22
//! instead converts the input to channels-last on one core, builds columns per 512-pixel tile
//! and scatters each tile's product back; its input gradient is a transposed convolution.
//! Backward, the weight gradient is the output gradient times the transpose of the column
//! matrix, rebuilt per image. The input gradient at stride 1 is the forward convolution of the
//! output gradient with the kernel turned half a turn; at larger strides it is the weight's
//! transpose times the output gradient, added back into place (col2im).

use std::ops::Range;

use gemm::Parallelism;
use rayon::prelude::*;

use super::flex_data::planes;

/// The size a tile's column matrix aims at: it stays in the core's cache between being
/// written and multiplied.
const TILE_BYTES: usize = 512 * 1024;

/// The sizes of one undilated convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub images: usize,
    pub channels_in: usize,
    pub channels_out: usize,
    /// Input height and width.
    pub input: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Padding before and after, for height and width.
    pub padding: [(usize, usize); 2],
}

impl Geometry {
    /// Output height and width.
    pub fn output(&self) -> [usize; 2] {
        [0, 1].map(|d| {
            let (before, after) = self.padding[d];
            (self.input[d] + before + after - self.kernel[d]) / self.stride[d] + 1
        })
    }

    fn image_len(&self) -> usize {
        self.channels_in * self.input[0] * self.input[1]
    }

    fn pixels_out(&self) -> usize {
        let [h, w] = self.output();
        h * w
    }

    /// Rows of the column matrix: the weight's length per output channel.
    fn taps(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    /// One channel per group, as many out as in.
    pub fn is_depthwise(&self, groups: usize) -> bool {
        groups == self.channels_in && self.channels_out == self.channels_in
    }

    /// A 1×1 kernel at stride 1 without padding: the image is its own column matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [(0, 0); 2]
    }

    /// At stride 1 with padding under the kernel's size: the convolution whose output is this
    /// one's input gradient, from its output gradient and [`Geometry::flipped`] weight (for a
    /// pointwise kernel, the weight's transpose times the output gradient).
    fn transposed(&self) -> Option<Geometry> {
        let [(top, bottom), (left, right)] = self.padding;
        let [kh, kw] = self.kernel;
        let fits = top < kh && bottom < kh && left < kw && right < kw;
        (self.stride == [1, 1] && fits).then(|| Geometry {
            channels_in: self.channels_out,
            channels_out: self.channels_in,
            input: self.output(),
            padding: [
                (kh - 1 - top, kh - 1 - bottom),
                (kw - 1 - left, kw - 1 - right),
            ],
            ..*self
        })
    }

    /// The weight of [`Geometry::transposed`]: input and output channels swapped, the kernel
    /// turned half a turn.
    fn flipped(&self, weight: &[f32]) -> Vec<f32> {
        let [kh, kw] = self.kernel;
        let (taps, (c_in, c_out)) = (kh * kw, (self.channels_in, self.channels_out));
        let mut flipped = vec![0.0; weight.len()];
        for (index, value) in flipped.iter_mut().enumerate() {
            let (ci, co, tap) = (index / (c_out * taps), index / taps % c_out, index % taps);
            *value = weight[(co * c_in + ci) * taps + taps - 1 - tap];
        }
        flipped
    }

    /// Output rows per tile: as many as keep a tile's column matrix near `TILE_BYTES`.
    fn tile_rows(&self) -> usize {
        let [ho, wo] = self.output();
        (TILE_BYTES / (4 * self.taps() * wo).max(1)).clamp(1, ho.max(1))
    }

    /// The output rows, tile by tile.
    fn tiles(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let (rows, step) = (self.output()[0], self.tile_rows());
        (0..rows)
            .step_by(step)
            .map(move |start| start..(start + step).min(rows))
    }

    /// A tile's column-matrix buffer (none when the image is its own).
    fn column_buffer(&self) -> Vec<f32> {
        if self.is_pointwise() {
            Vec::new()
        } else {
            vec![0.0; self.taps() * self.tile_rows() * self.output()[1]]
        }
    }

    /// The weight as the Cout × (Cin·kh·kw) matrix it is stored as.
    fn weight<'a>(&self, weight: &'a [f32]) -> Matrix<'a> {
        Matrix::new(weight, self.channels_out, self.taps(), self.taps())
    }

    /// Cores for each product: all of them when there are fewer images than cores, else one
    /// per image.
    fn parallelism(&self) -> Parallelism {
        if self.images < rayon::current_num_threads() {
            Parallelism::Rayon(0)
        } else {
            Parallelism::None
        }
    }
}

/// The convolution of `x` (N×Cin×H×W) with `weight` (Cout×Cin×kh×kw), plus `bias` (Cout)
/// when given: N×Cout×Ho×Wo.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, geometry: &Geometry) -> Vec<f32> {
    let g = geometry;
    let pixels = g.pixels_out();
    // The products are added to the bias, written first.
    let mut out = planes(g.images * g.channels_out, pixels, |i, plane| {
        if let Some(bias) = bias {
            plane.fill(bias[i % g.channels_out]);
        }
    });
    out.par_chunks_mut(g.channels_out * pixels)
        .zip(x.par_chunks(g.image_len()))
        .for_each_init(
            || g.column_buffer(),
            |buffer, (out, image)| {
                for rows in g.tiles() {
                    let start = rows.start * g.output()[1];
                    let columns = columns(image, g, rows, buffer);
                    product(
                        &mut out[start..],
                        pixels,
                        bias.is_some(),
                        g.weight(weight),
                        columns,
                        g,
                    );
                }
            },
        );
    out
}

/// The gradients of `x` and of `weight` from the output gradient `grad` (N×Cout×Ho×Wo), each
/// when `wanted`.
pub fn backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    geometry: &Geometry,
    [want_x, want_weight]: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let dx = want_x.then(|| input_gradient(weight, grad, None, geometry));
    let dw = want_weight.then(|| weight_gradient(x, grad, geometry));
    (dx, dw)
}

/// dX, plus `bias` (Cin) when given (a transposed convolution's forward pass). At stride 1 it
/// is a convolution of the output gradient, each value a product with Cout·kh·kw terms;
/// otherwise `col2im(Wᵀ · dY)`, products with Cout terms added back window by window.
pub fn input_gradient(
    weight: &[f32],
    grad: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
) -> Vec<f32> {
    if let Some(transposed) = g.transposed() {
        return forward(grad, &g.flipped(weight), bias, &transposed);
    }
    let (taps, pixels, wo) = (g.taps(), g.pixels_out(), g.output()[1]);
    let plane = g.input[0] * g.input[1];
    let mut dx = planes(g.images * g.channels_in, plane, |i, plane| {
        if let Some(bias) = bias {
            plane.fill(bias[i % g.channels_in]);
        }
    });
    dx.par_chunks_mut(g.image_len())
        .zip(grad.par_chunks(g.channels_out * pixels))
        .for_each_init(
            || g.column_buffer(),
            |buffer, (dx, grad)| {
                for rows in g.tiles() {
                    let (start, len) = (rows.start * wo, rows.len() * wo);
                    let grad = Matrix::new(&grad[start..], g.channels_out, len, pixels);
                    product(buffer, len, false, g.weight(weight).transposed(), grad, g);
                    add_columns(&buffer[..taps * len], g, rows, dx);
                }
            },
        );
    dx
}

/// dW = Σ over images of dY · columnsᵀ.
pub fn weight_gradient(x: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    let (taps, pixels, wo) = (g.taps(), g.pixels_out(), g.output()[1]);
    let weight_len = g.channels_out * taps;
    x.par_chunks(g.image_len())
        .zip(grad.par_chunks(g.channels_out * pixels))
        .fold(
            || (g.column_buffer(), vec![0.0; weight_len]),
            |(mut buffer, mut dw), (image, grad)| {
                for rows in g.tiles() {
                    let (start, len) = (rows.start * wo, rows.len() * wo);
                    let grad = Matrix::new(&grad[start..], g.channels_out, len, pixels);
                    let columns = columns(image, g, rows, &mut buffer);
                    product(&mut dw, taps, true, grad, columns.transposed(), g);
                }
                (buffer, dw)
            },
        )
        .map(|(_, dw)| dw)
        .reduce(
            || vec![0.0; weight_len],
            |mut sum, part| {
                sum.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
                sum
            },
        )
}

/// A matrix stored row by row (rows `stride` values apart), or the transpose of one.
#[derive(Clone, Copy)]
struct Matrix<'a> {
    values: &'a [f32],
    rows: usize,
    cols: usize,
    stride: usize,
    transposed: bool,
}

impl<'a> Matrix<'a> {
    /// `rows`×`cols` values from the start of `values`, rows `stride` apart.
    fn new(values: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(
            rows == 0 || (rows - 1) * stride + cols <= values.len(),
            "a {rows}×{cols} matrix with rows {stride} apart needs more than {} values",
            values.len()
        );
        Self {
            values,
            rows,
            cols,
            stride,
            transposed: false,
        }
    }

    fn transposed(self) -> Self {
        Self {
            transposed: !self.transposed,
            ..self
        }
    }

    /// Rows and columns as used.
    fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// Column and row strides as used, in gemm's terms.
    fn strides(&self) -> (isize, isize) {
        let stride = self.stride as isize;
        if self.transposed {
            (stride, 1)
        } else {
            (1, stride)
        }
    }
}

/// `lhs · rhs` into `dst` (rows `dst_stride` apart), or added to it when `accumulate`.
fn product(
    dst: &mut [f32],
    dst_stride: usize,
    accumulate: bool,
    lhs: Matrix,
    rhs: Matrix,
    g: &Geometry,
) {
    let ((m, k), (inner, n)) = (lhs.shape(), rhs.shape());
    assert!(
        k == inner && (m == 0 || (m - 1) * dst_stride + n <= dst.len()),
        "matrix sizes disagree: {m}×{k} · {inner}×{n} into {} values",
        dst.len()
    );
    let (lhs_cs, lhs_rs) = lhs.strides();
    let (rhs_cs, rhs_rs) = rhs.strides();
    // SAFETY: `Matrix::new` and the assertion above keep every index gemm forms from these
    // sizes and strides inside the three slices; `dst` is borrowed mutably, apart from both.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            lhs.values.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.values.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            g.parallelism(),
        );
    }
}

/// The column matrix of one image's output `rows`: a view of the image for a pointwise
/// kernel, else `buffer` filled.
fn columns<'a>(
    image: &'a [f32],
    g: &Geometry,
    rows: Range<usize>,
    buffer: &'a mut [f32],
) -> Matrix<'a> {
    let wo = g.output()[1];
    let len = rows.len() * wo;
    if g.is_pointwise() {
        return Matrix::new(&image[rows.start * wo..], g.taps(), len, g.pixels_out());
    }
    let stride = g.stride[1];
    for_each_segment(g, rows, |segment| {
        buffer[segment.line.start..segment.inside.start].fill(0.0);
        buffer[segment.inside.end..segment.line.end].fill(0.0);
        let (dst, source) = (&mut buffer[segment.inside], &image[segment.source..]);
        if stride == 1 {
            dst.copy_from_slice(&source[..dst.len()]);
        } else {
            for (dst, src) in dst.iter_mut().zip(source.iter().step_by(stride)) {
                *dst = *src;
            }
        }
    });
    Matrix::new(buffer, g.taps(), len, len)
}

/// Adds the column matrix of output `rows` back onto the image `dx` (col2im).
fn add_columns(columns: &[f32], g: &Geometry, rows: Range<usize>, dx: &mut [f32]) {
    let stride = g.stride[1];
    for_each_segment(g, rows, |segment| {
        let (values, target) = (&columns[segment.inside], &mut dx[segment.source..]);
        if stride == 1 {
            for (dst, src) in target[..values.len()].iter_mut().zip(values) {
                *dst += *src;
            }
        } else {
            for (dst, src) in target.iter_mut().step_by(stride).zip(values) {
                *dst += *src;
            }
        }
    });
}

/// One output row of one column-matrix row.
struct Segment {
    /// Its place in the column matrix.
    line: Range<usize>,
    /// The part of `line` whose window lies inside the image (the rest is padding).
    inside: Range<usize>,
    /// Where in the image the first value of `inside` comes from; the next ones follow at the
    /// horizontal stride.
    source: usize,
}

/// Each column-matrix row's segments for output `rows`, in order.
fn for_each_segment(g: &Geometry, rows: Range<usize>, mut f: impl FnMut(Segment)) {
    let [h, w] = g.input;
    let [ho, wo] = g.output();
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [(ph, _), (pw, _)] = g.padding;
    let mut start = 0;
    for row in 0..g.taps() {
        let (channel, i, j) = (row / (kh * kw), row / kw % kh, row % kw);
        let (reached_rows, cols) = (reached(i, sh, ph, h, ho), reached(j, sw, pw, w, wo));
        for oh in rows.clone() {
            let (inside, source) = if reached_rows.contains(&oh) && !cols.is_empty() {
                let source = channel * h * w + (oh * sh + i - ph) * w + cols.start * sw + j - pw;
                (start + cols.start..start + cols.end, source)
            } else {
                (start..start, 0)
            };
            f(Segment {
                line: start..start + wo,
                inside,
                source,
            });
            start += wo;
        }
    }
}

/// The output positions whose window puts kernel offset `k` inside the input:
/// `0 ≤ o·stride + k − padding < len_in` (`padding` before the input).
pub(super) fn reached(
    k: usize,
    stride: usize,
    padding: usize,
    len_in: usize,
    len_out: usize,
) -> Range<usize> {
    let first = padding.saturating_sub(k).div_ceil(stride);
    let end = if len_in + padding <= k {
        0
    } else {
        ((len_in + padding - k - 1) / stride + 1).min(len_out)
    };
    first..end.max(first)
}
