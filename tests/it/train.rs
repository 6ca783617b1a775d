//! Training on real images: a short run learns, exports a model that passes parity and runs in
//! `segment`; stopping and resuming gives the same numbers as an uninterrupted run.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use segstream::dataset::DataSource;
use segstream::train::augment::Augmentation;
use segstream::train::config::TrainConfig;
use segstream::train::device::TrainDevice;
use segstream::train::learner::{Finished, Learner, Outcome, Session};
use segstream::train::loss::LossKind;
use segstream::train::model::Architecture;

use crate::helpers::{BURN_RANDOM, describe, segstream};
use crate::media::{clip, decode, shared};

/// A small, fast configuration on the first `limit` human_seg images.
fn config(limit: usize, size: usize, epochs: usize) -> TrainConfig {
    TrainConfig {
        data: vec![DataSource::from(shared("human_seg"))],
        layout: None,
        classes: Some("person".into()),
        ignore_index: None,
        architecture: Architecture::UNet { depth: 3, base: 8 },
        sizes: vec![[size, size]],
        epochs: vec![epochs],
        batch_size: 4,
        lr: 3e-3,
        weight_decay: 0.0,
        loss: LossKind {
            dice: true,
            ohem: None,
        },
        valid_frac: 0.2,
        group_by: None,
        seed: 11,
        fold: 0,
        keep_last: false,
        workers: 2,
        augment: Some(Augmentation::default()),
        limit: Some(limit),
        cache: None,
        encoder_weights: None,
        freeze_encoder: false,
        encoder_lr_ratio: 0.1,
        init_from: None,
        decoder: Default::default(),
        median_frequency: false,
        hold_out: None,
        train_on_all: false,
    }
}

fn train(config: TrainConfig, run: &Path, resume: bool, stop_after: Option<usize>) -> Outcome {
    train_on(TrainDevice::Cpu, config, run, resume, stop_after)
}

fn train_on(
    device: TrainDevice,
    config: TrainConfig,
    run: &Path,
    resume: bool,
    stop_after: Option<usize>,
) -> Outcome {
    let device = device.resolve().unwrap().device;
    let _seeded = BURN_RANDOM.lock().unwrap_or_else(|e| e.into_inner());
    let never = AtomicBool::new(false);
    let session = Session {
        interrupt: &never,
        after_epochs: stop_after,
        profile: false,
    };
    Learner::new(config, run, "test".into())
        .unwrap()
        .on(device)
        .train(resume, &session)
        .unwrap()
}

fn finished(outcome: Outcome) -> Finished {
    match outcome {
        Outcome::Finished(done) => done,
        Outcome::Stopped(at) => panic!("stopped early at {at:?}"),
    }
}

#[test]
fn a_short_run_learns_exports_and_segments() {
    let run = tempfile::tempdir().unwrap();
    let done = finished(train(config(48, 64, 6), run.path(), false, None));
    let first = &done.history[0];
    let last = done.history.last().unwrap();
    println!("first {first:?}\nlast {last:?}\nparity {:.2e}", done.parity);
    assert!(last.valid_loss < first.valid_loss, "validation loss fell");
    let dice = done.best.scores.dice.unwrap();
    // An all-background prediction has Dice 0 on images that all contain a person.
    assert!(dice > 0.5, "dice {dice}");
    assert!(done.parity <= 1e-4, "parity {}", done.parity);
    for file in [
        "config.json",
        "metrics.csv",
        "curves.png",
        "valid_samples.png",
        "model.onnx",
    ] {
        assert!(run.path().join(file).is_file(), "{file} written");
    }
    let csv = std::fs::read_to_string(run.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "header + 6 epochs:\n{csv}");

    let out = run.path().join("cutout.mkv");
    let model = done.model.to_str().unwrap();
    let input = clip("one-by-one-person-detection.mp4");
    let args = [
        "segment",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        model,
        "--mode",
        "cutout",
        "--background",
        "#00ff00",
    ];
    let output = segstream(&args);
    assert!(output.status.success(), "{}", describe(&args, &output));
    let mut frames = 0;
    decode(&out, |_| frames += 1);
    assert!(frames > 0);
}

#[test]
fn resuming_after_an_epoch_matches_an_uninterrupted_run() {
    let whole = tempfile::tempdir().unwrap();
    let split = tempfile::tempdir().unwrap();
    let config = config(16, 32, 2);
    let uninterrupted = finished(train(config.clone(), whole.path(), false, None));
    match train(config, split.path(), false, Some(1)) {
        Outcome::Stopped(at) => assert_eq!((at.stage, at.epoch, at.batch), (0, 1, 0)),
        Outcome::Finished(_) => panic!("--stop-after 1 stops after the first epoch"),
    }
    let resumed = finished(train(
        segstream::train::config::read_config(split.path()).unwrap(),
        split.path(),
        true,
        None,
    ));
    let (a, b) = (&uninterrupted.history[1], &resumed.history[1]);
    println!("uninterrupted {a:?}\nresumed {b:?}");
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-5;
    assert!(
        close(a.train_loss, b.train_loss),
        "train loss {} vs {}",
        a.train_loss,
        b.train_loss
    );
    assert!(
        close(a.valid_loss, b.valid_loss),
        "valid loss {} vs {}",
        a.valid_loss,
        b.valid_loss
    );
    assert!(close(a.scores.pixel_accuracy, b.scores.pixel_accuracy));
    assert!(close(a.scores.dice.unwrap(), b.scores.dice.unwrap()));
}

/// The GPU code path on every machine: the run of the resume test on a Vulkan device (Mesa's
/// software one where there is no GPU: `scripts/setup` installs it), stopped after its first
/// epoch and finished on the CPU, against the same run all on the CPU. Same seed, so the same
/// starting weights (drawn on the CPU) and the same batches; what differs is the order in
/// which each device sums (its reductions and convolution algorithms), which changes the
/// last bits of each sum, and Adam's first steps, which divide the gradient by its own
/// magnitude, carry such differences on.
#[test]
fn a_run_on_vulkan_matches_the_cpu_and_resumes_there() {
    let (cpu_run, gpu_run) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = config(16, 32, 2);
    let cpu = finished(train(config.clone(), cpu_run.path(), false, None));
    match train_on(TrainDevice::Vulkan, config, gpu_run.path(), false, Some(1)) {
        Outcome::Stopped(at) => assert_eq!((at.stage, at.epoch, at.batch), (0, 1, 0)),
        Outcome::Finished(_) => panic!("--stop-after 1 stops after the first epoch"),
    }
    let resumed = finished(train(
        segstream::train::config::read_config(gpu_run.path()).unwrap(),
        gpu_run.path(),
        true,
        None,
    ));
    for (a, b) in cpu.history.iter().zip(&resumed.history) {
        println!("cpu {a:?}\nvulkan, then cpu {b:?}");
        let near = |x: f64, y: f64| (x - y).abs() <= VULKAN_TOLERANCE * x.abs().max(y.abs());
        assert!(
            near(a.train_loss, b.train_loss),
            "epoch {} train loss",
            a.epoch
        );
        assert!(
            near(a.valid_loss, b.valid_loss),
            "epoch {} valid loss",
            a.epoch
        );
    }
    // The export is the CPU's whatever trained the weights: parity as tight as a CPU run's.
    assert!(resumed.parity <= 1e-4, "parity {}", resumed.parity);
}

/// Largest relative difference allowed between a loss on Vulkan and on the CPU. Measured on
/// Mesa's software device: 2e-9 (train) and 1e-8 (validation) after the Vulkan epoch, equal
/// after the CPU one; f32 rounding is 6e-8 an operation, so 1e-4 leaves room for another
/// driver's order of summation while a wrong kernel (or other starting weights: 5 % apart
/// before the weights were drawn on the CPU) fails.
const VULKAN_TOLERANCE: f64 = 1e-4;

#[test]
fn the_final_fit_trains_on_the_validation_images_too() {
    let mut held_apart = config(0, 64, 1);
    held_apart.limit = None;
    held_apart.data = vec![DataSource::from(shared("camvid"))];
    held_apart.classes = None;
    let apart = held_apart.prepare().unwrap();
    let (train, valid) = (&apart.sources[0].train, &apart.sources[0].valid);
    assert!(valid.iter().all(|pair| !train.contains(pair)));
    let final_fit = TrainConfig {
        train_on_all: true,
        ..held_apart
    };
    // Its validation images trained too, so they cannot choose the epoch.
    assert_eq!(final_fit.kept(), "last");
    let all = final_fit.prepare().unwrap();
    let everything = &all.sources[0].train;
    assert_eq!(everything.len(), train.len() + valid.len());
    assert!(
        valid
            .iter()
            .chain(train)
            .all(|pair| everything.contains(pair))
    );
    // Still scored on them, as images it saw.
    assert_eq!(&all.sources[0].valid, valid);
}

#[test]
fn a_held_out_sequence_beside_portraits_leaves_the_portraits_their_own_split() {
    let mut mixed = config(0, 64, 1);
    mixed.limit = None;
    mixed.data = vec![
        DataSource::from(shared("human_seg")),
        format!("{}:Pedestrian=person", shared("camvid").display())
            .parse()
            .unwrap(),
    ];
    mixed.hold_out = Some("0006R0".into());
    let prepared = mixed.prepare().unwrap();
    let (portraits, street) = (&prepared.sources[0], &prepared.sources[1]);
    let own = config(0, 64, 1);
    let own = TrainConfig { limit: None, ..own }.prepare().unwrap();
    assert_eq!(
        portraits.valid, own.sources[0].valid,
        "human_seg's usual split"
    );
    let sequence = |pair: &segstream::dataset::Pair| pair.name().starts_with("0006R0_");
    assert!(!street.valid.is_empty() && street.valid.iter().all(sequence));
    assert!(!street.train.iter().any(sequence));

    // Folders none of which has groups: nothing to hold out, said as such.
    mixed.data = vec![DataSource::from(shared("human_seg")); 2];
    let error = mixed.prepare().unwrap_err().to_string();
    assert!(
        error.contains("none of the --data folders has groups"),
        "{error}"
    );
}

#[test]
fn train_cli_rejects_bad_options_and_data() {
    let run = tempfile::tempdir().unwrap();
    let out = run.path().to_str().unwrap();
    let data: PathBuf = shared("human_seg");
    let data = data.to_str().unwrap();
    for (args, needle) in [
        (
            vec![
                "train", "--data", data, "-o", out, "--size", "128,256", "--epochs", "3",
            ],
            "one epoch count per size",
        ),
        (
            vec!["train", "--data", data, "-o", out, "--size", "100"],
            "multiples of 16",
        ),
        (
            vec!["train", "--data", "/nonexistent/data", "-o", out],
            "not a folder",
        ),
        (vec!["train", "--resume", "/nonexistent/run"], "config.json"),
        (
            vec![
                "train",
                "--data",
                data,
                "-o",
                out,
                "--train-on",
                "all",
                "--fold",
                "1",
            ],
            "cannot be used with",
        ),
    ] {
        let output = segstream(&args);
        let text = describe(&args, &output);
        assert_ne!(output.status.code(), Some(0), "{text}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(needle),
            "{text}"
        );
    }
}
