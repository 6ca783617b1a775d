//! Pre-processing: an RGBA or I420 frame becomes the model's 3×H×W input, resized to the card's
//! input size and normalised with its mean and standard deviation.

use gstreamer_video as gst_video;
use ndarray::Array3;

use super::resize::Scaler;
use super::yuv::{I420Layout, YuvMatrix};
use crate::infer::ModelCard;

/// A model card's normalisation, `(v/255 − mean)/std` per channel.
#[derive(Debug, Clone, Copy)]
pub struct Normalizer {
    scale: [f32; 3],
    offset: [f32; 3],
}

impl Normalizer {
    /// The normalisation of `card` (its mean and std).
    pub fn new(card: &ModelCard) -> Self {
        // (v/255 − mean)/std = v·scale + offset
        Normalizer {
            scale: std::array::from_fn(|c| 1.0 / (255.0 * card.std[c])),
            offset: std::array::from_fn(|c| -card.mean[c] / card.std[c]),
        }
    }

    /// Normalises channel `c`'s value `v` (0..255).
    pub fn apply(&self, c: usize, v: f32) -> f32 {
        v * self.scale[c] + self.offset[c]
    }

    /// Appends the R, G and B planes of packed `pixels` (`channels` bytes each: 3 for RGB,
    /// 4 for RGBA) to `out`.
    pub fn extend(&self, pixels: &[u8], channels: usize, out: &mut Vec<f32>) {
        for c in 0..3 {
            out.extend(
                pixels
                    .chunks_exact(channels)
                    .map(|px| f32::from(px[c]) * self.scale[c] + self.offset[c]),
            );
        }
    }
}

/// Turns frames into model inputs; one per worker (it owns a [`Scaler`]).
pub struct Preprocessor {
    scaler: Scaler,
    size: [usize; 2],
    normalizer: Normalizer,
}

impl Preprocessor {
    /// A pre-processor for the model described by `card`.
    pub fn new(card: &ModelCard) -> Self {
        Preprocessor {
            scaler: Scaler::default(),
            size: card.input_size,
            normalizer: Normalizer::new(card),
        }
    }

    /// The 3×H×W input for packed RGBA `pixels` of `width`×`height`.
    pub fn run(&mut self, pixels: &[u8], width: usize, height: usize) -> Array3<f32> {
        let [h, w] = self.size;
        let resized = self.scaler.rgba(pixels, [width, height], [w, h]);
        let mut planes = Vec::with_capacity(3 * h * w);
        self.normalizer.extend(&resized, 4, &mut planes);
        Array3::from_shape_vec((3, h, w), planes).expect("three planes of h·w values")
    }

    /// The 3×H×W input for a video frame's `pixels` of geometry `info` (packed RGBA or I420).
    pub fn run_frame(&mut self, pixels: &[u8], info: &gst_video::VideoInfo) -> Array3<f32> {
        match info.format() {
            gst_video::VideoFormat::I420 => self.run_i420(pixels, info),
            _ => self.run(pixels, info.width() as usize, info.height() as usize),
        }
    }

    /// The 3×H×W input for I420 `pixels` laid out as `info` says, converted with its
    /// colorimetry: each plane is resized to the model's size first, so only the model's
    /// pixels are converted.
    pub fn run_i420(&mut self, pixels: &[u8], info: &gst_video::VideoInfo) -> Array3<f32> {
        let (layout, matrix) = (I420Layout::new(info), YuvMatrix::new(&info.colorimetry()));
        let [h, w] = self.size;
        let [y, u, v] = [0, 1, 2].map(|plane| {
            let packed = layout.packed_plane(pixels, plane);
            self.scaler.gray(&packed, layout.plane_size(plane), [w, h])
        });
        let tables = matrix.tables();
        let mut planes = vec![0.0f32; 3 * h * w];
        let (red, rest) = planes.split_at_mut(h * w);
        let (green, blue) = rest.split_at_mut(h * w);
        let samples = y.iter().zip(&u).zip(&v);
        for ((((&y, &u), &v), r), (g, b)) in samples.zip(red).zip(green.iter_mut().zip(blue)) {
            let [red, green, blue] = tables.rgb(y, u, v);
            *r = self.normalizer.apply(0, red);
            *g = self.normalizer.apply(1, green);
            *b = self.normalizer.apply(2, blue);
        }
        Array3::from_shape_vec((3, h, w), planes).expect("three planes of h·w values")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_each_channel_with_the_card() {
        let mut card = ModelCard::with_defaults(1, [2, 2]);
        card.mean = [0.5, 0.0, 1.0];
        card.std = [0.5, 1.0, 0.25];
        let pixels = [255u8, 0, 255, 255].repeat(4);
        let input = Preprocessor::new(&card).run(&pixels, 2, 2);
        for (c, expected) in [1.0, 0.0, 0.0].into_iter().enumerate() {
            assert!(
                input
                    .index_axis(ndarray::Axis(0), c)
                    .iter()
                    .all(|v| (v - expected).abs() < 1e-6)
            );
        }
    }

    #[test]
    fn i420_frames_give_the_input_of_their_rgb_picture() {
        gstreamer::init().unwrap();
        let (width, height) = (64usize, 48usize);
        let info = gstreamer_video::VideoInfo::builder(
            gstreamer_video::VideoFormat::I420,
            width as u32,
            height as u32,
        )
        .build()
        .unwrap();
        let (layout, matrix) = (I420Layout::new(&info), YuvMatrix::new(&info.colorimetry()));
        // A smooth picture (chroma subsampling loses little of it), in RGBA and in I420.
        let rgb = |x: usize, y: usize| [(x * 3) as u8, (y * 4) as u8, (100 + x + y) as u8];
        let mut rgba = Vec::new();
        let mut yuv = vec![0u8; info.size()];
        for y in 0..height {
            for x in 0..width {
                rgba.extend(rgb(x, y));
                rgba.push(255);
                yuv[layout.offsets[0] + y * layout.strides[0] + x] = matrix.from_rgb(rgb(x, y))[0];
                if x % 2 == 0 && y % 2 == 0 {
                    // Chroma of the block: the mean of its four pixels', as encoders take it.
                    for plane in 1..3 {
                        let sum: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                            .iter()
                            .map(|&(dx, dy)| u32::from(matrix.from_rgb(rgb(x + dx, y + dy))[plane]))
                            .sum();
                        yuv[layout.offsets[plane] + y / 2 * layout.strides[plane] + x / 2] =
                            ((sum + 2) / 4) as u8;
                    }
                }
            }
        }
        let mut card = ModelCard::with_defaults(1, [24, 32]);
        (card.mean, card.std) = ([0.0; 3], [1.0; 3]);
        let mut preprocessor = Preprocessor::new(&card);
        let from_rgba = preprocessor.run(&rgba, width, height);
        let from_yuv = preprocessor.run_i420(&yuv, &info);
        let worst = from_rgba
            .iter()
            .zip(&from_yuv)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Within 3 levels of 255 (the card normalises by 255 only).
        assert!(
            worst * 255.0 <= 3.0,
            "worst difference {} levels",
            worst * 255.0
        );
    }
}
