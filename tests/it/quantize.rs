//! `segstream quantize`: int8 QDQ models, calibrated on real training images, that score as
//! their f32 originals on the validation images and run in `segment` unchanged.

use std::path::Path;

use prost::Message;
use segstream::onnx::proto::ModelProto;
use segstream::onnx::proto::tensor_proto::DataType;

use crate::helpers::{assert_fails, eval_json, run_ok, shipped};
use crate::media::{clip, decode, shared};

/// `segstream quantize MODEL --data DATA -o OUT --images 16`; returns its stdout.
fn quantize(model: &Path, data: &Path, out: &Path) -> String {
    run_ok(&[
        "quantize",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--images",
        "16",
    ])
    .stdout
}

#[test]
fn the_quantized_camvid_model_scores_as_the_original_and_segments_video() {
    let dir = tempfile::tempdir().unwrap();
    let int8 = dir.path().join("camvid-int8.onnx");
    let report = quantize(&shipped("camvid-small.onnx"), &shared("camvid"), &int8);
    println!("{report}");
    assert!(report.contains("from 16 training images"), "{report}");

    // Weights are int8 per channel; activations pass through QuantizeLinear.
    let model = ModelProto::decode(std::fs::read(&int8).unwrap().as_slice()).unwrap();
    let graph = model.graph.unwrap();
    let count = |op: &str| {
        graph
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some(op))
            .count()
    };
    assert!(
        count("QuantizeLinear") > 20 && count("Relu") == 0,
        "{report}"
    );
    let int8_weights = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == Some(DataType::Int8 as i32) && t.dims.len() == 4)
        .count();
    assert_eq!(int8_weights, 23, "one per Conv and ConvTranspose");

    let before = eval_json(&shipped("camvid-small.onnx"), &shared("camvid"), &[]);
    let after = eval_json(&int8, &shared("camvid"), &[]);
    let miou = |json: &serde_json::Value| json["mean_iou"].as_f64().unwrap();
    println!("mean IoU {:.4} → {:.4}", miou(&before), miou(&after));
    assert!(miou(&after) > miou(&before) - 0.01, "{after}");

    let out = dir.path().join("road.mkv");
    let input = clip("asl_book.mkv");
    let args = [
        "segment",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
    ];
    run_ok(&[&args[..], &[int8.to_str().unwrap()]].concat());
    let mut frames = 0;
    decode(&out, |_| frames += 1);
    assert_eq!(frames, 109);
}

#[test]
fn quantize_refuses_what_it_cannot_calibrate_or_quantize_again() {
    let dir = tempfile::tempdir().unwrap();
    let int8 = dir.path().join("people-int8.onnx");
    quantize(&shipped("people.onnx"), &shared("human_seg"), &int8);
    let again = dir.path().join("again.onnx");
    let args = |model: &Path, data: &Path| {
        [
            "quantize".to_string(),
            model.display().to_string(),
            "--data".into(),
            data.display().to_string(),
            "-o".into(),
            again.display().to_string(),
        ]
    };
    let run = |model: &Path, data: &Path, needles: &[&str]| {
        let args = args(model, data);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails(&args, &[], 1, needles);
        assert!(
            !again.exists(),
            "a failed quantize left {}",
            again.display()
        );
    };
    run(&int8, &shared("human_seg"), &["quantized already"]);
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("images")).unwrap();
    std::fs::create_dir_all(empty.join("masks")).unwrap();
    run(&shipped("people.onnx"), &empty, &[empty.to_str().unwrap()]);
}
