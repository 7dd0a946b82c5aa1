//! Profile writers (RLMRec section 3.2, DaRec section III-A; SPEC section 1): one short
//! text per item and per user, written by a template, a local GGUF chat model or any
//! OpenAI-compatible chat server, kept in a resumable JSONL cache.
//!
//! Items are written first, then users, whose prompts list their training items with the
//! item profiles. Submodules: `template` (deterministic texts from side information),
//! `prompt` (RLMRec-style prompts, hashing, answer parsing), `cache` (the JSONL file),
//! `gguf_tokenizer` and `smollm` (the local SmolLM2 model), `writer` (the driver).

pub mod cache;
pub mod gguf_tokenizer;
pub mod prompt;
pub mod smollm;
pub mod template;
mod writer;

pub use cache::read_profiles;
pub use smollm::{LocalGguf, LocalOptions};
pub use writer::write_profiles;

use crate::text::ChatModel;
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

/// The writers `darec profile --writer` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WriterKind {
    /// Deterministic text from the dataset's side information (the default).
    #[default]
    Template,
    /// SmolLM2-135M-Instruct GGUF on the CPU ([`LocalGguf`]).
    Local,
    /// An OpenAI-compatible chat server.
    #[serde(rename = "openai")]
    OpenAi,
}

impl WriterKind {
    /// The `source` recorded with profiles of this writer.
    pub fn source(self) -> &'static str {
        match self {
            WriterKind::Template => "template",
            WriterKind::Local => "local",
            WriterKind::OpenAi => "openai",
        }
    }
}

impl std::str::FromStr for WriterKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "template" => Ok(WriterKind::Template),
            "local" => Ok(WriterKind::Local),
            "openai" => Ok(WriterKind::OpenAi),
            other => anyhow::bail!(
                "unknown profile writer `{other}` (expected template, local or openai)"
            ),
        }
    }
}

impl std::fmt::Display for WriterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.source())
    }
}

/// The conventional cache file of a dataset's profiles:
/// `<cache>/profiles/<dataset>/<writer>.jsonl` (`<cache>` is `$DAREC_CACHE` or `.cache`).
pub fn default_cache_path(dataset: &str, writer: WriterKind) -> std::path::PathBuf {
    crate::cache::cache_dir()
        .join("profiles")
        .join(dataset)
        .join(format!("{}.jsonl", writer.source()))
}

/// Where profile texts come from: the template, or a chat model.
pub trait ProfileSource: Sync {
    /// Recorded as [`Profile::source`]: `"template"`, `"local"` or `"openai"`.
    fn source(&self) -> String;
    /// Recorded as [`Profile::model`].
    fn model(&self) -> String;
    /// The chat model answering prompts; `None` for the template writer.
    fn chat(&self) -> Option<&dyn ChatModel>;
}

/// The deterministic template writer.
#[derive(Clone, Copy, Debug, Default)]
pub struct TemplateWriter;

/// Version tag hashed into template profiles (bump when the template wording changes).
pub const TEMPLATE_VERSION: &str = "template-v1";

impl ProfileSource for TemplateWriter {
    fn source(&self) -> String {
        "template".into()
    }
    fn model(&self) -> String {
        "template".into()
    }
    fn chat(&self) -> Option<&dyn ChatModel> {
        None
    }
}

/// Any chat model, with the `source` name its profiles carry (`"local"`, `"openai"`).
pub struct ChatWriter<'a> {
    pub model: &'a dyn ChatModel,
    pub source: String,
}

impl<'a> ChatWriter<'a> {
    pub fn new(model: &'a dyn ChatModel, source: impl Into<String>) -> Self {
        Self {
            model,
            source: source.into(),
        }
    }
}

impl ProfileSource for ChatWriter<'_> {
    fn source(&self) -> String {
        self.source.clone()
    }
    fn model(&self) -> String {
        self.model.name()
    }
    fn chat(&self) -> Option<&dyn ChatModel> {
        Some(self.model)
    }
}

/// Settings of a profile run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileOptions {
    /// Most tokens a model may write per profile.
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// Seeds sampling and the choice of listed items for users with many.
    pub seed: u64,
    /// Requests per `complete_batch` call.
    pub batch_size: usize,
    /// Most training items listed per user (drawn deterministically when more).
    pub max_user_items: usize,
    /// Only the first N items (dataset order); `None` = all.
    pub max_items: Option<usize>,
    /// Only the first N users (dataset order); `None` = all.
    pub max_users: Option<usize>,
    /// Show a progress bar; `None` = when stderr is a terminal.
    pub progress: Option<bool>,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            max_tokens: 200,
            temperature: 0.0,
            seed: 2024,
            batch_size: 16,
            max_user_items: 20,
            max_items: None,
            max_users: None,
            progress: None,
        }
    }
}

impl ProfileOptions {
    /// Generation settings as hashed into [`Profile::prompt_hash`]; the seed counts only
    /// when sampling.
    pub fn settings(&self) -> String {
        if self.temperature > 0.0 {
            format!(
                "max_tokens={};temperature={};seed={}",
                self.max_tokens, self.temperature, self.seed
            )
        } else {
            format!("max_tokens={};temperature=0", self.max_tokens)
        }
    }
}

/// What a profile run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    /// Item profiles written this run (fallbacks included).
    pub items_written: usize,
    /// User profiles written this run (fallbacks included).
    pub users_written: usize,
    /// Profiles taken from the cache unchanged.
    pub reused: usize,
    /// Answers without a usable `summarization`, replaced by the template text.
    pub fallbacks: usize,
    pub seconds: f64,
}
