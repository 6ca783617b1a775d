//! Sums over feature-map planes for the CPU kernels' gradients (a bias's, a channel scale's):
//! a plane holds tens of thousands of values, so each block of 256 is summed in eight f32
//! lanes (vectorised) and the blocks in f64.

use rayon::prelude::*;

const BLOCK: usize = 256;
const ONES: [f32; BLOCK] = [1.0; BLOCK];

/// Σ a·b over up to [`BLOCK`] values.
fn block_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
    for (a, b) in (&mut a8).zip(&mut b8) {
        for lane in 0..8 {
            lanes[lane] += a[lane] * b[lane];
        }
    }
    let rest: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(a, b)| a * b)
        .sum();
    lanes.iter().sum::<f32>() + rest
}

/// Σ a·b.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .map(|(a, b)| f64::from(block_dot(a, b)))
        .sum()
}

/// Σ a.
pub fn sum(a: &[f32]) -> f64 {
    a.chunks(BLOCK)
        .map(|a| f64::from(block_dot(a, &ONES[..a.len()])))
        .sum()
}

/// The sum of each channel of N×C×H×W `values` (planes of `plane` values), all cores taking
/// part: a bias's gradient from its output's.
pub fn channel_sums(values: &[f32], channels: usize, plane: usize) -> Vec<f32> {
    let plane_sums: Vec<f64> = values.par_chunks(plane.max(1)).map(sum).collect();
    let mut sums = vec![0.0; channels];
    for (index, plane_sum) in plane_sums.into_iter().enumerate() {
        sums[index % channels] += plane_sum;
    }
    sums.into_iter().map(|sum| sum as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_of_many_values_keep_their_precision() {
        let values: Vec<f32> = (0..100_003).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let exact: f64 = values.iter().map(|&v| f64::from(v)).sum();
        assert!((sum(&values) - exact).abs() < 1e-3 * exact.abs().max(1.0));
        let squares: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        assert!((dot(&values, &values) - squares).abs() < 1e-3 * squares);
        // Two images of three channels: channel c of image n holds n + c everywhere.
        let planes: Vec<f32> = (0..6)
            .flat_map(|i| vec![(i / 3 + i % 3) as f32; 50])
            .collect();
        assert_eq!(channel_sums(&planes, 3, 50), [50.0, 150.0, 250.0]);
    }
}
