//! The training loop: stages of progressive resizing, epochs of one-cycle Adam steps on batches
//! the loader prepares in parallel, validation after every epoch, checkpoints, and at the end
//! the export of the best epoch's weights as ONNX with the parity check.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::ParamGroup;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array4;

use super::checkpoint::{Best, Checkpoints, Position, TrainingState, load_model};
use super::config::{PreparedData, Split, TrainConfig, write_config};
use super::encoder_weights::load_resnet34_weights;
use super::export::export_to_file;
use super::loader::{Batch, EpochPlan, derive_seed};
use super::loss::{LossKind, Targets, median_frequency_weights};
use super::model::SegmentationModel;
use super::parity::max_logit_difference;
use super::pretrained::{Decoder, Pretrained};
use super::report::{EpochRecord, draw_curves, write_csv};
use super::schedule::OneCycle;
use crate::dataset::{Sample, load_resized};
use crate::imaging::{LabelColors, Normalizer, SheetRow};
use crate::infer::ModelCard;
use crate::metrics::Confusion;
use crate::paths::shown;
use crate::{Error, Result};

/// The trained model's file name in the run folder.
const MODEL_FILE: &str = "model.onnx";
/// Validation images shown on the contact sheet.
const SHEET_IMAGES: usize = 8;
/// Augmented training images shown on `augment_samples.png`.
const AUGMENT_SHEET_IMAGES: usize = 16;
/// Validation images fed to the parity check.
const PARITY_IMAGES: usize = 2;

/// How a training session ended.
#[derive(Debug)]
pub enum Outcome {
    /// All stages ran; the model is exported.
    Finished(Finished),
    /// Stopped early (Ctrl-C or `--stop-after`); the checkpoint holds this position.
    Stopped(Position),
}

/// The result of a finished run.
#[derive(Debug)]
pub struct Finished {
    /// The exported ONNX file.
    pub model: PathBuf,
    /// The epoch whose weights were exported.
    pub best: EpochRecord,
    /// Largest |Δ| between burn's and ONNX Runtime's logits on validation images.
    pub parity: f32,
    /// Training wall time over all sessions, in seconds.
    pub seconds: f64,
    /// Every epoch's figures.
    pub history: Vec<EpochRecord>,
}

/// How one training session runs: when it stops early, and whether it reports where the
/// time of a step goes.
pub struct Session<'a> {
    /// Set by Ctrl-C: save and stop after the current step.
    pub interrupt: &'a AtomicBool,
    /// Stop after this many epochs in total (the run can be resumed).
    pub after_epochs: Option<usize>,
    /// Print each epoch's time per step split into loader wait, upload, forward, loss,
    /// backward and optimiser.
    pub profile: bool,
}

/// A training run in its folder.
pub struct Learner {
    pub(super) config: TrainConfig,
    pub(super) data: PreparedData,
    pub(super) run: PathBuf,
    pub(super) card: ModelCard,
    command: String,
    pub(super) device: Device,
    checkpoints: Checkpoints,
    /// The model the run starts from (`--init-from`).
    pretrained: Option<Pretrained>,
}

impl Learner {
    /// Prepares a run of `config` in folder `run` (created if needed); `command` is recorded
    /// in the model card.
    ///
    /// # Errors
    /// Invalid settings or dataset errors.
    pub fn new(config: TrainConfig, run: &Path, command: String) -> Result<Self> {
        config.validate()?;
        if run.exists() && !run.is_dir() {
            return Err(Error::Config(format!(
                "-o {}: a file; train writes a run folder (model.onnx, checkpoints, curves) \
                 there: name a folder",
                crate::paths::shown(run)
            )));
        }
        if let Some(init_from) = &config.init_from {
            crate::files::refuse_overwriting(init_from, &run.join(MODEL_FILE))?;
        }
        let data = config.prepare()?;
        std::fs::create_dir_all(run).map_err(|e| Error::io(run, e))?;
        let size = *config.sizes.last().expect("validated: at least one size");
        let classes = data.classes.names.len();
        let mut card = ModelCard::with_defaults(classes, size);
        card.classes = data.classes.names.clone();
        card.colors = data.classes.colors.clone();
        card.architecture = config.architecture.to_string();
        let pretrained = match &config.init_from {
            Some(path) => {
                let pretrained = Pretrained::read(path, classes, config.seed, config.decoder)?;
                pretrained.check_sizes(&config.sizes)?;
                if let Some(before) = pretrained.replaced_head {
                    let new = match config.decoder {
                        Decoder::Head => "new head",
                        Decoder::UNet => "new U-Net decoder",
                    };
                    println!("{}: {new} ({before} → {classes} classes)", shown(path));
                }
                // The body was trained on inputs normalised this way.
                card.mean = pretrained.card.mean;
                card.std = pretrained.card.std;
                card.architecture = match (pretrained.replaced_head, config.decoder) {
                    (Some(_), Decoder::UNet) => {
                        format!("{} + U-Net decoder", pretrained.card.architecture)
                    }
                    _ => pretrained.card.architecture.clone(),
                };
                Some(pretrained)
            }
            None => None,
        };
        crate::kernels::memory::keep_freed_memory();
        crate::kernels::subnormals::flush_subnormals();
        // Seeds the CPU's generator, which draws the starting weights on every device.
        let device = Device::flex().autodiff();
        device.seed(config.seed);
        Ok(Learner {
            checkpoints: Checkpoints::new(run),
            config,
            data,
            run: run.to_path_buf(),
            card,
            command,
            device,
            pretrained,
        })
    }

    /// The run on `device` (autodiff over it) instead of the CPU: the same model, loop,
    /// checkpoints and export on every device.
    #[must_use]
    pub fn on(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The data the run uses.
    pub fn data(&self) -> &PreparedData {
        &self.data
    }

    /// The run's configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Trains from the start (or from the run's checkpoint when `resume`), until done or
    /// stopped.
    ///
    /// # Errors
    /// Dataset, checkpoint, export or parity failures.
    pub fn train(&self, resume: bool, session: &Session<'_>) -> Result<Outcome> {
        let mut model = self.new_model()?;
        let mut optimizer = self.optimizer();
        let mut state = TrainingState {
            position: Position::default(),
            best: None,
            history: Vec::new(),
            seconds: 0.0,
        };
        if resume {
            (optimizer, state) = self.checkpoints.load(&mut model, optimizer)?;
            println!(
                "resuming at stage {} epoch {} batch {} ({} epochs done)",
                state.position.stage + 1,
                state.position.epoch + 1,
                state.position.batch,
                state.history.len()
            );
        } else {
            write_config(&self.run, &self.config)?;
        }
        let total_epochs: usize = self.config.epochs.iter().sum();
        let normalizer = Normalizer::new(&self.card);
        for stage in state.position.stage..self.config.sizes.len() {
            let size = self.config.sizes[stage];
            let train_set = self.load(Split::Train, size)?;
            let valid_set = self.load(Split::Valid, size)?.samples;
            let class_weights = self.class_weights(&train_set.samples);
            if let (Some(pretrained), 0, false) = (&self.pretrained, stage, resume) {
                // Where fine-tuning starts from, so its epochs can be judged against it.
                let start = validate(
                    &model.valid(),
                    &valid_set,
                    size,
                    normalizer,
                    &self.config,
                    self.card.num_classes(),
                    &class_weights,
                );
                let scores = start.confusion.scores(self.card.num_classes());
                println!(
                    "before training ({}): valid loss {:.4}, {} {:.4}",
                    shown(&pretrained.path),
                    start.loss,
                    if scores.dice.is_some() {
                        "dice"
                    } else {
                        "mIoU"
                    },
                    scores.headline()
                );
            }
            let epochs = self.config.epochs[stage];
            let plan_of = |epoch: usize| {
                let seed = derive_seed(&[self.config.seed, stage as u64, epoch as u64]);
                self.training_plan(&train_set, seed)
            };
            if state.position
                == (Position {
                    stage,
                    epoch: 0,
                    batch: 0,
                })
            {
                self.write_augment_sheet(&plan_of(0), &train_set.samples, size)?;
            }
            let steps_per_epoch = plan_of(0).batches.len();
            let cycle = OneCycle {
                max_lr: self.config.lr,
                total_steps: epochs * steps_per_epoch,
            };
            let frozen = self.config.freeze_encoder && stage == 0;
            model = model.set_require_grad_group(body_group(), !frozen);
            let first_epoch = if stage == state.position.stage {
                state.position.epoch
            } else {
                0
            };
            for epoch in first_epoch..epochs {
                let skip = if (stage, epoch) == (state.position.stage, state.position.epoch) {
                    state.position.batch
                } else {
                    0
                };
                let started = Instant::now();
                let bar = progress_bar(steps_per_epoch, state.history.len() + 1, total_epochs);
                bar.set_position(skip as u64);
                let (mut loss_sum, mut steps, mut images) = (0.0, 0usize, 0usize);
                let mut lr = cycle.lr(epoch * steps_per_epoch + skip);
                let batches = plan_of(epoch).start(
                    Arc::clone(&train_set.samples),
                    size,
                    normalizer,
                    self.config.workers,
                    skip,
                );
                let mut spent = StepTimes::default();
                let mut waiting = Instant::now();
                for (i, batch) in batches.enumerate() {
                    let wait = waiting.elapsed().as_secs_f64();
                    lr = cycle.lr(epoch * steps_per_epoch + skip + i);
                    let (loss, times);
                    (model, loss, times) = train_step(
                        model,
                        &mut optimizer,
                        &batch,
                        self.lr_policy(lr, frozen),
                        self.config.loss,
                        &class_weights,
                        &self.device,
                    );
                    spent = spent + StepTimes { wait, ..times };
                    loss_sum += f64::from(loss);
                    steps += 1;
                    images += batch.len;
                    bar.inc(1);
                    bar.set_message(format!(
                        "loss {:.4}  {:.1} img/s",
                        loss_sum / steps as f64,
                        images as f64 / started.elapsed().as_secs_f64()
                    ));
                    if session.interrupt.load(Ordering::Relaxed) {
                        bar.abandon();
                        state.position = Position {
                            stage,
                            epoch,
                            batch: skip + i + 1,
                        };
                        state.seconds += started.elapsed().as_secs_f64();
                        self.checkpoints.save(&model, &optimizer, &state)?;
                        return Ok(Outcome::Stopped(state.position));
                    }
                    waiting = Instant::now();
                }
                if session.profile {
                    println!("{}", spent.per_step_summary(steps));
                }
                let train_seconds = started.elapsed().as_secs_f64();
                bar.finish_and_clear();
                let valid_model = model.valid();
                let validation = validate(
                    &valid_model,
                    &valid_set,
                    size,
                    normalizer,
                    &self.config,
                    self.card.num_classes(),
                    &class_weights,
                );
                let record = EpochRecord {
                    epoch: state.history.len() + 1,
                    stage,
                    size,
                    train_loss: loss_sum / steps.max(1) as f64,
                    valid_loss: validation.loss,
                    scores: validation.confusion.scores(self.card.num_classes()),
                    lr,
                    images_per_s: images as f64 / train_seconds,
                    seconds: started.elapsed().as_secs_f64(),
                };
                println!("{}", record.summary(total_epochs));
                state.seconds += record.seconds;
                if self.config.keeps_last()
                    || state
                        .best
                        .is_none_or(|b| record.scores.headline() > b.score)
                {
                    state.best = Some(Best {
                        score: record.scores.headline(),
                        epoch: record.epoch,
                    });
                    self.checkpoints.save_best(&model)?;
                    self.write_sheet(&valid_set, &validation.predicted, size)?;
                }
                state.history.push(record);
                state.position = if epoch + 1 < epochs {
                    Position {
                        stage,
                        epoch: epoch + 1,
                        batch: 0,
                    }
                } else {
                    Position {
                        stage: stage + 1,
                        epoch: 0,
                        batch: 0,
                    }
                };
                self.checkpoints.save(&model, &optimizer, &state)?;
                self.write_reports(&state.history);
                if session
                    .after_epochs
                    .is_some_and(|n| state.history.len() >= n)
                    && state.history.len() < total_epochs
                {
                    return Ok(Outcome::Stopped(state.position));
                }
            }
        }
        self.finish(&state).map(Outcome::Finished)
    }

    /// A fresh model for training: the `--init-from` graph, or a new U-Net (its encoder
    /// loaded from `--encoder-weights` when given).
    ///
    /// The weights are drawn on the CPU, whose generator the run's seed set, and then moved to
    /// the training device: one seed starts from the same weights on every device.
    pub(super) fn new_model(&self) -> Result<SegmentationModel> {
        let mut model = self.build_model(&Device::flex().autodiff())?;
        if let (Some(path), SegmentationModel::ResNet34(unet)) =
            (&self.config.encoder_weights, &mut model)
        {
            let loaded = load_resnet34_weights(&mut unet.encoder, path)?;
            println!("encoder: {loaded} tensors from {}", shown(path));
        }
        Ok(model.moved_to(&self.device))
    }

    /// The run's network on `device`, with its starting weights.
    fn build_model(&self, device: &Device) -> Result<SegmentationModel> {
        match &self.pretrained {
            Some(pretrained) => pretrained.model(device).map(SegmentationModel::Graph),
            None => Ok(SegmentationModel::new(
                &self.config.architecture,
                self.card.num_classes(),
                device,
            )),
        }
    }

    /// The step's learning rates: a pretrained, unfrozen encoder or body learns at
    /// `encoder_lr_ratio × lr` (the seed's differential learning rates).
    pub(super) fn lr_policy(&self, lr: f64, frozen: bool) -> ModuleLearningRate {
        let pretrained = self.config.encoder_weights.is_some() || self.pretrained.is_some();
        if !pretrained || frozen {
            return lr.into();
        }
        ModuleLrScheduler::new(lr)
            .with_group(body_group(), lr * self.config.encoder_lr_ratio)
            .step()
    }

    pub(super) fn optimizer(&self) -> ModuleOptimizer {
        if self.config.weight_decay > 0.0 {
            AdamWConfig::new()
                .with_weight_decay(self.config.weight_decay as f32)
                .init()
        } else {
            AdamConfig::new().init()
        }
    }

    /// Every folder's `split` pairs at `size`, in `--data` order.
    pub(super) fn load(&self, split: Split, size: [usize; 2]) -> Result<Loaded> {
        let mut samples = Vec::new();
        let mut groups = Vec::new();
        for source in &self.data.sources {
            let started = Instant::now();
            let resized = load_resized(
                source.pairs(split),
                size,
                &source.reading,
                self.config.cache.as_deref(),
                self.config.workers.max(1),
            )?;
            println!(
                "{}: {} images of {} at {}x{} ({} from the cache, {} masks resized to their \
                 image) in {:.1} s",
                match split {
                    Split::Train => "training",
                    Split::Valid => "validation",
                },
                resized.samples.len(),
                source.source,
                size[0],
                size[1],
                resized.from_cache,
                resized.masks_resized,
                started.elapsed().as_secs_f64()
            );
            groups.push((resized.samples.len(), source.source.weight));
            samples.extend(resized.samples);
        }
        Ok(Loaded {
            samples: Arc::new(samples),
            groups,
        })
    }

    /// The pixel loss's class weights for `train` (empty = all 1): median-frequency weights
    /// when the run asks for them.
    pub(super) fn class_weights(&self, train: &[Sample]) -> Vec<f32> {
        if !self.config.median_frequency {
            return Vec::new();
        }
        let weights = median_frequency_weights(train, self.data.classes.label_count());
        let shown: Vec<String> = self
            .data
            .classes
            .label_names()
            .iter()
            .zip(&weights)
            .map(|(name, w)| format!("{name} {w:.2}"))
            .collect();
        println!("class weights (median frequency): {}", shown.join(", "));
        weights
    }

    /// The epoch of `train` whose draws come from `seed`.
    pub(super) fn training_plan(&self, train: &Loaded, seed: u64) -> EpochPlan {
        EpochPlan::training(
            &train.groups,
            self.config.batch_size,
            seed,
            self.config.augment.clone(),
        )
    }

    /// The validation contact sheet: the first images with predicted and true masks.
    fn write_sheet(
        &self,
        samples: &[Sample],
        predicted: &[Vec<u8>],
        [h, w]: [usize; 2],
    ) -> Result<()> {
        let rows: Vec<SheetRow<'_>> = samples
            .iter()
            .zip(predicted)
            .map(|(s, p)| SheetRow {
                size: [w, h],
                rgb: &s.rgb,
                predicted: p,
                truth: &s.labels,
            })
            .collect();
        let path = self.run.join("valid_samples.png");
        LabelColors::new(&self.card.colors)
            .sheet(&rows)
            .save(&path)
            .map_err(|e| Error::Config(format!("writing {}: {e}", shown(&path))))
    }

    /// `augment_samples.png`: the first training images of `plan` as the model sees them,
    /// with their labels, so that a person can check that the masks still fit.
    fn write_augment_sheet(
        &self,
        plan: &EpochPlan,
        samples: &[Sample],
        [h, w]: [usize; 2],
    ) -> Result<()> {
        let donors = plan.donors(samples);
        let drawn: Vec<Sample> = (0..plan.batches.len())
            .flat_map(|index| (0..plan.batches[index].len()).map(move |slot| (index, slot)))
            .take(AUGMENT_SHEET_IMAGES)
            .map(|(index, slot)| plan.sample(index, slot, samples, &donors, [h, w]))
            .collect();
        let cells: Vec<(&[u8], &[u8])> =
            drawn.iter().map(|s| (&s.rgb[..], &s.labels[..])).collect();
        let path = self.run.join("augment_samples.png");
        LabelColors::new(&self.card.colors)
            .grid(&cells, [w, h], 4)
            .save(&path)
            .map_err(|e| Error::Config(format!("writing {}: {e}", shown(&path))))
    }

    /// CSV and curves; a plot that cannot be drawn is a warning, not a failed run.
    fn write_reports(&self, history: &[EpochRecord]) {
        if let Err(e) = write_csv(&self.run.join("metrics.csv"), history, &self.card.classes) {
            tracing::warn!("metrics.csv: {e}");
        }
        if let Err(e) = draw_curves(&self.run.join("curves.png"), history) {
            tracing::warn!("curves.png not drawn: {e}");
        }
    }

    /// Exports the kept epoch's weights (the best, or the last: [`TrainConfig::keeps_last`]) and checks
    /// parity.
    fn finish(&self, state: &TrainingState) -> Result<Finished> {
        let best = state
            .best
            .and_then(|b| state.history.iter().find(|r| r.epoch == b.epoch))
            .ok_or_else(|| Error::Config("no epoch was completed".into()))?
            .clone();
        let mut model = self.build_model(&Device::flex())?;
        load_model(&mut model, &self.checkpoints.best_model_file())?;
        let mut card = self.card.clone();
        // The best epoch may come from an earlier (smaller) stage of progressive resizing.
        card.input_size = best.size;
        card.training = serde_json::json!({
            "command": self.command,
            "data": self.config.data.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "layout": self.data.sources.iter().map(|s| s.layout).collect::<Vec<_>>(),
            "train_images": self.data.count(Split::Train),
            "valid_images": self.data.count(Split::Valid),
            "sizes": self.config.sizes,
            "epochs": self.config.epochs,
            "batch_size": self.config.batch_size,
            "lr": self.config.lr,
            "loss": self.config.loss.to_string(),
            "seed": self.config.seed,
            "fold": self.config.fold,
            "hold_out": self.config.hold_out,
            "validation_trained_on": self.config.train_on_all,
            "kept": format!("{} epoch", self.config.kept()),
            "init_from": self.pretrained.as_ref().map(|p| serde_json::json!({
                "file": p.path.display().to_string(),
                // Where the weights first came from, carried through fine-tunes of fine-tunes.
                "source": p.card.training.get("source")
                    .or_else(|| p.card.training.get("init_from").and_then(|i| i.get("source"))),
                "architecture": p.card.architecture,
                "new_head_replaced_classes": p.replaced_head,
                "decoder": self.config.decoder,
            })),
            "best_epoch": best.epoch,
            "validation": best.scores,
            "seconds": state.seconds.round(),
        });
        let path = self.run.join(MODEL_FILE);
        export_to_file(&model, &card, &path)?;
        let size = best.size;
        let first = &self.data.sources[0];
        let valid = load_resized(
            &first.valid[..PARITY_IMAGES.min(first.valid.len())],
            size,
            &first.reading,
            self.config.cache.as_deref(),
            1,
        )?;
        let mut input = Vec::new();
        let normalizer = Normalizer::new(&card);
        for sample in &valid.samples {
            normalizer.extend(&sample.rgb, 3, &mut input);
        }
        let input = Array4::from_shape_vec((valid.samples.len(), 3, size[0], size[1]), input)
            .expect("normalised planes fill the batch");
        let parity = max_logit_difference(&model, &path, input.view())?;
        Ok(Finished {
            model: path,
            best,
            parity,
            seconds: state.seconds,
            history: state.history.clone(),
        })
    }
}

/// Samples of several folders, one after the other.
pub(super) struct Loaded {
    /// All samples, in `--data` order.
    pub samples: Arc<Vec<Sample>>,
    /// Per folder: how many samples, and its sampling weight.
    pub groups: Vec<(usize, f64)>,
}

/// The pretrained part: the ResNet34 U-Net's encoder, or an `--init-from` graph's body (the
/// classic U-Net has neither).
fn body_group() -> ParamGroup {
    ParamGroup::from_any_predicates(vec!["encoder", "body"])
}

/// Where one training step's time went, in seconds (`train --profile`, `benches/train_step`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimes {
    /// Waiting for the loader's next batch.
    pub wait: f64,
    /// Images and labels into tensors.
    pub upload: f64,
    /// The model's forward pass.
    pub forward: f64,
    /// The loss and its value.
    pub loss: f64,
    /// The backward pass.
    pub backward: f64,
    /// The optimiser's update.
    pub optimizer: f64,
}

impl StepTimes {
    /// The whole step.
    pub fn total(&self) -> f64 {
        self.wait + self.upload + self.forward + self.loss + self.backward + self.optimizer
    }

    /// `profile: per step …` for `steps` steps' total.
    pub fn per_step_summary(&self, steps: usize) -> String {
        let ms = |seconds: f64| seconds / steps.max(1) as f64 * 1e3;
        format!(
            "profile: {:.0} ms per step: loader wait {:.0}, upload {:.0}, forward {:.0}, loss \
             {:.0}, backward {:.0}, optimiser {:.0}",
            ms(self.total()),
            ms(self.wait),
            ms(self.upload),
            ms(self.forward),
            ms(self.loss),
            ms(self.backward),
            ms(self.optimizer)
        )
    }
}

impl std::ops::Add for StepTimes {
    type Output = StepTimes;

    fn add(self, o: StepTimes) -> StepTimes {
        StepTimes {
            wait: self.wait + o.wait,
            upload: self.upload + o.upload,
            forward: self.forward + o.forward,
            loss: self.loss + o.loss,
            backward: self.backward + o.backward,
            optimizer: self.optimizer + o.optimizer,
        }
    }
}

/// One optimisation step on `batch`; returns the updated model, the batch loss and where the
/// time went (burn's CPU backend runs each operation as it is called, so the phases are
/// timed as they run).
pub fn train_step(
    model: SegmentationModel,
    optimizer: &mut ModuleOptimizer,
    batch: &Batch,
    lr: ModuleLearningRate,
    loss_kind: LossKind,
    class_weights: &[f32],
    device: &Device,
) -> (SegmentationModel, f32, StepTimes) {
    let mut clock = Instant::now();
    let mut lap = || {
        let seconds = clock.elapsed().as_secs_f64();
        clock = Instant::now();
        seconds
    };
    let images = images_tensor(batch, device);
    let targets = Targets::new(batch, device, class_weights);
    let upload = lap();
    let logits = model.forward(images);
    let forward = lap();
    let loss = loss_kind.compute(logits, &targets);
    let value = loss.clone().into_scalar::<f32>();
    let loss_time = lap();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let backward = lap();
    let model = optimizer.step(lr, model, grads);
    let times = StepTimes {
        wait: 0.0,
        upload,
        forward,
        loss: loss_time,
        backward,
        optimizer: lap(),
    };
    (model, value, times)
}

fn images_tensor(batch: &Batch, device: &Device) -> Tensor<4> {
    let [h, w] = batch.size;
    Tensor::from_data(
        TensorData::new(batch.images.clone(), [batch.len, 3, h, w]),
        device,
    )
}

/// Validation loss, confusion matrix and the predicted labels of the first images.
struct Validation {
    loss: f64,
    confusion: Confusion,
    predicted: Vec<Vec<u8>>,
}

fn validate(
    model: &SegmentationModel,
    samples: &Arc<Vec<Sample>>,
    size: [usize; 2],
    normalizer: Normalizer,
    config: &TrainConfig,
    classes: usize,
    class_weights: &[f32],
) -> Validation {
    // Where the model is: the training device, without autodiff.
    let device = model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex);
    let mut confusion = Confusion::new(classes.max(2));
    let mut predicted = Vec::new();
    let (mut loss_sum, mut batches) = (0.0, 0usize);
    let plan = EpochPlan::validation(samples.len(), config.batch_size);
    for batch in plan.start(Arc::clone(samples), size, normalizer, config.workers, 0) {
        let logits = model.forward(images_tensor(&batch, &device));
        let loss = config.loss.compute(
            logits.clone(),
            &Targets::new(&batch, &device, class_weights),
        );
        loss_sum += f64::from(loss.into_scalar::<f32>());
        batches += 1;
        let values = logits
            .into_data_as::<f32>()
            .try_to_vec::<f32>()
            .expect("into_data_as::<f32> yields f32 data");
        let pixels = size[0] * size[1];
        for (image, truth) in values
            .chunks_exact(classes * pixels)
            .zip(batch.labels.chunks_exact(pixels))
        {
            let labels = labels_from_logits(image, classes, pixels);
            confusion.add(truth, &labels);
            if predicted.len() < SHEET_IMAGES {
                predicted.push(labels);
            }
        }
    }
    Validation {
        loss: loss_sum / batches.max(1) as f64,
        confusion,
        predicted,
    }
}

/// Arg-max over channels (C×pixels logits), or logit > 0 for one channel.
fn labels_from_logits(logits: &[f32], classes: usize, pixels: usize) -> Vec<u8> {
    if classes == 1 {
        return logits.iter().map(|&v| u8::from(v > 0.0)).collect();
    }
    (0..pixels)
        .map(|p| {
            (0..classes)
                .max_by(|&a, &b| logits[a * pixels + p].total_cmp(&logits[b * pixels + p]))
                .unwrap_or(0) as u8
        })
        .collect()
}

fn progress_bar(steps: usize, epoch: usize, total: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64).with_prefix(format!("epoch {epoch}/{total}"));
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    bar
}
