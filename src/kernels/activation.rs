//! ReLU and hard-swish for training on burn's CPU backend: one pass forward, one pass
//! backward, each spread over the cores.
//!
//! burn's CPU backend runs element-wise ops on the calling thread alone, and composes
//! hard-swish of several (scale and shift, clamp, multiply), each a pass over the feature map
//! forward and again for its gradient. On two cores the activations of MediaPipe's selfie model
//! took a fifth of a training step with the second core idle. Without autodiff, or on any other
//! device than the CPU backend, [`relu`] and [`hard_swish`] are burn's.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;

use super::flex_data::{map, tensor, values, zip_map};

/// An element-wise activation whose gradient depends on its input alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x · clamp(x/6 + ½, 0, 1)`.
    HardSwish,
}

impl Activation {
    fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }

    /// The derivative at `x` (hard-swish: 0 below −3, 1 above 3, `x/3 + ½` between).
    fn slope(self, x: f32) -> f32 {
        match self {
            Activation::Relu => f32::from(u8::from(x > 0.0)),
            Activation::HardSwish if x <= -3.0 => 0.0,
            Activation::HardSwish if x >= 3.0 => 1.0,
            Activation::HardSwish => x / 3.0 + 0.5,
        }
    }
}

/// The activation as a backend extension, so that its autodiff form carries its own backward
/// pass.
#[backend_extension(Flex, Autodiff)]
pub trait TrainingActivation: Backend {
    /// `activation` applied to every value of `x`.
    fn training_activation(x: FloatTensor<Self>, activation: Activation) -> FloatTensor<Self>;
}

/// The CPU backend's backward pass.
pub trait ActivationKernels: Backend {
    /// `grad` times the activation's derivative at `x`.
    fn activation_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self>;
}

impl TrainingActivation for Flex {
    fn training_activation(x: FloatTensor<Self>, activation: Activation) -> FloatTensor<Self> {
        let x_values = values(&x);
        // One loop per activation, so that each is compiled (and vectorised) on its own.
        let y = match activation {
            Activation::Relu => map(&x_values, |x| Activation::Relu.apply(x)),
            Activation::HardSwish => map(&x_values, |x| Activation::HardSwish.apply(x)),
        };
        tensor(y, x.shape().to_vec())
    }
}

impl ActivationKernels for Flex {
    fn activation_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self> {
        let (x_values, grad) = (values(&x), values(&grad));
        let dx = match activation {
            Activation::Relu => zip_map(&x_values, &grad, |x, g| g * Activation::Relu.slope(x)),
            Activation::HardSwish => {
                zip_map(&x_values, &grad, |x, g| g * Activation::HardSwish.slope(x))
            }
        };
        tensor(dx, x.shape().to_vec())
    }
}

impl<B, C> TrainingActivation for Autodiff<B, C>
where
    B: Backend + TrainingActivation + ActivationKernels,
    C: CheckpointStrategy,
{
    fn training_activation(x: FloatTensor<Self>, activation: Activation) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ActivationBackward;

        impl<B: Backend + ActivationKernels> Backward<B, 1> for ActivationBackward {
            type State = (NodeId, Activation);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [parent] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, activation) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                if let Some(node) = parent {
                    let dx = B::activation_backward(x, grad, activation);
                    grads.register::<B>(node.id, dx);
                }
            }
        }

        match ActivationBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                let y = B::training_activation(x.into_primitive(), activation);
                prep.finish((state, activation), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::training_activation(x.into_primitive(), activation))
            }
        }
    }
}

/// `activation` of `x`; one parallel pass each way when trained on the CPU backend.
fn activate<const D: usize>(x: Tensor<D>, activation: Activation) -> Tensor<D> {
    if super::trains_on_cpu(&x.device()) {
        Tensor::from_dispatch(<Dispatch as TrainingActivation>::training_activation(
            x.into_dispatch(),
            activation,
        ))
    } else {
        match activation {
            Activation::Relu => burn::tensor::activation::relu(x),
            Activation::HardSwish => burn::tensor::activation::hard_swish(x),
        }
    }
}

/// ReLU of `x` (see the module's description).
pub fn relu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activate(x, Activation::Relu)
}

/// Hard-swish of `x` (see the module's description).
pub fn hard_swish<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activate(x, Activation::HardSwish)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn activations_match_burns_value_and_gradient() {
        let device = Device::flex().autodiff();
        // Large enough to be split over the cores.
        let dims = [2, 3, 80, 80];
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 3.0), &device);
        let weights = Tensor::<4>::random(dims, Distribution::Default, &device);
        for activation in [Activation::Relu, Activation::HardSwish] {
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let y = match (ours, activation) {
                    (true, _) => activate(x.clone(), activation),
                    (false, Activation::Relu) => burn::tensor::activation::relu(x.clone()),
                    (false, Activation::HardSwish) => {
                        burn::tensor::activation::hard_swish(x.clone())
                    }
                };
                let grads = (y.clone() * weights.clone()).sum().backward();
                let dx = x.grad(&grads).expect("x takes part in the loss");
                (y.inner(), dx)
            };
            let ((y, dx), (y_burn, dx_burn)) = (run(true), run(false));
            let gap = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
            assert!(gap(y, y_burn) < 1e-6, "{activation:?}");
            assert!(gap(dx, dx_burn) < 1e-5, "{activation:?}");
        }
    }
}
