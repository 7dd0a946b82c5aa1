//! The `darec` command line: train, evaluate and inspect recommenders.

use anyhow::Context;
use clap::{Parser, Subcommand};
use darec::config::Config;
use darec::data::load::load_dataset;
use darec::data::stats::stats;
use darec::eval::markdown_table;
use std::path::PathBuf;

mod use_model;

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
        /// Run directory (default: <output.runs_dir>/<dataset>-<backbone>[+<alignment>]-s<seed>).
        /// An existing run there is refused unless --overwrite.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Delete the run already in the run directory and train anew.
        #[arg(long)]
        overwrite: bool,
        /// Continue an interrupted run from its last checkpoint (its own config.toml is
        /// used; raise train.max_epochs there to train longer).
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "set", "out", "overwrite"])]
        resume: Option<PathBuf>,
    },
    /// Re-evaluate a saved run from its directory.
    Eval {
        /// Run directory written by `darec train`.
        #[arg(long)]
        run: PathBuf,
        /// Split to evaluate: test or valid.
        #[arg(long, default_value = "test")]
        split: String,
        /// Rank every item for only this many users of the split (a fixed random sample),
        /// with standard errors; 0 ranks every user. Default: as the run was trained.
        #[arg(long)]
        sample_users: Option<usize>,
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
        /// Train nothing: tabulate the runs already finished and list the missing ones.
        #[arg(long)]
        table_only: bool,
        /// Train only this variant, by name (repeatable); the table still shows every
        /// finished run and lists the missing ones. With `--only-seed`, one grid can be
        /// split between processes or machines that share the output directory.
        #[arg(long, value_name = "VARIANT", conflicts_with = "table_only")]
        only: Vec<String>,
        /// Train only this seed (repeatable).
        #[arg(long, value_name = "SEED", conflicts_with = "table_only")]
        only_seed: Vec<u64>,
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
    /// Write a text profile of every item and user (items first; users from their
    /// training items only) to a resumable JSONL cache.
    Profile {
        /// A built-in dataset name or a config file.
        dataset: String,
        /// template (default, deterministic), local (SmolLM2 GGUF) or openai.
        #[arg(long, default_value = "template")]
        writer: String,
        /// For --writer openai: `<base url>#<model>`, e.g. `http://127.0.0.1:8080/v1#qwen2.5`.
        #[arg(long)]
        openai: Option<String>,
        /// For --writer local: the GGUF file (default: the fetched SmolLM2).
        #[arg(long)]
        gguf: Option<PathBuf>,
        /// Profile cache (default: <cache>/profiles/<dataset>/<writer>.jsonl).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Most tokens per generated profile.
        #[arg(long, default_value_t = 200)]
        max_tokens: usize,
        /// Sampling temperature (0: greedy).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Only the first N items (e.g. to try a slow model).
        #[arg(long)]
        max_items: Option<usize>,
        /// Only the first N users.
        #[arg(long)]
        max_users: Option<usize>,
        /// Override a config field (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Turn profiles into semantic vectors (users and items) stored as safetensors, or
    /// import vectors made elsewhere.
    Embed {
        /// A built-in dataset name or a config file.
        dataset: String,
        /// local:<model dir> (default: the fetched all-MiniLM-L6-v2) or openai:<url>#<model>.
        #[arg(long)]
        embedder: Option<String>,
        /// Which profiles: the writer whose default cache to read.
        #[arg(long, default_value = "template")]
        writer: String,
        /// Profile file (overrides --writer).
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// Import user vectors (.npy, .safetensors, RLMRec's usr_emb_np.pkl) instead of embedding.
        #[arg(long, requires = "import_items")]
        import_users: Option<PathBuf>,
        /// Import item vectors (with --import-users).
        #[arg(long, requires = "import_users")]
        import_items: Option<PathBuf>,
        /// Output (default: <cache>/embeddings/<dataset>-<writer>-<model>.safetensors).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a config field (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Draw DaRec's shared space of a saved run (PNG and SVG): 2-D projection of sampled
    /// users and items coloured by preference centre, collaborative and language side.
    Map {
        /// Run directory of a model trained with align.kind = "darec".
        #[arg(long)]
        run: PathBuf,
        /// Users and items to sample (t-SNE costs grow with the square of this).
        #[arg(long, default_value_t = 2000)]
        nodes: usize,
        /// Output file stem (default: <run>/shared-space).
        #[arg(long)]
        out: Option<PathBuf>,
        /// 2-D projection.
        #[arg(long, value_enum, default_value_t = darec::plot::Projection::Tsne)]
        projection: darec::plot::Projection,
    },
    #[command(flatten)]
    Use(use_model::UseCommand),
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
    /// Write synthetic interactions (power-law activity and popularity, planted taste
    /// clusters; deterministic by seed) for scale benchmarks and tests. Train on them with
    /// `--set data.name=synth --set data.path=FILE`.
    Synth {
        /// Distinct interactions to write, e.g. 4000000 (or 4M, 64M).
        #[arg(long, value_parser = parse_count)]
        interactions: usize,
        /// Seed of every random choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (TSV: `user<TAB>item` after one `#` line).
        #[arg(long)]
        out: PathBuf,
        /// Users (default interactions / 24).
        #[arg(long, value_parser = parse_count)]
        users: Option<usize>,
        /// Items (default interactions / 96).
        #[arg(long, value_parser = parse_count)]
        items: Option<usize>,
        /// Zipf exponent of user activity over rank.
        #[arg(long, default_value_t = 0.7)]
        user_exponent: f64,
        /// Zipf exponent of item popularity over rank.
        #[arg(long, default_value_t = 0.75)]
        item_exponent: f64,
        /// Fewest interactions of a user.
        #[arg(long, default_value_t = 5)]
        min_user_degree: usize,
        /// Taste clusters (0: sqrt(items) / 4).
        #[arg(long, default_value_t = 0)]
        clusters: usize,
        /// Probability that an interaction comes from the user's own cluster.
        #[arg(long, default_value_t = 0.5)]
        affinity: f64,
        /// Replace an existing output file.
        #[arg(long)]
        overwrite: bool,
    },
}

/// `4000000`, `4_000_000`, `4M`, `250k`.
fn parse_count(s: &str) -> Result<usize, String> {
    let t = s.trim().replace('_', "");
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000f64),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000f64),
        Some('g' | 'G' | 'b' | 'B') => (&t[..t.len() - 1], 1_000_000_000f64),
        _ => (t.as_str(), 1f64),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * mult < 4e9 => Ok((v * mult).round() as usize),
        _ => Err(format!(
            "expected a count such as 4000000, 4M or 250k (below 4 billion), got `{s}`"
        )),
    }
}

fn main() {
    darec::alloc::keep_freed_memory();
    let mut cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "warning: --log {:?} is not a tracing filter ({e}); logging at info",
                cli.log
            );
            // grid children get the level actually used
            cli.log = "info".into();
            tracing_subscriber::EnvFilter::new("info")
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colour codes only on a terminal, never in a log file
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        // a grid's parent process comes back to a busy run later instead of failing
        let busy = darec::run_lock::is_busy_error(&e);
        std::process::exit(if busy { darec::run_lock::BUSY_EXIT } else { 1 });
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let threads = cli.threads.unwrap_or(0);
    darec::threads::configure(threads)?;
    let child_args = darec::experiment::ChildArgs {
        threads: cli.threads,
        log: cli.log.clone(),
    };
    match cli.command {
        Command::Train {
            config,
            set,
            out,
            overwrite,
            resume,
        } => {
            let mut cfg = Config::load(config.as_deref(), &set)?;
            if cli.threads.is_some() {
                cfg.train.threads = threads;
            }
            let r = match resume {
                Some(dir) => darec::pipeline::resume_run(&dir)?,
                None => darec::pipeline::train_run(&cfg, out, overwrite)?,
            };
            let label = format!("{} {} seed {}", r.dataset, r.label, r.seed);
            if r.test.values.is_empty() {
                // train.evaluate_test = false (tuning): the test split was not looked at
                println!("Validation split (best epoch; the test split was not evaluated):\n");
                println!("{}", markdown_table(&[(label, r.valid.clone())]));
            } else {
                println!("Test split (best validation weights):\n");
                println!("{}", markdown_table(&[(label, r.test.clone())]));
                print_sampling(&r.test);
            }
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
        Command::Eval {
            run,
            split,
            sample_users,
        } => {
            let (cfg, m) = darec::pipeline::eval_run_sampled(&run, &split, sample_users)?;
            let label = format!(
                "{} {} seed {} ({split})",
                cfg.data.name,
                cfg.label(),
                cfg.train.seed
            );
            println!("{}", markdown_table(&[(label, m.clone())]));
            print_sampling(&m);
        }
        Command::Compare {
            config,
            set,
            out,
            table_only,
            only,
            only_seed,
        } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("{}: cannot read", config.display()))?;
            let cfg: darec::experiment::CompareConfig = toml::from_str(&text)
                .with_context(|| format!("{}: invalid compare config", config.display()))?;
            let out =
                out.unwrap_or_else(|| PathBuf::from(format!("runs/compare-{}", stem(&config))));
            let md = darec::experiment::compare(
                &cfg,
                &set,
                &out,
                &child_args,
                &darec::experiment::TrainScope {
                    none: table_only,
                    variants: only,
                    seeds: only_seed,
                },
            )?;
            println!("{md}\nwritten to {}", out.join("compare.md").display());
        }
        Command::Tune { config, set, out } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("{}: cannot read", config.display()))?;
            let cfg: darec::experiment::TuneConfig = toml::from_str(&text)
                .with_context(|| format!("{}: invalid tune config", config.display()))?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("runs/tune-{}", stem(&config))));
            let md = darec::experiment::tune(&cfg, &set, &out, &child_args)?;
            println!("{md}\nwritten to {}", out.join("tune.md").display());
        }
        Command::Map {
            run,
            nodes,
            out,
            projection,
        } => {
            let map = darec::pipeline::map_run(&run, nodes, out, projection)?;
            println!(
                "wrote {} and {}",
                map.png.display(),
                map.png.with_extension("svg").display()
            );
            let (c, l) = map.mean_cosine;
            println!(
                "mean cosine between sampled nodes in the shared parts: collaborative {c:.4}, \
                 language {l:.4}{}",
                if c.max(l) > 0.9 {
                    " (near 1: collapsed to one direction, the structure losses are met trivially)"
                } else {
                    ""
                }
            );
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
        Command::Profile {
            dataset,
            writer,
            openai,
            gguf,
            out,
            max_tokens,
            temperature,
            max_items,
            max_users,
            set,
        } => {
            use darec::text::profile::{
                self as prof, ChatWriter, ProfileOptions, TemplateWriter, WriterKind,
            };
            let cfg = dataset_config(&dataset, set)?;
            let ds = load_dataset(&cfg.data)?;
            let kind: WriterKind = writer
                .parse()
                .map_err(|e| anyhow::anyhow!("--writer: {e}"))?;
            let out = out.unwrap_or_else(|| prof::default_cache_path(&cfg.data.name, kind));
            let opts = ProfileOptions {
                max_tokens,
                temperature,
                max_items,
                max_users,
                ..Default::default()
            };
            let report = match kind {
                WriterKind::Template => prof::write_profiles(&ds, &TemplateWriter, &out, &opts)?,
                WriterKind::Local => {
                    let path = gguf.unwrap_or_else(prof::LocalGguf::default_path);
                    let model = prof::LocalGguf::load(&path)?;
                    prof::write_profiles(&ds, &ChatWriter::new(&model, "local"), &out, &opts)?
                }
                WriterKind::OpenAi => {
                    let target =
                        openai.context("--writer openai needs --openai <base url>#<model>")?;
                    let client =
                        darec::text::openai::OpenAiChat::new(cfg.openai.with_target(&target)?)?;
                    prof::write_profiles(&ds, &ChatWriter::new(&client, "openai"), &out, &opts)?
                }
            };
            println!(
                "{} item and {} user profiles written, {} reused, {} fell back to the template, {:.1} s -> {}",
                report.items_written, report.users_written, report.reused, report.fallbacks, report.seconds, out.display()
            );
        }
        Command::Embed {
            dataset,
            embedder,
            writer,
            profiles,
            import_users,
            import_items,
            out,
            set,
        } => {
            use darec::text::embed::{embed_profiles, import_vectors, EmbedOptions};
            use darec::text::profile::{self as prof, WriterKind};
            let cfg = dataset_config(&dataset, set)?;
            let ds = load_dataset(&cfg.data)?;
            let cache = darec::config::cache_dir();
            let (vectors, out) = if let (Some(u), Some(i)) = (import_users, import_items) {
                let v = import_vectors(&ds, &u, &i)?;
                let out = out.unwrap_or_else(|| {
                    cache
                        .join("embeddings")
                        .join(format!("{}-imported.safetensors", cfg.data.name))
                });
                v.save(&out)?;
                (v, out)
            } else {
                let kind: WriterKind = writer
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--writer: {e}"))?;
                let profile_path =
                    profiles.unwrap_or_else(|| prof::default_cache_path(&cfg.data.name, kind));
                let ps = prof::read_profiles(&profile_path).with_context(|| {
                    format!(
                        "no profiles at {}: run `darec profile {dataset} --writer {writer}` first",
                        profile_path.display()
                    )
                })?;
                let spec = embedder.unwrap_or_else(|| {
                    format!("local:{}", cache.join("models/all-MiniLM-L6-v2").display())
                });
                let (model, tag) = darec::text::embed::embedder_from_spec(&spec, &cfg.openai)?;
                let out = out.unwrap_or_else(|| {
                    cache.join("embeddings").join(format!(
                        "{}-{}-{tag}.safetensors",
                        cfg.data.name,
                        kind.source()
                    ))
                });
                // Reuse finished vectors when the model and every profile text are unchanged.
                let fingerprint = {
                    use sha2::{Digest, Sha256};
                    let mut h = Sha256::new();
                    h.update(model.name().as_bytes());
                    for p in &ps {
                        h.update(
                            format!("{:?}\u{1e}{}\u{1e}{}\u{1f}", p.kind, p.id, p.text).as_bytes(),
                        );
                    }
                    h.finalize()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                };
                let stamp = out.with_extension("safetensors.profiles-sha256");
                if out.exists()
                    && std::fs::read_to_string(&stamp).ok().as_deref() == Some(fingerprint.as_str())
                {
                    let v = darec::text::embed::SemanticVectors::load(&out)?;
                    println!("reusing {} (same model and profiles)", out.display());
                    return finish_embed(v, &out);
                }
                let t0 = std::time::Instant::now();
                let v = embed_profiles(&ds, &ps, model.as_ref(), &EmbedOptions::for_output(&out))?;
                darec::run::write_atomic(&stamp, fingerprint.as_bytes())?;
                let n = ds.n_users() + ds.n_items();
                let secs = t0.elapsed().as_secs_f64();
                println!(
                    "embedded {n} profiles in {secs:.1} s ({:.0} texts/s)",
                    n as f64 / secs
                );
                (v, out)
            };
            finish_embed(vectors, &out)?;
        }
        Command::Use(cmd) => use_model::run(cmd)?,
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
        Command::Data {
            command:
                DataCommand::Synth {
                    interactions,
                    seed,
                    out,
                    users,
                    items,
                    user_exponent,
                    item_exponent,
                    min_user_degree,
                    clusters,
                    affinity,
                    overwrite,
                },
        } => {
            let opts = darec::data::synth::SynthOptions {
                interactions,
                users,
                items,
                user_exponent,
                item_exponent,
                min_user_degree,
                clusters,
                affinity,
                seed,
            };
            let r = darec::data::synth::generate(&opts, &out, overwrite)?;
            println!(
                "{} interactions of {} users x {} items ({} clusters), {:.1} MiB, {:.1} s -> {}",
                r.interactions,
                r.users,
                r.items,
                r.clusters,
                r.bytes as f64 / (1 << 20) as f64,
                r.seconds,
                out.display()
            );
            println!(
                "train on it: darec train --set data.name=synth --set data.path={} \
                 --set model.backbone=lightgcn",
                out.display()
            );
        }
    }
    Ok(())
}

/// For metrics from a sample of users: how many, of how many, and each metric's
/// standard error.
fn print_sampling(m: &darec::eval::Metrics) {
    if let Some(all) = m.sampled_from {
        let se: Vec<String> = ["recall@20", "ndcg@20", "recall@10", "ndcg@10"]
            .iter()
            .filter_map(|k| m.se.get(*k).map(|s| format!("{k} ± {s:.4}")))
            .collect();
        println!(
            "ranked for a sample of {} of the split's {all} users; standard errors: {}",
            m.n_users,
            se.join(", ")
        );
    }
}

fn stem(p: &std::path::Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "grid".into())
}

/// A config for a built-in dataset name or a config file, with overrides.
fn dataset_config(dataset: &str, set: Vec<String>) -> anyhow::Result<Config> {
    if dataset.ends_with(".toml") {
        return Config::load(Some(std::path::Path::new(dataset)), &set);
    }
    if !darec::config::preset_names().contains(&dataset) {
        anyhow::bail!(
            "unknown dataset `{dataset}`; built-in: {}; or pass a config file",
            darec::config::preset_names().join(", ")
        );
    }
    let mut s = vec![format!("data.name=\"{dataset}\"")];
    s.extend(set);
    Config::load(None, &s)
}

fn finish_embed(
    v: darec::text::embed::SemanticVectors,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    println!(
        "{} users and {} items x {} dims ({}) -> {}",
        v.n_users,
        v.n_items,
        v.dim,
        v.model,
        out.display()
    );
    Ok(())
}
