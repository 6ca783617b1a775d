//! The pictures `label` may queue: frames sampled evenly over a whole video (each with the frame
//! right after it, to measure flicker), or every image of a folder.

use std::path::{Path, PathBuf};

use gstreamer as gst;

use crate::dataset::read::decode;
use crate::video::{FrameSource, probe_file};
use crate::{Error, Result};

/// Frames sampled when the container does not say how many it holds: one every this many.
const STRIDE_WITHOUT_LENGTH: u64 = 15;

/// How long one frame may take to decode before the video counts as stalled.
const FRAME_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// Where a candidate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A video's frame, counted from 0.
    Frame(u64),
    /// An image file of the input folder.
    File(PathBuf),
}

impl Origin {
    /// A file name stem for the candidate, unique within one input: `STEM-f000123` for a
    /// video's frame (STEM of the video), the image's own stem for a file.
    pub fn stem(&self, input: &Path) -> String {
        let stem = |p: &Path| {
            p.file_stem()
                .map_or_else(|| "frame".into(), |s| s.to_string_lossy().into_owned())
        };
        match self {
            Origin::Frame(index) => format!("{}-f{index:06}", stem(input)),
            Origin::File(path) => stem(path),
        }
    }
}

/// One picture that may be queued.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Where it comes from.
    pub origin: Origin,
    /// Width and height.
    pub size: [usize; 2],
    /// Packed RGBA.
    pub rgba: Vec<u8>,
    /// The next frame of the video (same size), when there is one.
    pub next: Option<Vec<u8>>,
}

/// Reads `count` candidates from `input`: evenly spaced frames of a video, or the first `count`
/// images of a folder (by name). `visit` receives each as it is read, so that it can be scored
/// while the rest decode.
///
/// # Errors
/// [`Error::Input`] when the input cannot be read or holds nothing.
pub fn read(input: &Path, count: usize, visit: impl FnMut(Candidate) -> Result<()>) -> Result<()> {
    if input.is_dir() {
        read_folder(input, count, visit)
    } else {
        read_video(input, count, visit)
    }
}

/// The frame indices sampled from a video of `frames` frames: `count` spread evenly, each in
/// the middle of its share of the video.
fn sampled(frames: Option<u64>, count: usize) -> impl Fn(u64) -> bool {
    let count = count.max(1) as u64;
    move |index| match frames {
        Some(total) if total > count => {
            // Frame k of the sample is ⌊(k + ½)·total / count⌋.
            let k = index * count / total;
            ((2 * k + 1) * total) / (2 * count) == index
        }
        Some(_) => true,
        None => index % STRIDE_WITHOUT_LENGTH == 0 && index / STRIDE_WITHOUT_LENGTH < count,
    }
}

fn read_video(
    input: &Path,
    count: usize,
    mut visit: impl FnMut(Candidate) -> Result<()>,
) -> Result<()> {
    let info = probe_file(input)?;
    let is_sampled = sampled(info.expected_frames(), count);
    let mut source = FrameSource::file(input)?;
    source.start()?;
    let mut held: Option<Candidate> = None;
    let mut read = 0usize;
    let mut index = 0u64;
    while let Some(frame) = source.next_frame(FRAME_TIMEOUT)? {
        let size = [frame.width(), frame.height()];
        if let Some(mut candidate) = held.take() {
            if candidate.size == size {
                candidate.next = Some(frame.pixels.clone());
            }
            visit(candidate)?;
        }
        if read < count && is_sampled(index) {
            held = Some(Candidate {
                origin: Origin::Frame(index),
                size,
                rgba: frame.pixels,
                next: None,
            });
            read += 1;
        } else if read >= count {
            break;
        }
        index += 1;
    }
    source.stop();
    if let Some(candidate) = held {
        visit(candidate)?;
    }
    match read {
        0 => Err(Error::Input {
            path: input.to_path_buf(),
            reason: "the video has no frames".into(),
        }),
        _ => Ok(()),
    }
}

fn read_folder(
    input: &Path,
    count: usize,
    mut visit: impl FnMut(Candidate) -> Result<()>,
) -> Result<()> {
    let listing = std::fs::read_dir(input).map_err(|e| Error::io(input, e))?;
    let mut files: Vec<PathBuf> = listing
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && is_image(path))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Input {
            path: input.to_path_buf(),
            reason: "the folder holds no PNG, JPEG or GIF images".into(),
        });
    }
    for path in files.into_iter().take(count) {
        let image = decode(&path)?.to_rgba8();
        let size = [image.width() as usize, image.height() as usize];
        visit(Candidate {
            origin: Origin::File(path),
            size,
            rgba: image.into_raw(),
            next: None,
        })?;
    }
    Ok(())
}

/// Whether `path` names an image by its extension.
fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg", "gif"].contains(&e.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_spread_over_the_whole_video() {
        let picked: Vec<u64> = (0..100).filter(|&i| sampled(Some(100), 4)(i)).collect();
        assert_eq!(picked, [12, 37, 62, 87]);
        let all: Vec<u64> = (0..3).filter(|&i| sampled(Some(3), 10)(i)).collect();
        assert_eq!(all, [0, 1, 2]);
        let unknown: Vec<u64> = (0..100).filter(|&i| sampled(None, 3)(i)).collect();
        assert_eq!(unknown, [0, 15, 30]);
    }

    #[test]
    fn stems_name_the_frame_or_the_file() {
        let video = Path::new("clips/street.mp4");
        assert_eq!(Origin::Frame(42).stem(video), "street-f000042");
        assert_eq!(Origin::File("a/b/x.jpg".into()).stem(video), "x");
    }
}
