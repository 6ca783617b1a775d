//! A depthwise convolution (one channel per group) on contiguous f32 N×C×H×W data, forward and
//! backward: each (image, channel) plane on its own, kernel tap by kernel tap, the planes
//! spread over the cores.
//!
//! burn 0.22 pads the input on one core when the padding differs before and after
//! (TensorFlow's "same" at stride 2) and adds the bias on one core; it runs the input gradient
//! as a transposed convolution channel by channel and the weight gradient as a convolution
//! whose kernel is the whole output gradient. Here, for each tap, one pass over the plane adds
//! the tap's share to the output (forward) or to the input gradient, and one sums its weight
//! gradient; a plane stays in the core's cache throughout, and padding is never copied.

use std::ops::Range;

use rayon::prelude::*;

use super::conv_gemm::{Geometry, reached};
use super::flex_data::planes;
use super::sums;

/// The convolution of `x` with `weight` (C×1×kh×kw), plus `bias` (C) when given.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, geometry: &Geometry) -> Vec<f32> {
    let g = geometry;
    let ([h, w], [ho, wo], taps) = (g.input, g.output(), g.kernel[0] * g.kernel[1]);
    planes(x.len() / (h * w).max(1), ho * wo, |index, out| {
        let channel = index % g.channels_in;
        if let Some(bias) = bias {
            out.fill(bias[channel]);
        }
        let (x, kernel) = (
            &x[index * h * w..][..h * w],
            &weight[channel * taps..][..taps],
        );
        for (tap, &scale) in kernel.iter().enumerate() {
            tap_rows(g, tap, |outputs, start| {
                add_scaled_from(&mut out[outputs], &x[start..], scale, g.stride[1]);
            });
        }
    })
}

/// For kernel tap `tap`, each output row it reaches: the output positions (in the plane) and
/// where in the input plane the first of them reads; the next ones read a stride apart.
fn tap_rows(g: &Geometry, tap: usize, mut visit: impl FnMut(Range<usize>, usize)) {
    let ([h, w], [ho, wo], kw) = (g.input, g.output(), g.kernel[1]);
    let ([sh, sw], [(ph, _), (pw, _)]) = (g.stride, g.padding);
    let (i, j) = (tap / kw, tap % kw);
    let (rows, cols) = (reached(i, sh, ph, h, ho), reached(j, sw, pw, w, wo));
    if cols.is_empty() {
        return;
    }
    for oh in rows {
        let start = (oh * sh + i - ph) * w + cols.start * sw + j - pw;
        visit(oh * wo + cols.start..oh * wo + cols.end, start);
    }
}

/// The gradients of `x` and of `weight` (C×1×kh×kw) from the output gradient `grad`, each when
/// `wanted`; `geometry` has as many output channels as input channels.
pub fn backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    geometry: &Geometry,
    [want_x, want_weight]: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let g = geometry;
    let ([h, w], [ho, wo], sw) = (g.input, g.output(), g.stride[1]);
    let taps = g.kernel[0] * g.kernel[1];
    let mut dx = planes(x.len() / (h * w).max(1), h * w, |_, _| {});
    let plane_sums: Vec<Vec<f32>> = dx
        .par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(grad.par_chunks(ho * wo))
        .enumerate()
        .map(|(index, ((dx, x), grad))| {
            let kernel = &weight[index % g.channels_in * taps..][..taps];
            let mut sums = vec![0.0; taps];
            for (tap, sum) in sums.iter_mut().enumerate() {
                tap_rows(g, tap, |outputs, start| {
                    let grad = &grad[outputs];
                    if want_weight {
                        *sum += dot(grad, &x[start..], sw);
                    }
                    if want_x {
                        add_scaled(&mut dx[start..], grad, kernel[tap], sw);
                    }
                });
            }
            sums
        })
        .collect();
    let dw = want_weight.then(|| {
        let mut dw = vec![0.0; g.channels_in * taps];
        for (index, sums) in plane_sums.iter().enumerate() {
            let channel = &mut dw[index % g.channels_in * taps..][..taps];
            channel.iter_mut().zip(sums).for_each(|(d, s)| *d += s);
        }
        dw
    });
    (want_x.then_some(dx), dw)
}

/// Σ `a[k] · b[k·stride]`.
fn dot(a: &[f32], b: &[f32], stride: usize) -> f32 {
    if stride == 1 {
        return sums::dot(a, &b[..a.len()]) as f32;
    }
    a.iter()
        .zip(b.iter().step_by(stride))
        .map(|(a, b)| a * b)
        .sum()
}

/// `target[k·stride] += scale · values[k]`.
fn add_scaled(target: &mut [f32], values: &[f32], scale: f32, stride: usize) {
    if stride == 1 {
        let target = &mut target[..values.len()];
        target
            .iter_mut()
            .zip(values)
            .for_each(|(t, v)| *t += scale * v);
    } else {
        let target = target.iter_mut().step_by(stride);
        target.zip(values).for_each(|(t, v)| *t += scale * v);
    }
}

/// `target[k] += scale · values[k·stride]`.
fn add_scaled_from(target: &mut [f32], values: &[f32], scale: f32, stride: usize) {
    if stride == 1 {
        let values = &values[..target.len()];
        target
            .iter_mut()
            .zip(values)
            .for_each(|(t, v)| *t += scale * v);
    } else {
        let values = values.iter().step_by(stride);
        target
            .iter_mut()
            .zip(values)
            .for_each(|(t, v)| *t += scale * v);
    }
}
