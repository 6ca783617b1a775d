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

use gstreamer_video as gst_video;

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

    /// R, G and B (0..255, not rounded) of a YUV sample.
    pub fn to_rgb(&self, [y, u, v]: [u8; 3]) -> [f32; 3] {
        let y = (f32::from(y) - self.y_offset) / self.y_scale;
        let pb = (f32::from(u) - self.c_offset) / self.c_scale;
        let pr = (f32::from(v) - self.c_offset) / self.c_scale;
        let r = y + 2.0 * (1.0 - self.kr) * pr;
        let b = y + 2.0 * (1.0 - self.kb) * pb;
        let g = (y - self.kr * r - self.kb * b) / (1.0 - self.kr - self.kb);
        [r, g, b].map(|v| (v * 255.0).clamp(0.0, 255.0))
    }
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
}

impl I420Layout {
    /// Width and height of plane `plane` (0 = Y, 1 = U, 2 = V).
    pub fn plane_size(&self, plane: usize) -> [usize; 2] {
        match plane {
            0 => self.size,
            _ => self.size.map(|side| side.div_ceil(2)),
        }
    }

    /// Plane `plane` of `pixels`, its rows packed without padding.
    pub fn packed_plane(&self, pixels: &[u8], plane: usize) -> Vec<u8> {
        let [width, height] = self.plane_size(plane);
        (0..height)
            .flat_map(|y| {
                let start = self.offsets[plane] + y * self.strides[plane];
                pixels[start..start + width].iter().copied()
            })
            .collect()
    }
}

/// Tints the pixels whose label has a colour (`tints[label]`, in YUV) at `alpha` (0..=256 of
/// 256), in place, in I420 `pixels`: luma per pixel, chroma per 2×2 block by the share of the
/// block that is tinted (see the module's note).
pub fn overlay_i420(
    pixels: &mut [u8],
    layout: &I420Layout,
    labels: &[u8],
    tints: &[Option<[u8; 3]>],
    alpha: u32,
) {
    let [width, height] = layout.size;
    let keep = 256 - alpha;
    for y in 0..height {
        let row = layout.offsets[0] + y * layout.strides[0];
        for (x, &label) in labels[y * width..][..width].iter().enumerate() {
            if let Some([tint, _, _]) = tints[usize::from(label)] {
                let value = &mut pixels[row + x];
                *value = ((u32::from(*value) * keep + u32::from(tint) * alpha + 128) >> 8) as u8;
            }
        }
    }
    for by in 0..height.div_ceil(2) {
        for bx in 0..width.div_ceil(2) {
            let block: Vec<(usize, usize)> = (0..2)
                .flat_map(|dy| (0..2).map(move |dx| (2 * bx + dx, 2 * by + dy)))
                .filter(|&(x, y)| x < width && y < height)
                .collect();
            for plane in 1..3 {
                let at = layout.offsets[plane] + by * layout.strides[plane] + bx;
                let value = i64::from(pixels[at]);
                let pull: i64 = block
                    .iter()
                    .filter_map(|&(x, y)| tints[usize::from(labels[y * width + x])])
                    .map(|tint| i64::from(tint[plane]) - value)
                    .sum();
                if pull != 0 {
                    let n = block.len() as i64 * 256;
                    let shift = (pull * i64::from(alpha) + n / 2 * pull.signum()) / n;
                    pixels[at] = (value + shift).clamp(0, 255) as u8;
                }
            }
        }
    }
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
        let back = m.to_rgb([126, 128, 128]);
        assert!(back.iter().all(|v| (v - 128.0).abs() < 0.6), "{back:?}");
    }

    /// The RGB picture of I420 `pixels` (chroma repeated over its block).
    fn to_rgb(m: &YuvMatrix, pixels: &[u8], layout: &I420Layout) -> Vec<f32> {
        let [width, height] = layout.size;
        (0..width * height)
            .flat_map(|i| {
                let (x, y) = (i % width, i / width);
                let sample = |plane: usize, x: usize, y: usize| {
                    pixels[layout.offsets[plane] + y * layout.strides[plane] + x]
                };
                m.to_rgb([
                    sample(0, x, y),
                    sample(1, x / 2, y / 2),
                    sample(2, x / 2, y / 2),
                ])
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
        overlay_i420(
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
                let back = m.to_rgb(m.from_rgb(rgb));
                for (a, b) in rgb.iter().zip(back) {
                    assert!((f32::from(*a) - b).abs() <= 1.5, "{rgb:?} → {back:?}");
                }
            }
        }
    }
}
