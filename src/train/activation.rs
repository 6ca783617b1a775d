//! Hard-swish for training on burn's CPU backend: one pass forward, one pass backward.
//!
//! burn composes hard-swish of element-wise ops (scale and shift, clamp, multiply), each a pass
//! over the feature map forward and again for its gradient, with every intermediate kept for
//! the backward pass. MobileNetV3 bodies (MediaPipe's selfie model, MB3-CenterNet) apply it to
//! most of their feature maps; here it is one loop each way. Without autodiff, or on any other
//! device than the CPU backend, [`hard_swish`] is burn's.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn_flex::ops::binary::binary_op;
use burn_flex::ops::unary::unary_op;

/// Hard-swish as a backend extension, so that its autodiff form carries its own backward pass.
#[backend_extension(Flex, Autodiff)]
pub trait TrainingActivation: Backend {
    /// `x · clamp(x/6 + ½, 0, 1)`.
    fn training_hard_swish(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The fused loops of the CPU backend.
pub trait HardSwishKernels: Backend {
    /// The gradient of hard-swish at `x` times `grad`.
    fn hard_swish_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl TrainingActivation for Flex {
    fn training_hard_swish(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary_op(
            x,
            |x: f32| x * hard_sigmoid(x),
            |x: f64| x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        )
    }
}

impl HardSwishKernels for Flex {
    fn hard_swish_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        binary_op(
            x,
            grad,
            |x: f32, g| g * slope(x),
            |x: f64, g| g * f64::from(slope(x as f32)),
            None,
        )
    }
}

impl<B, C> TrainingActivation for Autodiff<B, C>
where
    B: Backend + TrainingActivation + HardSwishKernels,
    C: CheckpointStrategy,
{
    fn training_hard_swish(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct HardSwishBackward;

        impl<B: Backend + HardSwishKernels> Backward<B, 1> for HardSwishBackward {
            type State = NodeId;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [parent] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(ops.state);
                if let Some(node) = parent {
                    grads.register::<B>(node.id, B::hard_swish_backward(x, grad));
                }
            }
        }

        match HardSwishBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::training_hard_swish(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::training_hard_swish(x.into_primitive())),
        }
    }
}

fn hard_sigmoid(x: f32) -> f32 {
    (x / 6.0 + 0.5).clamp(0.0, 1.0)
}

/// d/dx of `x · hard_sigmoid(x)`: 0 below −3, 1 above 3, `x/3 + ½` between.
fn slope(x: f32) -> f32 {
    if x <= -3.0 {
        0.0
    } else if x >= 3.0 {
        1.0
    } else {
        x / 3.0 + 0.5
    }
}

/// Hard-swish of `x`; fused when trained on the CPU backend.
pub fn hard_swish(x: Tensor<4>) -> Tensor<4> {
    if super::trains_on_cpu(&x.device()) {
        Tensor::from_dispatch(<Dispatch as TrainingActivation>::training_hard_swish(
            x.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::hard_swish(x)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn fused_hard_swish_matches_burns_value_and_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 3.0), &device);
        let weights = Tensor::<4>::random([2, 3, 8, 8], Distribution::Default, &device);
        let run = |fused: bool| {
            let x = x.clone().require_grad();
            let y = if fused {
                hard_swish(x.clone())
            } else {
                burn::tensor::activation::hard_swish(x.clone())
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let dx = x.grad(&grads).expect("x takes part in the loss");
            (y.inner(), dx)
        };
        let ((y, dx), (y_burn, dx_burn)) = (run(true), run(false));
        let gap = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
        assert!(gap(y, y_burn) < 1e-6);
        assert!(gap(dx, dx_burn) < 1e-5);
    }
}
