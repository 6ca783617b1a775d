//! The U-Net variants as burn modules.
//!
//! - [`UNet`]: the classic U-Net (Ronneberger et al.), depth and base width configurable.
//! - [`ResNetUNet`]: a U-Net whose encoder is torchvision's ResNet34 (same layer names, so
//!   ImageNet weights saved from torchvision can be loaded by name), as in the fast.ai lesson.
//!
//! Both map N×3×H×W images to N×C×H×W logits; H and W must be multiples of
//! [`SegmentationModel::size_multiple`]. Every conv followed by batch norm has no bias, so the
//! exporter can fold the norm into it.

use burn::module::{ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kernels::activation::relu;
use crate::kernels::conv::conv2d_module;
use crate::kernels::conv_transpose::conv_transpose2d_module;
use crate::kernels::norm::batch_norm;
use crate::onnx::interpret::GraphModel;

/// Which U-Net to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// Classic U-Net: `depth` poolings, `base` channels at full resolution, doubling per level.
    UNet { depth: usize, base: usize },
    /// U-Net with a torchvision-layout ResNet34 encoder.
    ResNet34,
}

impl Default for Architecture {
    /// Depth 4, base 16: small enough for real time on a CPU.
    fn default() -> Self {
        Architecture::UNet { depth: 4, base: 16 }
    }
}

impl Architecture {
    /// Input height and width must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        match *self {
            Architecture::UNet { depth, .. } => 1 << depth,
            Architecture::ResNet34 => 32,
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Architecture::UNet { depth, base } => write!(f, "unet(depth={depth},base={base})"),
            Architecture::ResNet34 => f.write_str("resnet34-unet"),
        }
    }
}

/// A segmentation network of either architecture.
#[derive(Module, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a process holds one or two models; burn's Module is not implemented for Box"
)]
pub enum SegmentationModel {
    /// The classic U-Net.
    UNet(UNet),
    /// The ResNet34-encoder U-Net.
    ResNet34(ResNetUNet),
    /// An ONNX graph read by the interpreter (`train --init-from`).
    Graph(GraphModel),
}

impl SegmentationModel {
    /// The model on `device`, with the weights it has here: burn draws a parameter's starting
    /// value when it is first used, and a model moved before that would draw it on the new
    /// device, with that device's own generator; so every parameter is drawn first, where the
    /// model was made (the CPU, seeded by the run), and then moved.
    #[must_use]
    pub fn moved_to(self, device: &Device) -> Self {
        struct DrawNow;
        impl ModuleVisitor for DrawNow {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        self.visit(&mut DrawNow);
        // `fork`, not `to_device`: each parameter becomes a leaf of the new device's graph.
        self.fork(device)
    }

    /// A randomly initialised model with `num_classes` output channels.
    pub fn new(architecture: &Architecture, num_classes: usize, device: &Device) -> Self {
        match *architecture {
            Architecture::UNet { depth, base } => {
                SegmentationModel::UNet(UNet::new(depth, base, num_classes, device))
            }
            Architecture::ResNet34 => {
                SegmentationModel::ResNet34(ResNetUNet::new(num_classes, device))
            }
        }
    }

    /// N×3×H×W images (normalised) to N×C×H×W logits.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        match self {
            SegmentationModel::UNet(model) => model.forward(images),
            SegmentationModel::ResNet34(model) => model.forward(images),
            SegmentationModel::Graph(model) => model.forward(images),
        }
    }

    /// Input height and width must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        match self {
            SegmentationModel::UNet(model) => 1 << model.down.len(),
            SegmentationModel::ResNet34(_) => 32,
            // A graph states its own sizes: the learner checks them against its input.
            SegmentationModel::Graph(_) => 1,
        }
    }
}

/// A convolution followed by batch norm (the activation is applied by the caller).
#[derive(Module, Debug)]
pub struct ConvNorm {
    /// Bias-free convolution.
    pub conv: Conv2d,
    /// Batch norm over its output.
    pub norm: BatchNorm,
}

impl ConvNorm {
    fn new(channels: [usize; 2], kernel: usize, stride: usize, device: &Device) -> Self {
        ConvNorm {
            conv: conv(channels, kernel, stride, device),
            norm: BatchNormConfig::new(channels[1]).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm(&self.norm, conv2d_module(&self.conv, x))
    }
}

/// A bias-free k×k convolution with "same" padding for odd k.
fn conv(channels: [usize; 2], kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

/// Two (3×3 conv, batch norm, ReLU) in a row: U-Net's basic block.
#[derive(Module, Debug)]
pub struct DoubleConv {
    /// First conv-norm.
    pub first: ConvNorm,
    /// Second conv-norm.
    pub second: ConvNorm,
}

impl DoubleConv {
    fn new(channels: [usize; 2], device: &Device) -> Self {
        DoubleConv {
            first: ConvNorm::new(channels, 3, 1, device),
            second: ConvNorm::new([channels[1], channels[1]], 3, 1, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.second.forward(relu(self.first.forward(x))))
    }
}

/// One decoder step: 2× up-sampling by transposed convolution, concatenation with the skip
/// connection (skip first), then a [`DoubleConv`].
#[derive(Module, Debug)]
pub struct UpStep {
    /// 2×2 stride-2 transposed convolution.
    pub up: ConvTranspose2d,
    /// Block over the concatenation.
    pub conv: DoubleConv,
}

impl UpStep {
    fn new(input: usize, skip: usize, output: usize, device: &Device) -> Self {
        UpStep {
            up: ConvTranspose2dConfig::new([input, output], [2, 2])
                .with_stride([2, 2])
                .init(device),
            conv: DoubleConv::new([output + skip, output], device),
        }
    }

    fn forward(&self, x: Tensor<4>, skip: Tensor<4>) -> Tensor<4> {
        self.conv.forward(Tensor::cat(
            vec![skip, conv_transpose2d_module(&self.up, x)],
            1,
        ))
    }
}

/// The classic U-Net.
#[derive(Module, Debug)]
pub struct UNet {
    /// Encoder blocks, full resolution first.
    pub down: Vec<DoubleConv>,
    /// 2×2 max pooling between encoder levels.
    pub pool: MaxPool2d,
    /// Block at the lowest resolution.
    pub bottom: DoubleConv,
    /// Decoder steps, lowest resolution first.
    pub up: Vec<UpStep>,
    /// 1×1 convolution to class logits.
    pub head: Conv2d,
}

impl UNet {
    fn new(depth: usize, base: usize, num_classes: usize, device: &Device) -> Self {
        let width = |level: usize| base << level;
        UNet {
            down: (0..depth)
                .map(|level| {
                    let input = if level == 0 { 3 } else { width(level - 1) };
                    DoubleConv::new([input, width(level)], device)
                })
                .collect(),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            bottom: DoubleConv::new([width(depth - 1), width(depth)], device),
            up: (0..depth)
                .rev()
                .map(|level| UpStep::new(width(level + 1), width(level), width(level), device))
                .collect(),
            head: Conv2dConfig::new([base, num_classes], [1, 1]).init(device),
        }
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = images;
        let mut skips = Vec::with_capacity(self.down.len());
        for block in &self.down {
            x = block.forward(x);
            skips.push(x.clone());
            x = self.pool.forward(x);
        }
        x = self.bottom.forward(x);
        for (step, skip) in self.up.iter().zip(skips.into_iter().rev()) {
            x = step.forward(x, skip);
        }
        conv2d_module(&self.head, x)
    }
}

/// torchvision's `BasicBlock`: two 3×3 conv-norms with a residual connection.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First conv-norm (carries the block's stride).
    pub conv1: ConvNorm,
    /// Second conv-norm.
    pub conv2: ConvNorm,
    /// 1×1 strided conv-norm on the shortcut when the shape changes (torchvision `downsample`).
    pub downsample: Option<ConvNorm>,
}

impl BasicBlock {
    fn new(channels: [usize; 2], stride: usize, device: &Device) -> Self {
        let reshapes = stride != 1 || channels[0] != channels[1];
        BasicBlock {
            conv1: ConvNorm::new(channels, 3, stride, device),
            conv2: ConvNorm::new([channels[1], channels[1]], 3, 1, device),
            downsample: reshapes.then(|| ConvNorm::new(channels, 1, stride, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(downsample) => downsample.forward(x.clone()),
            None => x.clone(),
        };
        relu(self.conv2.forward(relu(self.conv1.forward(x))) + shortcut)
    }
}

/// torchvision's ResNet34 without its classifier; returns the features at strides 2–32.
#[derive(Module, Debug)]
pub struct ResNet34Encoder {
    /// 7×7 stride-2 stem conv-norm (torchvision `conv1` + `bn1`).
    pub stem: ConvNorm,
    /// 3×3 stride-2 max pooling after the stem.
    pub pool: MaxPool2d,
    /// 3 blocks, 64 channels, stride 4.
    pub layer1: Vec<BasicBlock>,
    /// 4 blocks, 128 channels, stride 8.
    pub layer2: Vec<BasicBlock>,
    /// 6 blocks, 256 channels, stride 16.
    pub layer3: Vec<BasicBlock>,
    /// 3 blocks, 512 channels, stride 32.
    pub layer4: Vec<BasicBlock>,
}

/// Channels of the encoder features, stem first.
const RESNET34_CHANNELS: [usize; 5] = [64, 64, 128, 256, 512];

impl ResNet34Encoder {
    fn new(device: &Device) -> Self {
        let layer = |blocks: usize, channels: [usize; 2], stride: usize| -> Vec<BasicBlock> {
            (0..blocks)
                .map(|i| {
                    if i == 0 {
                        BasicBlock::new(channels, stride, device)
                    } else {
                        BasicBlock::new([channels[1], channels[1]], 1, device)
                    }
                })
                .collect()
        };
        ResNet34Encoder {
            stem: ConvNorm::new([3, 64], 7, 2, device),
            pool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: layer(3, [64, 64], 1),
            layer2: layer(4, [64, 128], 2),
            layer3: layer(6, [128, 256], 2),
            layer4: layer(3, [256, 512], 2),
        }
    }

    /// The layers after the stem, in order.
    pub fn layers(&self) -> [&Vec<BasicBlock>; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }

    /// Features at strides 2, 4, 8, 16, 32.
    fn forward(&self, images: Tensor<4>) -> Vec<Tensor<4>> {
        let stem = relu(self.stem.forward(images));
        let mut features = vec![stem.clone()];
        let mut x = self.pool.forward(stem);
        for layer in self.layers() {
            x = layer.iter().fold(x, |x, block| block.forward(x));
            features.push(x.clone());
        }
        features
    }
}

/// U-Net with a ResNet34 encoder; the last decoder step concatenates the input image, as
/// fast.ai's `DynamicUnet` does, so fine detail reaches the head.
#[derive(Module, Debug)]
pub struct ResNetUNet {
    /// The ResNet34 encoder.
    pub encoder: ResNet34Encoder,
    /// Decoder steps from stride 32 back to stride 1.
    pub up: Vec<UpStep>,
    /// 1×1 convolution to class logits.
    pub head: Conv2d,
}

impl ResNetUNet {
    fn new(num_classes: usize, device: &Device) -> Self {
        let [c1, c2, c3, c4, c5] = RESNET34_CHANNELS;
        ResNetUNet {
            encoder: ResNet34Encoder::new(device),
            up: vec![
                UpStep::new(c5, c4, c4, device),
                UpStep::new(c4, c3, c3, device),
                UpStep::new(c3, c2, c2, device),
                UpStep::new(c2, c1, c1, device),
                UpStep::new(c1, 3, 32, device),
            ],
            head: Conv2dConfig::new([32, num_classes], [1, 1]).init(device),
        }
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let mut skips = self.encoder.forward(images.clone());
        skips.insert(0, images);
        let mut x = skips.pop().expect("the encoder returns five feature maps");
        for (step, skip) in self.up.iter().zip(skips.into_iter().rev()) {
            x = step.forward(x, skip);
        }
        conv2d_module(&self.head, x)
    }
}
