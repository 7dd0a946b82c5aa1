//! Why an item is recommended: for each recommended item, the user's training items
//! closest to it in the model's item space (cosine of final embeddings). For dot-product
//! scores over propagated embeddings this is an attribution by similarity, not an exact
//! decomposition of the score. For DaRec runs, also the preference centre (K-means over the
//! items' collaborative shared parts, K = `align.darec.k`) each recommended item falls in,
//! each centre summarised by its most central titles.

use super::recommender::{Recommender, Scored};
use crate::rng::Rng;
use serde::Serialize;

/// One recommended item with what it is explained by.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub item: Scored,
    /// History items most similar to it, `score` = cosine.
    pub because: Vec<Scored>,
    /// Its preference centre (DaRec runs).
    pub centre: Option<usize>,
}

/// A preference centre summarised by the titles nearest to it.
#[derive(Clone, Debug, Serialize)]
pub struct Centre {
    pub id: usize,
    pub size: usize,
    pub titles: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Explained {
    pub user: String,
    pub recommendations: Vec<Explanation>,
    pub centres: Vec<Centre>,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// Explains the top `k` recommendations of `user` by up to `per_item` history items each.
pub fn explain(
    r: &Recommender,
    user: &str,
    k: usize,
    per_item: usize,
) -> Result<Explained, super::ServeError> {
    let recs = r.recommend(user, k, false)?;
    let u = r.user_id(user)?;
    let (_, items, d, train) = r.parts();
    let (_, item_ids) = r.ids();
    let row = |i: u32| &items[i as usize * d..(i as usize + 1) * d];
    let history = train.row(u);
    let (assign, centres) = preference_centres(r).map_err(super::ServeError::Internal)?;
    let index: std::collections::HashMap<&str, u32> = item_ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    let recommendations = recs
        .into_iter()
        .map(|item| {
            let i = index[item.id.as_str()];
            let mut because: Vec<(f32, u32)> = history
                .iter()
                .map(|&h| (cosine(row(h), row(i)), h))
                .collect();
            because.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            Explanation {
                centre: assign.as_ref().and_then(|a| a.get(i as usize).copied()),
                because: because
                    .into_iter()
                    .take(per_item)
                    .map(|(s, h)| r.item_scored(h, s))
                    .collect(),
                item,
            }
        })
        .collect();
    Ok(Explained {
        user: user.to_string(),
        recommendations,
        centres,
    })
}

/// DaRec's preference centres over the trained items: each item's centre, and each
/// centre's three most central titles. Empty for runs without a shared space.
fn preference_centres(r: &Recommender) -> anyhow::Result<(Option<Vec<usize>>, Vec<Centre>)> {
    let (_, items, d, _) = r.parts();
    let n_users = r.ids().0.len();
    let n_items = r.n_items() - r.n_added();
    let model = r.model();
    // the served vectors may be a score space `[e_C ; ...]`: e_C is their first columns
    let e_c = candle_core::Tensor::from_slice(&items[..n_items * d], (n_items, d), model.device())?
        .narrow(1, 0, model.backbone.out_dim().min(d))?;
    let nodes: Vec<u32> = (0..n_items as u32).map(|i| i + n_users as u32).collect();
    let Some((shared, _)) = model.align.shared_space(&e_c, &nodes)? else {
        return Ok((None, Vec::new()));
    };
    let shared = crate::ops::rowwise::l2_normalize(&shared)?;
    let ds = shared.dim(1)?;
    let x: Vec<f32> = shared.flatten_all()?.to_vec1()?;
    let k = r.cfg.align.darec.k.max(1);
    let mut rng = Rng::derive(r.cfg.train.seed, "explain-centres");
    let assign = crate::align::kmeans::kmeans(&x, n_items, ds, k, 25, &mut rng);
    let mut centres = Vec::new();
    for c in 0..k {
        let members: Vec<usize> = (0..n_items).filter(|&i| assign[i] == c).collect();
        if members.is_empty() {
            continue;
        }
        let mut mean = vec![0f32; ds];
        for &i in &members {
            mean.iter_mut()
                .zip(&x[i * ds..(i + 1) * ds])
                .for_each(|(m, v)| *m += v / members.len() as f32);
        }
        let mut near: Vec<(f32, usize)> = members
            .iter()
            .map(|&i| (cosine(&x[i * ds..(i + 1) * ds], &mean), i))
            .collect();
        near.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        centres.push(Centre {
            id: c,
            size: members.len(),
            titles: near
                .iter()
                .take(3)
                .map(|&(_, i)| r.item_scored(i as u32, 0.0).title)
                .collect(),
        });
    }
    Ok((Some(assign), centres))
}
