//! `segstream train`: arguments to a [`TrainConfig`], then the learner (or the learning-rate
//! range test), with Ctrl-C saving a checkpoint.

use std::path::{Path, PathBuf};

use crate::cli::TrainArgs;
use crate::dataset::Layout;
use crate::dataset::cache::default_cache_dir;
use crate::train::augment::Augmentation;
use crate::train::config::{TrainConfig, read_config};
use crate::train::learner::{Learner, Outcome, StopRules};
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
                .unwrap_or_else(|| default_run(&config.data));
            (config, run)
        }
    };
    let command = std::iter::once("segstream".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let learner = Learner::new(config, &run, command)?;
    let data = learner.data();
    println!(
        "data: {} layout, {} training / {} validation images, classes: {}",
        data.layout,
        data.train.len(),
        data.valid.len(),
        data.classes.names.join(", ")
    );
    if args.lr_find {
        let found = lr_find(&learner)?;
        match found.suggestion {
            Some(lr) => println!("suggested --lr {lr:.1e} (curve: {})", found.plot.display()),
            None => println!(
                "no suggestion: the loss never fell (curve: {})",
                found.plot.display()
            ),
        }
        return Ok(0);
    }
    let interrupt = interrupt::claim("stopping: saving a checkpoint after this step");
    let stop = StopRules {
        interrupt: &interrupt,
        after_epochs: args.stop_after,
    };
    match learner.train(args.resume.is_some(), &stop)? {
        Outcome::Finished(done) => {
            println!(
                "wrote {} (best epoch {}: {}) in {:.0} s; parity burn vs ONNX Runtime: max |Δ| = {:.2e}",
                done.model.display(),
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
                run.display()
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
    let data = args
        .data
        .clone()
        .expect("clap requires --data unless --resume");
    // --freeze-body N: a first stage of N epochs with the body frozen, at the first size.
    let (mut sizes, mut epochs) = (args.size.clone(), args.epochs.clone());
    if let (Some(frozen), Some(&first)) = (args.freeze_body.filter(|&n| n > 0), sizes.first()) {
        sizes.insert(0, first);
        epochs.insert(0, frozen);
    }
    Ok(TrainConfig {
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
        loss: LossKind { dice: args.dice },
        valid_frac: args.valid_frac,
        group_by: args.group_by.clone(),
        seed: args.seed,
        workers: args.workers,
        augment: (!args.no_augment).then(Augmentation::default),
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
    })
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
