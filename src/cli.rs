//! The command line (clap derive): what the user typed, before validation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::infer::DeviceChoice;

/// Segment video as it streams: GStreamer in and out, a U-Net run by ONNX Runtime in between.
#[derive(Debug, Parser)]
#[command(name = "segstream", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// segstream's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Segment a video file into an overlay, a cut-out or a mask video (not implemented yet).
    Segment(Planned),
    /// Segment a live feed (camera, RTSP, UDP) with bounded latency (not implemented yet).
    Camera(Planned),
    /// Train a U-Net on image/mask pairs and export it as ONNX (not implemented yet).
    Train(Planned),
    /// Score a model's masks against a labelled dataset (not implemented yet).
    Eval(Planned),
    /// Measure decode, inference and end-to-end speed (not implemented yet).
    Bench(Planned),
    /// Show a model's card (classes, colours, normalisation, input size) and check it loads.
    Inspect(InspectArgs),
    /// Write a randomly initialised U-Net as ONNX (fixtures, smoke tests, a starting point).
    #[cfg(feature = "train")]
    InitModel(InitModelArgs),
}

/// Arguments of a command that is not built yet; accepted so `--help` lists the command.
#[derive(Debug, Args)]
pub struct Planned {
    /// Arguments (ignored until the command lands).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

/// Options for choosing how a model runs.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Execution provider: auto (CUDA when it loads, else CPU), cpu, or cuda (an error if unavailable).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// `segstream inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The ONNX model.
    pub model: PathBuf,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `segstream init-model`.
#[cfg(feature = "train")]
#[derive(Debug, Args)]
pub struct InitModelArgs {
    /// Output `.onnx` file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Architecture: `unet` (classic) or `resnet34` (ResNet34 encoder).
    #[arg(long, default_value = "unet", value_parser = ["unet", "resnet34"])]
    pub arch: String,
    /// Classic U-Net: number of poolings.
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    /// Classic U-Net: channels at full resolution.
    #[arg(long, default_value_t = 16)]
    pub base: usize,
    /// Number of output classes (1 = binary).
    #[arg(long, default_value_t = 1)]
    pub classes: usize,
    /// Input size written to the card, HEIGHTxWIDTH.
    #[arg(long, default_value = "256x256", value_parser = parse_size)]
    pub size: [usize; 2],
    /// Random seed for the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Parses `HEIGHTxWIDTH` (or a single number for a square).
pub fn parse_size(text: &str) -> Result<[usize; 2], String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("'{text}' is not a size like 256x256"))
    };
    match text.split_once(['x', 'X', ',']) {
        Some((h, w)) => Ok([parse(h)?, parse(w)?]),
        None => parse(text).map(|s| [s, s]),
    }
}
