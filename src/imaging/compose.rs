//! Composition: a frame and its mask become the output picture — a colour overlay, a cut-out
//! (transparent or over another background) or the mask itself.

use std::path::{Path, PathBuf};

use super::postprocess::Mask;
use super::resize::Scaler;
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
    background: Option<(usize, usize, Vec<u8>)>,
    background_image: Option<image::RgbaImage>,
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
        })
    }

    /// The output picture (packed RGBA) for `pixels` (packed RGBA, drawn on in place) and
    /// its `mask`.
    pub fn run(&mut self, mut pixels: Vec<u8>, mask: &Mask) -> Vec<u8> {
        if let Mode::Cutout { background } = &self.mode
            && *background != Background::Transparent
        {
            let background = background.clone();
            self.prepare_background(&background, &pixels, mask);
        }
        let styles = &self.styles;
        let labelled = pixels.chunks_exact_mut(4).zip(&mask.labels);
        match &self.mode {
            Mode::Overlay { opacity } => {
                // In 8-bit fixed point, rounded: (pixel·(256 − a) + colour·a + 128) ÷ 256.
                let tint = (opacity.clamp(0.0, 1.0) * 256.0).round() as u32;
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
            Mode::Cutout {
                background: Background::Transparent,
            } => {
                for (px, &label) in labelled {
                    px[3] = if styles[usize::from(label)].foreground {
                        255
                    } else {
                        0
                    };
                }
            }
            Mode::Cutout { .. } => {
                let fill = self
                    .background
                    .as_ref()
                    .map_or(&[][..], |(_, _, fill)| fill.as_slice());
                for ((px, &label), bg) in labelled.zip(fill.chunks_exact(4)) {
                    if !styles[usize::from(label)].foreground {
                        px.copy_from_slice(bg);
                    }
                }
            }
            Mode::Passthrough => {}
        }
        pixels
    }

    /// The frame blurred without its objects: each pixel weighted by how much it is background
    /// (alpha 255 for background, 0 for objects) before shrinking and growing back, so the
    /// blur is blur(frame·background) ÷ blur(background) and no object colour bleeds into it
    /// as a halo around the silhouette.
    fn blurred_background(&mut self, pixels: &[u8], mask: &Mask, size: [usize; 2]) -> Vec<u8> {
        let mut weighted = pixels.to_vec();
        for (px, &label) in weighted.chunks_exact_mut(4).zip(&mask.labels) {
            px[3] = if self.styles[usize::from(label)].foreground {
                0
            } else {
                255
            };
        }
        let small = [size[0].div_ceil(BLUR_FACTOR), size[1].div_ceil(BLUR_FACTOR)];
        let shrunk = self.scaler.rgba_weighted(&weighted, size, small);
        let mut blurred = self.scaler.rgba_weighted(&shrunk, small, size);
        for px in blurred.chunks_exact_mut(4) {
            px[3] = 255;
        }
        blurred
    }

    /// Makes `self.background` the replacement background at frame size: recomputed for each
    /// frame when blurred, kept while the size stays the same otherwise.
    fn prepare_background(&mut self, background: &Background, pixels: &[u8], mask: &Mask) {
        let (width, height) = (mask.width, mask.height);
        let cached = matches!(&self.background, Some((w, h, _)) if *w == width && *h == height);
        let fill = match (background, &self.background_image) {
            (Background::Blur, _) => self.blurred_background(pixels, mask, [width, height]),
            _ if cached => return,
            (Background::Image(_), Some(image)) => {
                let from = [image.width() as usize, image.height() as usize];
                self.scaler.rgba(image.as_raw(), from, [width, height])
            }
            (Background::Color([r, g, b]), _) => [*r, *g, *b, 255].repeat(width * height),
            _ => vec![0; width * height * 4],
        };
        self.background = Some((width, height, fill));
    }
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
