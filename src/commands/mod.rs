//! The commands behind the CLI: each turns validated arguments into library calls and prints
//! what the user asked for.

mod batch;
mod bench;
mod camera;
mod draw;
mod eval;
mod fp16;
mod import;
#[cfg(feature = "train")]
mod init_model;
mod inspect;
pub mod interrupt;
mod label;
mod output;
mod quantize;
mod report;
mod segment;
#[cfg(feature = "train")]
mod train;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::{Command, ModelArgs};
use crate::infer::{DeviceChoice, ModelCard, Segmenter, SegmenterOptions};
use crate::onnx::proto::ModelProto;
use crate::paths::{DEFAULT_MODEL, default_model, shown};

/// Exit code for usage errors (options that cannot work), as clap uses.
pub const EXIT_USAGE: u8 = 2;

/// Runs `command`; `Ok(code)` is the process exit code.
///
/// # Errors
/// Whatever the command fails with; `main` prints the chain and exits 1.
pub fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Inspect(args) => inspect::run(&args).map(|()| 0),
        Command::Import(args) => import::run(&args).map(|()| 0),
        Command::Quantize(args) => quantize::run(&args).map(|()| 0),
        Command::Fp16(args) => fp16::run(&args).map(|()| 0),
        #[cfg(feature = "train")]
        Command::InitModel(args) => init_model::run(&args).map(|()| 0),
        Command::Segment(args) => segment::run(&args),
        Command::Camera(args) => camera::run(&args),
        #[cfg(feature = "train")]
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args).map(|()| 0),
        Command::Bench(args) => bench::run(&args).map(|()| 0),
        Command::Label(args) => label::run(&args),
    }
}

/// Applies `--decoder` to every source pipeline of this run and says in the log what decodes.
fn choose_decoder(choice: crate::video::DecoderChoice) -> anyhow::Result<()> {
    let decoding = crate::video::choose_decoder(choice)?;
    tracing::info!("decoding on {decoding}");
    Ok(())
}

/// The card and the graph of the model at `path`, which must load under the contract (on the
/// CPU provider, so that rewriting a model needs no GPU).
fn contract_model(path: &Path) -> anyhow::Result<(ModelCard, ModelProto)> {
    let card = Segmenter::load(path, &cpu_options())?.card().clone();
    Ok((card, crate::onnx::read_model(path)?))
}

/// Segmenter options for the CPU provider.
fn cpu_options() -> SegmenterOptions {
    SegmenterOptions {
        device: DeviceChoice::Cpu,
        ..SegmenterOptions::default()
    }
}

/// Exit code after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The model `args` name, or the shipped default model.
fn model_path(args: &ModelArgs) -> anyhow::Result<PathBuf> {
    if let Some(model) = &args.path {
        return Ok(model.clone());
    }
    let found = default_model().with_context(|| {
        format!("the default model {DEFAULT_MODEL} was not found; give --model")
    })?;
    tracing::info!("no --model: using the shipped {}", shown(&found));
    Ok(found)
}

/// Loads the model `args` name (or the shipped default) with their runtime options.
fn load_model(args: &ModelArgs) -> anyhow::Result<Segmenter> {
    Ok(Segmenter::load(
        &model_path(args)?,
        &args.runtime.options().beside_video(),
    )?)
}
