//! [`OpenAiEmbedder`]: a [`TextEmbedder`] over `POST {base_url}/embeddings` of any
//! OpenAI-compatible server. Texts go in batches of `batch_size`, up to `concurrency`
//! batches at once; vectors come back ordered by the `index` field of `data[]`. The
//! dimension is learnt from the first answer (or a one-text probe) and then enforced.

use super::config::OpenAiConfig;
use super::http::JsonClient;
use super::pool::run_indexed;
use crate::text::TextEmbedder;
use anyhow::bail;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Embeddings from an OpenAI-compatible server.
#[derive(Debug)]
pub struct OpenAiEmbedder {
    cfg: OpenAiConfig,
    url: String,
    client: JsonClient,
    /// Output dimension once known; 0 = not yet.
    dim: AtomicUsize,
}

#[derive(Deserialize)]
struct EmbeddingsAnswer {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

/// The vectors of one answer for `n` inputs, in input order (by `index`; by position
/// where a server omits it). Checks the count, the indices and that all dims agree.
pub(crate) fn parse_embeddings(body: &str, n: usize) -> Result<Vec<Vec<f32>>, String> {
    let answer: EmbeddingsAnswer =
        serde_json::from_str(body).map_err(|e| format!("not an embeddings answer ({e})"))?;
    if answer.data.len() != n {
        return Err(format!(
            "expected {n} embeddings in `data`, got {}",
            answer.data.len()
        ));
    }
    let mut out: Vec<Option<Vec<f32>>> = (0..n).map(|_| None).collect();
    for (pos, item) in answer.data.into_iter().enumerate() {
        let i = item.index.unwrap_or(pos);
        if i >= n {
            return Err(format!(
                "`data[{pos}].index` is {i}, but only {n} texts were sent"
            ));
        }
        if out[i].is_some() {
            return Err(format!("index {i} appears twice in `data`"));
        }
        out[i] = Some(item.embedding);
    }
    let out: Vec<Vec<f32>> = out.into_iter().map(|v| v.unwrap_or_default()).collect();
    if let Some(first) = out.first() {
        if first.is_empty() {
            return Err("an embedding is empty".into());
        }
        if let Some((i, v)) = out.iter().enumerate().find(|(_, v)| v.len() != first.len()) {
            return Err(format!(
                "embedding {i} has dimension {} but embedding 0 has {}",
                v.len(),
                first.len()
            ));
        }
    }
    Ok(out)
}

impl OpenAiEmbedder {
    /// A client for `cfg`; fails on an invalid config or a named but unset API-key
    /// variable. Does not contact the server.
    pub fn new(cfg: OpenAiConfig) -> anyhow::Result<Self> {
        let client = JsonClient::new(&cfg)?;
        Ok(Self {
            url: cfg.endpoint("embeddings"),
            cfg,
            client,
            dim: AtomicUsize::new(0),
        })
    }

    /// The same client, told the dimension in advance (no probe; answers must match).
    pub fn with_dim(self, dim: usize) -> Self {
        self.dim.store(dim, Ordering::Relaxed);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// The dimension: cached, or learnt by embedding one short text.
    pub fn try_dim(&self) -> anyhow::Result<usize> {
        let d = self.dim.load(Ordering::Relaxed);
        if d > 0 {
            return Ok(d);
        }
        let v = self.embed_batch(&["dimension probe".to_string()])?;
        self.check_dim(v[0].len())
    }

    /// Records `d` as the dimension, or fails if a different one was seen before.
    fn check_dim(&self, d: usize) -> anyhow::Result<usize> {
        match self
            .dim
            .compare_exchange(0, d, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Ok(d),
            Err(known) if known == d => Ok(d),
            Err(known) => bail!(
                "{} returned {d}-dimensional embeddings, but earlier ones had {known} \
                 dimensions (model `{}`)",
                self.url,
                self.cfg.model
            ),
        }
    }

    /// One request for `texts` (at most `batch_size` of them), with retries.
    fn embed_batch(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let body = json!({"model": self.cfg.model, "input": texts});
        let n = texts.len();
        self.client
            .post(&self.url, &body, |text| parse_embeddings(text, n))
    }
}

impl TextEmbedder for OpenAiEmbedder {
    /// `openai:<model>`.
    fn name(&self) -> String {
        format!("openai:{}", self.cfg.model)
    }

    /// The dimension (probing the server once if no answer was seen yet). A failed probe
    /// is logged and gives 0; call [`OpenAiEmbedder::try_dim`] to get the error.
    fn dim(&self) -> usize {
        match self.try_dim() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("cannot learn the embedding dimension: {e:#}");
                0
            }
        }
    }

    fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let batches: Vec<&[String]> = texts.chunks(self.cfg.batch_size).collect();
        let failed = AtomicBool::new(false);
        // `None`: skipped because another batch had already failed.
        let results = run_indexed(batches.len(), self.cfg.concurrency, |b| {
            if failed.load(Ordering::Relaxed) {
                return None;
            }
            let r = self.embed_batch(batches[b]);
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            Some(r)
        });
        let mut out = Vec::with_capacity(texts.len());
        let mut complete = true;
        for (b, r) in results.into_iter().enumerate() {
            let start = b * self.cfg.batch_size;
            let end = start + batches[b].len();
            match r {
                Some(Ok(vs)) => {
                    if let Some(v) = vs.first() {
                        self.check_dim(v.len())?;
                    }
                    out.extend(vs);
                }
                Some(Err(e)) => return Err(e.context(format!("embedding texts {start}..{end}"))),
                None => complete = false,
            }
        }
        if !complete {
            bail!("embedding stopped early after a failed batch");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_index() {
        let body = r#"{"data":[{"index":2,"embedding":[3,3]},{"index":0,"embedding":[1,1]},
                      {"index":1,"embedding":[2,2]}]}"#;
        let v = parse_embeddings(body, 3).unwrap();
        assert_eq!(v, vec![vec![1.0, 1.0], vec![2.0, 2.0], vec![3.0, 3.0]]);
    }

    #[test]
    fn position_when_index_missing() {
        let body = r#"{"data":[{"embedding":[1.5]},{"embedding":[2.5]}]}"#;
        assert_eq!(
            parse_embeddings(body, 2).unwrap(),
            vec![vec![1.5], vec![2.5]]
        );
    }

    #[test]
    fn rejects_bad_answers() {
        let two = r#"{"data":[{"index":0,"embedding":[1]},{"index":1,"embedding":[2]}]}"#;
        assert!(parse_embeddings(two, 3).unwrap_err().contains("expected 3"));
        let dup = r#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#;
        assert!(parse_embeddings(dup, 2).unwrap_err().contains("twice"));
        let out = r#"{"data":[{"index":5,"embedding":[1]}]}"#;
        assert!(parse_embeddings(out, 1).unwrap_err().contains("index"));
        let ragged = r#"{"data":[{"index":0,"embedding":[1,2]},{"index":1,"embedding":[2]}]}"#;
        assert!(parse_embeddings(ragged, 2)
            .unwrap_err()
            .contains("dimension"));
        assert!(parse_embeddings("[]", 0)
            .unwrap_err()
            .contains("not an embeddings"));
        let empty = r#"{"data":[{"index":0,"embedding":[]}]}"#;
        assert!(parse_embeddings(empty, 1).unwrap_err().contains("empty"));
    }
}
