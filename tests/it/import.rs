//! `segstream import`: foreign models rewritten into the contract (layout, logits, batch,
//! card), checked against the original, and refused by name when they cannot be.

use crate::helpers::{assert_fails, eval_json, import_model, run_ok, segment_bars_with};
use crate::media::{foreign_model, shared};

#[test]
fn mediapipe_models_import_score_as_published_and_segment_at_any_batch() {
    let dir = tempfile::tempdir().unwrap();
    let folder = shared("models/mediapipe_selfie");
    // SOURCE.md: Dice on all of human_seg, measured with ONNX Runtime on the original files.
    for (file, published) in [
        ("selfie_segmentation.onnx", 0.951),
        ("selfie_segmentation_landscape.onnx", 0.940),
    ] {
        let out = dir.path().join(file);
        let stdout = import_model(&folder.join(file), &out, &["--classes", "person"]);
        for change in [
            "removed the final Sigmoid",
            "input transposed",
            "output transposed",
            "batch made dynamic",
            // TensorFlow Lite's layout round trips: 34 Transposes in the general model.
            "Transposes removed (layout round trips",
        ] {
            assert!(
                stdout.contains(change),
                "{file}: no '{change}' in\n{stdout}"
            );
        }
        // The general model's squeeze-and-excite pools are written with its size (the
        // landscape model's are global already).
        assert_eq!(
            stdout.contains("whole-frame pools made global"),
            file == "selfie_segmentation.onnx",
            "{stdout}"
        );
        let json = eval_json(&out, &shared("human_seg"), &["--split", "all"]);
        let dice = json["dice"].as_f64().unwrap();
        println!("{file}: Dice {dice:.4} (published {published})");
        assert!((dice - published).abs() <= 0.002, "{file}: Dice {dice}");
    }
    let model = dir.path().join("selfie_segmentation.onnx");
    let frames = dir.path().join("frames");
    segment_bars_with(
        &model,
        &frames,
        &["--batch", "3", "--input-size", "192x320"],
    );
    assert_eq!(std::fs::read_dir(&frames).unwrap().count(), 60);
    // Freed from its converted size, it scores the same at that size and runs at others.
    let at = |size: &str| {
        eval_json(&model, &shared("human_seg"), &["--input-size", size])["dice"]
            .as_f64()
            .unwrap()
    };
    let (native, larger) = (at("256x256"), at("320x320"));
    println!("val Dice at 256x256 {native:.4}, at 320x320 {larger:.4}");
    assert!(larger > 0.85, "{larger}");

    let kept = dir.path().join("kept.onnx");
    let stdout = import_model(
        &folder.join("selfie_segmentation.onnx"),
        &kept,
        &["--classes", "person", "--keep-size"],
    );
    assert!(!stdout.contains("pools made global"), "{stdout}");
    assert_fails(
        &[
            "eval",
            "--model",
            kept.to_str().unwrap(),
            "--data",
            shared("human_seg").to_str().unwrap(),
            "--input-size",
            "320x320",
        ],
        &[],
        1,
        &["kept.onnx", "its input is fixed at 256x256"],
    );
}

#[test]
fn an_nchw_logits_model_keeps_its_graph_and_gets_a_card() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("three.onnx");
    std::fs::write(
        &model,
        foreign_model(
            &[("x", &[1, 3, 16, 16])],
            "Identity",
            ("y", &[1, 3, 16, 16]),
        ),
    )
    .unwrap();
    let out = dir.path().join("three-imported.onnx");
    let stdout = import_model(
        &model,
        &out,
        &["--classes", "r,g,b", "--input-range", "imagenet"],
    );
    assert!(
        !stdout.contains("removed") && !stdout.contains("transposed"),
        "{stdout}"
    );
    assert!(stdout.contains("logits to max |Δ| = 0.0e0"), "{stdout}");
    let text = run_ok(&["inspect", out.to_str().unwrap()]).stdout;
    assert!(text.contains("class:        g"), "{text}");
    assert!(text.contains("0.485"), "ImageNet mean: {text}");
}

#[test]
fn a_declared_probability_without_a_final_activation_becomes_log_odds() {
    let dir = tempfile::tempdir().unwrap();
    // A "probability" that is the mean of the RGB channels: one class, values in 0..1.
    let model = dir.path().join("mean.onnx");
    std::fs::write(
        &model,
        foreign_model(&[("x", &[1, 3, 8, 8])], "ReduceMean", ("p", &[1, 1, 8, 8])),
    )
    .unwrap();
    let out = dir.path().join("mean-imported.onnx");
    let stdout = import_model(&model, &out, &["--output-is", "probability"]);
    assert!(stdout.contains("appended log-odds"), "{stdout}");
    assert!(stdout.contains("original's probabilities"), "{stdout}");
}

#[test]
fn what_import_cannot_adapt_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>, &[&str]); 5] = [
        (
            "two-inputs.onnx",
            foreign_model(
                &[("a", &[1, 3, 8, 8]), ("b", &[1, 3, 8, 8])],
                "Add",
                ("y", &[1, 3, 8, 8]),
            ),
            &["2 inputs", "a, b"],
        ),
        (
            "flat.onnx",
            foreign_model(&[("x", &[1, 3])], "Identity", ("y", &[1, 3])),
            &["'x'", "rank 2"],
        ),
        (
            "flat-output.onnx",
            foreign_model(&[("x", &[1, 3, 8, 8])], "Identity", ("y", &[1, 3])),
            &["'y'", "rank 2"],
        ),
        (
            "four-channels.onnx",
            foreign_model(&[("x", &[1, 4, 8, 8])], "Identity", ("y", &[1, 4, 8, 8])),
            &["'x'", "cannot tell the layout", "--layout"],
        ),
        (
            "free-size.onnx",
            foreign_model(
                &[("x", &[1, 3, -1, -1])],
                "Identity",
                ("y", &[1, 3, -1, -1]),
            ),
            &["'x'", "no fixed height and width"],
        ),
    ];
    for (name, bytes, needles) in cases {
        let model = dir.path().join(name);
        std::fs::write(&model, bytes).unwrap();
        let out = dir.path().join("out.onnx");
        let mut expected = vec![model.to_str().unwrap()];
        expected.extend(needles);
        assert_fails(
            &[
                "import",
                model.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            &[],
            1,
            &expected,
        );
        assert!(!out.exists(), "{name}: nothing written");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 5, "no temporary files left");
}

#[test]
fn a_model_with_a_fixed_batch_runs_at_any_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    for (fixed, batch) in [(1, "4"), (4, "7")] {
        let model = dir.path().join(format!("fixed{fixed}.onnx"));
        let dims = [fixed, 3, 16, 16];
        std::fs::write(
            &model,
            foreign_model(&[("x", &dims)], "Identity", ("y", &dims)),
        )
        .unwrap();
        let frames = dir.path().join(format!("frames{fixed}"));
        segment_bars_with(&model, &frames, &["--mode", "mask", "--batch", batch]);
        assert_eq!(
            std::fs::read_dir(&frames).unwrap().count(),
            60,
            "batch {fixed}"
        );
    }
}

/// A model whose logits are a quarter of its input's size, as detectors and many segmenters
/// give them: max-pool ½, TensorFlow's linear ×2 ("asymmetric"), max-pool ¼, 1×1 conv.
fn coarse_model() -> Vec<u8> {
    use prost::Message;
    use segstream::onnx::proto::tensor_proto::DataType;
    use segstream::onnx::proto::{ModelProto, NodeProto, TensorProto};
    use segstream::onnx::{ints_attribute, string_attribute};

    let pool = |from: &str, to: &str, side: usize| NodeProto {
        op_type: Some("MaxPool".into()),
        input: vec![from.into()],
        output: vec![to.into()],
        attribute: vec![
            ints_attribute("kernel_shape", &[side, side]),
            ints_attribute("strides", &[side, side]),
        ],
        ..Default::default()
    };
    let floats = |name: &str, dims: &[i64], values: Vec<f32>| TensorProto {
        name: Some(name.into()),
        data_type: Some(DataType::Float as i32),
        dims: dims.to_vec(),
        float_data: values,
        ..Default::default()
    };
    let mut model = ModelProto::decode(
        foreign_model(&[("x", &[1, 3, 32, 32])], "Identity", ("y", &[1, 2, 8, 8])).as_slice(),
    )
    .unwrap();
    let graph = model.graph.as_mut().unwrap();
    graph.node = vec![
        pool("x", "half", 2),
        NodeProto {
            op_type: Some("Resize".into()),
            input: vec!["half".into(), String::new(), "scales".into()],
            output: vec!["up".into()],
            attribute: vec![
                string_attribute("mode", "linear"),
                string_attribute("coordinate_transformation_mode", "asymmetric"),
            ],
            ..Default::default()
        },
        pool("up", "quarter", 4),
        NodeProto {
            op_type: Some("Conv".into()),
            input: vec!["quarter".into(), "w".into(), "b".into()],
            output: vec!["y".into()],
            ..Default::default()
        },
    ];
    graph.initializer = vec![
        floats("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]),
        floats("w", &[2, 3, 1, 1], vec![4.0, -2.0, 1.0, -3.0, 2.0, 0.5]),
        floats("b", &[2], vec![-1.0, 0.5]),
    ];
    model.encode_to_vec()
}

#[test]
fn a_coarse_output_is_upsampled_to_the_input_and_fine_tunes_at_another_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("coarse.onnx");
    std::fs::write(&model, coarse_model()).unwrap();
    let imported = dir.path().join("coarse-imported.onnx");
    let stdout = import_model(&model, &imported, &[]);
    assert!(stdout.contains("output up-sampled 4×"), "{stdout}");
    assert!(
        stdout.contains("any size that is a multiple of 4"),
        "{stdout}"
    );
    // The check compares the original's 8×8 logits, up-sampled, with ours.
    assert!(stdout.contains("logits to max |Δ|"), "{stdout}");

    // Training runs the asymmetric ×2 in burn; the export must agree with ONNX Runtime.
    let run = dir.path().join("run");
    let data = shared("human_seg");
    let stdout = run_ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--classes",
        "person",
        "--init-from",
        imported.to_str().unwrap(),
        "--size",
        "48x64",
        "--epochs",
        "1",
        "--limit",
        "16",
        "-o",
        run.to_str().unwrap(),
    ])
    .stdout;
    println!("{stdout}");
    assert!(stdout.contains("new head (2 → 1 classes)"), "{stdout}");
    let parity: f64 = stdout
        .split("max |Δ| = ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no parity in {stdout}"));
    assert!(parity < 1e-4, "parity {parity}");
    let card = run_ok(&["inspect", run.join("model.onnx").to_str().unwrap()]).stdout;
    assert!(card.contains("input size:   48x64"), "{card}");
}
