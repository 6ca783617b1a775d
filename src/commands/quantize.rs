//! `segstream quantize MODEL --data DIR -o OUT`: static int8 quantization (QDQ) with the
//! activations' ranges measured on the dataset's training images, checked against the f32
//! model on the same images before it is kept.

use std::path::Path;
use std::time::Instant;

use ndarray::{ArrayD, Axis, Ix4};
use prost::Message;
use serde_json::json;

use super::contract_model;
use crate::cli::QuantizeArgs;
use crate::dataset::Dataset;
use crate::dataset::read::decode;
use crate::files::refuse_overwriting;
use crate::files::write_through_temp;
use crate::imaging::{Postprocessor, Preprocessor};
use crate::infer::raw::RawSession;
use crate::infer::{ModelCard, Segmenter, SegmenterOptions};
use crate::onnx::quantize::{Ranges, calibrated_tensors, quantize, with_outputs};
use crate::onnx::{OUTPUT, metadata_entries};
use crate::paths::shown;
use crate::{Error, Result};

/// How the quantized model is described in its card.
const SCHEME: &str = "int8 QDQ: weights symmetric int8 per output channel, activations uint8 \
                      per tensor from calibration min/max, Relu after a convolution folded";

pub fn run(args: &QuantizeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.images > 0, "--images must be at least 1");
    refuse_overwriting(&args.model, &args.output)?;
    let (mut card, model) = contract_model(&args.model)?;
    let original_bytes = model.encoded_len();
    let tensors = calibrated_tensors(&model).map_err(|e| Error::model(&args.model, e))?;
    let inputs = calibration_inputs(&args.data, args.images, &card)?;

    let started = Instant::now();
    let probe = with_outputs(&model, &tensors).encode_to_vec();
    let mut session = RawSession::open(&probe, &args.model)?;
    let mut ranges = Ranges::new();
    let mut reference = Vec::with_capacity(inputs.len());
    for input in &inputs {
        for (name, values) in session.run(input.view())? {
            let range = ranges
                .entry(name.clone())
                .or_insert([f32::INFINITY, f32::NEG_INFINITY]);
            for &v in &values {
                range[0] = range[0].min(v);
                range[1] = range[1].max(v);
            }
            if name == OUTPUT {
                reference.push(labels(values)?);
            }
        }
    }
    let calibrated = started.elapsed().as_secs_f64();

    let mut quantized = quantize(model, &ranges).map_err(|e| Error::model(&args.model, e))?;
    card.training["quantized"] = json!({
        "from": args.model.display().to_string(),
        "scheme": SCHEME,
        "calibration": { "data": args.data.display().to_string(), "images": inputs.len() },
    });
    quantized.model.metadata_props = metadata_entries(card.to_metadata());
    let encoded = quantized.model.encode_to_vec();
    let mut check = RawSession::open(&encoded, &args.output)?;
    let (mut agreeing, mut total) = (0usize, 0usize);
    for (input, expected) in inputs.iter().zip(&reference) {
        let (_, logits) = check.run(input.view())?.swap_remove(0);
        let got = labels(logits)?;
        agreeing += got.iter().zip(expected).filter(|(a, b)| a == b).count();
        total += got.len();
    }
    write_through_temp(&args.output, |temp| -> crate::Result<()> {
        crate::files::write_file_synced(temp, &encoded).map_err(|e| Error::io(&args.output, e))?;
        Segmenter::load(temp, &SegmenterOptions::default())?;
        Ok(())
    })?;
    println!(
        "quantized {} ops ({} int8 weight tensors, {} Relu folded) with ranges of {} tensors \
         from {} training images of {} ({calibrated:.1} s)",
        quantized.nodes,
        quantized.weights,
        quantized.folded_relus,
        tensors.len(),
        inputs.len(),
        shown(&args.data)
    );
    println!(
        "the int8 model's labels agree with the f32 model's on {:.2}% of these images' pixels \
         (at model size)",
        100.0 * agreeing as f64 / total.max(1) as f64
    );
    println!(
        "wrote {} ({} KB; the f32 model: {} KB). Score it: segstream eval --model {} --data {}",
        shown(&args.output),
        encoded.len() / 1024,
        original_bytes / 1024,
        shown(&args.output),
        shown(&args.data)
    );
    Ok(())
}

/// Up to `count` training images of the dataset at `data`, spread evenly, preprocessed as the
/// card says (one 1×3×H×W tensor each).
fn calibration_inputs(
    data: &Path,
    count: usize,
    card: &ModelCard,
) -> anyhow::Result<Vec<ArrayD<f32>>> {
    let dataset = Dataset::open(data, None)?;
    let (train, _) = dataset.train_valid(0.2, None, 0, 0)?;
    anyhow::ensure!(
        !train.is_empty(),
        Error::Dataset {
            path: data.to_path_buf(),
            reason: "no training images to calibrate with".into(),
        }
    );
    let step = (train.len() as f64 / count.min(train.len()) as f64).max(1.0);
    let mut preprocessor = Preprocessor::new(card);
    (0..count.min(train.len()))
        .map(|i| {
            let image = decode(&train[(i as f64 * step) as usize].image)?.into_rgba8();
            let (width, height) = (image.width() as usize, image.height() as usize);
            let input = preprocessor.run(image.as_raw(), width, height);
            Ok(input.insert_axis(Axis(0)).into_dyn())
        })
        .collect()
}

/// Each pixel's label at model size, as `segment` draws it (arg-max, or the 0.5 threshold).
fn labels(logits: ArrayD<f32>) -> Result<Vec<u8>> {
    let logits = logits
        .into_dimensionality::<Ix4>()
        .map_err(|e| Error::Pipeline(format!("the model's output is not N×C×H×W: {e}")))?;
    let logits = logits.index_axis(Axis(0), 0);
    let (_, height, width) = logits.dim();
    Ok(Postprocessor::new(0.5).run(logits, width, height).labels)
}
