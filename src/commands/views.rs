//! `segstream views MODEL -o OUT --size HxW [--size HxW …] [--mirror]`: a model that averages
//! its logits over several views of each picture (test-time augmentation), its card saying
//! which.

use anyhow::Context as _;
use prost::Message;
use serde_json::json;

use super::{contract_model, write_checked};
use crate::Error;
use crate::cli::ViewsArgs;
use crate::files::refuse_overwriting;
use crate::infer::{check_working_memory, working_bytes_per_pixel};
use crate::onnx::views::{Views, with_views};
use crate::paths::shown;

pub fn run(args: &ViewsArgs) -> anyhow::Result<()> {
    refuse_overwriting(&args.model, &args.output)?;
    if let Some([h, w]) = args
        .size
        .iter()
        .enumerate()
        .find_map(|(i, size)| args.size[..i].contains(size).then_some(*size))
    {
        return Err(Error::Config(format!(
            "--size {h}x{w} is given twice: the same view twice only costs time; give each size \
             once"
        ))
        .into());
    }
    let (mut card, model) = contract_model(&args.model)?;
    let model_size = card.input_size;
    let views = Views {
        sizes: args.size.clone(),
        mirror: args.mirror,
    };
    // Checking the written model runs every view once: refuse views this machine cannot hold
    // before that allocates them.
    if let Some(per_pixel) =
        working_bytes_per_pixel(&model.encode_to_vec(), &args.model, model_size)
    {
        let mirrored = if views.mirror { 2 } else { 1 };
        let pixels: u64 = views
            .sizes
            .iter()
            .map(|[h, w]| (h * w * mirrored) as u64)
            .sum();
        check_working_memory(pixels, per_pixel).map_err(|reason| {
            Error::Config(format!(
                "views of {}: {reason}: give smaller --size",
                shown(&args.model)
            ))
        })?;
    }
    let wrapped =
        with_views(&model, card.num_classes(), &views).map_err(|e| Error::model(&args.model, e))?;
    let count = views.count();
    // The engine hands the model frames at the card's size: by default the largest view's, so
    // no view sees less than it could.
    card.input_size = args.input_size.unwrap_or_else(|| {
        *views
            .sizes
            .iter()
            .max_by_key(|[h, w]| h * w)
            .expect("clap requires one --size")
    });
    card.training["views"] = json!({
        "from": args.model.display().to_string(),
        "sizes": views.sizes,
        "mirror": views.mirror,
        "views": count,
        "scheme": "the mean of the logits of every view, each resized back to the input's size",
    });
    let sizes: Vec<String> = views
        .sizes
        .iter()
        .map(|[h, w]| format!("{h}x{w}"))
        .collect();
    let bytes = write_checked(&args.output, wrapped, &card).with_context(|| {
        format!(
            "nothing written: the model did not run at every view size ({}); its card's size is \
             {}x{}",
            sizes.join(", "),
            model_size[0],
            model_size[1]
        )
    })?;
    println!(
        "wrote {}: {count} views a picture ({} KB; the model: {} KB), input {}x{}",
        shown(&args.output),
        bytes / 1024,
        model.encoded_len() / 1024,
        card.input_size[0],
        card.input_size[1]
    );
    Ok(())
}
