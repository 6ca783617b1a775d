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
fn the_people_model_finds_people_close_up_and_in_the_street() {
    let json = eval_json(&shipped("people.onnx"), &shared("human_seg"), &[]);
    println!("people on human_seg: {json}");
    assert_eq!(json["images"], 47, "train's validation split");
    let dice = json["dice"].as_f64().unwrap();
    assert!(dice > 0.94, "human_seg Dice {dice}");
    // CamVid's pedestrians as the person; its cyclists are neither person nor background.
    let streets = format!(
        "{}:Pedestrian=person,Bicyclist=ignore",
        shared("camvid").display()
    );
    let json = eval_json(&shipped("people.onnx"), Path::new(&streets), &[]);
    println!("people on CamVid: {json}");
    let iou = json["iou"].as_f64().unwrap();
    assert!(iou > 0.25, "CamVid pedestrian IoU {iou}");
}

#[test]
fn the_camvid_model_labels_road_scenes_small_classes_included() {
    let json = eval_json(&shipped("camvid.onnx"), &shared("camvid"), &[]);
    println!("camvid: {json}");
    assert!(json["mean_iou"].as_f64().unwrap() > 0.55, "{json}");
    assert!(json["pixel_accuracy"].as_f64().unwrap() > 0.88, "{json}");
    for (class, iou) in json["per_class_iou"].as_object().unwrap() {
        assert!(iou.as_f64().unwrap() > 0.0, "{class}: {iou}");
    }
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
