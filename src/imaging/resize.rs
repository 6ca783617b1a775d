//! Resizing with `fast_image_resize`: RGBA frames, RGB images and single-channel f32 maps
//! bilinear; label maps nearest-neighbour (a label is never averaged with its neighbour).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// A reusable resizer (it keeps scratch buffers between calls); one per worker thread.
pub struct Scaler {
    resizer: Resizer,
    options: ResizeOptions,
    nearest: ResizeOptions,
}

impl Default for Scaler {
    fn default() -> Self {
        Scaler {
            resizer: Resizer::new(),
            // Frames are opaque and probabilities are not colours: no alpha premultiplication.
            options: ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
                .use_alpha(false),
            nearest: ResizeOptions::new().resize_alg(ResizeAlg::Nearest),
        }
    }
}

impl Scaler {
    /// Resizes packed RGBA `pixels` of `from` (width, height) to `to`.
    pub fn rgba(&mut self, pixels: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        let mut out = vec![0u8; to[0] * to[1] * 4];
        self.resize(pixels, from, &mut out, to, PixelType::U8x4, false);
        out
    }

    /// Resizes packed RGB `pixels` of `from` (width, height) to `to`.
    pub fn rgb(&mut self, pixels: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        let mut out = vec![0u8; to[0] * to[1] * 3];
        self.resize(pixels, from, &mut out, to, PixelType::U8x3, false);
        out
    }

    /// Resizes a label map (one byte per pixel) of `from` (width, height) to `to`,
    /// nearest-neighbour.
    pub fn labels(&mut self, labels: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        let mut out = vec![0u8; to[0] * to[1]];
        self.resize(labels, from, &mut out, to, PixelType::U8, true);
        out
    }

    /// Resizes a single-channel f32 map of `from` (width, height) into `out` of size `to`.
    pub fn plane(&mut self, plane: &[f32], from: [usize; 2], out: &mut [f32], to: [usize; 2]) {
        self.resize(
            bytemuck::cast_slice(plane),
            from,
            bytemuck::cast_slice_mut(out),
            to,
            PixelType::F32,
            false,
        );
    }

    fn resize(
        &mut self,
        src: &[u8],
        from: [usize; 2],
        dst: &mut [u8],
        to: [usize; 2],
        pixel: PixelType,
        nearest: bool,
    ) {
        if from == to {
            dst.copy_from_slice(src);
            return;
        }
        // Sizes come from our own frames and planes, so the buffers always match them.
        let src = ImageRef::new(from[0] as u32, from[1] as u32, src, pixel)
            .expect("source buffer matches its size");
        let mut dst = Image::from_slice_u8(to[0] as u32, to[1] as u32, dst, pixel)
            .expect("target buffer matches its size");
        let options = if nearest {
            &self.nearest
        } else {
            &self.options
        };
        self.resizer
            .resize(&src, &mut dst, options)
            .expect("same pixel type on both sides");
    }
}
