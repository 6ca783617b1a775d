//! `segstream import MODEL -o OUT`: another program's segmentation model rewritten into the
//! model contract, checked against the original with ONNX Runtime before it is kept.

use std::path::Path;

use anyhow::Context as _;
use ndarray::{Array4, Axis, s};
use prost::Message;
use rand::{RngExt as _, SeedableRng, rngs::StdRng};

use crate::Error;
use crate::cli::ImportArgs;
use crate::files::refuse_overwriting;
use crate::files::write_through_temp;
use crate::imaging::postprocess::probabilities;
use crate::imaging::resize::Scaler;
use crate::infer::model_card::{IMAGENET_MEAN, IMAGENET_STD};
use crate::infer::raw::run_once;
use crate::infer::{Segmenter, SegmenterOptions};
use crate::onnx::import::{ImportOptions, Imported, rewrite};
use crate::onnx::proto::ModelProto;
use crate::onnx::read_model;
use crate::paths::shown;

/// Largest difference between the original's output and the imported model's that counts as
/// the same model (f32 arithmetic in another order).
const AGREEMENT: f32 = 1e-4;

pub fn run(args: &ImportArgs) -> anyhow::Result<()> {
    refuse_overwriting(&args.model, &args.output)?;
    write_through_temp(&args.output, |temp| import_into(args, temp))
}

fn import_into(args: &ImportArgs, temp: &Path) -> anyhow::Result<()> {
    let original = read_model(&args.model)?;
    let mut options = import_options(args)?;
    let ((imported, mut segmenter), batch_note) =
        match import_checked(original.clone(), &options, temp) {
            Ok(checked) => (checked, None),
            Err(reason) => {
                // Some graphs bake the batch or the size into more than reshapes and pools;
                // they keep their own.
                options.dynamic_batch = false;
                options.any_size = false;
                let checked = import_checked(original, &options, temp)
                    .map_err(|e| Error::model(&args.model, e))?;
                (checked, Some(reason))
            }
        };
    let difference = agreement_with_original(&args.model, &mut segmenter, &imported)?;
    anyhow::ensure!(
        difference <= AGREEMENT,
        "the imported model differs from the original by {difference:.1e} (more than \
         {AGREEMENT:.0e}); nothing was written"
    );

    println!(
        "imported {} into {}",
        shown(&args.model),
        shown(&args.output)
    );
    for change in &imported.changes {
        println!("  - {change}");
    }
    if let Some(reason) = batch_note {
        println!("  - the batch and size stay fixed (segment still runs any --batch): {reason}");
    }
    let card = &imported.card;
    println!(
        "card: classes {}, input {}x{}, mean {:?}, std {:?}",
        card.classes.join(", "),
        card.input_size[0],
        card.input_size[1],
        card.mean,
        card.std
    );
    println!(
        "checked: ONNX Runtime gives the original's {} to max |Δ| = {difference:.1e}",
        if imported.was_probability {
            "probabilities"
        } else {
            "logits"
        }
    );
    Ok(())
}

/// The import options the arguments name.
fn import_options(args: &ImportArgs) -> crate::Result<ImportOptions> {
    let (mean, std) = match (args.mean.as_slice(), args.std.as_slice()) {
        ([], []) => match args.input_range.as_str() {
            "0..255" => ([0.0; 3], [1.0 / 255.0; 3]),
            "imagenet" => (IMAGENET_MEAN, IMAGENET_STD),
            _ => ([0.0; 3], [1.0; 3]),
        },
        (&[r, g, b], &[sr, sg, sb]) => ([r, g, b], [sr, sg, sb]),
        _ => {
            return Err(Error::Config(
                "--mean and --std take three values each (R,G,B)".into(),
            ));
        }
    };
    Ok(ImportOptions {
        layout: args.layout,
        output: args.output_is,
        classes: (!args.classes.is_empty()).then(|| args.classes.clone()),
        colors: (!args.colors.is_empty()).then(|| args.colors.clone()),
        mean,
        std,
        dynamic_batch: true,
        any_size: !args.keep_size,
        source: serde_json::json!({
            "file": args.model.file_name().map(|n| n.to_string_lossy().into_owned()),
            "note": args.source,
        }),
    })
}

/// Rewrites `original`, writes it to `output` and checks that it loads and, with a dynamic
/// batch, that a batch of two gives what two batches of one give; returns it with its loaded
/// segmenter. Refusals and failed checks are the reason, as text.
fn import_checked(
    original: ModelProto,
    options: &ImportOptions,
    output: &Path,
) -> Result<(Imported, Segmenter), String> {
    let imported = rewrite(original, options)?;
    crate::files::write_file_synced(output, &imported.model.encode_to_vec())
        .map_err(|e| format!("writing {}: {e}", shown(output)))?;
    let mut segmenter =
        Segmenter::load(output, &SegmenterOptions::default()).map_err(|e| e.to_string())?;
    if options.dynamic_batch {
        let pair = random_input(2, imported.card.input_size, 7);
        let together = segmenter.run(pair.view()).map_err(|e| e.to_string())?;
        for (i, one) in pair.axis_chunks_iter(Axis(0), 1).enumerate() {
            let alone = segmenter.run(one).map_err(|e| e.to_string())?;
            let gap = max_difference(&alone, &together.slice_axis(Axis(0), (i..=i).into()));
            if gap > AGREEMENT {
                return Err(format!(
                    "a batch of 2 differs from single runs by {gap:.1e}"
                ));
            }
        }
    }
    if let Some(stride) = imported.any_size {
        let [h, w] = imported.card.input_size;
        let other = [h + stride, w + 2 * stride];
        let logits = segmenter
            .run(random_input(1, other, 5).view())
            .map_err(|e| format!("at {}x{}: {e}", other[0], other[1]))?;
        if logits.shape()[2..] != other {
            return Err(format!(
                "a {}x{} input gave a {:?} output",
                other[0],
                other[1],
                &logits.shape()[2..]
            ));
        }
    }
    Ok((imported, segmenter))
}

/// Runs the original and the imported model (loaded in `segmenter`) on the same random input;
/// returns the largest difference between the original's output and the imported one's (as
/// probabilities when the original gave probabilities).
fn agreement_with_original(
    original: &Path,
    segmenter: &mut Segmenter,
    imported: &Imported,
) -> anyhow::Result<f32> {
    let input = random_input(1, imported.card.input_size, 11);
    let logits = segmenter.run(input.view())?;
    let ours = if imported.was_probability {
        probabilities(logits.index_axis(Axis(0), 0)).insert_axis(Axis(0))
    } else {
        logits
    };
    let theirs = if imported.channels_last {
        let nhwc = input.view().permuted_axes([0, 2, 3, 1]).into_dyn();
        run_once(original, nhwc)?.permuted_axes(vec![0, 3, 1, 2])
    } else {
        run_once(original, input.view().into_dyn())?
    };
    let theirs = theirs
        .into_dimensionality::<ndarray::Ix4>()
        .context("the original's output is not rank 4")?;
    let theirs = upsampled_to(theirs, [ours.dim().2, ours.dim().3]);
    anyhow::ensure!(
        theirs.dim() == ours.dim(),
        "the original's output is {:?}, the imported model's {:?}",
        theirs.dim(),
        ours.dim()
    );
    Ok(max_difference(&ours, &theirs.view()))
}

/// `logits` (N×C×h×w) resized bilinearly to `[height, width]`, as the import's appended
/// Resize does when the original's output is a fraction of the input's size.
fn upsampled_to(logits: Array4<f32>, [height, width]: [usize; 2]) -> Array4<f32> {
    let (n, c, h, w) = logits.dim();
    if [h, w] == [height, width] || h > height || w > width {
        return logits;
    }
    let mut scaler = Scaler::default();
    let mut out = Array4::zeros((n, c, height, width));
    for (i, j) in (0..n).flat_map(|i| (0..c).map(move |j| (i, j))) {
        let plane = logits.slice(s![i, j, .., ..]).to_owned();
        let mut target = out.slice_mut(s![i, j, .., ..]);
        scaler.plane(
            plane.as_slice().expect("an owned array is contiguous"),
            [w, h],
            target
                .as_slice_mut()
                .expect("a plane of a fresh array is contiguous"),
            [width, height],
        );
    }
    out
}

/// A seeded batch of `n` random RGB images in 0..1, N×3×H×W.
fn random_input(n: usize, [height, width]: [usize; 2], seed: u64) -> Array4<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array4::from_shape_simple_fn((n, 3, height, width), || rng.random::<f32>())
}

fn max_difference(a: &Array4<f32>, b: &ndarray::ArrayView4<'_, f32>) -> f32 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
