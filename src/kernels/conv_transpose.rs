//! 2-D transposed convolution (the U-Net's and MediaPipe's up-sampling) for training on burn's
//! CPU backend, through the one-group convolution kernels of [`conv_gemm`].
//!
//! A transposed convolution is the input gradient of the convolution that maps its output back
//! to its input with the same weight, stride and padding; its input gradient is that
//! convolution's forward pass, and its weight gradient that convolution's weight gradient with
//! the two roles swapped. burn 0.22 computes the weight gradient as a convolution on one core.
//! Grouped or dilated ones, and any other device, stay burn's.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::conv::ConvTranspose2d;
use burn::prelude::*;
use burn::tensor::ops::ConvTransposeOptions;
use burn_flex::FlexTensor;

use super::conv::{WeightedOp, bias_gradient, tracked};
use super::conv_gemm::{self, Geometry};
use super::flex_data::{tensor, values};

/// The transposed convolution as a backend extension, so that its autodiff form can carry its
/// own backward pass. The bias is always given (zeros for none: extensions take no optional
/// tensors).
#[backend_extension(Flex, Autodiff)]
pub trait TrainingConvTranspose: Backend {
    /// A transposed convolution plus `bias`.
    fn training_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv_transpose2d(x, weight, Some(bias), options)
    }
}

/// The CPU backend's backward pass.
pub trait ConvTransposeKernels: Backend {
    /// The gradients of [`TrainingConvTranspose::training_conv_transpose2d`] for `x`, `weight`
    /// and the bias, each when asked.
    fn conv_transpose2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
        wanted: [bool; 3],
    ) -> [Option<FloatTensor<Self>>; 3];
}

/// The convolution whose input gradient the transposed convolution of `x` by `weight` is:
/// from the transposed convolution's output (`output` high and wide) back to `x`; none when
/// the kernels do not apply (groups, dilation, output padding of a whole stride).
fn adjoint(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvTransposeOptions<2>,
) -> Option<Geometry> {
    let [images, channels_in, h, w] = x.shape().dims();
    let [_, channels_out, kh, kw] = weight.shape().dims();
    let output = [0, 1].map(|d| {
        let input = [h, w][d];
        let grown = (input.max(1) - 1) * options.stride[d] + [kh, kw][d] + options.padding_out[d];
        grown.saturating_sub(2 * options.padding[d])
    });
    let applies = options.groups == 1
        && options.dilation == [1, 1]
        && (0..2).all(|d| options.padding_out[d] < options.stride[d]);
    applies.then_some(Geometry {
        images,
        channels_in: channels_out,
        channels_out: channels_in,
        input: output,
        kernel: [kh, kw],
        stride: options.stride,
        padding: options.padding.map(|p| (p, p)),
    })
}

impl TrainingConvTranspose for Flex {
    fn training_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        let Some(adjoint) = adjoint(&x, &weight, &options) else {
            return Self::conv_transpose2d(x, weight, Some(bias), options);
        };
        let [h, w] = adjoint.input;
        let (weight, x, bias) = (values(&weight), values(&x), values(&bias));
        let y = conv_gemm::input_gradient(&weight, &x, Some(&bias), &adjoint);
        tensor(y, vec![adjoint.images, adjoint.channels_in, h, w])
    }
}

impl ConvTransposeKernels for Flex {
    fn conv_transpose2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
        [want_x, want_weight, want_bias]: [bool; 3],
    ) -> [Option<FloatTensor<Self>>; 3] {
        let grad_values = values(&grad);
        let db = want_bias.then(|| bias_gradient(&grad, &grad_values));
        let Some(adjoint) = adjoint(&x, &weight, &options) else {
            let dx = want_x.then(|| {
                Self::conv_transpose2d_x_backward(weight.clone(), grad.clone(), options.clone())
            });
            let dw = want_weight
                .then(|| Self::conv_transpose2d_weight_backward(x, weight, grad, options));
            return [dx, dw, db];
        };
        let (x_shape, weight_shape) = (x.shape().to_vec(), weight.shape().to_vec());
        let dx = want_x.then(|| {
            let dx = conv_gemm::forward(&grad_values, &values(&weight), None, &adjoint);
            tensor(dx, x_shape)
        });
        let dw = want_weight.then(|| {
            let dw = conv_gemm::weight_gradient(&grad_values, &values(&x), &adjoint);
            tensor(dw, weight_shape)
        });
        [dx, dw, db]
    }
}

impl<B, C> TrainingConvTranspose for Autodiff<B, C>
where
    B: Backend + TrainingConvTranspose + ConvTransposeKernels,
    C: CheckpointStrategy,
{
    fn training_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        tracked::<B, C, TransposedConvolution>(x, weight, bias, options)
    }
}

/// The transposed convolution as a [`WeightedOp`].
#[derive(Debug)]
struct TransposedConvolution;

impl<B: Backend + TrainingConvTranspose + ConvTransposeKernels> WeightedOp<B>
    for TransposedConvolution
{
    type Options = ConvTransposeOptions<2>;

    fn forward(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        bias: FloatTensor<B>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<B> {
        B::training_conv_transpose2d(x, weight, bias, options)
    }

    fn backward(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        grad: FloatTensor<B>,
        options: ConvTransposeOptions<2>,
        wanted: [bool; 3],
    ) -> [Option<FloatTensor<B>>; 3] {
        B::conv_transpose2d_backward(x, weight, grad, options, wanted)
    }
}

/// A 2-D transposed convolution; when it is trained on the CPU backend it runs segstream's
/// kernels (see the module's description).
pub fn conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<4> {
    if !super::trains_on_cpu(&x.device()) {
        return burn::tensor::module::conv_transpose2d(x, weight, bias, options);
    }
    let channels = weight.dims()[1] * options.groups;
    let bias = bias.unwrap_or_else(|| Tensor::zeros([channels], &x.device()));
    Tensor::from_dispatch(
        <Dispatch as TrainingConvTranspose>::training_conv_transpose2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            options,
        ),
    )
}

/// `up`'s forward pass (as `ConvTranspose2d::forward`) through [`conv_transpose2d`].
pub fn conv_transpose2d_module(up: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let options = ConvTransposeOptions::new(
        up.stride,
        up.padding,
        up.padding_out,
        up.dilation,
        up.groups,
    );
    conv_transpose2d(
        x,
        up.weight.val(),
        up.bias.as_ref().map(|b| b.val()),
        options,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::against_burn;
    use burn::tensor::Distribution;

    /// burn's own values and gradients against ours.
    #[test]
    fn transposed_convolution_matches_burns() {
        let device = Device::flex().autodiff();
        // (c_in, c_out, kernel, stride, padding, output padding, size)
        let cases = [
            (8, 4, 2, 2, 0, 0, 9),
            (3, 5, 3, 2, 1, 1, 7),
            (4, 4, 3, 1, 1, 0, 6),
            (6, 2, 4, 2, 1, 0, 40),
        ];
        for (c_in, c_out, k, s, p, op, size) in cases {
            let random =
                |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0., 1.), &device);
            let x = random([2, c_in, size, size]);
            let w = random([c_in, c_out, k, k]);
            let b = Tensor::<1>::random([c_out], Distribution::Normal(0., 1.), &device);
            let options = ConvTransposeOptions::new([s, s], [p, p], [op, op], [1, 1], 1);
            against_burn::assert_agree(
                &x,
                &w,
                &b,
                &|x, w, b| conv_transpose2d(x, w, Some(b), options.clone()),
                &|x, w, b| burn::tensor::module::conv_transpose2d(x, w, Some(b), options.clone()),
                &format!("k {k} s {s} p {p} op {op}"),
            );
        }
    }
}
