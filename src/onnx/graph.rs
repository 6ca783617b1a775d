//! [`GraphBuilder`]: appends ONNX nodes and initializers and assembles the final model.

use prost::Message;

use super::proto::{
    self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension, tensor_shape_proto::dimension::Value,
};
use super::{INPUT, IR_VERSION, OPSET, OUTPUT};

/// A dense f32 tensor destined to be an initializer (weights, biases).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values in row-major order.
    pub values: Vec<f32>,
}

impl Weights {
    /// A tensor of `dims` holding `values`.
    ///
    /// # Panics
    /// If the number of values does not match the dimensions (a bug in the caller).
    pub fn new(dims: Vec<usize>, values: Vec<f32>) -> Self {
        assert_eq!(
            dims.iter().product::<usize>(),
            values.len(),
            "weights of {dims:?}"
        );
        Weights { dims, values }
    }
}

/// Builds the graph of one model; each op method appends a node and returns its output name.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Put before every name the builder makes, so that its nodes can join another graph.
    prefix: String,
}

/// Geometry of a convolution or pooling window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Padding as ONNX orders it: top, left, bottom, right.
    pub pads: [usize; 4],
}

impl GraphBuilder {
    /// An empty graph whose input is [`INPUT`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder whose node, value and initializer names all start with `prefix`: its
    /// nodes are meant for another graph ([`GraphBuilder::into_parts`]).
    pub fn prefixed(prefix: &str) -> Self {
        GraphBuilder {
            prefix: prefix.to_string(),
            ..Self::default()
        }
    }

    /// Adds `weights` as an initializer and returns its name.
    pub fn constant(&mut self, weights: &Weights) -> String {
        let name = format!("{}w{}", self.prefix, self.initializers.len());
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: weights.dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(
                weights
                    .values
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            ..Default::default()
        });
        name
    }

    /// `Conv`; `weight` is out×in×kh×kw, padding and stride from `window`.
    pub fn conv(
        &mut self,
        x: &str,
        weight: &Weights,
        bias: Option<&Weights>,
        window: Window,
    ) -> String {
        self.weighted("Conv", x, weight, bias, window, vec![])
    }

    /// Depthwise `Conv` (one group per channel); `weight` is channels×1×kh×kw.
    pub fn depthwise_conv(
        &mut self,
        x: &str,
        weight: &Weights,
        bias: Option<&Weights>,
        window: Window,
    ) -> String {
        let groups = int_attribute("group", weight.dims[0] as i64);
        self.weighted("Conv", x, weight, bias, window, vec![groups])
    }

    /// `ConvTranspose` without output padding; `weight` is in×out×kh×kw.
    pub fn conv_transpose(
        &mut self,
        x: &str,
        weight: &Weights,
        bias: Option<&Weights>,
        window: Window,
    ) -> String {
        self.weighted("ConvTranspose", x, weight, bias, window, vec![])
    }

    /// A convolution-like op: input, weight and optional bias; kernel size from the weight.
    fn weighted(
        &mut self,
        op: &str,
        x: &str,
        weight: &Weights,
        bias: Option<&Weights>,
        window: Window,
        mut attributes: Vec<AttributeProto>,
    ) -> String {
        let mut inputs = vec![x.to_string(), self.constant(weight)];
        inputs.extend(bias.map(|b| self.constant(b)));
        let kernel = [weight.dims[2], weight.dims[3]];
        attributes.extend(window_attributes(Window { kernel, ..window }));
        self.node(op, inputs, attributes)
    }

    /// `MaxPool`.
    pub fn max_pool(&mut self, x: &str, window: Window) -> String {
        self.node("MaxPool", vec![x.to_string()], window_attributes(window))
    }

    /// `Relu`.
    pub fn relu(&mut self, x: &str) -> String {
        self.node("Relu", vec![x.to_string()], vec![])
    }

    /// Element-wise `Add`.
    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", vec![a.to_string(), b.to_string()], vec![])
    }

    /// Bilinear `Resize` (half-pixel centres) of an N×C×H×W tensor by `factor` along H and W.
    pub fn upsample(&mut self, x: &str, factor: usize) -> String {
        let scales = self.constant(&Weights::new(
            vec![4],
            vec![1.0, 1.0, factor as f32, factor as f32],
        ));
        let attributes = vec![
            string_attribute("mode", "linear"),
            string_attribute("coordinate_transformation_mode", "half_pixel"),
        ];
        self.node(
            "Resize",
            vec![x.to_string(), String::new(), scales],
            attributes,
        )
    }

    /// `Concat` along `axis`.
    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        let inputs = xs.iter().map(|x| x.to_string()).collect();
        self.node("Concat", inputs, vec![int_attribute("axis", axis)])
    }

    /// Finishes the model: `output` becomes [`OUTPUT`] with `num_classes` channels, the input has
    /// `input_size` (height, width) fixed or, when `None`, dynamic. Returns the encoded file.
    pub fn finish(
        mut self,
        output: &str,
        num_classes: usize,
        input_size: Option<[usize; 2]>,
        metadata: Vec<(String, String)>,
    ) -> Vec<u8> {
        self.node_named("Identity", vec![output.to_string()], OUTPUT, vec![]);
        let spatial = match input_size {
            Some([h, w]) => [dim_value(h), dim_value(w)],
            None => [dim_param("height"), dim_param("width")],
        };
        let graph = GraphProto {
            name: Some("segstream".to_string()),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![tensor_info(
                INPUT,
                [
                    dim_param("batch"),
                    dim_value(3),
                    spatial[0].clone(),
                    spatial[1].clone(),
                ],
            )],
            output: vec![tensor_info(
                OUTPUT,
                [
                    dim_param("batch"),
                    dim_value(num_classes),
                    spatial[0].clone(),
                    spatial[1].clone(),
                ],
            )],
            ..Default::default()
        };
        ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET),
            }],
            producer_name: Some("segstream".to_string()),
            producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            graph: Some(graph),
            metadata_props: super::metadata_entries(metadata),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// The nodes and initializers appended so far, for another graph; the last node's output
    /// is renamed `output`.
    pub fn into_parts(mut self, output: &str) -> (Vec<NodeProto>, Vec<TensorProto>) {
        if let Some(last) = self.nodes.last_mut() {
            last.output = vec![output.to_string()];
        }
        (self.nodes, self.initializers)
    }

    fn node(&mut self, op: &str, inputs: Vec<String>, attributes: Vec<AttributeProto>) -> String {
        let output = format!("{}{}{}", self.prefix, op.to_lowercase(), self.nodes.len());
        self.node_named(op, inputs, &output, attributes);
        output
    }

    fn node_named(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        output: &str,
        attributes: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            op_type: Some(op.to_string()),
            name: Some(format!("{}{op}_{}", self.prefix, self.nodes.len())),
            input: inputs,
            output: vec![output.to_string()],
            attribute: attributes,
            ..Default::default()
        });
    }
}

fn window_attributes(window: Window) -> Vec<AttributeProto> {
    vec![
        ints_attribute("kernel_shape", &window.kernel),
        ints_attribute("strides", &window.stride),
        ints_attribute("pads", &window.pads),
    ]
}

/// An ONNX attribute holding one integer.
pub(super) fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// An ONNX attribute holding a list of integers.
pub fn ints_attribute(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.iter().map(|&v| v as i64).collect(),
        ..Default::default()
    }
}

/// An ONNX attribute holding a string.
pub fn string_attribute(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

pub(super) fn dim_value(value: usize) -> Dimension {
    Dimension {
        value: Some(Value::DimValue(value as i64)),
        ..Default::default()
    }
}

pub(super) fn dim_param(name: &str) -> Dimension {
    Dimension {
        value: Some(Value::DimParam(name.to_string())),
        ..Default::default()
    }
}

pub(super) fn tensor_info(name: &str, dims: [Dimension; 4]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(DataType::Float as i32),
                    shape: Some(TensorShapeProto { dim: dims.to_vec() }),
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    }
}
