//! 2-D convolution for training on burn's CPU backend, with faster kernels.
//!
//! A one-group convolution (all of the U-Net's; MediaPipe's and CenterNet's pointwise ones)
//! runs forward and backward as matrix products over each image's column matrix (see
//! [`conv_gemm`]); a depthwise convolution runs plane by plane (see [`conv_depthwise`]); the
//! bias is added in the same pass and its gradient summed per plane. Other grouped
//! convolutions are burn's own. Without autodiff, or on any other device than the CPU
//! backend, [`conv2d`] is burn's convolution.

use std::marker::PhantomData;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;
use burn_flex::FlexTensor;

use super::conv_depthwise;
use super::conv_gemm::{self, Geometry};
use super::flex_data::{tensor, values};
use super::sums::channel_sums;

/// The convolution as a backend extension, so that its autodiff form can carry its own
/// backward pass.
#[backend_extension(Flex, Autodiff)]
pub trait TrainingConv: Backend {
    /// A convolution plus `bias`, added in the same pass. The bias is always given (zeros for
    /// none): backend extensions take no optional tensors.
    fn training_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options)
    }
}

/// The CPU backend's backward pass.
pub trait ConvKernels: Backend {
    /// The gradients of [`TrainingConv::training_conv2d`] for `x`, `weight` and the bias, each
    /// when asked.
    fn training_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        wanted: [bool; 3],
    ) -> [Option<FloatTensor<Self>>; 3];
}

/// The CPU backend's forward pass: one-group convolutions as matrix products, depthwise ones
/// plane by plane, others burn's.
impl TrainingConv for Flex {
    fn training_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some((geometry, kernels)) = kernels(&x, &weight, &options) else {
            return Self::conv2d(x, weight, Some(bias), options);
        };
        let [ho, wo] = geometry.output();
        let (x, weight, bias) = (values(&x), values(&weight), values(&bias));
        let y = (kernels.forward)(&x, &weight, Some(&bias), &geometry);
        tensor(y, vec![geometry.images, geometry.channels_out, ho, wo])
    }
}

impl ConvKernels for Flex {
    fn training_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        [want_x, want_weight, want_bias]: [bool; 3],
    ) -> [Option<FloatTensor<Self>>; 3] {
        let grad_values = values(&grad);
        let db = want_bias.then(|| bias_gradient(&grad, &grad_values));
        let Some((geometry, kernels)) = kernels(&x, &weight, &options) else {
            let dx = want_x.then(|| {
                Self::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone())
            });
            let dw = want_weight.then(|| Self::conv2d_weight_backward(x, weight, grad, options));
            return [dx, dw, db];
        };
        let (x_shape, weight_shape) = (x.shape().dims::<4>(), weight.shape().dims::<4>());
        let (dx, dw) = (kernels.backward)(
            &values(&x),
            &values(&weight),
            &grad_values,
            &geometry,
            [want_x, want_weight],
        );
        [
            dx.map(|dx| tensor(dx, x_shape.to_vec())),
            dw.map(|dw| tensor(dw, weight_shape.to_vec())),
            db,
        ]
    }
}

/// The gradient of a bias from its output's gradient `grad` (whose values are `values`).
pub(super) fn bias_gradient(grad: &FlexTensor, values: &[f32]) -> FlexTensor {
    let [_, channels, h, w] = grad.shape().dims();
    tensor(channel_sums(values, channels, h * w), vec![channels])
}

/// A forward kernel: the output from x, the weight and the bias when given.
type ForwardKernel = fn(&[f32], &[f32], Option<&[f32]>, &Geometry) -> Vec<f32>;

/// A backward kernel: the input and weight gradients from x, the weight and the output
/// gradient, each when wanted.
type BackwardKernel =
    fn(&[f32], &[f32], &[f32], &Geometry, [bool; 2]) -> (Option<Vec<f32>>, Option<Vec<f32>>);

/// segstream's two passes of one kind of convolution.
struct Kernels {
    forward: ForwardKernel,
    backward: BackwardKernel,
}

/// The sizes of a convolution and the kernels that run it; none where burn's does.
fn kernels(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<(Geometry, Kernels)> {
    let geometry = geometry(x, weight, options)?;
    let kernels = if options.groups == 1 {
        Kernels {
            forward: conv_gemm::forward,
            backward: conv_gemm::backward,
        }
    } else if geometry.is_depthwise(options.groups) {
        Kernels {
            forward: conv_depthwise::forward,
            backward: conv_depthwise::backward,
        }
    } else {
        return None;
    };
    Some((geometry, kernels))
}

/// The sizes of an undilated convolution; none for a dilated one.
fn geometry(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<Geometry> {
    let [images, channels_in, h, w] = x.shape().dims();
    let [channels_out, _, kh, kw] = weight.shape().dims();
    (options.dilation == [1, 1]).then_some(Geometry {
        images,
        channels_in,
        channels_out,
        input: [h, w],
        kernel: [kh, kw],
        stride: options.stride,
        padding: options.padding,
    })
}

impl<B, C> TrainingConv for Autodiff<B, C>
where
    B: Backend + TrainingConv + ConvKernels,
    C: CheckpointStrategy,
{
    fn training_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        tracked::<B, C, Convolution>(x, weight, bias, options)
    }
}

/// The convolution as a [`WeightedOp`].
#[derive(Debug)]
struct Convolution;

impl<B: Backend + TrainingConv + ConvKernels> WeightedOp<B> for Convolution {
    type Options = ConvOptions<2>;

    fn forward(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        bias: FloatTensor<B>,
        options: ConvOptions<2>,
    ) -> FloatTensor<B> {
        B::training_conv2d(x, weight, bias, options)
    }

    fn backward(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        grad: FloatTensor<B>,
        options: ConvOptions<2>,
        wanted: [bool; 3],
    ) -> [Option<FloatTensor<B>>; 3] {
        B::training_conv2d_backward(x, weight, grad, options, wanted)
    }
}

/// An op of an input, a weight and a bias (a convolution or a transposed one) on one backend:
/// its forward pass and its gradients, from which [`tracked`] makes its autodiff form.
pub(super) trait WeightedOp<B: Backend>: core::fmt::Debug + Send + 'static {
    /// Strides, padding and the like.
    type Options: Clone + Send + core::fmt::Debug + 'static;

    /// The output.
    fn forward(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        bias: FloatTensor<B>,
        options: Self::Options,
    ) -> FloatTensor<B>;

    /// The gradients for `x`, `weight` and the bias, each when `wanted`.
    fn backward(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        grad: FloatTensor<B>,
        options: Self::Options,
        wanted: [bool; 3],
    ) -> [Option<FloatTensor<B>>; 3];
}

/// The backward step of a [`WeightedOp`].
#[derive(Debug)]
struct WeightedBackward<Op>(PhantomData<Op>);

impl<B: Backend, Op: WeightedOp<B>> Backward<B, 3> for WeightedBackward<Op> {
    type State = (NodeId, NodeId, Op::Options);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let gradients = Op::backward(x, weight, grad, options, wanted);
        for (node, gradient) in ops.parents.into_iter().zip(gradients) {
            if let (Some(node), Some(gradient)) = (node, gradient) {
                grads.register::<B>(node.id, gradient);
            }
        }
    }
}

/// `Op` on autodiff tensors: run on the inner backend, its backward step recorded when any
/// operand is tracked (x and the weight kept for it).
pub(super) fn tracked<B, C, Op>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    options: Op::Options,
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    Op: WeightedOp<B>,
{
    match WeightedBackward::<Op>(PhantomData)
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (
                prep.checkpoint(&x),
                prep.checkpoint(&weight),
                options.clone(),
            );
            let y = Op::forward(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                options,
            );
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(Op::forward(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
            options,
        )),
    }
}

/// `conv`'s forward pass (as `Conv2d::forward`) through [`conv2d`].
pub fn conv2d_module(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => return conv.forward(x),
    };
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// A 2-D convolution; when it is trained on the CPU backend, undilated, it runs segstream's
/// kernels (see the module's description).
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if !super::trains_on_cpu(&x.device()) || options.dilation != [1, 1] {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &x.device()));
    Tensor::from_dispatch(<Dispatch as TrainingConv>::training_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        options,
    ))
}

/// Checks convolution-like ops of ours against burn's.
#[cfg(test)]
pub(super) mod against_burn {
    use burn::prelude::*;
    use burn::tensor::Distribution;

    /// An op of an input, a weight and a bias.
    pub type Op<'a> = &'a dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>;

    /// Runs `ours` and `burns` on `x`, `weight` and `bias` under one random loss and asserts
    /// that their outputs and the three gradients agree to 1e-5 of each one's largest value
    /// (sums over thousands of terms); `case` names the shapes in the message.
    pub fn assert_agree(
        x: &Tensor<4>,
        weight: &Tensor<4>,
        bias: &Tensor<1>,
        ours: Op,
        burns: Op,
        case: &str,
    ) {
        let dims = burns(x.clone(), weight.clone(), bias.clone()).dims();
        let target = Tensor::<4>::random(dims, Distribution::Normal(0., 1.), &x.device());
        let run = |op: Op| {
            let (x, w, b) = (
                x.clone().require_grad(),
                weight.clone().require_grad(),
                bias.clone().require_grad(),
            );
            let y = op(x.clone(), w.clone(), b.clone());
            let grads = (y.clone() * target.clone()).sum().backward();
            let flat = |t: Tensor<4>| t.reshape([-1]);
            [
                flat(y.inner()),
                flat(x.grad(&grads).expect("x takes part in the loss")),
                flat(w.grad(&grads).expect("the weight takes part in the loss")),
                b.grad(&grads).expect("the bias takes part in the loss"),
            ]
        };
        let names = [
            "output",
            "input gradient",
            "weight gradient",
            "bias gradient",
        ];
        for (what, (theirs, mine)) in names.iter().zip(run(burns).into_iter().zip(run(ours))) {
            let scale = theirs.clone().abs().max().into_scalar::<f32>().max(1.0);
            let gap = (theirs - mine).abs().max().into_scalar::<f32>() / scale;
            assert!(
                gap < 1e-5,
                "{what} differs by {gap} of its largest value for {case}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// burn's own gradients against ours, for the shapes both models use.
    #[test]
    fn weight_and_input_gradients_match_burns_convolution() {
        let device = Device::flex().autodiff();
        let cases = [
            // (c_in, c_out, kernel, stride, padding before and after, groups, size)
            (3, 8, 3, 1, (1, 1), 1, 12),
            (8, 8, 1, 1, (0, 0), 1, 10),
            (8, 8, 3, 2, (1, 1), 8, 11),
            (8, 8, 3, 2, (1, 1), 8, 12),
            (8, 8, 3, 1, (1, 1), 8, 10),
            (6, 6, 5, 2, (2, 2), 6, 13),
            (6, 4, 3, 2, (1, 1), 2, 9),
            (4, 4, 7, 2, (3, 3), 1, 16),
            (5, 6, 3, 2, (1, 1), 1, 12),
            (4, 3, 1, 2, (0, 0), 1, 9),
            (2, 3, 3, 3, (0, 0), 1, 11),
            // Large enough for several tiles of the column matrix.
            (16, 8, 3, 1, (1, 1), 1, 80),
            (16, 8, 3, 2, (1, 1), 1, 81),
            // TensorFlow's "same" padding at stride 2: one more after than before.
            (3, 8, 3, 2, (0, 1), 1, 12),
            (8, 8, 3, 2, (0, 1), 8, 12),
            (8, 8, 5, 2, (1, 2), 8, 12),
        ];
        for (c_in, c_out, k, s, p, groups, size) in cases {
            let random =
                |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0., 1.), &device);
            let x = random([2, c_in, size, size]);
            let w = random([c_out, c_in / groups, k, k]);
            let b = Tensor::<1>::random([c_out], Distribution::Normal(0., 1.), &device);
            let options = ConvOptions::new_with_padding([s, s], [p, p], [1, 1], groups);
            against_burn::assert_agree(
                &x,
                &w,
                &b,
                &|x, w, b| conv2d(x, w, Some(b), options.clone()),
                &|x, w, b| burn::tensor::module::conv2d(x, w, Some(b), options.clone()),
                &format!("c_in {c_in} k {k} s {s} g {groups}"),
            );
        }
    }
}
