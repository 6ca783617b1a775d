//! The GStreamer plugin: a `segstream` element that runs the engine inside any pipeline
//! (`GST_PLUGIN_PATH=target/release gst-inspect-1.0 segstream`). Its pads are one more door
//! into the same engine as `segment` and `camera`: frames in at the sink pad, composed frames
//! (with the mask as [`meta::MASK_META`]) out of the source pad; elements naming the same
//! `model-instance` share one model session and one batcher.
//!
//! Uses `stream`, `video`, `imaging`, `infer` and `paths`; nothing uses it but the plugin's
//! registration.

mod imp;
mod instances;
mod latency;
pub mod meta;
mod output;
mod settings;

use gst::glib;
use gst::prelude::*;
use gstreamer as gst;

pub use settings::{ElementMode, ProviderChoice};

glib::wrapper! {
    /// The `segstream` element.
    pub struct Segstream(ObjectSubclass<imp::Segstream>) @extends gst::Element, gst::Object;
}

/// Registers the element (and its mask meta) with `plugin`, or with the process when `None`.
///
/// # Errors
/// When GStreamer refuses the registration.
pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    meta::register();
    gst::Element::register(
        plugin,
        "segstream",
        gst::Rank::NONE,
        Segstream::static_type(),
    )
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    register(Some(plugin))
}

gst::plugin_define!(
    segstream,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    env!("CARGO_PKG_VERSION"),
    // GStreamer loads plugins under the licences it knows; the crate is MIT or Apache-2.0.
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    "https://crates.io/crates/segstream"
);
