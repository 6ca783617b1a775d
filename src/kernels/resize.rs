//! Bilinear resizing with half-pixel centres (ONNX `Resize` linear `half_pixel`, burn's
//! bilinear interpolate without aligned corners) for training on burn's CPU backend: rows then
//! columns, plane by plane, forward and backward.
//!
//! burn 0.22 computes each output pixel's four source positions and weights from floating-point
//! coordinates, pixel by pixel, forward and again backward. Here both axes' positions and
//! weights are tabled once per call, and each plane is interpolated along its rows into a
//! buffer, then along its columns; the backward pass runs the same two passes transposed.
//! Without autodiff, on any other device than the CPU backend, or for other modes,
//! [`interpolate`] is burn's.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::module::interpolate as burn_interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use rayon::prelude::*;

use super::flex_data::{planes, tensor, values};

/// The resize as a backend extension, so that its autodiff form carries its own backward pass.
#[backend_extension(Flex, Autodiff)]
pub trait TrainingResize: Backend {
    /// `x` (N×C×H×W) resized bilinearly to `size` (height, width), half-pixel centres.
    fn training_resize_bilinear(x: FloatTensor<Self>, size: [usize; 2]) -> FloatTensor<Self>;
}

/// The CPU backend's backward pass.
pub trait ResizeKernels: Backend {
    /// The gradient of [`TrainingResize::training_resize_bilinear`] for an input of `input`
    /// (height, width), from the output gradient `grad`.
    fn resize_bilinear_backward(grad: FloatTensor<Self>, input: [usize; 2]) -> FloatTensor<Self>;
}

impl TrainingResize for Flex {
    fn training_resize_bilinear(x: FloatTensor<Self>, size: [usize; 2]) -> FloatTensor<Self> {
        let [n, c, h, w] = x.shape().dims();
        let x = values(&x);
        let plan = Plan::new([h, w], size);
        let mut out = planes(n * c, size[0] * size[1], |_, _| {});
        out.par_chunks_mut(size[0] * size[1])
            .zip(x.par_chunks(h * w))
            .for_each_init(
                || vec![0.0; h * size[1]],
                |rows, (out, x)| plan.forward(x, rows, out),
            );
        tensor(out, vec![n, c, size[0], size[1]])
    }
}

impl ResizeKernels for Flex {
    fn resize_bilinear_backward(grad: FloatTensor<Self>, input: [usize; 2]) -> FloatTensor<Self> {
        let [n, c, oh, ow] = grad.shape().dims();
        let grad = values(&grad);
        let plan = Plan::new(input, [oh, ow]);
        let mut dx = planes(n * c, input[0] * input[1], |_, _| {});
        dx.par_chunks_mut(input[0] * input[1])
            .zip(grad.par_chunks(oh * ow))
            .for_each_init(
                || vec![0.0; input[0] * ow],
                |rows, (dx, grad)| plan.backward(grad, rows, dx),
            );
        tensor(dx, vec![n, c, input[0], input[1]])
    }
}

/// Where each output row and column reads its input.
struct Plan {
    input: [usize; 2],
    output: [usize; 2],
    rows: Vec<Tap>,
    cols: Vec<Tap>,
}

/// An output position's two input positions and the weight of the second.
#[derive(Clone, Copy)]
struct Tap {
    low: usize,
    high: usize,
    weight: f32,
}

impl Tap {
    /// burn's half-pixel mapping: input `(o + ½)·in/out − ½`, clamped to the input.
    fn table(len_in: usize, len_out: usize) -> Vec<Tap> {
        let ratio = len_in as f64 / len_out as f64;
        (0..len_out)
            .map(|o| {
                let at = (o as f64 + 0.5) * ratio - 0.5;
                let low = at.floor().max(0.0) as usize;
                Tap {
                    low,
                    high: (low + 1).min(len_in - 1),
                    weight: (at - low as f64).max(0.0) as f32,
                }
            })
            .collect()
    }
}

impl Plan {
    fn new(input: [usize; 2], output: [usize; 2]) -> Self {
        Self {
            input,
            output,
            rows: Tap::table(input[0], output[0]),
            cols: Tap::table(input[1], output[1]),
        }
    }

    /// One plane: each input row resized into `rows` (H×W'), then rows blended into `out`.
    fn forward(&self, x: &[f32], rows: &mut [f32], out: &mut [f32]) {
        let ([_, w], [_, ow]) = (self.input, self.output);
        for (line, x) in rows.chunks_exact_mut(ow).zip(x.chunks_exact(w)) {
            for (value, tap) in line.iter_mut().zip(&self.cols) {
                *value = x[tap.low] + tap.weight * (x[tap.high] - x[tap.low]);
            }
        }
        for (line, tap) in out.chunks_exact_mut(ow).zip(&self.rows) {
            let (low, high) = (&rows[tap.low * ow..][..ow], &rows[tap.high * ow..][..ow]);
            for ((value, low), high) in line.iter_mut().zip(low).zip(high) {
                *value = low + tap.weight * (high - low);
            }
        }
    }

    /// One plane's gradient: `grad`'s rows shared out onto `rows` (H×W'), then each row's
    /// values shared out onto `dx`.
    fn backward(&self, grad: &[f32], rows: &mut [f32], dx: &mut [f32]) {
        let ([_, w], [_, ow]) = (self.input, self.output);
        rows.fill(0.0);
        for (line, tap) in grad.chunks_exact(ow).zip(&self.rows) {
            for (k, g) in line.iter().enumerate() {
                rows[tap.low * ow + k] += (1.0 - tap.weight) * g;
                rows[tap.high * ow + k] += tap.weight * g;
            }
        }
        for (dx, line) in dx.chunks_exact_mut(w).zip(rows.chunks_exact(ow)) {
            for (g, tap) in line.iter().zip(&self.cols) {
                dx[tap.low] += (1.0 - tap.weight) * g;
                dx[tap.high] += tap.weight * g;
            }
        }
    }
}

impl<B, C> TrainingResize for Autodiff<B, C>
where
    B: Backend + TrainingResize + ResizeKernels,
    C: CheckpointStrategy,
{
    fn training_resize_bilinear(x: FloatTensor<Self>, size: [usize; 2]) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ResizeBackward;

        impl<B: Backend + ResizeKernels> Backward<B, 1> for ResizeBackward {
            type State = [usize; 2];

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [parent] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                if let Some(node) = parent {
                    grads.register::<B>(node.id, B::resize_bilinear_backward(grad, ops.state));
                }
            }
        }

        let [_, _, h, w] = x.shape().dims();
        match ResizeBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                [h, w],
                B::training_resize_bilinear(x.into_primitive(), size),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::training_resize_bilinear(x.into_primitive(), size))
            }
        }
    }
}

/// `x` resized as `options` say; bilinear with half-pixel centres runs the kernels above when
/// trained on the CPU backend.
pub fn interpolate(x: Tensor<4>, options: InterpolateOptions) -> Tensor<4> {
    let half_pixel_bilinear =
        matches!(options.mode, InterpolateMode::Bilinear) && !options.align_corners;
    if !half_pixel_bilinear || !super::trains_on_cpu(&x.device()) {
        return burn_interpolate(x, options);
    }
    let [_, _, h, w] = x.dims();
    let size = match (options.output_size, options.scale_factor) {
        (Some(size), _) => size,
        (None, Some([sh, sw])) => [
            (h as f64 * f64::from(sh)).floor() as usize,
            (w as f64 * f64::from(sw)).floor() as usize,
        ],
        (None, None) => return burn_interpolate(x, options),
    };
    Tensor::from_dispatch(<Dispatch as TrainingResize>::training_resize_bilinear(
        x.into_dispatch(),
        size,
    ))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn resizing_matches_burns_value_and_gradient_up_down_and_by_fractions() {
        let device = Device::flex().autodiff();
        // (input height, width, options)
        let bilinear = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false);
        let cases = [
            (8, 6, bilinear.clone().with_scale_factor([2.0, 2.0])),
            (5, 7, bilinear.clone().with_scale_factor([4.0, 4.0])),
            (5, 9, bilinear.with_output_size([7, 4])),
        ];
        for (h, w, options) in cases {
            let x = Tensor::<4>::random([2, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
            let size = burn_interpolate(x.clone(), options.clone()).dims();
            let weights = Tensor::<4>::random(size, Distribution::Default, &device);
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let y = if ours {
                    interpolate(x.clone(), options.clone())
                } else {
                    burn_interpolate(x.clone(), options.clone())
                };
                let grads = (y.clone() * weights.clone()).sum().backward();
                let dx = x.grad(&grads).expect("x takes part in the loss");
                (y.inner(), dx)
            };
            let ((y, dx), (y_burn, dx_burn)) = (run(true), run(false));
            assert_eq!(y.dims(), y_burn.dims());
            let gap = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
            assert!(gap(y, y_burn) < 1e-5, "{h}x{w} {options:?}");
            assert!(gap(dx, dx_burn) < 1e-5, "{h}x{w} {options:?}");
        }
    }
}
