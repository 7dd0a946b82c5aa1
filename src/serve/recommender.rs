//! [`Recommender`]: a trained run loaded once and queried many times. Scores are
//! `<e_u, e_i>` of the final embeddings, as in training and evaluation; a ranking never
//! holds more than one user's scores.
//!
//! Items added from text (cold start) are kept in `<run>/added-items.jsonl` (id, text,
//! method, vector), so `darec add-item` and `POST /items` survive restarts and later
//! `darec recommend` calls see them; the run's own files are never changed.

use super::cold_start::{self, ColdMethod, Side, TextSide};
use super::fold_in::{fit_user, fit_user_from, FitOptions};
use super::item_lookup::{Lookup, TitleIndex};
use crate::backbone::FoldIn;
use crate::config::Config;
use crate::data::{Dataset, UserItems};
use crate::eval::topk::TopK;
use crate::train::Model;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One recommended (or similar, or history) item.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Scored {
    pub id: String,
    pub title: String,
    pub score: f32,
}

/// An item as a request named it: its id and title.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NamedItem {
    pub id: String,
    pub title: String,
}

/// The most liked items one fold-in request may name.
pub const MAX_LIKED: usize = 1000;

/// A new user folded in from the items they liked.
#[derive(Debug, Clone)]
pub struct FoldedIn {
    /// The distinct liked items as understood, in the order first given.
    pub liked: Vec<NamedItem>,
    /// How many entries of the request named an item already named before.
    pub duplicates: usize,
    pub items: Vec<Scored>,
}

/// What can go wrong with a request: the caller's fault (unknown id, bad argument), or
/// not (a model or file that cannot be read).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<candle_core::Error> for ServeError {
    fn from(e: candle_core::Error) -> Self {
        ServeError::Internal(e.into())
    }
}

type Result<T> = std::result::Result<T, ServeError>;

macro_rules! bad {
    ($($t:tt)*) => { return Err(ServeError::BadRequest(format!($($t)*))) };
}
macro_rules! bail {
    ($($t:tt)*) => { return Err(ServeError::Internal(anyhow::anyhow!($($t)*))) };
}

/// A line of `added-items.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddedItem {
    id: String,
    text: String,
    method: ColdMethod,
    vector: Vec<f32>,
}

/// Settings for [`Recommender::load`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Embedder for texts (`local:<dir>` or `openai:<url>#<model>`); default: the local
    /// model that made the run's semantic vectors, from the download cache.
    pub embedder: Option<String>,
    /// Semantic vectors of the run's users and items, for text-kNN when the run's config
    /// names none (e.g. a plain backbone).
    pub vectors: Option<PathBuf>,
}

/// How a new user's vector is made from their items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FoldMethod {
    /// BPR-fit starting from the backbone's closed form where it has one (LightGCN), else
    /// from the mean of the liked items: the best measured on ML-1M (README).
    Auto,
    /// BPR-fit of the user's vector against the fixed item vectors, from the mean of the
    /// liked items.
    Fit,
    /// The backbone's closed form alone (LightGCN's propagation); `fit` where it has none.
    Closed,
}

/// The largest `k` a request may ask for.
pub const MAX_K: usize = 1000;

pub struct Recommender {
    pub run_dir: PathBuf,
    pub cfg: Config,
    /// `dataset backbone[+alignment] seed N`.
    pub label: String,
    pub dim: usize,
    user_index: HashMap<String, u32>,
    user_ids: Vec<String>,
    item_index: HashMap<String, u32>,
    item_ids: Vec<String>,
    titles: Vec<String>,
    /// The trained items by title, for requests that name an item instead of its id.
    title_index: TitleIndex,
    users: Vec<f32>,
    items: Vec<f32>,
    /// Texts of the items added from text, by item index minus the trained items.
    added_texts: Vec<String>,
    n_trained_items: usize,
    train: UserItems,
    fold_in: Option<Box<dyn FoldIn>>,
    /// The model, for the alignment's cold-start projection (used rarely, hence a lock).
    model: Mutex<Model>,
    text: Mutex<Option<TextSide>>,
    options: LoadOptions,
    mean_item_norm: f32,
    mean_user_norm: f32,
    /// The lock of `added-items.jsonl`, once this process writes it (a server takes it
    /// at start; `add-item` at its first item), so that two processes never append
    /// items the other does not know of.
    items_lock: Option<crate::run_lock::RunLock>,
}

/// The file of a run's items added from text.
pub const ADDED_ITEMS: &str = "added-items.jsonl";

/// Where a torn last record of [`ADDED_ITEMS`] is set aside.
pub const TORN_ITEMS: &str = "added-items.torn";

/// The length of the part of `bytes` (the content of `path`) made of whole records. A
/// tail after it (a last line without its end, or a last line that is not a record) is
/// appended to [`TORN_ITEMS`] beside it, and `path` is rewritten without it (atomically).
fn set_aside_torn_tail(path: &Path, bytes: &[u8]) -> anyhow::Result<usize> {
    let mut whole = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(p) => p + 1,
        None => 0,
    };
    // a whole last line that is not a record is torn too (cut inside a multi-byte
    // character, or a line end written by an older version alone)
    if whole == bytes.len() && whole > 0 {
        let start = bytes[..whole - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let last = &bytes[start..whole - 1];
        if !last.iter().all(u8::is_ascii_whitespace)
            && serde_json::from_slice::<AddedItem>(last).is_err()
        {
            // only when it is the last one; a bad line in the middle is an error
            whole = start;
        }
    }
    if whole == bytes.len() {
        return Ok(whole);
    }
    let side = path.with_file_name(TORN_ITEMS);
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&side)
        .with_context(|| format!("{}: cannot open", side.display()))?;
    f.write_all(&bytes[whole..])
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_data())
        .with_context(|| format!("{}: cannot write", side.display()))?;
    crate::run::write_atomic(path, &bytes[..whole])?;
    tracing::warn!(
        "{}: its last line was not a whole record ({} bytes; an interrupted write) and was \
         set aside in {}; every whole record is kept",
        path.display(),
        bytes.len() - whole,
        side.display()
    );
    Ok(whole)
}

/// `id -> index` of a list of ids.
fn index(ids: &[String]) -> HashMap<String, u32> {
    ids.iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect()
}

fn host(t: &candle_core::Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()
}

impl Recommender {
    /// Opens the run in `dir` (config, data set, model) and prepares every request.
    pub fn load(dir: &Path, options: LoadOptions) -> anyhow::Result<Self> {
        let (cfg, ds, model) = crate::pipeline::open_trained(dir)?;
        Self::from_parts(dir, cfg, &ds, model, options)
    }

    /// Like [`load`](Self::load) from parts already in memory.
    pub fn from_parts(
        dir: &Path,
        cfg: Config,
        ds: &Dataset,
        model: Model,
        options: LoadOptions,
    ) -> anyhow::Result<Self> {
        let (u, i) = model.final_embeddings()?;
        let dim = u.dim(1)?;
        let ego = model.backbone.ego()?;
        let fold_in = model.backbone.fold_in(&ego)?;
        let describe = crate::text::profile::template::Describer::new(ds);
        let titles: Vec<String> = (0..ds.n_items() as u32)
            .map(|i| describe.item_label(i))
            .collect();
        let title_index = TitleIndex::new((0..ds.n_items() as u32).filter_map(|i| {
            let m = describe.item(i);
            Some((i, m.title?, m.year))
        }));
        let items = host(&i)?;
        let users = host(&u)?;
        let mean_norm = |t: &[f32]| {
            t.chunks_exact(dim)
                .map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt())
                .sum::<f32>()
                / (t.len() / dim).max(1) as f32
        };
        let (mean_item_norm, mean_user_norm) = (mean_norm(&items), mean_norm(&users));
        let mut r = Self {
            run_dir: dir.to_path_buf(),
            label: format!("{} {} seed {}", cfg.data.name, cfg.label(), cfg.train.seed),
            cfg,
            dim,
            user_index: index(&ds.user_ids.external),
            user_ids: ds.user_ids.external.clone(),
            item_index: index(&ds.item_ids.external),
            item_ids: ds.item_ids.external.clone(),
            titles,
            title_index,
            users,
            items,
            added_texts: Vec::new(),
            n_trained_items: ds.n_items(),
            train: ds.user_items(&ds.train),
            fold_in,
            model: Mutex::new(model),
            text: Mutex::new(None),
            options,
            mean_item_norm,
            mean_user_norm,
            items_lock: None,
        };
        r.replay_added()?;
        Ok(r)
    }

    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }
    /// Items added from text since training.
    pub fn n_added(&self) -> usize {
        self.item_ids.len() - self.n_trained_items
    }

    fn user(&self, id: &str) -> Result<u32> {
        self.user_index.get(id).copied().ok_or_else(|| {
            ServeError::NotFound(format!(
                "unknown user `{id}` (the run has {} users, e.g. `{}`); for a new user give \
                 the items they liked",
                self.n_users(),
                self.user_ids.first().map_or("", |s| s.as_str())
            ))
        })
    }

    /// The item that `name` names (an id, or a title): its id and title.
    pub fn find_item(&self, name: &str) -> Result<NamedItem> {
        self.item(name).map(|i| self.named(i))
    }

    fn named(&self, i: u32) -> NamedItem {
        NamedItem {
            id: self.item_ids[i as usize].clone(),
            title: self.title(i),
        }
    }

    /// The item named by `id`: its id, else its title (see `item_lookup.rs`).
    fn item(&self, id: &str) -> Result<u32> {
        if let Some(&i) = self.item_index.get(id) {
            return Ok(i);
        }
        let listed = |items: &[u32]| {
            items
                .iter()
                .map(|&i| {
                    let (id, title) = (&self.item_ids[i as usize], self.title(i));
                    match title.strip_prefix(id.as_str()) {
                        // ML-1M's ids are titles: `Hamlet (1996)` [Drama]
                        Some(rest) if rest.is_empty() || rest.starts_with(" [") => {
                            format!("`{id}`{rest}")
                        }
                        _ => format!("`{id}` ({title})"),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.title_index.find(id) {
            Lookup::Found(i) => Ok(i),
            Lookup::Ambiguous(items) => bad!(
                "`{id}` is the title of {} items: {}; give one of these ids",
                items.len(),
                listed(&items)
            ),
            Lookup::Missing(near) => {
                let mut msg = format!(
                    "unknown item `{id}`: neither an id nor a title of the run's {} items \
                     (e.g. `{}`)",
                    self.n_items(),
                    self.item_ids.first().map_or("", |s| s.as_str())
                );
                if !near.is_empty() {
                    msg.push_str(&format!("; titles with these words: {}", listed(&near)));
                }
                Err(ServeError::NotFound(msg))
            }
        }
    }

    fn check_k(&self, k: usize) -> Result<()> {
        if k == 0 || k > MAX_K {
            bad!("k must be between 1 and {MAX_K}, got {k}");
        }
        Ok(())
    }

    fn row<'a>(&self, table: &'a [f32], i: u32) -> &'a [f32] {
        &table[i as usize * self.dim..(i as usize + 1) * self.dim]
    }

    fn scored(&self, i: u32, score: f32) -> Scored {
        Scored {
            id: self.item_ids[i as usize].clone(),
            title: self.title(i),
            score,
        }
    }

    fn title(&self, i: u32) -> String {
        match self.titles.get(i as usize) {
            Some(t) => t.clone(),
            None => self.added_texts[i as usize - self.n_trained_items].clone(),
        }
    }

    /// The best `k` items for the vector `u`, without the items in `exclude`.
    pub fn rank(&self, u: &[f32], exclude: &[u32], k: usize) -> Vec<Scored> {
        let scores: Vec<f32> = self
            .items
            .chunks_exact(self.dim)
            .map(|r| r.iter().zip(u).map(|(a, b)| a * b).sum())
            .collect();
        let mut masked = vec![false; scores.len()];
        for &i in exclude {
            if let Some(m) = masked.get_mut(i as usize) {
                *m = true;
            }
        }
        let mut top = Vec::with_capacity(k);
        TopK::default().select(&scores, &masked, k, &mut top);
        top.into_iter()
            .map(|i| self.scored(i, scores[i as usize]))
            .collect()
    }

    /// The training items of a known user.
    pub fn history(&self, user: &str) -> Result<Vec<Scored>> {
        let u = self.user(user)?;
        let e = self.row(&self.users, u);
        Ok(self
            .train
            .row(u)
            .iter()
            .map(|&i| {
                let s = self
                    .row(&self.items, i)
                    .iter()
                    .zip(e)
                    .map(|(a, b)| a * b)
                    .sum();
                self.scored(i, s)
            })
            .collect())
    }

    /// Recommendations for a user of the run; training items are left out unless
    /// `include_seen`.
    pub fn recommend(&self, user: &str, k: usize, include_seen: bool) -> Result<Vec<Scored>> {
        self.check_k(k)?;
        let u = self.user(user)?;
        let exclude = if include_seen {
            &[][..]
        } else {
            self.train.row(u)
        };
        Ok(self.rank(self.row(&self.users, u), exclude, k))
    }

    /// The vector of a user who is not in the model, from the items they liked.
    pub fn fold_in_vector(&self, liked: &[u32], method: FoldMethod) -> Vec<f32> {
        // the closed form knows the trained graph only: not for items added from text
        let closed = self
            .fold_in
            .as_ref()
            .filter(|_| liked.iter().all(|&i| (i as usize) < self.n_trained_items))
            .map(|f| self.score_space_rows(f.user(liked)));
        let opts = FitOptions {
            seed: self.cfg.train.seed,
            ..Default::default()
        };
        match (method, closed) {
            (FoldMethod::Closed, Some(v)) => v,
            (FoldMethod::Auto, Some(v)) => {
                fit_user_from(&self.items, self.dim, liked, Some(&v), &opts)
            }
            _ => fit_user(&self.items, self.dim, liked, &opts),
        }
    }

    /// Backbone-space rows (flat, the backbone's width) in the space the served vectors
    /// live in (see [`Model::to_score_space`]); the identity for most alignments.
    fn score_space_rows(&self, rows: Vec<f32>) -> Vec<f32> {
        if rows.len() == self.dim {
            return rows;
        }
        let model = self.model.lock().expect("model lock");
        let n = rows.len();
        let mapped = candle_core::Tensor::from_vec(rows.clone(), (1, n), model.device())
            .map_err(anyhow::Error::from)
            .and_then(|t| model.to_score_space(t))
            .and_then(|t| Ok(host(&t)?));
        match mapped {
            Ok(v) if v.len() == self.dim => v,
            other => {
                tracing::error!("cannot map a fold-in vector into the score space: {other:?}");
                rows
            }
        }
    }

    /// Recommendations for a new user from the items they liked (fold-in; no retraining).
    pub fn recommend_for_items(
        &self,
        liked: &[String],
        k: usize,
        method: FoldMethod,
    ) -> Result<Vec<Scored>> {
        Ok(self.recommend_for_named_items(liked, k, method)?.items)
    }

    /// As [`Self::recommend_for_items`], with the liked items as understood (id and title,
    /// in the order given, each once), since a request may name them by loosely typed
    /// titles. The liked items are a set: an item named twice (by its id and its title,
    /// say) counts once, and how many such repeats were dropped is returned too, so the
    /// ranking of any list is the ranking of its distinct items. A list longer than the
    /// catalogue or than [`MAX_LIKED`] is refused.
    pub fn recommend_for_named_items(
        &self,
        liked: &[String],
        k: usize,
        method: FoldMethod,
    ) -> Result<FoldedIn> {
        self.check_k(k)?;
        if liked.is_empty() {
            bad!("give at least one item the new user liked");
        }
        let limit = MAX_LIKED.min(self.n_items());
        if liked.len() > limit {
            bad!(
                "{} liked items: at most {limit} ({}) can be given",
                liked.len(),
                if limit == MAX_LIKED {
                    format!("the limit of a request, MAX_LIKED = {MAX_LIKED}")
                } else {
                    "the size of the catalogue".to_string()
                }
            );
        }
        let mut ids = Vec::with_capacity(liked.len());
        let mut seen = std::collections::HashSet::with_capacity(liked.len());
        for s in liked {
            let i = self.item(s)?;
            if seen.insert(i) {
                ids.push(i);
            }
        }
        let u = self.fold_in_vector(&ids, method);
        Ok(FoldedIn {
            liked: ids.iter().map(|&i| self.named(i)).collect(),
            duplicates: liked.len() - ids.len(),
            items: self.rank(&u, &ids, k),
        })
    }

    /// The `k` items nearest to `item` by cosine in the model's item space.
    pub fn similar(&self, item: &str, k: usize) -> Result<Vec<Scored>> {
        self.check_k(k)?;
        let i = self.item(item)?;
        let norm = |r: &[f32]| r.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let q = self.row(&self.items, i);
        let qn = norm(q);
        let scores: Vec<f32> = self
            .items
            .chunks_exact(self.dim)
            .map(|r| r.iter().zip(q).map(|(a, b)| a * b).sum::<f32>() / (norm(r) * qn))
            .collect();
        let mut masked = vec![false; scores.len()];
        masked[i as usize] = true;
        let mut top = Vec::with_capacity(k);
        TopK::default().select(&scores, &masked, k, &mut top);
        Ok(top
            .into_iter()
            .map(|j| self.scored(j, scores[j as usize]))
            .collect())
    }

    /// Loads (once) what cold start needs: the embedder and the items' semantic vectors.
    fn with_text<T>(&self, f: impl FnOnce(&TextSide) -> Result<T>) -> Result<T> {
        let mut guard = self.text.lock().expect("text side lock");
        if guard.is_none() {
            *guard = Some(self.load_text_side()?);
        }
        f(guard.as_ref().expect("just loaded"))
    }

    fn load_text_side(&self) -> Result<TextSide> {
        let path = match (&self.options.vectors, &self.cfg.align.vectors) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => crate::cache::resolve_cache_path(p),
            (None, None) => bail!(
                "{}: cold start needs the run's semantic vectors: the run has no \
                 align.vectors; pass --vectors <file from darec embed>",
                self.run_dir.display()
            ),
        };
        let v = crate::text::embed::SemanticVectors::load(&path).map_err(anyhow::Error::from)?;
        if v.n_items != self.n_trained_items {
            bail!(
                "{}: vectors for {} items, but the run has {}",
                path.display(),
                v.n_items,
                self.n_trained_items
            );
        }
        let spec = match &self.options.embedder {
            Some(s) => s.clone(),
            None => {
                let dir = crate::cache::cache_dir().join("models").join(&v.model);
                if !dir.is_dir() {
                    bail!(
                        "cold start embeds the text with `{}`, the model of {}, but {} does \
                         not exist: pass --embedder local:<dir> or openai:<url>#<model>",
                        v.model,
                        path.display(),
                        dir.display()
                    );
                }
                format!("local:{}", dir.display())
            }
        };
        let (embedder, _) = crate::text::embed::embedder_from_spec(&spec, &self.cfg.openai)?;
        let (mut user_sem, mut item_sem) = (v.users, v.items);
        cold_start::normalize_rows(&mut user_sem, v.dim);
        cold_start::normalize_rows(&mut item_sem, v.dim);
        Ok(TextSide {
            embedder,
            user_sem,
            item_sem,
            dim: v.dim,
        })
    }

    /// Collaborative vectors for item texts (cold start); see [`Self::cold_vectors_for`].
    pub fn cold_vectors(
        &self,
        texts: &[String],
        method: Option<ColdMethod>,
    ) -> Result<(Vec<Vec<f32>>, ColdMethod)> {
        self.cold_vectors_for(Side::Item, texts, method)
    }

    /// Collaborative vectors for texts of items or users (cold start), by `method`;
    /// `None` picks the alignment's projection where the run has one, else text-kNN (over
    /// the trained items, or users). Returns the vectors and the method used.
    pub fn cold_vectors_for(
        &self,
        side: Side,
        texts: &[String],
        method: Option<ColdMethod>,
    ) -> Result<(Vec<Vec<f32>>, ColdMethod)> {
        let (trained, sem_of, target_norm) = match side {
            Side::Item => (
                &self.items[..self.n_trained_items * self.dim],
                (|t: &TextSide| -> &[f32] { &t.item_sem }) as fn(&TextSide) -> &[f32],
                self.mean_item_norm,
            ),
            Side::User => (
                &self.users[..],
                (|t: &TextSide| -> &[f32] { &t.user_sem }) as fn(&TextSide) -> &[f32],
                self.mean_user_norm,
            ),
        };
        if let Some(t) = texts.iter().find(|t| t.trim().is_empty()) {
            bad!(
                "the text is empty{}",
                if t.is_empty() { "" } else { " (only spaces)" }
            );
        }
        let (e_l, dl) = self.with_text(|t| {
            let mut e = t.embedder.embed(texts)?;
            if e.iter().any(|v| v.len() != t.dim) {
                bail!(
                    "the embedder returned vectors of another width than the run's {}",
                    t.dim
                );
            }
            e.iter_mut()
                .for_each(|v| cold_start::normalize_rows(v, t.dim));
            Ok((e, t.dim))
        })?;
        let projected = if method == Some(ColdMethod::TextKnn) {
            None
        } else {
            let flat: Vec<f32> = e_l.concat();
            let t =
                candle_core::Tensor::from_vec(flat, (texts.len(), dl), &candle_core::Device::Cpu)?;
            let model = self.model.lock().expect("model lock");
            model
                .align
                .text_to_collaborative(&t.to_device(model.device())?)?
                .map(|p| -> anyhow::Result<Vec<f32>> { Ok(host(&model.to_score_space(p)?)?) })
                .transpose()?
        };
        match (projected, method) {
            (Some(p), _) => {
                let mut out: Vec<Vec<f32>> = p.chunks_exact(self.dim).map(|r| r.to_vec()).collect();
                out.iter_mut()
                    .for_each(|v| cold_start::rescale(v, target_norm));
                Ok((out, ColdMethod::Alignment))
            }
            (None, Some(ColdMethod::Alignment)) => bad!(
                "alignment `{}` has no language-side projection into the collaborative space \
                 (RLMRec-Con and DaRec have one); use text-knn",
                self.cfg.align.kind.as_str()
            ),
            (None, _) => self.with_text(|t| {
                let out = e_l
                    .iter()
                    .map(|q| {
                        cold_start::text_knn(
                            q,
                            sem_of(t),
                            t.dim,
                            trained,
                            self.dim,
                            cold_start::KNN,
                        )
                    })
                    .collect();
                Ok((out, ColdMethod::TextKnn))
            }),
        }
    }

    /// Recommendations for a user known only by a text about them (cold start); returns
    /// the method that made their vector too.
    pub fn recommend_for_text(
        &self,
        text: &str,
        k: usize,
        method: Option<ColdMethod>,
    ) -> Result<(Vec<Scored>, ColdMethod)> {
        self.check_k(k)?;
        let (mut v, used) = self.cold_vectors_for(Side::User, &[text.to_string()], method)?;
        Ok((
            self.rank(&v.pop().expect("one text, one vector"), &[], k),
            used,
        ))
    }

    /// Makes the vector of an item known only by its text (cold start), without adding
    /// it: the slow part (embedding), which needs no exclusive access. `id` defaults to
    /// `new-<n>`; an id already in use is an error.
    pub fn prepare_item(
        &self,
        id: Option<&str>,
        text: &str,
        method: Option<ColdMethod>,
    ) -> Result<AddedItem> {
        let id = match id {
            Some(s) if s.trim().is_empty() => bad!("the item id is empty"),
            Some(s) => s.to_string(),
            None => {
                let mut n = self.n_added() + 1;
                while self.item_index.contains_key(&format!("new-{n}")) {
                    n += 1;
                }
                format!("new-{n}")
            }
        };
        if self.item_index.contains_key(&id) {
            bad!("item `{id}` already exists");
        }
        let (mut v, used) = self.cold_vectors(&[text.to_string()], method)?;
        Ok(AddedItem {
            id,
            text: text.to_string(),
            method: used,
            vector: v.pop().expect("one text, one vector"),
        })
    }

    /// Takes the lock of this run's added items for as long as this value lives (a
    /// server calls it at start): another process's `add-item` is then refused instead
    /// of appending items this one does not know of. Items added since this value was
    /// loaded are read again first.
    pub fn hold_items_lock(&mut self) -> anyhow::Result<()> {
        if self.items_lock.is_none() {
            self.items_lock = Some(crate::run_lock::RunLock::acquire_items(&self.run_dir)?);
            self.replay_added()?;
        }
        Ok(())
    }

    /// Adds a prepared item and keeps it in `added-items.jsonl`; returns its id and the
    /// method that made its vector. The record is written whole in one write and synced
    /// to disk before this returns, so an item that was acknowledged survives a kill.
    pub fn commit_item(&mut self, item: AddedItem) -> Result<(String, ColdMethod)> {
        self.hold_items_lock()?;
        if self.item_index.contains_key(&item.id) {
            bad!("item `{}` already exists", item.id);
        }
        let path = self.run_dir.join(ADDED_ITEMS);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        use std::io::Write;
        let mut line = serde_json::to_string(&item).map_err(anyhow::Error::from)?;
        line.push('\n');
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        crate::fault::point("added item written");
        let out = (item.id.clone(), item.method);
        self.push_item(item);
        Ok(out)
    }

    /// [`prepare_item`](Self::prepare_item) then [`commit_item`](Self::commit_item).
    pub fn add_item(
        &mut self,
        id: Option<&str>,
        text: &str,
        method: Option<ColdMethod>,
    ) -> Result<(String, ColdMethod)> {
        let item = self.prepare_item(id, text, method)?;
        self.commit_item(item)
    }

    fn push_item(&mut self, a: AddedItem) {
        self.item_index
            .insert(a.id.clone(), self.item_ids.len() as u32);
        self.item_ids.push(a.id);
        self.items.extend_from_slice(&a.vector);
        self.added_texts.push(a.text);
    }

    /// Re-adds the items of `added-items.jsonl`. A torn last line (what a kill in the
    /// middle of a write can leave: no line end, or not a whole record) is set aside in
    /// `added-items.torn`, named in a warning, and cut from the file, so every whole
    /// record is kept and the next one starts on a line of its own.
    fn replay_added(&mut self) -> Result<()> {
        let path = self.run_dir.join(ADDED_ITEMS);
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(());
        };
        let whole = set_aside_torn_tail(&path, &bytes)?;
        let text = String::from_utf8_lossy(&bytes[..whole]);
        for (n, line) in text.lines().enumerate() {
            let Ok(a) = serde_json::from_str::<AddedItem>(line) else {
                bail!(
                    "{}:{}: not an added item (the file was edited or damaged: fix or remove \
                     that line)",
                    path.display(),
                    n + 1
                );
            };
            if a.vector.len() != self.dim || a.vector.iter().any(|x| !x.is_finite()) {
                bail!(
                    "{}:{}: vector of item `{}` is not {} finite numbers",
                    path.display(),
                    n + 1,
                    a.id,
                    self.dim
                );
            }
            if !self.item_index.contains_key(&a.id) {
                self.push_item(a);
            }
        }
        Ok(())
    }

    /// The trained model's final user vector of `user` and the item table (for explain).
    pub(crate) fn parts(&self) -> (&[f32], &[f32], usize, &UserItems) {
        (&self.users, &self.items, self.dim, &self.train)
    }
    pub(crate) fn user_id(&self, id: &str) -> Result<u32> {
        self.user(id)
    }
    pub(crate) fn item_scored(&self, i: u32, score: f32) -> Scored {
        self.scored(i, score)
    }
    pub(crate) fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().expect("model lock")
    }
    /// External ids of users and items (trained items first, then added ones).
    pub fn ids(&self) -> (&[String], &[String]) {
        (&self.user_ids, &self.item_ids)
    }
    /// Final user and item vectors, row-major.
    pub fn vectors(&self) -> (&[f32], &[f32]) {
        (&self.users, &self.items)
    }
}
