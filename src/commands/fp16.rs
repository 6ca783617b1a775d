//! `segstream fp16 MODEL -o OUT`: a half-precision copy of a model for GPUs (half the bytes,
//! tensor-core arithmetic under CUDA), its card saying where it came from.

use prost::Message;
use serde_json::json;

use super::{contract_model, cpu_options};
use crate::Error;
use crate::cli::Fp16Args;
use crate::infer::Segmenter;
use crate::onnx::half::to_half;
use crate::onnx::metadata_entries;
use crate::paths::shown;
use crate::paths::write_through_temp;

pub fn run(args: &Fp16Args) -> anyhow::Result<()> {
    let (mut card, model) = contract_model(&args.model)?;
    let mut half = to_half(&model).map_err(|e| Error::model(&args.model, e))?;
    card.training["precision"] = json!({
        "from": args.model.display().to_string(),
        "scheme": "fp16 weights and activations; f32 input and output (Cast at both ends)",
    });
    half.metadata_props = metadata_entries(card.to_metadata());
    let encoded = half.encode_to_vec();
    write_through_temp(&args.output, |temp| {
        std::fs::write(temp, &encoded).map_err(|e| Error::io(temp, e))?;
        Segmenter::load(temp, &cpu_options())
            .map(drop)
            .map_err(anyhow::Error::from)
    })?;
    println!(
        "wrote {} ({} KB; the f32 model: {} KB)",
        shown(&args.output),
        encoded.len() / 1024,
        model.encoded_len() / 1024
    );
    Ok(())
}
