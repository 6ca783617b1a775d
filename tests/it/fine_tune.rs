//! `train --init-from`: an imported pretrained model fine-tuned (validation loss down, Dice
//! kept, exported with parity, runs in `segment`), and a new head trained on a frozen body.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::{GrayImage, Luma, Rgb, RgbImage};
use prost::Message;
use segstream::onnx::DECODER_PREFIX;
use segstream::onnx::proto::ModelProto;
use segstream::train::checkpoint::{Checkpoints, load_model};
use segstream::train::model::SegmentationModel;
use segstream::train::pretrained::{Decoder, Pretrained};

use crate::helpers::{import_model, run_ok, segment_bars_with};
use crate::media::shared;

/// The MediaPipe selfie model imported into `dir`.
fn imported_selfie(dir: &Path) -> PathBuf {
    let out = dir.join("selfie.onnx");
    let source = shared("models/mediapipe_selfie/selfie_segmentation.onnx");
    import_model(&source, &out, &["--classes", "person"]);
    out
}

/// Runs `segstream train` with `args`, asserting success; returns stdout.
fn train(args: &[&str]) -> String {
    let mut all = vec!["train"];
    all.extend(args);
    run_ok(&all).stdout
}

/// The number after `key ` in `line`.
fn figure(line: &str, key: &str) -> f64 {
    line.split(&format!("{key} "))
        .nth(1)
        .and_then(|rest| rest.split([' ', ',', '\n']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn fine_tuning_the_imported_selfie_model_lowers_validation_loss_and_keeps_its_dice() {
    let dir = tempfile::tempdir().unwrap();
    let model = imported_selfie(dir.path());
    let run = dir.path().join("run");
    let data = shared("human_seg");
    let stdout = train(&[
        "--data",
        data.to_str().unwrap(),
        "--classes",
        "person",
        "--init-from",
        model.to_str().unwrap(),
        "--size",
        "256",
        "--epochs",
        "2",
        "--batch",
        "8",
        "--lr",
        "1e-4",
        "-o",
        run.to_str().unwrap(),
    ]);
    println!("{stdout}");
    let before = stdout
        .lines()
        .find(|l| l.starts_with("before training"))
        .unwrap_or_else(|| panic!("no starting validation in {stdout}"));
    let last = stdout
        .lines()
        .rfind(|l| l.starts_with("epoch"))
        .unwrap_or_else(|| panic!("no epoch in {stdout}"));
    let (loss_before, dice_before) = (figure(before, "valid loss"), figure(before, "dice"));
    let (loss_after, dice_after) = (figure(last, "valid loss"), figure(last, "dice"));
    assert!(
        loss_after < loss_before,
        "valid loss {loss_before} → {loss_after}"
    );
    assert!(
        dice_after >= dice_before - 0.01,
        "dice {dice_before} → {dice_after}"
    );
    // Logits of this model reach the hundreds (see the interpreter's parity test).
    let parity = figure(&stdout, "max |Δ| =");
    assert!(parity <= 1e-2, "parity {parity}");

    let exported = run.join("model.onnx");
    segment_bars_with(&exported, &dir.path().join("frames"), &[]);
    let card = run_ok(&["inspect", exported.to_str().unwrap()]).stdout;
    assert!(
        card.contains("init_from") && card.contains("selfie_segmentation.onnx"),
        "{card}"
    );
}

#[test]
fn several_folders_with_copy_paste_train_the_freed_selfie_model_at_another_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = imported_selfie(dir.path());
    let run = dir.path().join("run");
    let people = shared("human_seg");
    let streets = format!("{}:Pedestrian=person@0.5", shared("camvid").display());
    let stdout = train(&[
        "--data",
        people.to_str().unwrap(),
        "--data",
        &streets,
        "--classes",
        "person",
        "--init-from",
        model.to_str().unwrap(),
        "--size",
        "128x160",
        "--epochs",
        "1",
        "--limit",
        "8",
        "--zoom",
        "0.6,1.4",
        "--copy-paste",
        "1",
        "-o",
        run.to_str().unwrap(),
    ]);
    println!("{stdout}");
    assert!(stdout.contains("(generic layout): 8 training"), "{stdout}");
    assert!(
        stdout.contains("Pedestrian=person@0.5 (camvid layout): 8 training"),
        "{stdout}"
    );
    // 8 + half of 8 images: one whole batch of 8, shown 4 across.
    let sheet = image::open(run.join("augment_samples.png")).unwrap();
    assert_eq!((sheet.width(), sheet.height()), (4 * 164 + 4, 2 * 132 + 4));
    let card = run_ok(&["inspect", run.join("model.onnx").to_str().unwrap()]).stdout;
    assert!(card.contains("input size:   128x160"), "{card}");
    assert!(card.contains("Pedestrian=person@0.5"), "{card}");
}

/// A generic dataset of `n` images whose masks hold classes 0, 1 and 2 in vertical bands.
fn three_class_data(root: &Path, n: u32) {
    for dir in ["images", "masks"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for i in 0..n {
        RgbImage::from_fn(48, 32, |x, _| match x / 16 {
            0 => Rgb([200, 30, 30]),
            1 => Rgb([30, 200, 30]),
            _ => Rgb([30, 30, 200 - i as u8]),
        })
        .save(root.join(format!("images/{i}.png")))
        .unwrap();
        GrayImage::from_fn(48, 32, |x, _| Luma([(x / 16) as u8]))
            .save(root.join(format!("masks/{i}.png")))
            .unwrap();
    }
}

/// The float initializers of an ONNX file by name.
fn initializers(model: &ModelProto) -> Vec<(String, Vec<u8>, Vec<f32>)> {
    model
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .map(|t| {
            (
                t.name.clone().unwrap(),
                t.raw_data.clone().unwrap_or_default(),
                t.float_data.clone(),
            )
        })
        .collect()
}

#[test]
fn a_new_head_learns_on_a_frozen_body() {
    let dir = tempfile::tempdir().unwrap();
    let (model, run, stdout) = frozen_stage(dir.path(), "256", &[]);
    assert!(stdout.contains("new head (1 → 3 classes)"), "{stdout}");

    let changed = changed_by_the_run(&model, 3, Decoder::Head, &run);
    // MediaPipe's head is its final ConvTranspose: weights ct_W and bias ct_B.
    assert_eq!(
        changed,
        HashSet::from(["ct_W".to_string(), "ct_B".to_string()]),
        "changed: {changed:?}"
    );
    // The new head takes the old one's place: no initializer more or less.
    let imported = ModelProto::decode(std::fs::read(&model).unwrap().as_slice()).unwrap();
    let start = Pretrained::read(&model, 3, 0, Decoder::Head).unwrap();
    let start = start.model(&Device::flex()).unwrap().to_onnx();
    assert_eq!(initializers(&imported).len(), initializers(&start).len());
}

/// Imports the selfie model into `dir` and trains it with `extra` options on three-class data
/// at `size`, for the frozen-body stage only (`--freeze-body 1 --stop-after 1`); returns the
/// imported model, the run folder and what the run printed.
fn frozen_stage(dir: &Path, size: &str, extra: &[&str]) -> (PathBuf, PathBuf, String) {
    let model = imported_selfie(dir);
    let data = dir.join("data");
    three_class_data(&data, 10);
    let run = dir.join("run");
    let mut args = vec![
        "--data",
        data.to_str().unwrap(),
        "--classes",
        "red,green,blue",
        "--init-from",
        model.to_str().unwrap(),
        "--size",
        size,
        "--freeze-body",
        "1",
        "--epochs",
        "1",
        "--batch",
        "4",
        "--stop-after",
        "1",
        "--no-cache",
        "-o",
        run.to_str().unwrap(),
    ];
    args.extend(extra);
    let stdout = train(&args);
    (model, run, stdout)
}

/// The initializers a run's last checkpoint holds changed against its start (the pretrained
/// `model` with `decoder` for `classes`, drawn from train's default seed), by name; asserts
/// that it has as many as the start.
fn changed_by_the_run(
    model: &Path,
    classes: usize,
    decoder: Decoder,
    run: &Path,
) -> HashSet<String> {
    let seed = 0; // train's default --seed
    let start = Pretrained::read(model, classes, seed, decoder).unwrap();
    let fresh = start.model(&Device::flex()).unwrap();
    let mut trained = SegmentationModel::Graph(start.model(&Device::flex()).unwrap());
    let weights = Checkpoints::new(run).model_file().unwrap();
    load_model(&mut trained, &weights).unwrap();
    let SegmentationModel::Graph(trained) = trained else {
        unreachable!("loaded into a graph")
    };
    let before = initializers(&fresh.to_onnx());
    let after = initializers(&trained.to_onnx());
    assert_eq!(before.len(), after.len());
    let values = |t: &(String, Vec<u8>, Vec<f32>)| -> Vec<f32> {
        if t.1.is_empty() {
            t.2.clone()
        } else {
            t.1.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        }
    };
    before
        .iter()
        .zip(&after)
        .filter(|(b, a)| values(b) != values(a))
        .map(|(b, _)| b.0.clone())
        .collect()
}

#[test]
fn a_unet_decoder_on_the_body_learns_while_it_is_frozen_resumes_and_exports_with_parity() {
    let dir = tempfile::tempdir().unwrap();
    let (model, run, stdout) = frozen_stage(dir.path(), "128", &["--decoder", "unet"]);
    assert!(
        stdout.contains("new U-Net decoder (1 → 3 classes)"),
        "{stdout}"
    );

    // The frozen stage trained every weight of the decoder and nothing else.
    let start = Pretrained::read(&model, 3, 0, Decoder::UNet).unwrap();
    let decoder: HashSet<String> = start
        .model(&Device::flex())
        .unwrap()
        .trainable()
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| name.starts_with(DECODER_PREFIX))
        .collect();
    assert!(decoder.len() >= 4, "decoder weights: {decoder:?}");
    assert_eq!(changed_by_the_run(&model, 3, Decoder::UNet, &run), decoder);

    let stdout = train(&["--resume", run.to_str().unwrap()]);
    let parity = figure(&stdout, "max |Δ| =");
    assert!(parity <= 1e-3, "parity {parity}\n{stdout}");
    let exported = run.join("model.onnx");
    let proto = ModelProto::decode(std::fs::read(&exported).unwrap().as_slice()).unwrap();
    let names: Vec<String> = initializers(&proto).into_iter().map(|t| t.0).collect();
    assert!(
        !names.iter().any(|n| n == "ct_W"),
        "the old head is gone: {names:?}"
    );
    let card = run_ok(&["inspect", exported.to_str().unwrap()]).stdout;
    assert!(card.contains("U-Net decoder"), "{card}");
    segment_bars_with(&exported, &dir.path().join("frames"), &[]);
}
