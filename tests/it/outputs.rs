//! Nothing lost, nothing garbled: every output kind plays, a failed or interrupted run never
//! leaves a false output or destroys a previous one, and odd inputs (rotated, resized midway,
//! odd-sized, tiny, truncated) come out as a player shows them or are refused by name.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use segstream::video::probe_file;

use crate::helpers::{
    assert_fails, count_after, describe, fixture_model, interrupt, segment_args, segstream,
};
use crate::media::{decode, frame_count, generated, is_red, people_clip, png_frames, red_detector};

/// Runs `segstream segment INPUT -o OUTPUT --model MODEL EXTRA…`; returns (exit code, stderr).
fn segment(input: &Path, output: &Path, model: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = segment_args(input, output, model);
    args.extend(extra);
    let result = segstream(&args);
    let text = describe(&args, &result);
    assert!(!text.contains("panicked"), "{text}");
    (result.status.code(), text)
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn an_output_that_is_the_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mkv");
    std::fs::copy(generated("bars.mkv"), &input).unwrap();
    let original = std::fs::read(&input).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(&input, dir.path().join("link.mkv")).unwrap();
    std::fs::hard_link(&input, dir.path().join("hard.mkv")).unwrap();
    let model = fixture_model();
    for output in ["in.mkv", "sub/../in.mkv", "link.mkv", "hard.mkv"] {
        let output = dir.path().join(output);
        let (code, text) = segment(&input, &output, &model, &[]);
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("is the input file"), "{text}");
        assert_eq!(std::fs::read(&input).unwrap(), original, "{text}");
    }
}

#[test]
fn every_output_kind_plays_in_both_modes_with_the_input_audio() {
    let input = generated("tone.mp4");
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_model();
    for name in ["out.mp4", "out.mkv", "out.webm", "out.mov", "frames"] {
        for mode in ["overlay", "cutout"] {
            let output = dir.path().join(format!("{mode}-{name}"));
            let (code, text) = segment(&input, &output, &model, &["--mode", mode]);
            assert_eq!(code, Some(0), "{text}");
            if name == "frames" {
                let frames = png_frames(&output);
                assert_eq!(frames.len(), 90, "{text}");
                assert_eq!(frames[0].dimensions(), (320, 240));
                continue;
            }
            let info = probe_file(&output).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(info.has_audio, "{name} ({mode}) lost the audio");
            assert_eq!(info.size, (320, 240), "{name} ({mode})");
            assert_eq!(frame_count(&output), 90, "{name} ({mode})");
        }
    }
    assert_eq!(names(dir.path()).len(), 10, "no temporary files left");
}

#[test]
fn a_mov_cutout_keeps_the_alpha_channel() {
    let input = generated("bars.mkv");
    let dir = tempfile::tempdir().unwrap();
    let model = red_detector(dir.path(), [480, 640]);
    let output = dir.path().join("cut.mov");
    let (code, text) = segment(&input, &output, &model, &["--mode", "cutout"]);
    assert_eq!(code, Some(0), "{text}");
    let mut expected = Vec::new();
    decode(&input, |frame| {
        expected.push(frame.pixels.chunks_exact(4).map(is_red).collect::<Vec<_>>());
    });
    let (mut agree, mut total, mut opaque) = (0u64, 0u64, 0u64);
    let mut index = 0;
    decode(&output, |frame| {
        for (pixel, &red) in frame.pixels.chunks_exact(4).zip(&expected[index]) {
            // Soft edges: alpha may be partial along the boundary; half or more is the object.
            let alpha = pixel[3];
            agree += u64::from((alpha >= 128) == red);
            opaque += u64::from(alpha >= 128);
            total += 1;
        }
        index += 1;
    });
    assert_eq!(index, expected.len(), "every frame decoded back");
    assert!(opaque > 0 && opaque < total, "{opaque} opaque of {total}");
    let agreement = agree as f64 / total as f64;
    assert!(
        agreement > 0.99,
        "alpha agrees with the mask on {agreement:.4}"
    );
}

/// A source pipeline whose `identity` fails after `frames` buffers, as a decoder meeting a
/// damaged stream does.
fn failing_source(frames: u32) -> String {
    format!(
        "videotestsrc num-buffers=60 ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         identity error-after={frames} ! videoconvert ! appsink name=frames"
    )
}

#[test]
fn a_failed_run_keeps_the_previous_output_and_labels_what_it_wrote_as_partial() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    std::fs::write(&output, "the previous output").unwrap();
    let model = fixture_model();
    let run = |source: &str| {
        let args = [
            "segment",
            "--source-pipeline",
            source,
            "-o",
            output.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--batch",
            "1",
        ];
        let result = segstream(&args);
        let text = describe(&args, &result);
        assert_eq!(result.status.code(), Some(1), "{text}");
        assert!(!text.contains("panicked"), "{text}");
        text
    };

    // Nothing usable written: no output at all, the previous one untouched.
    let text = run(&failing_source(1));
    assert_eq!(names(dir.path()), ["out.mp4"], "{text}");
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "the previous output"
    );

    // Frames written and finalised before the failure: kept, under a name that says so.
    let text = run(&failing_source(20));
    assert_eq!(names(dir.path()), ["out.mp4", "out.partial.mp4"], "{text}");
    assert!(text.contains("out.partial.mp4"), "{text}");
    let partial = frame_count(&dir.path().join("out.partial.mp4"));
    assert!(
        (1..20).contains(&partial),
        "{partial} frames in the partial file"
    );
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "the previous output"
    );
}

#[test]
fn zero_workers_or_batch_are_usage_errors() {
    let input = generated("bars.mkv");
    let model = fixture_model();
    for option in ["--workers", "--batch"] {
        assert_fails(
            &[
                "segment",
                input.to_str().unwrap(),
                "-o",
                "never.mp4",
                "--model",
                model.to_str().unwrap(),
                option,
                "0",
            ],
            &[],
            2,
            &[option, "at least 1"],
        );
    }
    assert!(!Path::new("never.mp4").exists());
}

#[test]
fn a_resolution_change_is_fitted_into_the_first_size() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("frames");
    let (code, text) = segment(
        &generated("two-sizes.ts"),
        &output,
        &fixture_model(),
        &["--opacity", "0"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("changes resolution from 320×240 to 160×160"),
        "{text}"
    );
    let frames = png_frames(&output);
    assert_eq!(frames.len(), 30);
    assert!(frames.iter().all(|f| f.dimensions() == (320, 240)));
    let last = frames.last().unwrap();
    // 160×160 fitted into 320×240 is 240×240 in the middle, black bars left and right.
    let centre = last.get_pixel(160, 120).0;
    assert!(
        centre[2] > 200 && centre[0] < 60,
        "centre {centre:?} is blue"
    );
    let border = last.get_pixel(20, 120).0;
    assert!(
        border[..3].iter().all(|&c| c < 20),
        "border {border:?} is black"
    );
    let first = frames[0].get_pixel(20, 120).0;
    assert!(
        first[0] > 200,
        "the first clip is red up to its edge: {first:?}"
    );
}

#[test]
fn a_rotated_clip_comes_out_upright() {
    let input = generated("rotated.mp4");
    assert_eq!(
        probe_file(&input).unwrap().size,
        (64, 32),
        "stored sideways"
    );
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    let (code, text) = segment(&input, &output, &fixture_model(), &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        probe_file(&output).unwrap().size,
        (32, 64),
        "stored upright, so it plays upright without a tag"
    );
    assert_eq!(frame_count(&output), 10);
}

#[test]
fn odd_sizes_are_padded_for_h264_and_tiny_frames_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_model();
    let odd = generated("odd.mkv");
    for (name, size) in [("odd.mp4", (322, 242)), ("odd.webm", (321, 241))] {
        let output = dir.path().join(name);
        let (code, text) = segment(&odd, &output, &model, &[]);
        assert_eq!(code, Some(0), "{text}");
        assert_eq!(probe_file(&output).unwrap().size, size, "{name}");
        assert_eq!(frame_count(&output), 10, "{name}");
    }
    let tiny = generated("tiny.mkv");
    let output = dir.path().join("tiny.mp4");
    let (code, text) = segment(&tiny, &output, &model, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("tiny.mkv") && text.contains("2×2") && text.contains("16×16"),
        "{text}"
    );
    assert!(!output.exists());
}

#[test]
fn a_truncated_file_is_reported_with_both_counts() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(generated("bars.mkv")).unwrap();
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &whole[..whole.len() * 3 / 10]).unwrap();
    let output = dir.path().join("out.mkv");
    let (code, text) = segment(&cut, &output, &fixture_model(), &[]);
    assert_eq!(code, Some(0), "{text}");
    let written = count_after(&text, "wrote ");
    assert!(written < 30, "{written} frames from 30 % of the file");
    assert!(
        text.contains(&format!("decoded {written} frames")) && text.contains("announces about 60"),
        "{text}"
    );
}

/// Starts `segment` on the long pedestrians clip into `output`.
fn spawn_segment(output: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(["segment", people_clip().to_str().unwrap(), "-o"])
        .arg(output)
        .args(["--model", fixture_model().to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Checks what a Ctrl-C left in `dir`: no file at all (and says so), or the finalised
/// output with every frame it says it wrote.
fn check_interrupted(dir: &Path, output: &Path, code: Option<i32>, stderr: &str, when: &str) {
    assert_eq!(code, Some(130), "{when}: {stderr}");
    match names(dir).as_slice() {
        [] => assert!(stderr.contains("no frame was written"), "{when}: {stderr}"),
        [name] if name == "out.mp4" => {
            let written = count_after(stderr, "interrupted: wrote ");
            assert_eq!(frame_count(output), written as usize, "{when}");
        }
        other => panic!("{when}: the folder holds {other:?}: {stderr}"),
    }
}

#[test]
fn ctrl_c_at_each_step_of_start_up_ends_the_run() {
    use std::io::BufRead as _;
    // Before the model loads (the decoder is chosen first), once it has loaded (no frame
    // through yet), and once frames are flowing: each run ends, within a deadline.
    for marker in ["decoding on", "model loaded", "frames flowing"] {
        let dir = tempfile::tempdir().unwrap();
        let output: PathBuf = dir.path().join("out.mp4");
        let mut child = spawn_segment(&output);
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines_tx.send(line);
            }
        });
        let mut printed = Vec::new();
        let trigger = if marker == "frames flowing" {
            "model loaded"
        } else {
            marker
        };
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) {
            let seen = line.contains(trigger);
            printed.push(line);
            if seen {
                break;
            }
        }
        if marker == "frames flowing" {
            std::thread::sleep(Duration::from_millis(300));
        }
        interrupt(&child);
        let status = crate::helpers::wait_within(&mut child, Duration::from_secs(120));
        reader.join().unwrap();
        printed.extend(lines.try_iter());
        let text = printed.join("\n");
        let status =
            status.unwrap_or_else(|| panic!("{marker}: Ctrl-C did not end the run: {text}"));
        check_interrupted(dir.path(), &output, status.code(), &text, marker);
    }
}

#[test]
fn ctrl_c_at_any_moment_leaves_a_finalised_output_or_none() {
    for delay_ms in [30, 80, 150, 400] {
        let dir = tempfile::tempdir().unwrap();
        let output: PathBuf = dir.path().join("out.mp4");
        let child = spawn_segment(&output);
        std::thread::sleep(Duration::from_millis(delay_ms));
        interrupt(&child);
        // A run that does not end after Ctrl-C fails here with what it printed.
        let result = crate::helpers::finish(child, Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&result.stderr);
        let when = format!("after {delay_ms} ms");
        check_interrupted(dir.path(), &output, result.status.code(), &stderr, &when);
    }
}
