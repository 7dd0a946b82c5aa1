//! The `darec` command line: train, evaluate and inspect recommenders.

use anyhow::Context;
use clap::{Parser, Subcommand};
use darec::config::Config;
use darec::data::load::load_dataset;
use darec::data::stats::stats;
use darec::eval::markdown_table;
use std::path::PathBuf;

/// darec: recommenders aligned with language-model semantics (RLMRec, DaRec).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Log level (error, warn, info, debug), or a tracing filter.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model, validate with early stopping, test once, and save the run.
    Train {
        /// TOML config (see configs/); defaults apply to everything it leaves out.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config field, e.g. `--set train.lr=5e-4` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run directory (default: <output.runs_dir>/<dataset>-<backbone>-s<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Re-evaluate a saved run from its directory.
    Eval {
        /// Run directory written by `darec train`.
        #[arg(long)]
        run: PathBuf,
        /// Split to evaluate: test or valid.
        #[arg(long, default_value = "test")]
        split: String,
    },
    /// Run a grid of variants x seeds and write one table with mean ± std and the change
    /// against a reference variant (see configs/compare-*.toml).
    Compare {
        /// Comparison config: base run config, seeds and [[variant]]s.
        #[arg(long)]
        config: PathBuf,
        /// Extra override applied to every run (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Output directory (default: runs/compare-<config file stem>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Search hyper-parameters on the validation split only, then test the chosen setting once.
    Tune {
        /// Tuning config: base run config and a [grid] of key = [values].
        #[arg(long)]
        config: PathBuf,
        /// Extra override applied to every run (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Output directory (default: runs/tune-<config file stem>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Mean ± standard deviation of test metrics over runs, grouped by dataset and model.
    Summarize {
        /// Run directories, or directories containing runs.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
    },
    /// Inspect datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Users, items, interactions per split, density and degree quantiles.
    Stats {
        /// A built-in dataset name (ml-1m, ml-100k, amazon, yelp) or a config file.
        dataset: String,
        /// Override a config field (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let threads = cli.threads.unwrap_or(0);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("thread pool")?;
    match cli.command {
        Command::Train { config, set, out } => {
            let mut cfg = Config::load(config.as_deref(), &set)?;
            if cli.threads.is_some() {
                cfg.train.threads = threads;
            }
            let r = darec::pipeline::train_run(&cfg, out)?;
            let label = format!("{} {} seed {}", r.dataset, r.backbone, r.seed);
            println!("{}", markdown_table(&[(label, r.test.clone())]));
            if let Some(t) = &r.training {
                println!(
                    "best epoch {} of {}; {:.2} s/epoch, {:.2} s/validation, {:.0} s total; peak memory {:.0} MiB",
                    t.best_epoch,
                    t.epochs_run,
                    t.epoch_seconds,
                    t.eval_seconds,
                    t.total_seconds,
                    t.peak_rss_mib.unwrap_or(f64::NAN)
                );
            }
            println!("run saved to {}", r.run_dir.display());
        }
        Command::Eval { run, split } => {
            let (cfg, m) = darec::pipeline::eval_run(&run, &split)?;
            let label = format!("{} {} ({split})", cfg.data.name, cfg.model.backbone);
            println!("{}", markdown_table(&[(label, m)]));
        }
        Command::Compare { config, set, out } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("{}: cannot read", config.display()))?;
            let cfg: darec::experiment::CompareConfig = toml::from_str(&text)
                .with_context(|| format!("{}: invalid compare config", config.display()))?;
            let out =
                out.unwrap_or_else(|| PathBuf::from(format!("runs/compare-{}", stem(&config))));
            let md = darec::experiment::compare(&cfg, &set, &out, cli.threads)?;
            println!("{md}\nwritten to {}", out.join("compare.md").display());
        }
        Command::Tune { config, set, out } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("{}: cannot read", config.display()))?;
            let cfg: darec::experiment::TuneConfig = toml::from_str(&text)
                .with_context(|| format!("{}: invalid tune config", config.display()))?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("runs/tune-{}", stem(&config))));
            let md = darec::experiment::tune(&cfg, &set, &out, cli.threads)?;
            println!("{md}\nwritten to {}", out.join("tune.md").display());
        }
        Command::Summarize { runs } => {
            let dirs = darec::report::find_runs(&runs);
            if dirs.is_empty() {
                anyhow::bail!("no run directories (with metrics.json) found under the given paths");
            }
            let rows = dirs
                .iter()
                .map(|d| darec::report::read_run(d))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let groups = darec::report::group(rows);
            println!(
                "{}",
                darec::report::mean_std_table(&groups, &darec::report::MAIN_KEYS)
            );
        }
        Command::Data {
            command: DataCommand::Stats { dataset, set },
        } => {
            let cfg = if dataset.ends_with(".toml") {
                Config::load(Some(std::path::Path::new(&dataset)), &set)?
            } else {
                let mut s = vec![format!("data.name=\"{dataset}\"")];
                s.extend(set);
                if !darec::config::preset_names().contains(&dataset.as_str()) {
                    anyhow::bail!(
                        "unknown dataset `{dataset}`; built-in: {}; or pass a config file",
                        darec::config::preset_names().join(", ")
                    );
                }
                Config::load(None, &s)?
            };
            let ds = load_dataset(&cfg.data)?;
            println!("{}", stats(&ds));
        }
    }
    Ok(())
}

fn stem(p: &std::path::Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "grid".into())
}
