//! `segstream inspect MODEL`: load a model as `segment` would and print its card.

use anyhow::Context;

use crate::cli::InspectArgs;
use crate::infer::Segmenter;
use crate::paths::shown;

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let options = args.runtime.options();
    let segmenter = Segmenter::load(&args.model, &options)?;
    let card = segmenter.card();
    println!("model:        {}", shown(&args.model));
    println!("provider:     {}", segmenter.provider());
    println!("architecture: {}", card.architecture);
    println!(
        "input size:   {}x{}",
        card.input_size[0], card.input_size[1]
    );
    println!("mean / std:   {:?} / {:?}", card.mean, card.std);
    println!(
        "checked:      a test inference at {}x{} ran",
        card.input_size[0], card.input_size[1]
    );
    for (name, [r, g, b]) in card.classes.iter().zip(&card.colors) {
        println!("class:        {name} (#{r:02x}{g:02x}{b:02x})");
    }
    let training =
        serde_json::to_string_pretty(&card.training).context("printing the training facts")?;
    println!("training:     {training}");
    Ok(())
}
