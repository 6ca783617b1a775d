//! Composition: a frame and its mask become the output picture — a colour overlay, a cut-out
//! (transparent or over another background), the mask itself or the object's alpha matte.
//! Cut-outs and mattes take the object's alpha per pixel: soft along the edge (see
//! [`super::matte`]) for binary models whose masks carry their coverage, 0 or 255 from the
//! labels otherwise.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use gstreamer_video as gst_video;

use super::matte::{Edge, Matte};
use super::postprocess::Mask;
use super::resize::{Scaler, doubled};
use super::yuv::{
    I420Layout, YuvMatrix, blend_i420, blend_towards_picture, rgba_to_i420, solid_i420,
};
use crate::{Error, Result};

/// Factor by which the frame is shrunk (and grown back) to make the blurred background.
const BLUR_FACTOR: usize = 24;

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Frame with each shown label tinted in its colour at `opacity` (0..1).
    Overlay {
        /// Weight of the class colour.
        opacity: f32,
    },
    /// Foreground kept; background replaced.
    Cutout {
        /// What replaces the background.
        background: Background,
    },
    /// The mask as a picture: white = object (binary models) or grey level = class id.
    Mask,
    /// The object's alpha as a grey picture (0..=255 coverage, partial along soft edges), for
    /// editors.
    Matte,
    /// The frame unchanged (the mask travels beside it, for applications that draw
    /// themselves).
    Passthrough,
}

/// What replaces the background of a cut-out.
#[derive(Debug, Clone, PartialEq)]
pub enum Background {
    /// Alpha 0 (needs an output that keeps alpha: `.mov` or PNG frames).
    Transparent,
    /// A solid colour.
    Color([u8; 3]),
    /// An image, stretched to the frame.
    Image(PathBuf),
    /// The frame itself, heavily blurred.
    Blur,
}

impl Background {
    /// Parses `--background`: `#rrggbb`, `blur`, `transparent`, or an image path.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed colour or a path that does not exist.
    pub fn parse(text: &str) -> Result<Self> {
        if text.starts_with('#') {
            return parse_color(text).map(Background::Color).ok_or_else(|| {
                Error::Config(format!("--background {text}: a colour is written #rrggbb"))
            });
        }
        match text {
            "blur" => Ok(Background::Blur),
            "transparent" => Ok(Background::Transparent),
            path if Path::new(path).is_file() => Ok(Background::Image(PathBuf::from(path))),
            other => Err(Error::Config(format!(
                "--background {other}: not a colour (#rrggbb), 'blur', 'transparent' or an existing image"
            ))),
        }
    }
}

/// A colour written `#rrggbb`.
pub fn parse_color(text: &str) -> Option<[u8; 3]> {
    let hex = text.strip_prefix('#').filter(|h| h.len() == 6)?;
    let channel = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
    };
    Some([channel(0)?, channel(2)?, channel(4)?])
}

/// How one mask label is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelStyle {
    /// Overlay colour, `None` to leave the pixel as it is.
    pub color: Option<[u8; 3]>,
    /// Whether the label is kept in a cut-out.
    pub foreground: bool,
    /// Grey level in mask mode.
    pub mask_value: u8,
}

/// Composes output pictures; one per worker.
pub struct Compositor {
    mode: Mode,
    styles: Vec<LabelStyle>,
    scaler: Scaler,
    background: Option<Prepared>,
    background_image: Option<image::RgbaImage>,
    edge: Edge,
    matte: Matte,
}

/// A replacement background at frame size, kept while the frames keep their size and format.
struct Prepared {
    size: [usize; 2],
    i420: bool,
    fill: Vec<u8>,
}

impl Compositor {
    /// A compositor drawing `mode` with one style per label.
    ///
    /// # Errors
    /// [`Error::Input`] when a background image cannot be read.
    pub fn new(mode: Mode, styles: Vec<LabelStyle>) -> Result<Self> {
        let background_image = match &mode {
            Mode::Cutout {
                background: Background::Image(path),
            } => Some(
                image::open(path)
                    .map_err(|e| Error::Input {
                        path: path.clone(),
                        reason: format!("cannot read the background image: {e}"),
                    })?
                    .to_rgba8(),
            ),
            _ => None,
        };
        Ok(Compositor {
            mode,
            styles,
            scaler: Scaler::default(),
            background: None,
            background_image,
            edge: Edge::default(),
            matte: Matte::default(),
        })
    }

    /// Draws cut-out and matte edges as `edge` says (soft by default).
    pub fn with_edge(mut self, edge: Edge) -> Self {
        self.edge = edge;
        self
    }

    /// Whether this compositor draws soft edges from the masks' coverage: a post-processor
    /// feeding it should attach it ([`super::Postprocessor::with_coverage`]).
    pub fn wants_coverage(&self) -> bool {
        self.edge != Edge::Hard && matches!(self.mode, Mode::Cutout { .. } | Mode::Matte)
    }

    /// The object's alpha for `mask`: soft when the edge is soft and the mask carries its
    /// coverage, refined along the frame's luma that `guide` gives (with its row stride),
    /// asked for only then; else 255 on the labels kept in a cut-out, 0 elsewhere.
    fn alpha<'g>(
        &mut self,
        mask: &Mask,
        guide: impl FnOnce() -> (Cow<'g, [u8]>, usize),
    ) -> Vec<u8> {
        if let (Edge::Soft { feather }, Some(coverage)) = (self.edge, &mask.coverage) {
            let (guide, stride) = guide();
            let size = [mask.width, mask.height];
            return self
                .matte
                .of_coverage(&guide, stride, coverage, size, feather);
        }
        let kept: Vec<u8> = self
            .styles
            .iter()
            .map(|style| if style.foreground { 255 } else { 0 })
            .collect();
        mask.labels.iter().map(|&l| kept[usize::from(l)]).collect()
    }

    /// [`Compositor::alpha`] of packed RGBA `pixels`, guided by their luma.
    fn rgba_alpha(&mut self, pixels: &[u8], mask: &Mask) -> Vec<u8> {
        self.alpha(mask, || (Cow::Owned(luma(pixels)), mask.width))
    }

    /// [`Compositor::alpha`] of I420 `pixels` laid out as `layout`, guided by their Y plane.
    fn i420_alpha(&mut self, pixels: &[u8], layout: &I420Layout, mask: &Mask) -> Vec<u8> {
        let luma = &pixels[layout.offsets[0]..];
        self.alpha(mask, || (Cow::Borrowed(luma), layout.strides[0]))
    }

    /// The output picture (packed RGBA) for `pixels` (packed RGBA, drawn on in place) and
    /// its `mask`.
    pub fn run(&mut self, mut pixels: Vec<u8>, mask: &Mask) -> Vec<u8> {
        let styles = &self.styles;
        let labelled = pixels.chunks_exact_mut(4).zip(&mask.labels);
        match &self.mode {
            Mode::Overlay { opacity } => {
                // In 8-bit fixed point, rounded: (pixel·(256 − a) + colour·a + 128) ÷ 256.
                let tint = tint_weight(*opacity);
                let keep = 256 - tint;
                for (px, &label) in labelled {
                    if let Some(color) = styles[usize::from(label)].color {
                        for (value, color) in px[..3].iter_mut().zip(color) {
                            let blended = u32::from(*value) * keep + u32::from(color) * tint;
                            *value = ((blended + 128) >> 8) as u8;
                        }
                    }
                }
            }
            Mode::Mask => {
                for (px, &label) in labelled {
                    let v = styles[usize::from(label)].mask_value;
                    px.copy_from_slice(&[v, v, v, 255]);
                }
            }
            Mode::Matte => {
                let alpha = self.rgba_alpha(&pixels, mask);
                for (px, a) in pixels.chunks_exact_mut(4).zip(alpha) {
                    px.copy_from_slice(&[a, a, a, 255]);
                }
            }
            Mode::Cutout {
                background: Background::Transparent,
            } => {
                let alpha = self.rgba_alpha(&pixels, mask);
                for (px, a) in pixels.chunks_exact_mut(4).zip(alpha) {
                    px[3] = a;
                }
            }
            Mode::Cutout { background } => {
                let background = background.clone();
                let alpha = self.rgba_alpha(&pixels, mask);
                self.prepare_background(&background, &pixels, &alpha, [mask.width, mask.height]);
                let fill = self
                    .background
                    .as_ref()
                    .map_or(&[][..], |p| p.fill.as_slice());
                blend_rgba_towards(&mut pixels, fill, &alpha);
            }
            Mode::Passthrough => {}
        }
        pixels
    }

    /// The frame blurred without its objects: each pixel weighted by how much it is background
    /// (255 − the object's `alpha`) before shrinking and growing back, so the blur is
    /// blur(frame·background) ÷ blur(background) and no object colour bleeds into it as a halo
    /// around the silhouette.
    fn blurred_background(&mut self, pixels: &[u8], alpha: &[u8], size: [usize; 2]) -> Vec<u8> {
        let mut weighted = pixels.to_vec();
        for (px, a) in weighted.chunks_exact_mut(4).zip(alpha) {
            px[3] = 255 - a;
        }
        let small = [size[0].div_ceil(BLUR_FACTOR), size[1].div_ceil(BLUR_FACTOR)];
        let shrunk = self.scaler.rgba_weighted(&weighted, size, small);
        let mut blurred = self.scaler.rgba_weighted(&shrunk, small, size);
        for px in blurred.chunks_exact_mut(4) {
            px[3] = 255;
        }
        blurred
    }

    /// Draws on I420 `pixels` (laid out as `info` says) in place, as [`Compositor::run`] does
    /// on RGBA, in the frame's own colours (see [`super::yuv`] for the math). A transparent
    /// cut-out, which I420 cannot carry, is drawn on black.
    pub fn run_i420(&mut self, pixels: &mut [u8], info: &gst_video::VideoInfo, mask: &Mask) {
        let layout = I420Layout::new(info);
        let matrix = YuvMatrix::new(&info.colorimetry());
        let colors = |color: &dyn Fn(&LabelStyle) -> Option<[u8; 3]>| -> Vec<Option<[u8; 3]>> {
            self.styles
                .iter()
                .map(|style| color(style).map(|c| matrix.from_rgb(c)))
                .collect()
        };
        let (colors, alpha) = match &self.mode {
            Mode::Passthrough => return,
            Mode::Overlay { opacity } => (colors(&|style| style.color), tint_weight(*opacity)),
            Mode::Mask => (colors(&|style| Some([style.mask_value; 3])), 256),
            Mode::Matte => {
                let alpha = self.i420_alpha(pixels, &layout, mask);
                let grey: [u8; 256] = std::array::from_fn(|a| matrix.from_rgb([a as u8; 3])[0]);
                // Neutral chroma everywhere; the luma of each pixel's grey.
                pixels.copy_from_slice(&solid_i420(&layout, matrix.from_rgb([0; 3])));
                for (y, row) in alpha.chunks_exact(mask.width).enumerate() {
                    let start = layout.offsets[0] + y * layout.strides[0];
                    for (value, &a) in pixels[start..start + mask.width].iter_mut().zip(row) {
                        *value = grey[usize::from(a)];
                    }
                }
                return;
            }
            Mode::Cutout { background } => {
                let background = background.clone();
                let alpha = self.i420_alpha(pixels, &layout, mask);
                self.prepare_background_i420(&background, pixels, &layout, &matrix, &alpha);
                let fill = self
                    .background
                    .as_ref()
                    .map_or(&[][..], |p| p.fill.as_slice());
                blend_towards_picture(pixels, &layout, fill, &alpha);
                return;
            }
        };
        blend_i420(pixels, &layout, &mask.labels, &colors, alpha);
    }

    /// Makes `self.background` the replacement background at frame size: recomputed for each
    /// frame when blurred, kept while the size stays the same otherwise.
    fn prepare_background(
        &mut self,
        background: &Background,
        pixels: &[u8],
        alpha: &[u8],
        size: [usize; 2],
    ) {
        if self.is_prepared(background, size, false) {
            return;
        }
        let fill = match (background, &self.background_image) {
            (Background::Blur, _) => self.blurred_background(pixels, alpha, size),
            (Background::Image(_), Some(image)) => stretched(&mut self.scaler, image, size),
            (Background::Color([r, g, b]), _) => [*r, *g, *b, 255].repeat(size[0] * size[1]),
            _ => vec![0; size[0] * size[1] * 4],
        };
        self.background = Some(Prepared {
            size,
            i420: false,
            fill,
        });
    }

    /// As [`Compositor::prepare_background`], in I420 laid out as `layout` (a transparent
    /// background is black).
    fn prepare_background_i420(
        &mut self,
        background: &Background,
        pixels: &[u8],
        layout: &I420Layout,
        matrix: &YuvMatrix,
        alpha: &[u8],
    ) {
        if self.is_prepared(background, layout.size, true) {
            return;
        }
        let fill = match (background, &self.background_image) {
            (Background::Blur, _) => self.blurred_background_i420(pixels, layout, alpha),
            (Background::Image(_), Some(image)) => rgba_to_i420(
                &stretched(&mut self.scaler, image, layout.size),
                layout,
                matrix,
            ),
            (Background::Color(color), _) => solid_i420(layout, matrix.from_rgb(*color)),
            _ => solid_i420(layout, matrix.from_rgb([0; 3])),
        };
        self.background = Some(Prepared {
            size: layout.size,
            i420: true,
            fill,
        });
    }

    /// Whether `self.background` already holds `background` for frames of `size` (a blur never
    /// is: it follows the frame).
    fn is_prepared(&self, background: &Background, size: [usize; 2], i420: bool) -> bool {
        *background != Background::Blur
            && self
                .background
                .as_ref()
                .is_some_and(|p| p.size == size && p.i420 == i420)
    }

    /// As [`Compositor::blurred_background`], in I420. The blur is far wider than a chroma
    /// block, so it starts from the picture at chroma resolution: each 2×2 block becomes one
    /// pixel (the luma of its pixels weighted by how much they are background, its U and V,
    /// and the block's mean background share as the weight), which is shrunk and grown back
    /// weighted as the RGBA frame is; the grown U and V are the chroma planes, and the grown
    /// luma is scaled up to the frame.
    fn blurred_background_i420(
        &mut self,
        pixels: &[u8],
        layout: &I420Layout,
        alpha: &[u8],
    ) -> Vec<u8> {
        let [width, height] = layout.size;
        let blocks = layout.plane_size(1);
        let mut coarse = Vec::with_capacity(blocks[0] * blocks[1] * 4);
        for by in 0..blocks[1] {
            let rows = [2 * by, (2 * by + 1).min(height - 1)];
            let luma = rows.map(|y| layout.row(pixels, 0, y));
            let marks = rows.map(|y| &alpha[y * width..][..width]);
            let (u, v) = (layout.row(pixels, 1, by), layout.row(pixels, 2, by));
            for bx in 0..blocks[0] {
                let (mut sum, mut count) = (0u32, 0u32);
                for x in [2 * bx, (2 * bx + 1).min(width - 1)] {
                    for row in 0..2 {
                        let weight = 255 - u32::from(marks[row][x]);
                        sum += weight * u32::from(luma[row][x]);
                        count += weight;
                    }
                }
                let mean = (sum + count / 2).checked_div(count).unwrap_or(0);
                coarse.extend([mean as u8, u[bx], v[bx], (count / 4) as u8]);
            }
        }
        let small = layout.size.map(|side| side.div_ceil(BLUR_FACTOR));
        let shrunk = self.scaler.rgba_weighted(&coarse, blocks, small);
        let grown = self.scaler.rgba_weighted(&shrunk, small, blocks);
        let mut out = vec![0u8; layout.byte_len()];
        let mut luma = Vec::with_capacity(blocks[0] * blocks[1]);
        for (by, row) in grown.chunks_exact(blocks[0] * 4).enumerate() {
            for (bx, px) in row.chunks_exact(4).enumerate() {
                luma.push(px[0]);
                for plane in 1..3 {
                    out[layout.offsets[plane] + by * layout.strides[plane] + bx] = px[plane];
                }
            }
        }
        let luma = doubled(&luma, blocks, layout.size);
        for (y, row) in luma.chunks_exact(width).enumerate() {
            let start = layout.offsets[0] + y * layout.strides[0];
            out[start..start + width].copy_from_slice(row);
        }
        out
    }
}

/// The luma of packed RGBA `pixels` (BT.601 weights: the guide for soft edges).
pub(crate) fn luma(pixels: &[u8]) -> Vec<u8> {
    pixels
        .chunks_exact(4)
        .map(|px| {
            ((77 * u32::from(px[0]) + 150 * u32::from(px[1]) + 29 * u32::from(px[2]) + 128) >> 8)
                as u8
        })
        .collect()
}

/// Blends packed RGBA `pixels` towards `picture` (the same size) by 255 − the object's `alpha`
/// per pixel; the alpha channel stays.
fn blend_rgba_towards(pixels: &mut [u8], picture: &[u8], alpha: &[u8]) {
    for ((px, bg), &a) in pixels
        .chunks_exact_mut(4)
        .zip(picture.chunks_exact(4))
        .zip(alpha)
    {
        match a {
            255 => {}
            0 => px[..3].copy_from_slice(&bg[..3]),
            _ => {
                let a = u32::from(a);
                for (value, &to) in px[..3].iter_mut().zip(&bg[..3]) {
                    *value =
                        ((u32::from(*value) * a + u32::from(to) * (255 - a) + 127) / 255) as u8;
                }
            }
        }
    }
}

/// `image` stretched to `size`, packed RGBA.
fn stretched(scaler: &mut Scaler, image: &image::RgbaImage, size: [usize; 2]) -> Vec<u8> {
    let from = [image.width() as usize, image.height() as usize];
    scaler.rgba(image.as_raw(), from, size)
}

/// The overlay's weight of the class colour in 8-bit fixed point (0..=256 of 256).
fn tint_weight(opacity: f32) -> u32 {
    (opacity.clamp(0.0, 1.0) * 256.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn styles() -> Vec<LabelStyle> {
        vec![
            LabelStyle {
                color: None,
                foreground: false,
                mask_value: 0,
            },
            LabelStyle {
                color: Some([255, 0, 0]),
                foreground: true,
                mask_value: 255,
            },
        ]
    }

    fn mask() -> Mask {
        Mask {
            width: 2,
            height: 1,
            labels: vec![0, 1],
            coverage: None,
        }
    }

    const PIXELS: [u8; 8] = [100, 100, 100, 255, 100, 100, 100, 255];

    #[test]
    fn overlay_tints_only_labelled_pixels() {
        let out = Compositor::new(Mode::Overlay { opacity: 0.5 }, styles())
            .unwrap()
            .run(PIXELS.to_vec(), &mask());
        assert_eq!(out, vec![100, 100, 100, 255, 178, 50, 50, 255]);
    }

    #[test]
    fn transparent_cutout_clears_the_background_alpha() {
        let mode = Mode::Cutout {
            background: Background::Transparent,
        };
        let out = Compositor::new(mode, styles())
            .unwrap()
            .run(PIXELS.to_vec(), &mask());
        assert_eq!(out, vec![100, 100, 100, 0, 100, 100, 100, 255]);
    }

    #[test]
    fn blurred_background_has_no_halo_of_the_object() {
        // A white 32×32 object in the middle of a dark 96×96 frame.
        let (size, dark) = (96, 20u8);
        let inside = |x: usize, y: usize| (32..64).contains(&x) && (32..64).contains(&y);
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for y in 0..size {
            for x in 0..size {
                let v = if inside(x, y) { 255 } else { dark };
                pixels.extend([v, v, v, 255]);
                labels.push(u8::from(inside(x, y)));
            }
        }
        let mask = Mask {
            width: size,
            height: size,
            labels,
            coverage: None,
        };
        let mode = Mode::Cutout {
            background: Background::Blur,
        };
        let out = Compositor::new(mode, styles()).unwrap().run(pixels, &mask);
        let worst = (0..size * size)
            .filter(|&i| !inside(i % size, i / size))
            .map(|i| out[i * 4])
            .max()
            .unwrap();
        assert!(
            worst <= dark + 3,
            "background up to {worst} next to a white object"
        );
        let centre = (48 * size + 48) * 4;
        assert_eq!(
            out[centre..centre + 4],
            [255, 255, 255, 255],
            "the object is kept"
        );
    }

    #[test]
    fn colour_cutout_replaces_the_background() {
        let mode = Mode::Cutout {
            background: Background::parse("#00ff00").unwrap(),
        };
        let out = Compositor::new(mode, styles())
            .unwrap()
            .run(PIXELS.to_vec(), &mask());
        assert_eq!(out, vec![0, 255, 0, 255, 100, 100, 100, 255]);
    }

    #[test]
    fn mask_mode_draws_the_labels() {
        let out = Compositor::new(Mode::Mask, styles())
            .unwrap()
            .run(PIXELS.to_vec(), &mask());
        assert_eq!(out, vec![0, 0, 0, 255, 255, 255, 255, 255]);
    }

    #[test]
    fn bad_background_is_a_clear_error() {
        assert!(
            Background::parse("#12")
                .unwrap_err()
                .to_string()
                .contains("#rrggbb")
        );
        assert!(
            Background::parse("no/such.png")
                .unwrap_err()
                .to_string()
                .contains("no/such.png")
        );
    }
}
