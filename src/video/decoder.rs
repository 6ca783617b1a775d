//! Which decoders the source pipelines' `decodebin` uses: NVIDIA's NVDEC through GStreamer's
//! `nvcodec` plugin (gst-plugins-bad), or the CPU's.
//!
//! The plugin loads `libcuda.so.1` and `libnvcuvid.so.1` from the NVIDIA driver when GStreamer
//! scans it, and registers its decoders (`nvh264dec`, `nvh265dec`, …) only when it finds a GPU
//! with NVDEC; without one it is installed but registers none. The choice is made once per
//! process by ranking those decoders in GStreamer's registry, so every `decodebin` of every
//! source (files, live feeds, several inputs) follows it.

use std::sync::atomic::{AtomicBool, Ordering};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::{Error, Result};

/// The plugin that carries NVDEC's decoders.
const NVCODEC: &str = "nvcodec";

/// Where frames are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecoderChoice {
    /// NVDEC when GStreamer's nvcodec plugin finds an NVIDIA GPU, else the CPU.
    Auto,
    /// The CPU (libav and the other software decoders).
    Cpu,
    /// NVDEC; an error when it cannot be used, or cannot decode the input's codec.
    Nvdec,
}

/// Set when NVDEC was asked for: a source whose video needs another decoder then fails.
static NVDEC_REQUIRED: AtomicBool = AtomicBool::new(false);

/// Applies `choice` to GStreamer's registry and says what decodes: "NVDEC (nvh264dec, …)" or
/// "the CPU (why not NVDEC)".
///
/// # Errors
/// [`Error::Config`] when NVDEC is asked for and cannot be used, naming why.
pub fn choose(choice: DecoderChoice) -> Result<String> {
    super::init::init()?;
    let decoders = nvdec_decoders();
    match (choice, decoders.is_empty()) {
        (DecoderChoice::Cpu, _) => {
            for factory in &decoders {
                factory.set_rank(gst::Rank::NONE);
            }
            Ok("the CPU (--decoder cpu)".into())
        }
        (DecoderChoice::Nvdec, true) => Err(Error::Config(format!(
            "--decoder nvdec: {}",
            why_no_nvdec()
        ))),
        (_, false) => {
            for factory in &decoders {
                factory.set_rank(gst::Rank::PRIMARY + 256);
            }
            NVDEC_REQUIRED.store(choice == DecoderChoice::Nvdec, Ordering::Relaxed);
            let names: Vec<_> = decoders.iter().map(|f| f.name().to_string()).collect();
            Ok(format!("NVDEC ({})", names.join(", ")))
        }
        (DecoderChoice::Auto, true) => Ok(format!("the CPU ({})", why_no_nvdec())),
    }
}

/// The video decoders the nvcodec plugin registered.
fn nvdec_decoders() -> Vec<gst::ElementFactory> {
    gst::Registry::get()
        .features_by_plugin(NVCODEC)
        .into_iter()
        .filter_map(|feature| feature.downcast::<gst::ElementFactory>().ok())
        .filter(is_video_decoder)
        .collect()
}

fn is_video_decoder(factory: &gst::ElementFactory) -> bool {
    let klass = factory.klass();
    klass.contains("Decoder") && klass.contains("Video")
}

/// Why NVDEC cannot be used here.
fn why_no_nvdec() -> String {
    match gst::Registry::get().find_plugin(NVCODEC) {
        None => {
            "GStreamer's nvcodec plugin is not installed (Debian: gstreamer1.0-plugins-bad)".into()
        }
        Some(_) => "GStreamer's nvcodec plugin registered no NVDEC decoder: it found no NVIDIA \
                    GPU, or could not load the driver's libcuda.so.1 and libnvcuvid.so.1"
            .into(),
    }
}

/// Has `pipeline` fail, naming the decoder, when NVDEC was required and its `decodebin` plugs
/// another video decoder (a codec NVDEC does not decode).
pub(super) fn watch(pipeline: &gst::Pipeline) {
    if !NVDEC_REQUIRED.load(Ordering::Relaxed) {
        return;
    }
    pipeline.connect_deep_element_added(|_, _, element| {
        let Some(factory) = element.factory() else {
            return;
        };
        let from_nvcodec = factory
            .plugin()
            .is_some_and(|plugin| plugin.plugin_name() == NVCODEC);
        if is_video_decoder(&factory) && !from_nvcodec {
            gst::element_error!(
                element,
                gst::StreamError::CodecNotFound,
                (
                    "--decoder nvdec: NVDEC does not decode this input's codec ({} was needed; \
                     NVDEC decodes H.264, H.265, VP8, VP9, AV1, MPEG-2, MPEG-4 and JPEG on GPUs \
                     that have them); use --decoder auto or cpu",
                    factory.name()
                )
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_nvidia_gpu_nvdec_is_refused_with_the_reason_and_auto_falls_back() {
        crate::video::init().unwrap();
        if !nvdec_decoders().is_empty() {
            return; // A machine with NVDEC: the device kit measures it.
        }
        let refused = choose(DecoderChoice::Nvdec).unwrap_err().to_string();
        assert!(refused.contains("nvcodec"), "{refused}");
        let auto = choose(DecoderChoice::Auto).unwrap();
        assert!(auto.starts_with("the CPU"), "{auto}");
    }
}
