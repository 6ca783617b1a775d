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

/// A binary model whose logit is `RED_GAIN · (red − 0.5)` (red in 0..1): the mask is exactly
/// "red ≥ 128". One 1×1 convolution; identity normalisation; input size `[h, w]`.
pub fn red_detector(dir: &Path, size: [usize; 2]) -> PathBuf {
    let mut graph = GraphBuilder::new();
    let window = Window {
        kernel: [1, 1],
        stride: [1, 1],
        pads: [0; 4],
    };
    let weight = Weights::new(vec![1, 3, 1, 1], vec![RED_GAIN, 0.0, 0.0]);
    let bias = Weights::new(vec![1], vec![-RED_GAIN * 0.5]);
    let logits = graph.conv(INPUT, &weight, Some(&bias), window);
    let mut card = ModelCard::with_defaults(1, size);
    card.mean = [0.0; 3];
    card.std = [1.0; 3];
    card.architecture = "red-detector".into();
    let path = dir.join("red.onnx");
    std::fs::write(&path, graph.finish(&logits, 1, None, card.to_metadata())).unwrap();
    path
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
