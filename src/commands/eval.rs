//! `segstream eval`: scores, their distribution over images, and a report folder.

use std::fmt::Write as _;
use std::path::Path;

use regex::Regex;
use serde_json::{Value, json};

use crate::Error;
use crate::cli::{EdgeArg, EvalArgs};
use crate::dataset::{ClassSet, DataSource, Dataset, Layout, read_pair};
use crate::eval::{
    EvalOptions, Evaluation, Evaluator, ImageScore, distribution, temporal_stability,
};
use crate::imaging::{Edge, LabelColors, Scaler, SheetRow, Smoothing};
use crate::infer::Segmenter;
use crate::metrics::{FOUND_SHARE, MIN_PIXELS, ObjectCounts};
use crate::paths::shown;

/// Images listed as the worst (and shown as the best) in reports.
const EXTREMES: usize = 5;
/// Width of each image on the report's contact sheet.
const SHEET_WIDTH: usize = 320;

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let options = args.runtime.options();
    let mut segmenter = Segmenter::load(&args.model, &options)?;
    let mut summary = json!({ "model": args.model.display().to_string() });
    if let Some(data) = &args.data {
        summary = score_dataset(args, data, &mut segmenter)?;
    }
    if let Some(video) = &args.video {
        let smoothing = Smoothing::checked(args.smooth, args.smooth_motion)?;
        let stability = temporal_stability(&mut segmenter, video, smoothing)?;
        if !args.json {
            println!(
                "temporal stability on {} ({} frames), per frame: {:.5} of mask pixels flip, \
                 {:.5} blink (flip and come straight back); with --smooth {} --smooth-motion {}: \
                 {:.5} flip, {:.5} blink, lag {:.5} (pixels still marked that the unsmoothed \
                 mask has left)",
                shown(video),
                stability.frames,
                stability.flip_rate,
                stability.blink_rate,
                stability.smoothing,
                stability.motion,
                stability.flip_rate_smoothed,
                stability.blink_rate_smoothed,
                stability.lag_smoothed
            );
        }
        summary["temporal"] = json!(stability);
    }
    if args.json {
        println!("{summary}");
    }
    if let Some(folder) = &args.output {
        write(
            &folder.join("metrics.json"),
            &serde_json::to_string_pretty(&summary)?,
        )?;
        if !args.json {
            println!("report: {}", shown(folder));
        }
    }
    Ok(())
}

/// Scores the model on the dataset at `data`; prints the table unless `--json`, writes the
/// per-image CSV and the sheet into the report folder; returns the summary object.
fn score_dataset(
    args: &EvalArgs,
    data: &DataSource,
    segmenter: &mut Segmenter,
) -> anyhow::Result<Value> {
    let layout = args
        .layout
        .as_deref()
        .map(str::parse::<Layout>)
        .transpose()?;
    let dataset = Dataset::open(&data.path, layout)?;
    let group_by = args
        .group_by
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| Error::Config(format!("--group-by: {e}")))?;
    let (train, valid) = match &args.hold_out {
        Some(held) => dataset.hold_out(group_by.as_ref(), held)?,
        None => dataset.train_valid(args.valid_frac, group_by.as_ref(), args.seed, args.fold)?,
    };
    let mut pairs = match args.split.as_str() {
        "train" => train,
        "all" => train.into_iter().chain(valid).collect(),
        _ => valid,
    };
    if let Some(limit) = args.limit {
        pairs.truncate(limit);
    }
    if pairs.is_empty() {
        // A score of nothing would read as a perfect one.
        return Err(Error::Dataset {
            path: data.path.clone(),
            reason: format!(
                "the {} split holds no images to score (at --valid-frac {}): give --split all, \
                 a larger --valid-frac, or more images",
                args.split, args.valid_frac
            ),
        }
        .into());
    }
    let card = segmenter.card().clone();
    let classes = ClassSet {
        names: card.classes.clone(),
        colors: card.colors.clone(),
        ignore: args
            .ignore_index
            .or((dataset.layout == Layout::CamVid).then_some(11)),
        through: None,
    };
    let classes = data.reading(dataset.layout, &classes)?;
    let eval_options = EvalOptions {
        at_model_size: args.at_model_size,
        threshold: args.threshold,
        edge: match args.edge {
            EdgeArg::Soft => Edge::Soft { feather: None },
            EdgeArg::Hard => Edge::Hard,
        },
    };
    let mut evaluator = Evaluator::new(segmenter, &classes, eval_options)?;
    let evaluation = evaluator.run(&pairs)?;
    let resolution = if args.at_model_size {
        format!(
            "model input size {}x{}",
            card.input_size[0], card.input_size[1]
        )
    } else {
        "original image resolution".to_string()
    };
    let summary = summary_json(args, data, &classes, &evaluation, &resolution);
    if !args.json {
        print!("{}", table(&classes, &evaluation, &resolution));
    }
    if let Some(folder) = &args.output {
        std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
        write(
            &folder.join("per_image.csv"),
            &per_image_csv(&evaluation.images),
        )?;
        let sheet = folder.join("worst_best.png");
        worst_and_best_sheet(
            &mut evaluator,
            &classes,
            &evaluation,
            &sheet,
            args.sheet_zoom,
        )?;
    }
    Ok(summary)
}

fn summary_json(
    args: &EvalArgs,
    data: &DataSource,
    classes: &ClassSet,
    evaluation: &Evaluation,
    resolution: &str,
) -> Value {
    let scores = evaluation.total.scores(classes.names.len());
    let (mean, median, worst) = distribution(&evaluation.images, EXTREMES);
    let mut summary = json!({
        "model": args.model.display().to_string(),
        "data": data.to_string(),
        "split": args.split,
        "hold_out": args.hold_out,
        "resolution": resolution,
        "images": evaluation.images.len(),
        "pixels": evaluation.total.total(),
        "pixel_accuracy": scores.pixel_accuracy,
        "boundary_iou": evaluation.boundary.iou(),
        "images_per_s": evaluation.images_per_s(),
        "seconds": evaluation.seconds,
        "per_image": {
            "metric": if classes.is_binary() { "dice" } else { "mean_iou" },
            "mean": mean,
            "median": median,
            "worst": worst.iter().map(|i| json!({"image": i.name, "score": i.scores.headline()})).collect::<Vec<_>>(),
        },
    });
    if classes.is_binary() {
        summary["dice"] = json!(scores.dice);
        summary["iou"] = json!(scores.iou);
        summary["objects"] = json!(evaluation.objects);
    } else {
        summary["mean_iou"] = json!(scores.mean_iou);
        summary["per_class_iou"] = classes
            .names
            .iter()
            .zip(&scores.per_class_iou)
            .map(|(name, iou)| (name.clone(), json!(iou)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    summary
}

fn table(classes: &ClassSet, evaluation: &Evaluation, resolution: &str) -> String {
    let scores = evaluation.total.scores(classes.names.len());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} images, scored at the {resolution}",
        evaluation.images.len()
    );
    let _ = writeln!(out, "pixel accuracy  {:.4}", scores.pixel_accuracy);
    if let Some(boundary) = evaluation.boundary.iou() {
        let _ = writeln!(
            out,
            "boundary IoU    {boundary:.4}  (bands 2 % of the image diagonal wide)"
        );
    }
    if let (Some(dice), Some(iou)) = (scores.dice, scores.iou) {
        let _ = writeln!(out, "dice            {dice:.4}\niou             {iou:.4}");
    }
    if let Some(objects) = &evaluation.objects {
        out.push_str(&objects_lines(objects));
    }
    if let Some(miou) = scores.mean_iou {
        let _ = writeln!(out, "mean IoU        {miou:.4}");
        for (name, iou) in classes.names.iter().zip(&scores.per_class_iou) {
            let iou = iou.map_or("-".to_string(), |v| format!("{v:.4}"));
            let _ = writeln!(out, "  {name:<14}{iou}");
        }
    }
    let (mean, median, worst) = distribution(&evaluation.images, EXTREMES);
    let _ = writeln!(out, "per image: mean {mean:.4}, median {median:.4}; worst:");
    for image in worst {
        let _ = writeln!(out, "  {:<24}{:.4}", image.name, image.scores.headline());
    }
    let _ = writeln!(
        out,
        "{:.1} images/s ({:.1} s)",
        evaluation.images_per_s(),
        evaluation.seconds
    );
    out
}

/// Objects found by height and false regions, two lines.
fn objects_lines(objects: &ObjectCounts) -> String {
    let (found, total) = objects.found_of_total();
    let heights: Vec<String> = objects
        .by_height
        .iter()
        .map(|c| {
            let span = match c.max_height {
                Some(max) => format!("{}-{max}", c.min_height),
                None => format!("{}+", c.min_height),
            };
            format!("{span} px {}/{}", c.found, c.total)
        })
        .collect();
    format!(
        "objects found   {found} of {total} (at least {:.0} % of each masked; by height: {})\n\
         false regions   {} (predicted regions of {MIN_PIXELS}+ px on no object)\n",
        FOUND_SHARE * 100.0,
        heights.join(", "),
        objects.false_regions
    )
}

fn per_image_csv(images: &[ImageScore]) -> String {
    let mut csv = String::from("image,pixel_accuracy,dice,iou,mean_iou,boundary_iou\n");
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for image in images {
        let s = &image.scores;
        let _ = writeln!(
            csv,
            "{},{:.6},{},{},{},{}",
            image.name,
            s.pixel_accuracy,
            cell(s.dice),
            cell(s.iou),
            cell(s.mean_iou),
            cell(image.boundary_iou)
        );
    }
    csv
}

/// The worst and the best images: image, predicted overlay, true overlay; shrunk to the
/// sheet's width, or with `zoom` a window of that size at 100 % where they disagree most.
fn worst_and_best_sheet(
    evaluator: &mut Evaluator<'_>,
    classes: &ClassSet,
    evaluation: &Evaluation,
    path: &Path,
    zoom: bool,
) -> anyhow::Result<()> {
    let mut ranked: Vec<&ImageScore> = evaluation.images.iter().collect();
    ranked.sort_by(|a, b| a.scores.headline().total_cmp(&b.scores.headline()));
    let count = EXTREMES.min(ranked.len() / 2).max(1.min(ranked.len()));
    let chosen = ranked[..count]
        .iter()
        .chain(&ranked[ranked.len() - count..]);
    let mut scaler = Scaler::default();
    let mut rows = Vec::new();
    for image in chosen {
        let prediction = evaluator.predict(read_pair(&image.pair, classes, &mut scaler)?)?;
        let [w, h] = prediction.size;
        if zoom {
            let zoomed = prediction.zoomed([SHEET_WIDTH, SHEET_WIDTH * 3 / 4]);
            rows.push((zoomed.size, zoomed.rgb, zoomed.predicted, zoomed.truth));
            continue;
        }
        let size = [SHEET_WIDTH, (h * SHEET_WIDTH / w).max(1)];
        rows.push((
            size,
            scaler.rgb(&prediction.rgb, prediction.size, size),
            scaler.labels(&prediction.predicted, prediction.size, size),
            scaler.labels(&prediction.truth, prediction.size, size),
        ));
    }
    let rows: Vec<SheetRow<'_>> = rows
        .iter()
        .map(|(size, rgb, predicted, truth)| SheetRow {
            size: *size,
            rgb,
            predicted,
            truth,
        })
        .collect();
    LabelColors::new(&classes.colors)
        .sheet(&rows)
        .save(path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", shown(path)))
}

fn write(path: &Path, text: &str) -> crate::Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
