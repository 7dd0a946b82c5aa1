//! Run configuration: one TOML file with sections `data`, `model`, `train`, `eval`,
//! `align`, `output`, `openai`; every field has a default and can be overridden from the command
//! line with `--set section.field=value`. Unknown fields are errors (typos never pass
//! silently). `data.name` of a built-in dataset (`ml-1m`, `ml-100k`, `amazon`, `yelp`,
//! `bookcrossing`, `synth`)
//! fills in its format, path and preparation from `configs/datasets/<name>.toml`,
//! embedded in the binary; fields given in the file or by `--set` win.

/// The model section's type lives with the backbones that read it (`backbone/config.rs`),
/// as the alignment section's lives in `align/`: each layer owns its settings and this
/// file only gathers them, so imports run one way.
pub use crate::backbone::ModelConfig;
pub use crate::cache::{cache_dir, resolve_cache_path};
pub use crate::data::config::{DataConfig, DataFormat};
use crate::eval::EvalOptions;
use crate::ops::AdamConfig;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub eval: EvalOptions,
    pub align: crate::align::AlignConfig,
    pub output: OutputConfig,
    /// Client settings for OpenAI-compatible servers (`darec profile --writer openai`,
    /// `darec embed --embedder openai:...`): timeout_s, max_retries, concurrency,
    /// requests_per_minute, backoff; the server and model come from the command line.
    pub openai: crate::text::openai::OpenAiConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Fixes every random choice of training (initialisation, sampling, dropout). The
    /// split has its own seed, `data.prepare.seed`, so seeds of a model share one split.
    pub seed: u64,
    pub lr: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Validate every this many epochs.
    pub eval_every: usize,
    /// Stop after this many validations without strict improvement.
    pub patience: usize,
    /// Validation metric for early stopping, e.g. `recall@20`.
    pub metric: String,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Show a progress bar (the default when stderr is a terminal).
    pub progress: Option<bool>,
    /// Evaluate the test split after training (off for hyper-parameter search, which must
    /// only look at validation).
    pub evaluate_test: bool,
    pub adam: AdamExtra,
    /// `adam` (the protocol: every row of every table updated each step) or `lazy_adam`
    /// (only the rows a step's gradient reaches: `O(batch x d)` a step instead of
    /// `O(N d)`; for `mf` without an alignment, where that is every row the loss sees).
    pub optimizer: OptimizerKind,
    /// Large-data mode: at most this many optimiser steps per epoch, the batch growing to
    /// `ceil(train interactions / steps_per_epoch)` when that exceeds `batch_size` (0, the
    /// default: batches of `batch_size`, the protocol). A propagating backbone's epoch
    /// then costs `steps_per_epoch` propagations, linear in the data, instead of one per
    /// `batch_size` interactions.
    pub steps_per_epoch: usize,
    /// How the learning rate follows a batch grown by `steps_per_epoch`, relative to
    /// `batch_size`: `sqrt` (the default; Adam's square-root rule), `linear` or `none`.
    pub lr_scaling: LrScaling,
    /// Linear learning-rate warm-up over this many first steps (0: none).
    pub warmup_steps: usize,
    /// How an epoch's triples are drawn: `protocol` (one core, the published runs'
    /// stream) or `parallel` (every core; the same distribution from other streams).
    pub sampler: SamplerKind,
}

/// The sampler of `train.sampler`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    #[default]
    Protocol,
    Parallel,
}

/// The optimiser of `train.optimizer`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    #[default]
    Adam,
    LazyAdam,
}

/// The rule of `train.lr_scaling`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LrScaling {
    None,
    #[default]
    Sqrt,
    Linear,
}

impl TrainConfig {
    /// The batch size for `n_pairs` training interactions: `batch_size`, or larger under
    /// `steps_per_epoch`.
    pub fn effective_batch(&self, n_pairs: usize) -> usize {
        match self.steps_per_epoch {
            0 => self.batch_size,
            s => self.batch_size.max(n_pairs.div_ceil(s)),
        }
    }

    /// The learning rate for a batch of `batch` (scaled from `lr` at `batch_size`).
    pub fn scaled_lr(&self, batch: usize) -> f64 {
        let ratio = batch as f64 / self.batch_size as f64;
        match self.lr_scaling {
            LrScaling::None => self.lr,
            LrScaling::Sqrt => self.lr * ratio.sqrt(),
            LrScaling::Linear => self.lr * ratio,
        }
    }
}

/// Adam settings other than the learning rate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdamExtra {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamExtra {
    fn default() -> Self {
        let d = AdamConfig::default();
        Self {
            beta1: d.beta1,
            beta2: d.beta2,
            eps: d.eps,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 2024,
            lr: 1e-3,
            batch_size: 4096,
            max_epochs: 500,
            eval_every: 3,
            patience: 5,
            metric: "recall@20".into(),
            threads: 0,
            progress: None,
            evaluate_test: true,
            adam: AdamExtra::default(),
            optimizer: OptimizerKind::Adam,
            steps_per_epoch: 0,
            lr_scaling: LrScaling::Sqrt,
            warmup_steps: 0,
            sampler: SamplerKind::Protocol,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Parent directory of run directories.
    pub runs_dir: PathBuf,
    /// Run directory name (default `<dataset>-<backbone>[+<alignment>]-s<seed>`).
    pub run_name: Option<String>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            runs_dir: PathBuf::from("runs"),
            run_name: None,
        }
    }
}

/// Built-in dataset presets, embedded from `configs/datasets/`.
const PRESETS: &[(&str, &str)] = &[
    ("ml-1m", include_str!("../configs/datasets/ml-1m.toml")),
    ("ml-100k", include_str!("../configs/datasets/ml-100k.toml")),
    ("amazon", include_str!("../configs/datasets/amazon.toml")),
    ("yelp", include_str!("../configs/datasets/yelp.toml")),
    (
        "bookcrossing",
        include_str!("../configs/datasets/bookcrossing.toml"),
    ),
    ("synth", include_str!("../configs/datasets/synth.toml")),
];

/// Names of the built-in datasets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.0).collect()
}

impl Config {
    /// Loads a TOML file (or only defaults when `path` is None), applies the dataset preset
    /// and then the `key=value` overrides, and validates the result. Errors name the key
    /// (`train.lr`), and for a value from the file its line, for one from `--set` the
    /// override that set it.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> anyhow::Result<Config> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("{}: cannot read config", p.display()))?;
                let table = toml::from_str::<toml::Table>(&text)
                    .map_err(|e| anyhow::anyhow!("{}: invalid TOML: {e}", p.display()))?;
                // the file alone, with its spans: a wrong type is reported at its line
                check_file_types(p, &text)?;
                table
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let name = table
            .get("data")
            .and_then(|d| d.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("ml-1m")
            .to_string();
        if let Some((_, preset)) = PRESETS.iter().find(|p| p.0 == name) {
            let mut base: toml::Table =
                toml::from_str(preset).expect("built-in preset is valid TOML");
            merge(&mut base, table);
            table = base;
        }
        let where_ = path
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| {
                let key = e.path().to_string();
                let from = overrides
                    .iter()
                    .find(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == key))
                    .map(|o| format!(" (set by --set {o})"))
                    .unwrap_or_default();
                anyhow::anyhow!("{where_}`{key}`{from}: {}", e.inner().message().trim_end())
            },
        )?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A config for a dataset preset by name, with defaults elsewhere.
    pub fn for_dataset(name: &str) -> anyhow::Result<Config> {
        if !preset_names().contains(&name) {
            bail!(
                "unknown dataset `{name}`; built-in: {}; or pass a config file",
                preset_names().join(", ")
            );
        }
        Config::load(None, &[format!("data.name=\"{name}\"")])
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let t = &self.train;
        if t.batch_size == 0 || t.eval_every == 0 || t.max_epochs == 0 {
            bail!("train.batch_size, train.eval_every and train.max_epochs must be positive");
        }
        // no setting may be NaN or infinite (`train.lr = inf` used to train to a normal-looking
        // table of a model that had diverged on its first step)
        for (key, value) in flatten_toml(&toml::Table::try_from(self)?) {
            if let toml::Value::Float(f) = value {
                if !f.is_finite() {
                    bail!("{key} must be a finite number, got {f}");
                }
            }
        }
        if !(t.lr > 0.0) {
            bail!("train.lr must be positive, got {}", t.lr);
        }
        self.model.validate()?;
        let (name, k) = t.metric.split_once('@').unwrap_or((&t.metric, ""));
        let known = crate::eval::METRIC_NAMES;
        let k = k.parse::<usize>().ok();
        if !known.contains(&name) || !k.is_some_and(|k| self.eval.ks.contains(&k)) {
            let hint = if known.contains(&name.to_lowercase().as_str()) {
                format!(" (names are lower case: `{}`)", t.metric.to_lowercase())
            } else {
                String::new()
            };
            bail!(
                "train.metric `{}` is not a metric darec computes: use <name>@<K> with name \
                 one of {} and K in eval.ks {:?}{hint}",
                t.metric,
                known.join(", "),
                self.eval.ks
            );
        }
        if self.align.kind != crate::align::AlignKind::None && self.align.vectors.is_none() {
            bail!(
                "align.kind = {} needs align.vectors (semantic vectors from `darec embed`)",
                self.align.kind.as_str()
            );
        }
        if t.optimizer == OptimizerKind::LazyAdam
            && (self.model.backbone != "mf" || self.align.kind != crate::align::AlignKind::None)
        {
            bail!(
                "train.optimizer = \"lazy_adam\" applies where a step's gradient reaches only \
                 the batch's rows: model.backbone = \"mf\" with align.kind = \"none\" (got {}). \
                 A graph backbone propagates every step's gradient to every row, and an \
                 alignment's losses reach rows outside the batch; for large data use \
                 train.steps_per_epoch with the default optimizer instead",
                self.label()
            );
        }
        if t.steps_per_epoch > 0 && self.align.kind == crate::align::AlignKind::RlmrecCon {
            bail!(
                "train.steps_per_epoch does not apply to align.kind = \"rlmrec_con\": its item \
                 term compares every pair of a batch's items, so its time and memory grow with \
                 the square of the batch, which steps_per_epoch grows with the data. Train it \
                 with batches of train.batch_size (steps_per_epoch = 0)"
            );
        }
        if self.align.kind != crate::align::AlignKind::None && self.model.backbone == "mostpop" {
            bail!("mostpop has no embeddings to align: use a trainable backbone with align.kind");
        }
        self.data
            .prepare
            .validate()
            .map_err(|e| anyhow::anyhow!("data.prepare: {e}"))?;
        Ok(())
    }

    /// `lightgcn` or `lightgcn+darec`: the model as a user would name it.
    pub fn label(&self) -> String {
        match self.align.kind {
            crate::align::AlignKind::None => self.model.backbone.clone(),
            k => format!("{}+{}", self.model.backbone, k.as_str()),
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// The run directory's name: `output.run_name`, or `<dataset>-<label>-s<seed>`
    /// (`ml-1m-lightgcn-s2024`, `ml-1m-lightgcn+darec-s2024`), so that runs with and
    /// without an alignment never share a directory.
    pub fn run_name(&self) -> String {
        self.output
            .run_name
            .clone()
            .unwrap_or_else(|| format!("{}-{}-s{}", self.data.name, self.label(), self.train.seed))
    }
}

/// Applies `a.b.c=value` to a TOML table; `value` is parsed as TOML (`5e-4`, `true`,
/// `"text"`, `[5, 10]`), and taken as a string when it does not parse.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> anyhow::Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .with_context(|| format!("--set `{assignment}`: expected key=value, e.g. train.lr=5e-4"))?;
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed table has v"),
        // a bare word is a string; what starts like an array, table or quoted string
        // must be valid TOML (`eval.ks=[5,10` is a syntax error, not a string)
        Err(e) if raw.trim_start().starts_with(['[', '{', '"', '\'']) => bail!(
            "--set `{assignment}`: the value is not valid TOML: {}",
            e.message().trim_end()
        ),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set `{assignment}`: empty key segment");
    }
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .with_context(|| format!("--set `{assignment}`: `{p}` is not a section"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Type-checks a config file on its own, so that a wrong value is reported with its key
/// and line (`configs/x.toml:7: `train.lr`: invalid type: string "fast", expected f64`).
/// Unknown keys and the rest are reported after the preset and overrides are merged.
fn check_file_types(path: &Path, text: &str) -> anyhow::Result<()> {
    let de = match toml::de::Deserializer::parse(text) {
        Ok(de) => de,
        Err(_) => return Ok(()), // syntax errors are reported by the caller
    };
    if let Err(e) = serde_path_to_error::deserialize::<_, Config>(de) {
        let inner = e.inner();
        let line = inner
            .span()
            .map(|s| {
                format!(
                    ":{}",
                    text[..s.start.min(text.len())].matches('\n').count() + 1
                )
            })
            .unwrap_or_default();
        bail!(
            "{}{line}: `{}`: {}",
            path.display(),
            e.path(),
            inner.message().trim_end()
        );
    }
    Ok(())
}

/// `a.b.c -> value` for every leaf of a TOML table.
pub fn flatten_toml(t: &toml::Table) -> std::collections::BTreeMap<String, toml::Value> {
    fn walk(
        prefix: &str,
        t: &toml::Table,
        out: &mut std::collections::BTreeMap<String, toml::Value>,
    ) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(sub) => walk(&key, sub, out),
                other => {
                    out.insert(key, other.clone());
                }
            }
        }
    }
    let mut out = Default::default();
    walk("", t, &mut out);
    out
}

/// Recursively merges `over` into `base` (values of `over` win).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_presets_and_typos() {
        let c = Config::load(
            None,
            &[
                "train.lr=5e-4".into(),
                "data.name=amazon".into(),
                "eval.ks=[5, 20]".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.train.lr, 5e-4);
        assert_eq!(c.data.format, DataFormat::Rlmrec);
        assert_eq!(c.eval.ks, vec![5, 20]);
        let e = Config::load(None, &["train.lrr=1".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("lrr"), "{e:#}");
        assert!(Config::load(None, &["train.metric=\"recall@7\"".into()]).is_err());
        assert!(Config::load(None, &["model.backbone=\"gnn\"".into()]).is_err());
        let round: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(round, c);
    }
}
