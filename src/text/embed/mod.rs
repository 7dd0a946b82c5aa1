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
