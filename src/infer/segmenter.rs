//! [`Segmenter`]: one ONNX Runtime session running a segmentation model that follows the model
//! contract (`input` N×3×H×W f32 in, `logits` N×C×H×W f32 out), with its [`ModelCard`].

use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayView4, Ix4};
use ort::ep;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::model_card::ModelCard;
use super::runtime;
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

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "CPU",
            Provider::Cuda => "CUDA",
        })
    }
}

/// How to open a model.
#[derive(Debug, Clone, Default)]
pub struct SegmenterOptions {
    /// Execution provider choice.
    pub device: DeviceChoice,
    /// Intra-op threads for the CPU provider; 0 lets ONNX Runtime choose (one per core).
    pub threads: usize,
}

/// A loaded, checked segmentation model.
pub struct Segmenter {
    session: Session,
    card: ModelCard,
    provider: Provider,
    path: PathBuf,
}

impl Segmenter {
    /// Opens `path`, checks it against the model contract and reads its model card.
    ///
    /// # Errors
    /// [`Error::Model`] naming the file when it is missing, not ONNX, or of the wrong shape;
    /// [`Error::Runtime`] when ONNX Runtime cannot be loaded or `cuda` was asked for and is
    /// unavailable.
    pub fn load(path: &Path, options: &SegmenterOptions) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::model(path, "file not found"));
        }
        let (session, provider) = match options.device {
            DeviceChoice::Cpu => (
                open_session(path, Provider::Cpu, options.threads)?,
                Provider::Cpu,
            ),
            DeviceChoice::Cuda => (
                open_session(path, Provider::Cuda, options.threads)?,
                Provider::Cuda,
            ),
            DeviceChoice::Auto => match open_session(path, Provider::Cuda, options.threads) {
                Ok(session) => (session, Provider::Cuda),
                Err(Error::Runtime(reason)) => {
                    tracing::debug!("CUDA is not available ({reason}); using the CPU");
                    (
                        open_session(path, Provider::Cpu, options.threads)?,
                        Provider::Cpu,
                    )
                }
                Err(other) => return Err(other),
            },
        };
        let card = read_card(&session, path)?;
        tracing::info!(
            model = %path.display(),
            provider = %provider,
            classes = card.num_classes(),
            input = ?card.input_size,
            "model loaded"
        );
        Ok(Segmenter {
            session,
            card,
            provider,
            path: path.to_path_buf(),
        })
    }

    /// The model's card (from its metadata, or defaults).
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The execution provider this model runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Runs a batch: `input` is N×3×H×W, normalised as the card says; returns N×C×H×W logits.
    ///
    /// # Errors
    /// [`Error::Model`] when ONNX Runtime rejects the input or the output is not rank 4.
    pub fn run(&mut self, input: ArrayView4<'_, f32>) -> Result<Array4<f32>> {
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
fn open_session(path: &Path, provider: Provider, threads: usize) -> Result<Session> {
    let environment = runtime::environment()?;
    let runtime_error = |e: ort::Error<_>| Error::Runtime(e.to_string());
    let mut builder = Session::builder(environment)
        .map_err(|e| Error::Runtime(e.to_string()))?
        .with_intra_threads(threads)
        .map_err(runtime_error)?
        // Spinning threads would take the cores that decoding and encoding need meanwhile.
        .with_intra_op_spinning(false)
        .map_err(runtime_error)?;
    if provider == Provider::Cuda {
        builder = builder
            .with_execution_providers([ep::CUDA::default().build().error_on_failure()])
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

/// Checks the session's single input and output against the contract and reads the card.
fn read_card(session: &Session, path: &Path) -> Result<ModelCard> {
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
                "input '{}' has {} channels, expected 3 (RGB)",
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
    let input_size = match (
        usize::try_from(input_dims[2]),
        usize::try_from(input_dims[3]),
    ) {
        (Ok(h), Ok(w)) => [h, w],
        _ => FALLBACK_INPUT_SIZE,
    };
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
            model = %path.display(),
            "no segstream metadata for {}; using defaults (ImageNet mean/std, input {}×{})",
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
    Ok(card)
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
