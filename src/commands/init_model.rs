//! `segstream init-model`: a seeded, randomly initialised U-Net written through the exporter.

use burn::prelude::*;

use crate::cli::InitModelArgs;
use crate::infer::ModelCard;
use crate::paths::shown;
use crate::train::export::export_to_file;
use crate::train::model::SegmentationModel;

pub fn run(args: &InitModelArgs) -> anyhow::Result<()> {
    let architecture = args.network.architecture();
    let device = Device::flex();
    device.seed(args.seed);
    let model = SegmentationModel::new(&architecture, args.classes, &device);
    let mut card = ModelCard::with_defaults(args.classes, args.size);
    card.architecture = architecture.to_string();
    card.training = serde_json::json!({
        "trained": false,
        "how": format!("segstream init-model --arch {} --depth {} --base {} --classes {} --size {}x{} --seed {}",
            args.network.arch, args.network.depth, args.network.base, args.classes, args.size[0], args.size[1], args.seed),
    });
    export_to_file(&model, &card, &args.output)?;
    println!(
        "wrote {} ({architecture}, {} classes, untrained)",
        shown(&args.output),
        args.classes
    );
    Ok(())
}
