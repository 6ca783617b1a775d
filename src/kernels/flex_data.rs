//! f32 values in and out of burn's CPU backend tensors, and fresh buffers written by all cores
//! (plane by plane or element by element), for segstream's own kernels.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use burn::tensor::TensorData;
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// An f32 tensor's values in order (borrowed when it is contiguous already).
pub fn values(x: &FlexTensor) -> Cow<'_, [f32]> {
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

/// A tensor of `shape` holding `values`.
pub fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `count` planes of `len` values, zeroed, then plane `i` handed to `write(i, plane)`; all
/// cores take part (a fresh buffer's pages are touched where they will be used, not zeroed
/// first on one core).
pub fn planes(count: usize, len: usize, write: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = Vec::with_capacity(count * len);
    out.spare_capacity_mut()[..count * len]
        .par_chunks_mut(len.max(1))
        .enumerate()
        .for_each(|(i, plane)| {
            plane.fill(MaybeUninit::new(0.0));
            // SAFETY: every value of the plane was just written, and f32 has no invalid values.
            let plane = unsafe { &mut *(std::ptr::from_mut(plane) as *mut [f32]) };
            write(i, plane);
        });
    // SAFETY: the loop above wrote all `count * len` values.
    unsafe { out.set_len(count * len) };
    out
}

/// Values per task when an element-wise pass is spread over the cores.
const CHUNK: usize = 16 * 1024;

/// `f` of each value of `x`, all cores taking part.
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    zip_map(x, x, |x, _| f(x))
}

/// `f` of each pair of values of `a` and `b` (of one length), all cores taking part.
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "element-wise operands of one length");
    let mut out = Vec::with_capacity(a.len());
    out.spare_capacity_mut()[..a.len()]
        .par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(out, (a, b))| {
            for ((out, &a), &b) in out.iter_mut().zip(a).zip(b) {
                out.write(f(a, b));
            }
        });
    // SAFETY: the loop above wrote all `a.len()` values.
    unsafe { out.set_len(a.len()) };
    out
}
