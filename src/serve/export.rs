//! `darec export`: the final user and item vectors as `.npy` (`float32`, C order, what
//! numpy, FAISS and vector databases ingest), their external ids one per line, and a
//! `manifest.json` that says how to score (inner product) and where each file is. Items
//! added from text are included after the trained ones.

use super::recommender::Recommender;
use crate::run::write_atomic;
use crate::text::embed::npy::write_npy_f32;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct Manifest<'a> {
    model: &'a str,
    run: String,
    dim: usize,
    n_users: usize,
    n_items: usize,
    /// Items added from text (the last rows of items.npy).
    n_added_items: usize,
    /// How the model scores: `<user, item>`, higher is better.
    score: &'static str,
    files: Files,
}

#[derive(Serialize)]
struct Files {
    users: &'static str,
    items: &'static str,
    user_ids: &'static str,
    item_ids: &'static str,
}

/// Writes the export into `out`; refuses a directory that already holds one unless
/// `overwrite`.
pub fn export(r: &Recommender, out: &Path, overwrite: bool) -> anyhow::Result<()> {
    if out.join("manifest.json").exists() && !overwrite {
        anyhow::bail!(
            "{} already holds an export: pass --overwrite to replace it",
            out.display()
        );
    }
    let (users, items) = r.vectors();
    let (user_ids, item_ids) = r.ids();
    let d = r.dim;
    write_atomic(
        &out.join("users.npy"),
        &write_npy_f32(&[user_ids.len(), d], users),
    )?;
    write_atomic(
        &out.join("items.npy"),
        &write_npy_f32(&[item_ids.len(), d], items),
    )?;
    let lines = |ids: &[String]| ids.iter().map(|s| format!("{s}\n")).collect::<String>();
    write_atomic(&out.join("user_ids.txt"), lines(user_ids).as_bytes())?;
    write_atomic(&out.join("item_ids.txt"), lines(item_ids).as_bytes())?;
    let manifest = Manifest {
        model: &r.label,
        run: r.run_dir.display().to_string(),
        dim: d,
        n_users: user_ids.len(),
        n_items: item_ids.len(),
        n_added_items: r.n_added(),
        score: "inner product <user, item> (FAISS IndexFlatIP; Qdrant distance Dot)",
        files: Files {
            users: "users.npy",
            items: "items.npy",
            user_ids: "user_ids.txt",
            item_ids: "item_ids.txt",
        },
    };
    write_atomic(
        &out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )
}
