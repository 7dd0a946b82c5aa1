//! Profile writers (RLMRec section 3.2, DaRec section III-A): one short text per item and
//! per user, written by a template, a local GGUF chat model or any OpenAI-compatible chat
//! server, kept in a resumable JSONL cache.

use serde::{Deserialize, Serialize};

/// Whether a profile describes an item or a user.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    Item,
    User,
}

/// One profile: the text that will be embedded into `e_L`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub kind: ProfileKind,
    /// External id (as in the data files).
    pub id: String,
    pub text: String,
    /// `"template"`, `"local"`, `"openai"` or `"fallback"`.
    pub source: String,
    pub model: String,
    /// sha256 hex of system prompt + user prompt + model name + generation settings.
    pub prompt_hash: String,
}
