//! Half-precision copies of a model for GPUs (`segstream fp16`): the weights stored as fp16
//! and the graph computing in fp16, while the model's input and output stay f32 (a Cast after
//! the input, one before the output), so the engine, the card and every caller are unchanged.

use half::f16;

use super::graph::int_attribute;
use super::proto::tensor_proto::DataType;
use super::proto::{ModelProto, NodeProto, TensorProto};
use super::{INPUT, OUTPUT};

/// Inputs that ONNX requires in f32 whatever the data's type: Resize's region and scales.
fn stays_f32(node: &NodeProto, position: usize) -> bool {
    node.op_type.as_deref() == Some("Resize") && (position == 1 || position == 2)
}

/// The fp16 copy of `model`; `Err(reason)` for a model it cannot convert.
///
/// # Errors
/// A model quantized already, or one holding f32 values in forms this does not rewrite
/// (Constant nodes, f32 Casts).
pub fn to_half(model: &ModelProto) -> Result<ModelProto, String> {
    if is_half(model) {
        return Err("it is half precision already (written by `segstream fp16`)".into());
    }
    let mut model = model.clone();
    let graph = model.graph.as_mut().ok_or("the file holds no graph")?;
    for node in &graph.node {
        match node.op_type.as_deref() {
            Some("QuantizeLinear" | "DequantizeLinear") => {
                return Err("it is quantized already; convert the f32 model".into());
            }
            Some("Constant" | "Cast") => {
                return Err(format!(
                    "its {} node '{}' is not rewritten to fp16",
                    node.op_type.as_deref().unwrap_or_default(),
                    node.name.as_deref().unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
    let keep: Vec<String> = graph
        .node
        .iter()
        .flat_map(|n| {
            n.input
                .iter()
                .enumerate()
                .filter(|&(i, _)| stays_f32(n, i))
                .map(|(_, name)| name.clone())
        })
        .collect();
    for tensor in &mut graph.initializer {
        if tensor.data_type == Some(DataType::Float as i32)
            && !keep.iter().any(|k| Some(k) == tensor.name.as_ref())
        {
            *tensor = halved(tensor);
        }
    }
    let (inside_input, inside_output) = ("segstream_input_fp16", "segstream_logits_fp16");
    for node in &mut graph.node {
        for name in &mut node.input {
            if name == INPUT {
                *name = inside_input.into();
            }
        }
        for name in &mut node.output {
            if name == OUTPUT {
                *name = inside_output.into();
            }
        }
    }
    graph
        .node
        .insert(0, cast(INPUT, inside_input, DataType::Float16));
    graph
        .node
        .push(cast(inside_output, OUTPUT, DataType::Float));
    graph.value_info.clear();
    Ok(model)
}

/// Whether `model` computes in fp16: written by [`to_half`] (a Cast to fp16 first), or holding
/// fp16 weights however it was made.
pub fn is_half(model: &ModelProto) -> bool {
    model.graph.as_ref().is_some_and(|g| {
        let casts_input = g.node.first().is_some_and(|n| {
            n.op_type.as_deref() == Some("Cast")
                && n.attribute
                    .iter()
                    .any(|a| a.i == Some(DataType::Float16 as i64))
        });
        casts_input
            || g.initializer
                .iter()
                .any(|t| t.data_type == Some(DataType::Float16 as i32))
    })
}

fn halved(tensor: &TensorProto) -> TensorProto {
    let values: Vec<f32> = match &tensor.raw_data {
        Some(raw) => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4 bytes")))
            .collect(),
        None => tensor.float_data.clone(),
    };
    TensorProto {
        name: tensor.name.clone(),
        dims: tensor.dims.clone(),
        data_type: Some(DataType::Float16 as i32),
        raw_data: Some(
            values
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        ..Default::default()
    }
}

fn cast(from: &str, to: &str, data_type: DataType) -> NodeProto {
    NodeProto {
        op_type: Some("Cast".into()),
        input: vec![from.into()],
        output: vec![to.into()],
        name: Some(format!("segstream_cast_{to}")),
        attribute: vec![int_attribute("to", data_type as i64)],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::GraphProto;

    #[test]
    fn weights_become_fp16_but_resize_scales_and_the_edges_stay_f32() {
        let weights = TensorProto {
            name: Some("w".into()),
            dims: vec![2],
            data_type: Some(DataType::Float as i32),
            float_data: vec![1.5, -0.25],
            ..Default::default()
        };
        let scales = TensorProto {
            name: Some("scales".into()),
            data_type: Some(DataType::Float as i32),
            float_data: vec![1.0, 1.0, 2.0, 2.0],
            ..Default::default()
        };
        let node = |op: &str, inputs: &[&str], output: &str| NodeProto {
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        };
        let model = ModelProto {
            graph: Some(GraphProto {
                node: vec![
                    node("Mul", &[INPUT, "w"], "a"),
                    node("Resize", &["a", "", "scales"], OUTPUT),
                ],
                initializer: vec![weights, scales],
                ..Default::default()
            }),
            ..Default::default()
        };
        let half = to_half(&model).unwrap();
        assert!(is_half(&half) && !is_half(&model));
        let graph = half.graph.unwrap();
        let types: Vec<i32> = graph
            .initializer
            .iter()
            .filter_map(|t| t.data_type)
            .collect();
        assert_eq!(types, [DataType::Float16 as i32, DataType::Float as i32]);
        let raw = graph.initializer[0].raw_data.clone().unwrap();
        assert_eq!(f16::from_le_bytes([raw[0], raw[1]]).to_f32(), 1.5);
        let first = &graph.node[0];
        assert_eq!(
            (first.input[0].as_str(), first.op_type.as_deref()),
            (INPUT, Some("Cast"))
        );
        let last = graph.node.last().unwrap();
        assert_eq!(
            (last.output[0].as_str(), last.op_type.as_deref()),
            (OUTPUT, Some("Cast"))
        );
        assert_eq!(graph.node[1].input[0], "segstream_input_fp16");
    }
}
