//! Several inputs in one process (one model session, one batcher), the slices a cluster array
//! takes of a long list, and the deployment files that run them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{assert_fails, describe, fixture_model, interrupt, run_ok, segstream};
use crate::media::{decode, frame_count, generated, people_clip, red_detector};

/// Every frame of `path`: its timestamp and whether each pixel is white (the mask).
fn mask_frames(path: &Path) -> Vec<(Option<u64>, Vec<bool>)> {
    let mut frames = Vec::new();
    decode(path, |frame| {
        let white = frame.pixels.chunks_exact(4).map(|p| p[0] >= 128).collect();
        frames.push((frame.pts.map(|t| t.nseconds()), white));
    });
    frames
}

/// `segment` of `inputs` into `folder` with `extra` options; returns (exit code, all output).
fn segment_many(inputs: &[&Path], folder: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args: Vec<&str> = vec!["segment"];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    args.extend(["-o", folder.to_str().unwrap()]);
    args.extend(extra);
    let output = segstream(&args);
    let text = describe(&args, &output);
    assert!(!text.contains("panicked"), "{text}");
    (output.status.code(), text)
}

#[test]
fn two_inputs_in_one_run_match_their_single_runs_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = red_detector(dir.path(), [64, 64]);
    let (bars, people) = (generated("bars.mkv"), generated("people.mkv"));
    let folder = dir.path().join("both");
    let model_args = ["--model", model.to_str().unwrap(), "--mode", "mask"];
    let mut extra = model_args.to_vec();
    extra.extend(["--format", "mkv", "--batch", "4"]);
    let (code, text) = segment_many(&[&bars, &people], &folder, &extra);
    assert_eq!(code, Some(0), "{text}");
    for input in [&bars, &people] {
        let name = input.file_name().unwrap().to_str().unwrap();
        let single = dir.path().join(format!("single-{name}"));
        let mut args = vec![
            "segment",
            input.to_str().unwrap(),
            "-o",
            single.to_str().unwrap(),
        ];
        args.extend(model_args);
        run_ok(&args);
        let (together, alone) = (mask_frames(&folder.join(name)), mask_frames(&single));
        assert_eq!(together.len(), alone.len(), "{name}: frame counts");
        let timestamps = |frames: &[(Option<u64>, Vec<bool>)]| -> Vec<Option<u64>> {
            frames.iter().map(|(pts, _)| *pts).collect()
        };
        assert_eq!(
            timestamps(&together),
            timestamps(&alone),
            "{name}: timestamps"
        );
        let (mut same, mut all) = (0usize, 0usize);
        for ((_, a), (_, b)) in together.iter().zip(&alone) {
            same += a.iter().zip(b).filter(|(x, y)| x == y).count();
            all += a.len();
        }
        let agreement = same as f64 / all as f64;
        assert!(agreement >= 0.999, "{name}: masks agree on {agreement}");
    }
    assert!(
        text.contains("bars.mkv") && text.contains("people.mkv"),
        "{text}"
    );
}

#[test]
fn a_corrupt_input_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.mp4");
    std::fs::write(&corrupt, b"not a video at all").unwrap();
    let missing = dir.path().join("missing.mkv");
    let folder = dir.path().join("out");
    let good = generated("bars.mkv");
    let model = fixture_model();
    let (code, text) = segment_many(
        &[&corrupt, &good, &missing],
        &folder,
        &["--model", model.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("corrupt.mp4") && text.contains("failed"),
        "{text}"
    );
    assert!(text.contains("2 of 3 inputs failed"), "{text}");
    assert_eq!(frame_count(&folder.join("bars.mp4")), 60);
    let names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["bars.mp4"], "{text}");
}

#[test]
fn shards_split_the_list_and_skip_done_continues_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let clips: Vec<PathBuf> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|name| {
            let path = dir.path().join(format!("{name}.mkv"));
            std::fs::copy(generated("odd.mkv"), &path).unwrap();
            path
        })
        .collect();
    let list = dir.path().join("list.txt");
    let lines: Vec<String> = clips.iter().map(|p| p.display().to_string()).collect();
    std::fs::write(&list, format!("# five clips\n{}\n", lines.join("\n"))).unwrap();
    let folder = dir.path().join("out");
    let model = fixture_model();
    let base = [
        "segment",
        "--inputs",
        list.to_str().unwrap(),
        "-o",
        folder.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--format",
        "mkv",
    ];
    let outputs = || {
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    // Three shards, one from --shard, two from a cluster's index variables.
    let mut args = base.to_vec();
    args.extend(["--shard", "1/3"]);
    run_ok(&args);
    assert_eq!(outputs(), ["b.mkv", "e.mkv"]);
    let output = crate::helpers::output_within(
        Command::new(env!("CARGO_BIN_EXE_segstream"))
            .args(base)
            .args(["--shards", "3"])
            .env("JOB_COMPLETION_INDEX", "0"),
    );
    assert!(output.status.success(), "{}", describe(&base, &output));
    assert_eq!(outputs(), ["a.mkv", "b.mkv", "d.mkv", "e.mkv"]);
    let output = crate::helpers::output_within(
        Command::new(env!("CARGO_BIN_EXE_segstream"))
            .args(base)
            .env("SLURM_ARRAY_TASK_ID", "2")
            .env("SLURM_ARRAY_TASK_COUNT", "3"),
    );
    assert!(output.status.success(), "{}", describe(&base, &output));
    assert_eq!(outputs(), ["a.mkv", "b.mkv", "c.mkv", "d.mkv", "e.mkv"]);

    // A re-run skips what is done and redoes what a failed run left as partial.
    std::fs::rename(folder.join("c.mkv"), folder.join("c.partial.mkv")).unwrap();
    let mut args = base.to_vec();
    args.push("--skip-done");
    let printed = run_ok(&args);
    assert_eq!(
        printed.stderr.matches("skipped: done already").count(),
        4,
        "{}",
        printed.stderr
    );
    assert_eq!(frame_count(&folder.join("c.mkv")), 10, "{}", printed.stderr);
}

#[test]
fn bad_options_for_several_inputs_are_usage_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_model();
    let model = model.to_str().unwrap();
    let bars = generated("bars.mkv");
    let bars = bars.to_str().unwrap();
    let other = dir.path().join("other.mkv");
    std::fs::copy(bars, &other).unwrap();
    let other = other.to_str().unwrap();
    let a_file = dir.path().join("file.txt");
    std::fs::write(&a_file, "x").unwrap();
    let folder = dir.path().join("out");
    let out = folder.to_str().unwrap();
    for (output, extra, needle) in [
        (out, &["--shard", "3/3"][..], "3/3"),
        (out, &["--shard", "0/0"][..], "0/0"),
        (out, &["--shard", "one/3"][..], "one/3"),
        (a_file.to_str().unwrap(), &[][..], "not a folder"),
    ] {
        let mut args = vec!["segment", bars, other, "-o", output, "--model", model];
        args.extend(extra);
        assert_fails(&args, &[], 2, &[needle]);
        assert!(!folder.exists());
    }
    // Two inputs that would write the same output.
    let twin = dir.path().join("twin");
    std::fs::create_dir(&twin).unwrap();
    std::fs::copy(bars, twin.join("bars.mkv")).unwrap();
    let twin = twin.join("bars.mkv");
    assert_fails(
        &[
            "segment",
            bars,
            twin.to_str().unwrap(),
            "-o",
            out,
            "--model",
            model,
        ],
        &[],
        2,
        &["would both write", "bars.mp4"],
    );
    assert!(!folder.exists());
}

#[test]
fn outputs_that_are_inputs_are_refused_and_every_input_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_model();
    let model = model.to_str().unwrap();
    let same = dir.path().join("same");
    let links = dir.path().join("links");
    std::fs::create_dir_all(&same).unwrap();
    std::fs::create_dir_all(&links).unwrap();
    let original = std::fs::read(generated("bars.mkv")).unwrap();
    for name in ["a.mkv", "b.mkv", "c.mkv", "d.mkv"] {
        std::fs::write(same.join(name), &original).unwrap();
    }
    // The same files through a symbolic link, a hard link and `..`.
    std::os::unix::fs::symlink(same.join("c.mkv"), links.join("c.mkv")).unwrap();
    std::fs::hard_link(same.join("d.mkv"), links.join("d.mkv")).unwrap();
    let dotted = same.join("..").join("same").join("b.mkv");
    let out = same.to_str().unwrap();
    let format = ["--format", "mkv", "--model", model];
    let cases: [Vec<PathBuf>; 4] = [
        vec![same.join("a.mkv"), same.join("b.mkv")],
        vec![links.join("c.mkv")],
        vec![links.join("d.mkv"), dir.path().join("missing.mkv")],
        vec![dotted],
    ];
    for inputs in &cases {
        let mut args = vec!["segment"];
        args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
        args.extend(["-o", out]);
        args.extend(format);
        if inputs.len() == 1 {
            // One input with a folder output still takes the several-inputs path.
            args.extend(["--shard", "0/1"]);
        }
        assert_fails(&args, &[], 2, &["is the input file", "would destroy"]);
    }
    // The same through --inputs, whose list starts with a byte-order mark.
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("\u{feff}{}\n", same.join("a.mkv").display())).unwrap();
    let mut args = vec!["segment", "--inputs", list.to_str().unwrap(), "-o", out];
    args.extend(format);
    assert_fails(&args, &[], 2, &["is the input file"]);
    for name in ["a.mkv", "b.mkv", "c.mkv", "d.mkv"] {
        assert_eq!(std::fs::read(same.join(name)).unwrap(), original, "{name}");
    }
}

#[test]
fn a_list_that_starts_with_a_byte_order_mark_keeps_its_first_input() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("first.mkv");
    std::fs::copy(generated("odd.mkv"), &clip).unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("\u{feff}{}\n", clip.display())).unwrap();
    let folder = dir.path().join("out");
    let model = fixture_model();
    run_ok(&[
        "segment",
        "--inputs",
        list.to_str().unwrap(),
        "-o",
        folder.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--format",
        "mkv",
    ]);
    assert_eq!(frame_count(&folder.join("first.mkv")), 10);
}

#[test]
fn skip_done_redoes_a_matroska_file_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_model();
    for format in ["mkv", "webm"] {
        let clip = dir.path().join(format!("clip-{format}.mkv"));
        std::fs::copy(generated("odd.mkv"), &clip).unwrap();
        let folder = dir.path().join(format!("out-{format}"));
        let args = [
            "segment",
            clip.to_str().unwrap(),
            "-o",
            folder.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--format",
            format,
            "--skip-done",
        ];
        run_ok(&args);
        let written = folder.join(format!("clip-{format}.{format}"));
        let whole = std::fs::read(&written).unwrap();
        // Done and whole: skipped.
        assert!(run_ok(&args).stderr.contains("skipped: done already"));
        // A third of it (a failed copy): its header still claims the whole length.
        std::fs::write(&written, &whole[..whole.len() / 3]).unwrap();
        let printed = run_ok(&args);
        assert!(
            !printed.stderr.contains("skipped: done already"),
            "{format}: {}",
            printed.stderr
        );
        assert_eq!(frame_count(&written), 10, "{format}: {}", printed.stderr);
    }
}

#[test]
fn ctrl_c_finalises_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("one.avi"), dir.path().join("two.avi"));
    std::fs::copy(people_clip(), &first).unwrap();
    std::fs::copy(people_clip(), &second).unwrap();
    let folder = dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .arg("segment")
        .args([&first, &second])
        .arg("-o")
        .arg(&folder)
        .args(["--model", fixture_model().to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    interrupt(&child);
    let result = crate::helpers::finish(child, crate::helpers::DEADLINE);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    for name in ["one", "two"] {
        let line = stderr
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "{}",
                    dir.path().join(format!("{name}.avi")).display()
                ))
            })
            .unwrap_or_else(|| panic!("no line for {name}: {stderr}"));
        assert!(line.contains("interrupted, finalised"), "{line}");
        let written: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no frame count in {line}"));
        let frames = frame_count(&folder.join(format!("{name}.mp4")));
        assert_eq!(frames as u64, written, "{stderr}");
        assert!(frames > 0 && frames < 795, "{frames} frames");
    }
}

/// The `segstream segment` options a deployment file uses: every `--name` from the first line
/// (not a comment) that runs `segment` on.
fn options_used(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .skip_while(|line| !line.split_whitespace().any(|word| word == "segment"))
        .flat_map(|line| line.split(|c: char| c.is_whitespace() || c == '"' || c == '\''))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| word.split('=').next().unwrap().to_string())
        .collect()
}

#[test]
fn the_cluster_files_run_options_that_exist() {
    let help = run_ok(&["segment", "--help"]).stdout;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for (file, must) in [
        (
            "kubernetes-indexed-job.yaml",
            &[
                "completionMode: Indexed",
                "kind: Job",
                "--shards",
                "--skip-done",
            ][..],
        ),
        (
            "slurm-array.sh",
            &["#SBATCH --array", "--skip-done", "segstream segment"][..],
        ),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for needle in must {
            assert!(text.contains(needle), "{file} lacks {needle}");
        }
        let options = options_used(&text);
        assert!(options.len() >= 3, "{file}: {options:?}");
        for option in options {
            assert!(
                help.contains(&option),
                "{file} uses {option}, which segment does not have"
            );
        }
    }
    let status = Command::new("bash")
        .args(["-n", root.join("slurm-array.sh").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "slurm-array.sh is not valid bash");
}
