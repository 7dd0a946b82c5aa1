//! The profile driver: items first, then users (RLMRec section 3.2), each profile reused
//! from the cache when its prompt hash is unchanged, otherwise written (template text, or
//! chat requests sent in batches through `complete_batch`), appended to the cache and
//! flushed; at the end the cache is rewritten compacted in dataset order.

use super::cache::{self, Appender};
use super::prompt::{self, Prompt};
use super::template::Describer;
use super::{Profile, ProfileKind, ProfileOptions, ProfileReport, ProfileSource, TEMPLATE_VERSION};
use crate::data::Dataset;
use crate::rng::Rng;
use crate::text::ChatRequest;
use anyhow::Context;
use indicatif::ProgressBar;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// One profile to produce.
struct Job {
    external: String,
    prompt: Prompt,
    hash: String,
    /// Template text: the profile of the template writer, the fallback of chat writers.
    template: String,
}

/// Writes (or reuses) a profile for every item, then every user, of `ds` into the JSONL
/// cache at `cache_path`, and rewrites the cache compacted in dataset order.
///
/// A failed chat request stops the run with its error; everything written before it stays
/// in the cache, so running again resumes.
pub fn write_profiles(
    ds: &Dataset,
    writer: &dyn ProfileSource,
    cache_path: &Path,
    opts: &ProfileOptions,
) -> anyhow::Result<ProfileReport> {
    let t0 = Instant::now();
    if opts.batch_size == 0 || opts.max_tokens == 0 {
        anyhow::bail!("profile options: batch_size and max_tokens must be positive");
    }
    let loaded = cache::load(cache_path)?;
    let cached = loaded.by_key();
    let mut out = Appender::open(cache_path, &loaded)?;
    let d = Describer::new(ds);
    let n_items = opts.max_items.map_or(ds.n_items(), |m| m.min(ds.n_items()));
    let n_users = opts.max_users.map_or(ds.n_users(), |m| m.min(ds.n_users()));
    let bar = progress_bar(opts, (n_items + n_users) as u64);
    let mut report = ProfileReport::default();
    let model = writer.model();
    let settings = match writer.chat() {
        Some(_) => opts.settings(),
        None => TEMPLATE_VERSION.to_string(),
    };
    let ctx = Ctx {
        writer,
        opts,
        cached: &cached,
        model: &model,
        bar: &bar,
    };

    // Items.
    let jobs: Vec<Job> = (0..n_items as u32)
        .map(|i| {
            let external = ds.item_ids.external(i).to_string();
            let template = d.item_template(i);
            let prompt = match writer.chat() {
                Some(_) => prompt::item_prompt(&d, i, &external),
                None => template_prompt(&template),
            };
            let hash = prompt::prompt_hash(&prompt.system, &prompt.user, &model, &settings);
            Job {
                external,
                prompt,
                hash,
                template,
            }
        })
        .collect();
    bar.set_message("items");
    let items = ctx.run(ProfileKind::Item, jobs, &mut out, &mut report)?;
    report.items_written = items.iter().filter(|p| p.1).count();

    // Users: prompts list training items with their item profiles.
    let item_text: HashMap<u32, String> = items
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (i as u32, p.text.clone()))
        .collect();
    let item_text_of = |i: u32| -> String {
        if let Some(t) = item_text.get(&i) {
            return t.clone();
        }
        match cached.get(&(ProfileKind::Item, ds.item_ids.external(i).to_string())) {
            Some(p) => p.text.clone(),
            None => d.item_template(i),
        }
    };
    let train = ds.user_items(&ds.train);
    let jobs: Vec<Job> = (0..n_users as u32)
        .map(|u| {
            let external = ds.user_ids.external(u).to_string();
            let listed =
                prompt::select_user_items(train.row(u), opts.max_user_items, opts.seed, &external);
            let template = d.user_template(u, &listed);
            let prompt = match writer.chat() {
                Some(_) => prompt::user_prompt(&d, u, &listed, &item_text_of),
                None => template_prompt(&template),
            };
            let hash = prompt::prompt_hash(&prompt.system, &prompt.user, &model, &settings);
            Job {
                external,
                prompt,
                hash,
                template,
            }
        })
        .collect();
    bar.set_message("users");
    let users = ctx.run(ProfileKind::User, jobs, &mut out, &mut report)?;
    report.users_written = users.iter().filter(|p| p.1).count();
    bar.finish_and_clear();
    drop(out);

    // Compact: this run's profiles, then cached ones of ids beyond the limits.
    let mut all: Vec<Profile> = Vec::with_capacity(ds.n_items() + ds.n_users());
    all.extend(items.into_iter().map(|p| p.0));
    for i in n_items..ds.n_items() {
        let key = (
            ProfileKind::Item,
            ds.item_ids.external(i as u32).to_string(),
        );
        all.extend(cached.get(&key).cloned());
    }
    all.extend(users.into_iter().map(|p| p.0));
    for u in n_users..ds.n_users() {
        let key = (
            ProfileKind::User,
            ds.user_ids.external(u as u32).to_string(),
        );
        all.extend(cached.get(&key).cloned());
    }
    let stale = cached
        .keys()
        .filter(|(k, id)| match k {
            ProfileKind::Item => ds.item_ids.get(id).is_none(),
            ProfileKind::User => ds.user_ids.get(id).is_none(),
        })
        .count();
    if stale > 0 {
        tracing::warn!(
            "{}: dropping {stale} cached profiles of ids not in dataset `{}`",
            cache_path.display(),
            ds.name
        );
    }
    cache::write_compacted(cache_path, &all)
        .with_context(|| format!("{}: rewriting the profile cache", cache_path.display()))?;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// The template writer's "prompt": its text, so the hash follows the text.
fn template_prompt(text: &str) -> Prompt {
    Prompt {
        system: String::new(),
        user: text.to_string(),
    }
}

struct Ctx<'a> {
    writer: &'a dyn ProfileSource,
    opts: &'a ProfileOptions,
    cached: &'a HashMap<(ProfileKind, String), Profile>,
    model: &'a str,
    bar: &'a ProgressBar,
}

impl Ctx<'_> {
    /// Produces one profile per job, in job order, with whether it was written this run.
    fn run(
        &self,
        kind: ProfileKind,
        jobs: Vec<Job>,
        out: &mut Appender,
        report: &mut ProfileReport,
    ) -> anyhow::Result<Vec<(Profile, bool)>> {
        let mut done: Vec<Option<(Profile, bool)>> = vec![None; jobs.len()];
        let mut pending: Vec<usize> = Vec::new();
        for (k, job) in jobs.iter().enumerate() {
            match self.cached.get(&(kind, job.external.clone())) {
                Some(p) if p.prompt_hash == job.hash => {
                    done[k] = Some((p.clone(), false));
                    report.reused += 1;
                    self.bar.inc(1);
                }
                _ => pending.push(k),
            }
        }
        let make = |job: &Job, text: String, source: String| Profile {
            kind,
            id: job.external.clone(),
            text,
            source,
            model: self.model.to_string(),
            prompt_hash: job.hash.clone(),
        };
        match self.writer.chat() {
            None => {
                for &k in &pending {
                    let job = &jobs[k];
                    let p = make(job, job.template.clone(), self.writer.source());
                    out.append(&p)?;
                    done[k] = Some((p, true));
                    self.bar.inc(1);
                }
            }
            Some(chat) => {
                for chunk in pending.chunks(self.opts.batch_size) {
                    let requests: Vec<ChatRequest> = chunk
                        .iter()
                        .map(|&k| self.request(kind, &jobs[k]))
                        .collect();
                    let answers = chat.complete_batch(&requests);
                    if answers.len() != requests.len() {
                        anyhow::bail!(
                            "chat model `{}` answered {} of {} requests",
                            self.model,
                            answers.len(),
                            requests.len()
                        );
                    }
                    let mut first_err = None;
                    for (&k, answer) in chunk.iter().zip(answers) {
                        let job = &jobs[k];
                        let answer = match answer {
                            Ok(a) => a,
                            Err(e) => {
                                first_err.get_or_insert_with(|| {
                                    e.context(format!(
                                        "chat request for {kind:?} `{}` failed",
                                        job.external
                                    ))
                                });
                                continue;
                            }
                        };
                        let p = match prompt::parse_summarization(&answer) {
                            Some(text) => make(job, text, self.writer.source()),
                            None => {
                                tracing::debug!(
                                    id = %job.external,
                                    answer = %answer,
                                    "no summarization in the answer; using the template text"
                                );
                                report.fallbacks += 1;
                                make(job, job.template.clone(), "fallback".into())
                            }
                        };
                        out.append(&p)?;
                        done[k] = Some((p, true));
                        self.bar.inc(1);
                    }
                    if let Some(e) = first_err {
                        return Err(e);
                    }
                }
            }
        }
        Ok(done
            .into_iter()
            .map(|p| p.expect("every job is reused or written"))
            .collect())
    }

    fn request(&self, kind: ProfileKind, job: &Job) -> ChatRequest {
        let tag = match kind {
            ProfileKind::Item => "item",
            ProfileKind::User => "user",
        };
        let seed =
            Rng::derive(self.opts.seed, &format!("profile-{tag}:{}", job.external)).next_u64();
        ChatRequest {
            system: job.prompt.system.clone(),
            user: job.prompt.user.clone(),
            max_tokens: self.opts.max_tokens,
            temperature: self.opts.temperature,
            seed,
        }
    }
}

fn progress_bar(opts: &ProfileOptions, total: u64) -> ProgressBar {
    crate::progress::bar(
        opts.progress,
        total,
        "profiles {elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
    )
}
