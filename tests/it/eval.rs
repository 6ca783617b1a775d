//! `segstream eval` on labelled images whose masks a test model predicts exactly (or predicts
//! a known part of), so every score can be worked out by hand.

use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};

use crate::helpers::{assert_fails, eval_json, run_json};
use crate::media::{channel_classifier, red_detector};

const W: u32 = 32;
const H: u32 = 24;

/// A generic dataset of 3 images, left half red and right half blue, whose masks mark the
/// leftmost `object_columns` columns.
fn dataset(root: &Path, object_columns: u32) {
    for dir in ["images", "masks"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for i in 0..3 {
        RgbImage::from_fn(W, H, |x, _| {
            if x < W / 2 {
                Rgb([230, 10, 10])
            } else {
                Rgb([10, 10, 230])
            }
        })
        .save(root.join(format!("images/{i}.png")))
        .unwrap();
        GrayImage::from_fn(W, H, |x, _| {
            Luma([if x < object_columns { 255 } else { 0 }])
        })
        .save(root.join(format!("masks/{i}.png")))
        .unwrap();
    }
}

#[test]
fn a_model_that_predicts_the_masks_exactly_scores_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    dataset(&data, W / 2);
    let model = red_detector(dir.path(), [H as usize, W as usize]);
    let report = dir.path().join("report");
    let json = eval_json(
        &model,
        &data,
        &["--split", "all", "-o", report.to_str().unwrap()],
    );
    assert_eq!(json["images"], 3);
    assert_eq!(json["pixels"], 3 * W * H);
    for key in ["dice", "iou", "pixel_accuracy", "boundary_iou"] {
        assert_eq!(json[key].as_f64(), Some(1.0), "{key}: {json}");
    }
    assert!(json["images_per_s"].as_f64().unwrap() > 0.0);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(saved["dice"], json["dice"]);
    let csv = std::fs::read_to_string(report.join("per_image.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("image,pixel_accuracy,dice,iou,mean_iou,boundary_iou\n"));
    assert!(image::open(report.join("worst_best.png")).is_ok());
}

#[test]
fn a_model_that_misses_part_of_the_object_scores_what_hand_counting_gives() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The object is the left 3/4; the red detector finds the left 1/2:
    // tp = 1/2, fn = 1/4, fp = 0 of the pixels.
    dataset(&data, W * 3 / 4);
    let model = red_detector(dir.path(), [H as usize, W as usize]);
    let json = eval_json(&model, &data, &["--split", "all"]);
    let close = |key: &str, want: f64| {
        let got = json[key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{key}: {got} != {want}");
    };
    close("pixel_accuracy", 0.75);
    close("dice", 2.0 * 0.5 / (2.0 * 0.5 + 0.25));
    close("iou", 0.5 / 0.75);
    // Bands 1 pixel wide (2 % of the 40-pixel diagonal, rounded): the true object's band is
    // its top and bottom rows (24 + 24) and its first and last columns between them (22 + 22),
    // the predicted one's 16 + 16 + 22 + 22; they share both rows' first 16 pixels and the
    // first column: 54 of 92 + 76 − 54.
    close("boundary_iou", 54.0 / 114.0);
    assert!((json["per_image"]["median"].as_f64().unwrap() - 0.8).abs() < 1e-9);
    // Each image's object is 24 rows tall and two thirds of it is masked: found.
    let objects = &json["objects"];
    assert_eq!(objects["by_height"][1]["min_height"], 16, "{objects}");
    assert_eq!(
        (
            &objects["by_height"][1]["found"],
            &objects["by_height"][1]["total"]
        ),
        (&3.into(), &3.into()),
        "{objects}"
    );
    assert_eq!(objects["false_regions"], 0);
}

#[test]
fn a_mask_where_there_is_no_object_counts_as_a_false_region() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    dataset(&data, 0);
    let model = red_detector(dir.path(), [H as usize, W as usize]);
    let json = eval_json(&model, &data, &["--split", "all"]);
    let objects = &json["objects"];
    assert_eq!(objects["false_regions"], 3, "{objects}");
    let totals: Vec<u64> = (0..4)
        .map(|i| objects["by_height"][i]["total"].as_u64().unwrap())
        .collect();
    assert_eq!(totals, [0; 4], "{objects}");
}

#[test]
fn masks_with_more_classes_than_the_model_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let camvid = crate::media::shared("camvid");
    let model = channel_classifier(dir.path(), [H as usize, W as usize]);
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        camvid.to_str().unwrap(),
        "--limit",
        "2",
    ];
    assert_fails(&args, &[], 1, &["mask value"]);
}

/// `eval --video`'s temporal figures for `model` on `clip` with `--smooth smooth` and
/// `--smooth-motion motion`.
fn temporal(model: &Path, clip: &Path, smooth: &str, motion: &str) -> serde_json::Value {
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--video",
        clip.to_str().unwrap(),
        "--smooth",
        smooth,
        "--smooth-motion",
        motion,
        "--json",
    ];
    run_json(&args)["temporal"].clone()
}

/// A figure of `eval --video`'s temporal JSON.
fn figure(temporal: &serde_json::Value, name: &str) -> f64 {
    temporal[name]
        .as_f64()
        .unwrap_or_else(|| panic!("no {name} in {temporal}"))
}

#[test]
fn smoothing_steadies_masks_over_a_clip() {
    // "Red ≥ 128" flickers where codec noise crosses the threshold, like a real model's edges.
    let dir = tempfile::tempdir().unwrap();
    let model = red_detector(dir.path(), [96, 128]);
    let temporal = temporal(&model, &crate::media::generated("bars.mkv"), "0.8", "0");
    assert!(temporal["frames"].as_u64().unwrap() > 50, "{temporal}");
    let (raw, smoothed) = (
        figure(&temporal, "flip_rate"),
        figure(&temporal, "flip_rate_smoothed"),
    );
    assert!(
        raw > 0.0 && smoothed < raw,
        "raw {raw}, smoothed {smoothed}"
    );
}

#[test]
fn smoothing_lags_behind_motion_and_no_smoothing_does_not() {
    // A person signing before a still camera: the hands move, the smoothed mask trails them.
    let (model, clip) = (
        crate::helpers::shipped("people.onnx"),
        crate::media::clip("asl_book.mkv"),
    );
    let lag = |smooth| figure(&temporal(&model, &clip, smooth, "0"), "lag_smoothed");
    let (none, strong) = (lag("0"), lag("0.9"));
    assert_eq!(none, 0.0, "an unsmoothed mask cannot trail itself");
    assert!(strong > 0.0001 && strong < 0.05, "lag {strong}");
}

#[test]
fn motion_aware_smoothing_follows_a_moving_square_and_steadies_the_still_part() {
    // The red detector at the clip's own size: the square must be followed, the noisy still
    // band flickers (see media::make_moving_square).
    let dir = tempfile::tempdir().unwrap();
    let model = red_detector(dir.path(), [240, 320]);
    let clip = crate::media::generated("moving-square.mkv");
    let plain = temporal(&model, &clip, "0.6", "0");
    let aware = temporal(&model, &clip, "0.6", "24");
    assert_eq!(plain["frames"], 60, "{plain}");
    let raw_blinks = figure(&plain, "blink_rate");
    let blinks = |t: &serde_json::Value| figure(t, "blink_rate_smoothed");
    let lag = |t: &serde_json::Value| figure(t, "lag_smoothed");
    assert!(raw_blinks > 0.01, "the still band flickers: {plain}");
    assert!(
        blinks(&plain) < raw_blinks * 0.8,
        "the moving average steadies it: {plain}"
    );
    assert!(
        blinks(&aware) <= blinks(&plain) * 1.05,
        "as steady as the moving average on the still part: {aware} against {plain}"
    );
    // Both smoothings hold some sparkles of the still band a frame longer than the raw mask,
    // alike at equal flicker; the moving average also trails the square by a frame: its
    // trailing edge, 4 columns × 60 rows of the 76,800 pixels, 0.0031 of each frame.
    let trailing_edge = 4.0 * 60.0 / 76_800.0;
    assert!(
        lag(&plain) - lag(&aware) > 0.8 * trailing_edge,
        "motion-aware smoothing follows the square: {aware} against {plain}"
    );
}

#[test]
fn folds_hold_out_disjoint_shares_and_refuse_what_has_none() {
    // human_seg's 235 images at the default --valid-frac 0.2: five folds of 47, disjoint.
    let people = crate::helpers::shipped("people.onnx");
    let data = crate::media::shared("human_seg");
    let dice_of = |fold: &str| {
        let json = eval_json(&people, &data, &["--fold", fold, "--limit", "47"]);
        assert_eq!(json["images"], 47, "fold {fold}: {json}");
        json["dice"].as_f64().unwrap()
    };
    // Different images score differently (fold 0 is train's validation split).
    assert_ne!(dice_of("0"), dice_of("4"));
    let model = people.to_str().unwrap();
    assert_fails(
        &[
            "eval",
            "--model",
            model,
            "--data",
            data.to_str().unwrap(),
            "--fold",
            "5",
        ],
        &[],
        2,
        &["--fold 5 holds out nothing"],
    );
    // CamVid brings its own validation folder: it has no folds.
    let camvid = crate::media::shared("camvid");
    assert_fails(
        &[
            "eval",
            "--model",
            model,
            "--data",
            camvid.to_str().unwrap(),
            "--fold",
            "1",
        ],
        &[],
        2,
        &["has its own validation folder"],
    );
}

#[test]
fn an_empty_split_is_an_error_not_a_perfect_score() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path(), W / 2);
    std::fs::remove_file(dir.path().join("images/2.png")).unwrap();
    std::fs::remove_file(dir.path().join("masks/2.png")).unwrap();
    let model = red_detector(dir.path(), [H as usize, W as usize]);
    let (model, data) = (model.to_str().unwrap(), dir.path().to_str().unwrap());
    // Two pairs at the default --valid-frac: the validation split holds none.
    assert_fails(
        &["eval", "--model", model, "--data", data],
        &[],
        1,
        &["holds no images", "--split all"],
    );
    let json = eval_json(Path::new(model), dir.path(), &["--split", "all"]);
    assert_eq!(json["images"], 2, "{json}");
}
