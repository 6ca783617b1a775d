//! The gst-launch descriptions in `pipelines/`, embedded in the binary, and the choice of sink by
//! output path. Lines starting with `#` are comments. User paths never enter a description: they
//! are set as properties of the named elements after parsing.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::paths::shown;
use crate::{Error, Result};

/// Name of the appsink every source description must contain.
pub const APPSINK: &str = "frames";
/// Name of the appsrc every sink description must contain.
pub const APPSRC: &str = "out";
/// Element whose `location` is the input file.
pub const FILE_SOURCE: &str = "source";
/// Element whose `location` is the output file (or PNG pattern).
pub const FILE_SINK: &str = "file";
/// Name of the H.264 encoder in sink templates that have one.
pub const ENCODER: &str = "encoder";
/// Element whose `location` is the file the audio is read from.
pub const AUDIO_SOURCE: &str = "audio_source";
/// The decodebin of the audio branch.
pub const AUDIO_DECODER: &str = "audio_decoder";

/// Source for files.
pub const FILE_SOURCE_TEMPLATE: &str = include_str!("../../pipelines/sources/file.gst");
const AUDIO_TEMPLATE: &str = include_str!("../../pipelines/sinks/audio.gst");

/// The kind of output, chosen by the output path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `.mp4`: H.264 + AAC.
    Mp4,
    /// `.mkv`: H.264 + AAC.
    Mkv,
    /// `.webm`: VP8 + Opus.
    Webm,
    /// `.mov`: ProRes 4444 (keeps alpha) + AAC.
    Mov,
    /// `.y4m`: raw I420 frames in YUV4MPEG2, for another encoder to read; no audio.
    Y4m,
    /// A folder: one PNG per frame (keeps alpha), no audio.
    PngFolder,
}

impl OutputKind {
    /// The file extension of this kind (`None` for a PNG folder).
    pub fn extension(self) -> Option<&'static str> {
        match self {
            OutputKind::Mp4 => Some("mp4"),
            OutputKind::Mkv => Some("mkv"),
            OutputKind::Webm => Some("webm"),
            OutputKind::Mov => Some("mov"),
            OutputKind::Y4m => Some("y4m"),
            OutputKind::PngFolder => None,
        }
    }

    /// Chooses the output kind from the path: a known extension, or a folder (an existing
    /// directory, a path ending in `/`, or one without extension).
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
            return Ok(OutputKind::PngFolder);
        }
        let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        match extension.as_deref() {
            Some("mp4") => Ok(OutputKind::Mp4),
            Some("mkv") => Ok(OutputKind::Mkv),
            Some("webm") => Ok(OutputKind::Webm),
            Some("mov") => Ok(OutputKind::Mov),
            Some("y4m") => Ok(OutputKind::Y4m),
            None => Ok(OutputKind::PngFolder),
            Some(other) => Err(Error::Config(format!(
                "{}: unknown output extension '.{other}'; use .mp4, .mkv, .webm, .mov, .y4m or a folder (PNG frames)",
                shown(path)
            ))),
        }
    }

    /// Whether this output keeps the alpha channel of cut-outs.
    pub fn keeps_alpha(self) -> bool {
        matches!(self, OutputKind::Mov | OutputKind::PngFolder)
    }

    /// The sink description, with an audio branch when `with_audio` and the container has one.
    pub fn description(self, with_audio: bool) -> String {
        let video = match self {
            OutputKind::Mp4 => include_str!("../../pipelines/sinks/mp4.gst"),
            OutputKind::Mkv => include_str!("../../pipelines/sinks/mkv.gst"),
            OutputKind::Webm => include_str!("../../pipelines/sinks/webm.gst"),
            OutputKind::Mov => include_str!("../../pipelines/sinks/mov.gst"),
            OutputKind::Y4m => include_str!("../../pipelines/sinks/y4m.gst"),
            OutputKind::PngFolder => include_str!("../../pipelines/sinks/png.gst"),
        };
        let encoder = match self {
            OutputKind::Mp4 | OutputKind::Mkv | OutputKind::Mov => Some("avenc_aac ! aacparse"),
            OutputKind::Webm => Some("opusenc"),
            OutputKind::Y4m | OutputKind::PngFolder => None,
        };
        let mut description = strip_comments(video);
        if let (true, Some(encoder)) = (with_audio, encoder) {
            description.push(' ');
            description.push_str(&strip_comments(AUDIO_TEMPLATE).replace("{encoder}", encoder));
        }
        description
    }

    /// Whether this output's encoder needs even frame sizes (H.264 in 4:2:0).
    pub fn needs_even_size(self) -> bool {
        matches!(self, OutputKind::Mp4 | OutputKind::Mkv)
    }

    /// Whether the output stores 4:2:0 YUV (H.264, VP8, YUV4MPEG2): frames can then stay in
    /// the decoder's I420 from the source to the sink, with no conversion to RGBA and back.
    pub fn takes_i420(self) -> bool {
        matches!(
            self,
            OutputKind::Mp4 | OutputKind::Mkv | OutputKind::Webm | OutputKind::Y4m
        )
    }

    /// Whether this output can carry the input's audio.
    pub fn has_audio(self) -> bool {
        !matches!(self, OutputKind::PngFolder | OutputKind::Y4m)
    }
}

/// Parses `description` (the `role` pipeline, e.g. "source") and finds its app element `name`
/// of type `T` (GStreamer factory `factory`, named in the error).
///
/// # Errors
/// [`Error::Pipeline`] when the description does not parse, is a single element, or lacks the
/// app element.
pub fn launch<T: IsA<gst::Element>>(
    description: &str,
    role: &str,
    factory: &str,
    name: &str,
) -> Result<(gst::Pipeline, T)> {
    super::init::init()?;
    let element = gst::parse::launch(description)
        .map_err(|e| Error::Pipeline(format!("{role} pipeline '{description}': {e}")))?;
    let pipeline = element.downcast::<gst::Pipeline>().map_err(|_| {
        Error::Pipeline(format!(
            "{role} pipeline '{description}' is a single element, not a pipeline"
        ))
    })?;
    let app = pipeline
        .by_name(name)
        .and_then(|e| e.downcast::<T>().ok())
        .ok_or_else(|| {
            Error::Pipeline(format!(
                "{role} pipeline '{description}' has no `{factory} name={name}`"
            ))
        })?;
    Ok((pipeline, app))
}

/// The element `name` of the `role` pipeline (e.g. "source").
///
/// # Errors
/// [`Error::Pipeline`] when there is none.
pub fn named(pipeline: &gst::Pipeline, role: &str, name: &str) -> Result<gst::Element> {
    pipeline.by_name(name).ok_or_else(|| {
        Error::Pipeline(format!("the {role} pipeline has no element named '{name}'"))
    })
}

/// Drops `#` comment lines and joins the rest into one launch line.
pub fn strip_comments(template: &str) -> String {
    template
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_kind_follows_the_extension() {
        assert_eq!(
            OutputKind::from_path(Path::new("a/b.MP4")).unwrap(),
            OutputKind::Mp4
        );
        assert_eq!(
            OutputKind::from_path(Path::new("cut.mov")).unwrap(),
            OutputKind::Mov
        );
        assert_eq!(
            OutputKind::from_path(Path::new("frames/")).unwrap(),
            OutputKind::PngFolder
        );
        assert_eq!(
            OutputKind::from_path(Path::new("frames")).unwrap(),
            OutputKind::PngFolder
        );
        let err = OutputKind::from_path(Path::new("x.avi"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(".avi") && err.contains(".mp4"), "{err}");
    }

    #[test]
    fn descriptions_parse_as_one_line_with_named_elements() {
        for kind in [
            OutputKind::Mp4,
            OutputKind::Mkv,
            OutputKind::Webm,
            OutputKind::Mov,
            OutputKind::Y4m,
            OutputKind::PngFolder,
        ] {
            let description = kind.description(true);
            assert!(
                !description.contains('#') && !description.contains('\n'),
                "{description}"
            );
            assert!(description.contains("appsrc name=out"), "{description}");
            assert_eq!(
                description.contains("audio_source"),
                kind.has_audio(),
                "{description}"
            );
        }
    }
}
