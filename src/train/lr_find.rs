//! The learning-rate range test (Smith 2015, fast.ai's `lr_find`): train with a learning rate
//! growing geometrically from 1e-7 to 1, record the smoothed loss, stop when it diverges, and
//! suggest the rate where it fell fastest.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use super::config::Split;
use super::learner::{Learner, train_step};
use super::loader::derive_seed;
use super::plot::{Panel, draw_panels};
use super::schedule::{range_test_rates, suggest_lr};
use crate::imaging::Normalizer;
use crate::{Error, Result};

/// Steps of the sweep.
const STEPS: usize = 100;
/// Smoothing of the recorded loss (exponential moving average, bias-corrected).
const BETA: f64 = 0.98;
/// The sweep stops when the smoothed loss exceeds the best by this factor.
const DIVERGED: f64 = 4.0;

/// What the range test found.
#[derive(Debug)]
pub struct LrFind {
    /// Learning rates tried.
    pub rates: Vec<f64>,
    /// Smoothed loss at each.
    pub losses: Vec<f64>,
    /// The suggested peak learning rate.
    pub suggestion: Option<f64>,
    /// The plot of loss against learning rate.
    pub plot: PathBuf,
}

/// Runs the range test at the first training size of `learner`'s config; writes
/// `lr_find.csv` and `lr_find.png` in the run folder.
///
/// # Errors
/// Dataset errors or files that cannot be written.
pub fn lr_find(learner: &Learner) -> Result<LrFind> {
    let config = &learner.config;
    let size = config.sizes[0];
    let train = learner.load(Split::Train, size)?;
    let class_weights = learner.class_weights(&train.samples);
    let normalizer = Normalizer::new(&learner.card);
    let schedule = range_test_rates(1e-7, 1.0, STEPS);
    let mut model = learner.new_model()?;
    let mut optimizer = learner.optimizer();
    let (mut rates, mut losses) = (Vec::new(), Vec::new());
    let (mut average, mut best) = (0.0, f64::INFINITY);
    let mut epoch = 0u64;
    'sweep: loop {
        let seed = derive_seed(&[config.seed, u64::MAX, epoch]);
        let plan = learner.training_plan(&train, seed);
        for batch in plan.start(
            Arc::clone(&train.samples),
            size,
            normalizer,
            config.workers,
            0,
        ) {
            let lr = schedule[rates.len()];
            let loss;
            (model, loss, _) = train_step(
                model,
                &mut optimizer,
                &batch,
                learner.lr_policy(lr, false),
                config.loss,
                &class_weights,
                &learner.device,
            );
            average = BETA * average + (1.0 - BETA) * f64::from(loss);
            let smoothed = average / (1.0 - BETA.powi(rates.len() as i32 + 1));
            rates.push(lr);
            losses.push(smoothed);
            best = best.min(smoothed);
            println!("lr {lr:.2e}  loss {smoothed:.4}");
            if rates.len() == schedule.len() || !smoothed.is_finite() || smoothed > DIVERGED * best
            {
                break 'sweep;
            }
        }
        epoch += 1;
    }
    let suggestion = suggest_lr(&rates, &losses);
    let mut csv = String::from("lr,smoothed_loss\n");
    for (lr, loss) in rates.iter().zip(&losses) {
        let _ = writeln!(csv, "{lr:.4e},{loss:.6}");
    }
    let csv_path = learner.run.join("lr_find.csv");
    std::fs::write(&csv_path, csv).map_err(|e| Error::io(&csv_path, e))?;
    let plot = learner.run.join("lr_find.png");
    let points = rates
        .iter()
        .zip(&losses)
        .map(|(lr, loss)| (lr.log10(), *loss))
        .collect();
    draw_panels(
        &plot,
        &[Panel {
            title: "learning-rate range test",
            x_label: "log10 learning rate",
            series: vec![("smoothed loss", points)],
        }],
    )?;
    Ok(LrFind {
        rates,
        losses,
        suggestion,
        plot,
    })
}
