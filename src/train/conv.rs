//! 2-D convolution for training on burn's CPU backend, with faster kernels.
//!
//! A one-group convolution (all of the U-Net's, MediaPipe's pointwise ones) runs forward and
//! backward as matrix products over each image's column matrix (see [`conv_gemm`]).
//!
//! For grouped convolutions, burn 0.22 computes the weight gradient as another convolution
//! whose kernel is the whole output gradient (the batch as channels, the image as the window).
//! Here each kernel tap's gradient is one matrix product, over the batch and the image, of the
//! output gradient with the input window that tap saw (see [`weight_gradient`]). A depthwise
//! convolution's input gradient is computed as a depthwise convolution too (see
//! [`input_gradient`]); other grouped input gradients and grouped forward passes stay burn's own.
//! Without autodiff, or on any other device than the CPU backend, [`conv2d`] is burn's
//! convolution.

use std::borrow::Cow;

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
use burn::tensor::{Slice, TensorData};
use burn_flex::FlexTensor;

use super::conv_gemm::{self, Geometry};

/// The convolution as a backend extension, so that its autodiff form can carry its own
/// backward pass.
#[backend_extension(Flex, Autodiff)]
pub trait TrainingConv: Backend {
    /// A convolution without bias.
    fn training_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }
}

/// The CPU backend's backward pass.
pub trait ConvKernels: Backend {
    /// The gradients of [`TrainingConv::training_conv2d`] for `x` and `weight`, each when asked.
    fn training_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        wanted: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2];
}

impl TrainingConv for Flex {
    fn training_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some(geometry) = one_group(&x, &weight, &options) else {
            return Self::conv2d(x, weight, None, options);
        };
        let [ho, wo] = geometry.output();
        let y = conv_gemm::forward(&values(&x), &values(&weight), &geometry);
        flex(y, vec![geometry.images, geometry.channels_out, ho, wo])
    }
}

impl ConvKernels for Flex {
    fn training_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        [want_x, want_weight]: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let Some(geometry) = one_group(&x, &weight, &options) else {
            let dx =
                want_x.then(|| input_gradient::<Self>(&x, weight.clone(), grad.clone(), &options));
            let dw = want_weight.then(|| weight_gradient::<Self>(x, weight, grad, options));
            return [dx, dw];
        };
        let (x_shape, weight_shape) = (x.shape().dims::<4>(), weight.shape().dims::<4>());
        let (dx, dw) = conv_gemm::backward(
            &values(&x),
            &values(&weight),
            &values(&grad),
            &geometry,
            [want_x, want_weight],
        );
        [
            dx.map(|dx| flex(dx, x_shape.to_vec())),
            dw.map(|dw| flex(dw, weight_shape.to_vec())),
        ]
    }
}

/// The sizes of a one-group, undilated convolution with the same padding on both sides; none
/// for others.
fn one_group(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<Geometry> {
    let [images, channels_in, h, w] = x.shape().dims();
    let [channels_out, _, kh, kw] = weight.shape().dims();
    (options.groups == 1 && options.dilation == [1, 1] && !options.is_asymmetric()).then(|| {
        Geometry {
            images,
            channels_in,
            channels_out,
            input: [h, w],
            kernel: [kh, kw],
            stride: options.stride,
            padding: options.padding_begin(),
        }
    })
}

/// An f32 tensor's values in order (borrowed when it is contiguous already).
fn values(x: &FlexTensor) -> Cow<'_, [f32]> {
    match x.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(
            x.to_contiguous()
                .as_slice::<f32>()
                .expect("training runs in f32")
                .to_vec(),
        ),
    }
}

fn flex(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl<B, C> TrainingConv for Autodiff<B, C>
where
    B: Backend + TrainingConv + ConvKernels,
    C: CheckpointStrategy,
{
    fn training_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConvBackward;

        impl<B: Backend + ConvKernels> Backward<B, 2> for ConvBackward {
            type State = (NodeId, NodeId, ConvOptions<2>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, weight_state, options) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                let weight =
                    checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
                let wanted = [node_x.is_some(), node_weight.is_some()];
                let gradients = B::training_conv2d_backward(x, weight, grad, options, wanted);
                for (node, gradient) in [node_x, node_weight].into_iter().zip(gradients) {
                    if let (Some(node), Some(gradient)) = (node, gradient) {
                        grads.register::<B>(node.id, gradient);
                    }
                }
            }
        }

        match ConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y = B::training_conv2d(
                    x.into_primitive(),
                    weight.into_primitive(),
                    options.clone(),
                );
                prep.finish((x_state, weight_state, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::training_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
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

/// A 2-D convolution; when it is trained on the CPU backend, its weight gradient is one matrix
/// product per kernel tap.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if !super::trains_on_cpu(&x.device()) || options.dilation != [1, 1] || options.is_asymmetric() {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let y = Tensor::from_dispatch(<Dispatch as TrainingConv>::training_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        options,
    ));
    match bias {
        Some(bias) => {
            let channels = bias.dims()[0];
            y + bias.reshape([1, channels, 1, 1])
        }
        None => y,
    }
}

/// dX of a convolution: burn's own, except for a depthwise one (one channel per group), whose
/// transposed form burn runs channel by channel: there dX is the depthwise convolution of the
/// output gradient (spread out by the stride with zeros) with the flipped kernel.
fn input_gradient<B: Backend>(
    x: &FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    options: &ConvOptions<2>,
) -> FloatTensor<B> {
    let [n, c_in, h, w] = x.shape().dims();
    let [c_out, _, kh, kw] = weight.shape().dims();
    if !(options.groups == c_in && c_out == c_in) {
        return B::conv2d_x_backward(x.clone(), weight, grad, options.clone());
    }
    let [_, _, ho, wo] = grad.shape().dims();
    let [sh, sw] = options.stride;
    let [ph, pw] = options.padding_begin();
    let spread = if sh == 1 && sw == 1 {
        grad
    } else {
        let zeros = B::float_zeros(
            [n, c_in, (ho - 1) * sh + 1, (wo - 1) * sw + 1].into(),
            &grad.device(),
            grad.dtype().into(),
        );
        let every = |step: usize, count: usize| {
            Slice::new(0, Some(((count - 1) * step + 1) as isize), step as isize)
        };
        B::float_slice_assign(
            zeros,
            &[full(n), full(c_in), every(sh, ho), every(sw, wo)],
            grad,
        )
    };
    // Rows and columns of x that no window reached (the stride did not divide) get zeros.
    let [rest_h, rest_w] = [
        h - ((ho - 1) * sh + kh - 2 * ph),
        w - ((wo - 1) * sw + kw - 2 * pw),
    ];
    let padding = [
        (kh - 1 - ph, kh - 1 - ph + rest_h),
        (kw - 1 - pw, kw - 1 - pw + rest_w),
    ];
    let flipped = B::float_flip(weight, &[2, 3]);
    B::conv2d(
        spread,
        flipped,
        None,
        ConvOptions::new_with_padding([1, 1], padding, [1, 1], c_in),
    )
}

/// dW from the input `x` (N×Cin×H×W), the output gradient `grad` (N×Cout×Ho×Wo) and symmetric,
/// undilated `options`: for each kernel tap (i, j), the products of the output gradient with
/// the input window that tap saw, summed over the batch and the image.
///
/// With stride 1 a tap's window needs no copy: in the padded image flattened row by row, the
/// window of tap (i, j) is the run that starts at `i·Wp + j`, `Ho·Wp` values long, once the
/// output gradient is padded to the same width `Wp` with zeros (the extra columns then add
/// nothing). Larger strides copy each tap's window.
fn weight_gradient<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    let weight_shape = weight.shape();
    let [c_out, c_in_group, kh, kw] = weight_shape.dims();
    let [n, c_in, h, w] = x.shape().dims();
    let [_, _, ho, wo] = grad.shape().dims();
    let groups = options.groups;
    let [ph, pw] = options.padding_begin();
    let [sh, sw] = options.stride;
    // One spare row keeps the last tap's flat run inside the padded image.
    let (hp, wp) = (h + 2 * ph + 1, w + 2 * pw);
    let padded = place::<B>(x, [n, c_in, hp, wp], [ph, pw]);
    let unit_stride = sh == 1 && sw == 1;
    let (grad, run) = if unit_stride {
        let grad = place::<B>(grad, [n, c_out, ho, wp], [0, 0]);
        (B::float_reshape(grad, [n, c_out, ho * wp].into()), ho * wp)
    } else {
        (B::float_reshape(grad, [n, c_out, ho * wo].into()), ho * wo)
    };
    let flat = B::float_reshape(padded.clone(), [n, c_in, hp * wp].into());
    let taps = (0..kh)
        .flat_map(|i| (0..kw).map(move |j| (i, j)))
        .map(|(i, j)| {
            let window = if unit_stride {
                let start = i * wp + j;
                B::float_slice(
                    flat.clone(),
                    &[full(n), full(c_in), Slice::from(start..start + run)],
                )
            } else {
                let strided = |first: usize, count: usize, step: usize| {
                    Slice::new(
                        first as isize,
                        Some((first + step * (count - 1) + 1) as isize),
                        step as isize,
                    )
                };
                let window = B::float_slice(
                    padded.clone(),
                    &[full(n), full(c_in), strided(i, ho, sh), strided(j, wo, sw)],
                );
                B::float_reshape(window, [n, c_in, run].into())
            };
            tap_gradient::<B>(grad.clone(), window, groups)
        })
        .collect();
    let stacked = B::float_cat(taps, 2);
    B::float_reshape(stacked, [c_out, c_in_group, kh, kw].into())
}

/// One tap's gradient, Cout×(Cin/groups)×1, from the output gradient (N×Cout×L) and the
/// tap's input window (N×Cin×L).
fn tap_gradient<B: Backend>(
    grad: FloatTensor<B>,
    window: FloatTensor<B>,
    groups: usize,
) -> FloatTensor<B> {
    let [n, c_out, run] = grad.shape().dims();
    let c_in = window.shape()[1];
    let (c_out_group, c_in_group) = (c_out / groups, c_in / groups);
    if c_out_group == 1 && c_in_group == 1 {
        // Depthwise: one channel against itself.
        let product = B::float_mul(grad, window);
        let summed = B::float_sum_dim(B::float_sum_dim(product, 2), 0);
        return B::float_reshape(summed, [c_out, 1, 1].into());
    }
    // Grouped windows are reshaped (a copy: they are views into the padded image); a single
    // group multiplies the view as it is.
    let (grad, window) = if groups == 1 {
        (grad, window)
    } else {
        (
            B::float_reshape(grad, [n, groups, c_out_group, run].into()),
            B::float_reshape(window, [n, groups, c_in_group, run].into()),
        )
    };
    let rank = window.shape().num_dims();
    let product = B::float_matmul(grad, B::float_swap_dims(window, rank - 2, rank - 1));
    B::float_reshape(B::float_sum_dim(product, 0), [c_out, c_in_group, 1].into())
}

/// `tensor` inside zeros of `shape`, its top-left corner at `offset` (height, width).
fn place<B: Backend>(
    tensor: FloatTensor<B>,
    shape: [usize; 4],
    offset: [usize; 2],
) -> FloatTensor<B> {
    let [n, c, h, w] = tensor.shape().dims();
    if [n, c, h, w] == shape {
        return tensor;
    }
    let zeros = B::float_zeros(shape.into(), &tensor.device(), tensor.dtype().into());
    let inside = [
        full(n),
        full(c),
        Slice::from(offset[0]..offset[0] + h),
        Slice::from(offset[1]..offset[1] + w),
    ];
    B::float_slice_assign(zeros, &inside, tensor)
}

fn full(len: usize) -> Slice {
    Slice::from(0..len)
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
            // (c_in, c_out, kernel, stride, padding, groups, size)
            (3, 8, 3, 1, 1, 1, 12),
            (8, 8, 1, 1, 0, 1, 10),
            (8, 8, 3, 2, 1, 8, 11),
            (8, 8, 3, 2, 1, 8, 12),
            (8, 8, 3, 1, 1, 8, 10),
            (6, 6, 5, 2, 2, 6, 13),
            (6, 4, 3, 2, 1, 2, 9),
            (4, 4, 7, 2, 3, 1, 16),
            (5, 6, 3, 2, 1, 1, 12),
            (4, 3, 1, 2, 0, 1, 9),
            (2, 3, 3, 3, 0, 1, 11),
            // Large enough for several tiles of the column matrix.
            (16, 8, 3, 1, 1, 1, 80),
            (16, 8, 3, 2, 1, 1, 81),
        ];
        for (c_in, c_out, k, s, p, groups, size) in cases {
            let x =
                Tensor::<4>::random([2, c_in, size, size], Distribution::Normal(0., 1.), &device);
            let w = Tensor::<4>::random(
                [c_out, c_in / groups, k, k],
                Distribution::Normal(0., 1.),
                &device,
            );
            let b = Tensor::<1>::random([c_out], Distribution::Normal(0., 1.), &device);
            let options = ConvOptions::new([s, s], [p, p], [1, 1], groups);
            let run = |ours: bool| {
                let (x, w, b) = (
                    x.clone().require_grad(),
                    w.clone().require_grad(),
                    b.clone().require_grad(),
                );
                let y = if ours {
                    conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone())
                } else {
                    burn::tensor::module::conv2d(
                        x.clone(),
                        w.clone(),
                        Some(b.clone()),
                        options.clone(),
                    )
                };
                let target = Tensor::<4>::ones(y.dims(), &device) * 0.3;
                let grads = (y.clone() * target).sum().backward();
                let value = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32 data");
                (
                    value(y.inner()),
                    value(x.grad(&grads).unwrap()),
                    value(w.grad(&grads).unwrap()),
                    b.grad(&grads)
                        .unwrap()
                        .into_data()
                        .try_to_vec::<f32>()
                        .expect("f32 data"),
                )
            };
            let (theirs, ours) = (run(false), run(true));
            let close = |a: &[f32], b: &[f32], what: &str| {
                assert_eq!(a.len(), b.len());
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
                    .fold(0.0, f32::max);
                assert!(
                    worst < 1e-4,
                    "{what} differs by {worst} (relative) for c_in {c_in} k {k} s {s} g {groups}"
                );
            };
            close(&theirs.0, &ours.0, "output");
            close(&theirs.1, &ours.1, "input gradient");
            close(&theirs.2, &ours.2, "weight gradient");
            close(&theirs.3, &ours.3, "bias gradient");
        }
    }
}
