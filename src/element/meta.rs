//! The mask as buffer metadata: a `GstCustomMeta` named [`MASK_META`] on every buffer the
//! element sends, so that an application or a later element can use the labels without
//! running the model again.
//!
//! Its structure (`gst_custom_meta_get_structure` in C) holds:
//! - `width`, `height` (`guint`): the frame's size;
//! - `labels` (`GBytes`): `width × height` bytes, row by row, one label per pixel — 0/1
//!   (background/object) for one-class models, the class index for multi-class ones;
//! - `classes` (`gchararray`): the model's class names, comma-separated, in index order.

use gst::glib;
use gstreamer as gst;

use crate::imaging::Mask;

/// The name the meta is registered and looked up under.
pub const MASK_META: &str = "SegstreamMaskMeta";

/// Registers the meta (once per process).
pub fn register() {
    if !gst::meta::CustomMeta::is_registered(MASK_META) {
        gst::meta::CustomMeta::register(MASK_META, &[]);
    }
}

/// Attaches `mask` (labels of a model with `classes`) to `buffer`.
///
/// # Errors
/// When GStreamer cannot add the meta (it is not registered).
pub fn attach(
    buffer: &mut gst::BufferRef,
    mask: Mask,
    classes: &str,
) -> Result<(), glib::BoolError> {
    let mut meta = gst::meta::CustomMeta::add(buffer, MASK_META)?;
    let structure = meta.mut_structure();
    structure.set("width", mask.width as u32);
    structure.set("height", mask.height as u32);
    structure.set("classes", classes);
    structure.set("labels", glib::Bytes::from_owned(mask.labels));
    Ok(())
}

/// The mask on `buffer`, if it carries one.
pub fn read(buffer: &gst::BufferRef) -> Option<Mask> {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, MASK_META).ok()?;
    let structure = meta.structure();
    let width = structure.get::<u32>("width").ok()? as usize;
    let height = structure.get::<u32>("height").ok()? as usize;
    let labels = structure.get::<glib::Bytes>("labels").ok()?;
    (labels.len() == width * height).then(|| Mask {
        width,
        height,
        labels: labels.to_vec(),
        coverage: None,
    })
}
