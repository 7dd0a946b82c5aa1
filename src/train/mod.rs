//! The training loop under RLMRec's protocol (SPEC.md section 2): Adam, BPR over shuffled
//! (user, positive, negative) triples in batches, the backbone's own losses and the
//! alignment's losses added, validation every `eval_every` epochs on the early-stopping
//! metric, stop after `patience` validations without strict improvement, best weights
//! restored.
//!
//! `reg * sum ||W||^2` over all parameters is applied as Adam's (coupled) weight decay
//! `2 * reg`, which adds exactly its gradient `2 * reg * W` inside the fused optimizer
//! pass instead of building the penalty through autograd every step. (On non-CPU devices
//! it is an explicit loss term.)

/// The batch type, from `step` (its old path, kept for callers).
pub use crate::step::batch;
pub mod checkpoint;
pub mod lazy_step;
pub mod loss;
pub mod model;
pub mod parallel_sampler;
pub mod sampler;

pub use model::Model;

use crate::backbone::Mode;
use crate::config::Config;
use crate::data::Dataset;
use crate::eval::{evaluate, EmbeddingScorer, Metrics};
use crate::ops::{Adam, AdamConfig};
use crate::rng::Rng;
use crate::run::RunDir;
use crate::step::LossTerm;
use batch::Batch;
use indicatif::ProgressBar;
use sampler::BprSampler;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// What a finished training reports.
#[derive(Clone, Debug, Serialize)]
pub struct TrainOutcome {
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub best_valid: Metrics,
    pub test: Metrics,
    /// Mean wall time of one training epoch (sampling + steps), seconds.
    pub epoch_seconds: f64,
    /// Mean wall time of one full validation, seconds.
    pub eval_seconds: f64,
    pub total_seconds: f64,
    pub peak_rss_mib: Option<f64>,
}

/// One line of `metrics.jsonl`.
#[derive(Serialize)]
struct EvalLine<'a> {
    epoch: usize,
    split: &'a str,
    #[serde(flatten)]
    metrics: &'a BTreeMap<String, f64>,
    #[serde(flatten)]
    losses: BTreeMap<String, f64>,
    epoch_seconds: f64,
    eval_seconds: f64,
    /// Training and validation time so far (resumed runs count their earlier part), the
    /// x axis of `darec plot --x seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_seconds: Option<f64>,
    best: bool,
}

/// Evaluates the model on a split, masking the training items.
pub fn evaluate_split(
    model: &Model,
    ds: &Dataset,
    split: &str,
    cfg: &Config,
) -> anyhow::Result<Metrics> {
    let truth = match split {
        "valid" => ds.user_items(&ds.valid),
        "test" => ds.user_items(&ds.test),
        other => anyhow::bail!("unknown split `{other}`"),
    };
    let train = ds.user_items(&ds.train);
    let (users, items) = model.final_embeddings()?;
    let scorer = EmbeddingScorer { users, items };
    evaluate(&scorer, &truth, &[&train], &cfg.eval)
}

/// Trains `model` on `ds` and evaluates the test split once with the best weights.
pub fn train(
    model: &mut Model,
    ds: &Dataset,
    cfg: &Config,
    run: &mut RunDir,
) -> anyhow::Result<TrainOutcome> {
    let started = Instant::now();
    let t = &cfg.train;
    let mut epochs = EpochRunner::new(model, ds, cfg)?;
    let bar = progress_bar(cfg);
    let mut best: Option<(f64, usize, Metrics, Vec<candle_core::Tensor>)> = None;
    let mut since_best = 0usize;
    let mut loss_sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut loss_steps = 0usize;
    let (mut epoch_time, mut eval_time, mut evals) = (0.0f64, 0.0f64, 0usize);
    let mut epochs_run = 0;
    let mut first_epoch = 1;
    let mut stopped = false;
    let mut last_checkpoint: Option<usize> = None;
    if run.resuming() && run.file("checkpoint.json").exists() {
        let r = checkpoint::load(run, model)?;
        let st = r.state;
        epochs.restore(
            st.sample_rng,
            st.step_rng,
            st.adam_steps,
            r.adam_m,
            r.adam_v,
        )?;
        best = Some((st.best_score, st.best_epoch, st.best_valid, r.best));
        since_best = st.since_best;
        (epoch_time, eval_time, evals) = (st.epoch_time, st.eval_time, st.evals);
        epochs_run = st.epoch;
        first_epoch = st.epoch + 1;
        stopped = since_best >= t.patience;
        last_checkpoint = Some(st.epoch);
        bar.set_position(st.epoch as u64);
        tracing::info!(
            "resuming after epoch {} (best {:.4} at epoch {})",
            st.epoch,
            st.best_score,
            st.best_epoch
        );
    }

    let mut rank_term: Option<String> = None;
    for epoch in first_epoch..=t.max_epochs {
        if stopped {
            break;
        }
        let t0 = Instant::now();
        model.align.start_epoch(epoch);
        let sums = epochs.run(model).map_err(|e| {
            let kept = match last_checkpoint {
                Some(at) => format!(
                    "the checkpoint of epoch {at} is kept in {} (`darec train --resume` \
                     continues from it)",
                    run.path.display()
                ),
                None => "no checkpoint had been written yet".to_string(),
            };
            if e.is::<Diverged>() {
                e.context(format!(
                    "training diverged in epoch {epoch}: {kept}; lower train.lr, check \
                     model.reg and the semantic vectors, and train again"
                ))
            } else {
                e.context(format!("training failed in epoch {epoch}"))
            }
        })?;
        // the first term is the backbone's ranking loss (`bpr`, or AutoCF's `rec`)
        if let Some((name, _)) = sums.first() {
            rank_term = Some(name.clone());
        }
        for (name, value) in sums {
            *loss_sums.entry(name).or_default() += value;
        }
        loss_steps += epochs.steps_last_epoch;
        let this_epoch = t0.elapsed().as_secs_f64();
        epoch_time += this_epoch;
        epochs_run = epoch;
        bar.inc(1);
        crate::fault::point("epoch trained");

        if epoch % t.eval_every == 0 || epoch == t.max_epochs {
            let e0 = Instant::now();
            let m = evaluate_split(model, ds, "valid", cfg)?;
            let this_eval = e0.elapsed().as_secs_f64();
            eval_time += this_eval;
            evals += 1;
            let score = m.get(&t.metric).unwrap_or(f64::NAN);
            let improved = best.as_ref().is_none_or(|b| score > b.0);
            let losses: BTreeMap<String, f64> = loss_sums
                .iter()
                .map(|(k, v)| (format!("loss_{k}"), v / loss_steps.max(1) as f64))
                .collect();
            run.log(&EvalLine {
                epoch,
                split: "valid",
                metrics: &m.values,
                losses: losses.clone(),
                epoch_seconds: this_epoch,
                eval_seconds: this_eval,
                elapsed_seconds: Some(epoch_time + eval_time),
                best: improved,
            })?;
            let (best_score, best_epoch) = match (improved, best.as_ref()) {
                (false, Some(b)) => (b.0, b.1),
                _ => (score, epoch),
            };
            let (rank_name, rank_value) = headline_loss(&losses, rank_term.as_deref());
            if bar.is_hidden() {
                // no bar (a log file, a grid's child): one line per validation instead,
                // so a background job shows where it is
                tracing::info!(
                    "{} seed {}: epoch {epoch}/{}: valid {}={score:.4} (best {best_score:.4} \
                     at epoch {best_epoch}), {rank_name}={rank_value:.4}, {this_epoch:.2} s/epoch",
                    bar.prefix(),
                    t.seed,
                    t.max_epochs,
                    t.metric,
                );
            }
            tracing::debug!(epoch, score, ?losses, "validation");
            bar.set_message(format!(
                "{}={score:.4} best={best_score:.4} loss={rank_value:.4}",
                t.metric
            ));
            loss_sums.clear();
            loss_steps = 0;
            if improved {
                best = Some((score, epoch, m, model.snapshot()?));
                since_best = 0;
            } else {
                since_best += 1;
                stopped = since_best >= t.patience;
            }
            if let (Some(b), Some((steps, am, av))) = (best.as_ref(), epochs.adam_state()) {
                let (sample_rng, step_rng) = epochs.rng_states();
                let state = checkpoint::LoopState {
                    epoch,
                    best_score: b.0,
                    best_epoch: b.1,
                    best_valid: b.2.clone(),
                    since_best,
                    epoch_time,
                    eval_time,
                    evals,
                    sample_rng,
                    step_rng,
                    adam_steps: steps,
                    tensors: String::new(),
                };
                checkpoint::save(run, state, model, &b.3, (am, av))?;
                last_checkpoint = Some(epoch);
            }
        }
    }
    bar.finish_and_clear();
    let (_, best_epoch, best_valid, weights) = best.expect("at least one validation ran");
    model.restore(&weights)?;
    let test = if cfg.train.evaluate_test {
        evaluate_split(model, ds, "test", cfg)?
    } else {
        Metrics::default()
    };
    run.log(&EvalLine {
        epoch: best_epoch,
        split: "test",
        metrics: &test.values,
        losses: BTreeMap::new(),
        epoch_seconds: 0.0,
        eval_seconds: 0.0,
        elapsed_seconds: None,
        best: true,
    })?;
    Ok(TrainOutcome {
        best_epoch,
        epochs_run,
        best_valid,
        test,
        epoch_seconds: epoch_time / epochs_run.max(1) as f64,
        eval_seconds: eval_time / evals.max(1) as f64,
        total_seconds: started.elapsed().as_secs_f64(),
        peak_rss_mib: crate::run::peak_rss_mib(),
    })
}

/// A loss term that is no longer a finite number: training cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("loss term `{term}` is {value} at step {step} of the epoch")]
pub struct Diverged {
    pub term: String,
    pub value: f64,
    pub step: usize,
}

/// The optimiser of a training run (`train.optimizer`).
enum Optimizer {
    /// Adam over every parameter, from autograd's dense gradients (the protocol).
    Dense(Adam),
    /// MF without an alignment: BPR's row-sparse gradient and lazy Adam, in one pass.
    Lazy(Box<lazy_step::LazyTable>),
}

impl Optimizer {
    fn steps(&self) -> u64 {
        match self {
            Optimizer::Dense(a) => a.steps(),
            Optimizer::Lazy(l) => l.adam.steps(),
        }
    }
    fn set_lr(&mut self, lr: f64) {
        match self {
            Optimizer::Dense(a) => a.set_lr(lr),
            Optimizer::Lazy(l) => l.adam.set_lr(lr),
        }
    }
}

/// Runs training epochs: sampling, forward, backward and the optimiser step.
pub struct EpochRunner {
    sampler: BprSampler,
    sample_rng: Rng,
    step_rng: Rng,
    optimizer: Optimizer,
    batch_size: usize,
    /// The learning rate after scaling for the batch size, before warm-up.
    lr: f64,
    warmup_steps: usize,
    parallel_sampling: bool,
    extra_reg: Option<f64>,
    /// Optimiser steps taken in the last epoch.
    pub steps_last_epoch: usize,
    /// Seconds the last epoch spent drawing its triples (the rest went to steps).
    pub sample_seconds_last_epoch: f64,
}

impl EpochRunner {
    pub fn new(model: &Model, ds: &Dataset, cfg: &Config) -> anyhow::Result<Self> {
        crate::alloc::keep_freed_memory();
        let t = &cfg.train;
        let train_ui = ds.user_items(&ds.train);
        let pairs: Vec<(u32, u32)> = (0..ds.n_users() as u32)
            .flat_map(|u| train_ui.row(u).iter().map(move |&i| (u, i)))
            .collect();
        let sampler = BprSampler::new(pairs, train_ui, ds.n_items())?;
        let batch_size = t.effective_batch(sampler.n_pairs());
        let lr = t.scaled_lr(batch_size);
        if batch_size != t.batch_size {
            tracing::info!(
                "train.steps_per_epoch = {}: batches of {batch_size} (not {}), learning rate \
                 {lr:.3e} ({:?} scaling of {:e}), warm-up over {} steps",
                t.steps_per_epoch,
                t.batch_size,
                t.lr_scaling,
                t.lr,
                t.warmup_steps
            );
        }
        let reg_in_optimizer = model.device().is_cpu();
        let adam_cfg = AdamConfig {
            lr,
            beta1: t.adam.beta1,
            beta2: t.adam.beta2,
            eps: t.adam.eps,
            weight_decay: if reg_in_optimizer {
                2.0 * cfg.model.reg
            } else {
                0.0
            },
        };
        let optimizer = match t.optimizer {
            crate::config::OptimizerKind::Adam => Optimizer::Dense(Adam::new(
                model.params().into_iter().map(|p| p.1).collect(),
                adam_cfg,
            )?),
            crate::config::OptimizerKind::LazyAdam => {
                let params = model.params();
                if model.backbone.name() != "mf" || params.len() != 1 || !reg_in_optimizer {
                    anyhow::bail!(
                        "train.optimizer = \"lazy_adam\" needs mf without an alignment, on the CPU"
                    );
                }
                let (n, d) = params[0].1.dims2()?;
                Optimizer::Lazy(Box::new(lazy_step::LazyTable::new(n, d, adam_cfg)))
            }
        };
        Ok(Self {
            sampler,
            sample_rng: Rng::derive(t.seed, "sampler"),
            step_rng: Rng::derive(t.seed, "step"),
            optimizer,
            batch_size,
            lr,
            warmup_steps: t.warmup_steps,
            parallel_sampling: t.sampler == crate::config::SamplerKind::Parallel,
            extra_reg: (!reg_in_optimizer && cfg.model.reg > 0.0).then_some(cfg.model.reg),
            steps_last_epoch: 0,
            sample_seconds_last_epoch: 0.0,
        })
    }

    /// Random-generator states (sampling, steps) for checkpoints.
    pub fn rng_states(&self) -> ([u64; 4], [u64; 4]) {
        (self.sample_rng.state(), self.step_rng.state())
    }

    /// Optimiser state for checkpoints (CPU only).
    pub fn adam_state(&self) -> Option<crate::ops::adam::AdamState> {
        match &self.optimizer {
            Optimizer::Dense(a) => a.state(),
            Optimizer::Lazy(l) => Some(l.adam.state()),
        }
    }

    /// Training interactions per optimiser step.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Continues from a checkpoint's generators and optimiser state.
    pub fn restore(
        &mut self,
        sample: [u64; 4],
        step: [u64; 4],
        adam_steps: u64,
        m: Vec<Vec<f32>>,
        v: Vec<Vec<f32>>,
    ) -> anyhow::Result<()> {
        self.sample_rng = Rng::from_state(sample);
        self.step_rng = Rng::from_state(step);
        match &mut self.optimizer {
            Optimizer::Dense(a) => a.set_state(adam_steps, m, v)?,
            Optimizer::Lazy(l) => l.adam.set_state(adam_steps, m, v)?,
        }
        Ok(())
    }

    /// One epoch over all training interactions; returns the summed loss terms by name.
    pub fn run(&mut self, model: &mut Model) -> anyhow::Result<Vec<(String, f64)>> {
        self.run_steps(model, usize::MAX)
    }

    /// Optimiser steps in a full epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.sampler.n_pairs().div_ceil(self.batch_size)
    }

    /// The first `max_steps` steps of an epoch (all of it when it has fewer): benchmarks
    /// time a part of an epoch too long to run whole.
    pub fn run_steps(
        &mut self,
        model: &mut Model,
        max_steps: usize,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        let device = model.device().clone();
        let t0 = Instant::now();
        let triples = if self.parallel_sampling {
            self.sampler.epoch_parallel(&mut self.sample_rng)
        } else {
            self.sampler.epoch(&mut self.sample_rng)
        };
        self.sample_seconds_last_epoch = t0.elapsed().as_secs_f64();
        let mut sums: Vec<(String, f64)> = Vec::new();
        self.steps_last_epoch = 0;
        for chunk in triples.chunks(self.batch_size).take(max_steps) {
            if self.warmup_steps > 0 {
                let step = self.optimizer.steps() + 1;
                let f = (step as f64 / self.warmup_steps as f64).min(1.0);
                self.optimizer.set_lr(self.lr * f);
            }
            if let Optimizer::Lazy(lazy) = &mut self.optimizer {
                let off = model.n_users as u32;
                let users: Vec<u32> = chunk.iter().map(|t| t.0).collect();
                let pos: Vec<u32> = chunk.iter().map(|t| t.1 + off).collect();
                let neg: Vec<u32> = chunk.iter().map(|t| t.2 + off).collect();
                let v = lazy.step(model.backbone.table(), &users, &pos, &neg)? as f64;
                if !v.is_finite() {
                    return Err(Diverged {
                        term: "bpr".into(),
                        value: v,
                        step: self.steps_last_epoch + 1,
                    }
                    .into());
                }
                match sums.first_mut() {
                    Some(s) => s.1 += v,
                    None => sums.push(("bpr".into(), v)),
                }
                self.steps_last_epoch += 1;
                continue;
            }
            let Optimizer::Dense(adam) = &mut self.optimizer else {
                unreachable!("the lazy optimiser's steps continue above")
            };
            let batch = Batch::new(chunk, model.n_users, &device)?;
            let mut terms = model.step_losses(&batch, &mut self.step_rng)?;
            if let Some(reg) = self.extra_reg {
                terms.push(LossTerm::new("reg", model.l2_penalty()?.affine(reg, 0.0)?));
            }
            let mut total = terms[0].value.clone();
            for term in &terms[1..] {
                total = (total + &term.value)?;
            }
            // every term is checked before the step, so a diverged loss never reaches the
            // parameters (nor, through them, a checkpoint)
            for term in &terms {
                let v = term.value.to_scalar::<f32>()? as f64;
                if !v.is_finite() {
                    return Err(Diverged {
                        term: term.name.clone(),
                        value: v,
                        step: self.steps_last_epoch + 1,
                    }
                    .into());
                }
                match sums.iter_mut().find(|s| s.0 == term.name) {
                    Some(s) => s.1 += v,
                    None => sums.push((term.name.clone(), v)),
                }
            }
            let grads = total.backward()?;
            adam.step(&grads)?;
            self.steps_last_epoch += 1;
        }
        Ok(sums)
    }
}

/// The loss a progress line shows: the backbone's ranking term under its own name
/// (`loss_bpr`, or `loss_rec` for AutoCF), as averaged into `losses`; named `loss_bpr`,
/// and NaN, when no step has reported a term.
fn headline_loss(losses: &BTreeMap<String, f64>, rank_term: Option<&str>) -> (String, f64) {
    let name = format!("loss_{}", rank_term.unwrap_or("bpr"));
    let value = losses.get(&name).copied().unwrap_or(f64::NAN);
    (name, value)
}

fn progress_bar(cfg: &Config) -> ProgressBar {
    let bar = crate::progress::bar(
        cfg.train.progress,
        cfg.train.max_epochs as u64,
        "{prefix} {elapsed_precise} [{bar:30}] epoch {pos}/{len} {msg}",
    );
    bar.set_prefix(format!("{} {}", cfg.data.name, cfg.label()));
    bar
}

/// Training-mode forward pass shared by the trainer and benchmarks: alignment rewrite,
/// propagation, BPR, backbone and alignment losses.
pub(crate) fn forward_losses(
    model: &mut Model,
    batch: &Batch,
    rng: &mut Rng,
) -> anyhow::Result<Vec<LossTerm>> {
    let ego = model.backbone.ego()?;
    let ego = model.align.before_encode(ego, rng)?;
    let nodes = model.backbone.encode(&ego, &mut Mode::Train(rng))?;
    // BPR scores where ranking does: the alignment's score space when it has one
    let rank = match model.align.score_space(&nodes)? {
        Some(scored) => model.backbone.rank_loss(&scored, batch)?,
        None => model.backbone.rank_loss(&nodes, batch)?,
    };
    let mut terms = vec![rank];
    terms.extend(model.backbone.aux_losses(&ego, &nodes, batch, rng)?);
    let input = crate::align::AlignInput {
        ego: &ego,
        nodes: &nodes,
        n_users: model.n_users,
        batch,
    };
    terms.extend(model.align.losses(&input, rng)?);
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_the_ranking_term_by_its_own_name() {
        let losses: BTreeMap<String, f64> = [
            ("loss_rec".to_string(), -0.75),
            ("loss_infomax".to_string(), 0.25),
            ("loss_reg".to_string(), 0.01),
        ]
        .into_iter()
        .collect();
        // AutoCF's main term is `rec`: its line used to print `loss_bpr=NaN`
        assert_eq!(
            headline_loss(&losses, Some("rec")),
            ("loss_rec".to_string(), -0.75)
        );
        let bpr: BTreeMap<String, f64> = [("loss_bpr".to_string(), 0.5)].into_iter().collect();
        assert_eq!(
            headline_loss(&bpr, Some("bpr")),
            ("loss_bpr".to_string(), 0.5)
        );
        let (name, value) = headline_loss(&losses, None);
        assert_eq!(name, "loss_bpr");
        assert!(value.is_nan());
    }
}
