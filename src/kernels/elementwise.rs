//! Two element-wise ops of MobileNet-style bodies for training on burn's CPU backend, spread
//! over the cores (burn runs element-wise ops on the calling thread alone):
//! - [`add`] of two tensors of one shape (residual connections), whose gradient is the output's
//!   for both;
//! - [`scale_channels`], an N×C×H×W tensor times an N×C×1×1 one (squeeze-and-excitation),
//!   whose scale gradient is a sum per plane.
//!
//! Without autodiff, on any other device, or for other shapes, they are burn's `+` and `*`.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use rayon::prelude::*;

use super::flex_data::{planes, tensor, values, zip_map};
use super::sums::dot;

/// The ops as a backend extension, so that their autodiff forms carry their own backward
/// passes.
#[backend_extension(Flex, Autodiff)]
pub trait TrainingElementwise: Backend {
    /// `a + b`, both of one shape.
    fn training_add(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_add(a, b)
    }

    /// `x` (N×C×H×W) times `scale` (N×C×1×1).
    fn training_scale_channels(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::float_mul(x, scale)
    }
}

/// The CPU backend's backward pass.
pub trait ElementwiseKernels: Backend {
    /// The gradients of [`TrainingElementwise::training_scale_channels`] for `x` and `scale`,
    /// each when asked.
    fn scale_channels_backward(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        wanted: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2];
}

impl TrainingElementwise for Flex {
    fn training_add(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let sum = zip_map(&values(&a), &values(&b), |a, b| a + b);
        tensor(sum, a.shape().to_vec())
    }

    fn training_scale_channels(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let shape = x.shape().to_vec();
        tensor(scaled_planes(&values(&x), &values(&scale)), shape)
    }
}

impl ElementwiseKernels for Flex {
    fn scale_channels_backward(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        [want_x, want_scale]: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let grad_values = values(&grad);
        let dx = want_x.then(|| {
            let dx = scaled_planes(&grad_values, &values(&scale));
            tensor(dx, x.shape().to_vec())
        });
        let dscale = want_scale.then(|| {
            let plane = grad_values.len() / scale.shape().num_elements().max(1);
            let sums = grad_values
                .par_chunks(plane.max(1))
                .zip(values(&x).par_chunks(plane.max(1)))
                .map(|(grad, x)| dot(grad, x) as f32)
                .collect();
            tensor(sums, scale.shape().to_vec())
        });
        [dx, dscale]
    }
}

/// Each plane of `x` times its own value of `scale`.
fn scaled_planes(x: &[f32], scale: &[f32]) -> Vec<f32> {
    let plane = x.len() / scale.len().max(1);
    planes(scale.len(), plane, |i, out| {
        let x = &x[i * plane..(i + 1) * plane];
        out.iter_mut()
            .zip(x)
            .for_each(|(out, x)| *out = x * scale[i]);
    })
}

impl<B, C> TrainingElementwise for Autodiff<B, C>
where
    B: Backend + TrainingElementwise + ElementwiseKernels,
    C: CheckpointStrategy,
{
    fn training_add(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct AddBackward;

        impl<B: Backend> Backward<B, 2> for AddBackward {
            type State = ();

            fn backward(self, ops: Ops<(), 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                for node in ops.parents.into_iter().flatten() {
                    grads.register::<B>(node.id, grad.clone());
                }
            }
        }

        let parents = [a.node(), b.node()];
        let sum = B::training_add(a.into_primitive(), b.into_primitive());
        AddBackward
            .prepare::<C>(parents)
            .compute_bound()
            .stateless(sum)
    }

    fn training_scale_channels(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ScaleBackward;

        impl<B: Backend + ElementwiseKernels> Backward<B, 2> for ScaleBackward {
            type State = (NodeId, NodeId);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, scale_state) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                let scale =
                    checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(scale_state);
                let wanted = ops.parents.each_ref().map(Option::is_some);
                let gradients = B::scale_channels_backward(x, scale, grad, wanted);
                for (node, gradient) in ops.parents.into_iter().zip(gradients) {
                    if let (Some(node), Some(gradient)) = (node, gradient) {
                        grads.register::<B>(node.id, gradient);
                    }
                }
            }
        }

        match ScaleBackward
            .prepare::<C>([x.node(), scale.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&scale));
                let y = B::training_scale_channels(x.into_primitive(), scale.into_primitive());
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::training_scale_channels(
                x.into_primitive(),
                scale.into_primitive(),
            )),
        }
    }
}

/// `a + b`; one parallel pass when trained on the CPU backend and both have one shape.
pub fn add(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    if !super::trains_on_cpu(&a.device()) || a.dims() != b.dims() {
        return a + b;
    }
    Tensor::from_dispatch(<Dispatch as TrainingElementwise>::training_add(
        a.into_dispatch(),
        b.into_dispatch(),
    ))
}

/// `a * b`; one parallel pass each way when trained on the CPU backend and one of them is an
/// N×C×1×1 scale of the other's channels.
pub fn mul(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    let scales = |x: [usize; 4], s: [usize; 4]| s == [x[0], x[1], 1, 1] && x[2] * x[3] > 1;
    let (x, scale) = match (a.dims(), b.dims()) {
        (x, s) if scales(x, s) => (a, b),
        (s, x) if scales(x, s) => (b, a),
        _ => return a * b,
    };
    if !super::trains_on_cpu(&x.device()) {
        return x * scale;
    }
    Tensor::from_dispatch(<Dispatch as TrainingElementwise>::training_scale_channels(
        x.into_dispatch(),
        scale.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn sums_and_channel_scales_match_burns_values_and_gradients() {
        let device = Device::flex().autodiff();
        let random = |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Default, &device);
        let (x, other, scale) = (
            random([2, 3, 60, 70]),
            random([2, 3, 60, 70]),
            random([2, 3, 1, 1]),
        );
        let weights = random([2, 3, 60, 70]);
        type Op = fn(Tensor<4>, Tensor<4>) -> Tensor<4>;
        let cases: [(Op, Op, &Tensor<4>); 3] = [
            (add, |a, b| a + b, &other),
            (mul, |a, b| a * b, &scale),
            (|a, b| mul(b, a), |a, b| b * a, &scale),
        ];
        for (index, (ours, burns, second)) in cases.into_iter().enumerate() {
            let run = |op: Op| {
                let (a, b) = (x.clone().require_grad(), second.clone().require_grad());
                let y = op(a.clone(), b.clone());
                let grads = (y.clone() * weights.clone()).sum().backward();
                (y.inner(), a.grad(&grads).unwrap(), b.grad(&grads).unwrap())
            };
            let (mine, theirs) = (run(ours), run(burns));
            let gap = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
            assert!(gap(mine.0, theirs.0) < 1e-6, "case {index}: value");
            assert!(gap(mine.1, theirs.1) < 1e-5, "case {index}: first gradient");
            // Scale gradients sum 4200 products.
            assert!(
                gap(mine.2, theirs.2) < 1e-2,
                "case {index}: second gradient"
            );
        }
    }
}
