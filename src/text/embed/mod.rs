//! Embeddings `e_L` of the profiles (RLMRec section 3.2, DaRec section III-A; SPEC
//! sections 1 and 3): a local sentence-transformer, the vector store the trainers read, the
//! resumable profile-to-vector pipeline and importers for vectors made elsewhere.
//!
//! Submodules: `bert` ([`LocalEmbedder`]: any BERT-family sentence-transformer directory,
//! mean pooling + L2), `encoder` ([`FastBert`], its fused CPU forward pass) with its row
//! `kernels`, `vectors`
//! ([`SemanticVectors`] in safetensors), `pipeline` ([`embed_profiles`], chunked and
//! resumable), `npy` (a `.npy` reader) and `import` ([`import_vectors`]: `.npy`,
//! `.safetensors`, RLMRec's `usr_emb_np.pkl` / `itm_emb_np.pkl`).

mod bert;
pub mod encoder;
mod import;
pub mod kernels;
pub mod npy;
mod pipeline;
mod vectors;

pub use bert::{
    length_batches, pool_normalize, Backend, LocalEmbedder, DEFAULT_BATCH_SIZE, MODEL_FILES,
};
pub use encoder::FastBert;
pub use import::{import_vectors, read_matrix};
pub use pipeline::{embed_profiles, partial_path, text_sha, CacheKey, EmbedOptions, PartialCache};
pub use vectors::SemanticVectors;

/// The embedder named by a command-line spec: `local:<dir>` (a sentence-transformer
/// directory) or `openai:<url>#<model>` (with the client settings of `openai`). Returns the
/// embedder and a short tag for file names.
pub fn embedder_from_spec(
    spec: &str,
    openai: &crate::text::openai::OpenAiConfig,
) -> anyhow::Result<(Box<dyn crate::text::TextEmbedder>, String)> {
    if let Some(dir) = spec.strip_prefix("local:") {
        let dir = std::path::PathBuf::from(dir);
        let tag = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local".into());
        Ok((Box::new(LocalEmbedder::load(&dir)?), tag))
    } else if let Some(target) = spec.strip_prefix("openai:") {
        let c = openai.with_target(target)?;
        let tag = c.model.replace('/', "_");
        Ok((Box::new(crate::text::openai::OpenAiEmbedder::new(c)?), tag))
    } else {
        anyhow::bail!("--embedder must be local:<dir> or openai:<url>#<model>, got `{spec}`")
    }
}
