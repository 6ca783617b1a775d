//! Training step time on synthetic data, split into forward, loss, backward and optimiser, for
//! comparison with `benches/torch_step.py` (same U-Net, batch, size and threads).
//!
//! `cargo bench --bench train_step -- [--size 128] [--batch 8] [--steps 10] [--model M.onnx
//! [--decoder unet]] [--device cpu|cuda|vulkan]` — without `--model`, the default U-Net (depth
//! 4, base 16); with it, the ONNX model as `train --init-from` trains it (one output class). Prints the mean
//! step time and the loss after the last step (the weights are drawn on the CPU with seed 0 on
//! every device, so the losses of two devices compare). On a GPU the device runs ahead of the
//! host, so only the step's total is its time (the loss is read back each step); the phases
//! are the CPU's.

use std::path::PathBuf;

use burn::optim::AdamConfig;
use burn::prelude::*;
use segstream::train::device::TrainDevice;
use segstream::train::learner::{StepTimes, train_step};
use segstream::train::loader::Batch;
use segstream::train::loss::LossKind;
use segstream::train::model::{Architecture, SegmentationModel};
use segstream::train::pretrained::{Decoder, Pretrained};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (mut size, mut batch, mut steps) = (128usize, 8usize, 10usize);
    let mut model_path = None::<PathBuf>;
    let mut on = TrainDevice::Cpu;
    let mut decoder = Decoder::Head;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size" => size = value.parse()?,
            "--batch" => batch = value.parse()?,
            "--steps" => steps = value.parse()?,
            "--model" => model_path = Some(PathBuf::from(value)),
            "--device" => on = value.parse().map_err(anyhow::Error::msg)?,
            "--decoder" => decoder = value.parse().map_err(anyhow::Error::msg)?,
            _ => anyhow::bail!("unknown option {flag}"),
        }
    }
    segstream::kernels::memory::keep_freed_memory();
    segstream::kernels::subnormals::flush_subnormals();
    let chosen = on.resolve()?;
    let (cpu, device) = (Device::flex().autodiff(), chosen.device);
    cpu.seed(0);
    let mut model = match &model_path {
        Some(path) => SegmentationModel::Graph(Pretrained::read(path, 1, 0, decoder)?.model(&cpu)?),
        None => SegmentationModel::new(&Architecture::default(), 1, &cpu),
    }
    .moved_to(&device);
    let name = model_path.map_or_else(
        || Architecture::default().to_string(),
        |p| p.display().to_string(),
    );
    let pixels = size * size;
    let batch_data = Batch {
        len: batch,
        size: [size, size],
        images: (0..batch * 3 * pixels)
            .map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0)
            .collect(),
        labels: (0..batch * pixels).map(|i| u8::from(i % 3 == 0)).collect(),
    };
    let mut optimizer = AdamConfig::new().init();
    let loss = LossKind {
        dice: false,
        ohem: None,
    };
    let (mut times, mut first_loss, mut last_loss) = (Vec::new(), f32::NAN, f32::NAN);
    for step in 0..steps + 2 {
        let t;
        (model, last_loss, t) = train_step(
            model,
            &mut optimizer,
            &batch_data,
            1e-3.into(),
            loss,
            &[],
            &device,
        );
        if step == 0 {
            first_loss = last_loss;
        }
        if step >= 2 {
            times.push(t);
        }
    }
    let total = times.iter().fold(StepTimes::default(), |a, t| a + *t);
    let step = total.total() / times.len() as f64;
    println!(
        "{name} on {}, {} threads, batch {batch} at {size}x{size}: {step:.3} s/step, \
         {:.1} images/s, loss {first_loss:.5} at the first step, {last_loss:.5} at step {}\n{}",
        chosen.name,
        std::thread::available_parallelism().map_or(1, usize::from),
        batch as f64 / step,
        steps + 2,
        total.per_step_summary(times.len()),
    );
    Ok(())
}
