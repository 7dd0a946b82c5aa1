//! Clients for OpenAI-compatible HTTP servers (OpenAI, vLLM, llama.cpp's `llama-server`,
//! text-embeddings-inference, ...): the real path for writing profiles and embedding them
//! at dataset scale (SPEC section 3: SmolLM2 on 2 cores is too slow for a whole dataset).
//!
//! - [`OpenAiConfig`]: where the server is and how politely to talk to it.
//! - [`OpenAiChat`]: a [`crate::text::ChatModel`] over `POST {base_url}/chat/completions`.
//! - [`OpenAiEmbedder`]: a [`crate::text::TextEmbedder`] over `POST {base_url}/embeddings`.
//!
//! Both run up to `concurrency` requests at once on plain threads with the blocking `ureq`
//! client, share one [`RateLimiter`], and retry 429, 5xx, timeouts, connection errors and
//! malformed answers with exponential backoff and jitter (honouring `Retry-After`).

mod chat;
mod config;
mod embeddings;
mod http;
mod limiter;
mod pool;

pub use chat::OpenAiChat;
pub use config::OpenAiConfig;
pub use embeddings::OpenAiEmbedder;
pub use http::{backoff_delay, parse_retry_after};
pub use limiter::RateLimiter;
