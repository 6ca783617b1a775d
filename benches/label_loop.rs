//! The labelling loop, measured: does correcting the frames `segstream label` ranks first
//! teach a model more than correcting as many frames picked at random?
//!
//! The model is MediaPipe's selfie network (imported from `../shared/data/models`), which
//! misses the small people of street scenes. For N frames of CamVid's training images:
//! - ranked: `segstream label` runs on the folder, and the page's requests are made as a
//!   person would make them, each queued frame "corrected" to CamVid's own mask (Pedestrian
//!   as the person), in the order the queue offers them;
//! - random: N frames drawn with a seed, their CamVid masks written in the same layout.
//!
//! Each dataset fine-tunes the model (`train --init-from`, same settings), and `eval` scores
//! it on CamVid's validation images (pedestrian IoU, cyclists ignored), never used in either.
//!
//! `cargo bench --bench label_loop -- [--frames 10,20] [--epochs 10] [--seeds 2]`

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rand::seq::SliceRandom as _;
use rand::{SeedableRng as _, rngs::StdRng};

const SEGSTREAM: &str = env!("CARGO_BIN_EXE_segstream");
/// CamVid's Pedestrian class in its masks.
const PEDESTRIAN: u8 = 9;

fn shared(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(path)
}

fn option<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs segstream with `args`; returns stdout, failing on a non-zero exit.
fn segstream(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(SEGSTREAM)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "segstream {} failed",
        args.join(" ")
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The pedestrian mask (0/1) of CamVid training image `name`.
fn truth(name: &str) -> anyhow::Result<Vec<u8>> {
    let mask = image::open(shared("camvid/trainannot").join(name))?.to_luma8();
    Ok(mask
        .pixels()
        .map(|p| u8::from(p[0] == PEDESTRIAN))
        .collect())
}

/// Pedestrian IoU of `model` on CamVid's validation images.
fn pedestrian_iou(model: &Path) -> anyhow::Result<f64> {
    let data = format!(
        "{}:Pedestrian=person,Bicyclist=ignore",
        shared("camvid").display()
    );
    let json: serde_json::Value = serde_json::from_str(&segstream(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        &data,
        "--json",
    ])?)?;
    json["iou"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("no IoU in {json}"))
}

/// Labels the `frames` first-ranked CamVid training images through `segstream label`'s page
/// requests, each corrected to its CamVid mask; returns how many held a pedestrian.
fn label_ranked(model: &Path, dataset: &Path, frames: usize) -> anyhow::Result<usize> {
    let images = shared("camvid/train");
    let mut child = Command::new(SEGSTREAM)
        .args([
            "label",
            images.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])
        .args([
            "-o",
            dataset.to_str().unwrap(),
            "--frames",
            &frames.to_string(),
        ])
        .args(["--candidates", "1000", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let base = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("label ended early"))??;
        if let Some(url) = line.split("label at ").nth(1) {
            break url
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string();
        }
    };
    let mut queue: serde_json::Value = ureq::get(&format!("{base}/api/queue"))
        .call()?
        .body_mut()
        .read_json()?;
    let mut with_people = 0;
    while let Some(item) = queue["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["status"] == "pending"))
    {
        let name = format!("{}.png", item["name"].as_str().unwrap_or_default());
        let ids = truth(&name)?;
        with_people += usize::from(ids.contains(&1));
        let url = format!("{base}/api/items/{}/save", item["id"]);
        queue = ureq::post(&url).send(&ids[..])?.body_mut().read_json()?;
    }
    ureq::post(&format!("{base}/api/finish")).send_empty()?;
    for _ in lines.by_ref() {}
    anyhow::ensure!(child.wait()?.success(), "label failed");
    Ok(with_people)
}

/// Writes `frames` CamVid training images drawn with `seed`, with their pedestrian masks, in
/// the layout `label` writes; returns how many held a pedestrian.
fn label_random(dataset: &Path, frames: usize, seed: u64) -> anyhow::Result<usize> {
    let mut names: Vec<String> = std::fs::read_dir(shared("camvid/train"))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<anyhow::Result<_>>()?;
    names.sort();
    names.shuffle(&mut StdRng::seed_from_u64(seed));
    std::fs::create_dir_all(dataset.join("images"))?;
    std::fs::create_dir_all(dataset.join("masks"))?;
    let mut with_people = 0;
    for name in names.iter().take(frames) {
        std::fs::copy(
            shared("camvid/train").join(name),
            dataset.join("images").join(name),
        )?;
        let ids = truth(name)?;
        with_people += usize::from(ids.contains(&1));
        let (w, h) = image::image_dimensions(shared("camvid/trainannot").join(name))?;
        let mask =
            image::GrayImage::from_raw(w, h, ids.iter().map(|&v| v * 255).collect()).expect("size");
        mask.save(dataset.join("masks").join(name))?;
    }
    Ok(with_people)
}

/// Fine-tunes `model` on `dataset` into `run` with `seed` (weights of the split, shuffling,
/// augmentation); returns the seconds it took.
fn fine_tune(
    model: &Path,
    dataset: &Path,
    run: &Path,
    epochs: usize,
    seed: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    segstream(&[
        "train",
        "--data",
        dataset.to_str().unwrap(),
        "--init-from",
        model.to_str().unwrap(),
        "--classes",
        "person",
        "--size",
        "288x384",
        "--epochs",
        &epochs.to_string(),
        "--batch",
        "4",
        "--lr",
        "1e-3",
        "--encoder-lr-ratio",
        "0.5",
        "--dice",
        "--seed",
        &seed.to_string(),
        "-o",
        run.to_str().unwrap(),
    ])?;
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let frames: String = option("--frames", "10,20".to_string());
    let epochs: usize = option("--epochs", 10);
    let seeds: u64 = option("--seeds", 2);
    let work = tempfile::tempdir()?;
    let model = work.path().join("mediapipe.onnx");
    let source = shared("models/mediapipe_selfie/selfie_segmentation.onnx");
    segstream(&[
        "import",
        source.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
        "--classes",
        "person",
    ])?;
    let before = pedestrian_iou(&model)?;
    println!("MediaPipe selfie, imported: CamVid val pedestrian IoU {before:.4}");
    println!("| frames | picked | with pedestrians | IoU after | fine-tuning s |");
    println!("|---|---|---|---|---|");
    for n in frames.split(',').map(str::parse::<usize>) {
        let n = n?;
        // The ranked frames are one set, trained anew with each seed (the spread of training
        // itself); each random set is drawn and trained with its seed.
        let mut runs: Vec<(String, PathBuf, usize, u64)> = Vec::new();
        let ranked = work.path().join(format!("ranked-{n}"));
        let ranked_people = label_ranked(&model, &ranked, n)?;
        for seed in 0..seeds {
            runs.push((
                format!("ranked, seed {seed}"),
                ranked.clone(),
                ranked_people,
                seed,
            ));
            let random = work.path().join(format!("random-{n}-{seed}"));
            let people = label_random(&random, n, seed)?;
            runs.push((format!("random, seed {seed}"), random, people, seed));
        }
        for (picked, dataset, with_people, seed) in runs {
            let run = dataset.with_extension(format!("seed{seed}.run"));
            let seconds = fine_tune(&model, &dataset, &run, epochs, seed)?;
            let after = pedestrian_iou(&run.join("model.onnx"))?;
            println!("| {n} | {picked} | {with_people} | {after:.4} | {seconds:.0} |");
        }
    }
    Ok(())
}
