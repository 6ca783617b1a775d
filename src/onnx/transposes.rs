//! Removing the layout round trips converters leave in a graph: a TensorFlow Lite model run as
//! ONNX wraps its channels-last activations in pairs of Transposes (MediaPipe's selfie model
//! has 32, each a full copy of an activation, and in training a second one backwards).
//!
//! Three rewrites, repeated until none applies:
//! - a one-input element-wise op that reads a Transpose read by nothing else swaps places with
//!   it (the op does not care about the layout), moving the Transpose towards its inverse;
//! - so does a broadcasting binary op whose other operand is a Reshape of a constant shape
//!   (the squeeze-and-excitation scale, `[-1, 1, 1, C]` channels-last): the shape is permuted
//!   back to the untransposed layout (`[-1, C, 1, 1]`);
//! - a Transpose that undoes the Transpose it reads is dropped: its readers read the first
//!   one's input (a graph output becomes an Identity of it); the first one goes when nothing
//!   reads it any more.

use super::int64_values;
use super::proto::tensor_proto::DataType;
use super::proto::{GraphProto, NodeProto, TensorProto};

/// One-input ops that act on each value alone, so a Transpose commutes with them.
const ELEMENTWISE: [&str; 8] = [
    "Relu",
    "LeakyRelu",
    "HardSwish",
    "HardSigmoid",
    "Sigmoid",
    "Tanh",
    "Elu",
    "Identity",
];

/// Two-input ops that act on each pair of values alone (with broadcasting).
const BROADCASTING: [&str; 4] = ["Add", "Sub", "Mul", "Div"];

/// Removes the Transpose round trips from `graph`; returns how many Transposes went.
pub fn remove_round_trips(graph: &mut GraphProto) -> usize {
    let before = count(graph);
    while sink_one(graph) || sink_below_broadcast(graph) || cancel_one(graph) {}
    before - count(graph)
}

fn count(graph: &GraphProto) -> usize {
    graph.node.iter().filter(|n| is_transpose(n)).count()
}

fn is_transpose(node: &NodeProto) -> bool {
    node.op_type.as_deref() == Some("Transpose")
}

fn perm(node: &NodeProto) -> Option<&[i64]> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("perm"))
        .map(|a| a.ints.as_slice())
}

/// The index of the node that writes `value`.
fn producer(graph: &GraphProto, value: &str) -> Option<usize> {
    graph
        .node
        .iter()
        .position(|n| n.output.iter().any(|o| o == value))
}

/// How many node inputs read `value`, a graph output counting as one.
fn readers(graph: &GraphProto, value: &str) -> usize {
    let by_nodes = graph
        .node
        .iter()
        .flat_map(|n| &n.input)
        .filter(|i| *i == value)
        .count();
    by_nodes + usize::from(is_graph_output(graph, value))
}

fn is_graph_output(graph: &GraphProto, value: &str) -> bool {
    graph
        .output
        .iter()
        .any(|o| o.name.as_deref() == Some(value))
}

/// Moves one Transpose below the element-wise op that alone reads it.
fn sink_one(graph: &mut GraphProto) -> bool {
    let found = graph.node.iter().enumerate().find_map(|(op_index, op)| {
        let kind = op.op_type.as_deref()?;
        if !ELEMENTWISE.contains(&kind) || op.input.len() != 1 || op.output.len() != 1 {
            return None;
        }
        let transpose = producer(graph, &op.input[0])?;
        (is_transpose(&graph.node[transpose]) && readers(graph, &op.input[0]) == 1)
            .then_some((transpose, op_index))
    });
    let Some((transpose_index, op_index)) = found else {
        return false;
    };
    swap(graph, transpose_index, op_index, 0);
    true
}

/// Moves one Transpose below the broadcasting op that alone reads it, when the op's other
/// operand is a Reshape (read by nothing else) to a constant shape that can be permuted back.
fn sink_below_broadcast(graph: &mut GraphProto) -> bool {
    let found = graph.node.iter().enumerate().find_map(|(op_index, op)| {
        let kind = op.op_type.as_deref()?;
        if !BROADCASTING.contains(&kind) || op.input.len() != 2 || op.output.len() != 1 {
            return None;
        }
        (0..2).find_map(|slot| {
            let transpose = producer(graph, &op.input[slot])?;
            let reshape = producer(graph, &op.input[1 - slot])?;
            let usable = is_transpose(&graph.node[transpose])
                && readers(graph, &op.input[slot]) == 1
                && graph.node[reshape].op_type.as_deref() == Some("Reshape")
                && readers(graph, &op.input[1 - slot]) == 1;
            if !usable {
                return None;
            }
            let shape = shape_constant(graph, &graph.node[reshape])?;
            let untransposed = untranspose(&shape, perm(&graph.node[transpose])?)?;
            Some((transpose, op_index, slot, reshape, untransposed))
        })
    });
    let Some((transpose, op_index, slot, reshape, shape)) = found else {
        return false;
    };
    let name = format!("{}_untransposed", graph.node[reshape].output[0]);
    graph.initializer.push(TensorProto {
        name: Some(name.clone()),
        data_type: Some(DataType::Int64 as i32),
        dims: vec![shape.len() as i64],
        int64_data: shape,
        ..Default::default()
    });
    graph.node[reshape].input[1] = name;
    swap(graph, transpose, op_index, slot);
    true
}

/// The values of the constant shape `reshape` reads.
fn shape_constant(graph: &GraphProto, reshape: &NodeProto) -> Option<Vec<i64>> {
    let name = reshape.input.get(1)?;
    graph
        .initializer
        .iter()
        .find(|t| t.name.as_ref() == Some(name))
        .and_then(int64_values)
}

/// `shape`, given in the layout a Transpose by `perm` makes, in the layout before it; `None`
/// unless a Reshape to either lays the values out alike: the dimensions other than 1 come in
/// the same order (a 0, "copy the input's dimension", depends on its place and is refused).
fn untranspose(shape: &[i64], perm: &[i64]) -> Option<Vec<i64>> {
    if shape.len() != perm.len() || shape.contains(&0) {
        return None;
    }
    // Transposing by perm moves dimension perm[j] to j.
    let mut before = vec![1; shape.len()];
    let mut moved = Vec::new();
    for (&p, &dim) in perm.iter().zip(shape) {
        let p = usize::try_from(p).ok()?;
        *before.get_mut(p)? = dim;
        if dim != 1 {
            moved.push(p);
        }
    }
    moved.is_sorted().then_some(before)
}

/// Swaps the Transpose at `transpose_index` with the op at `op_index` that reads it in input
/// `slot`. Before: x → Transpose → t → op → y.  After: x → op → t → Transpose → y.
fn swap(graph: &mut GraphProto, transpose_index: usize, op_index: usize, slot: usize) {
    let mut transpose = graph.node.remove(transpose_index);
    let op_index = if transpose_index < op_index {
        op_index - 1
    } else {
        op_index
    };
    let op = &mut graph.node[op_index];
    let (x, t, y) = (
        transpose.input[0].clone(),
        transpose.output[0].clone(),
        op.output[0].clone(),
    );
    op.input[slot] = x;
    op.output[0] = t.clone();
    transpose.input[0] = t;
    transpose.output[0] = y;
    graph.node.insert(op_index + 1, transpose);
}

/// Drops one Transpose that undoes the Transpose it reads.
fn cancel_one(graph: &mut GraphProto) -> bool {
    let found = graph.node.iter().enumerate().find_map(|(second, node)| {
        if !is_transpose(node) {
            return None;
        }
        let first = producer(graph, &node.input[0])?;
        let inverse = match (perm(&graph.node[first]), perm(node)) {
            (Some(p), Some(q)) => {
                is_transpose(&graph.node[first])
                    && p.len() == q.len()
                    && q.iter().enumerate().all(|(j, &qj)| {
                        usize::try_from(qj).is_ok_and(|k| p.get(k) == Some(&(j as i64)))
                    })
            }
            _ => false,
        };
        inverse.then_some((first, second))
    });
    let Some((first, second)) = found else {
        return false;
    };
    let original = graph.node[first].input[0].clone();
    let undone = graph.node[second].output[0].clone();
    if is_graph_output(graph, &undone) {
        let identity = &mut graph.node[second];
        identity.op_type = Some("Identity".into());
        identity.attribute.clear();
        identity.input[0] = original;
    } else {
        graph.node.remove(second);
        for input in graph.node.iter_mut().flat_map(|n| n.input.iter_mut()) {
            if *input == undone {
                input.clone_from(&original);
            }
        }
    }
    let transposed = graph.node[first].output[0].clone();
    if readers(graph, &transposed) == 0 {
        graph.node.remove(first);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{AttributeProto, ValueInfoProto};

    fn node(op: &str, input: &str, output: &str, perm: Option<&[i64]>) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            input: vec![input.into()],
            output: vec![output.into()],
            attribute: perm
                .map(|p| AttributeProto {
                    name: Some("perm".into()),
                    ints: p.to_vec(),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    fn graph(nodes: Vec<NodeProto>, output: &str) -> GraphProto {
        GraphProto {
            node: nodes,
            output: vec![ValueInfoProto {
                name: Some(output.into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn ops(graph: &GraphProto) -> Vec<String> {
        graph
            .node
            .iter()
            .map(|n| {
                format!(
                    "{}({}→{})",
                    n.op_type.as_deref().unwrap_or(""),
                    n.input[0],
                    n.output[0]
                )
            })
            .collect()
    }

    const TO_NHWC: &[i64] = &[0, 2, 3, 1];
    const TO_NCHW: &[i64] = &[0, 3, 1, 2];

    #[test]
    fn an_activation_between_a_transpose_and_its_inverse_runs_without_both() {
        let mut g = graph(
            vec![
                node("Conv", "x", "a", None),
                node("Transpose", "a", "b", Some(TO_NHWC)),
                node("HardSwish", "b", "c", None),
                node("Transpose", "c", "d", Some(TO_NCHW)),
                node("Conv", "d", "y", None),
            ],
            "y",
        );
        assert_eq!(remove_round_trips(&mut g), 2);
        assert_eq!(ops(&g), ["Conv(x→a)", "HardSwish(a→b)", "Conv(b→y)"]);
    }

    #[test]
    fn a_transpose_read_twice_cancels_reader_by_reader_and_a_graph_output_keeps_its_name() {
        let mut g = graph(
            vec![
                node("Transpose", "x", "a", Some(TO_NHWC)),
                node("Transpose", "a", "b", Some(TO_NCHW)),
                node("Relu", "a", "c", None),
                node("Transpose", "c", "y", Some(TO_NCHW)),
            ],
            "y",
        );
        // The first cancellation leaves the Relu the only reader of the first Transpose, which
        // then sinks below it and cancels with the last; the output keeps its name.
        assert_eq!(remove_round_trips(&mut g), 3);
        assert_eq!(ops(&g), ["Relu(x→a)", "Identity(a→y)"]);
    }

    /// MediaPipe's squeeze-and-excitation: a channels-last view of `x` scaled by a pooled
    /// vector reshaped to `shape`, then back to channels-first.
    fn scaled_view(shape: &[i64]) -> GraphProto {
        let mut g = graph(
            vec![
                node("Transpose", "x", "a", Some(TO_NHWC)),
                node("Reshape", "s", "r", None),
                node("Mul", "a", "m", None),
                node("Transpose", "m", "y", Some(TO_NCHW)),
            ],
            "y",
        );
        g.node[1].input.push("shape".into());
        g.node[2].input.push("r".into());
        g.initializer.push(TensorProto {
            name: Some("shape".into()),
            data_type: Some(DataType::Int64 as i32),
            dims: vec![4],
            raw_data: Some(shape.iter().flat_map(|d| d.to_le_bytes()).collect()),
            ..Default::default()
        });
        g
    }

    #[test]
    fn a_per_channel_scale_of_a_transposed_view_scales_the_original_instead() {
        let mut g = scaled_view(&[-1, 1, 1, 96]);
        assert_eq!(remove_round_trips(&mut g), 2);
        assert_eq!(ops(&g), ["Reshape(s→r)", "Mul(x→a)", "Identity(a→y)"]);
        assert_eq!(g.node[1].input, ["x", "r"]);
        let shape = shape_constant(&g, &g.node[0]);
        assert_eq!(shape, Some(vec![-1, 96, 1, 1]));
    }

    #[test]
    fn a_scale_whose_values_would_be_laid_out_otherwise_keeps_the_transposes() {
        // [-1, 1, 4, 96] in NHWC is [-1, 96, 1, 4] in NCHW: the last two swap order.
        let mut g = scaled_view(&[-1, 1, 4, 96]);
        assert_eq!(remove_round_trips(&mut g), 0);
    }

    #[test]
    fn transposes_that_do_not_undo_each_other_stay() {
        let mut g = graph(
            vec![
                node("Transpose", "x", "a", Some(TO_NHWC)),
                node("Transpose", "a", "y", Some(TO_NHWC)),
            ],
            "y",
        );
        assert_eq!(remove_round_trips(&mut g), 0);
    }
}
