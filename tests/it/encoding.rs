//! The encoders' settings, chosen by measurement (benches/encoders.py): what the sink pipelines
//! are built with, and the quality of what they write against the frames they were given.

use std::path::Path;

use gstreamer::glib;
use gstreamer::glib::FlagsValue;
use gstreamer::prelude::*;
use segstream::cli::FILE_PRESET;
use segstream::video::{FrameSink, LiveOutput, OutputKind};

use crate::helpers::run_ok;

use crate::media::clip;

/// The lowest PSNR of luma (dB) a default H.264 or VP8 file may have against the frames it
/// encoded, on a real clip of a person: the chosen settings measure 46.2 dB (H.264) and
/// 47.2 dB (VP8) there; VP8 at libvpx's default 256 kb/s, used before, measured 36.1 dB on
/// solidWhiteRight (blocky).
const PSNR_FLOOR_DB: f64 = 44.0;

/// The nick of an enum property, or the value of a number or boolean, as text.
fn property(element: &gstreamer::Element, name: &str) -> String {
    let value = element.property_value(name);
    if let Some((_, choice)) = glib::EnumValue::from_value(&value) {
        return choice.nick().to_string();
    }
    match FlagsValue::from_value(&value) {
        Some((_, set)) => set
            .iter()
            .map(|flag| flag.nick())
            .collect::<Vec<_>>()
            .join("+"),
        None => value
            .serialize()
            .map(|text| text.to_string())
            .unwrap_or_default(),
    }
}

#[test]
fn file_sinks_are_built_with_the_measured_encoder_settings() {
    segstream::video::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for kind in [OutputKind::Mp4, OutputKind::Mkv] {
        let path = dir
            .path()
            .join(format!("out.{}", kind.extension().unwrap()));
        let sink = FrameSink::to_path(&path, kind, None)
            .unwrap()
            .with_preset(FILE_PRESET, false)
            .unwrap();
        let x264 = sink.element("encoder").unwrap();
        let settings: Vec<_> = [
            "speed-preset",
            "pass",
            "quantizer",
            "mb-tree",
            "rc-lookahead",
            "bframes",
        ]
        .iter()
        .map(|name| property(&x264, name))
        .collect();
        assert_eq!(
            settings,
            ["superfast", "qual", "20", "true", "10", "0"],
            "{kind:?}"
        );
    }
    let webm = FrameSink::to_path(&dir.path().join("out.webm"), OutputKind::Webm, None).unwrap();
    let vp8 = webm.element("vp8").unwrap();
    let settings: Vec<_> = ["end-usage", "cq-level", "cpu-used", "deadline"]
        .iter()
        .map(|name| property(&vp8, name))
        .collect();
    assert_eq!(settings, ["cq", "20", "8", "1"]);
    // Live outputs: zero latency, no look-ahead, a steady bit rate for the network.
    let rtp = LiveOutput::parse(Some("udp://127.0.0.1:5999")).unwrap();
    let (sink, _) = rtp.open().unwrap();
    let sink = sink.with_preset("ultrafast", true).unwrap();
    let x264 = sink.element("encoder").unwrap();
    let settings: Vec<_> = ["speed-preset", "tune", "pass", "rc-lookahead", "mb-tree"]
        .iter()
        .map(|name| property(&x264, name))
        .collect();
    assert_eq!(settings, ["ultrafast", "zerolatency", "cbr", "0", "false"]);
}

/// Runs `gst-launch-1.0` on `line` to its end.
fn gst_launch(line: &str) {
    let status = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(line.split_whitespace())
        .status()
        .expect("gst-launch-1.0 runs (scripts/setup installs gstreamer1.0-tools)");
    assert!(status.success(), "gst-launch-1.0 {line}");
}

/// The frames of a YUV4MPEG2 file, back to back (each header line removed).
fn y4m_frames(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let line_end = |from: usize| from + bytes[from..].iter().position(|&b| b == b'\n').unwrap();
    let header = String::from_utf8_lossy(&bytes[..line_end(0)]).to_string();
    assert!(header.starts_with("YUV4MPEG2 "), "{header}");
    let frame = {
        let field = |tag: char| -> usize {
            let field = header.split(' ').find(|f| f.starts_with(tag)).unwrap();
            field[1..].parse().unwrap()
        };
        let (width, height) = (field('W'), field('H'));
        width * height + 2 * width.div_ceil(2) * height.div_ceil(2)
    };
    let (mut frames, mut at) = (Vec::new(), line_end(0) + 1);
    while at < bytes.len() {
        let data = line_end(at) + 1;
        assert_eq!(&bytes[at..data], b"FRAME\n");
        frames.extend_from_slice(&bytes[data..data + frame]);
        at = data + frame;
    }
    frames
}

/// PSNR (dB) of the luma planes of two files of raw I420 frames of `width` × `height`.
fn luma_psnr(decoded: &Path, reference: &Path, [width, height]: [usize; 2]) -> f64 {
    let (a, b) = (std::fs::read(decoded).unwrap(), y4m_frames(reference));
    let frame = width * height * 3 / 2;
    assert_eq!(a.len(), b.len(), "frame counts differ");
    assert!(!a.is_empty() && a.len() % frame == 0);
    let (mut sum, mut count) = (0.0, 0usize);
    for (x, y) in a.chunks_exact(frame).zip(b.chunks_exact(frame)) {
        for (p, q) in x[..width * height].iter().zip(&y[..width * height]) {
            sum += (f64::from(*p) - f64::from(*q)).powi(2);
            count += 1;
        }
    }
    10.0 * (255.0f64.powi(2) / (sum / count as f64)).log10()
}

#[test]
fn default_files_keep_the_quality_floor() {
    let input = clip("asl_book.mkv");
    let input = input.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The frames exactly as the encoders receive them: segstream's raw I420 output.
    let reference = dir.path().join("reference.y4m");
    run_ok(&["segment", input, "-o", reference.to_str().unwrap()]);
    for extension in ["mp4", "webm"] {
        let output = dir.path().join(format!("out.{extension}"));
        run_ok(&[
            "segment",
            input,
            "-o",
            output.to_str().unwrap(),
            "--no-audio",
        ]);
        let decoded = dir.path().join("decoded.yuv");
        gst_launch(&format!(
            "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=I420 ! \
             filesink location={}",
            output.display(),
            decoded.display()
        ));
        let psnr = luma_psnr(&decoded, &reference, [640, 480]);
        assert!(
            psnr >= PSNR_FLOOR_DB,
            "{extension}: PSNR {psnr:.2} dB, below the floor of {PSNR_FLOOR_DB} dB"
        );
        eprintln!("{extension}: PSNR of luma {psnr:.2} dB");
    }
}
