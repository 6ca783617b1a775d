//! Decoding one image/mask pair: RGB image (greyscale and RGBA converted), mask as class labels
//! at the image's size (a smaller mask of the same aspect ratio is scaled up nearest-neighbour).

use image::ImageReader;

use super::classes::ClassSet;
use super::layout::dataset_error;
use super::pair::Pair;
use crate::Result;
use crate::imaging::Scaler;
use crate::paths::shown;

/// Largest relative difference of aspect ratios at which a mask is still resized to its image.
const ASPECT_TOLERANCE: f64 = 0.01;

/// A decoded pair at the image's own resolution.
#[derive(Debug, Clone)]
pub struct LabelledImage {
    /// Width and height.
    pub size: [usize; 2],
    /// Packed RGB.
    pub rgb: Vec<u8>,
    /// One class label per pixel ([`crate::metrics::IGNORE`] = ignored).
    pub labels: Vec<u8>,
    /// Whether the mask had another size and was resized to the image's.
    pub mask_resized: bool,
}

/// Decodes `pair` and converts its mask with `classes`.
///
/// # Errors
/// An unreadable image or mask, a mask of another aspect ratio, or a mask value outside the
/// classes — each naming the file.
pub fn read_pair(pair: &Pair, classes: &ClassSet, scaler: &mut Scaler) -> Result<LabelledImage> {
    let image = decode(&pair.image)?.into_rgb8();
    let mask = decode(&pair.mask)?.into_luma8();
    let size = [image.width() as usize, image.height() as usize];
    let mask_size = [mask.width() as usize, mask.height() as usize];
    let aspect = |[w, h]: [usize; 2]| w as f64 / h as f64;
    if (aspect(mask_size) / aspect(size) - 1.0).abs() > ASPECT_TOLERANCE {
        return Err(dataset_error(
            &pair.mask,
            format!(
                "mask is {}x{} but its image {} is {}x{}: a different aspect ratio",
                mask_size[0],
                mask_size[1],
                shown(&pair.image),
                size[0],
                size[1]
            ),
        ));
    }
    let labels = classes.labels_from_mask(mask.as_raw(), &pair.mask)?;
    let mask_resized = mask_size != size;
    let labels = if mask_resized {
        scaler.labels(&labels, mask_size, size)
    } else {
        labels
    };
    Ok(LabelledImage {
        size,
        rgb: image.into_raw(),
        labels,
        mask_resized,
    })
}

/// Decodes the image file at `path`.
///
/// # Errors
/// [`crate::Error::Dataset`] naming the file when it cannot be opened or decoded.
pub fn decode(path: &std::path::Path) -> Result<image::DynamicImage> {
    ImageReader::open(path)
        .map_err(|e| dataset_error(path, format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| dataset_error(path, format!("cannot read: {e}")))?
        .decode()
        .map_err(|e| dataset_error(path, format!("cannot decode: {e}")))
}
