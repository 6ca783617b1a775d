//! Learning-rate schedules: the one-cycle policy (cosine warm-up from `max/25` to `max`, then
//! cosine annealing to `max/25e4`, as fast.ai's `fit_one_cycle`) and the exponential sweep of
//! the learning-rate range test.

use std::f64::consts::PI;

/// Share of the steps spent warming up.
const WARMUP_SHARE: f64 = 0.25;
/// Starting LR = max / this.
const START_DIV: f64 = 25.0;
/// Final LR = start / this.
const FINAL_DIV: f64 = 1e4;

/// The one-cycle schedule over `total_steps` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneCycle {
    /// Peak learning rate.
    pub max_lr: f64,
    /// Steps in the whole cycle.
    pub total_steps: usize,
}

impl OneCycle {
    /// The learning rate at `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        let start = self.max_lr / START_DIV;
        let end = start / FINAL_DIV;
        let warmup = ((self.total_steps as f64 * WARMUP_SHARE).round() as usize).max(1);
        let cosine = |from: f64, to: f64, t: f64| to + (from - to) * (1.0 + (PI * t).cos()) / 2.0;
        if step < warmup {
            cosine(start, self.max_lr, step as f64 / warmup as f64)
        } else {
            let rest = self.total_steps.saturating_sub(warmup).max(1);
            cosine(
                self.max_lr,
                end,
                ((step - warmup) as f64 / rest as f64).min(1.0),
            )
        }
    }
}

/// The learning-rate range test's sweep: `steps` rates from `from` to `to`, geometrically.
pub fn range_test_rates(from: f64, to: f64, steps: usize) -> Vec<f64> {
    let steps = steps.max(2);
    (0..steps)
        .map(|i| from * (to / from).powf(i as f64 / (steps - 1) as f64))
        .collect()
}

/// The suggested learning rate of a range test: where the smoothed loss falls fastest (per
/// decade of LR), looking only before the minimum loss. `None` for fewer than 5 points.
pub fn suggest_lr(rates: &[f64], smoothed_losses: &[f64]) -> Option<f64> {
    let n = rates.len().min(smoothed_losses.len());
    if n < 5 {
        return None;
    }
    let lowest = (0..n).min_by(|&a, &b| smoothed_losses[a].total_cmp(&smoothed_losses[b]))?;
    (1..=lowest.max(1))
        .map(|i| {
            let slope = (smoothed_losses[i] - smoothed_losses[i - 1])
                / (rates[i].log10() - rates[i - 1].log10());
            (slope, rates[i])
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, lr)| lr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_warms_up_peaks_and_anneals() {
        let cycle = OneCycle {
            max_lr: 1e-2,
            total_steps: 100,
        };
        assert!((cycle.lr(0) - 1e-2 / 25.0).abs() < 1e-12);
        assert!((cycle.lr(25) - 1e-2).abs() < 1e-12);
        assert!(cycle.lr(10) < cycle.lr(20));
        assert!(cycle.lr(60) > cycle.lr(90));
        assert!(cycle.lr(100) < 1e-7);
    }

    #[test]
    fn suggestion_is_the_steepest_descent_before_the_minimum() {
        let rates = range_test_rates(1e-5, 1.0, 6);
        let losses = [1.0, 0.95, 0.6, 0.5, 0.45, 2.0];
        assert_eq!(suggest_lr(&rates, &losses), Some(rates[2]));
    }
}
