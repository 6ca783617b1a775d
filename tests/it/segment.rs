//! `segstream segment` end to end: real clips, real GStreamer, real ONNX Runtime.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use segstream::video::{Frame, probe_file};

use crate::helpers::{
    assert_fails, count_after, fixture_model, interrupt, run_ok, segment_with_fixture, shipped,
};
use crate::media::{
    channel_classifier, decode, dominant_channel, generated, identity_model, is_red, opencv_clip,
    people_clip, png_frames, red_detector,
};

#[test]
fn segment_keeps_frames_timestamps_size_and_audio() {
    let input = generated("tone.mp4");
    let (_dir, output, stderr) = segment_with_fixture(&input, "out.mp4", &[]);
    assert!(stderr.contains("wrote 90 frames"), "{stderr}");

    let mut frames_in = Vec::new();
    decode(&input, |f| frames_in.push((f.pts, f.width(), f.height())));
    let mut frames_out = Vec::new();
    decode(&output, |f| frames_out.push((f.pts, f.width(), f.height())));
    assert_eq!(frames_in.len(), 90);
    assert_eq!(frames_out.len(), frames_in.len());
    assert_eq!(
        frames_out.first(),
        frames_in.first(),
        "first frame pts/size"
    );
    assert_eq!(frames_out.last(), frames_in.last(), "last frame pts/size");

    let (info_in, info_out) = (probe_file(&input).unwrap(), probe_file(&output).unwrap());
    assert!(info_out.has_audio, "the input's audio track is kept");
    let (d_in, d_out) = (info_in.duration.unwrap(), info_out.duration.unwrap());
    let gap = d_in.nseconds().abs_diff(d_out.nseconds());
    assert!(gap <= 40_000_000, "duration {d_out} vs input {d_in}");
}

/// Runs the test model `make_model` builds (at the clip's own size, 640×480) over `clip_name`
/// into PNG frames with `extra` options; returns the decoded input frames and the output pictures.
fn model_pngs(
    clip_name: &str,
    make_model: fn(&Path, [usize; 2]) -> PathBuf,
    extra: &[&str],
) -> (Vec<Frame>, Vec<image::RgbaImage>) {
    let input = generated(clip_name);
    let dir = tempfile::tempdir().unwrap();
    let model = make_model(dir.path(), [480, 640]);
    let frames_dir = dir.path().join("frames");
    let mut args = vec![
        "segment",
        input.to_str().unwrap(),
        "-o",
        frames_dir.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ];
    args.extend(extra);
    run_ok(&args);
    let outputs = png_frames(&frames_dir);
    let mut inputs = Vec::new();
    decode(&input, |f| inputs.push(f));
    assert_eq!(outputs.len(), inputs.len());
    (inputs, outputs)
}

#[test]
fn cutout_alpha_matches_the_expected_mask() {
    let (inputs, outputs) = model_pngs("bars.mkv", red_detector, &["--mode", "cutout"]);
    let (mut both, mut either, mut rgb_changed) = (0u64, 0u64, 0u64);
    for (frame, png) in inputs.iter().zip(&outputs) {
        for (pixel, out) in frame.pixels.chunks_exact(4).zip(png.pixels()) {
            let expected = is_red(pixel);
            let actual = out[3] >= 128;
            both += u64::from(expected && actual);
            either += u64::from(expected || actual);
            rgb_changed += u64::from(pixel[..3] != out.0[..3]);
        }
    }
    let iou = both as f64 / either.max(1) as f64;
    assert!(
        either > 10_000,
        "the clip has red pixels to find ({either})"
    );
    assert!(iou >= 0.99, "alpha vs expected mask: IoU {iou:.4}");
    assert_eq!(rgb_changed, 0, "a cut-out keeps the colours");
}

/// The shipped people model over the people clip into PNG frames with `extra` options.
fn people_pngs(extra: &[&str]) -> Vec<image::RgbaImage> {
    model_pngs("people.mkv", |_, _| shipped("people.onnx"), extra).1
}

#[test]
fn soft_edges_are_partial_only_along_the_boundary_and_the_matte_is_that_alpha() {
    let soft = people_pngs(&["--mode", "cutout"]);
    let hard = people_pngs(&["--mode", "cutout", "--edge", "hard"]);
    let matte = people_pngs(&["--mode", "mask", "--mask-format", "alpha"]);
    assert!(soft.len() > 50 && soft.len() == hard.len() && soft.len() == matte.len());
    let (width, height) = soft[0].dimensions();
    let (mut partial, mut agree, mut total) = (0u64, 0u64, 0u64);
    for ((soft, hard), matte) in soft.iter().zip(&hard).zip(&matte) {
        let alpha = |image: &image::RgbaImage, x: u32, y: u32| image.get_pixel(x, y)[3];
        for (x, y, px) in soft.enumerate_pixels() {
            let (a, h) = (px[3], alpha(hard, x, y));
            assert!(h == 0 || h == 255, "hard edges are 0 or 255, not {h}");
            let grey = matte.get_pixel(x, y);
            assert_eq!(
                [grey[0], grey[1], grey[2]],
                [a; 3],
                "the matte is the cut-out's alpha"
            );
            agree += u64::from((a >= 128) == (h == 255));
            total += 1;
            if a == 0 || a == 255 {
                continue;
            }
            partial += 1;
            // A visible partial pixel lies within 8 pixels of the hard mask's boundary. (Alpha
            // within 3 % of 0 or 255 is not visible: a faint probability that never reaches
            // the threshold, which the model's float rounding may leave anywhere, gives such.)
            if !(8..=247).contains(&a) {
                continue;
            }
            let near = |lo: u32, hi: u32, at: u32| at.saturating_sub(8).max(lo)..=(at + 8).min(hi);
            let window: Vec<u8> = near(0, height - 1, y)
                .flat_map(|wy| near(0, width - 1, x).map(move |wx| (wx, wy)))
                .map(|(wx, wy)| alpha(hard, wx, wy))
                .collect();
            assert!(
                window.contains(&0) && window.contains(&255),
                "partial alpha {a} at ({x}, {y}), far from the boundary"
            );
        }
    }
    let (share, agreement) = (partial as f64 / total as f64, agree as f64 / total as f64);
    assert!(
        share > 0.0005 && share < 0.03,
        "partial alpha on {share:.4} of pixels"
    );
    assert!(
        agreement > 0.98,
        "soft and hard masks agree on {agreement:.4}"
    );
}

#[test]
fn overlay_tints_exactly_the_expected_pixels() {
    let (inputs, outputs) = model_pngs("bars.mkv", red_detector, &["--opacity", "0.5"]);
    // The default colour of a one-class model is the palette's first, #e6194b.
    let color = [230.0f32, 25.0, 75.0];
    let mut wrong = 0u64;
    let mut total = 0u64;
    for (frame, png) in inputs.iter().zip(&outputs) {
        for (pixel, out) in frame.pixels.chunks_exact(4).zip(png.pixels()) {
            let expected: Vec<f32> = if is_red(pixel) {
                (0..3)
                    .map(|c| (f32::from(pixel[c]) * 0.5 + color[c] * 0.5).round())
                    .collect()
            } else {
                (0..3).map(|c| f32::from(pixel[c])).collect()
            };
            total += 1;
            wrong += u64::from((0..3).any(|c| (f32::from(out[c]) - expected[c]).abs() > 1.0));
        }
    }
    let agreement = 1.0 - wrong as f64 / total as f64;
    assert!(agreement >= 0.99, "overlay agreement {agreement:.4}");
}

#[test]
fn multi_class_mask_holds_the_class_ids() {
    let (inputs, outputs) = model_pngs("bars.mkv", channel_classifier, &["--mode", "mask"]);
    let mut counts = [0u64; 3];
    let mut wrong = 0u64;
    for (frame, png) in inputs.iter().zip(&outputs) {
        for (pixel, out) in frame.pixels.chunks_exact(4).zip(png.pixels()) {
            let expected = dominant_channel(pixel);
            counts[usize::from(expected)] += 1;
            wrong += u64::from(out[0] != expected);
        }
    }
    let total: u64 = counts.iter().sum();
    assert!(
        counts.iter().all(|&c| c > 0),
        "every class occurs: {counts:?}"
    );
    assert!(
        (wrong as f64) / (total as f64) < 0.01,
        "{wrong} of {total} pixels with the wrong class id"
    );
}

#[test]
fn batch_sizes_give_identical_outputs() {
    let input = generated("bars.mkv");
    let dir = tempfile::tempdir().unwrap();
    // Input at half size: frames are resized down and masks up, so batching, splitting and
    // reordering all have per-frame content to get wrong.
    let model = red_detector(dir.path(), [240, 320]);
    let outputs: Vec<Vec<image::RgbaImage>> = ["1", "3", "8"]
        .iter()
        .map(|batch| {
            let out = dir.path().join(format!("batch{batch}"));
            run_ok(&[
                "segment",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
                "--mode",
                "mask",
                "--batch",
                batch,
            ]);
            png_frames(&out)
        })
        .collect();
    let mut frames_in = 0;
    decode(&input, |_| frames_in += 1);
    assert_eq!(outputs[0].len(), frames_in);
    assert!(
        outputs[0].iter().any(|f| f.pixels().any(|p| p[0] == 255)),
        "some object pixels"
    );
    assert!(outputs[1] == outputs[0], "batch 3 differs from batch 1");
    assert!(outputs[2] == outputs[0], "batch 8 differs from batch 1");
}

#[test]
fn damaged_file_is_decoded_with_repaired_timestamps() {
    let input = opencv_clip("Megamind_bugy.avi");
    let (_dir, output, stderr) = segment_with_fixture(&input, "out.mkv", &[]);
    assert!(stderr.contains("broken timestamps"), "{stderr}");
    assert!(stderr.contains("wrote 270 frames"), "{stderr}");
    let mut count = 0;
    decode(&output, |_| count += 1);
    assert_eq!(count, 270);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    let out = out.to_str().unwrap();
    let model = fixture_model();
    let model = model.to_str().unwrap();
    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("text.mp4");
    std::fs::write(&text, b"this is not a video\n").unwrap();
    let good = generated("bars.mkv");
    let good = good.to_str().unwrap();

    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        (
            vec!["segment", "no/such.mp4", "-o", out],
            1,
            vec!["no/such.mp4", "cannot read"],
        ),
        (
            vec!["segment", empty.to_str().unwrap(), "-o", out],
            1,
            vec!["empty.mp4", "empty"],
        ),
        (
            vec!["segment", text.to_str().unwrap(), "-o", out],
            1,
            vec!["text.mp4", "cannot read it as video"],
        ),
        (
            vec!["segment", good, "-o", "/no/such/dir/out.mp4"],
            2,
            vec!["/no/such/dir/out.mp4", "not writable"],
        ),
        (
            vec!["segment", good, "-o", "out.avi"],
            2,
            vec!["out.avi", "unknown output extension"],
        ),
        (
            vec![
                "segment",
                "--source-pipeline",
                "videotestsrc num-buffers=5 ! appsink name=wrong",
                "-o",
                out,
            ],
            1,
            vec!["appsink name=frames"],
        ),
        (
            vec!["segment", good, "-o", out, "--model", "missing.onnx"],
            1,
            vec!["missing.onnx", "not found"],
        ),
    ];
    for (args, code, needles) in &cases {
        let mut args = args.clone();
        if !args.contains(&"--model") {
            args.extend(["--model", model]);
        }
        assert_fails(&args, &[], *code, needles);
    }
}

#[test]
fn model_that_is_not_rgb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gray.onnx");
    std::fs::write(&path, identity_model(&[-1, 1, 8, 8])).unwrap();
    let input = generated("bars.mkv");
    assert_fails(
        &[
            "segment",
            input.to_str().unwrap(),
            "-o",
            "x.mp4",
            "--model",
            path.to_str().unwrap(),
        ],
        &[],
        1,
        &["gray.onnx", "1 channels, expected 3"],
    );
}

#[test]
fn ctrl_c_finalises_the_output_with_the_frames_read() {
    let input = people_clip();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mkv");
    // The shipped model, about 8 s for the clip here: the tiny fixture runs it in 2.5 s on a
    // quiet machine, before the interrupt at 3 s comes.
    let model = shipped("people.onnx");
    let child = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args([
            "segment",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ])
        .args(["--model", model.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    interrupt(&child);
    let result = crate::helpers::finish(child, crate::helpers::DEADLINE);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    let written = count_after(&stderr, "interrupted: wrote ");
    assert!(written > 0 && written < 795, "{written} frames of 795");
    let mut decoded = 0;
    decode(&output, |_| decoded += 1);
    assert_eq!(
        decoded, written,
        "the finalised file holds every frame written"
    );
}
