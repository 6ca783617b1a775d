//! The element's properties: what they mean, their defaults, and what the engine makes of them.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::thread;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst_video::VideoFormat;
use gstreamer as gst;
use gstreamer_video as gst_video;

use crate::imaging::{Background, Edge, Mode, Smoothing};
use crate::infer::{DeviceChoice, SegmenterOptions};
use crate::paths::{DEFAULT_MODEL, shipped_model};
use crate::stream::{Batching, EngineConfig, Policy};
use crate::{Error, Result};

/// The most frames a live batch takes when `batch` is 0: one of each element sharing the model.
const LIVE_BATCH: usize = 64;

/// What the element draws.
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamMode")]
pub enum ElementMode {
    /// Objects tinted in their class colour.
    #[default]
    #[enum_value(
        name = "Overlay: objects tinted in their class colour",
        nick = "overlay"
    )]
    Overlay,
    /// Objects kept, the background transparent (RGBA out) or `background`.
    #[enum_value(
        name = "Cut-out: objects kept, the background transparent (RGBA out) or the colour or image of 'background'",
        nick = "cutout"
    )]
    Cutout,
    /// The labels as a GRAY8 picture.
    #[enum_value(
        name = "Mask: the labels as a GRAY8 picture (255 = object for one-class models, else the class index)",
        nick = "mask"
    )]
    Mask,
    /// Objects kept, the background blurred.
    #[enum_value(name = "Blur: objects kept, the background blurred", nick = "blur")]
    Blur,
    /// Objects kept over `background`.
    #[enum_value(
        name = "Replace: objects kept over the colour or image of 'background' (green when unset)",
        nick = "replace"
    )]
    Replace,
    /// The frame unchanged; the labels only as metadata.
    #[enum_value(
        name = "Passthrough: the frame unchanged, the labels only as metadata",
        nick = "passthrough"
    )]
    Passthrough,
}

/// Where the model runs.
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamProvider")]
pub enum ProviderChoice {
    /// CUDA when it loads, else the CPU.
    #[default]
    #[enum_value(name = "Auto: CUDA when it loads, else the CPU", nick = "auto")]
    Auto,
    /// ONNX Runtime's CPU provider.
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu,
    /// CUDA, or an error.
    #[enum_value(
        name = "CUDA: an error when it cannot load, never a silent CPU fallback",
        nick = "cuda"
    )]
    Cuda,
}

/// The property values.
#[derive(Debug, Clone)]
pub struct Settings {
    pub model: Option<PathBuf>,
    pub mode: ElementMode,
    pub background: String,
    pub threshold: f32,
    pub opacity: f32,
    pub classes: Vec<String>,
    pub soft_edges: bool,
    pub feather: f32,
    pub provider: ProviderChoice,
    pub threads: u32,
    pub batch: u32,
    pub max_wait_ms: u32,
    pub smooth: f32,
    pub smooth_motion: f32,
    pub every: u32,
    pub leaky: bool,
    pub model_instance: Option<String>,
    pub metrics_port: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            mode: ElementMode::Overlay,
            background: String::new(),
            threshold: 0.5,
            opacity: 0.5,
            classes: Vec::new(),
            soft_edges: true,
            feather: 0.0,
            provider: ProviderChoice::Auto,
            threads: 0,
            batch: 0,
            max_wait_ms: 50,
            smooth: 0.0,
            smooth_motion: Smoothing::MOTION,
            every: 1,
            leaky: false,
            model_instance: None,
            metrics_port: 0,
        }
    }
}

/// The properties, documented as `gst-inspect-1.0 segstream` shows them.
pub static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
    let defaults = Settings::default();
    vec![
        glib::ParamSpecString::builder("model")
            .nick("Model")
            .blurb(&format!(
                "ONNX model following segstream's model contract (unset: the shipped {DEFAULT_MODEL})"
            ))
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("mode", defaults.mode)
            .nick("Mode")
            .blurb("What to draw")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("background")
            .nick("Background")
            .blurb(
                "Cutout and replace: #rrggbb or an image file; cutout: also 'transparent' (the \
                 default, RGBA out)",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecFloat::builder("threshold")
            .nick("Threshold")
            .blurb("Probability above which a pixel of a one-class model is the object")
            .minimum(0.0)
            .maximum(1.0)
            .default_value(defaults.threshold)
            .mutable_ready()
            .build(),
        glib::ParamSpecFloat::builder("opacity")
            .nick("Opacity")
            .blurb("Weight of the class colour in overlay mode")
            .minimum(0.0)
            .maximum(1.0)
            .default_value(defaults.opacity)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("classes")
            .nick("Classes")
            .blurb("Classes to draw, by name or index, comma-separated (unset: all)")
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("soft-edges")
            .nick("Soft edges")
            .blurb(
                "Cutout, blur and replace: partial alpha along the edge, refined along the \
                 frame's own edges (one-class models); off: alpha 0 or 255",
            )
            .default_value(defaults.soft_edges)
            .mutable_ready()
            .build(),
        glib::ParamSpecFloat::builder("feather")
            .nick("Feather")
            .blurb("Soft edges: the refinement's radius in pixels (0: one model pixel, at least 2)")
            .minimum(0.0)
            .maximum(100.0)
            .default_value(defaults.feather)
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("provider", defaults.provider)
            .nick("Provider")
            .blurb("Where ONNX Runtime runs the model")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("threads")
            .nick("Threads")
            .blurb("Threads of the CPU provider (0: half the cores)")
            .maximum(1024)
            .default_value(defaults.threads)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("batch")
            .nick("Batch")
            .blurb(
                "Most frames per inference call (0: 1 on the CPU, 8 with CUDA; leaky: one frame \
                 of each element sharing the model-instance)",
            )
            .maximum(1024)
            .default_value(defaults.batch)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("max-wait-ms")
            .nick("Max wait")
            .blurb("Longest a frame waits for its batch to fill, in milliseconds")
            .maximum(10_000)
            .default_value(defaults.max_wait_ms)
            .mutable_ready()
            .build(),
        glib::ParamSpecFloat::builder("smooth")
            .nick("Smooth")
            .blurb(
                "Temporal smoothing of the mask where the picture is still: \
                 p = s·previous + (1 − s)·current (0: off)",
            )
            .minimum(0.0)
            .maximum(0.99)
            .default_value(defaults.smooth)
            .mutable_ready()
            .build(),
        glib::ParamSpecFloat::builder("smooth-motion")
            .nick("Smooth motion")
            .blurb(
                "Luma change (of 255, per model pixel) at which smoothing lets go, so the mask \
                 follows motion (0: smooth everywhere alike)",
            )
            .minimum(0.0)
            .maximum(255.0)
            .default_value(defaults.smooth_motion)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("every")
            .nick("Every")
            .blurb("Run the model on every Nth frame; the frames between reuse its mask")
            .minimum(1)
            .maximum(1000)
            .default_value(defaults.every)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("leaky")
            .nick("Leaky")
            .blurb(
                "Live: when the model is slower than the input, drop the oldest waiting frame \
                 instead of blocking upstream",
            )
            .default_value(defaults.leaky)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("model-instance")
            .nick("Model instance")
            .blurb(
                "Elements of one process with the same name share one ONNX Runtime session and \
                 one batcher (their model settings must agree); unset: a session of its own",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("metrics-port")
            .nick("Metrics port")
            .blurb(
                "Serve live figures on 127.0.0.1:PORT while playing: Prometheus' text format on \
                 /metrics (per element frames in, out and dropped, fps, latency, errors; per \
                 stage latency and queue depth; inference batch sizes) and /healthz; elements \
                 naming the same port share it; 0: none",
            )
            .maximum(u32::from(u16::MAX))
            .default_value(defaults.metrics_port)
            .mutable_ready()
            .build(),
    ]
});

impl Settings {
    /// Sets the property `name` from `value` (checked by GStreamer against its spec).
    pub fn set(&mut self, name: &str, value: &glib::Value) {
        let text = || value.get::<Option<String>>().ok().flatten();
        let unsigned = || value.get::<u32>().unwrap_or_default();
        let float = || value.get::<f32>().unwrap_or_default();
        match name {
            "model" => self.model = text().filter(|t| !t.is_empty()).map(PathBuf::from),
            "mode" => self.mode = value.get().unwrap_or_default(),
            "background" => self.background = text().unwrap_or_default(),
            "threshold" => self.threshold = float(),
            "opacity" => self.opacity = float(),
            "classes" => {
                self.classes = text()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect();
            }
            "soft-edges" => self.soft_edges = value.get().unwrap_or(true),
            "feather" => self.feather = float(),
            "provider" => self.provider = value.get().unwrap_or_default(),
            "threads" => self.threads = unsigned(),
            "batch" => self.batch = unsigned(),
            "max-wait-ms" => self.max_wait_ms = unsigned(),
            "smooth" => self.smooth = float(),
            "smooth-motion" => self.smooth_motion = float(),
            "every" => self.every = unsigned().max(1),
            "leaky" => self.leaky = value.get().unwrap_or_default(),
            "model-instance" => self.model_instance = text().filter(|t| !t.is_empty()),
            "metrics-port" => self.metrics_port = unsigned(),
            _ => {}
        }
    }

    /// The value of the property `name`.
    pub fn get(&self, name: &str) -> glib::Value {
        use glib::value::ToValue as _;
        match name {
            "model" => self
                .model
                .as_ref()
                .map(|m| m.to_string_lossy().into_owned())
                .to_value(),
            "mode" => self.mode.to_value(),
            "background" => self.background.to_value(),
            "threshold" => self.threshold.to_value(),
            "opacity" => self.opacity.to_value(),
            "classes" => self.classes.join(",").to_value(),
            "soft-edges" => self.soft_edges.to_value(),
            "feather" => self.feather.to_value(),
            "provider" => self.provider.to_value(),
            "threads" => self.threads.to_value(),
            "batch" => self.batch.to_value(),
            "max-wait-ms" => self.max_wait_ms.to_value(),
            "smooth" => self.smooth.to_value(),
            "smooth-motion" => self.smooth_motion.to_value(),
            "every" => self.every.to_value(),
            "leaky" => self.leaky.to_value(),
            "metrics-port" => self.metrics_port.to_value(),
            _ => self.model_instance.to_value(),
        }
    }

    /// The model file: the one set, or the shipped default.
    ///
    /// # Errors
    /// [`Error::Config`] when none is set and the shipped one is not found.
    pub fn model_path(&self) -> Result<PathBuf> {
        match &self.model {
            Some(path) => Ok(path.clone()),
            None => shipped_model(DEFAULT_MODEL).ok_or_else(|| {
                Error::Config(format!(
                    "the default model {DEFAULT_MODEL} was not found; set the model property"
                ))
            }),
        }
    }

    /// How ONNX Runtime opens the model: half the cores beside decoding and encoding, as
    /// `segment` does, except for a `model-instance` that runs one session for every sharer
    /// (live, smoothed, `every`), which gets a thread per core.
    pub fn segmenter_options(&self) -> SegmenterOptions {
        let options = SegmenterOptions {
            device: match self.provider {
                ProviderChoice::Auto => DeviceChoice::Auto,
                ProviderChoice::Cpu => DeviceChoice::Cpu,
                ProviderChoice::Cuda => DeviceChoice::Cuda,
            },
            threads: self.threads as usize,
            ..SegmenterOptions::default()
        };
        match (&self.model_instance, self.batching().sessions) {
            (Some(_), 1) => options,
            _ => options.beside_video(),
        }
    }

    /// How the shared stages batch: as the lane's settings say (inference calls side by side
    /// on a file whose logits may come in any order, as `segment` runs files). Elements that
    /// share a `model-instance` must agree on it, so a sharer that smooths or uses `every`
    /// (and needs its logits in order) cannot join one whose sharers do neither.
    pub fn batching(&self) -> Batching {
        self.engine_config().batching()
    }

    /// Whether the engine takes the provider's batch for files, none being set.
    pub fn batch_from_provider(&self) -> bool {
        self.batch == 0 && !self.leaky
    }

    /// The settings of this element's lane.
    pub fn engine_config(&self) -> EngineConfig {
        let mut config = EngineConfig {
            batch_size: match (self.batch, self.leaky) {
                // The engine takes the provider's (see `batch_from_provider`).
                (0, false) => 1,
                (0, true) => LIVE_BATCH,
                (n, _) => n as usize,
            },
            max_wait: Duration::from_millis(u64::from(self.max_wait_ms)),
            workers: 1,
            threshold: self.threshold,
            policy: match self.leaky {
                true => Policy::DropOldest,
                false => Policy::Block,
            },
            every: u64::from(self.every),
            smoothing: Smoothing {
                strength: self.smooth,
                motion: self.smooth_motion,
            },
            patience: None,
        };
        if !config.in_order() {
            config.workers = thread::available_parallelism().map_or(2, |n| n.get());
        }
        config
    }

    /// How the compositors draw cut-out edges.
    pub fn edge(&self) -> Edge {
        match self.soft_edges {
            true => Edge::Soft {
                feather: (self.feather > 0.0).then_some(self.feather),
            },
            false => Edge::Hard,
        }
    }

    /// What the compositors draw.
    ///
    /// # Errors
    /// [`Error::Config`] for a background that is not a colour, an image or (cut-out only)
    /// `transparent`.
    pub fn mode(&self) -> Result<Mode> {
        let background = |default: &str| match self.background.as_str() {
            "" => Background::parse(default),
            text => Background::parse(text),
        };
        Ok(match self.mode {
            ElementMode::Overlay => Mode::Overlay {
                opacity: self.opacity,
            },
            ElementMode::Mask => Mode::Mask,
            ElementMode::Passthrough => Mode::Passthrough,
            ElementMode::Blur => Mode::Cutout {
                background: Background::Blur,
            },
            ElementMode::Cutout => Mode::Cutout {
                background: background("transparent")?,
            },
            ElementMode::Replace => match background("#00ff00")? {
                Background::Transparent | Background::Blur => {
                    return Err(Error::Config(
                        "mode=replace needs background=#rrggbb or an image file (mode=cutout \
                         makes it transparent, mode=blur blurs it)"
                            .into(),
                    ));
                }
                background => Mode::Cutout { background },
            },
        })
    }
}

/// The formats the element takes: the decoders' (composed in YUV, as `segment` does) and the
/// RGB family.
pub const INPUT_FORMATS: [VideoFormat; 6] = [
    VideoFormat::I420,
    VideoFormat::Nv12,
    VideoFormat::Rgba,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Bgra,
];

/// The format `mode` writes for input in `input`: GRAY8 masks, RGBA transparent cut-outs,
/// otherwise the input's own format.
pub fn output_format(mode: &Mode, input: VideoFormat) -> VideoFormat {
    match mode {
        Mode::Mask => VideoFormat::Gray8,
        Mode::Cutout {
            background: Background::Transparent,
        } => VideoFormat::Rgba,
        _ => input,
    }
}
