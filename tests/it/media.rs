//! Test media: the shared clips, decoding outputs back, and test models with known behaviour.

use std::path::{Path, PathBuf};

use prost::Message;
use segstream::infer::ModelCard;
use segstream::onnx::proto::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
    tensor_shape_proto::{Dimension, dimension::Value},
    type_proto,
};
use segstream::onnx::{GraphBuilder, INPUT, Weights, Window};
use segstream::video::{Frame, FrameSource, Pulled};

/// A clip from the shared test data (`../shared/data/videos`).
pub fn clip(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/videos")
        .join(name)
}

/// A clip Debian's `opencv-doc` ships (installed by `scripts/setup`).
pub fn opencv_clip(name: &str) -> PathBuf {
    Path::new("/usr/share/doc/opencv-doc/examples/data").join(name)
}

/// Decodes every frame of `path` with segstream's own source and hands it to `visit`.
pub fn decode(path: &Path, mut visit: impl FnMut(Frame)) {
    let mut source = FrameSource::file(path).unwrap();
    source.start().unwrap();
    loop {
        match source.pull(gstreamer::ClockTime::from_seconds(10)).unwrap() {
            Pulled::Frame(frame) => visit(*frame),
            Pulled::End => break,
            Pulled::Timeout => panic!("decoding {} stalled", path.display()),
        }
    }
}

/// Logit gain of the red detector: sharp enough that the mask is a threshold on red.
const RED_GAIN: f32 = 200.0;

/// Writes `dir/name`: one 1×1 convolution (`weight` is C×3) from RGB in 0..1 (identity
/// normalisation) to the logits of `classes`, with input size `[h, w]` in the card.
fn pointwise_model(
    dir: &Path,
    name: &str,
    classes: &[&str],
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    size: [usize; 2],
) -> PathBuf {
    let mut graph = GraphBuilder::new();
    let window = Window {
        kernel: [1, 1],
        stride: [1, 1],
        pads: [0; 4],
    };
    let weight = Weights::new(vec![classes.len(), 3, 1, 1], weight);
    let bias = bias.map(|b| Weights::new(vec![classes.len()], b));
    let logits = graph.conv(INPUT, &weight, bias.as_ref(), window);
    let mut card = ModelCard::with_defaults(classes.len(), size);
    card.classes = classes.iter().map(|c| c.to_string()).collect();
    card.mean = [0.0; 3];
    card.std = [1.0; 3];
    let path = dir.join(name);
    std::fs::write(
        &path,
        graph.finish(&logits, classes.len(), None, card.to_metadata()),
    )
    .unwrap();
    path
}

/// A binary model whose logit is `RED_GAIN · (red − 0.5)`: the mask is exactly "red ≥ 128".
pub fn red_detector(dir: &Path, size: [usize; 2]) -> PathBuf {
    pointwise_model(
        dir,
        "red.onnx",
        &["red"],
        vec![RED_GAIN, 0.0, 0.0],
        Some(vec![-RED_GAIN * 0.5]),
        size,
    )
}

/// A 3-class model whose logits are the pixel's red, green and blue (times 10): the class is
/// the dominant channel.
pub fn channel_classifier(dir: &Path, size: [usize; 2]) -> PathBuf {
    let mut identity = vec![0.0; 9];
    for c in 0..3 {
        identity[c * 4] = 10.0;
    }
    pointwise_model(
        dir,
        "channels.onnx",
        &["red", "green", "blue"],
        identity,
        None,
        size,
    )
}

/// The channel classifier's class for an RGBA pixel: the first largest of R, G, B.
pub fn dominant_channel(pixel: &[u8]) -> u8 {
    (0..3u8).fold(0, |best, c| {
        if pixel[usize::from(c)] > pixel[usize::from(best)] {
            c
        } else {
            best
        }
    })
}

/// Whether the red detector calls this RGBA pixel an object.
pub fn is_red(pixel: &[u8]) -> bool {
    // logit = 200·(r/255 − 0.5) ≥ 0
    f32::from(pixel[0]) / 255.0 >= 0.5
}

/// Reads the PNG frames a folder output holds, in order.
pub fn png_frames(dir: &Path) -> Vec<image::RgbaImage> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| image::open(p).unwrap().to_rgba8())
        .collect()
}

/// A model whose single input and output have the given shape (-1 = dynamic): `Identity`.
pub fn identity_model(dims: &[i64]) -> Vec<u8> {
    let info = |name: &str| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(if d < 0 {
                                Value::DimParam("n".into())
                            } else {
                                Value::DimValue(d)
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("identity".into()),
            node: vec![NodeProto {
                op_type: Some("Identity".into()),
                input: vec!["input".into()],
                output: vec!["logits".into()],
                ..Default::default()
            }],
            input: vec![info("input")],
            output: vec![info("logits")],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}
