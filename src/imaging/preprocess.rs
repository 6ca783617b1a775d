//! Pre-processing: an RGBA frame becomes the model's 3×H×W input, resized to the card's input
//! size and normalised with its mean and standard deviation.

use ndarray::Array3;

use super::resize::Scaler;
use crate::infer::ModelCard;

/// Turns frames into model inputs; one per worker (it owns a [`Scaler`]).
pub struct Preprocessor {
    scaler: Scaler,
    size: [usize; 2],
    scale: [f32; 3],
    offset: [f32; 3],
}

impl Preprocessor {
    /// A pre-processor for the model described by `card`.
    pub fn new(card: &ModelCard) -> Self {
        // (v/255 − mean)/std = v·scale + offset
        let scale = std::array::from_fn(|c| 1.0 / (255.0 * card.std[c]));
        let offset = std::array::from_fn(|c| -card.mean[c] / card.std[c]);
        Preprocessor {
            scaler: Scaler::default(),
            size: card.input_size,
            scale,
            offset,
        }
    }

    /// The 3×H×W input for packed RGBA `pixels` of `width`×`height`.
    pub fn run(&mut self, pixels: &[u8], width: usize, height: usize) -> Array3<f32> {
        let [h, w] = self.size;
        let resized = self.scaler.rgba(pixels, [width, height], [w, h]);
        let mut input = Array3::<f32>::zeros((3, h, w));
        let plane = h * w;
        let data = input.as_slice_mut().expect("a new array is contiguous");
        for (i, px) in resized.chunks_exact(4).enumerate() {
            for c in 0..3 {
                data[c * plane + i] = f32::from(px[c]) * self.scale[c] + self.offset[c];
            }
        }
        input
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
