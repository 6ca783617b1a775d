//! The ONNX reader: an ONNX graph run as a trainable burn module ([`GraphModel`]), the mirror
//! image of the writer. Each node becomes one small function over burn tensor ops; float
//! initializers that weigh (convolution weights and biases, batch-norm scale and shift, the
//! operands of element-wise ops) become trainable parameters, the rest (shapes, scales,
//! running statistics) stay constants. [`GraphModel::to_onnx`] writes the same graph back with
//! the trained values, so any graph that can be trained here can be exported exactly.
//!
//! Activations are rank 4 (N×C×H×W, or the channels-last tensors converters leave between
//! Transposes); a graph needing other ranks or other ops is refused when it is read, naming
//! the node.

use std::collections::HashMap;
use std::sync::Arc;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{
    AvgPoolOptions, ConvOptions, ConvTransposeOptions, InterpolateMode, InterpolateOptions,
    MaxPoolOptions,
};

use super::proto::tensor_proto::DataType;
use super::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
use super::{DECODER_PREFIX, VALUE_MOVING_OPS, int64_values};
use crate::kernels::activation::{hard_swish, relu};
use crate::kernels::conv::conv2d;
use crate::kernels::conv_transpose::conv_transpose2d;
use crate::kernels::elementwise::{add, mul};
use crate::kernels::resize::interpolate;

/// An ONNX graph as a burn module: its weights are the module's parameters, split into the
/// head (the layer that produces the output, and a grafted decoder's layers: names under
/// [`DECODER_PREFIX`]) and the body (the rest), so that the body can be frozen or trained
/// slower (parameter paths contain `head` or `body`).
#[derive(Module, Debug)]
pub struct GraphModel {
    /// Trainable initializers of the body, flat; shaped where used.
    body: Vec<Param<Tensor<1>>>,
    /// Trainable initializers of the head, flat.
    head: Vec<Param<Tensor<1>>>,
    /// The nodes and constants (shared, never trained).
    #[module(skip)]
    graph: Arc<Graph>,
}

/// What a node does, with its attributes read once.
#[derive(Debug, Clone)]
enum Op {
    Conv(ConvOptions<2>),
    ConvTranspose(ConvTransposeOptions<2>),
    BatchNorm {
        epsilon: f32,
    },
    Relu,
    Sigmoid,
    HardSwish,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    Clip,
    Add,
    Sub,
    Mul,
    Div,
    Concat {
        axis: usize,
    },
    MaxPool(MaxPoolOptions<2>),
    AveragePool(AvgPoolOptions<2>),
    GlobalAveragePool,
    ReduceMean {
        axes: Vec<usize>,
    },
    Resize(InterpolateOptions),
    /// Linear resizing by whole factors with TensorFlow's `half_pixel_centers=False`
    /// (ONNX "asymmetric"), which burn's interpolate does not offer.
    UpsampleAsymmetric([usize; 2]),
    Transpose([usize; 4]),
    Reshape,
    Identity,
}

#[derive(Debug, Clone)]
struct Node {
    op: Op,
    inputs: Vec<String>,
    output: String,
}

/// A constant initializer, as f32 (shapes and sizes are small integers, exact in f32).
#[derive(Debug, Clone)]
struct Constant {
    dims: Vec<usize>,
    values: Vec<f32>,
}

/// The graph without its trainable values.
#[derive(Debug, Clone)]
struct Graph {
    input: String,
    output: String,
    nodes: Vec<Node>,
    /// Names and shapes of the trainable initializers, in parameter order.
    trainable: Vec<(String, Vec<usize>)>,
    /// Where each trainable initializer is, by name.
    index: HashMap<String, Slot>,
    constants: HashMap<String, Constant>,
    /// The model read, kept to be written back with new weights.
    model: ModelProto,
}

/// Where a trainable initializer lives: in the head or the body, at an index.
#[derive(Debug, Clone, Copy)]
struct Slot {
    head: bool,
    index: usize,
    /// Position in [`Graph::trainable`].
    order: usize,
}

/// Which inputs of `op` are weights (trainable when they are initializers).
fn weighs(op: &str, slot: usize) -> bool {
    match op {
        "Conv" | "ConvTranspose" => slot >= 1,
        "BatchNormalization" => matches!(slot, 1 | 2),
        "Add" | "Sub" | "Mul" | "Div" => true,
        _ => false,
    }
}

impl GraphModel {
    /// Reads `model` (one input, one output) onto `device`.
    ///
    /// # Errors
    /// An op or attribute the interpreter does not run, naming the node; malformed tensors.
    /// Layout round trips ([`super::transposes`]) are removed first: each costs a copy of an
    /// activation forwards and another backwards.
    pub fn from_onnx(model: &ModelProto, device: &Device) -> Result<Self, String> {
        let mut model = model.clone();
        if let Some(graph) = model.graph.as_mut() {
            super::transposes::remove_round_trips(graph);
        }
        let graph = model.graph.as_ref().ok_or("the model has no graph")?;
        let initializers: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_deref().unwrap_or_default(), t))
            .collect();
        let input = graph
            .input
            .iter()
            .map(|i| i.name.clone().unwrap_or_default())
            .find(|name| !initializers.contains_key(name.as_str()))
            .ok_or("the graph has no input")?;
        let output = graph
            .output
            .first()
            .and_then(|o| o.name.clone())
            .ok_or("the graph has no output")?;

        let head_inputs: Vec<String> = head_node(&model)
            .map(|i| graph.node[i].input.clone())
            .unwrap_or_default();
        let mut trainable = Vec::new();
        let mut index = HashMap::new();
        let (mut body, mut head) = (Vec::new(), Vec::new());
        let mut constants = HashMap::new();
        let mut nodes = Vec::new();
        for node in &graph.node {
            let op_type = node.op_type.as_deref().unwrap_or_default();
            for (slot, name) in node.input.iter().enumerate() {
                let Some(tensor) = initializers.get(name.as_str()) else {
                    continue;
                };
                if index.contains_key(name) || constants.contains_key(name) {
                    continue;
                }
                let (dims, values) = tensor_values(tensor)?;
                let is_float = tensor.data_type == Some(DataType::Float as i32);
                if is_float && weighs(op_type, slot) {
                    let in_head = head_inputs.contains(name) || name.starts_with(DECODER_PREFIX);
                    let params = if in_head { &mut head } else { &mut body };
                    let slot = Slot {
                        head: in_head,
                        index: params.len(),
                        order: trainable.len(),
                    };
                    index.insert(name.clone(), slot);
                    params.push(Param::from_tensor(Tensor::<1>::from_data(
                        TensorData::new(values, [dims.iter().product::<usize>()]),
                        device,
                    )));
                    trainable.push((name.clone(), dims));
                } else {
                    constants.insert(name.clone(), Constant { dims, values });
                }
            }
            nodes.push(read_node(node, &constants)?);
        }
        Ok(GraphModel {
            body,
            head,
            graph: Arc::new(Graph {
                input,
                output,
                nodes,
                trainable,
                index,
                constants,
                model,
            }),
        })
    }

    /// Runs the graph on `x`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.evaluate(x, |_, _, _| {})
    }

    /// Runs the graph on `x`, showing `visit` each node with the dimensions of its first input
    /// and of its output.
    fn evaluate(
        &self,
        x: Tensor<4>,
        mut visit: impl FnMut(&Node, [usize; 4], [usize; 4]),
    ) -> Tensor<4> {
        let graph = &self.graph;
        let mut values: HashMap<&str, Tensor<4>> = HashMap::new();
        values.insert(graph.input.as_str(), x);
        for node in &graph.nodes {
            let output = self.run(node, &values);
            if let Some(first) = values.get(node.inputs[0].as_str()) {
                visit(node, first.dims(), output.dims());
            }
            values.insert(node.output.as_str(), output);
        }
        values
            .remove(graph.output.as_str())
            .expect("the graph's output is computed by one of its nodes (checked when read)")
    }

    /// Runs the graph once on a `size` (height, width) input and reports what its spatial
    /// layout depends on.
    pub fn trace_sizes(&self, [height, width]: [usize; 2]) -> SizeTrace {
        let mut trace = SizeTrace {
            whole_frame_pools: Vec::new(),
            stride: 1,
        };
        let input = Tensor::zeros([1, 3, height, width], &self.device());
        self.evaluate(input, |node, input, output| match &node.op {
            Op::AveragePool(options)
                if options.padding == [(0, 0); 2]
                    && options.kernel_size == [input[2], input[3]] =>
            {
                trace.whole_frame_pools.push(node.output.clone());
            }
            // Convolutions of pooled vectors (squeeze-and-excitation) do not down-sample.
            Op::Conv(_) | Op::MaxPool(_) | Op::AveragePool(_)
                if input[2] * input[3] > 1 && output[2] > 0 =>
            {
                trace.stride = trace.stride.max(height / output[2]);
            }
            _ => {}
        });
        trace
    }

    /// Every node's output and its dimensions, in the order the graph computes them, for one
    /// `size` (height, width) input.
    pub(super) fn shapes(&self, [height, width]: [usize; 2]) -> Vec<(String, [usize; 4])> {
        let mut shapes = Vec::new();
        let input = Tensor::zeros([1, 3, height, width], &self.device());
        self.evaluate(input, |node, _, output| {
            shapes.push((node.output.clone(), output));
        });
        shapes
    }

    /// The value named `name` as a rank-4 tensor: an earlier output, a parameter or a constant
    /// (lower ranks broadcast from the right, as ONNX does).
    fn value(&self, name: &str, values: &HashMap<&str, Tensor<4>>) -> Tensor<4> {
        if let Some(value) = values.get(name) {
            return value.clone();
        }
        let (flat, dims) = match self.graph.index.get(name) {
            Some(&slot) => (self.param(slot), self.graph.trainable[slot.order].1.clone()),
            None => {
                let constant = &self.graph.constants[name];
                let device = self.device();
                let tensor = Tensor::<1>::from_data(
                    TensorData::new(constant.values.clone(), [constant.values.len()]),
                    &device,
                );
                (tensor, constant.dims.clone())
            }
        };
        flat.reshape(rank4(&dims))
    }

    /// The vector (rank 1) named `name`: a parameter or a constant.
    fn vector(&self, name: &str) -> Tensor<1> {
        match self.graph.index.get(name) {
            Some(&slot) => self.param(slot),
            None => {
                let values = self.graph.constants[name].values.clone();
                let length = values.len();
                Tensor::from_data(TensorData::new(values, [length]), &self.device())
            }
        }
    }

    fn param(&self, slot: Slot) -> Tensor<1> {
        let params = if slot.head { &self.head } else { &self.body };
        params[slot.index].val()
    }

    fn device(&self) -> Device {
        self.body
            .iter()
            .chain(&self.head)
            .next()
            .map_or_else(Device::flex, |p| p.val().device())
    }

    fn run(&self, node: &Node, values: &HashMap<&str, Tensor<4>>) -> Tensor<4> {
        let arg = |i: usize| self.value(&node.inputs[i], values);
        let optional = |i: usize| node.inputs.get(i).filter(|name| !name.is_empty());
        match &node.op {
            Op::Conv(options) => conv2d(
                arg(0),
                arg(1),
                optional(2).map(|b| self.vector(b)),
                options.clone(),
            ),
            Op::ConvTranspose(options) => conv_transpose2d(
                arg(0),
                arg(1),
                optional(2).map(|b| self.vector(b)),
                options.clone(),
            ),
            Op::BatchNorm { epsilon } => {
                let channel = |i: usize| self.vector(&node.inputs[i]).reshape([1, -1, 1, 1]);
                let scale = channel(1) / (channel(4) + *epsilon).sqrt();
                (arg(0) - channel(3)) * scale + channel(2)
            }
            Op::Relu => relu(arg(0)),
            Op::Sigmoid => sigmoid(arg(0)),
            Op::HardSwish => hard_swish(arg(0)),
            Op::HardSigmoid { alpha, beta } => (arg(0) * *alpha + *beta).clamp(0.0, 1.0),
            Op::Clip => {
                let bound = |i: usize, default: f32| {
                    optional(i).map_or(default, |name| self.graph.constants[name].values[0])
                };
                arg(0).clamp(bound(1, f32::MIN), bound(2, f32::MAX))
            }
            Op::Add => add(arg(0), arg(1)),
            Op::Sub => arg(0) - arg(1),
            Op::Mul => mul(arg(0), arg(1)),
            Op::Div => arg(0) / arg(1),
            Op::Concat { axis } => Tensor::cat((0..node.inputs.len()).map(arg).collect(), *axis),
            Op::MaxPool(options) => max_pool2d(arg(0), options.clone()),
            Op::AveragePool(options) => avg_pool2d(arg(0), options.clone()),
            Op::GlobalAveragePool => arg(0).mean_dim(2).mean_dim(3),
            Op::ReduceMean { axes } => axes.iter().fold(arg(0), |x, &axis| x.mean_dim(axis)),
            Op::Resize(options) => interpolate(arg(0), options.clone()),
            Op::UpsampleAsymmetric([height, width]) => {
                upsample_asymmetric(upsample_asymmetric(arg(0), 2, *height), 3, *width)
            }
            Op::Transpose(perm) => arg(0).permute(*perm),
            Op::Reshape => {
                let x = arg(0);
                let target = &self.graph.constants[&node.inputs[1]].values;
                x.clone().reshape(reshape_dims(&x.dims(), target))
            }
            Op::Identity => arg(0),
        }
    }

    /// The model read, with every trainable initializer replaced by its current value.
    pub fn to_onnx(&self) -> ModelProto {
        let mut model = self.graph.model.clone();
        if let Some(graph) = model.graph.as_mut() {
            for tensor in &mut graph.initializer {
                let Some(&slot) = tensor.name.as_ref().and_then(|n| self.graph.index.get(n)) else {
                    continue;
                };
                let values: Vec<f32> = self
                    .param(slot)
                    .into_data_as::<f32>()
                    .try_to_vec()
                    .expect("into_data_as::<f32> yields f32 data");
                tensor.raw_data = Some(values.iter().flat_map(|v| v.to_le_bytes()).collect());
                tensor.float_data.clear();
            }
        }
        model
    }

    /// Names and shapes of the trainable initializers, in graph order.
    pub fn trainable(&self) -> &[(String, Vec<usize>)] {
        &self.graph.trainable
    }
}

/// What a graph's spatial layout depends on, found by running it once
/// ([`GraphModel::trace_sizes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SizeTrace {
    /// Outputs of the AveragePool nodes whose window is their whole input: global pools with
    /// the size written in (TensorFlow converters write them so), which tie the graph to it.
    pub whole_frame_pools: Vec<String>,
    /// The largest down-sampling of any convolution or pool: input sides must be multiples of
    /// it for the skip connections to meet.
    pub stride: usize,
}

/// The index of the head: the convolution that produces the output, found by walking back
/// from the output through ops that only move values ([`VALUE_MOVING_OPS`]).
fn head_node(model: &ModelProto) -> Option<usize> {
    head_chain(model)?.last().copied()
}

/// The nodes from the output back to the head, the head last (see [`head_node`]).
pub(super) fn head_chain(model: &ModelProto) -> Option<Vec<usize>> {
    let graph = model.graph.as_ref()?;
    let mut tensor = graph.output.first()?.name.clone()?;
    let mut chain = Vec::new();
    loop {
        let index = graph.node.iter().position(|n| n.output.contains(&tensor))?;
        chain.push(index);
        let node = &graph.node[index];
        match node.op_type.as_deref()? {
            "Conv" | "ConvTranspose" => return Some(chain),
            // Resizing works channel by channel: any number of classes passes through.
            op if op == "Resize" || VALUE_MOVING_OPS.contains(&op) => {
                tensor = node.input.first()?.clone()
            }
            _ => return None,
        }
    }
}

/// `model` with a freshly initialised head of `classes` outputs (the seed's "new head on a
/// pretrained body"): the head convolution's weights drawn uniformly in ±1/√fan-in from
/// `seed`, its bias zero, and the graph's output declared with `classes` channels.
///
/// # Errors
/// When the graph has no convolution producing its output, or its weights are not f32.
pub fn with_new_head(model: &ModelProto, classes: usize, seed: u64) -> Result<ModelProto, String> {
    use rand::{RngExt as _, SeedableRng, rngs::StdRng};
    let mut model = model.clone();
    let index =
        head_node(&model).ok_or("no convolution produces the output: no head to replace")?;
    let graph = model.graph.as_mut().expect("head_node found a graph");
    let node = graph.node[index].clone();
    let transposed = node.op_type.as_deref() == Some("ConvTranspose");
    let mut rng = StdRng::seed_from_u64(seed);
    for (slot, name) in node.input.iter().enumerate().skip(1) {
        let tensor = graph
            .initializer
            .iter_mut()
            .find(|t| t.name.as_ref() == Some(name))
            .ok_or_else(|| format!("the head's input '{name}' is not an initializer"))?;
        let mut dims: Vec<usize> = tensor.dims.iter().map(|&d| d as usize).collect();
        let values = if slot == 1 {
            // Conv: [out, in, kh, kw]; ConvTranspose: [in, out, kh, kw].
            let out_axis = usize::from(transposed);
            dims[out_axis] = classes;
            let fan_in: usize = if transposed {
                dims[0]
            } else {
                dims[1..].iter().product()
            };
            let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
            (0..dims.iter().product::<usize>())
                .map(|_| rng.random_range(-bound..bound))
                .collect()
        } else {
            dims = vec![classes];
            vec![0.0; classes]
        };
        tensor.dims = dims.iter().map(|&d| d as i64).collect();
        tensor.data_type = Some(DataType::Float as i32);
        tensor.raw_data = None;
        tensor.float_data = values;
    }
    let output = graph.output.first_mut().ok_or("the graph has no output")?;
    set_channels(output, classes);
    Ok(model)
}

/// The height and width an N×C×H×W graph input fixes, if it fixes them.
pub fn fixed_input_size(model: &ModelProto) -> Option<[usize; 2]> {
    use super::proto::tensor_shape_proto::dimension::Value;
    use super::proto::type_proto::Value as Type;
    let input = model.graph.as_ref()?.input.first()?;
    let Some(Type::TensorType(tensor)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = &tensor.shape.as_ref()?.dim;
    let fixed = |i: usize| match dims.get(i)?.value {
        Some(Value::DimValue(v)) if v > 0 => Some(v as usize),
        _ => None,
    };
    Some([fixed(2)?, fixed(3)?])
}

/// Declares `classes` channels (dimension 1) on an N×C×H×W tensor's type.
pub(super) fn set_channels(info: &mut super::proto::ValueInfoProto, classes: usize) {
    use super::proto::tensor_shape_proto::dimension::Value;
    use super::proto::type_proto::Value as Type;
    if let Some(Type::TensorType(tensor)) = info.r#type.as_mut().and_then(|t| t.value.as_mut())
        && let Some(dim) = tensor.shape.as_mut().and_then(|s| s.dim.get_mut(1))
    {
        dim.value = Some(Value::DimValue(classes as i64));
    }
}

/// `dims` as rank 4, ones added on the left (ONNX broadcasting aligns from the right).
fn rank4(dims: &[usize]) -> [usize; 4] {
    let mut out = [1; 4];
    for (slot, &d) in out.iter_mut().rev().zip(dims.iter().rev()) {
        *slot = d;
    }
    out
}

/// ONNX Reshape's target: 0 copies the input's dimension, -1 takes what is left.
fn reshape_dims(input: &[usize; 4], target: &[f32]) -> [usize; 4] {
    let total: usize = input.iter().product();
    let mut dims = [1usize; 4];
    let mut unknown = None;
    for (i, &t) in target.iter().enumerate().take(4) {
        match t as i64 {
            0 => dims[i] = input[i],
            -1 => unknown = Some(i),
            v => dims[i] = v as usize,
        }
    }
    if let Some(i) = unknown {
        dims[i] = 1;
        dims[i] = total / dims.iter().product::<usize>().max(1);
    }
    dims
}

/// Reads one node's op and attributes, or says why it cannot be run.
fn read_node(node: &NodeProto, constants: &HashMap<String, Constant>) -> Result<Node, String> {
    let op_type = node.op_type.as_deref().unwrap_or_default();
    let name = node
        .name
        .clone()
        .or_else(|| node.output.first().cloned())
        .unwrap_or_default();
    let refuse = |why: &str| format!("node '{name}' ({op_type}): {why}");
    let attributes = Attributes(&node.attribute);
    let constant = |slot: usize| {
        node.input
            .get(slot)
            .and_then(|n| constants.get(n))
            .ok_or_else(|| refuse(&format!("input {slot} must be a constant initializer")))
    };
    let pair = |key: &str, default: usize| -> Result<[usize; 2], String> {
        match attributes.ints(key) {
            None => Ok([default; 2]),
            Some([a, b]) => Ok([*a as usize, *b as usize]),
            Some(other) => Err(refuse(&format!("{key} {other:?} is not two-dimensional"))),
        }
    };
    let pads = || -> Result<[(usize, usize); 2], String> {
        if attributes.string("auto_pad").is_some_and(|p| p != "NOTSET") {
            return Err(refuse("auto_pad is not supported; give explicit pads"));
        }
        match attributes.ints("pads") {
            None => Ok([(0, 0); 2]),
            Some([top, left, bottom, right]) => Ok([
                (*top as usize, *bottom as usize),
                (*left as usize, *right as usize),
            ]),
            Some(other) => Err(refuse(&format!("pads {other:?} are not 2-D"))),
        }
    };
    let output = node
        .output
        .first()
        .cloned()
        .ok_or_else(|| refuse("no output"))?;
    let op = match op_type {
        "Conv" => Op::Conv(ConvOptions::new_with_padding(
            pair("strides", 1)?,
            pads()?,
            pair("dilations", 1)?,
            attributes.int("group").unwrap_or(1) as usize,
        )),
        "ConvTranspose" => {
            let [(top, bottom), (left, right)] = pads()?;
            if top != bottom || left != right {
                return Err(refuse("asymmetric padding is not supported"));
            }
            Op::ConvTranspose(ConvTransposeOptions::new(
                pair("strides", 1)?,
                [top, left],
                pair("output_padding", 0)?,
                pair("dilations", 1)?,
                attributes.int("group").unwrap_or(1) as usize,
            ))
        }
        "BatchNormalization" => Op::BatchNorm {
            epsilon: attributes.float("epsilon").unwrap_or(1e-5),
        },
        "Relu" => Op::Relu,
        "Sigmoid" => Op::Sigmoid,
        "HardSwish" => Op::HardSwish,
        "HardSigmoid" => Op::HardSigmoid {
            alpha: attributes.float("alpha").unwrap_or(0.2),
            beta: attributes.float("beta").unwrap_or(0.5),
        },
        "Clip" => {
            for slot in 1..node.input.len() {
                if !node.input[slot].is_empty() {
                    constant(slot)?;
                }
            }
            Op::Clip
        }
        "Add" => Op::Add,
        "Sub" => Op::Sub,
        "Mul" => Op::Mul,
        "Div" => Op::Div,
        "Concat" => {
            let axis = attributes.int("axis").unwrap_or(1);
            Op::Concat {
                axis: if axis < 0 { axis + 4 } else { axis } as usize,
            }
        }
        "MaxPool" => {
            let mut options = MaxPoolOptions::new(pair("kernel_shape", 1)?);
            options.stride = pair("strides", 1)?;
            options.padding = pads()?;
            options.dilation = pair("dilations", 1)?;
            options.ceil_mode = attributes.int("ceil_mode") == Some(1);
            Op::MaxPool(options)
        }
        "AveragePool" => {
            let mut options = AvgPoolOptions::new(pair("kernel_shape", 1)?);
            options.stride = pair("strides", 1)?;
            options.padding = pads()?;
            options.count_include_pad = attributes.int("count_include_pad") == Some(1);
            options.ceil_mode = attributes.int("ceil_mode") == Some(1);
            Op::AveragePool(options)
        }
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "ReduceMean" => {
            if attributes.int("keepdims") == Some(0) {
                return Err(refuse("keepdims=0 changes the rank; only rank 4 runs"));
            }
            let axes: Vec<i64> = match (attributes.ints("axes"), node.input.get(1)) {
                (Some(axes), _) => axes.to_vec(),
                (None, Some(_)) => constant(1)?.values.iter().map(|&v| v as i64).collect(),
                (None, None) => vec![0, 1, 2, 3],
            };
            Op::ReduceMean {
                axes: axes
                    .iter()
                    .map(|&a| if a < 0 { a + 4 } else { a } as usize)
                    .collect(),
            }
        }
        "Resize" => resize_op(node, &attributes, constants).map_err(|w| refuse(&w))?,
        "Transpose" => match attributes.ints("perm") {
            Some([a, b, c, d]) => Op::Transpose([*a, *b, *c, *d].map(|v| v as usize)),
            other => return Err(refuse(&format!("perm {other:?} is not rank 4"))),
        },
        "Reshape" => {
            let target = constant(1)?;
            if target.values.len() != 4 {
                return Err(refuse("only rank-4 targets are supported"));
            }
            Op::Reshape
        }
        "Identity" => Op::Identity,
        other => return Err(refuse(&format!("the op {other} is not supported"))),
    };
    Ok(Node {
        op,
        inputs: node.input.clone(),
        output,
    })
}

/// Resize as burn's interpolate: nearest (asymmetric or half-pixel, integer up-scaling) or
/// linear (half-pixel or align-corners), by constant scales or sizes; linear asymmetric by
/// whole constant scales as [`upsample_asymmetric`].
fn resize_op(
    node: &NodeProto,
    attributes: &Attributes<'_>,
    constants: &HashMap<String, Constant>,
) -> Result<Op, String> {
    let mode = attributes.string("mode").unwrap_or("nearest");
    let coordinates = attributes
        .string("coordinate_transformation_mode")
        .unwrap_or("half_pixel");
    let input = |slot: usize| {
        node.input
            .get(slot)
            .filter(|n| !n.is_empty())
            .and_then(|n| constants.get(n))
            .filter(|c| c.values.len() == 4)
    };
    if (mode, coordinates) == ("linear", "asymmetric") {
        let whole = |s: f32| (s >= 1.0 && s.fract() == 0.0).then_some(s as usize);
        return match input(2).map(|s| (whole(s.values[2]), whole(s.values[3]))) {
            Some((Some(height), Some(width))) => Ok(Op::UpsampleAsymmetric([height, width])),
            _ => Err("linear asymmetric resizing needs constant whole scales".into()),
        };
    }
    let (mode, align_corners) = match (mode, coordinates) {
        ("linear", "half_pixel" | "pytorch_half_pixel") => (InterpolateMode::Bilinear, false),
        ("linear", "align_corners") => (InterpolateMode::Bilinear, true),
        ("nearest", "asymmetric" | "half_pixel") => (InterpolateMode::Nearest, false),
        other => return Err(format!("mode and coordinates {other:?} are not supported")),
    };
    let options = InterpolateOptions::new(mode).with_align_corners(align_corners);
    match (input(2), input(3)) {
        (Some(scales), _) => Ok(options.with_scale_factor([scales.values[2], scales.values[3]])),
        (None, Some(sizes)) => {
            Ok(options.with_output_size([sizes.values[2] as usize, sizes.values[3] as usize]))
        }
        _ => Err("scales or sizes must be constant initializers of 4 values".into()),
    }
    .map(Op::Resize)
}

/// Linear up-sampling of `x` along `axis` by the whole `factor`, output position `i` read at
/// `i / factor` (ONNX "asymmetric"): output `factor·k + j` is `x[k]·(1 − j/factor) +
/// x[k+1]·(j/factor)`, the last row repeated past the edge.
fn upsample_asymmetric(x: Tensor<4>, axis: usize, factor: usize) -> Tensor<4> {
    if factor == 1 {
        return x;
    }
    let mut dims = x.dims();
    let length = dims[axis];
    let next = Tensor::cat(
        vec![
            x.clone().narrow(axis, 1, length - 1),
            x.clone().narrow(axis, length - 1, 1),
        ],
        axis,
    );
    let phases: Vec<Tensor<5>> = (0..factor)
        .map(|j| {
            let t = j as f32 / factor as f32;
            (x.clone() * (1.0 - t) + next.clone() * t).unsqueeze_dim(axis + 1)
        })
        .collect();
    dims[axis] = length * factor;
    Tensor::cat(phases, axis + 1).reshape(dims)
}

/// A node's attributes by name.
struct Attributes<'a>(&'a [AttributeProto]);

impl Attributes<'_> {
    fn get(&self, name: &str) -> Option<&AttributeProto> {
        self.0.iter().find(|a| a.name.as_deref() == Some(name))
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(|a| a.i)
    }

    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.get(name).map(|a| a.ints.as_slice())
    }

    fn float(&self, name: &str) -> Option<f32> {
        self.get(name).and_then(|a| a.f)
    }

    fn string(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|a| a.s.as_deref())
            .and_then(|s| std::str::from_utf8(s).ok())
    }
}

/// The dimensions and values of an f32 or int64 initializer (ints as f32).
fn tensor_values(tensor: &TensorProto) -> Result<(Vec<usize>, Vec<f32>), String> {
    let name = tensor.name.as_deref().unwrap_or_default();
    let dims: Vec<usize> = tensor.dims.iter().map(|&d| d as usize).collect();
    let raw = tensor.raw_data.as_deref();
    let values: Vec<f32> = match DataType::try_from(tensor.data_type.unwrap_or_default()) {
        Ok(DataType::Float) => match raw {
            Some(bytes) => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4")))
                .collect(),
            None => tensor.float_data.clone(),
        },
        Ok(DataType::Int64) => int64_values(tensor)
            .unwrap_or_default()
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        _ => return Err(format!("initializer '{name}' is neither f32 nor int64")),
    };
    if values.len() != dims.iter().product::<usize>() {
        return Err(format!(
            "initializer '{name}' holds {} values for dims {dims:?} (external data is not read)",
            values.len()
        ));
    }
    Ok((dims, values))
}
