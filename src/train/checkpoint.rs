//! Checkpoints of a training run, written at every validation so an interrupted
//! `darec train` continues where it stopped (`darec train --resume <run dir>`) and ends
//! with exactly the result of an uninterrupted run.
//!
//! `checkpoint-e<epoch>.safetensors` holds the current parameters (`param.<name>`), the
//! best parameters so far (`best.<name>`) and Adam's moments (`adam_m.<i>`, `adam_v.<i>`);
//! `checkpoint.json`, written last and atomically, names that file and holds the loop state
//! (epoch, best score, patience counter, random-generator states, timings). An older
//! tensor file is removed only after the JSON points at the new one. The last checkpoint
//! stays after a run ends, so raising `train.max_epochs` in the run's `config.toml` and
//! resuming continues training.

use crate::eval::Metrics;
use crate::run::{write_json, RunDir};
use crate::train::Model;
use anyhow::Context;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The training loop's state at a validation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoopState {
    pub epoch: usize,
    pub best_score: f64,
    pub best_epoch: usize,
    pub best_valid: Metrics,
    pub since_best: usize,
    pub epoch_time: f64,
    pub eval_time: f64,
    pub evals: usize,
    pub sample_rng: [u64; 4],
    pub step_rng: [u64; 4],
    pub adam_steps: u64,
    /// File with the tensors of this state.
    pub tensors: String,
}

/// Everything restored from a checkpoint.
pub struct Restored {
    pub state: LoopState,
    pub best: Vec<Tensor>,
    pub adam_m: Vec<Vec<f32>>,
    pub adam_v: Vec<Vec<f32>>,
}

/// Writes the checkpoint of `state` (its `tensors` field is set here).
pub fn save(
    run: &RunDir,
    mut state: LoopState,
    model: &Model,
    best: &[Tensor],
    adam: (Vec<Vec<f32>>, Vec<Vec<f32>>),
) -> anyhow::Result<()> {
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for ((name, var), b) in model.params().iter().zip(best) {
        map.insert(format!("param.{name}"), var.as_tensor().clone());
        map.insert(format!("best.{name}"), b.clone());
    }
    for (i, (m, v)) in adam.0.into_iter().zip(adam.1).enumerate() {
        let n = m.len();
        map.insert(format!("adam_m.{i}"), Tensor::from_vec(m, n, &Device::Cpu)?);
        map.insert(format!("adam_v.{i}"), Tensor::from_vec(v, n, &Device::Cpu)?);
    }
    let file = format!("checkpoint-e{}.safetensors", state.epoch);
    let tmp = run.file(&format!(".{file}.tmp"));
    candle_core::safetensors::save(&map, &tmp)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    crate::fault::point("checkpoint tensors written");
    std::fs::rename(&tmp, run.file(&file))?;
    crate::fault::point("checkpoint tensors in place");
    let previous = load_state(run).ok().map(|s| s.tensors);
    state.tensors = file.clone();
    write_json(&run.file("checkpoint.json"), &state)?;
    if let Some(old) = previous.filter(|o| *o != file) {
        let _ = std::fs::remove_file(run.file(&old));
        crate::fault::point("old checkpoint removed");
    }
    Ok(())
}

fn load_state(run: &RunDir) -> anyhow::Result<LoopState> {
    let p = run.file("checkpoint.json");
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("{}: no checkpoint", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: unreadable checkpoint", p.display()))
}

/// Loads the checkpoint of `run` into `model` (current parameters) and returns the rest.
pub fn load(run: &RunDir, model: &Model) -> anyhow::Result<Restored> {
    let state = load_state(run)?;
    let path = run.file(&state.tensors);
    let t = candle_core::safetensors::load(&path, model.device())
        .with_context(|| format!("{}: cannot read checkpoint tensors", path.display()))?;
    let get = |k: &str| {
        t.get(k)
            .cloned()
            .with_context(|| format!("{}: `{k}` missing", path.display()))
    };
    let mut best = Vec::new();
    for (name, var) in model.params() {
        var.set(&get(&format!("param.{name}"))?)?;
        best.push(get(&format!("best.{name}"))?);
    }
    let (mut adam_m, mut adam_v) = (Vec::new(), Vec::new());
    for i in 0..model.params().len() {
        adam_m.push(get(&format!("adam_m.{i}"))?.to_vec1::<f32>()?);
        adam_v.push(get(&format!("adam_v.{i}"))?.to_vec1::<f32>()?);
    }
    Ok(Restored {
        state,
        best,
        adam_m,
        adam_v,
    })
}
