//! Loading models: the fixture loads with its card; bad model files and unavailable runtimes are
//! clear errors naming the file, with exit code 1 and no panic.

use crate::helpers::{assert_fails, describe, fixture_model, segstream};
use crate::media::identity_model;

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
