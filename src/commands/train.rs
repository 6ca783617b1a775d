//! `segstream train`: arguments to a [`TrainConfig`], then the learner (or the learning-rate
//! range test), with Ctrl-C saving a checkpoint.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::cli::TrainArgs;
use crate::dataset::Layout;
use crate::dataset::cache::default_cache_dir;
use crate::paths::shown;
use crate::train::augment::{Augmentation, CopyPaste};
use crate::train::config::{TrainConfig, read_config};
use crate::train::learner::{Learner, Outcome, Session};
use crate::train::loss::LossKind;
use crate::train::lr_find::lr_find;

use super::{EXIT_INTERRUPTED, interrupt};

pub fn run(args: &TrainArgs) -> anyhow::Result<u8> {
    let (config, run) = match &args.resume {
        Some(run) => (read_config(run)?, run.clone()),
        None => {
            let config = config_from(args)?;
            let run = args
                .output
                .clone()
                .unwrap_or_else(|| default_run(&config.data[0].path));
            (config, run)
        }
    };
    let command = std::iter::once("segstream".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let device = args.device.resolve()?;
    println!("device: {}", device.name);
    let learner = Learner::new(config, &run, command)?.on(device.device);
    let data = learner.data();
    let seen = if learner.config().train_on_all {
        " (trained on too: --train-on all)"
    } else {
        ""
    };
    for source in &data.sources {
        println!(
            "data: {} ({} layout): {} training / {} validation images{seen}",
            source.source,
            source.layout,
            source.train.len(),
            source.valid.len()
        );
    }
    println!("classes: {}", data.classes.names.join(", "));
    if args.lr_find {
        let found = lr_find(&learner)?;
        match found.suggestion {
            Some(lr) => println!("suggested --lr {lr:.1e} (curve: {})", shown(&found.plot)),
            None => println!(
                "no suggestion: the loss never fell (curve: {})",
                shown(&found.plot)
            ),
        }
        return Ok(0);
    }
    let interrupt = interrupt::claim("stopping: saving a checkpoint after this step");
    let session = Session {
        interrupt: &interrupt,
        after_epochs: args.stop_after,
        profile: args.profile,
    };
    match learner.train(args.resume.is_some(), &session)? {
        Outcome::Finished(done) => {
            println!(
                "wrote {} ({} epoch {}: {}) in {:.0} s; parity burn vs ONNX Runtime: max |Δ| = {:.2e}",
                shown(&done.model),
                learner.config().kept(),
                done.best.epoch,
                headline(&done.best.scores),
                done.seconds,
                done.parity
            );
            Ok(0)
        }
        Outcome::Stopped(position) => {
            println!(
                "stopped at stage {} epoch {} batch {}; continue with: segstream train --resume {}",
                position.stage + 1,
                position.epoch + 1,
                position.batch,
                shown(&run)
            );
            Ok(if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
                EXIT_INTERRUPTED
            } else {
                0
            })
        }
    }
}

fn headline(scores: &crate::metrics::Scores) -> String {
    match (scores.dice, scores.mean_iou) {
        (Some(dice), _) => format!(
            "dice {dice:.4}, pixel accuracy {:.4}",
            scores.pixel_accuracy
        ),
        (_, Some(miou)) => format!(
            "mean IoU {miou:.4}, pixel accuracy {:.4}",
            scores.pixel_accuracy
        ),
        _ => format!("pixel accuracy {:.4}", scores.pixel_accuracy),
    }
}

fn config_from(args: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let data = args.data.clone();
    // --freeze-body N: a first stage of N epochs with the body frozen, at the first size.
    let (mut sizes, mut epochs) = (args.size.clone(), args.epochs.clone());
    if let (Some(frozen), Some(&first)) = (args.freeze_body.filter(|&n| n > 0), sizes.first()) {
        sizes.insert(0, first);
        epochs.insert(0, frozen);
    }
    let mut config = TrainConfig {
        data,
        layout: args
            .layout
            .as_deref()
            .map(str::parse::<Layout>)
            .transpose()?,
        classes: args.classes.clone(),
        ignore_index: args.ignore_index,
        architecture: args.network.architecture(),
        sizes,
        epochs,
        batch_size: args.batch,
        lr: args.lr,
        weight_decay: args.weight_decay,
        loss: LossKind {
            dice: args.dice,
            ohem: args.ohem()?,
        },
        valid_frac: args.valid_frac,
        group_by: args.group_by.clone(),
        seed: args.seed,
        fold: args.fold,
        keep_last: args.keep == "last",
        train_on_all: args.train_on == "all",
        workers: args.workers,
        augment: None,
        limit: args.limit,
        cache: if args.no_cache {
            None
        } else {
            args.cache.clone().or_else(default_cache_dir)
        },
        encoder_weights: args.encoder_weights.clone(),
        freeze_encoder: args.freeze_encoder || args.freeze_body.is_some_and(|n| n > 0),
        encoder_lr_ratio: args.encoder_lr_ratio,
        init_from: args.init_from.clone(),
        decoder: args.decoder,
        median_frequency: args.class_weights == "median-frequency",
        hold_out: args.hold_out.clone(),
    };
    if !args.no_augment {
        config.augment = Some(augmentation(args, &config)?);
    }
    Ok(config)
}

/// The augmentation the arguments name; copy-paste's classes are resolved against the
/// model's.
fn augmentation(args: &TrainArgs, config: &TrainConfig) -> anyhow::Result<Augmentation> {
    let range = |values: &[f32], option: &str| -> anyhow::Result<[f32; 2]> {
        match *values {
            [] => Ok([1.0, 1.0]),
            [low, high] if 0.0 < low && low <= high => Ok([low, high]),
            _ => Err(Error::Config(format!("{option}: give MIN,MAX with 0 < MIN <= MAX")).into()),
        }
    };
    let mut augment = Augmentation {
        zoom: range(&args.zoom, "--zoom")?,
        ..Augmentation::default()
    };
    if args.copy_paste > 0.0 {
        let first = &config.data[0];
        let layout = match config.layout {
            Some(layout) => layout,
            None => Layout::detect(&first.path)?,
        };
        let classes = config.model_classes(layout)?;
        let labels = match (&args.paste_classes[..], classes.is_binary()) {
            ([], true) => vec![1],
            ([], false) => {
                return Err(Error::Config(
                    "--copy-paste with several classes needs --paste-classes".into(),
                )
                .into());
            }
            (names, _) => names
                .iter()
                .map(|name| {
                    classes.label_named(name).filter(|&l| l > 0 || !classes.is_binary()).ok_or_else(|| {
                        Error::Config(format!(
                            "--paste-classes {name}: the model has no such class (its classes: {})",
                            classes.names.join(", ")
                        ))
                    })
                })
                .collect::<Result<Vec<u8>, Error>>()?,
        };
        augment.paste = Some(CopyPaste {
            probability: args.copy_paste.min(1.0),
            max_objects: args.paste_max.max(1),
            height: range(&args.paste_height, "--paste-height")?,
            labels,
        });
    }
    Ok(augment)
}

/// `runs/<dataset folder name>`.
fn default_run(data: &Path) -> PathBuf {
    let name = data
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "train".into());
    PathBuf::from("runs").join(name)
}
