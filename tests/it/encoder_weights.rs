//! `--encoder-weights`: a file whose tensor names follow torchvision's `resnet34` layout lands
//! in the right places of the ResNet34 U-Net's encoder.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use segstream::train::encoder_weights::load_resnet34_weights;
use segstream::train::model::{Architecture, ResNet34Encoder, SegmentationModel};

/// torchvision resnet34's state-dict names and shapes (classifier and BN counters included).
fn torchvision_resnet34() -> Vec<(String, Vec<usize>)> {
    let mut tensors = vec![("conv1.weight".to_string(), vec![64, 3, 7, 7])];
    let norm = |tensors: &mut Vec<(String, Vec<usize>)>, prefix: &str, channels: usize| {
        for part in ["weight", "bias", "running_mean", "running_var"] {
            tensors.push((format!("{prefix}.{part}"), vec![channels]));
        }
        tensors.push((format!("{prefix}.num_batches_tracked"), vec![]));
    };
    norm(&mut tensors, "bn1", 64);
    for (layer, blocks, input, output) in [
        (1, 3, 64, 64),
        (2, 4, 64, 128),
        (3, 6, 128, 256),
        (4, 3, 256, 512),
    ] {
        for block in 0..blocks {
            let p = format!("layer{layer}.{block}");
            let inner = if block == 0 { input } else { output };
            tensors.push((format!("{p}.conv1.weight"), vec![output, inner, 3, 3]));
            norm(&mut tensors, &format!("{p}.bn1"), output);
            tensors.push((format!("{p}.conv2.weight"), vec![output, output, 3, 3]));
            norm(&mut tensors, &format!("{p}.bn2"), output);
            if block == 0 && layer > 1 {
                tensors.push((
                    format!("{p}.downsample.0.weight"),
                    vec![output, input, 1, 1],
                ));
                norm(&mut tensors, &format!("{p}.downsample.1"), output);
            }
        }
    }
    tensors.push(("fc.weight".into(), vec![1000, 512]));
    tensors.push(("fc.bias".into(), vec![1000]));
    tensors
}

/// The value at position `i` of tensor number `k`: distinct per tensor.
fn value(k: usize, i: usize) -> f32 {
    k as f32 + (i % 1000) as f32 * 1e-4
}

/// Writes the tensors as safetensors, leaving out names matching `skip`.
fn write(path: &Path, skip: &str) -> HashMap<String, usize> {
    let tensors: Vec<(String, Vec<usize>)> = torchvision_resnet34()
        .into_iter()
        .filter(|(name, _)| skip.is_empty() || !name.starts_with(skip))
        .collect();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let count = shape.iter().product::<usize>().max(1);
            if name.ends_with("num_batches_tracked") {
                1i64.to_le_bytes().to_vec()
            } else {
                (0..count).flat_map(|i| value(k, i).to_le_bytes()).collect()
            }
        })
        .collect();
    let views = tensors.iter().zip(&bytes).map(|((name, shape), data)| {
        let dtype = if name.ends_with("num_batches_tracked") {
            Dtype::I64
        } else {
            Dtype::F32
        };
        (
            name.clone(),
            TensorView::new(dtype, shape.clone(), data).unwrap(),
        )
    });
    safetensors::serialize_to_file(views, None, path).unwrap();
    tensors
        .iter()
        .enumerate()
        .map(|(k, (name, _))| (name.clone(), k))
        .collect()
}

fn encoder() -> ResNet34Encoder {
    match SegmentationModel::new(&Architecture::ResNet34, 1, &Device::flex()) {
        SegmentationModel::ResNet34(unet) => unet.encoder,
        _ => unreachable!("asked for ResNet34"),
    }
}

fn first_values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().unwrap()[..3].to_vec()
}

#[test]
fn torchvision_names_land_in_the_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet34.safetensors");
    let index = write(&path, "");
    let mut encoder = encoder();
    let loaded = load_resnet34_weights(&mut encoder, &path).unwrap();
    // Everything but fc.* and the num_batches_tracked counters.
    let expected = index
        .keys()
        .filter(|n| !n.starts_with("fc.") && !n.ends_with("num_batches_tracked"))
        .count();
    assert_eq!(loaded, expected);
    let want = |name: &str| (0..3).map(|i| value(index[name], i)).collect::<Vec<f32>>();
    assert_eq!(
        first_values(encoder.stem.conv.weight.val()),
        want("conv1.weight")
    );
    assert_eq!(
        first_values(encoder.stem.norm.gamma.val()),
        want("bn1.weight")
    );
    let block = &encoder.layer2[0];
    let downsample = block.downsample.as_ref().unwrap();
    assert_eq!(
        first_values(downsample.conv.weight.val()),
        want("layer2.0.downsample.0.weight")
    );
    assert_eq!(
        first_values(downsample.norm.beta.val()),
        want("layer2.0.downsample.1.bias")
    );
    let last = &encoder.layer3[5];
    assert_eq!(
        first_values(last.conv2.norm.running_var.value()),
        want("layer3.5.bn2.running_var")
    );
    assert_eq!(
        first_values(last.conv1.conv.weight.val()),
        want("layer3.5.conv1.weight")
    );
}

#[test]
fn a_file_without_the_encoder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.safetensors");
    write(&path, "layer4");
    let error = load_resnet34_weights(&mut encoder(), &path)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("missing") && error.contains("layer4"),
        "{error}"
    );
    let other = dir.path().join("weights.bin");
    std::fs::write(&other, b"x").unwrap();
    let error = load_resnet34_weights(&mut encoder(), &other)
        .unwrap_err()
        .to_string();
    assert!(error.contains(".safetensors"), "{error}");
}
