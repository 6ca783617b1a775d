//! [`Segmenter`]: one ONNX Runtime session running a segmentation model that follows the model
//! contract (`input` N×3×H×W f32 in, `logits` N×C×H×W f32 out), with its [`ModelCard`].

use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayView4, Axis, Ix4, s};
use ort::ep;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::limits::check_input_size;
use super::model_card::ModelCard;
use super::runtime;
use crate::paths::shown;
use crate::{Error, Result};

/// Input size assumed for a model whose card and input shape both leave it open.
const FALLBACK_INPUT_SIZE: [usize; 2] = [256, 256];

/// Which execution provider the user asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when it loads, otherwise CPU (said in the log).
    #[default]
    Auto,
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// CUDA; an error when it cannot be used, never a silent CPU fallback.
    Cuda,
}

/// The execution provider a session actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// NVIDIA CUDA.
    Cuda,
}

impl Provider {
    /// Frames per inference call on a file when none is asked for: 1 on the CPU, where larger
    /// batches are no faster (batches of 4 cost the element 8 % more CPU than single frames on
    /// 2 cores) and hold more memory; 8 under CUDA.
    pub fn file_batch(self) -> usize {
        match self {
            Provider::Cpu => 1,
            Provider::Cuda => 8,
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "CPU",
            Provider::Cuda => "CUDA",
        })
    }
}

/// How cuDNN picks each convolution's algorithm under CUDA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CudnnSearch {
    /// Time every algorithm on the first run of each shape (ONNX Runtime's default).
    #[default]
    Exhaustive,
    /// cuDNN's heuristic choice, without timing.
    Heuristic,
    /// cuDNN's default algorithm.
    Default,
}

/// cuDNN settings of the CUDA provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudnnOptions {
    /// How each convolution's algorithm is chosen.
    pub search: CudnnSearch,
    /// Let cuDNN use as much workspace memory as its fastest algorithm asks for.
    pub max_workspace: bool,
}

impl Default for CudnnOptions {
    /// ONNX Runtime's defaults: exhaustive search, maximal workspace.
    fn default() -> Self {
        CudnnOptions {
            search: CudnnSearch::Exhaustive,
            max_workspace: true,
        }
    }
}

/// How to open a model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmenterOptions {
    /// Execution provider choice.
    pub device: DeviceChoice,
    /// cuDNN settings (CUDA only).
    pub cudnn: CudnnOptions,
    /// Intra-op threads for the CPU provider; 0 lets ONNX Runtime choose (one per core).
    pub threads: usize,
    /// Input size (height, width) instead of the card's, for models whose input leaves it free.
    pub input_size: Option<[usize; 2]>,
}

impl SegmenterOptions {
    /// The options for a model that runs beside decoding, pre- and post-processing and
    /// encoding, which keep the other cores busy: threads left to choose become half the
    /// cores. A second thread on one frame's layers costs more CPU than it saves time once
    /// every core has work (people.onnx on 2 cores: 5.8 ms of CPU a frame on two threads
    /// against 4.2 ms on one, for 4.0 against 4.2 ms of wall time).
    pub fn beside_video(self) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        SegmenterOptions {
            threads: match self.threads {
                0 => (cores / 2).max(1),
                chosen => chosen,
            },
            ..self
        }
    }
}

/// A loaded, checked segmentation model.
pub struct Segmenter {
    session: Session,
    card: ModelCard,
    provider: Provider,
    path: PathBuf,
    options: SegmenterOptions,
    /// The batch size the model's input fixes, if it fixes one.
    fixed_batch: Option<usize>,
}

/// What opening a loaded model again takes: another session of the same file on the same
/// provider, with the card already read and checked. ONNX Runtime's Rust API runs one call
/// at a time per session, so inference calls that run side by side need one each.
#[derive(Debug, Clone)]
pub struct Reopen {
    path: PathBuf,
    provider: Provider,
    options: SegmenterOptions,
    card: ModelCard,
    fixed_batch: Option<usize>,
}

impl Reopen {
    /// Opens the session and runs the test inference (which also warms it up).
    ///
    /// # Errors
    /// As [`Segmenter::load`].
    pub fn open(&self) -> Result<Segmenter> {
        let session = open_session(&self.path, self.provider, &self.options)?;
        self.clone().with_session(session)
    }

    /// The segmenter of this model on `session`, checked by the test inference.
    fn with_session(self, session: Session) -> Result<Segmenter> {
        let mut segmenter = Segmenter {
            session,
            card: self.card,
            provider: self.provider,
            path: self.path,
            options: self.options,
            fixed_batch: self.fixed_batch,
        };
        segmenter.test_inference()?;
        Ok(segmenter)
    }
}

impl Segmenter {
    /// Opens `path`, checks it against the model contract, reads its model card and runs one
    /// test inference at the card's input size, so that a model that loads is one that runs.
    ///
    /// # Errors
    /// [`Error::Model`] naming the file when it is missing, not ONNX, of the wrong shape, or
    /// fails the test inference;
    /// [`Error::Runtime`] when ONNX Runtime cannot be loaded or `cuda` was asked for and is
    /// unavailable.
    pub fn load(path: &Path, options: &SegmenterOptions) -> Result<Self> {
        if path.is_dir() {
            return Err(Error::model(
                path,
                "a directory, not a model file: name the .onnx file in it",
            ));
        }
        if !path.is_file() {
            return Err(Error::model(path, "file not found"));
        }
        let (session, provider) = match options.device {
            DeviceChoice::Cpu => (open_session(path, Provider::Cpu, options)?, Provider::Cpu),
            DeviceChoice::Cuda => (open_session(path, Provider::Cuda, options)?, Provider::Cuda),
            DeviceChoice::Auto => match open_session(path, Provider::Cuda, options) {
                Ok(session) => (session, Provider::Cuda),
                Err(Error::Runtime(reason)) => {
                    tracing::debug!("CUDA is not available ({reason}); using the CPU");
                    (open_session(path, Provider::Cpu, options)?, Provider::Cpu)
                }
                Err(other) => return Err(other),
            },
        };
        let (mut card, fixed_batch, size_fixed) = read_card(&session, path)?;
        if let Some(size) = options.input_size.filter(|&s| s != card.input_size) {
            if size_fixed {
                return Err(Error::model(
                    path,
                    format!(
                        "its input is fixed at {}x{}; it cannot run at {}x{}",
                        card.input_size[0], card.input_size[1], size[0], size[1]
                    ),
                ));
            }
            card.input_size = size;
        }
        check_input_size(
            fixed_batch.unwrap_or(1),
            card.input_size,
            card.num_classes(),
        )
        .map_err(|reason| Error::model(path, reason))?;
        let model = Reopen {
            path: path.to_path_buf(),
            provider,
            options: options.clone(),
            card,
            fixed_batch,
        };
        let segmenter = model.with_session(session)?;
        tracing::info!(
            model = %shown(path),
            provider = %provider,
            classes = segmenter.card.num_classes(),
            input = ?segmenter.card.input_size,
            "model loaded"
        );
        Ok(segmenter)
    }

    /// Runs one batch of zeros at the card's input size and checks the output's shape: one
    /// map per class, of a non-empty size. (It also warms the session up.)
    fn test_inference(&mut self) -> Result<()> {
        let [height, width] = self.card.input_size;
        let batch = self.fixed_batch.unwrap_or(1);
        let shape = format!("{batch}×3×{height}×{width}");
        let logits = self
            .run(Array4::zeros((batch, 3, height, width)).view())
            .map_err(|e| {
                Error::model(
                    &self.path,
                    format!("a test inference on a {shape} input failed: {e}"),
                )
            })?;
        if logits.iter().any(|v| !v.is_finite()) {
            return Err(Error::model(
                &self.path,
                format!(
                    "a test inference on a {shape} input gave values that are not numbers \
                     (NaN or infinite): its weights are broken (a diverged training run?)"
                ),
            ));
        }
        let (n, classes, h, w) = logits.dim();
        if n != batch || classes != self.card.num_classes() || h == 0 || w == 0 {
            return Err(Error::model(
                &self.path,
                format!(
                    "a {shape} input gave a {n}×{classes}×{h}×{w} output; expected \
                     {batch}×{}×H×W",
                    self.card.num_classes()
                ),
            ));
        }
        Ok(())
    }

    /// The model's card (from its metadata, or defaults).
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The execution provider this model runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// How to open another session of this model.
    pub fn reopen(&self) -> Reopen {
        Reopen {
            path: self.path.clone(),
            provider: self.provider,
            options: self.options.clone(),
            card: self.card.clone(),
            fixed_batch: self.fixed_batch,
        }
    }

    /// Runs a batch: `input` is N×3×H×W, normalised as the card says; returns N×C×H×W logits.
    /// Any N runs: for a model whose input fixes the batch size, the batch is cut into calls
    /// of that size, the last one padded with zeros.
    ///
    /// # Errors
    /// [`Error::Model`] when ONNX Runtime rejects the input or the output is not rank 4.
    pub fn run(&mut self, input: ArrayView4<'_, f32>) -> Result<Array4<f32>> {
        let Some(fixed) = self.fixed_batch.filter(|&n| n != input.dim().0) else {
            return self.run_once(input);
        };
        let mut parts = Vec::new();
        for chunk in input.axis_chunks_iter(Axis(0), fixed) {
            let frames = chunk.dim().0;
            let logits = if frames == fixed {
                self.run_once(chunk)?
            } else {
                let mut padded =
                    Array4::zeros((fixed, chunk.dim().1, chunk.dim().2, chunk.dim().3));
                padded.slice_mut(s![..frames, .., .., ..]).assign(&chunk);
                self.run_once(padded.view())?
            };
            parts.push(logits.slice_move(s![..frames, .., .., ..]));
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views)
            .map_err(|e| Error::model(&self.path, format!("joining the batch's outputs: {e}")))
    }

    /// One ONNX Runtime call on `input` as it is.
    fn run_once(&mut self, input: ArrayView4<'_, f32>) -> Result<Array4<f32>> {
        let input = input.as_standard_layout();
        let tensor = TensorRef::from_array_view(input.view()).map_err(|e| self.error(e))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(|e| Error::model(&self.path, format!("inference failed: {e}")))?;
        let logits = outputs[0]
            .try_extract_array::<f32>()
            .map_err(|e| Error::model(&self.path, format!("reading the output: {e}")))?;
        let logits = logits
            .into_dimensionality::<Ix4>()
            .map_err(|e| Error::model(&self.path, format!("output is not N×C×H×W: {e}")))?;
        Ok(logits.to_owned())
    }

    fn error(&self, e: ort::Error) -> Error {
        Error::model(&self.path, e.to_string())
    }
}

/// Builds a session on `provider`. A provider that fails to register is [`Error::Runtime`]; a
/// model ONNX Runtime cannot read is [`Error::Model`].
fn open_session(path: &Path, provider: Provider, options: &SegmenterOptions) -> Result<Session> {
    let environment = runtime::environment()?;
    let runtime_error = |e: ort::Error<_>| Error::Runtime(e.to_string());
    let mut builder = Session::builder(environment)
        .map_err(|e| Error::Runtime(e.to_string()))?
        .with_intra_threads(options.threads)
        .map_err(runtime_error)?
        // Spinning threads would take the cores that decoding and encoding need meanwhile.
        .with_intra_op_spinning(false)
        .map_err(runtime_error)?
        // A pre-planned block per input shape: no faster here, and 45 MB more at batch 4.
        .with_memory_pattern(false)
        .map_err(runtime_error)?;
    if provider == Provider::Cuda {
        builder = builder
            .with_execution_providers([cuda_provider(options.cudnn)])
            .map_err(|e| {
                Error::Runtime(format!(
                    "the CUDA execution provider cannot be used: {e} (on an NVIDIA machine, \
                     `ORT_GPU=1 scripts/setup` installs ONNX Runtime's GPU build; else use --provider cpu)"
                ))
            })?;
    }
    builder
        .commit_from_file(path)
        .map_err(|e| Error::model(path, format!("ONNX Runtime cannot open it as a model: {e}")))
}

/// The CUDA provider with `cudnn`'s settings, an error (not a CPU fallback) when it fails.
fn cuda_provider(cudnn: CudnnOptions) -> ep::ExecutionProviderDispatch {
    let search = match cudnn.search {
        CudnnSearch::Exhaustive => ep::cuda::ConvAlgorithmSearch::Exhaustive,
        CudnnSearch::Heuristic => ep::cuda::ConvAlgorithmSearch::Heuristic,
        CudnnSearch::Default => ep::cuda::ConvAlgorithmSearch::Default,
    };
    ep::CUDA::default()
        .with_conv_algorithm_search(search)
        .with_conv_max_workspace(cudnn.max_workspace)
        .build()
        .error_on_failure()
}

/// Checks the session's single input and output against the contract; reads the card and the
/// batch size the input fixes, if any.
/// The card, the batch size the input fixes (if any) and whether it fixes height and width.
fn read_card(session: &Session, path: &Path) -> Result<(ModelCard, Option<usize>, bool)> {
    let [input] = session.inputs() else {
        return Err(Error::model(
            path,
            format!("expected one input, found {}", session.inputs().len()),
        ));
    };
    let [output] = session.outputs() else {
        return Err(Error::model(
            path,
            format!("expected one output, found {}", session.outputs().len()),
        ));
    };
    let input_dims = float_tensor_dims(input.name(), input.dtype(), path)?;
    let output_dims = float_tensor_dims(output.name(), output.dtype(), path)?;
    if input_dims[1] != 3 && input_dims[1] != -1 {
        return Err(Error::model(
            path,
            format!(
                "input '{}' has {} channels, expected 3 (RGB); a channels-last (N×H×W×3) \
                 model is converted by `segstream import`",
                input.name(),
                input_dims[1]
            ),
        ));
    }
    let Ok(num_classes) = usize::try_from(output_dims[1]) else {
        return Err(Error::model(
            path,
            format!(
                "output '{}' has no fixed class dimension (shape {output_dims:?})",
                output.name()
            ),
        ));
    };
    let fixed_size = match (
        usize::try_from(input_dims[2]),
        usize::try_from(input_dims[3]),
    ) {
        (Ok(h), Ok(w)) => Some([h, w]),
        _ => None,
    };
    let input_size = fixed_size.unwrap_or(FALLBACK_INPUT_SIZE);
    let metadata = session
        .metadata()
        .map_err(|e| Error::model(path, format!("reading metadata: {e}")))?;
    let (card, missing) =
        ModelCard::from_metadata(ModelCard::with_defaults(num_classes, input_size), |key| {
            metadata.custom(key)
        })
        .map_err(|reason| Error::model(path, reason))?;
    if !missing.is_empty() {
        tracing::warn!(
            model = %shown(path),
            "no segstream metadata for {}; using defaults (ImageNet mean/std, input {}×{}); \
             a model from elsewhere is best brought in with `segstream import`",
            missing.join(", "),
            card.input_size[0],
            card.input_size[1]
        );
    }
    if card.num_classes() != num_classes {
        return Err(Error::model(
            path,
            format!(
                "metadata names {} classes but the output has {num_classes} channels",
                card.num_classes()
            ),
        ));
    }
    if [input.name(), output.name()] != ["input", "logits"] && missing.is_empty() {
        return Err(Error::model(
            path,
            format!(
                "expected input 'input' and output 'logits', found '{}' and '{}'",
                input.name(),
                output.name()
            ),
        ));
    }
    let fixed_batch = usize::try_from(input_dims[0]).ok().filter(|&n| n > 0);
    Ok((card, fixed_batch, fixed_size.is_some()))
}

/// The dimensions of a rank-4 f32 tensor (-1 where dynamic), or an error naming the tensor.
fn float_tensor_dims(name: &str, value: &ValueType, path: &Path) -> Result<[i64; 4]> {
    let (Some(shape), Some(element)) = (value.tensor_shape(), value.tensor_type()) else {
        return Err(Error::model(path, format!("'{name}' is not a tensor")));
    };
    if element != TensorElementType::Float32 {
        return Err(Error::model(
            path,
            format!("'{name}' holds {element:?}, expected f32"),
        ));
    }
    <[i64; 4]>::try_from(&shape[..]).map_err(|_| {
        Error::model(
            path,
            format!(
                "'{name}' has rank {} (shape {:?}), expected 4 (N×C×H×W)",
                shape.len(),
                &shape[..]
            ),
        )
    })
}
