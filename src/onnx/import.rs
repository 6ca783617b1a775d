//! Rewriting a foreign segmentation model into the model contract (`import`): the one door
//! through which other people's ONNX files enter, so nothing downstream special-cases them.
//!
//! ```text
//! input(N×3×H×W) → [Transpose to NHWC] → original graph → [final Sigmoid/Softmax removed]
//!                → [Transpose to NCHW] → [bilinear Resize, when the output is a whole
//!                   fraction of the input's size] → logits(N×C×H×W)
//! ```
//!
//! What a graph says is detected (channels-last input, a probability output, a fixed batch);
//! what it cannot say (the input range, class names) comes from [`ImportOptions`].

use std::collections::HashSet;

use super::graph::{dim_param, dim_value, ints_attribute, string_attribute, tensor_info};
#[cfg(feature = "train")]
use super::interpret::GraphModel;
use super::proto::tensor_proto::DataType;
use super::proto::tensor_shape_proto::dimension::Value;
use super::proto::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use super::{INPUT, OUTPUT, VALUE_MOVING_OPS, int64_values};
use crate::infer::ModelCard;
use crate::infer::model_card::default_colors;

/// The imported graph's own output, when [`OUTPUT`] up-samples it to the input's size.
const COARSE_OUTPUT: &str = "segstream_coarse_logits";

/// How the model's tensors are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutChoice {
    /// Channels-last when the input's last dimension is 3 and its second is not.
    Auto,
    /// N×C×H×W.
    Nchw,
    /// N×H×W×C (TensorFlow, TFLite and MediaPipe conversions).
    Nhwc,
}

/// What the model's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputChoice {
    /// A probability when the graph ends in Sigmoid or Softmax, else logits.
    Auto,
    /// Probabilities; turned into logits (the final activation removed, or log-odds added).
    Probability,
    /// Logits already.
    Logits,
}

/// What the user tells `import` beyond what the graph says.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Tensor layout.
    pub layout: LayoutChoice,
    /// What the output holds.
    pub output: OutputChoice,
    /// Class names (default: `foreground` for one channel, `class0…` for several).
    pub classes: Option<Vec<String>>,
    /// Overlay colours, one per class (default: the palette).
    pub colors: Option<Vec<[u8; 3]>>,
    /// Input normalisation: RGB in 0..1, minus mean, divided by std.
    pub mean: [f32; 3],
    /// See `mean`.
    pub std: [f32; 3],
    /// Make the batch dimension dynamic (literal batch-1 reshapes rewritten).
    pub dynamic_batch: bool,
    /// Free the height and width when whole-frame pools are all that fix them.
    pub any_size: bool,
    /// Where the model came from and under which licence, recorded in the card.
    pub source: serde_json::Value,
}

/// A rewritten model and what was done to it.
#[derive(Debug)]
pub struct Imported {
    /// The model, following the contract.
    pub model: ModelProto,
    /// Its card (also in the model's metadata).
    pub card: ModelCard,
    /// What was changed, one line each.
    pub changes: Vec<String>,
    /// Whether the original's tensors are channels-last.
    pub channels_last: bool,
    /// Whether the original's output is a probability (now turned into logits).
    pub was_probability: bool,
    /// When the graph was freed from its converted size: the multiple input sides need.
    pub any_size: Option<usize>,
}

/// Rewrites `model` into the contract. Refusals are `Err(reason)`, naming the tensor and why.
///
/// # Errors
/// Several inputs, an input or output that is not a rank-4 f32 image tensor, an input without
/// 3 channels, a layout that cannot be told, a spatial size that is not fixed.
pub fn rewrite(mut model: ModelProto, options: &ImportOptions) -> Result<Imported, String> {
    let mut graph = model.graph.take().ok_or("the file holds no graph")?;
    let initializers: HashSet<String> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.clone())
        .collect();
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(name_of(i)))
        .collect();
    let [input] = inputs[..] else {
        let names: Vec<&str> = inputs.iter().map(|i| name_of(i)).collect();
        return Err(format!(
            "it has {} inputs ({}); import takes models with one image input",
            names.len(),
            names.join(", ")
        ));
    };
    let [output] = &graph.output[..] else {
        return Err(format!(
            "it has {} outputs; import takes models with one output",
            graph.output.len()
        ));
    };
    let (input_name, output_name) = (name_of(input).to_string(), name_of(output).to_string());
    let input_dims = image_dims(input)?;
    let output_dims = image_dims(output)?;
    let channels_last = match options.layout {
        LayoutChoice::Nchw => false,
        LayoutChoice::Nhwc => true,
        LayoutChoice::Auto => match (input_dims[1], input_dims[3]) {
            (Some(3), _) => false,
            (_, Some(3)) => true,
            _ => {
                return Err(format!(
                    "cannot tell the layout of input '{input_name}' (shape {}): give --layout",
                    shape_text(&input_dims)
                ));
            }
        },
    };
    let [channel_axis, height_axis, width_axis] = if channels_last { [3, 1, 2] } else { [1, 2, 3] };
    if input_dims[channel_axis] != Some(3) {
        return Err(format!(
            "input '{input_name}' (shape {}) does not have 3 channels (RGB)",
            shape_text(&input_dims)
        ));
    }
    let (Some(height), Some(width)) = (input_dims[height_axis], input_dims[width_axis]) else {
        return Err(format!(
            "input '{input_name}' (shape {}) has no fixed height and width",
            shape_text(&input_dims)
        ));
    };
    let Some(num_classes) = output_dims[channel_axis] else {
        return Err(format!(
            "output '{output_name}' (shape {}) has no fixed class dimension",
            shape_text(&output_dims)
        ));
    };
    let mut changes = Vec::new();

    // The final activation: removed when detected, log-odds appended when only declared.
    let mut last = output_name.clone();
    let activation = final_activation(&graph.node, &output_name);
    let was_probability = match (options.output, activation) {
        (OutputChoice::Logits, _) | (OutputChoice::Auto, None) => false,
        (_, Some(index)) => {
            let node = graph.node.remove(index);
            let (from, to) = (node.input[0].clone(), node.output[0].clone());
            rename_uses(&mut graph.node, &to, &from);
            if last == to {
                last = from;
            }
            changes.push(format!(
                "removed the final {} so that the output is logits",
                node.op_type.as_deref().unwrap_or("activation")
            ));
            true
        }
        (OutputChoice::Probability, None) => {
            last = append_log_odds(&mut graph.node, &mut graph.initializer, &last, num_classes);
            changes.push("appended log-odds, turning the probability into logits".into());
            true
        }
    };

    // The contract's edges: `input` N×3×H×W in, `logits` N×C×H×W out.
    let to_original = if channels_last {
        changes.push("input transposed from N×3×H×W to the model's N×H×W×3".into());
        layout_node("Transpose", INPUT, &input_name, Some(&[0, 2, 3, 1]))
    } else {
        layout_node("Identity", INPUT, &input_name, None)
    };
    graph.node.insert(0, to_original);
    let factor = upsampling_factor(
        [height, width],
        [output_dims[height_axis], output_dims[width_axis]],
    )?;
    let logits = if factor > 1 { COARSE_OUTPUT } else { OUTPUT };
    let to_logits = if channels_last {
        changes.push("output transposed from N×H×W×C to N×C×H×W".into());
        layout_node("Transpose", &last, logits, Some(&[0, 3, 1, 2]))
    } else {
        layout_node("Identity", &last, logits, None)
    };
    graph.node.push(to_logits);
    if factor > 1 {
        append_upsampling(&mut graph, factor);
        changes.push(format!(
            "output up-sampled {factor}× (bilinear) to the input's size"
        ));
    }

    let batch = if options.dynamic_batch {
        let reshapes = make_batch_dynamic(&graph.node, &mut graph.initializer);
        if input_dims[0].is_some() {
            changes.push(format!(
                "batch made dynamic (was {}; {reshapes} reshapes rewritten)",
                shape_text(&input_dims[..1])
            ));
        }
        dim_param("batch")
    } else {
        dim_value(input_dims[0].unwrap_or(1) as usize)
    };
    let (height, width, num_classes) = (height as usize, width as usize, num_classes as usize);
    // Initializers that old IRs also list as inputs stay listed.
    let listed_initializers: Vec<ValueInfoProto> = graph
        .input
        .drain(..)
        .filter(|i| initializers.contains(name_of(i)))
        .collect();
    graph.input = vec![tensor_info(
        INPUT,
        [
            batch.clone(),
            dim_value(3),
            dim_value(height),
            dim_value(width),
        ],
    )];
    graph.input.extend(listed_initializers);
    graph.output = vec![tensor_info(
        OUTPUT,
        [
            batch,
            dim_value(num_classes),
            dim_value(height),
            dim_value(width),
        ],
    )];
    // Shapes recorded for the old layout and batch would contradict the new ones.
    graph.value_info.clear();
    let removed = super::transposes::remove_round_trips(&mut graph);
    if removed > 0 {
        changes.push(format!(
            "{removed} Transposes removed (layout round trips around element-wise ops)"
        ));
    }

    model.graph = Some(graph);
    let any_size = if options.any_size {
        make_size_agnostic(&mut model, [height, width], &mut changes)?
    } else {
        None
    };
    let card = card(options, num_classes, [height, width], &changes)?;
    model.metadata_props = super::metadata_entries(card.to_metadata());
    model.producer_name = Some("segstream import".into());
    model.producer_version = Some(env!("CARGO_PKG_VERSION").into());
    Ok(Imported {
        model,
        card,
        changes,
        channels_last,
        was_probability,
        any_size,
    })
}

/// Without the graph interpreter (a build without `train`), graphs keep the size they were
/// converted at.
#[cfg(not(feature = "train"))]
fn make_size_agnostic(
    _: &mut ModelProto,
    _: [usize; 2],
    _: &mut Vec<String>,
) -> Result<Option<usize>, String> {
    Ok(None)
}

/// Frees a graph from the input size it was converted at: whole-frame pools become
/// GlobalAveragePool (the same result at that size) and the height and width become dynamic
/// (the caller checks that another size runs, else imports the graph with its own size).
/// Returns the stride input sides must be multiples of, or `None` when the graph was left as
/// it is (ops the interpreter does not run).
#[cfg(feature = "train")]
fn make_size_agnostic(
    model: &mut ModelProto,
    size: [usize; 2],
    changes: &mut Vec<String>,
) -> Result<Option<usize>, String> {
    let Ok(interpreted) = GraphModel::from_onnx(model, &burn::prelude::Device::flex()) else {
        return Ok(None);
    };
    let trace = interpreted.trace_sizes(size);
    let graph = model.graph.as_mut().expect("rewrite set the graph");
    for node in &mut graph.node {
        if node
            .output
            .iter()
            .any(|o| trace.whole_frame_pools.contains(o))
        {
            node.op_type = Some("GlobalAveragePool".into());
            node.attribute.clear();
        }
    }
    for info in graph.input.iter_mut().take(1).chain(&mut graph.output) {
        set_spatial_dims(info, [dim_param("height"), dim_param("width")]);
    }
    let pools = match trace.whole_frame_pools.len() {
        0 => String::new(),
        n => format!("{n} whole-frame pools made global, so "),
    };
    changes.push(format!(
        "{pools}the model takes any size that is a multiple of {} (it was converted at {}x{})",
        trace.stride, size[0], size[1]
    ));
    Ok(Some(trace.stride))
}

/// Sets dimensions 2 and 3 (height, width) of an N×C×H×W tensor's type.
#[cfg(feature = "train")]
fn set_spatial_dims(
    info: &mut ValueInfoProto,
    dims: [super::proto::tensor_shape_proto::Dimension; 2],
) {
    use super::proto::type_proto::Value as Type;
    if let Some(Type::TensorType(tensor)) = info.r#type.as_mut().and_then(|t| t.value.as_mut())
        && let Some(shape) = tensor.shape.as_mut()
        && shape.dim.len() == 4
    {
        let [height, width] = dims;
        shape.dim[2] = height;
        shape.dim[3] = width;
    }
}

fn name_of(info: &ValueInfoProto) -> &str {
    info.name.as_deref().unwrap_or_default()
}

/// The dimensions of a rank-4 f32 tensor (`None` where dynamic), or why it is not one.
fn image_dims(info: &ValueInfoProto) -> Result<[Option<i64>; 4], String> {
    use super::proto::type_proto::Value as Type;
    let name = name_of(info);
    let Some(Type::TensorType(tensor)) = info.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(format!("'{name}' is not a tensor"));
    };
    if tensor.elem_type != Some(DataType::Float as i32) {
        return Err(format!("'{name}' does not hold f32 values"));
    }
    let dims: Vec<Option<i64>> = tensor
        .shape
        .as_ref()
        .map(|shape| {
            shape
                .dim
                .iter()
                .map(|d| match d.value {
                    Some(Value::DimValue(v)) if v > 0 => Some(v),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    <[Option<i64>; 4]>::try_from(dims.as_slice()).map_err(|_| {
        format!(
            "'{name}' has rank {} (shape {}); an image tensor has rank 4",
            dims.len(),
            shape_text(&dims)
        )
    })
}

/// `[1, 256, 256, 3]`, with `?` for dynamic dimensions.
fn shape_text(dims: &[Option<i64>]) -> String {
    let dims: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |v| v.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

/// The index of the Sigmoid or Softmax that makes `output` a probability: the node producing
/// it, or found by walking back through layout-only ops that nothing else reads.
fn final_activation(nodes: &[NodeProto], output: &str) -> Option<usize> {
    let mut tensor = output.to_string();
    loop {
        let index = nodes.iter().position(|n| n.output.contains(&tensor))?;
        let op = nodes[index].op_type.as_deref().unwrap_or_default();
        if matches!(op, "Sigmoid" | "Softmax") {
            return Some(index);
        }
        let input = nodes[index].input.first()?;
        let readers = nodes.iter().filter(|n| n.input.contains(input)).count();
        if !VALUE_MOVING_OPS.contains(&op) || readers != 1 {
            return None;
        }
        tensor = input.clone();
    }
}

/// Makes every node that reads `from` read `to` instead.
fn rename_uses(nodes: &mut [NodeProto], from: &str, to: &str) {
    for name in nodes.iter_mut().flat_map(|n| n.input.iter_mut()) {
        if name == from {
            *name = to.to_string();
        }
    }
}

/// Appends log-odds of the probability `p` and returns the new output's name: log(p + ε) −
/// log(1 − p + ε) for one class (sigmoid's inverse), log(p + ε) for several (softmax's, up to
/// a constant).
fn append_log_odds(
    nodes: &mut Vec<NodeProto>,
    initializers: &mut Vec<TensorProto>,
    probability: &str,
    num_classes: i64,
) -> String {
    const EPSILON: f32 = 1e-6;
    let scalar = |name: &str, value: f32| TensorProto {
        name: Some(name.into()),
        data_type: Some(DataType::Float as i32),
        float_data: vec![value],
        ..Default::default()
    };
    initializers.push(scalar("segstream_epsilon", EPSILON));
    initializers.push(scalar("segstream_one", 1.0 + EPSILON));
    let node = |op: &str, inputs: &[&str], output: &str| NodeProto {
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(output.into()),
        ..Default::default()
    };
    nodes.push(node(
        "Add",
        &[probability, "segstream_epsilon"],
        "segstream_p",
    ));
    nodes.push(node("Log", &["segstream_p"], "segstream_log_p"));
    if num_classes > 1 {
        return "segstream_log_p".into();
    }
    nodes.push(node("Sub", &["segstream_one", probability], "segstream_q"));
    nodes.push(node("Log", &["segstream_q"], "segstream_log_q"));
    nodes.push(node(
        "Sub",
        &["segstream_log_p", "segstream_log_q"],
        "segstream_log_odds",
    ));
    "segstream_log_odds".into()
}

/// How many times smaller than the input (`height`, `width`) the output is: 1 when it is as
/// large or its size is not known, else the same whole factor on both sides.
///
/// # Errors
/// When the output is smaller by factors that differ or are not whole.
fn upsampling_factor([height, width]: [i64; 2], output: [Option<i64>; 2]) -> Result<i64, String> {
    let [Some(out_height), Some(out_width)] = output else {
        return Ok(1);
    };
    if (out_height, out_width) == (height, width) {
        return Ok(1);
    }
    let factor = height / out_height.max(1);
    if out_height * factor != height || out_width * factor != width {
        return Err(format!(
            "its output is {out_height}x{out_width} for a {height}x{width} input: not the \
             input's size nor a whole fraction of it"
        ));
    }
    Ok(factor)
}

/// Appends a bilinear Resize by `factor` from [`COARSE_OUTPUT`] to [`OUTPUT`], so that the
/// logits have the input's size (as segstream trains and scores them).
fn append_upsampling(graph: &mut GraphProto, factor: i64) {
    const SCALES: &str = "segstream_upsampling_scales";
    graph.initializer.push(TensorProto {
        name: Some(SCALES.into()),
        data_type: Some(DataType::Float as i32),
        dims: vec![4],
        float_data: vec![1.0, 1.0, factor as f32, factor as f32],
        ..Default::default()
    });
    graph.node.push(NodeProto {
        op_type: Some("Resize".into()),
        input: vec![COARSE_OUTPUT.into(), String::new(), SCALES.into()],
        output: vec![OUTPUT.into()],
        name: Some("segstream_upsampling".into()),
        attribute: vec![
            string_attribute("mode", "linear"),
            string_attribute("coordinate_transformation_mode", "half_pixel"),
        ],
        ..Default::default()
    });
}

/// A Transpose (with `perm`) or Identity from `from` to `to`.
fn layout_node(op: &str, from: &str, to: &str, perm: Option<&[usize]>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        input: vec![from.into()],
        output: vec![to.into()],
        name: Some(format!("segstream_{to}")),
        attribute: perm
            .map(|p| ints_attribute("perm", p))
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// Rewrites the constant shapes of Reshape nodes that spell the batch as a literal 1 (as
/// converters leave them) to -1, "whatever the batch is"; returns how many were rewritten.
fn make_batch_dynamic(nodes: &[NodeProto], initializers: &mut [TensorProto]) -> usize {
    let shapes: HashSet<&str> = nodes
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("Reshape"))
        .filter_map(|n| n.input.get(1).map(String::as_str))
        .collect();
    let mut rewritten = 0;
    for tensor in initializers
        .iter_mut()
        .filter(|t| shapes.contains(t.name.as_deref().unwrap_or_default()))
    {
        let Some(mut shape) = int64_values(tensor) else {
            continue;
        };
        if shape.len() >= 2 && shape[0] == 1 && !shape.contains(&-1) {
            shape[0] = -1;
            tensor.raw_data = None;
            tensor.int64_data = shape;
            rewritten += 1;
        }
    }
    rewritten
}

/// The card of the imported model.
fn card(
    options: &ImportOptions,
    num_classes: usize,
    input_size: [usize; 2],
    changes: &[String],
) -> Result<ModelCard, String> {
    let mut card = ModelCard::with_defaults(num_classes, input_size);
    if let Some(classes) = &options.classes {
        if classes.len() != num_classes {
            return Err(format!(
                "--classes names {} classes but the output has {num_classes} channels",
                classes.len()
            ));
        }
        card.classes = classes.clone();
    }
    card.colors = match &options.colors {
        Some(colors) if colors.len() != num_classes => {
            return Err(format!(
                "--colors gives {} colours for {num_classes} classes",
                colors.len()
            ));
        }
        Some(colors) => colors.clone(),
        None => default_colors(num_classes),
    };
    card.mean = options.mean;
    card.std = options.std;
    card.architecture = "imported".into();
    card.training = serde_json::json!({
        "source": options.source,
        "import_changes": changes,
    });
    card.validate()?;
    Ok(card)
}
