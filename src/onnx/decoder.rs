//! A U-Net decoder grafted onto a pretrained body (`train --init-from … --decoder unet`).
//!
//! The body's head (the convolution that produces its coarse output, and the resizing after
//! it) stays, fresh for the run's classes; the decoder adds detail to it, as FCN-8s adds the
//! scores of finer layers to the coarse ones. What went into the head is brought up to half the
//! input's size one octave at a time; each step joins the body's last activation at that size,
//! as the U-Net's skip connections do, so thin things the coarse features have lost come back
//! from where they are still sharp. Each step is cheap: a depthwise 3×3 convolution over the
//! joined channels and a pointwise one that narrows them, then ReLU. A learned up-sampler (a 2×2
//! transposed convolution of stride 2) writes the classes at the input's size, and they are
//! added to the head's. The up-sampler starts at zero, so a run starts from the new head alone
//! and the decoder only adds what it learns: a first version that replaced the head lost the
//! thin classes (Pole 0.17 → 0.01 IoU on a held-out CamVid sequence) while the large ones
//! gained. A step at full size, joined by the picture itself, doubled the MB3-CenterNet model's
//! inference time at 288×384 (15.5 → 33.9 ms a frame on one core), so the decoder stops at
//! half size.
//!
//! Uses [`super::interpret`] (to find each activation's size, and the head) and
//! [`GraphBuilder`]. Every node and weight it adds, and the head's weights, are named under
//! [`DECODER_PREFIX`], which the interpreter trains as part of the head.

use burn::prelude::Device;
use rand::{RngExt as _, SeedableRng, rngs::StdRng};

use super::interpret::{GraphModel, head_chain, with_new_head};
use super::proto::ModelProto;
use super::{DECODER_PREFIX, GraphBuilder, INPUT, Weights, Window};

/// Channels of the decoder at every step.
const WIDTH: usize = 32;

/// The widest a skip activation joins the decoder: wider ones are narrowed by a 1×1
/// convolution first.
const SKIP_WIDTH: usize = 16;

/// `model` with a fresh head of `classes` outputs and a U-Net decoder added to it, traced at
/// `size` (height, width: any size the body runs at), weights drawn from `seed`.
///
/// # Errors
/// When the graph has no head convolution, already has a decoder, reads its features at the
/// input's size, or has no activation at some octave between them and half the input's size.
pub fn with_unet_decoder(
    model: &ModelProto,
    classes: usize,
    seed: u64,
    [height, width_px]: [usize; 2],
) -> Result<ModelProto, String> {
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    if graph.node.iter().any(|n| {
        n.name
            .as_deref()
            .is_some_and(|n| n.starts_with(DECODER_PREFIX))
    }) {
        return Err("it has a U-Net decoder already: train it without --decoder".into());
    }
    let mut model = with_new_head(model, classes, seed)?;
    let graph = model.graph.as_ref().expect("checked above");
    let chain = head_chain(&model).expect("with_new_head found the head");
    let head = *chain.last().expect("a chain ends at the head");
    let features = graph.node[head].input[0].clone();
    let output = graph
        .output
        .first()
        .and_then(|o| o.name.clone())
        .ok_or("no output")?;

    // Every activation's shape, in the order the graph computes them.
    let traced = GraphModel::from_onnx(&model, &Device::flex())?;
    let mut shapes = vec![(INPUT.to_string(), [1, 3, height, width_px])];
    shapes.extend(traced.shapes([height, width_px]));
    let shape = |name: &str| shapes.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
    let [_, channels, feature_height, _] =
        shape(&features).ok_or_else(|| format!("the head's input '{features}' is not computed"))?;
    let stride = height / feature_height.max(1);
    if stride < 2 || !stride.is_power_of_two() || feature_height * stride != height {
        return Err(format!(
            "the head reads features at {feature_height} rows of {height}: a U-Net decoder \
             needs them at a power-of-two fraction of the input's size"
        ));
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let mut uniform = |dims: Vec<usize>, fan_in: usize| {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let values = (0..dims.iter().product::<usize>())
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        Weights::new(dims, values)
    };
    let zeros = |n: usize| Weights::new(vec![n], vec![0.0; n]);
    let one = Window {
        kernel: [1, 1],
        stride: [1, 1],
        pads: [0; 4],
    };
    let three = Window {
        pads: [1; 4],
        ..one
    };
    let mut builder = GraphBuilder::prefixed(DECODER_PREFIX);
    // A 1×1 convolution (weights out×in×1×1) with a zero bias, then ReLU.
    let pointwise = |builder: &mut GraphBuilder, x: &str, w: Weights| {
        let y = builder.conv(x, &w, Some(&zeros(w.dims[0])), one);
        builder.relu(&y)
    };

    let mut x = pointwise(
        &mut builder,
        &features,
        uniform(vec![WIDTH, channels, 1, 1], channels),
    );
    let mut level = stride;
    while level > 2 {
        level /= 2;
        let (skip, skip_channels) = skip_at(&shapes, height / level, width_px / level)
            .ok_or_else(|| format!("the body has no activation at 1/{level} of the input"))?;
        let (skip, skip_channels) = if skip_channels > SKIP_WIDTH {
            let w = uniform(vec![SKIP_WIDTH, skip_channels, 1, 1], skip_channels);
            (pointwise(&mut builder, &skip, w), SKIP_WIDTH)
        } else {
            (skip, skip_channels)
        };
        let up = builder.upsample(&x, 2);
        let joined = builder.concat(&[&up, &skip], 1);
        let both = WIDTH + skip_channels;
        let spread = builder.depthwise_conv(&joined, &uniform(vec![both, 1, 3, 3], 9), None, three);
        x = pointwise(
            &mut builder,
            &spread,
            uniform(vec![WIDTH, both, 1, 1], both),
        );
    }
    // ConvTranspose weights are in×out×kh×kw; zero: the run starts from the head alone.
    let up_sampler = Weights::new(vec![WIDTH, classes, 2, 2], vec![0.0; WIDTH * classes * 4]);
    let stride_two = Window {
        kernel: [2, 2],
        stride: [2, 2],
        pads: [0; 4],
    };
    let fine = builder.conv_transpose(&x, &up_sampler, Some(&zeros(classes)), stride_two);
    let coarse = format!("{DECODER_PREFIX}coarse");
    builder.add(&coarse, &fine);
    let (nodes, initializers) = builder.into_parts(&output);

    let graph = model.graph.as_mut().expect("checked above");
    // The head's path now ends in the sum's first term.
    graph.node[chain[0]].output = vec![coarse];
    // The head's weights train with the decoder's.
    for slot in 1..graph.node[head].input.len() {
        let name = graph.node[head].input[slot].clone();
        let renamed = format!("{DECODER_PREFIX}head/{name}");
        for tensor in graph
            .initializer
            .iter_mut()
            .filter(|t| t.name.as_ref() == Some(&name))
        {
            tensor.name = Some(renamed.clone());
        }
        graph.node[head].input[slot] = renamed;
    }
    graph.node.extend(nodes);
    graph.initializer.extend(initializers);
    Ok(model)
}

/// The activation a decoder step at `height`×`width` joins: the last one of that size the
/// graph computes before it first goes below it, and its channels.
fn skip_at(
    shapes: &[(String, [usize; 4])],
    height: usize,
    width: usize,
) -> Option<(String, usize)> {
    shapes
        .iter()
        // Pooled vectors (1×1, squeeze-and-excitation) are not a step down.
        .take_while(|(_, [_, _, h, w])| !(*h * *w > 1 && *h < height))
        .filter(|(_, [_, _, h, w])| (*h, *w) == (height, width))
        .last()
        .map(|(name, [_, c, _, _])| (name.clone(), *c))
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::onnx::OUTPUT;

    /// A body of two stride-2 convolutions, a 1×1 head and a ×4 resize: a 16×16 picture's
    /// features at 4×4, like an imported detector's.
    fn coarse_model() -> ModelProto {
        let mut builder = GraphBuilder::new();
        let window = |stride| Window {
            kernel: [3, 3],
            stride: [stride; 2],
            pads: [1; 4],
        };
        let weights = |dims: Vec<usize>| {
            let n = dims.iter().product();
            Weights::new(
                dims,
                (0..n).map(|i| ((i % 7) as f32 - 3.0) / 10.0).collect(),
            )
        };
        let x = builder.conv(INPUT, &weights(vec![24, 3, 3, 3]), None, window(2));
        let half = builder.relu(&x);
        let x = builder.conv(&half, &weights(vec![8, 24, 3, 3]), None, window(2));
        let quarter = builder.relu(&x);
        let head = Window {
            kernel: [1, 1],
            stride: [1, 1],
            pads: [0; 4],
        };
        let logits = builder.conv(&quarter, &weights(vec![5, 8, 1, 1]), None, head);
        let full = builder.upsample(&logits, 4);
        ModelProto::decode(builder.finish(&full, 5, None, vec![]).as_slice()).unwrap()
    }

    #[test]
    fn the_decoder_joins_the_half_size_activation_and_adds_to_the_head_from_zero() {
        let model = with_unet_decoder(&coarse_model(), 3, 7, [16, 16]).unwrap();
        let graph = model.graph.as_ref().unwrap();
        let ops: Vec<&str> = graph
            .node
            .iter()
            .filter_map(|n| n.op_type.as_deref())
            .collect();
        assert_eq!(
            ops,
            [
                "Conv",
                "Relu",
                "Conv",
                "Relu", // the body
                "Conv",
                "Resize",
                "Identity", // the head, fresh, and its path
                "Conv",
                "Relu", // features narrowed
                "Conv",
                "Relu", // the half-size skip narrowed (24 → 16)
                "Resize",
                "Concat",
                "Conv",
                "Conv",
                "Relu", // one step up
                "ConvTranspose",
                "Add" // the up-sampler, added to the head's output
            ]
        );
        let narrowed_skip = &graph.node[9];
        assert_eq!(
            narrowed_skip.input[0], graph.node[1].output[0],
            "joins the body's 1/2"
        );
        let concat = &graph.node[12];
        assert!(concat.input.contains(&graph.node[10].output[0]));
        let sum = graph.node.last().unwrap();
        assert_eq!(sum.output, [OUTPUT]);
        assert_eq!(sum.input[0], graph.node[6].output[0], "the head's path");
        let new: Vec<_> = graph.node[7..]
            .iter()
            .filter_map(|n| n.name.as_deref())
            .collect();
        assert!(new.iter().all(|n| n.starts_with(DECODER_PREFIX)), "{new:?}");
        assert!(
            graph.node[4].input[1].starts_with(DECODER_PREFIX),
            "the head trains with it"
        );
        // Body 2; head 1 and its scales 1; narrowing 2 + 2; scales 1; depthwise 1, pointwise 2;
        // up-sampler 2.
        assert_eq!(graph.initializer.len(), 14);

        // From zero: the model starts as the fresh head alone does, at every pixel.
        let device = Device::flex();
        let input = burn::prelude::Tensor::ones([2, 3, 16, 16], &device);
        let decoded = GraphModel::from_onnx(&model, &device).unwrap();
        let head_alone = with_new_head(&coarse_model(), 3, 7).unwrap();
        let head_alone = GraphModel::from_onnx(&head_alone, &device).unwrap();
        let (a, b) = (decoded.forward(input.clone()), head_alone.forward(input));
        assert_eq!(a.dims(), [2, 3, 16, 16]);
        assert_eq!(a.into_data(), b.into_data());
        let err = with_unet_decoder(&model, 3, 7, [16, 16]).unwrap_err();
        assert!(err.contains("has a U-Net decoder already"), "{err}");
    }
}
