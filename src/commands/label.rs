//! `segstream label`: load the model, bind the page's port and open the dataset (so that each
//! can fail before any work), rank the input's frames, serve the page until Finish or Ctrl-C,
//! and with `--train` fine-tune on what was saved.

use std::path::Path;
#[cfg(feature = "train")]
use std::path::PathBuf;

#[cfg(feature = "train")]
use anyhow::Context as _;
#[cfg(feature = "train")]
use clap::Parser as _;

use super::{EXIT_INTERRUPTED, interrupt, model_path};
#[cfg(feature = "train")]
use crate::cli::Cli;
use crate::cli::LabelArgs;
use crate::infer::Segmenter;
#[cfg(feature = "train")]
use crate::label::Split;
use crate::label::store::model_identity;
use crate::label::{Listener, Ranker, Session, Store, ranked_queue};
use crate::paths::{DEFAULT_MODEL, shown};

pub fn run(args: &LabelArgs) -> anyhow::Result<u8> {
    if args.frames == 0 {
        anyhow::bail!("--frames 0 queues nothing: give at least 1");
    }
    if !args.input.exists() {
        anyhow::bail!("input {}: no such file or folder", shown(&args.input));
    }
    crate::video::init()?;
    let model = model_path(&args.model, DEFAULT_MODEL)?;
    let segmenter = Segmenter::load(&model, &args.model.runtime.options())?;
    let listener = Listener::bind(args.port)?;
    let card = segmenter.card().clone();
    let identity = model_identity(&model, card.classes.clone(), card.architecture.clone())?;
    let store = Store::open(&args.output, identity)?;
    let earlier = store.entries().len();
    let mut ranker = Ranker::new(segmenter);
    let candidates = args.candidates.unwrap_or(5 * args.frames).max(args.frames);
    let progress = indicatif::ProgressBar::new(candidates as u64).with_message("scoring frames");
    let queue = ranked_queue(
        &args.input,
        &mut ranker,
        &store,
        args.frames,
        candidates,
        |n| {
            progress.set_position(n as u64);
        },
    )?;
    progress.finish_and_clear();
    if queue.is_empty() {
        println!(
            "nothing to label: every frame scored is in {} already",
            shown(&args.output)
        );
        return Ok(0);
    }
    println!(
        "queued {} frames of {} (best score {:.3}); {} labelled earlier in {}",
        queue.len(),
        shown(&args.input),
        queue[0].scores.total(),
        earlier,
        shown(&args.output)
    );
    let stop = interrupt::claim("stopping: every saved mask is kept");
    let mut session = Session::new(&args.input, &card, queue, store);
    println!(
        "label at {} (Finish on the page or Ctrl-C ends)",
        listener.url()
    );
    listener.serve(&mut session, &stop)?;
    let saved = session.store().entries().len() - earlier;
    println!("saved {saved} masks in {}", shown(&args.output));
    if !session.finished() {
        return Ok(EXIT_INTERRUPTED);
    }
    if args.train {
        fine_tune(args, &model, card.input_size, session.store())?;
    }
    Ok(0)
}

/// `train --data DATASET --init-from MODEL` at the model's size, then `eval` of the model and
/// of its fine-tuned copy on the frames held back (`DATASET/test`).
#[cfg(feature = "train")]
fn fine_tune(
    args: &LabelArgs,
    model: &Path,
    [h, w]: [usize; 2],
    store: &Store,
) -> anyhow::Result<()> {
    let trained = store
        .entries()
        .iter()
        .filter(|e| e.split == Split::Train)
        .count();
    if trained < 2 {
        anyhow::bail!(
            "--train: {trained} masks saved for training in {}; fine-tuning needs at least 2 \
             (one is held for validation)",
            shown(&args.output)
        );
    }
    let run = free_run_folder(&args.output.join("runs"));
    let data = args.output.to_string_lossy();
    let (size, epochs) = (format!("{h}x{w}"), args.epochs.to_string());
    // A fifth of the frames validate, and at least one does.
    let valid_frac = (1.0 / trained as f64).max(0.2).to_string();
    let model_arg = model.to_string_lossy();
    let run_arg = run.to_string_lossy();
    let train = [
        "train",
        "--data",
        &data,
        "--init-from",
        &model_arg,
        "--size",
        &size,
        "--epochs",
        &epochs,
        "--valid-frac",
        &valid_frac,
        "-o",
        &run_arg,
    ];
    println!("segstream {}", train.join(" "));
    if sub_command(&train)? != 0 {
        anyhow::bail!("fine-tuning did not finish; the run is in {}", shown(&run));
    }
    let held_back = store.entries().iter().any(|e| e.split == Split::Test);
    if !held_back {
        println!("no frames were held back for testing: nothing to evaluate");
        return Ok(());
    }
    let test = args.output.join("test").to_string_lossy().into_owned();
    let tuned = run.join("model.onnx").to_string_lossy().into_owned();
    for (what, path) in [("before", model_arg.as_ref()), ("after", tuned.as_str())] {
        println!("{what}: segstream eval --model {path} --data {test} --split all");
        sub_command(&["eval", "--model", path, "--data", &test, "--split", "all"])?;
    }
    Ok(())
}

#[cfg(not(feature = "train"))]
fn fine_tune(_: &LabelArgs, _: &Path, _: [usize; 2], _: &Store) -> anyhow::Result<()> {
    anyhow::bail!("--train: this build of segstream has no training (feature `train`)")
}

/// Runs one of segstream's commands, as typed after `segstream`.
#[cfg(feature = "train")]
fn sub_command(words: &[&str]) -> anyhow::Result<u8> {
    let cli = Cli::try_parse_from(std::iter::once("segstream").chain(words.iter().copied()))
        .context("building the command")?;
    super::run(cli.command)
}

/// `runs/fine-tune`, or `runs/fine-tune-2`…: the first that does not exist.
#[cfg(feature = "train")]
fn free_run_folder(runs: &Path) -> PathBuf {
    (1..)
        .map(|n| match n {
            1 => runs.join("fine-tune"),
            n => runs.join(format!("fine-tune-{n}")),
        })
        .find(|path| !path.exists())
        .expect("some name is free")
}
