//! Batch norm for training on burn's CPU backend: the statistics in one pass, the output in
//! one, the backward pass in two.
//!
//! burn 0.22 differentiates batch norm as one operation but computes it from generic ops:
//! channel-first copies (`swap_dims` + `reshape`) for the mean, again for the variance and
//! twice more in the backward pass, each followed by its own reduction. Here each pass runs
//! channel by channel over the contiguous N×C×H×W data, channels spread over the cores.
//! Without autodiff, on any other device than the CPU backend, or for a frozen layer,
//! [`batch_norm`] is burn's.

use std::borrow::Cow;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::flex_data::{planes, tensor, values};
use super::sums::{dot, sum};

/// Batch norm's training forward as a backend extension, so that its autodiff form carries its
/// own backward pass.
#[backend_extension(Flex, Autodiff)]
pub trait TrainingNorm: Backend {
    /// Each channel's mean and biased variance over batch and image: a 2×C tensor.
    fn training_batch_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x` normalised with `stats` (from [`TrainingNorm::training_batch_stats`] on the same
    /// `x`), scaled by `gamma` and shifted by `beta`.
    fn training_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

/// The CPU backend's backward loops.
pub trait NormKernels: Backend {
    /// The gradients of [`TrainingNorm::training_batch_norm`] for `x`, `gamma` and `beta`.
    fn batch_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// An N×C×H×W f32 tensor's values in order (borrowed when it is contiguous already), with its
/// channel count and plane size.
fn feature_map(x: &FlexTensor) -> (Cow<'_, [f32]>, usize, usize) {
    let dims = x.shape().dims::<4>();
    (values(x), dims[1], dims[2] * dims[3])
}

/// Per channel: the mean and `1 / sqrt(variance + epsilon)`.
fn channel_scales(stats: &FlexTensor, epsilon: f64) -> Vec<(f32, f32)> {
    let stats = values(stats);
    let channels = stats.len() / 2;
    (0..channels)
        .map(|c| {
            let inv_std = 1.0 / (f64::from(stats[channels + c]) + epsilon).sqrt();
            (stats[c], inv_std as f32)
        })
        .collect()
}

/// Per channel, over every (image, channel) plane of `values`: `f` of the plane's start,
/// summed.
fn channel_sums(
    values: &[f32],
    channels: usize,
    plane: usize,
    f: impl Fn(usize, usize) -> [f64; 2] + Sync,
) -> Vec<[f64; 2]> {
    let images = values.len() / (channels * plane);
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let mut sums = [0.0; 2];
            for n in 0..images {
                let start = (n * channels + c) * plane;
                let [a, b] = f(c, start);
                sums[0] += a;
                sums[1] += b;
            }
            sums
        })
        .collect()
}

impl TrainingNorm for Flex {
    fn training_batch_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (values, channels, plane) = feature_map(&x);
        let count = (values.len() / channels) as f64;
        let sums = channel_sums(&values, channels, plane, |_, start| {
            let plane = &values[start..start + plane];
            [sum(plane), dot(plane, plane)]
        });
        let mean: Vec<f32> = sums.iter().map(|[s, _]| (s / count) as f32).collect();
        let variance = sums
            .iter()
            .map(|[s, q]| ((q / count) - (s / count).powi(2)).max(0.0) as f32);
        tensor(
            mean.iter().copied().chain(variance).collect(),
            vec![2, channels],
        )
    }

    fn training_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let shape = x.shape().dims::<4>().to_vec();
        let (gamma, beta) = (values(&gamma), values(&beta));
        let (values, channels, plane) = feature_map(&x);
        let scales = channel_scales(&stats, epsilon);
        let out = planes(values.len() / plane, plane, |index, out| {
            let c = index % channels;
            let (mean, inv_std) = scales[c];
            let (scale, shift) = (gamma[c] * inv_std, beta[c] - gamma[c] * inv_std * mean);
            let x = &values[index * plane..];
            for (y, &x) in out.iter_mut().zip(x) {
                *y = x * scale + shift;
            }
        });
        tensor(out, shape)
    }
}

impl NormKernels for Flex {
    fn batch_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let shape = x.shape().dims::<4>().to_vec();
        let gamma = values(&gamma);
        let (values, channels, plane) = feature_map(&x);
        let (grad, _, _) = feature_map(&grad);
        let scales = channel_scales(&stats, epsilon);
        let count = (values.len() / channels) as f32;
        // Σ dy and Σ dy·x̂ per channel: the gradients of beta and gamma.
        let sums = channel_sums(&values, channels, plane, |c, start| {
            let (mean, inv_std) = scales[c];
            let range = start..start + plane;
            let (grad_sum, grad_dot_x) = (
                sum(&grad[range.clone()]),
                dot(&grad[range.clone()], &values[range]),
            );
            // Σ dy·x̂ = (Σ dy·x − mean · Σ dy) / σ.
            let projected = (grad_dot_x - f64::from(mean) * grad_sum) * f64::from(inv_std);
            [grad_sum, projected]
        });
        // dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy·x̂)).
        let dx = planes(values.len() / plane, plane, |index, dx| {
            let c = index % channels;
            let (mean, inv_std) = scales[c];
            let [sum, projected] = sums[c];
            let (mean_grad, mean_projected) = (sum as f32 / count, projected as f32 / count);
            let scale = gamma[c] * inv_std;
            let (x, g) = (&values[index * plane..], &grad[index * plane..]);
            for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                let normalised = (x - mean) * inv_std;
                *dx = scale * (g - mean_grad - normalised * mean_projected);
            }
        });
        let gamma_grad = sums.iter().map(|[_, p]| *p as f32).collect();
        let beta_grad = sums.iter().map(|[s, _]| *s as f32).collect();
        [
            tensor(dx, shape),
            tensor(gamma_grad, vec![channels]),
            tensor(beta_grad, vec![channels]),
        ]
    }
}

impl<B, C> TrainingNorm for Autodiff<B, C>
where
    B: Backend + TrainingNorm + NormKernels,
    C: CheckpointStrategy,
{
    fn training_batch_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        /// The statistics feed the running averages only, as constants: nothing flows back.
        #[derive(Debug)]
        struct Detached;

        impl<B: Backend> Backward<B, 1> for Detached {
            type State = ();

            fn backward(self, _: Ops<(), 1>, _: &mut Gradients, _: &mut Checkpointer) {}
        }

        Detached
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateless(B::training_batch_stats(x.into_primitive()))
    }

    fn training_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct NormBackward;

        impl<B: Backend + NormKernels> Backward<B, 3> for NormBackward {
            type State = (NodeId, NodeId, B::FloatTensorPrimitive, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, stats, epsilon) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                let gamma =
                    checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
                let [dx, dgamma, dbeta] = B::batch_norm_backward(x, gamma, stats, epsilon, grad);
                for (node, gradient) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, gradient);
                    }
                }
            }
        }

        let stats = stats.into_primitive();
        match NormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let y = B::training_batch_norm(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    stats.clone(),
                    epsilon,
                );
                prep.finish((x_state, gamma_state, stats, epsilon), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::training_batch_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                stats,
                epsilon,
            )),
        }
    }
}

/// `norm` applied to `x` as `BatchNorm::forward` does (batch statistics and running averages in
/// training, the running averages otherwise); fused when trained on the CPU backend.
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    if !(super::trains_on_cpu(&device) && norm.training.is_enabled()) {
        return norm.forward(x);
    }
    let stats: Tensor<2> = Tensor::from_dispatch(<Dispatch as TrainingNorm>::training_batch_stats(
        x.clone().into_dispatch(),
    ));
    let y = Tensor::from_dispatch(<Dispatch as TrainingNorm>::training_batch_norm(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        stats.clone().into_dispatch(),
        norm.epsilon,
    ));
    let channels = norm.gamma.dims()[0];
    let [mean, variance] =
        [0, 1].map(|row| stats.clone().narrow(0, row, 1).reshape([channels]).detach());
    let momentum = norm.momentum;
    let running = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
        let old = state.value_sync().to_device(&device);
        state.update((old * (1.0 - momentum) + batch * momentum).detach());
    };
    running(&norm.running_mean, mean);
    running(&norm.running_var, variance);
    y
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn fused_batch_norm_matches_burns_output_gradients_and_running_averages() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([3, 5, 6, 7], Distribution::Normal(2.0, 3.0), &device);
        let weights = Tensor::<4>::random([3, 5, 6, 7], Distribution::Default, &device);
        let run = |fused: bool| {
            let mut norm = BatchNormConfig::new(5).init(&device);
            let values = |v: [f32; 5]| Param::from_tensor(Tensor::<1>::from_floats(v, &device));
            norm.gamma = values([0.5, 1.0, 1.5, 2.0, 0.8]);
            norm.beta = values([-0.25, 0.0, 0.5, 1.0, -1.0]);
            let x = x.clone().require_grad();
            let y = if fused {
                batch_norm(&norm, x.clone())
            } else {
                norm.forward(x.clone())
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let dx = x.grad(&grads).expect("x takes part in the loss");
            let dgamma = norm.gamma.grad(&grads).expect("gamma is trained");
            let dbeta = norm.beta.grad(&grads).expect("beta is trained");
            let running = norm.running_var.value() + norm.running_mean.value() * 10.0;
            (y.inner(), dx, dgamma, dbeta, running.inner())
        };
        let (fused, burns) = (run(true), run(false));
        let gap4 = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
        let gap1 = |a: Tensor<1>, b: Tensor<1>| (a - b).abs().max().into_scalar::<f32>();
        assert!(gap4(fused.0, burns.0) < 1e-4, "output");
        assert!(gap4(fused.1, burns.1) < 1e-4, "input gradient");
        assert!(gap1(fused.2, burns.2) < 1e-3, "gamma gradient");
        assert!(gap1(fused.3, burns.3) < 1e-3, "beta gradient");
        assert!(gap1(fused.4, burns.4) < 1e-4, "running averages");
    }
}
