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
        let (kr, kb) = colorimetry
            .matrix()
            .kr_kb()
            .unwrap_or((0.299, 0.114));
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

    #[test]
    fn conversions_round_trip_within_a_level() {
        for (range, kind) in [
            (gst_video::VideoColorRange::Range16_235, gst_video::VideoColorMatrix::Bt709),
            (gst_video::VideoColorRange::Range0_255, gst_video::VideoColorMatrix::Bt601),
        ] {
            let m = matrix(range, kind);
            for rgb in [[12u8, 200, 90], [250, 250, 10], [30, 30, 30], [200, 20, 240]] {
                let back = m.to_rgb(m.from_rgb(rgb));
                for (a, b) in rgb.iter().zip(back) {
                    assert!((f32::from(*a) - b).abs() <= 1.5, "{rgb:?} → {back:?}");
                }
            }
        }
    }
}
