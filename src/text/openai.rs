//! TODO (OpenAI-compatible clients)
