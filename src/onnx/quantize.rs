//! Static int8 quantization in ONNX's QDQ form (`segstream quantize`): weights int8 per output
//! channel, activations uint8 per tensor, from value ranges measured on calibration images.
//! ONNX Runtime fuses each `DequantizeLinear → op → QuantizeLinear` group into an integer
//! kernel; the model's input and output stay f32, so the engine runs it unchanged.
//!
//! ```text
//! x ──Q──DQ──┐
//! w (int8) ──DQ── Conv [Relu folded in] ── y ──Q──DQ── next op …
//! b (int32)──DQ──┘
//! ```
//! A `Relu` after a convolution is dropped: its output's range starts at 0, so quantizing the
//! convolution's output with that range clamps the negatives as the `Relu` did.

use std::collections::{HashMap, HashSet};

use super::graph::int_attribute;
use super::proto::tensor_proto::DataType;
use super::proto::{
    GraphProto, ModelProto, NodeProto, TensorProto, TypeProto, ValueInfoProto, type_proto,
};

/// Ops run on quantized tensors: their activation inputs and outputs get a QDQ pair.
const QUANTIZED_OPS: [&str; 7] = [
    "Conv",
    "ConvTranspose",
    "MaxPool",
    "Concat",
    "Add",
    "Mul",
    "GlobalAveragePool",
];
/// Quantized ops whose output keeps its input's scale (they only pick among input values).
const RANGE_KEEPING_OPS: [&str; 1] = ["MaxPool"];
/// Ops with weights: input 1 is quantized per output channel, input 2 (bias) to int32.
const WEIGHTED_OPS: [&str; 2] = ["Conv", "ConvTranspose"];
/// The first default-domain opset with per-axis `DequantizeLinear`.
const MIN_OPSET: i64 = 13;
/// Largest magnitude of a symmetric int8 weight: 7 bits, as ONNX Runtime's `reduce_range`. On
/// x86 CPUs without VNNI (AVX2 only, as many AMD EPYCs), ONNX Runtime multiplies uint8
/// activations by int8 weights with `vpmaddubsw`, which adds two products in 16 bits and
/// saturates: 255·127·2 overflows, 255·63·2 does not. With full 8-bit weights the CamVid
/// model's mean IoU fell from 0.49 to 0.39 on such a CPU while it held on one with VNNI.
const WEIGHT_LEVELS: f32 = 63.0;

/// Smallest and largest value each activation tensor took during calibration.
pub type Ranges = HashMap<String, [f32; 2]>;

/// A quantized model and what was done to it.
#[derive(Debug)]
pub struct Quantized {
    /// The rewritten model.
    pub model: ModelProto,
    /// Nodes that now run on quantized tensors.
    pub nodes: usize,
    /// Weight tensors stored as int8.
    pub weights: usize,
    /// `Relu`s folded into the quantization of their input.
    pub folded_relus: usize,
}

/// The activation tensors whose ranges [`quantize`] needs, in graph order.
///
/// # Errors
/// The model has no graph, is already quantized, or its opset is too old for per-channel
/// weights.
pub fn calibrated_tensors(model: &ModelProto) -> Result<Vec<String>, String> {
    check_quantizable(model)?;
    let mut graph = model.graph.clone().unwrap_or_default();
    fold_relus(&mut graph);
    Ok(quantized_tensors(&graph))
}

/// `model` with `tensors` added to its outputs, so that one run reports their values.
pub fn with_outputs(model: &ModelProto, tensors: &[String]) -> ModelProto {
    let mut model = model.clone();
    let graph = model.graph.get_or_insert_default();
    let present: HashSet<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    for name in tensors.iter().filter(|n| !present.contains(*n)) {
        graph.output.push(float_info(name));
    }
    model
}

/// Rewrites `model` into QDQ form with the activation `ranges` measured by calibration.
///
/// # Errors
/// As [`calibrated_tensors`], and a tensor of [`calibrated_tensors`] missing from `ranges`.
pub fn quantize(mut model: ModelProto, ranges: &Ranges) -> Result<Quantized, String> {
    check_quantizable(&model)?;
    let mut graph = model.graph.take().unwrap_or_default();
    let folded_relus = fold_relus(&mut graph);
    let tensors = quantized_tensors(&graph);
    let mut params = HashMap::new();
    for name in &tensors {
        let kept = graph
            .node
            .iter()
            .find(|n| n.output.first() == Some(name))
            .filter(|n| RANGE_KEEPING_OPS.contains(&op(n)))
            .and_then(|n| params.get(&n.input[0]).copied());
        let range = ranges
            .get(name)
            .ok_or_else(|| format!("no calibration range for tensor '{name}'"))?;
        params.insert(
            name.clone(),
            kept.unwrap_or_else(|| activation_params(*range)),
        );
    }
    let mut rewriter = Rewriter::new(&graph);
    let mut nodes = Vec::new();
    for name in graph.input.iter().filter_map(|i| i.name.as_ref()) {
        if let Some(&p) = params.get(name) {
            nodes.extend(rewriter.activation_qdq(name, p));
        }
    }
    let mut quantized_nodes = 0;
    for mut node in std::mem::take(&mut graph.node) {
        let input_scale = node.input.first().and_then(|i| params.get(i)).map(|p| p.0);
        for input in node.input.iter_mut() {
            if params.contains_key(input.as_str()) {
                *input = dequantized(input);
            }
        }
        if QUANTIZED_OPS.contains(&op(&node)) {
            quantized_nodes += 1;
            if WEIGHTED_OPS.contains(&op(&node)) {
                nodes.extend(rewriter.weights(&mut node, input_scale));
            }
        }
        let outputs: Vec<String> = node.output.clone();
        nodes.push(node);
        for output in outputs {
            if let Some(&p) = params.get(&output) {
                nodes.extend(rewriter.activation_qdq(&output, p));
            }
        }
    }
    graph.node = nodes;
    let weights = rewriter.quantized_weights.len();
    rewriter.finish(&mut graph);
    model.graph = Some(graph);
    Ok(Quantized {
        model,
        nodes: quantized_nodes,
        weights,
        folded_relus,
    })
}

fn check_quantizable(model: &ModelProto) -> Result<(), String> {
    let graph = model.graph.as_ref().ok_or("the file holds no graph")?;
    if graph.node.iter().any(|n| op(n) == "QuantizeLinear") {
        return Err("it is quantized already".into());
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref().unwrap_or_default().is_empty())
        .and_then(|o| o.version)
        .unwrap_or(1);
    if opset < MIN_OPSET {
        return Err(format!(
            "its opset is {opset}; per-channel int8 weights need opset {MIN_OPSET} or later"
        ));
    }
    Ok(())
}

fn op(node: &NodeProto) -> &str {
    node.op_type.as_deref().unwrap_or_default()
}

/// Drops each `Relu` whose input comes only from a convolution, which writes the `Relu`'s
/// output instead. Returns how many were dropped.
fn fold_relus(graph: &mut GraphProto) -> usize {
    let outputs: HashSet<&String> = graph
        .output
        .iter()
        .filter_map(|o| o.name.as_ref())
        .collect();
    let mut uses: HashMap<&String, usize> = HashMap::new();
    for input in graph.node.iter().flat_map(|n| &n.input) {
        *uses.entry(input).or_default() += 1;
    }
    let convolved: HashSet<&String> = graph
        .node
        .iter()
        .filter(|n| WEIGHTED_OPS.contains(&op(n)))
        .map(|n| &n.output[0])
        .collect();
    // Convolution output → the output of the Relu that alone reads it.
    let renames: HashMap<String, String> = graph
        .node
        .iter()
        .filter(|n| op(n) == "Relu")
        .map(|n| (&n.input[0], &n.output[0]))
        .filter(|(input, _)| {
            convolved.contains(input) && uses[input] == 1 && !outputs.contains(input)
        })
        .map(|(input, output)| (input.clone(), output.clone()))
        .collect();
    let before = graph.node.len();
    graph
        .node
        .retain(|n| !(op(n) == "Relu" && renames.contains_key(&n.input[0])));
    for node in graph.node.iter_mut() {
        if let Some(to) = node.output.first().and_then(|o| renames.get(o)) {
            node.output[0] = to.clone();
        }
    }
    before - graph.node.len()
}

/// Activation tensors that are inputs (not weights) or outputs of quantized ops, each once.
fn quantized_tensors(graph: &GraphProto) -> Vec<String> {
    let constants: HashSet<&String> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_ref())
        .chain(
            graph
                .node
                .iter()
                .filter(|n| op(n) == "Constant")
                .flat_map(|n| &n.output),
        )
        .collect();
    let mut seen = HashSet::new();
    let mut tensors = Vec::new();
    for node in graph.node.iter().filter(|n| QUANTIZED_OPS.contains(&op(n))) {
        let activations = if WEIGHTED_OPS.contains(&op(node)) {
            &node.input[..1]
        } else {
            &node.input[..]
        };
        for name in activations.iter().chain(&node.output[..1]) {
            if !name.is_empty() && !constants.contains(name) && seen.insert(name.clone()) {
                tensors.push(name.clone());
            }
        }
    }
    tensors
}

/// Scale and zero point of uint8 values covering `[min, max]` (and 0, which must be exact).
fn activation_params([min, max]: [f32; 2]) -> (f32, u8) {
    let (min, max) = (min.min(0.0), max.max(0.0));
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    let zero_point = (-min / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero_point)
}

fn dequantized(name: &str) -> String {
    format!("{name}_dequantized")
}

/// Adds the quantization nodes and initializers while the node list is rebuilt.
struct Rewriter {
    initializers: HashMap<String, TensorProto>,
    added: Vec<TensorProto>,
    /// Float weights replaced by int8 ones: name → per-channel scales.
    quantized_weights: HashMap<String, Vec<f32>>,
}

impl Rewriter {
    fn new(graph: &GraphProto) -> Self {
        let initializers = graph
            .initializer
            .iter()
            .filter_map(|t| Some((t.name.clone()?, t.clone())))
            .collect();
        Rewriter {
            initializers,
            added: Vec::new(),
            quantized_weights: HashMap::new(),
        }
    }

    /// `name → QuantizeLinear → DequantizeLinear → name_dequantized`.
    fn activation_qdq(&mut self, name: &str, (scale, zero_point): (f32, u8)) -> [NodeProto; 2] {
        let scale_name = self.add(
            format!("{name}_scale"),
            DataType::Float,
            vec![],
            &scale.to_le_bytes(),
        );
        let zero_name = self.add(
            format!("{name}_zero_point"),
            DataType::Uint8,
            vec![],
            &[zero_point],
        );
        let quantized = format!("{name}_quantized");
        let inputs = |x: &str| vec![x.to_string(), scale_name.clone(), zero_name.clone()];
        [
            qdq_node("QuantizeLinear", inputs(name), &quantized, None),
            qdq_node(
                "DequantizeLinear",
                inputs(&quantized),
                &dequantized(name),
                None,
            ),
        ]
    }

    /// Replaces the node's f32 weight by int8 per output channel and its bias by int32 (at
    /// the input's scale × the weight's), each behind a `DequantizeLinear`.
    fn weights(&mut self, node: &mut NodeProto, input_scale: Option<f32>) -> Vec<NodeProto> {
        let Some(weight) = node
            .input
            .get(1)
            .and_then(|w| self.initializers.get(w))
            .cloned()
        else {
            return Vec::new();
        };
        let Some(values) = float_values(&weight) else {
            return Vec::new();
        };
        let name = weight.name.clone().unwrap_or_default();
        // Conv weights are out×in×kh×kw, ConvTranspose's in×out×kh×kw.
        let axis = usize::from(op(node) == "ConvTranspose");
        let dims: Vec<usize> = weight.dims.iter().map(|&d| d as usize).collect();
        let channels = dims[axis];
        let inner: usize = dims[axis + 1..].iter().product();
        let mut nodes = Vec::new();
        if !self.quantized_weights.contains_key(&name) {
            let mut peaks = vec![0f32; channels];
            for (i, v) in values.iter().enumerate() {
                let c = (i / inner) % channels;
                peaks[c] = peaks[c].max(v.abs());
            }
            let scales: Vec<f32> = peaks
                .iter()
                .map(|&p| if p > 0.0 { p / WEIGHT_LEVELS } else { 1.0 })
                .collect();
            let quantized: Vec<u8> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let q = (v / scales[(i / inner) % channels]).round();
                    q.clamp(-WEIGHT_LEVELS, WEIGHT_LEVELS) as i8 as u8
                })
                .collect();
            nodes.push(self.dequantize_per_channel(
                &name,
                DataType::Int8,
                &weight.dims,
                &quantized,
                &scales,
                axis,
            ));
            self.quantized_weights.insert(name.clone(), scales);
        }
        node.input[1] = dequantized(&name);
        let bias = node
            .input
            .get(2)
            .and_then(|b| self.initializers.get(b))
            .and_then(|b| Some((float_values(b)?, b.clone())));
        if let (Some((values, bias)), Some(input_scale)) = (bias, input_scale) {
            let scales: Vec<f32> = (0..values.len())
                .map(|c| input_scale * self.quantized_weights[&name][c % channels])
                .collect();
            let quantized: Vec<u8> = values
                .iter()
                .zip(&scales)
                .flat_map(|(v, s)| ((v / s).round() as i32).to_le_bytes())
                .collect();
            let bias_name = format!("{}_{}", bias.name.clone().unwrap_or_default(), name);
            nodes.push(self.dequantize_per_channel(
                &bias_name,
                DataType::Int32,
                &bias.dims,
                &quantized,
                &scales,
                0,
            ));
            node.input[2] = dequantized(&bias_name);
        }
        nodes
    }

    /// `DequantizeLinear(name_quantized, scales, zeros, axis) → name_dequantized`.
    fn dequantize_per_channel(
        &mut self,
        name: &str,
        data_type: DataType,
        dims: &[i64],
        quantized: &[u8],
        scales: &[f32],
        axis: usize,
    ) -> NodeProto {
        let channels = vec![scales.len() as i64];
        let zero_bytes = vec![0u8; scales.len() * if data_type == DataType::Int32 { 4 } else { 1 }];
        let scale_bytes: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
        let inputs = vec![
            self.add(
                format!("{name}_quantized"),
                data_type,
                dims.to_vec(),
                quantized,
            ),
            self.add(
                format!("{name}_scale"),
                DataType::Float,
                channels.clone(),
                &scale_bytes,
            ),
            self.add(
                format!("{name}_zero_point"),
                data_type,
                channels,
                &zero_bytes,
            ),
        ];
        qdq_node("DequantizeLinear", inputs, &dequantized(name), Some(axis))
    }

    fn add(&mut self, name: String, data_type: DataType, dims: Vec<i64>, bytes: &[u8]) -> String {
        self.added.push(TensorProto {
            name: Some(name.clone()),
            dims,
            data_type: Some(data_type as i32),
            raw_data: Some(bytes.to_vec()),
            ..Default::default()
        });
        name
    }

    /// Puts the new initializers in and drops the f32 ones no node reads any more.
    fn finish(self, graph: &mut GraphProto) {
        let used: HashSet<&String> = graph.node.iter().flat_map(|n| &n.input).collect();
        let outputs: HashSet<&String> = graph
            .output
            .iter()
            .filter_map(|o| o.name.as_ref())
            .collect();
        let kept: Vec<TensorProto> = std::mem::take(&mut graph.initializer)
            .into_iter()
            .filter(|t| {
                t.name
                    .as_ref()
                    .is_some_and(|n| used.contains(n) || outputs.contains(n))
            })
            .collect();
        graph.initializer = kept.into_iter().chain(self.added).collect();
    }
}

fn qdq_node(op: &str, inputs: Vec<String>, output: &str, axis: Option<usize>) -> NodeProto {
    NodeProto {
        op_type: Some(op.to_string()),
        name: Some(format!("{op}_{output}")),
        input: inputs,
        output: vec![output.to_string()],
        attribute: axis
            .map(|axis| int_attribute("axis", axis as i64))
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// The values of an f32 initializer.
fn float_values(tensor: &TensorProto) -> Option<Vec<f32>> {
    if tensor.data_type != Some(DataType::Float as i32) {
        return None;
    }
    Some(match &tensor.raw_data {
        Some(raw) => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4 bytes")))
            .collect(),
        None => tensor.float_data.clone(),
    })
}

/// An f32 tensor output of unknown shape.
fn float_info(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_params_cover_the_range_and_keep_zero_exact() {
        let (scale, zero) = activation_params([-1.0, 3.0]);
        assert!((scale - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(zero, 64);
        // A Relu's output: all of 0..255 for the positives.
        let (scale, zero) = activation_params([0.0, 2.55]);
        assert!((scale - 0.01).abs() < 1e-7 && zero == 0);
        // Positive-only ranges still include 0.
        assert_eq!(activation_params([1.0, 2.55]).1, 0);
        assert_eq!(activation_params([0.0, 0.0]), (1.0, 0));
    }
}
