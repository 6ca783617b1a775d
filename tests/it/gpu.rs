//! The GPU path: fp16 models (checked here on the CPU provider) and the CUDA provider itself,
//! whose tests need an NVIDIA GPU and ONNX Runtime's GPU build (`ORT_GPU=1 scripts/setup`, or
//! the device kit: scripts/device/) and are ignored elsewhere:
//! `cargo test --release -- --ignored gpu::`.

use std::path::Path;

use prost::Message;
use segstream::onnx::precision;
use segstream::onnx::proto::ModelProto;

use crate::helpers::{eval_json, run_ok, shipped};
use crate::media::{people_clip, shared};

/// `segstream fp16 MODEL -o OUT`, asserted to succeed.
fn to_fp16(model: &Path, out: &Path) {
    let printed = run_ok(&["fp16", model.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(printed.stdout.contains("wrote"), "{}", printed.stdout);
}

fn headline(json: &serde_json::Value) -> f64 {
    json["dice"]
        .as_f64()
        .or_else(|| json["mean_iou"].as_f64())
        .unwrap_or_else(|| panic!("no headline in {json}"))
}

#[test]
fn fp16_copies_of_the_shipped_models_score_as_their_originals_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    for (model, data) in [("camvid.onnx", "camvid"), ("people.onnx", "human_seg")] {
        let half = dir.path().join(model);
        to_fp16(&shipped(model), &half);
        let (f32_bytes, f16_bytes) = (
            std::fs::metadata(shipped(model)).unwrap().len(),
            std::fs::metadata(&half).unwrap().len(),
        );
        assert!(
            f16_bytes * 10 < f32_bytes * 6,
            "{model}: {f16_bytes} of {f32_bytes} bytes"
        );
        let before = headline(&eval_json(&shipped(model), &shared(data), &[]));
        let after = headline(&eval_json(&half, &shared(data), &[]));
        println!("{model}: {before:.4} → {after:.4} in fp16");
        assert!(
            (before - after).abs() < 0.002,
            "{model}: {before} → {after}"
        );
        let written = ModelProto::decode(std::fs::read(&half).unwrap().as_slice()).unwrap();
        assert_eq!(precision(&written), "fp16");
        let card = written
            .metadata_props
            .iter()
            .find(|p| p.key.as_deref() == Some("segstream.training"));
        let card = card.and_then(|p| p.value.as_deref()).unwrap_or_default();
        assert!(card.contains("fp16 weights and activations"), "{card}");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU and ONNX Runtime's GPU build"]
fn segment_on_cuda_writes_every_frame_the_cpu_writes() {
    let dir = tempfile::tempdir().unwrap();
    let stats = |provider: &str| {
        let json = dir.path().join(format!("{provider}.json"));
        let printed = run_ok(&[
            "segment",
            people_clip().to_str().unwrap(),
            "-o",
            dir.path().join(format!("{provider}.mp4")).to_str().unwrap(),
            "--provider",
            provider,
            "--stats-json",
            json.to_str().unwrap(),
        ]);
        let name = format!("provider={}", provider.to_uppercase());
        assert!(printed.stderr.contains(&name), "{}", printed.stderr);
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(json).unwrap()).unwrap()
    };
    let (cuda, cpu) = (stats("cuda"), stats("cpu"));
    assert_eq!(
        cuda["frames_written"], cpu["frames_written"],
        "{cuda}\n{cpu}"
    );
    assert_eq!(cuda["frames_dropped"], 0, "{cuda}");
}

#[test]
#[ignore = "needs an NVIDIA GPU and ONNX Runtime's GPU build"]
fn the_models_score_on_cuda_as_on_the_cpu_in_fp32_and_fp16() {
    let dir = tempfile::tempdir().unwrap();
    let half = dir.path().join("people-fp16.onnx");
    to_fp16(&shipped("people.onnx"), &half);
    let dice = |model: &Path, provider: &str| {
        headline(&eval_json(
            model,
            &shared("human_seg"),
            &["--provider", provider],
        ))
    };
    let on_cpu = dice(&shipped("people.onnx"), "cpu");
    let (f32_on_gpu, f16_on_gpu) = (dice(&shipped("people.onnx"), "cuda"), dice(&half, "cuda"));
    println!("Dice: CPU {on_cpu:.4}, CUDA fp32 {f32_on_gpu:.4}, CUDA fp16 {f16_on_gpu:.4}");
    assert!(
        (f32_on_gpu - on_cpu).abs() < 1e-3,
        "{f32_on_gpu} vs {on_cpu}"
    );
    assert!(
        (f16_on_gpu - on_cpu).abs() < 2e-3,
        "{f16_on_gpu} vs {on_cpu}"
    );
}

/// The ONNX Runtime folder segstream uses: `ORT_DYLIB_PATH`'s, else the checkout's.
fn runtime_folder() -> std::path::PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .and_then(|library| Path::new(&library).parent().map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/onnxruntime"))
}

/// `ORT_GPU=1 scripts/setup` brings every library the CUDA provider links, from PyPI: each one
/// resolves inside the folder but the driver's `libcuda.so.1`, and on a machine without the
/// driver the provider's error names the driver, not a missing library. Runs wherever the GPU
/// build was set up, with or without a GPU.
#[test]
#[ignore = "needs ONNX Runtime's GPU build (ORT_GPU=1 scripts/setup)"]
fn the_gpu_build_brings_every_library_of_the_cuda_provider() {
    let folder = runtime_folder();
    let provider = folder.join("libonnxruntime_providers_cuda.so");
    assert!(provider.is_file(), "run ORT_GPU=1 scripts/setup first");
    let ldd = std::process::Command::new("ldd")
        .arg(&provider)
        .env("LD_LIBRARY_PATH", &folder)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&ldd.stdout);
    let missing: Vec<&str> = listed
        .lines()
        .filter(|l| l.contains("not found") && !l.contains("libcuda.so.1"))
        .collect();
    assert!(missing.is_empty(), "{listed}");
    for library in ["libcublasLt.so", "libcudart.so", "libcurand.so"] {
        assert!(
            listed
                .lines()
                .any(|l| l.contains(library) && l.contains(folder.to_str().unwrap())),
            "{library} from {}:\n{listed}",
            folder.display()
        );
    }
    let has_driver = listed.lines().any(|l| l.contains("libcuda.so.1 => /"));
    if !has_driver {
        // Without LD_LIBRARY_PATH: segstream finds the folder's libraries itself.
        let printed = crate::helpers::segstream(&[
            "inspect",
            shipped("people.onnx").to_str().unwrap(),
            "--provider",
            "cuda",
        ]);
        let stderr = String::from_utf8_lossy(&printed.stderr);
        assert!(!printed.status.success());
        assert!(stderr.contains("libcuda.so.1"), "{stderr}");
        assert!(!stderr.contains("libcublas"), "{stderr}");
    }
}
