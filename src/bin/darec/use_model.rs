//! The commands that use a trained run (issue 14): recommend, similar, add-item, explain,
//! export, plot and serve. Each opens the run directory once; see `darec::serve`.

use anyhow::Context;
use clap::Subcommand;
use darec::serve::cold_start::ColdMethod;
use darec::serve::recommender::FoldMethod;
use darec::serve::{LoadOptions, Recommender, Scored};
use std::path::PathBuf;

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// Run directory written by `darec train`.
    #[arg(long)]
    run: PathBuf,
    /// Text embedder for cold start: local:<dir> or openai:<url>#<model> (default: the
    /// local model that made the run's semantic vectors).
    #[arg(long)]
    embedder: Option<String>,
    /// Semantic vectors of the run's users and items, for text-kNN cold start when the
    /// run's config names none.
    #[arg(long)]
    vectors: Option<PathBuf>,
}

impl RunArgs {
    fn open(&self) -> anyhow::Result<Recommender> {
        Recommender::load(
            &self.run,
            LoadOptions {
                embedder: self.embedder.clone(),
                vectors: self.vectors.clone(),
            },
        )
    }
}

#[derive(Subcommand)]
pub enum UseCommand {
    /// Recommend items for a user of the run, or for a new user from items they liked.
    Recommend {
        #[command(flatten)]
        run: RunArgs,
        /// External id of a user of the run.
        #[arg(long, conflicts_with_all = ["items", "liked", "text"], required_unless_present_any = ["items", "liked", "text"])]
        user: Option<String>,
        /// A new user known only by a text about them (cold start).
        #[arg(long, conflicts_with_all = ["items", "liked"])]
        text: Option<String>,
        /// Cold-start method for --text: alignment or text-knn (default: alignment where
        /// the run has one).
        #[arg(long, value_enum)]
        method: Option<ColdMethod>,
        /// Items a new user liked, comma-separated: external ids or titles (`Toy Story`,
        /// `the usual suspects (1995)`; any case, year optional). Fold-in, no retraining.
        #[arg(long, value_delimiter = ',')]
        items: Vec<String>,
        /// One item a new user liked, id or title (repeatable; for names that contain
        /// commas).
        #[arg(long)]
        liked: Vec<String>,
        #[arg(long, default_value_t = 20)]
        k: usize,
        /// Keep the user's training items in the ranking.
        #[arg(long)]
        include_seen: bool,
        /// Fold-in method for --items.
        #[arg(long, value_enum, default_value_t = FoldMethod::Auto)]
        fold_in: FoldMethod,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Items nearest to an item in the model's space.
    Similar {
        #[command(flatten)]
        run: RunArgs,
        /// The item: its external id or its title (any case, year optional).
        #[arg(long)]
        item: String,
        #[arg(long, default_value_t = 20)]
        k: usize,
        #[arg(long)]
        json: bool,
    },
    /// Add items known only by their text (cold start), without retraining.
    AddItem {
        #[command(flatten)]
        run: RunArgs,
        /// The item's text (e.g. its title and description).
        #[arg(long, conflicts_with = "jsonl", required_unless_present = "jsonl")]
        text: Option<String>,
        /// Its id (default new-<n>).
        #[arg(long, conflicts_with = "jsonl")]
        id: Option<String>,
        /// Many items: a JSONL file of {"text": ..., "id": ...} lines.
        #[arg(long)]
        jsonl: Option<PathBuf>,
        /// alignment (RLMRec-Con, DaRec) or text-knn (default: alignment where the run has one).
        #[arg(long, value_enum)]
        method: Option<ColdMethod>,
    },
    /// Why each recommended item is recommended (history items closest to it; DaRec's
    /// preference centres).
    Explain {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 10)]
        k: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write user and item vectors (.npy), their ids and a manifest, for FAISS or a vector database.
    Export {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long)]
        out: PathBuf,
        /// Replace an export already in --out.
        #[arg(long)]
        overwrite: bool,
    },
    /// Training curves of a run (each loss term, validation metrics) as PNG and SVG.
    Plot {
        /// Run directory; give it more than once to compare runs on one chart.
        #[arg(long, required = true)]
        run: Vec<PathBuf>,
        /// Output file stem (default: <run>/curves; comparisons: <first run>/compare).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Compare runs' validation metric against `epoch` or wall time (`seconds`).
        /// Without it, one run's losses and metrics are drawn against epochs.
        #[arg(long, value_enum)]
        x: Option<darec::curves_compare::XAxis>,
        /// The metric of a comparison.
        #[arg(long, default_value = "recall@20")]
        metric: String,
    },
    /// Serve the run over HTTP: /recommend, /similar, /items, /explain, /health, /metrics, /.
    Serve {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// A request must be complete within this many seconds (else 408).
        #[arg(long, default_value_t = 10.0)]
        timeout_s: f64,
    },
}

fn print_ranked(items: &[Scored], json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(());
    }
    println!("| rank | item | {what} | score |\n|---|---|---|---|");
    for (n, s) in items.iter().enumerate() {
        println!("| {} | {} | {} | {:.4} |", n + 1, s.id, s.title, s.score);
    }
    Ok(())
}

pub fn run(cmd: UseCommand) -> anyhow::Result<()> {
    match cmd {
        UseCommand::Recommend {
            run,
            user,
            text,
            method,
            mut items,
            liked,
            k,
            include_seen,
            fold_in,
            json,
        } => {
            let r = run.open()?;
            items.extend(liked);
            let recs = match (user, text) {
                (Some(u), _) => r.recommend(&u, k, include_seen)?,
                (None, Some(t)) => {
                    let (recs, used) = r.recommend_for_text(&t, k, method)?;
                    if !json {
                        println!("cold-start user ({})", used.as_str());
                    }
                    recs
                }
                (None, None) => {
                    let f = r.recommend_for_named_items(&items, k, fold_in)?;
                    if !json {
                        // the items as understood, since titles may be typed loosely
                        let titles: Vec<&str> = f.liked.iter().map(|n| n.title.as_str()).collect();
                        println!("new user who liked: {}", titles.join("; "));
                        if f.duplicates > 0 {
                            println!(
                                "({} repeated item(s) dropped: the liked items are a set)",
                                f.duplicates
                            );
                        }
                    }
                    f.items
                }
            };
            print_ranked(&recs, json, "title")
        }
        UseCommand::Similar { run, item, k, json } => {
            let r = run.open()?;
            print_ranked(&r.similar(&item, k)?, json, "title")
        }
        UseCommand::AddItem {
            run,
            text,
            id,
            jsonl,
            method,
        } => {
            let mut r = run.open()?;
            // refused while a server (or another add-item) writes this run's items
            r.hold_items_lock()?;
            let wanted: Vec<(Option<String>, String)> = match (text, jsonl) {
                (Some(t), _) => vec![(id, t)],
                (None, Some(path)) => {
                    #[derive(serde::Deserialize)]
                    #[serde(deny_unknown_fields)]
                    struct Line {
                        text: String,
                        id: Option<String>,
                    }
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("{}: cannot read", path.display()))?;
                    text.lines()
                        .enumerate()
                        .filter(|(_, l)| !l.trim().is_empty())
                        .map(|(n, l)| {
                            let x: Line = serde_json::from_str(l).with_context(|| {
                                format!(
                                    "{}:{}: expected {{\"text\": ..., \"id\": ...}}",
                                    path.display(),
                                    n + 1
                                )
                            })?;
                            Ok((x.id, x.text))
                        })
                        .collect::<anyhow::Result<_>>()?
                }
                (None, None) => anyhow::bail!("give --text or --jsonl"),
            };
            for (id, text) in wanted {
                let (id, used) = r.add_item(id.as_deref(), &text, method)?;
                println!(
                    "added `{id}` ({}), {} items now",
                    used.as_str(),
                    r.n_items()
                );
            }
            Ok(())
        }
        UseCommand::Explain { run, user, k, json } => {
            let r = run.open()?;
            let e = darec::serve::explain::explain(&r, &user, k, 3)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
                return Ok(());
            }
            for (n, x) in e.recommendations.iter().enumerate() {
                let centre = x
                    .centre
                    .map(|c| format!(" [centre {c}]"))
                    .unwrap_or_default();
                println!(
                    "{}. {} (score {:.4}){centre}",
                    n + 1,
                    x.item.title,
                    x.item.score
                );
                for b in &x.because {
                    println!("     because of {} (cosine {:.3})", b.title, b.score);
                }
            }
            for c in &e.centres {
                println!(
                    "centre {} ({} items): {}",
                    c.id,
                    c.size,
                    c.titles.join("; ")
                );
            }
            Ok(())
        }
        UseCommand::Export {
            run,
            out,
            overwrite,
        } => {
            let r = run.open()?;
            darec::serve::export::export(&r, &out, overwrite)?;
            println!(
                "wrote {} users and {} items x {} dims to {}",
                r.n_users(),
                r.n_items(),
                r.dim,
                out.display()
            );
            Ok(())
        }
        UseCommand::Plot {
            run,
            out,
            x,
            metric,
        } => {
            let stem = if run.len() == 1 && x.is_none() {
                let stem = out.unwrap_or_else(|| run[0].join("curves"));
                darec::curves::plot_run(&run[0], &stem)?;
                stem
            } else {
                let stem = out.unwrap_or_else(|| run[0].join("compare"));
                let x = x.unwrap_or(darec::curves_compare::XAxis::Epoch);
                darec::curves_compare::plot_runs(&run, &metric, x, &stem)?;
                stem
            };
            println!(
                "wrote {} and {}",
                stem.with_extension("png").display(),
                stem.with_extension("svg").display()
            );
            Ok(())
        }
        UseCommand::Serve {
            run,
            addr,
            timeout_s,
        } => {
            if !(timeout_s.is_finite() && timeout_s > 0.0) {
                anyhow::bail!("--timeout-s must be a positive number of seconds");
            }
            let mut r = run.open()?;
            // this server is the one writer of the run's added items while it runs
            r.hold_items_lock()?;
            // the request and blocking threads score with the same float mode as training
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .on_thread_start(darec::threads::flush_subnormals)
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let local = listener.local_addr()?;
                let shutdown = darec::serve::http::shutdown_signal()?;
                println!(
                    "serving {} ({} users, {} items) on http://{local}/ (Ctrl-C to stop)",
                    r.label,
                    r.n_users(),
                    r.n_items()
                );
                let options = darec::serve::http::ServeOptions {
                    request_timeout: std::time::Duration::from_secs_f64(timeout_s),
                };
                darec::serve::http::serve_on(listener, r, options, shutdown).await
            })?;
            println!("stopped");
            Ok(())
        }
    }
}
