//! The command line (clap derive): what the user typed, before validation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::dataset::DataSource;
use crate::imaging::Smoothing;
use crate::infer::{CudnnOptions, CudnnSearch, DeviceChoice, SegmenterOptions};
use crate::onnx::import::{LayoutChoice, OutputChoice};
use crate::video::DecoderChoice;

/// Segment video as it streams: GStreamer in and out, a U-Net run by ONNX Runtime in between.
#[derive(Debug, Parser)]
#[command(name = "segstream", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments as [`Parser::parse`] does (a usage error exits with
    /// clap's message), and notes what only the raw matches know: the order in which
    /// `camera`'s feeds were given, whatever their kind.
    pub fn parse_in_order() -> Self {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let (Command::Camera(args), Some(("camera", camera))) =
            (&mut cli.command, matches.subcommand())
        {
            let positions = |id: &str, kind: FeedKind| {
                camera
                    .indices_of(id)
                    .into_iter()
                    .flatten()
                    .map(move |index| (index, kind))
            };
            let mut feeds: Vec<(usize, FeedKind)> = positions("source", FeedKind::Uri)
                .chain(positions("source_pipeline", FeedKind::Pipeline))
                .collect();
            feeds.sort_by_key(|&(index, _)| index);
            args.feed_order = feeds.into_iter().map(|(_, kind)| kind).collect();
        }
        cli
    }
}

/// Which option gave a feed of `camera`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    /// `--source URI`.
    Uri,
    /// `--source-pipeline DESCRIPTION`.
    Pipeline,
}

/// segstream's commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum Command {
    /// Segment a video file into an overlay, a cut-out or a mask video.
    Segment(SegmentArgs),
    /// Segment a live feed (camera, RTSP, RTP/UDP, any GStreamer source) with bounded latency.
    Camera(CameraArgs),
    /// Train a U-Net on image/mask pairs and export it as ONNX.
    #[cfg(feature = "train")]
    Train(TrainArgs),
    /// Score a model's masks against a labelled dataset.
    Eval(EvalArgs),
    /// Measure decode, inference and end-to-end speed, and where the time goes.
    Bench(BenchArgs),
    /// Correct the model's most instructive frames in a local web page; saves a dataset.
    Label(LabelArgs),
    /// Show a model's card (classes, colours, normalisation, input size) and check it loads.
    Inspect(InspectArgs),
    /// Rewrite another program's ONNX segmentation model into segstream's contract.
    Import(ImportArgs),
    /// Quantize a model to int8 (QDQ), calibrated on a dataset's training images.
    Quantize(QuantizeArgs),
    /// Write a half-precision (fp16) copy of a model for GPUs; input and output stay f32.
    Fp16(Fp16Args),
    /// Write a model that averages its logits over several views of each picture (resized to
    /// each --size, and mirrored): test-time augmentation in one graph.
    Views(ViewsArgs),
    /// Write a randomly initialised U-Net as ONNX (fixtures, smoke tests, a starting point).
    #[cfg(feature = "train")]
    InitModel(InitModelArgs),
}

/// The x264 speed preset of file outputs, chosen by measurement (benches/encoders.py).
pub const FILE_PRESET: &str = "superfast";

/// x264's speed presets, fastest first.
const PRESETS: [&str; 9] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

/// Options for choosing how a model runs.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// ONNX Runtime execution provider: auto (CUDA when it loads, else CPU), cpu, or cuda (an
    /// error if unavailable).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub provider: DeviceChoice,
    /// ONNX Runtime intra-op threads (0 = half the cores: decoding, processing and encoding
    /// keep the others busy meanwhile).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// CUDA: how cuDNN picks each convolution's algorithm.
    #[arg(long, value_enum, default_value_t = CudnnSearch::Exhaustive)]
    pub cudnn_search: CudnnSearch,
    /// CUDA: limit cuDNN's workspace memory (by default its fastest algorithm gets what it asks).
    #[arg(long)]
    pub cudnn_small_workspace: bool,
    /// Run the model at this HxW instead of its card's size (models with a free input size).
    #[arg(long, value_parser = parse_size)]
    pub input_size: Option<[usize; 2]>,
}

/// The metrics endpoint of `segment`, `camera` and `bench`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Serve live figures while running: Prometheus' text format on /metrics (per source
    /// frames read, written and dropped, fps, latency, errors, reconnects; per stage latency
    /// and queue depth; inference batch sizes) and /healthz (200 while every source delivers
    /// frames, else 503). A port (on 127.0.0.1; 0: any free one, said at start), or
    /// ADDRESS:PORT to serve other machines as well (e.g. 0.0.0.0:9100).
    #[arg(long, value_name = "[ADDRESS:]PORT", value_parser = crate::telemetry::server::parse_address)]
    pub metrics: Option<std::net::SocketAddr>,
}

/// Where `segment`, `camera` and `bench` decode their input.
#[derive(Debug, Args)]
pub struct DecodingArgs {
    /// Where frames are decoded: auto (NVDEC when GStreamer's nvcodec plugin finds an NVIDIA
    /// GPU, else the CPU; said in the log), cpu, or nvdec (an error when it cannot be used).
    #[arg(long, value_enum, default_value_t = DecoderChoice::Auto)]
    pub decoder: DecoderChoice,
}

/// The model `segment`, `camera` and `bench` run, and how.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The ONNX model (default: the shipped models/people.onnx; for camera
    /// models/portrait.onnx).
    #[arg(long = "model")]
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl RuntimeArgs {
    /// The segmenter options these name.
    pub fn options(&self) -> SegmenterOptions {
        SegmenterOptions {
            device: self.provider,
            cudnn: CudnnOptions {
                search: self.cudnn_search,
                max_workspace: !self.cudnn_small_workspace,
            },
            threads: self.threads,
            input_size: self.input_size,
        }
    }
}

/// What `segment` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// The frame with each class tinted in its colour.
    Overlay,
    /// The object kept, the background transparent or replaced (`--background`).
    Cutout,
    /// The mask itself: white = object (binary models), grey level = class id (multi-class).
    Mask,
}

/// What `segment` and `camera` draw, and how.
#[derive(Debug, Args)]
pub struct DrawArgs {
    /// What to draw.
    #[arg(long, value_enum, default_value_t = ModeArg::Overlay)]
    pub mode: ModeArg,
    /// Cut-out background: transparent, #rrggbb, blur, or an image file.
    #[arg(long, default_value = "transparent")]
    pub background: String,
    /// Probability above which a pixel is the object (binary models).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Overlay colour weight, 0..1.
    #[arg(long, default_value_t = 0.5)]
    pub opacity: f32,
    /// Classes that count as foreground / are drawn (names or indices, comma-separated).
    /// Default: all for overlays, all but class 0 for cut-outs.
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Cut-out and matte edges: soft (partial alpha from the probability, refined along the
    /// frame's own edges; binary models) or hard (alpha 0 or 255 from the mask).
    #[arg(long, value_enum, default_value_t = EdgeArg::Soft)]
    pub edge: EdgeArg,
    /// Soft edges: the refinement's radius in frame pixels, the width of the transition where
    /// the frame has no edge to follow [default: one model pixel, at least 2].
    #[arg(long, value_name = "PX")]
    pub feather: Option<f32>,
    /// --mode mask: the class labels, or the object's alpha matte (0..255 coverage, partial
    /// along soft edges) for editors.
    #[arg(long, value_enum, default_value_t = MaskFormat::Labels)]
    pub mask_format: MaskFormat,
}

/// How cut-out and matte edges are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EdgeArg {
    /// Partial alpha along the edge.
    Soft,
    /// Alpha 0 or 255.
    Hard,
}

/// What `--mode mask` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MaskFormat {
    /// White = object (binary models), grey level = class id (multi-class).
    Labels,
    /// The object's alpha, 0..255.
    Alpha,
}

/// `segstream segment`.
#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// Input video (any file GStreamer can read); several are segmented together, through one
    /// model, into the folder -o names. Omit with --source-pipeline.
    #[arg(required_unless_present_any = ["source_pipeline", "inputs"])]
    pub input: Vec<PathBuf>,
    /// Output: .mp4, .mkv (H.264), .webm (VP8), .mov (keeps alpha), .y4m (raw I420 for another
    /// encoder) or a folder (PNG frames, alpha); with several inputs, the folder their outputs go to (FOLDER/<stem>.<ext>).
    #[arg(short, long, required_unless_present = "sink_pipeline")]
    pub output: Option<PathBuf>,
    /// A file listing inputs, one path per line (`#` starts a comment line).
    #[arg(long, conflicts_with_all = ["source_pipeline", "sink_pipeline"])]
    pub inputs: Option<PathBuf>,
    /// Several inputs: the output kind of each [default: mp4].
    #[arg(long, value_parser = ["mp4", "mkv", "webm", "mov", "y4m", "png"])]
    pub format: Option<String>,
    /// Several inputs: segment only the K-th of N slices of the list (K from 0), e.g. one job
    /// of a cluster array. Without it, K comes from JOB_COMPLETION_INDEX (Kubernetes Indexed
    /// Job) or SLURM_ARRAY_TASK_ID, N from --shards or SLURM_ARRAY_TASK_COUNT.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Several inputs: the number of slices, K coming from the cluster's job index.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Several inputs: skip an input whose output exists and is complete (a re-run or
    /// preempted job continues where it stopped).
    #[arg(long)]
    pub skip_done: bool,
    /// Several inputs: how many are read and written at a time.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    #[command(flatten)]
    pub draw: DrawArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Frames per inference call (default: 1 on the CPU, where larger batches are no faster
    /// and hold more memory; 8 with CUDA).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Longest a frame waits for its batch to fill, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub max_wait_ms: u64,
    /// Pre- and post-processing workers each (default: one per core; with several inputs,
    /// the cores shared between the inputs running at once).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Print per-stage statistics at the end.
    #[arg(long)]
    pub stats: bool,
    /// Write the statistics as JSON to this file.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Leave the input's audio out of the output.
    #[arg(long)]
    pub no_audio: bool,
    /// H.264 encoder speed (x264's speed-preset) for .mp4 and .mkv, at constant quality:
    /// faster presets take less CPU and make larger files.
    #[arg(long, default_value = FILE_PRESET, value_parser = PRESETS)]
    pub preset: String,
    /// Custom source (gst-launch syntax) ending in `appsink name=frames`.
    #[arg(long)]
    pub source_pipeline: Option<String>,
    /// Custom sink (gst-launch syntax) starting with `appsrc name=out`.
    #[arg(long)]
    pub sink_pipeline: Option<String>,
}

/// `segstream camera`.
#[derive(Debug, Args)]
pub struct CameraArgs {
    /// V4L2 camera [default: /dev/video0 when neither --source nor --source-pipeline is given].
    #[arg(long, conflicts_with_all = ["source", "source_pipeline"])]
    pub device: Option<PathBuf>,
    /// Camera frame size, WIDTHxHEIGHT (default: the camera's choice).
    #[arg(long, value_parser = parse_size)]
    pub resolution: Option<[usize; 2]>,
    /// Camera frame rate (default: the camera's choice).
    #[arg(long)]
    pub fps: Option<u32>,
    /// Network feed: udp://HOST:PORT or rtp://HOST:PORT (RTP/H.264), rtsp://...; repeat for
    /// several feeds, batched into one model.
    #[arg(long)]
    pub source: Vec<String>,
    /// Any GStreamer source (gst-launch syntax) ending in `appsink name=frames`; repeatable.
    #[arg(long)]
    pub source_pipeline: Vec<String>,
    /// The kinds of the feeds in the order they were given (empty: every `--source`, then
    /// every `--source-pipeline`); set by [`Cli::parse_in_order`].
    #[arg(skip)]
    pub feed_order: Vec<FeedKind>,
    /// Output: window (default), udp://HOST:PORT (RTP/H.264), /dev/videoN (v4l2loopback), or
    /// a file as for `segment` (finalised on Ctrl-C). Several sources: one -o each, in order,
    /// one with {index} in it (out-{index}.mkv), or a single output (a window when none is
    /// given) that shows them tiled in a grid.
    #[arg(short, long)]
    pub output: Vec<String>,
    /// Custom sink (gst-launch syntax) starting with `appsrc name=out`; several sources are
    /// tiled into it.
    #[arg(long, conflicts_with = "output")]
    pub sink_pipeline: Option<String>,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    #[command(flatten)]
    pub draw: DrawArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Frames per inference call: a batch closes when it holds one frame of this many sources
    /// (default: all of them) or when its oldest frame has waited --max-wait-ms.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Longest a frame waits for frames of the other sources to join its batch, in
    /// milliseconds (0: inference takes whatever is waiting as soon as it is free).
    #[arg(long, default_value_t = 10)]
    pub max_wait_ms: u64,
    /// Run the model on every Nth frame and reuse its mask for the frames in between.
    #[arg(long, default_value_t = 1)]
    pub every: u64,
    /// Temporal smoothing of the mask, 0..1: where the picture is still, p = s·previous +
    /// (1 − s)·current (0 = off).
    #[arg(long, default_value_t = 0.8)]
    pub smooth: f32,
    /// How far a model pixel's luma must move (levels of 255) for smoothing to let go of it,
    /// so the mask follows motion without a trailing ghost; 0: smooth everywhere alike.
    #[arg(long, default_value_t = Smoothing::MOTION)]
    pub smooth_motion: f32,
    /// Seconds to wait for the first frame before failing.
    #[arg(long, default_value_t = 10.0)]
    pub start_timeout: f64,
    /// Seconds to wait for a source that stopped sending, reconnecting meanwhile, before
    /// stopping.
    #[arg(long, default_value_t = 5.0)]
    pub reconnect_timeout: f64,
    /// H.264 encoder speed (x264's speed-preset) for file and RTP outputs; live outputs also
    /// use x264's zero-latency tuning.
    #[arg(long, default_value = "ultrafast", value_parser = PRESETS)]
    pub preset: String,
    /// Print per-stage statistics at the end (latency, drops and fps are always printed).
    #[arg(long)]
    pub stats: bool,
    /// Print fps, drops and latency every this many seconds while running.
    #[arg(long)]
    pub stats_interval: Option<f64>,
    /// Write the figures (with each interval's) as JSON to this file.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
}

/// `segstream eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The ONNX model.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset folder in any layout `train` reads, with an optional class mapping
    /// (`DIR:SOURCE=MODEL,...`, e.g. `camvid:Pedestrian=person`).
    #[arg(long, required_unless_present = "video")]
    pub data: Option<DataSource>,
    /// Also (or only) measure temporal stability on this clip: the share of mask pixels that
    /// flip between consecutive frames, without and with smoothing.
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Smoothing weight for --video (p = s·previous + (1 − s)·current where the picture is
    /// still; camera's default).
    #[arg(long, default_value_t = 0.8)]
    pub smooth: f32,
    /// Binary models: score the labels (hard) or the soft alpha that cut-outs draw, refined
    /// along the image's own edges, where it is at least half (soft).
    #[arg(long, value_enum, default_value_t = EdgeArg::Hard)]
    pub edge: EdgeArg,
    /// Motion scale of --video's smoothing (as `camera --smooth-motion`; 0: plain moving
    /// average).
    #[arg(long, default_value_t = Smoothing::MOTION)]
    pub smooth_motion: f32,
    /// Which images: val (the layout's validation folder, else train's grouped split), train
    /// or all.
    #[arg(long, default_value = "val", value_parser = ["val", "train", "all"])]
    pub split: String,
    /// Dataset layout: generic, carvana or camvid (default: detected).
    #[arg(long)]
    pub layout: Option<String>,
    /// Mask value excluded from the scores (default: 11 for the CamVid layout).
    #[arg(long)]
    pub ignore_index: Option<u8>,
    /// Validation share of train's split, for layouts without a validation folder.
    #[arg(long, default_value_t = 0.2)]
    pub valid_frac: f64,
    /// Grouping regex of train's split.
    #[arg(long)]
    pub group_by: Option<String>,
    /// Seed of train's split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Which fold of train's split is held out (as `train --fold`).
    #[arg(long, default_value_t = 0)]
    pub fold: usize,
    /// Score on this group only, as `train --hold-out` held it out (val: the group; train:
    /// every other image of the folder; all: both).
    #[arg(long, conflicts_with = "fold")]
    pub hold_out: Option<String>,
    /// Use at most this many images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Score at the model's input size instead of each image's original resolution.
    #[arg(long)]
    pub at_model_size: bool,
    /// Probability above which a pixel is the object (binary models).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Report folder: metrics.json, per_image.csv, worst_best.png.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The report's worst/best sheet shows each image at 100 % around where prediction and
    /// truth disagree most (the edges) instead of whole and shrunk.
    #[arg(long)]
    pub sheet_zoom: bool,
    /// Print the metrics as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `segstream bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The clip to measure on; given several times, one process serving them all is compared
    /// with one `segment` process per clip run at the same time.
    #[arg(long, required = true)]
    pub input: Vec<PathBuf>,
    /// Compare N streams of the one clip served by one process against N processes.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Batch sizes for the inference-only and end-to-end figures.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub batch: Vec<usize>,
    /// Timed repeats per figure (the median is reported, with min and max).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Pre- and post-processing workers each (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `segstream label`.
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// A video (frames sampled over its whole length) or a folder of images.
    pub input: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The dataset folder: images/ + masks/ (what `train --data` reads), test/ for frames
    /// held back, manifest.json. Earlier labels there are kept and added to.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Frames to queue, most instructive first.
    #[arg(long, default_value_t = 20)]
    pub frames: usize,
    /// Pictures scored to choose them from (default: 5 × --frames).
    #[arg(long)]
    pub candidates: Option<usize>,
    /// Port of the page on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// When the page's Finish is pressed, fine-tune the model on the dataset and evaluate it
    /// against the model on the frames held back for testing.
    #[arg(long)]
    pub train: bool,
    /// Epochs of that fine-tuning.
    #[arg(long, default_value_t = 10, requires = "train")]
    pub epochs: usize,
}

/// `segstream inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The ONNX model.
    pub model: PathBuf,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `segstream quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The f32 model to quantize (in segstream's contract).
    pub model: PathBuf,
    /// Dataset whose training images calibrate the activations' ranges (its validation images
    /// stay unseen, for `eval` before and after).
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the int8 model.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Calibration images, spread evenly over the training split.
    #[arg(long, default_value_t = 32)]
    pub images: usize,
}

/// `segstream fp16`.
#[derive(Debug, Args)]
pub struct Fp16Args {
    /// The f32 model (in segstream's contract).
    pub model: PathBuf,
    /// Where to write the fp16 model.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `segstream views`.
#[derive(Debug, Args)]
pub struct ViewsArgs {
    /// The model (in segstream's contract, with a free input size).
    pub model: PathBuf,
    /// Where to write the model with views.
    #[arg(short, long)]
    pub output: PathBuf,
    /// A view's size, HEIGHTxWIDTH (repeat or comma-separate for several).
    #[arg(long, required = true, value_delimiter = ',', value_parser = parse_size)]
    pub size: Vec<[usize; 2]>,
    /// Also each size's mirror image (left to right).
    #[arg(long)]
    pub mirror: bool,
    /// The input size in the card: what the engine resizes frames to (default: the largest
    /// view's).
    #[arg(long, value_parser = parse_size)]
    pub input_size: Option<[usize; 2]>,
}

/// `segstream import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The ONNX segmentation model to import (e.g. a TensorFlow or MediaPipe conversion).
    pub model: PathBuf,
    /// Where to write the model in segstream's contract.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Tensor layout (auto: channels-last when the input's last dimension is 3).
    #[arg(long, value_enum, default_value_t = LayoutChoice::Auto)]
    pub layout: LayoutChoice,
    /// What the model's output holds (auto: a probability when the graph ends in Sigmoid or
    /// Softmax, else logits).
    #[arg(long, value_enum, default_value_t = OutputChoice::Auto)]
    pub output_is: OutputChoice,
    /// The input the model expects: RGB in 0..1, in 0..255, or ImageNet-normalised.
    #[arg(long, default_value = "0..1", value_parser = ["0..1", "0..255", "imagenet"])]
    pub input_range: String,
    /// Mean per channel (R,G,B) of RGB in 0..1, subtracted before dividing by --std (instead
    /// of --input-range).
    #[arg(long, value_delimiter = ',', requires = "std")]
    pub mean: Vec<f32>,
    /// Standard deviation per channel (R,G,B), with --mean.
    #[arg(long, value_delimiter = ',', requires = "mean")]
    pub std: Vec<f32>,
    /// Class names, one per output channel, comma-separated (default: foreground, or class0…).
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Overlay colours, one per class, comma-separated #rrggbb (default: the palette).
    #[arg(long, value_delimiter = ',', value_parser = parse_color_arg)]
    pub colors: Vec<[u8; 3]>,
    /// Where the model comes from and its licence, recorded in the card.
    #[arg(long)]
    pub source: Option<String>,
    /// Keep the input size the model was converted at, even when only whole-frame pools fix
    /// it (by default they are made global, so the model runs and trains at other sizes).
    #[arg(long)]
    pub keep_size: bool,
}

fn parse_color_arg(text: &str) -> Result<[u8; 3], String> {
    crate::imaging::compose::parse_color(text)
        .ok_or_else(|| format!("'{text}' is not a colour written #rrggbb"))
}

/// Which U-Net `init-model` and `train` build.
#[cfg(feature = "train")]
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Architecture: `unet` (classic) or `resnet34` (ResNet34 encoder).
    #[arg(long, default_value = "unet", value_parser = ["unet", "resnet34"])]
    pub arch: String,
    /// Classic U-Net: number of poolings.
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    /// Classic U-Net: channels at full resolution.
    #[arg(long, default_value_t = 16)]
    pub base: usize,
}

#[cfg(feature = "train")]
impl NetworkArgs {
    /// The architecture these options name.
    pub fn architecture(&self) -> crate::train::model::Architecture {
        use crate::train::model::Architecture;
        match self.arch.as_str() {
            "resnet34" => Architecture::ResNet34,
            _ => Architecture::UNet {
                depth: self.depth,
                base: self.base,
            },
        }
    }
}

/// `segstream init-model`.
#[cfg(feature = "train")]
#[derive(Debug, Args)]
pub struct InitModelArgs {
    /// Output `.onnx` file.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub network: NetworkArgs,
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

/// `segstream train`.
#[cfg(feature = "train")]
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset folder: images/ + masks/, Carvana's train/ + train_masks/, or CamVid's layout.
    /// Repeat for several; each may map its classes and weigh its share of an epoch:
    /// `DIR:SOURCE=MODEL,...@WEIGHT`, e.g. `../camvid:Pedestrian=person,Bicyclist=person@0.5`
    /// (classes a mapping leaves out are background for a binary model, ignored otherwise).
    #[arg(long, required_unless_present = "resume")]
    pub data: Vec<DataSource>,
    /// Run folder for config, metrics, curves, checkpoints and model.onnx (default: runs/NAME).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (its config.json is used).
    #[arg(long, conflicts_with_all = ["data", "lr_find"])]
    pub resume: Option<PathBuf>,
    /// Dataset layout: generic, carvana or camvid (default: detected).
    #[arg(long)]
    pub layout: Option<String>,
    /// Classes: camvid, a count (1 = binary), or names (one name = binary with that object).
    /// Default: camvid for the CamVid layout, else binary.
    #[arg(long)]
    pub classes: Option<String>,
    /// Mask value excluded from loss and metrics.
    #[arg(long)]
    pub ignore_index: Option<u8>,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Training sizes, one per stage (progressive resizing): 128 or HEIGHTxWIDTH, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128", value_parser = parse_size)]
    pub size: Vec<[usize; 2]>,
    /// Epochs per stage, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10")]
    pub epochs: Vec<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Peak learning rate of the one-cycle schedule.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// AdamW weight decay (0 = Adam).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Add a soft Dice term to the cross-entropy.
    #[arg(long)]
    pub dice: bool,
    /// Online hard example mining, P[,SHARE]: the pixel loss counts only pixels whose true
    /// class gets less than probability P (the anchors use 0.7), and at least the hardest SHARE
    /// (default 1/16) of a batch's pixels.
    #[arg(long, value_delimiter = ',', num_args = 1..=2)]
    pub ohem: Vec<f32>,
    /// Class weights in the pixel loss: none, or median-frequency (SegNet's: rare classes
    /// weigh more, from the training labels).
    #[arg(long, default_value = "none", value_parser = ["none", "median-frequency"])]
    pub class_weights: String,
    /// Share of images held out for validation when the layout has no validation folder.
    #[arg(long, default_value_t = 0.2)]
    pub valid_frac: f64,
    /// Regex whose first capture group names an image's group (all of a group on one side of
    /// the split). Default for Carvana: the car id before `_NN`.
    #[arg(long)]
    pub group_by: Option<String>,
    /// Seed for weights, split, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Which share of the split is held out: fold 0 is the first `--valid-frac` of the
    /// shuffled groups, fold 1 the next, and so on, so the folds of one seed are disjoint
    /// (k-fold cross-validation: train once per fold, score each model with `eval --fold`).
    #[arg(long, default_value_t = 0)]
    pub fold: usize,
    /// Which epoch's weights are written: the best by the validation score, or the last
    /// (for cross-validation, where the held-out fold must not choose the model).
    #[arg(long, default_value = "best", value_parser = ["best", "last"])]
    pub keep: String,
    /// Validate on one group only and train on all the rest, the folder's validation folder
    /// included: a CamVid sequence (the name's prefix: 0001TP, 0006R0, 0016E5, …), a Carvana
    /// car, or a --group-by group. A sequence the model never saw a frame of tells the truth
    /// about new footage; CamVid's val/ shares its drive with train/. Beside a folder
    /// without groups (portraits), that folder keeps its own split.
    #[arg(long, conflicts_with = "fold")]
    pub hold_out: Option<String>,
    /// Which images train: train (the validation images stay out), or all (the validation
    /// images too: the final fit once a recipe was chosen on held-out data; the validation
    /// figures are then on images it trained on, so the last epoch is kept).
    #[arg(long, default_value = "train", value_parser = ["train", "all"], conflicts_with_all = ["hold_out", "fold"])]
    pub train_on: String,
    /// Data-loading threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Turn augmentation (flip, ±4° rotation, ±5% lighting, zoom, copy-paste) off.
    #[arg(long)]
    pub no_augment: bool,
    /// Zoom range MIN,MAX (e.g. 0.5,1.5): above 1 crops in, below 1 shrinks the image, so
    /// objects appear at many sizes.
    #[arg(long, value_delimiter = ',')]
    pub zoom: Vec<f32>,
    /// Copy-paste: share of training images into which objects cut from other training images
    /// are pasted (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub copy_paste: f64,
    /// Copy-paste: height of a pasted object as a share of the frame height, MIN,MAX.
    #[arg(long, value_delimiter = ',', default_values_t = [0.1, 1.0])]
    pub paste_height: Vec<f32>,
    /// Copy-paste: most donor images pasted into one image.
    #[arg(long, default_value_t = 3)]
    pub paste_max: usize,
    /// Copy-paste: classes that are objects, comma-separated (default: the object of a binary
    /// model; required for several classes).
    #[arg(long, value_delimiter = ',')]
    pub paste_classes: Vec<String>,
    /// Use at most this many training images (and a quarter as many for validation).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Resized-image cache folder (default: ~/.cache/segstream/resized).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Do not cache resized images.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
    /// ResNet34 U-Net: torchvision resnet34 weights (.pth state dict or .safetensors) for the
    /// encoder.
    #[arg(long)]
    pub encoder_weights: Option<PathBuf>,
    /// ResNet34 U-Net: train only the decoder during the first stage.
    #[arg(long)]
    pub freeze_encoder: bool,
    /// With --encoder-weights or --init-from: the pretrained encoder's or body's learning
    /// rate as a share of --lr once unfrozen (differential learning rates).
    #[arg(long, alias = "body-lr-ratio", default_value_t = 0.1)]
    pub encoder_lr_ratio: f64,
    /// Fine-tune this ONNX model (in segstream's contract: `segstream import` brings others
    /// in): its graph is trained as it is, with a new head when --classes differ from its own.
    #[arg(long, conflicts_with_all = ["arch", "encoder_weights"])]
    pub init_from: Option<PathBuf>,
    /// With --init-from: train only the head for this many epochs first (a stage of its own,
    /// at the first --size), then everything.
    #[arg(long, requires = "init_from")]
    pub freeze_body: Option<usize>,
    /// With --init-from: what replaces the body's head. head: a fresh one like it, only when
    /// the classes differ; unet: a U-Net decoder that brings the body's features back to the
    /// input's size, joined at each octave by the body's activations there (and the picture).
    #[arg(long, requires = "init_from", default_value = "head")]
    pub decoder: crate::train::pretrained::Decoder,
    /// Stop after this many epochs in total, leaving a checkpoint for --resume.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Run the learning-rate range test instead of training: plot and suggested --lr.
    #[arg(long)]
    pub lr_find: bool,
    /// After each epoch, print where a step's time went: loader wait, upload, forward, loss,
    /// backward, optimiser.
    #[arg(long)]
    pub profile: bool,
    /// Where to train: cpu, cuda (an NVIDIA GPU; the `cuda` build), vulkan (any Vulkan
    /// device, the software one included) or auto (CUDA when there is one, else the CPU).
    /// Not part of the run: --resume may continue on another device.
    #[arg(long, default_value = "auto")]
    pub device: crate::train::device::TrainDevice,
}

#[cfg(feature = "train")]
impl TrainArgs {
    /// `--ohem P[,SHARE]` checked: P in (0, 1], SHARE in [0, 1].
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the value out of range.
    pub fn ohem(&self) -> crate::Result<Option<crate::train::loss::Ohem>> {
        let Some(&below) = self.ohem.first() else {
            return Ok(None);
        };
        let min_share = self.ohem.get(1).copied().unwrap_or(1.0 / 16.0);
        let in_range = below > 0.0 && below <= 1.0 && (0.0..=1.0).contains(&min_share);
        if !in_range {
            return Err(crate::Error::Config(format!(
                "--ohem {below},{min_share}: the probability must be in (0, 1] and the share \
                 in [0, 1]"
            )));
        }
        Ok(Some(crate::train::loss::Ohem { below, min_share }))
    }
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
