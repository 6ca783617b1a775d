//! The model contract holds: burn's forward pass and ONNX Runtime's run of the exported file give
//! the same logits (max |Δ| ≤ 1e-4), for both architectures, binary and 11 classes.

use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use segstream::infer::ModelCard;
use segstream::train::export::export_to_file;
use segstream::train::model::{Architecture, SegmentationModel};
use segstream::train::parity::{burn_forward, max_logit_difference};

use ndarray::Array4;

const TOLERANCE: f32 = 1e-4;

/// Builds a seeded model, takes two Adam steps so the batch-norm scales and shifts move away
/// from 1 and 0, then runs training-mode forward passes until the running statistics describe
/// the activations. (With the initial statistics, eval-mode activations grow layer by layer to
/// ~1e10 in ResNet34, where f32 rounding alone exceeds any absolute tolerance.)
fn perturbed_model(
    architecture: &Architecture,
    classes: usize,
    [h, w]: [usize; 2],
) -> SegmentationModel {
    let device = Device::flex().autodiff();
    device.seed(7);
    let images = || Tensor::<4>::random([2, 3, h, w], Distribution::Normal(0.5, 1.0), &device);
    let mut model = SegmentationModel::new(architecture, classes, &device);
    let mut optimizer = AdamConfig::new().init();
    for _ in 0..2 {
        let loss = model.forward(images()).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.01, model, grads);
    }
    for _ in 0..STATISTICS_PASSES {
        model.forward(images());
    }
    model
}

/// Training-mode passes to settle batch-norm running statistics (momentum 0.1: 1 − 0.9³⁰ ≈ 96%).
const STATISTICS_PASSES: usize = 30;

fn check_parity(architecture: Architecture, classes: usize) {
    let size = [64, 96];
    let model = perturbed_model(&architecture, classes, size);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    let mut card = ModelCard::with_defaults(classes, size);
    card.architecture = architecture.to_string();
    export_to_file(&model, &card, &path).unwrap();

    let input = test_input(2, size[0], size[1]);
    let difference = max_logit_difference(&model, &path, input.view()).unwrap();
    let scale = burn_forward(&model, input.view())
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()));
    println!(
        "parity {architecture}, {classes} classes: max |Δ| = {difference:.3e} (max |logit| {scale:.3})"
    );
    assert!(
        difference <= TOLERANCE,
        "max |Δ| = {difference} > {TOLERANCE}"
    );
}

#[test]
fn parity_unet_binary() {
    check_parity(Architecture::default(), 1);
}

#[test]
fn parity_unet_11_classes() {
    check_parity(Architecture::default(), 11);
}

#[test]
fn parity_resnet34_binary() {
    check_parity(Architecture::ResNet34, 1);
}

#[test]
fn parity_resnet34_11_classes() {
    check_parity(Architecture::ResNet34, 11);
}

/// A deterministic N×3×H×W input with values spread over roughly -2..2, like normalised pixels.
pub fn test_input(n: usize, h: usize, w: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, 3, h, w), |(n, c, y, x)| {
        let v = (n * 7919 + c * 104_729 + y * 1_299_709 + x * 15_485_863) % 1000;
        v as f32 / 250.0 - 2.0
    })
}
