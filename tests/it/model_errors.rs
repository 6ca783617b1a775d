//! Loading models: the fixture loads with its card; bad model files and unavailable runtimes are
//! clear errors naming the file, with exit code 1 and no panic.

use crate::helpers::{assert_fails, describe, fixture_model, segment_args, segstream};
use crate::media::{channel_classifier, generated, identity_model, red_detector, with_metadata};

#[test]
fn fixture_model_loads_with_its_card() {
    let model = fixture_model();
    let args = ["inspect", model.to_str().unwrap(), "--provider", "cpu"];
    let output = segstream(&args);
    let text = describe(&args, &output);
    assert!(output.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("provider:     CPU"), "{text}");
    assert!(
        stdout.contains("architecture: unet(depth=2,base=8)"),
        "{text}"
    );
    assert!(stdout.contains("input size:   64x64"), "{text}");
    assert!(stdout.contains("class:        foreground"), "{text}");
}

#[test]
fn missing_model_is_named() {
    assert_fails(
        &["inspect", "no/such/model.onnx"],
        &[],
        1,
        &["no/such/model.onnx", "file not found"],
    );
}

#[test]
fn corrupt_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.onnx");
    let mut bytes = std::fs::read(fixture_model()).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&path, bytes).unwrap();
    let path = path.to_str().unwrap();
    assert_fails(
        &["inspect", path, "--provider", "cpu"],
        &[],
        1,
        &[path, "cannot open it as a model"],
    );
}

#[test]
fn wrong_input_rank_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rank2.onnx");
    std::fs::write(&path, identity_model(&[-1, 3])).unwrap();
    let path = path.to_str().unwrap();
    assert_fails(
        &["inspect", path, "--provider", "cpu"],
        &[],
        1,
        &[path, "rank 2", "expected 4"],
    );
}

#[test]
fn cuda_without_cuda_is_an_error() {
    let model = fixture_model();
    assert_fails(
        &["inspect", model.to_str().unwrap(), "--provider", "cuda"],
        &[],
        1,
        &["CUDA execution provider cannot be used"],
    );
}

#[test]
fn missing_runtime_library_says_what_to_run() {
    let model = fixture_model();
    assert_fails(
        &["inspect", model.to_str().unwrap()],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
        1,
        &["scripts/setup", "/nonexistent/libonnxruntime.so"],
    );
}

#[test]
fn cards_a_model_cannot_run_with_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value, needle) in [
        ("segstream.std", "[0.2, 0.0, 0.2]", "positive"),
        ("segstream.input_size", "[0, 0]", "at least 1"),
        ("segstream.mean", "[0.5, 0.5]", "length"),
        ("segstream.std", "[0.2, 0.2, 0.2, 0.2]", "length"),
    ] {
        let path = dir.path().join("bad-card.onnx");
        with_metadata(&fixture_model(), &path, key, value);
        let path = path.to_str().unwrap();
        assert_fails(&["inspect", path], &[], 1, &[path, key, needle]);
    }
}

#[test]
fn inspect_runs_the_model_as_segment_would() {
    // The fixture U-Net (depth 2) cannot run at 30×30: its skip connections stop matching.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd-size.onnx");
    with_metadata(&fixture_model(), &path, "segstream.input_size", "[30, 30]");
    let path = path.to_str().unwrap();
    assert_fails(
        &["inspect", path],
        &[],
        1,
        &[path, "test inference", "1×3×30×30"],
    );
    // Channels-last input (N×H×W×3) is not the contract: refused by inspect too.
    let nhwc = dir.path().join("nhwc.onnx");
    std::fs::write(&nhwc, identity_model(&[1, 8, 8, 3])).unwrap();
    let nhwc = nhwc.to_str().unwrap();
    assert_fails(&["inspect", nhwc], &[], 1, &[nhwc, "expected 3 (RGB)"]);
}

#[test]
fn classes_a_model_does_not_have_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated("bars.mkv");
    let output = dir.path().join("never.mp4");
    for (model, class) in [
        (red_detector(dir.path(), [48, 64]), "person"),
        (red_detector(dir.path(), [48, 64]), "1"),
        (channel_classifier(dir.path(), [48, 64]), "yellow"),
        (channel_classifier(dir.path(), [48, 64]), "3"),
    ] {
        let mut args = segment_args(&input, &output, &model);
        args.extend(["--classes", class]);
        assert_fails(
            &args,
            &[],
            2,
            &["--classes", class, "not a class of this model"],
        );
        assert!(!output.exists());
    }
}

#[test]
fn eval_and_bench_name_a_bad_video_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.mp4");
    std::fs::write(&bad, "not a video").unwrap();
    let (bad, model) = (bad.to_str().unwrap(), fixture_model());
    let model = model.to_str().unwrap();
    for args in [
        ["eval", "--model", model, "--video", bad],
        ["bench", "--model", model, "--input", bad],
    ] {
        let started = std::time::Instant::now();
        assert_fails(&args, &[], 1, &[bad, "cannot read it as video"]);
        println!("{} failed in {:?}", args[0], started.elapsed());
    }
}

#[test]
fn a_model_path_that_is_a_folder_is_called_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().to_str().unwrap();
    let output = dir.path().join("out.mp4");
    let input = generated("bars.mkv");
    let args = [
        "segment",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--model",
        folder,
    ];
    assert_fails(&args, &[], 1, &["a directory, not a model file"]);
    assert_fails(
        &["inspect", folder],
        &[],
        1,
        &["a directory, not a model file"],
    );
    assert_fails(
        &[
            "fp16",
            folder,
            "-o",
            dir.path().join("h.onnx").to_str().unwrap(),
        ],
        &[],
        1,
        &["a directory, not a model file"],
    );
}

#[test]
fn a_model_tool_refuses_to_write_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let model = red_detector(dir.path(), [64, 64]);
    let original = std::fs::read(&model).unwrap();
    let link = dir.path().join("link.onnx");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let (model_arg, link_arg) = (model.to_str().unwrap(), link.to_str().unwrap());
    for args in [
        vec!["views", model_arg, "-o", model_arg, "--size", "64x64"],
        vec!["views", model_arg, "-o", link_arg, "--size", "64x64"],
        vec!["fp16", model_arg, "-o", model_arg],
        vec!["import", model_arg, "-o", link_arg],
        vec!["quantize", model_arg, "--data", "unused", "-o", model_arg],
    ] {
        assert_fails(&args, &[], 2, &["is the input file", "would destroy"]);
        assert_eq!(std::fs::read(&model).unwrap(), original, "{args:?}");
    }
}
