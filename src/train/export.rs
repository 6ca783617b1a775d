//! ONNX export of the burn U-Nets, following the model contract: each module appends its own
//! nodes through [`ToOnnx`], mirroring its `forward`, and batch norm is folded into the
//! convolution before it.

use std::path::Path;

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;

use super::model::{BasicBlock, ConvNorm, DoubleConv, ResNetUNet, SegmentationModel, UNet, UpStep};
use crate::infer::ModelCard;
use prost::Message;

use crate::onnx::{GraphBuilder, INPUT, Weights, Window, metadata_entries};
use crate::{Error, Result};

/// Encodes `model` (in inference mode) as an ONNX file carrying `card` as its metadata.
/// Height and width stay dynamic (multiples of the model's size multiple).
///
/// # Errors
/// [`Error::Export`] when a layer uses a setting the exporter does not write (e.g. dilation).
pub fn export(model: &SegmentationModel, card: &ModelCard) -> Result<Vec<u8>> {
    if let SegmentationModel::Graph(graph) = model {
        // The graph it was read from, with the trained weights and the new card.
        let mut proto = graph.to_onnx();
        proto.metadata_props = metadata_entries(card.to_metadata());
        return Ok(proto.encode_to_vec());
    }
    let mut graph = GraphBuilder::new();
    let logits = model.to_onnx(&mut graph, INPUT)?;
    Ok(graph.finish(&logits, card.num_classes(), None, card.to_metadata()))
}

/// [`export`] to a file.
///
/// # Errors
/// As [`export`], and [`Error::Io`] when the file cannot be written (an earlier file at `path`
/// stays whole then).
pub fn export_to_file(model: &SegmentationModel, card: &ModelCard, path: &Path) -> Result<()> {
    let bytes = export(model, card)?;
    crate::files::write_synced(path, &bytes)
}

/// A module that can write itself into an ONNX graph.
trait ToOnnx {
    /// Appends the nodes computing this module's forward pass on `x`; returns the output name.
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String>;
}

impl ToOnnx for SegmentationModel {
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String> {
        match self {
            SegmentationModel::UNet(model) => model.to_onnx(graph, x),
            SegmentationModel::ResNet34(model) => model.to_onnx(graph, x),
            SegmentationModel::Graph(_) => Err(Error::Export(
                "an interpreted graph is written back by export(), not node by node".into(),
            )),
        }
    }
}

impl ToOnnx for UNet {
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String> {
        let mut x = x.to_string();
        let mut skips = Vec::new();
        for block in &self.down {
            x = block.to_onnx(graph, &x)?;
            skips.push(x.clone());
            x = self.pool.to_onnx(graph, &x)?;
        }
        x = self.bottom.to_onnx(graph, &x)?;
        for (step, skip) in self.up.iter().zip(skips.iter().rev()) {
            x = up_step(step, graph, &x, skip)?;
        }
        self.head.to_onnx(graph, &x)
    }
}

impl ToOnnx for ResNetUNet {
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String> {
        let encoder = &self.encoder;
        let stem = encoder.stem.to_onnx(graph, x)?;
        let stem = graph.relu(&stem);
        let mut skips = vec![x.to_string(), stem.clone()];
        let mut features = encoder.pool.to_onnx(graph, &stem)?;
        for layer in encoder.layers() {
            for block in layer {
                features = block.to_onnx(graph, &features)?;
            }
            skips.push(features.clone());
        }
        let mut x = skips
            .pop()
            .expect("five feature maps and the input were pushed");
        for (step, skip) in self.up.iter().zip(skips.iter().rev()) {
            x = up_step(step, graph, &x, skip)?;
        }
        self.head.to_onnx(graph, &x)
    }
}

fn up_step(step: &UpStep, graph: &mut GraphBuilder, x: &str, skip: &str) -> Result<String> {
    let up = step.up.to_onnx(graph, x)?;
    let joined = graph.concat(&[skip, &up], 1);
    step.conv.to_onnx(graph, &joined)
}

impl ToOnnx for DoubleConv {
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String> {
        let x = self.first.to_onnx(graph, x)?;
        let x = graph.relu(&x);
        let x = self.second.to_onnx(graph, &x)?;
        Ok(graph.relu(&x))
    }
}

impl ToOnnx for BasicBlock {
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String> {
        let shortcut = match &self.downsample {
            Some(downsample) => downsample.to_onnx(graph, x)?,
            None => x.to_string(),
        };
        let y = self.conv1.to_onnx(graph, x)?;
        let y = graph.relu(&y);
        let y = self.conv2.to_onnx(graph, &y)?;
        let sum = graph.add(&y, &shortcut);
        Ok(graph.relu(&sum))
    }
}

impl ToOnnx for ConvNorm {
    /// One `Conv` with the batch norm folded in: w' = w·γ/√(σ²+ε), b' = β + (b − μ)·γ/√(σ²+ε).
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String> {
        let (weight, bias) = fold_batch_norm(&self.conv, &self.norm);
        Ok(graph.conv(x, &weight, Some(&bias), conv_window(&self.conv)?))
    }
}

impl ToOnnx for Conv2d {
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String> {
        let bias = self.bias.as_ref().map(|b| weights(&b.val()));
        Ok(graph.conv(
            x,
            &weights(&self.weight.val()),
            bias.as_ref(),
            conv_window(self)?,
        ))
    }
}

impl ToOnnx for ConvTranspose2d {
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String> {
        if self.groups != 1 || self.dilation != [1, 1] || self.padding_out != [0, 0] {
            return Err(Error::Export(format!(
                "transposed convolution with groups {}, dilation {:?}, output padding {:?} is not supported",
                self.groups, self.dilation, self.padding_out
            )));
        }
        let [ph, pw] = self.padding;
        let window = Window {
            kernel: self.kernel_size,
            stride: self.stride,
            pads: [ph, pw, ph, pw],
        };
        let bias = self.bias.as_ref().map(|b| weights(&b.val()));
        Ok(graph.conv_transpose(x, &weights(&self.weight.val()), bias.as_ref(), window))
    }
}

impl ToOnnx for MaxPool2d {
    fn to_onnx(&self, graph: &mut GraphBuilder, x: &str) -> Result<String> {
        if self.dilation != [1, 1] || self.ceil_mode {
            return Err(Error::Export(
                "max pooling with dilation or ceil mode is not supported".into(),
            ));
        }
        let window = Window {
            kernel: self.kernel_size,
            stride: self.stride,
            pads: explicit_pads(&self.padding)?,
        };
        Ok(graph.max_pool(x, window))
    }
}

fn conv_window(conv: &Conv2d) -> Result<Window> {
    if conv.groups != 1 || conv.dilation != [1, 1] {
        return Err(Error::Export(format!(
            "convolution with groups {} and dilation {:?} is not supported",
            conv.groups, conv.dilation
        )));
    }
    Ok(Window {
        kernel: conv.kernel_size,
        stride: conv.stride,
        pads: explicit_pads(&conv.padding)?,
    })
}

/// burn's explicit padding (top, left, bottom, right) is already ONNX's order.
fn explicit_pads(padding: &PaddingConfig2d) -> Result<[usize; 4]> {
    match *padding {
        PaddingConfig2d::Valid => Ok([0; 4]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Ok([top, left, bottom, right]),
        PaddingConfig2d::Same => Err(Error::Export(
            "'same' padding is not supported; use explicit padding".into(),
        )),
    }
}

fn fold_batch_norm(conv: &Conv2d, norm: &BatchNorm) -> (Weights, Weights) {
    let mut weight = weights(&conv.weight.val());
    let gamma = values(&norm.gamma.val());
    let beta = values(&norm.beta.val());
    // `value_sync`: `value` may miss the last training update of the running statistics.
    let mean = values(&norm.running_mean.value_sync());
    let var = values(&norm.running_var.value_sync());
    let conv_bias = conv.bias.as_ref().map(|b| values(&b.val()));
    let per_channel = weight.values.len() / gamma.len();
    let mut bias = Vec::with_capacity(gamma.len());
    for (channel, chunk) in weight.values.chunks_mut(per_channel).enumerate() {
        let scale = gamma[channel] / (var[channel] + norm.epsilon as f32).sqrt();
        chunk.iter_mut().for_each(|w| *w *= scale);
        let b = conv_bias.as_ref().map_or(0.0, |b| b[channel]);
        bias.push(beta[channel] + (b - mean[channel]) * scale);
    }
    (weight, Weights::new(vec![gamma.len()], bias))
}

fn weights<const D: usize>(tensor: &Tensor<D>) -> Weights {
    Weights::new(tensor.dims().to_vec(), values(tensor))
}

fn values<const D: usize>(tensor: &Tensor<D>) -> Vec<f32> {
    tensor
        .to_data_as::<f32>()
        .try_to_vec()
        .expect("to_data_as::<f32> yields f32 data")
}
