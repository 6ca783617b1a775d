//! The commands behind the CLI: each turns validated arguments into library calls and prints
//! what the user asked for.
//!
//! The top room below `main`: it may use every room of the library.

mod batch;
mod bench;
mod camera;
mod draw;
mod eval;
mod file_run;
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
mod views;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::{Command, MetricsArgs, ModelArgs};
use crate::infer::{DeviceChoice, ModelCard, Segmenter, SegmenterOptions};
use crate::onnx::proto::ModelProto;
use crate::paths::{shipped_model, shown};
use crate::telemetry::server::MetricsServer;

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
        Command::Views(args) => views::run(&args).map(|()| 0),
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

/// Writes `model` with `card` in its metadata to `path`, through a temporary file that is kept
/// only once ONNX Runtime opens it and runs its test inference on the CPU; returns its size in
/// bytes.
fn write_checked(path: &Path, mut model: ModelProto, card: &ModelCard) -> anyhow::Result<usize> {
    use prost::Message as _;
    model.metadata_props = crate::onnx::metadata_entries(card.to_metadata());
    let encoded = model.encode_to_vec();
    crate::files::write_through_temp(path, |temp| {
        crate::files::write_file_synced(temp, &encoded).map_err(|e| crate::Error::io(path, e))?;
        Segmenter::load(temp, &cpu_options())
            .map(drop)
            .map_err(anyhow::Error::from)
    })?;
    Ok(encoded.len())
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

/// The model `args` name, or the shipped model `default` (relative to the checkout).
fn model_path(args: &ModelArgs, default: &str) -> anyhow::Result<PathBuf> {
    if let Some(model) = &args.path {
        return Ok(model.clone());
    }
    let found = shipped_model(default)
        .with_context(|| format!("the default model {default} was not found; give --model"))?;
    tracing::info!("no --model: using the shipped {}", shown(&found));
    Ok(found)
}

/// Loads the model `args` name (or the shipped model `default`) with their runtime options.
fn load_model(args: &ModelArgs, default: &str) -> anyhow::Result<Segmenter> {
    Ok(Segmenter::load(
        &model_path(args, default)?,
        &args.runtime.options().beside_video(),
    )?)
}

/// Starts the metrics endpoint `--metrics` asks for (before anything slow, so that a taken
/// port fails at once) and says where it is; it serves until the returned server is dropped.
///
/// # Errors
/// When the address cannot be bound.
fn serve_metrics(args: &MetricsArgs) -> crate::Result<Option<MetricsServer>> {
    let Some(address) = args.metrics else {
        return Ok(None);
    };
    let server = MetricsServer::start(address)?;
    eprintln!(
        "metrics: http://{0}/metrics (health: http://{0}/healthz)",
        server.address()
    );
    Ok(Some(server))
}
