//! Resizing with `fast_image_resize`: RGBA frames, video planes, RGB images and single-channel
//! f32 maps bilinear; label maps nearest-neighbour (a label is never averaged with its
//! neighbour).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// A reusable resizer (it keeps scratch buffers between calls); one per worker thread.
pub struct Scaler {
    resizer: Resizer,
    options: ResizeOptions,
    nearest: ResizeOptions,
    weighted: ResizeOptions,
}

/// Which of the scaler's settings a resize uses.
#[derive(Debug, Clone, Copy)]
enum Options {
    Nearest,
    Bilinear,
    Weighted,
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
            weighted: ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
                .use_alpha(true),
        }
    }
}

impl Scaler {
    /// Resizes packed RGBA `pixels` of `from` (width, height) to `to`.
    pub fn rgba(&mut self, pixels: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        self.rgba_with(pixels, from, to, Options::Bilinear)
    }

    /// Resizes packed RGBA `pixels` of `from` to `to`, each pixel's colour weighted by its
    /// alpha: where alpha is 0 a pixel contributes nothing, so the colour of a region is the
    /// average of its weighted pixels only (a masked blur: blur(image·w) ÷ blur(w)).
    pub fn rgba_weighted(&mut self, pixels: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        self.rgba_with(pixels, from, to, Options::Weighted)
    }

    fn rgba_with(
        &mut self,
        pixels: &[u8],
        from: [usize; 2],
        to: [usize; 2],
        options: Options,
    ) -> Vec<u8> {
        let mut out = vec![0u8; to[0] * to[1] * 4];
        self.resize(pixels, from, &mut out, to, PixelType::U8x4, options);
        out
    }

    /// Fits packed RGBA `pixels` of `from` (width, height) into a frame of `to`, keeping the
    /// aspect ratio: the picture is scaled to touch two opposite sides and centred on opaque
    /// black (letterbox or pillarbox).
    pub fn rgba_fit(&mut self, pixels: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        let fitted = fitted_size(from, to);
        let scaled = self.rgba(pixels, from, fitted);
        let mut out = [0, 0, 0, 255].repeat(to[0] * to[1]);
        let (left, top) = ((to[0] - fitted[0]) / 2, (to[1] - fitted[1]) / 2);
        let row = fitted[0] * 4;
        for (y, line) in scaled.chunks_exact(row).enumerate() {
            let start = ((top + y) * to[0] + left) * 4;
            out[start..start + row].copy_from_slice(line);
        }
        out
    }

    /// Resizes packed RGB `pixels` of `from` (width, height) to `to`.
    pub fn rgb(&mut self, pixels: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        let mut out = vec![0u8; to[0] * to[1] * 3];
        self.resize(
            pixels,
            from,
            &mut out,
            to,
            PixelType::U8x3,
            Options::Bilinear,
        );
        out
    }

    /// Resizes a label map (one byte per pixel) of `from` (width, height) to `to`,
    /// nearest-neighbour.
    pub fn labels(&mut self, labels: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        let mut out = vec![0u8; to[0] * to[1]];
        self.resize(labels, from, &mut out, to, PixelType::U8, Options::Nearest);
        out
    }

    /// Resizes a single-channel 8-bit plane (a video plane) of `from` to `to`, bilinear.
    pub fn gray(&mut self, plane: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        let mut out = vec![0u8; to[0] * to[1]];
        self.resize(plane, from, &mut out, to, PixelType::U8, Options::Bilinear);
        out
    }

    /// Resizes a single-channel 8-bit plane given as (value, weight) pairs of `from` to `to`,
    /// each value weighted by its weight (as [`Scaler::rgba_weighted`]); returns the pairs.
    pub fn gray_weighted(&mut self, pairs: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
        let mut out = vec![0u8; to[0] * to[1] * 2];
        self.resize(
            pairs,
            from,
            &mut out,
            to,
            PixelType::U8x2,
            Options::Weighted,
        );
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
            Options::Bilinear,
        );
    }

    fn resize(
        &mut self,
        src: &[u8],
        from: [usize; 2],
        dst: &mut [u8],
        to: [usize; 2],
        pixel: PixelType,
        options: Options,
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
        let options = match options {
            Options::Nearest => &self.nearest,
            Options::Bilinear => &self.options,
            Options::Weighted => &self.weighted,
        };
        self.resizer
            .resize(&src, &mut dst, options)
            .expect("same pixel type on both sides");
    }
}

/// An 8-bit plane of `from` doubled to `to` (each side twice the source's, or one less), as
/// bilinear scaling with centred samples does it: each output sample is ¾ of the nearest
/// source sample and ¼ of the next one out, on each axis. Much faster than a general resize
/// for the one factor that chroma planes need.
pub fn doubled(plane: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
    let ([width, height], [wide_width, tall]) = (from, to);
    let neighbours = |i: usize, n: usize| [i.saturating_sub(1), (i + 1).min(n - 1)];
    // Widened rows, four times the value.
    let mut wide = vec![0u16; wide_width * height];
    for (row, out) in plane
        .chunks_exact(width)
        .zip(wide.chunks_exact_mut(wide_width))
    {
        for (x, out) in out.iter_mut().enumerate() {
            let i = x / 2;
            let other = neighbours(i, width)[x % 2];
            *out = 3 * u16::from(row[i]) + u16::from(row[other]);
        }
    }
    let mut out = vec![0u8; wide_width * tall];
    for (y, line) in out.chunks_exact_mut(wide_width).enumerate() {
        let i = y / 2;
        let other = neighbours(i, height)[y % 2];
        let (near, far) = (&wide[i * wide_width..], &wide[other * wide_width..]);
        for ((out, &near), &far) in line.iter_mut().zip(near).zip(far) {
            *out = ((3 * near + far + 8) >> 4) as u8;
        }
    }
    out
}

/// The size of a picture of `from` scaled to fit `to` with its aspect ratio kept: touching
/// two opposite sides, by the tighter side (compared exactly in integers).
pub fn fitted_size(from: [usize; 2], to: [usize; 2]) -> [usize; 2] {
    if from[0] * to[1] >= from[1] * to[0] {
        [to[0], (from[1] * to[0] / from[0]).clamp(1, to[1])]
    } else {
        [(from[0] * to[1] / from[1]).clamp(1, to[0]), to[1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_interpolates_between_samples() {
        let out = doubled(&[0, 100, 200, 0, 100, 200], [3, 2], [5, 4]);
        assert_eq!(&out[..5], &[0, 25, 75, 125, 175]);
        // Rows repeat when the source's rows are equal; the same for a flat plane.
        assert_eq!(&out[5..10], &out[..5]);
        assert!(doubled(&[9; 12], [4, 3], [8, 6]).iter().all(|&v| v == 9));
    }

    #[test]
    fn fitting_keeps_the_aspect_ratio_on_black() {
        let white = [255u8; 4].repeat(40 * 10);
        let out = Scaler::default().rgba_fit(&white, [40, 10], [20, 20]);
        let pixel = |x: usize, y: usize| &out[(y * 20 + x) * 4..][..4];
        // 40×10 into 20×20 is 20×5, centred: rows 7..12 white, the rest opaque black.
        assert_eq!(pixel(10, 9), [255, 255, 255, 255]);
        assert_eq!(pixel(0, 7), [255, 255, 255, 255]);
        assert_eq!(pixel(10, 6), [0, 0, 0, 255]);
        assert_eq!(pixel(10, 12), [0, 0, 0, 255]);
    }
}
