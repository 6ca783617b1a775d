//! `segstream fp16 MODEL -o OUT`: a half-precision copy of a model for GPUs (half the bytes,
//! tensor-core arithmetic under CUDA), its card saying where it came from.

use prost::Message;
use serde_json::json;

use super::{contract_model, write_checked};
use crate::Error;
use crate::cli::Fp16Args;
use crate::files::refuse_overwriting;
use crate::onnx::half::to_half;
use crate::paths::shown;

pub fn run(args: &Fp16Args) -> anyhow::Result<()> {
    refuse_overwriting(&args.model, &args.output)?;
    let (mut card, model) = contract_model(&args.model)?;
    let half = to_half(&model).map_err(|e| Error::model(&args.model, e))?;
    card.training["precision"] = json!({
        "from": args.model.display().to_string(),
        "scheme": "fp16 weights and activations; f32 input and output (Cast at both ends)",
    });
    let bytes = write_checked(&args.output, half, &card)?;
    println!(
        "wrote {} ({} KB; the f32 model: {} KB)",
        shown(&args.output),
        bytes / 1024,
        model.encoded_len() / 1024
    );
    Ok(())
}
