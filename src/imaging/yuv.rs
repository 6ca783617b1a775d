//! Colour in the decoder's format: frames that stay I420 from the appsink to the appsrc are
//! drawn on in YUV. The conversion follows the frame's colorimetry (matrix and range):
//!
//! ```text
//! Y' = Kr·R + (1 − Kr − Kb)·G + Kb·B           (0..1)
//! Pb = (B − Y') / (2·(1 − Kb)),  Pr = (R − Y') / (2·(1 − Kr))    (−½..½)
//! Y = y_offset + y_scale·Y',  U = c_offset + c_scale·Pb,  V = c_offset + c_scale·Pr
//! ```
//!
//! (limited range: y_offset 16, y_scale 219, c_offset 128, c_scale 224; full range: 0, 255,
//! 128, 255). The conversion is affine, so a tint of colour C at opacity α,
//! `RGB' = (1 − α)·RGB + α·C`, is the same blend in YUV: `YUV' = (1 − α)·YUV + α·YUV(C)`. With
//! chroma shared by a 2×2 block of which a fraction `c` is tinted, the block's chroma after
//! tinting its pixels one by one in RGB and subsampling is `UV' = UV + α·c·(UV(C) − UV)`.

use std::borrow::Cow;

use gstreamer_video as gst_video;

use super::resize::{Scaler, fitted_size};

/// The YUV ↔ RGB conversion of one colorimetry, for 8-bit samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuvMatrix {
    kr: f32,
    kb: f32,
    y_offset: f32,
    y_scale: f32,
    c_offset: f32,
    c_scale: f32,
}

impl YuvMatrix {
    /// The conversion of `colorimetry` (BT.601 for an unknown matrix, as GStreamer assumes for
    /// standard definition).
    pub fn new(colorimetry: &gst_video::VideoColorimetry) -> Self {
        let (kr, kb) = colorimetry.matrix().kr_kb().unwrap_or((0.299, 0.114));
        let full = colorimetry.range() == gst_video::VideoColorRange::Range0_255;
        let (y_offset, y_scale, c_scale) = if full {
            (0.0, 255.0, 255.0)
        } else {
            (16.0, 219.0, 224.0)
        };
        YuvMatrix {
            kr: kr as f32,
            kb: kb as f32,
            y_offset,
            y_scale,
            c_offset: 128.0,
            c_scale,
        }
    }

    /// Y, U and V (rounded) of an RGB colour.
    pub fn from_rgb(&self, [r, g, b]: [u8; 3]) -> [u8; 3] {
        let [r, g, b] = [r, g, b].map(|v| f32::from(v) / 255.0);
        let y = self.kr * r + (1.0 - self.kr - self.kb) * g + self.kb * b;
        let pb = (b - y) / (2.0 * (1.0 - self.kb));
        let pr = (r - y) / (2.0 * (1.0 - self.kr));
        [
            self.y_offset + self.y_scale * y,
            self.c_offset + self.c_scale * pb,
            self.c_offset + self.c_scale * pr,
        ]
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
    }

    /// The conversion to RGB, as lookup tables.
    pub fn tables(&self) -> RgbTables {
        // R = Y' + 2(1 − Kr)·Pr, B = Y' + 2(1 − Kb)·Pb, G = (Y' − Kr·R − Kb·B) ÷ (1 − Kr − Kb).
        let kg = 1.0 - self.kr - self.kb;
        let (r_pr, b_pb) = (2.0 * (1.0 - self.kr), 2.0 * (1.0 - self.kb));
        let table = |f: &dyn Fn(f32) -> f32| std::array::from_fn(|i| 255.0 * f(i as f32));
        let luma = |y: f32| (y - self.y_offset) / self.y_scale;
        let chroma = |c: f32| (c - self.c_offset) / self.c_scale;
        RgbTables {
            luma: table(&|y| luma(y)),
            r_from_v: table(&|v| r_pr * chroma(v)),
            g_from_u: table(&|u| -self.kb * b_pb * chroma(u) / kg),
            g_from_v: table(&|v| -self.kr * r_pr * chroma(v) / kg),
            b_from_u: table(&|u| b_pb * chroma(u)),
        }
    }
}

/// YUV → RGB of one colorimetry as terms looked up per sample (0..255 scale).
#[derive(Debug, Clone)]
pub struct RgbTables {
    luma: [f32; 256],
    r_from_v: [f32; 256],
    g_from_u: [f32; 256],
    g_from_v: [f32; 256],
    b_from_u: [f32; 256],
}

impl RgbTables {
    /// R, G and B (0..255, not rounded) of a YUV sample.
    #[inline]
    pub fn rgb(&self, y: u8, u: u8, v: u8) -> [f32; 3] {
        let (y, u, v) = (usize::from(y), usize::from(u), usize::from(v));
        let luma = self.luma[y];
        [
            luma + self.r_from_v[v],
            luma + self.g_from_u[u] + self.g_from_v[v],
            luma + self.b_from_u[u],
        ]
        .map(|c| c.clamp(0.0, 255.0))
    }
}

/// I420 `pixels` laid out as `layout` as packed RGBA (opaque), converted with `matrix`; each
/// chroma sample serves its 2×2 block.
pub fn i420_to_rgba(pixels: &[u8], layout: &I420Layout, matrix: &YuvMatrix) -> Vec<u8> {
    let tables = matrix.tables();
    let [width, height] = layout.size;
    let mut rgba = Vec::with_capacity(width * height * 4);
    for y in 0..height {
        let (luma, u, v) = (
            layout.row(pixels, 0, y),
            layout.row(pixels, 1, y / 2),
            layout.row(pixels, 2, y / 2),
        );
        for (x, &l) in luma.iter().enumerate() {
            let [r, g, b] = tables.rgb(l, u[x / 2], v[x / 2]);
            rgba.extend_from_slice(&[r.round() as u8, g.round() as u8, b.round() as u8, 255]);
        }
    }
    rgba
}

/// Where the planes of an I420 picture lie in its bytes (GStreamer's layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I420Layout {
    /// Width and height of the luma plane.
    pub size: [usize; 2],
    /// Byte offset of the Y, U and V planes.
    pub offsets: [usize; 3],
    /// Row stride of the Y, U and V planes.
    pub strides: [usize; 3],
}

impl I420Layout {
    /// The layout `info` (an I420 geometry) describes.
    pub fn new(info: &gst_video::VideoInfo) -> Self {
        I420Layout {
            size: [info.width() as usize, info.height() as usize],
            offsets: std::array::from_fn(|plane| info.offset()[plane]),
            strides: std::array::from_fn(|plane| info.stride()[plane] as usize),
        }
    }

    /// Width and height of plane `plane` (0 = Y, 1 = U, 2 = V).
    pub fn plane_size(&self, plane: usize) -> [usize; 2] {
        match plane {
            0 => self.size,
            _ => self.size.map(|side| side.div_ceil(2)),
        }
    }

    /// Bytes the picture takes (up to the end of its last plane).
    pub fn byte_len(&self) -> usize {
        self.offsets[2] + self.strides[2] * self.plane_size(2)[1]
    }

    /// Plane `plane` of `pixels`, its rows packed without padding (borrowed when they are).
    pub fn packed_plane<'a>(&self, pixels: &'a [u8], plane: usize) -> Cow<'a, [u8]> {
        let [width, height] = self.plane_size(plane);
        let start = self.offsets[plane];
        if self.strides[plane] == width {
            return Cow::Borrowed(&pixels[start..start + width * height]);
        }
        Cow::Owned(
            (0..height)
                .flat_map(|y| {
                    let row = start + y * self.strides[plane];
                    pixels[row..row + width].iter().copied()
                })
                .collect(),
        )
    }

    /// Row `y` of plane `plane` of `pixels`.
    pub fn row<'a>(&self, pixels: &'a [u8], plane: usize, y: usize) -> &'a [u8] {
        let start = self.offsets[plane] + y * self.strides[plane];
        &pixels[start..start + self.plane_size(plane)[0]]
    }
}

/// Blends the pixels whose label has a colour (Y, U, V) in `colors` towards it at `alpha`
/// (0..=256 of 256), in place, in I420 `pixels` laid out as `layout`: luma per pixel, chroma
/// per 2×2 block by the share of the block that is touched (see the module's note). `alpha`
/// 256 replaces.
pub fn blend_i420(
    pixels: &mut [u8],
    layout: &I420Layout,
    labels: &[u8],
    colors: &[Option<[u8; 3]>],
    alpha: u32,
) {
    let mut touched = [None; 256];
    touched[..colors.len()].copy_from_slice(colors);
    let width = layout.size[0];
    let keep = 256 - alpha;
    for (y, row_labels) in labels.chunks_exact(width).enumerate() {
        let row = layout.offsets[0] + y * layout.strides[0];
        let luma = &mut pixels[row..row + width];
        for (value, &label) in luma.iter_mut().zip(row_labels) {
            if let Some([to, ..]) = touched[usize::from(label)] {
                *value = match alpha {
                    256 => to,
                    _ => ((u32::from(*value) * keep + u32::from(to) * alpha + 128) >> 8) as u8,
                };
            }
        }
    }
    for_each_block(labels, layout.size, |bx, by, block| {
        let block = block.map(|label| touched[usize::from(label)]);
        let count = block.iter().flatten().count() as i32;
        if count == 0 {
            return;
        }
        for plane in 1..3 {
            let at = layout.offsets[plane] + by * layout.strides[plane] + bx;
            let value = i32::from(pixels[at]);
            let sum: i32 = block.iter().flatten().map(|c| i32::from(c[plane])).sum();
            // value + (Σ towards − count·value)·α ÷ (4 · 256), rounded half away from 0.
            let pull = sum - count * value;
            let shift = (pull * alpha as i32 + 512 * pull.signum()) / 1024;
            pixels[at] = (value + shift).clamp(0, 255) as u8;
        }
    });
}

/// Calls `visit(bx, by, samples)` for each 2×2 block of the row-major per-pixel `values` of
/// `size` (the blocks of a 4:2:0 chroma sample), its samples top-left, top-right,
/// bottom-left, bottom-right. A block on an odd edge repeats its last column or row, so the
/// share it gives is the same as a whole block's.
fn for_each_block(values: &[u8], size: [usize; 2], mut visit: impl FnMut(usize, usize, [u8; 4])) {
    let [width, height] = size;
    for by in 0..height.div_ceil(2) {
        let top = &values[2 * by * width..][..width];
        let bottom = &values[(2 * by + 1).min(height - 1) * width..][..width];
        for bx in 0..width.div_ceil(2) {
            let (left, right) = (2 * bx, (2 * bx + 1).min(width - 1));
            visit(bx, by, [top[left], top[right], bottom[left], bottom[right]]);
        }
    }
}

/// Blends I420 `pixels` towards `picture` (the same layout, `layout`) by 255 − the object's
/// `alpha` (0..=255 per pixel, row-major): luma per pixel, chroma per 2×2 block by the block's
/// mean background share, as for a tint (see the module's note).
pub fn blend_towards_picture(pixels: &mut [u8], layout: &I420Layout, picture: &[u8], alpha: &[u8]) {
    let width = layout.size[0];
    for (y, row_alpha) in alpha.chunks_exact(width).enumerate() {
        let row = layout.offsets[0] + y * layout.strides[0];
        let (luma, to) = (&mut pixels[row..row + width], &picture[row..row + width]);
        for ((value, &to), &a) in luma.iter_mut().zip(to).zip(row_alpha) {
            if a < 255 {
                let a = u32::from(a);
                *value = ((u32::from(*value) * a + u32::from(to) * (255 - a) + 127) / 255) as u8;
            }
        }
    }
    for_each_block(alpha, layout.size, |bx, by, block| {
        // The block's background share, 0..=1020 (four pixels of 0..=255).
        let share: u32 = block.iter().map(|&a| 255 - u32::from(a)).sum();
        if share == 0 {
            return;
        }
        for plane in 1..3 {
            let at = layout.offsets[plane] + by * layout.strides[plane] + bx;
            let (value, to) = (u32::from(pixels[at]), u32::from(picture[at]));
            pixels[at] = ((value * (1020 - share) + to * share + 510) / 1020) as u8;
        }
    });
}

/// An I420 picture laid out as `layout`, every pixel the colour `yuv`.
pub fn solid_i420(layout: &I420Layout, yuv: [u8; 3]) -> Vec<u8> {
    let mut pixels = vec![0u8; layout.byte_len()];
    for (plane, value) in yuv.into_iter().enumerate() {
        let rows = layout.plane_size(plane)[1];
        let start = layout.offsets[plane];
        pixels[start..start + rows * layout.strides[plane]].fill(value);
    }
    pixels
}

/// Packed RGBA `rgba` of `layout.size` as I420 bytes laid out as `layout`, each block's chroma
/// the mean of its pixels'.
pub fn rgba_to_i420(rgba: &[u8], layout: &I420Layout, matrix: &YuvMatrix) -> Vec<u8> {
    let [width, height] = layout.size;
    let mut pixels = vec![0u8; layout.byte_len()];
    let mut chroma = vec![[0u32; 3]; layout.plane_size(1).iter().product()];
    let blocks_x = layout.plane_size(1)[0];
    for (i, px) in rgba.chunks_exact(4).enumerate() {
        let (x, y) = (i % width, i / width);
        let [luma, u, v] = matrix.from_rgb([px[0], px[1], px[2]]);
        pixels[layout.offsets[0] + y * layout.strides[0] + x] = luma;
        let sums = &mut chroma[y / 2 * blocks_x + x / 2];
        *sums = [sums[0] + u32::from(u), sums[1] + u32::from(v), sums[2] + 1];
    }
    for (block, [u, v, n]) in chroma.into_iter().enumerate() {
        let (bx, by) = (block % blocks_x, block / blocks_x);
        for (plane, sum) in [(1, u), (2, v)] {
            pixels[layout.offsets[plane] + by * layout.strides[plane] + bx] =
                ((sum + n / 2) / n) as u8;
        }
    }
    debug_assert_eq!(rgba.len(), width * height * 4);
    pixels
}

/// Fits I420 `pixels` laid out as `from` into a picture laid out as `to`, keeping the aspect
/// ratio on `black` (Y, U, V), centred, as [`Scaler::rgba_fit`] does for RGBA.
pub fn fit_i420(
    scaler: &mut Scaler,
    pixels: &[u8],
    from: &I420Layout,
    to: &I420Layout,
    black: [u8; 3],
) -> Vec<u8> {
    // Even sizes and offsets, so the chroma blocks of the picture and the frame line up.
    let fitted = fitted_size(from.size, to.size).map(|side| (side & !1).max(2));
    let corner = [0, 1].map(|axis| (to.size[axis] - fitted[axis].min(to.size[axis])) / 4 * 2);
    let mut out = vec![0u8; to.byte_len()];
    for (plane, black) in black.into_iter().enumerate() {
        let scale = if plane == 0 { 1 } else { 2 };
        let [plane_width, plane_height] = to.plane_size(plane);
        for y in 0..plane_height {
            let start = to.offsets[plane] + y * to.strides[plane];
            out[start..start + plane_width].fill(black);
        }
        let size = fitted.map(|side| side.div_ceil(scale));
        let scaled = scaler.gray(
            &from.packed_plane(pixels, plane),
            from.plane_size(plane),
            size,
        );
        let [left, top] = corner.map(|c| c / scale);
        for (y, line) in scaled.chunks_exact(size[0]).enumerate() {
            let start = to.offsets[plane] + (top + y) * to.strides[plane] + left;
            out[start..start + size[0]].copy_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(range: gst_video::VideoColorRange, matrix: gst_video::VideoColorMatrix) -> YuvMatrix {
        gstreamer::init().unwrap();
        YuvMatrix::new(&gst_video::VideoColorimetry::new(
            range,
            matrix,
            gst_video::VideoTransferFunction::Bt709,
            gst_video::VideoColorPrimaries::Bt709,
        ))
    }

    #[test]
    fn limited_range_bt601_matches_the_standard_values() {
        let m = matrix(
            gst_video::VideoColorRange::Range16_235,
            gst_video::VideoColorMatrix::Bt601,
        );
        assert_eq!(m.from_rgb([255, 255, 255]), [235, 128, 128]);
        assert_eq!(m.from_rgb([0, 0, 0]), [16, 128, 128]);
        assert_eq!(m.from_rgb([128, 128, 128]), [126, 128, 128]);
        // BT.601 red: Y 81, U 90, V 240.
        assert_eq!(m.from_rgb([255, 0, 0]), [81, 90, 240]);
        let back = m.tables().rgb(126, 128, 128);
        assert!(back.iter().all(|v| (v - 128.0).abs() < 0.6), "{back:?}");
    }

    /// The RGB picture of I420 `pixels` (chroma repeated over its block).
    fn to_rgb(m: &YuvMatrix, pixels: &[u8], layout: &I420Layout) -> Vec<f32> {
        let [width, height] = layout.size;
        let tables = m.tables();
        (0..width * height)
            .flat_map(|i| {
                let (x, y) = (i % width, i / width);
                let sample = |plane: usize, x: usize, y: usize| {
                    pixels[layout.offsets[plane] + y * layout.strides[plane] + x]
                };
                tables.rgb(
                    sample(0, x, y),
                    sample(1, x / 2, y / 2),
                    sample(2, x / 2, y / 2),
                )
            })
            .collect()
    }

    #[test]
    fn overlay_in_yuv_agrees_with_overlay_in_rgb() {
        gstreamer::init().unwrap();
        let (width, height) = (37, 23);
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height)
            .build()
            .unwrap();
        let layout = I420Layout::new(&info);
        let m = YuvMatrix::new(&info.colorimetry());
        let [w, h] = layout.size;
        // A colourful picture and a disc of label 1.
        let mut pixels = vec![0u8; info.size()];
        for y in 0..h {
            for x in 0..w {
                let [yy, u, v] = m.from_rgb([(x * 7) as u8, (y * 11) as u8, ((x + y) * 5) as u8]);
                pixels[layout.offsets[0] + y * layout.strides[0] + x] = yy;
                if x % 2 == 0 && y % 2 == 0 {
                    pixels[layout.offsets[1] + y / 2 * layout.strides[1] + x / 2] = u;
                    pixels[layout.offsets[2] + y / 2 * layout.strides[2] + x / 2] = v;
                }
            }
        }
        let labels: Vec<u8> = (0..w * h)
            .map(|i| {
                let (dx, dy) = ((i % w) as f32 - 18.0, (i / w) as f32 - 11.0);
                u8::from(dx * dx + dy * dy < 64.0)
            })
            .collect();
        let red = [230u8, 30, 40];
        let before = to_rgb(&m, &pixels, &layout);
        let mut tinted = pixels.clone();
        blend_i420(
            &mut tinted,
            &layout,
            &labels,
            &[None, Some(m.from_rgb(red))],
            128,
        );
        let after = to_rgb(&m, &tinted, &layout);
        // Reference: the same picture tinted in RGB, pixel by pixel.
        let mut differences = Vec::new();
        for (i, &label) in labels.iter().enumerate() {
            for c in 0..3 {
                let original = before[i * 3 + c];
                let expected = match label {
                    1 => 0.5 * original + 0.5 * f32::from(red[c]),
                    _ => original,
                };
                differences.push((after[i * 3 + c] - expected).abs());
            }
        }
        let mean = differences.iter().sum::<f32>() / differences.len() as f32;
        assert!(mean <= 2.0, "mean absolute difference {mean}");
        // Away from the disc's blocks nothing changes.
        assert_eq!(
            tinted[layout.offsets[0]..][..w],
            pixels[layout.offsets[0]..][..w]
        );
    }

    #[test]
    fn conversions_round_trip_within_a_level() {
        for (range, kind) in [
            (
                gst_video::VideoColorRange::Range16_235,
                gst_video::VideoColorMatrix::Bt709,
            ),
            (
                gst_video::VideoColorRange::Range0_255,
                gst_video::VideoColorMatrix::Bt601,
            ),
        ] {
            let m = matrix(range, kind);
            for rgb in [
                [12u8, 200, 90],
                [250, 250, 10],
                [30, 30, 30],
                [200, 20, 240],
            ] {
                let [y, u, v] = m.from_rgb(rgb);
                let back = m.tables().rgb(y, u, v);
                for (a, b) in rgb.iter().zip(back) {
                    assert!((f32::from(*a) - b).abs() <= 1.5, "{rgb:?} → {back:?}");
                }
            }
        }
    }
}
