//! Writing ONNX models, and rewriting foreign ones into the contract ([`import`]): the protobuf types compiled from the vendored `proto/onnx.proto`, and
//! [`GraphBuilder`], which emits one node per call so that adding an op is one small function.
//!
//! Every graph has the model contract's signature: input `input` (N×3×H×W f32) and output
//! `logits` (N×C×H×W f32), N always dynamic, H and W dynamic unless fixed by the caller.
//!
//! Uses `infer` (the card) and `kernels` (the interpreter's CPU ops); `train` stands on it.

#[cfg(feature = "train")]
pub mod decoder;
mod graph;
pub mod half;
pub mod import;
#[cfg(feature = "train")]
pub mod interpret;
pub mod quantize;
pub mod transposes;
pub mod views;

pub use graph::{GraphBuilder, Weights, Window, ints_attribute, string_attribute};

/// Protobuf types of `onnx.proto` (package `onnx`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// ONNX IR version written (IR 8 is read by every ONNX Runtime since 1.14).
pub const IR_VERSION: i64 = 8;
/// Default-domain opset written.
pub const OPSET: i64 = 17;
/// Name of the model input.
pub const INPUT: &str = "input";
/// Name of the model output.
pub const OUTPUT: &str = "logits";
/// Prefix of the names of a decoder grafted onto a pretrained body ([`decoder`]); the
/// interpreter trains what is named so as part of the head.
pub const DECODER_PREFIX: &str = "segstream_decoder/";

/// The ONNX model in the file at `path`.
///
/// # Errors
/// [`crate::Error::Io`] when the file cannot be read, [`crate::Error::Model`] when it is not
/// an ONNX model.
pub fn read_model(path: &std::path::Path) -> crate::Result<proto::ModelProto> {
    use prost::Message as _;
    if path.is_dir() {
        return Err(crate::Error::model(
            path,
            "a directory, not a model file: name the .onnx file in it",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| crate::Error::io(path, e))?;
    proto::ModelProto::decode(bytes.as_slice())
        .map_err(|e| crate::Error::model(path, format!("not an ONNX model: {e}")))
}

/// `metadata_props` entries from key/value pairs (a model card's, say).
pub fn metadata_entries(pairs: Vec<(String, String)>) -> Vec<proto::StringStringEntryProto> {
    pairs
        .into_iter()
        .map(|(key, value)| proto::StringStringEntryProto {
            key: Some(key),
            value: Some(value),
        })
        .collect()
}

/// Ops that move values around without changing them: walked through when looking for the
/// node that really produces an output (its final activation, its head).
pub(crate) const VALUE_MOVING_OPS: [&str; 4] = ["Transpose", "Reshape", "Identity", "Squeeze"];

/// The values of an int64 tensor, from either storage (`raw_data` or `int64_data`).
pub(crate) fn int64_values(tensor: &proto::TensorProto) -> Option<Vec<i64>> {
    if tensor.data_type != Some(proto::tensor_proto::DataType::Int64 as i32) {
        return None;
    }
    match &tensor.raw_data {
        Some(raw) => Some(
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8 bytes")))
                .collect(),
        ),
        None => Some(tensor.int64_data.clone()),
    }
}

/// A model's arithmetic: "int8" (QDQ, `quantize`), "fp16" (`fp16`) or "fp32".
pub fn precision(model: &proto::ModelProto) -> &'static str {
    let quantized = model.graph.as_ref().is_some_and(|g| {
        g.node
            .iter()
            .any(|n| n.op_type.as_deref() == Some("QuantizeLinear"))
    });
    match (quantized, half::is_half(model)) {
        (true, _) => "int8",
        (false, true) => "fp16",
        (false, false) => "fp32",
    }
}
