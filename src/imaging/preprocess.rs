//! Pre-processing: an RGBA frame becomes the model's 3×H×W input, resized to the card's input
//! size and normalised with its mean and standard deviation.

use ndarray::Array3;

use super::resize::Scaler;
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
}
