//! Inference-only throughput: the model alone on pre-made inputs, per batch size.
//!
//! `cargo bench --bench infer -- [MODEL] [FRAMES]` (defaults: the fixture model, 221 frames —
//! the length of `solidWhiteRight.mp4`). Prints frames per second for batch 1, 2, 4 and 8.

use std::path::PathBuf;
use std::time::Instant;

use ndarray::Array4;
use segstream::infer::{DeviceChoice, Segmenter, SegmenterOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let model = args.first().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/unet-d2b8-random.onnx")
    });
    let frames: usize = args.get(1).map_or(Ok(221), |n| n.parse())?;
    let options = SegmenterOptions {
        device: DeviceChoice::Cpu,
        ..SegmenterOptions::default()
    };
    let mut segmenter = Segmenter::load(&model, &options)?;
    let [h, w] = segmenter.card().input_size;
    println!(
        "model {} ({}x{}), {frames} frames, provider {}",
        model.display(),
        h,
        w,
        segmenter.provider()
    );
    for batch in [1, 2, 4, 8] {
        let input = Array4::<f32>::from_elem((batch, 3, h, w), 0.1);
        segmenter.run(input.view())?; // warm-up
        let started = Instant::now();
        for _ in 0..frames.div_ceil(batch) {
            segmenter.run(input.view())?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let done = frames.div_ceil(batch) * batch;
        println!("batch {batch}: {:.1} frames/s", done as f64 / seconds);
    }
    Ok(())
}
