//! Test-time augmentation baked into a model (`segstream views`): the wrapped graph runs the
//! model on several views of each picture — resized to each of a list of sizes, and mirrored
//! left to right — and outputs the mean of their logits at the input's own size. A network
//! trained at one scale errs differently at each; the mean of its views errs less. The views
//! share the model's weights, so the file barely grows; the cost is one inference per view.
//!
//! The wrapper takes any input size: every view is resized inside the graph (bilinear, centred
//! samples, like the engine's own resizes).

use std::collections::HashSet;

use super::graph::{dim_param, dim_value, int_attribute, string_attribute, tensor_info};
use super::proto::tensor_proto::DataType;
use super::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use super::{INPUT, OUTPUT};

/// Which views of each picture the wrapped model averages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Views {
    /// Sizes (height, width) the picture is resized to, one view each.
    pub sizes: Vec<[usize; 2]>,
    /// Also each size's mirror image (twice the views).
    pub mirror: bool,
}

impl Views {
    /// How many views of each picture are averaged.
    pub fn count(&self) -> usize {
        self.sizes.len() * if self.mirror { 2 } else { 1 }
    }
}

/// `model` (in the contract, `classes` output channels) wrapped so that it averages `views`;
/// `Err(reason)` for a graph it cannot copy.
///
/// # Errors
/// No sizes, a graph with subgraphs (If, Loop), or one without a graph.
pub fn with_views(model: &ModelProto, classes: usize, views: &Views) -> Result<ModelProto, String> {
    if views.sizes.is_empty() {
        return Err("no view sizes".into());
    }
    let inner = model.graph.as_ref().ok_or("the file holds no graph")?;
    if inner.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    }) {
        return Err("its graph has subgraphs (If, Loop), which are not copied".into());
    }
    let mut wrapper = Wrapper::new(inner);
    let shape = wrapper.node("Shape", &[INPUT], vec![]);
    let batch = wrapper.slice(&shape, 0, 1, 0, 1);
    let height_width = wrapper.slice(&shape, 2, 4, 0, 1);
    let channels = wrapper.int64s("classes", &[classes as i64]);
    let output_size = wrapper.node(
        "Concat",
        &[&batch, &channels, &height_width],
        vec![int_attribute("axis", 0)],
    );
    let mut sums = Vec::new();
    for (view, &[height, width]) in views.sizes.iter().enumerate() {
        let size = wrapper.int64s(&format!("size{view}"), &[3, height as i64, width as i64]);
        let input_size = wrapper.node("Concat", &[&batch, &size], vec![int_attribute("axis", 0)]);
        let resized = wrapper.resize(INPUT, &input_size);
        let logits = if views.mirror {
            let mirrored = wrapper.mirror(&resized);
            let both = wrapper.node(
                "Concat",
                &[&resized, &mirrored],
                vec![int_attribute("axis", 0)],
            );
            let logits = wrapper.copy_of_model(&both, view);
            let [plain, mirrored] = wrapper.halves(&logits);
            let unmirrored = wrapper.mirror(&mirrored);
            wrapper.node("Add", &[&plain, &unmirrored], vec![])
        } else {
            wrapper.copy_of_model(&resized, view)
        };
        sums.push(wrapper.resize(&logits, &output_size));
    }
    let mut total = sums[0].clone();
    for sum in &sums[1..] {
        total = wrapper.node("Add", &[&total, sum], vec![]);
    }
    let share = wrapper.float("share", 1.0 / views.count() as f32);
    wrapper.node_into("Mul", &[&total, &share], &[OUTPUT], vec![]);

    let mut wrapped = model.clone();
    wrapped.graph = Some(GraphProto {
        name: inner.name.clone(),
        node: wrapper.nodes,
        initializer: wrapper.initializers,
        input: vec![tensor_info(
            INPUT,
            [
                dim_param("batch"),
                dim_value(3),
                dim_param("height"),
                dim_param("width"),
            ],
        )],
        output: vec![tensor_info(
            OUTPUT,
            [
                dim_param("batch"),
                dim_value(classes),
                dim_param("height"),
                dim_param("width"),
            ],
        )],
        ..Default::default()
    });
    Ok(wrapped)
}

/// The wrapper's graph as it grows: its own nodes (named `views/…`) and the model's copies.
struct Wrapper<'a> {
    inner: &'a GraphProto,
    shared: HashSet<String>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl<'a> Wrapper<'a> {
    fn new(inner: &'a GraphProto) -> Self {
        Wrapper {
            inner,
            // Weights stay one copy, read by every view.
            shared: inner
                .initializer
                .iter()
                .filter_map(|t| t.name.clone())
                .collect(),
            nodes: Vec::new(),
            initializers: inner.initializer.clone(),
        }
    }

    /// Appends a node whose one output gets a fresh name, returned.
    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let output = format!("views/{}{}", op.to_lowercase(), self.nodes.len());
        self.node_into(op, inputs, &[&output], attributes);
        output
    }

    /// Appends a node writing `outputs`.
    fn node_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("views/{op}_{}", self.nodes.len())),
            input: inputs.iter().map(|&i| i.to_string()).collect(),
            output: outputs.iter().map(|&o| o.to_string()).collect(),
            attribute: attributes,
            ..Default::default()
        });
    }

    fn initializer(&mut self, name: &str, tensor: TensorProto) -> String {
        let name = format!("views/{name}");
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            ..tensor
        });
        name
    }

    fn int64s(&mut self, name: &str, values: &[i64]) -> String {
        let tensor = TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(DataType::Int64 as i32),
            int64_data: values.to_vec(),
            ..Default::default()
        };
        self.initializer(name, tensor)
    }

    fn float(&mut self, name: &str, value: f32) -> String {
        let tensor = TensorProto {
            data_type: Some(DataType::Float as i32),
            float_data: vec![value],
            ..Default::default()
        };
        self.initializer(name, tensor)
    }

    /// `x[start..end]` along `axis`, every `step`-th element.
    fn slice(&mut self, x: &str, start: i64, end: i64, axis: i64, step: i64) -> String {
        let n = self.nodes.len();
        let inputs = [
            ("starts", start),
            ("ends", end),
            ("axes", axis),
            ("steps", step),
        ]
        .map(|(name, value)| self.int64s(&format!("{name}{n}"), &[value]));
        let [starts, ends, axes, steps] = inputs.each_ref().map(String::as_str);
        self.node("Slice", &[x, starts, ends, axes, steps], vec![])
    }

    /// `x` mirrored left to right (its last axis reversed).
    fn mirror(&mut self, x: &str) -> String {
        self.slice(x, -1, i64::MIN, 3, -1)
    }

    /// `x` resized bilinearly (centred samples) to the shape in the tensor `size`.
    fn resize(&mut self, x: &str, size: &str) -> String {
        let attributes = vec![
            string_attribute("mode", "linear"),
            string_attribute("coordinate_transformation_mode", "half_pixel"),
        ];
        self.node("Resize", &[x, "", "", size], attributes)
    }

    /// The first and second halves of `x`'s batch.
    fn halves(&mut self, x: &str) -> [String; 2] {
        let n = self.nodes.len();
        let halves = [0, 1].map(|h| format!("views/half{n}_{h}"));
        let [first, second] = halves.each_ref().map(String::as_str);
        self.node_into(
            "Split",
            &[x],
            &[first, second],
            vec![int_attribute("axis", 0)],
        );
        halves
    }

    /// A copy of the model's nodes reading `input`; returns the name of its logits. Every
    /// value it computes is renamed `view<view>/…`; the weights are shared.
    fn copy_of_model(&mut self, input: &str, view: usize) -> String {
        let prefix = format!("view{view}/");
        let rename = |name: &String| -> String {
            if name == INPUT {
                input.to_string()
            } else if name.is_empty() || self.shared.contains(name) {
                name.clone()
            } else {
                format!("{prefix}{name}")
            }
        };
        let copies: Vec<NodeProto> = self
            .inner
            .node
            .iter()
            .map(|node| NodeProto {
                name: node.name.as_ref().map(|n| format!("{prefix}{n}")),
                input: node.input.iter().map(rename).collect(),
                output: node.output.iter().map(rename).collect(),
                ..node.clone()
            })
            .collect();
        self.nodes.extend(copies);
        format!("{prefix}{OUTPUT}")
    }
}
