//! Batches for training and validation, prepared by worker threads while the model trains:
//! augmentation, normalisation and the label tensor happen off the training thread.
//!
//! Every random choice comes from the seed, the stage, the epoch and the sample's position, so
//! an epoch's batches are the same however many workers there are and whether the run was
//! resumed.

use std::sync::Arc;

use crossbeam_channel::{Receiver, bounded};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::augment::Augmentation;
use crate::dataset::Sample;
use crate::imaging::Normalizer;

/// Images (normalised, N×3×H×W) and their labels (N×H×W) for one step.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Number of images.
    pub len: usize,
    /// Height and width.
    pub size: [usize; 2],
    /// Normalised pixels, N×3×H×W.
    pub images: Vec<f32>,
    /// Class labels, N×H×W.
    pub labels: Vec<u8>,
}

/// Mixes the seed with where we are (SplitMix64 finaliser), so each draw has its own stream.
pub fn derive_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x9E37_79B9_7F4A_7C15, |acc, &p| {
        let mut z = acc ^ p.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// What one pass over a set of samples looks like.
#[derive(Debug, Clone)]
pub struct EpochPlan {
    /// Sample indices in the order they are used, already cut into whole batches.
    pub batches: Vec<Vec<usize>>,
    /// Augmentation and the seed its draws derive from (`None` for validation).
    pub augment: Option<(Augmentation, u64)>,
}

impl EpochPlan {
    /// A training epoch over samples that come in groups (one per `--data` folder, in
    /// order) of `(count, weight)`: each group's samples appear `weight` times (a fractional
    /// part draws a random share of them), shuffled together from `seed` and cut into batches
    /// of `batch_size` (the last partial batch is dropped unless it is the only one),
    /// augmented with draws from the same seed.
    pub fn training(
        groups: &[(usize, f64)],
        batch_size: usize,
        seed: u64,
        augment: Option<Augmentation>,
    ) -> Self {
        let mut order = Vec::new();
        let mut first = 0;
        for &(count, weight) in groups {
            let members: Vec<usize> = (first..first + count).collect();
            for _ in 0..weight.trunc() as usize {
                order.extend_from_slice(&members);
            }
            let share = (weight.fract() * count as f64).round() as usize;
            if share > 0 {
                let mut drawn = members.clone();
                drawn.shuffle(&mut StdRng::seed_from_u64(derive_seed(&[
                    seed,
                    first as u64,
                ])));
                order.extend_from_slice(&drawn[..share]);
            }
            first += count;
        }
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let mut batches: Vec<Vec<usize>> = order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < batch_size) {
            batches.pop();
        }
        EpochPlan {
            batches,
            augment: augment.map(|a| (a, seed)),
        }
    }

    /// Validation: every sample in order, no augmentation.
    pub fn validation(count: usize, batch_size: usize) -> Self {
        let order: Vec<usize> = (0..count).collect();
        EpochPlan {
            batches: order
                .chunks(batch_size.max(1))
                .map(<[usize]>::to_vec)
                .collect(),
            augment: None,
        }
    }

    /// Starts `workers` threads preparing the batches from `skip` on; the iterator yields
    /// them in order. Dropping it stops the workers.
    pub fn start(
        self,
        samples: Arc<Vec<Sample>>,
        size: [usize; 2],
        normalizer: Normalizer,
        workers: usize,
        skip: usize,
    ) -> Batches {
        let workers = workers.max(1);
        let donors = Arc::new(self.donors(&samples));
        let plan = Arc::new(self);
        let receivers = (0..workers)
            .map(|worker| {
                let (tx, rx) = bounded(2);
                let plan = Arc::clone(&plan);
                let samples = Arc::clone(&samples);
                let donors = Arc::clone(&donors);
                std::thread::Builder::new()
                    .name(format!("loader-{worker}"))
                    .spawn(move || {
                        for index in (skip + worker..plan.batches.len()).step_by(workers) {
                            let batch = plan.prepare(index, &samples, &donors, size, normalizer);
                            if tx.send(batch).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("the OS can start a loader thread");
                rx
            })
            .collect();
        Batches {
            receivers,
            next: 0,
            remaining: plan.batches.len().saturating_sub(skip),
        }
    }

    /// The samples copy-paste may take objects from (none without copy-paste).
    pub fn donors(&self, samples: &[Sample]) -> Vec<usize> {
        match self.augment.as_ref().and_then(|(a, _)| a.paste.as_ref()) {
            Some(paste) => paste.donors(samples),
            None => Vec::new(),
        }
    }

    /// The sample at `slot` of batch `index`, augmented as this plan draws it.
    pub fn sample(
        &self,
        index: usize,
        slot: usize,
        samples: &[Sample],
        donors: &[usize],
        size: [usize; 2],
    ) -> Sample {
        let chosen = &samples[self.batches[index][slot]];
        let Some((augment, seed)) = &self.augment else {
            return chosen.clone();
        };
        let mut rng = StdRng::seed_from_u64(derive_seed(&[*seed, index as u64, slot as u64]));
        let mut sample = chosen.clone();
        if let Some(paste) = &augment.paste {
            paste.apply(&mut sample, samples, donors, size, &mut rng);
        }
        augment.draw(&mut rng, size).apply(&sample, size)
    }

    fn prepare(
        &self,
        index: usize,
        samples: &[Sample],
        donors: &[usize],
        size: [usize; 2],
        normalizer: Normalizer,
    ) -> Batch {
        let members = self.batches[index].len();
        let pixels = size[0] * size[1];
        let mut images = Vec::with_capacity(members * 3 * pixels);
        let mut labels = Vec::with_capacity(members * pixels);
        for slot in 0..members {
            let sample = self.sample(index, slot, samples, donors, size);
            normalizer.extend(&sample.rgb, 3, &mut images);
            labels.extend_from_slice(&sample.labels);
        }
        Batch {
            len: members,
            size,
            images,
            labels,
        }
    }
}

/// The batches of a started plan, in order.
pub struct Batches {
    receivers: Vec<Receiver<Batch>>,
    next: usize,
    remaining: usize,
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        let batch = self.receivers[self.next % self.receivers.len()]
            .recv()
            .ok()?;
        self.next += 1;
        self.remaining -= 1;
        Some(batch)
    }
}
