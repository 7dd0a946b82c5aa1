//! The semantic side (RLMRec section 3.2, DaRec section III-A): text profiles of items and
//! users written by a language model or a template, and their embeddings `e_L`.
//!
//! Two small traits connect the parts: [`ChatModel`] (local GGUF model, or any
//! OpenAI-compatible chat server) writes profiles; [`TextEmbedder`] (local
//! sentence-transformer, or any OpenAI-compatible embeddings server) turns them into
//! vectors.

pub mod embed;
pub mod openai;
pub mod profile;

/// One chat completion request.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub system: String,
    pub user: String,
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// Seed for sampling (ignored when greedy or unsupported by a server).
    pub seed: u64,
}

/// Something that answers chat prompts.
pub trait ChatModel: Send + Sync {
    /// Model identifier recorded with every profile (e.g. `smollm2-135m-instruct-q4_1`).
    fn name(&self) -> String;
    /// One answer per request, in order; each may fail on its own. Implementations may
    /// run requests concurrently.
    fn complete_batch(&self, requests: &[ChatRequest]) -> Vec<anyhow::Result<String>>;
}

/// Something that turns texts into fixed-size vectors.
pub trait TextEmbedder: Send + Sync {
    /// Model identifier recorded with the vectors.
    fn name(&self) -> String;
    /// Output dimension.
    fn dim(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>>;
}
