//! The models shipped in `models/` are real: they load, segment by default, and score on the
//! shared validation images close to what models/README.md records.

use std::path::{Path, PathBuf};

use crate::helpers::{describe, eval_json, segstream};
use crate::media::{clip, decode, shared};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

#[test]
fn the_people_model_finds_people() {
    let json = eval_json(&shipped("people.onnx"), &shared("human_seg"), &[]);
    let dice = json["dice"].as_f64().unwrap();
    println!("people: {json}");
    assert_eq!(json["images"], 47, "train's validation split");
    assert!(dice > 0.8, "dice {dice}");
}

#[test]
fn the_camvid_model_labels_road_scenes() {
    let json = eval_json(
        &shipped("camvid.onnx"),
        &shared("camvid"),
        &["--limit", "30"],
    );
    println!("camvid: {json}");
    assert!(json["pixel_accuracy"].as_f64().unwrap() > 0.85, "{json}");
    assert!(
        json["per_class_iou"]["Road"].as_f64().unwrap() > 0.85,
        "{json}"
    );
}

#[test]
fn segment_uses_the_people_model_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cut.mkv");
    let input = clip("asl_book.mkv");
    let args = [
        "segment",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mode",
        "cutout",
    ];
    let output = segstream(&args);
    let text = describe(&args, &output);
    assert!(output.status.success(), "{text}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("people.onnx"),
        "{text}"
    );
    let mut frames = 0;
    decode(&out, |_| frames += 1);
    assert_eq!(frames, 109);
}
