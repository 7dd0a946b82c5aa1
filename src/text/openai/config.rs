//! Settings of an OpenAI-compatible client: server, model, API key, concurrency, retries,
//! timeouts, rate limit and embedding batch size.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Where an OpenAI-compatible server is and how to talk to it. Every field has a default
/// (serde fills missing ones), so a TOML table with `base_url` and `model` is enough.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// API root, including the version, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name sent with every request.
    pub model: String,
    /// Name of the environment variable holding the API key. `None`: use
    /// `OPENAI_API_KEY` when it is set, else send no `Authorization` header.
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retries after the first attempt (so at most `max_retries + 1` requests per call).
    pub max_retries: usize,
    /// Whole-request timeout in seconds (connect, send, wait, read).
    pub timeout_s: f64,
    /// Upper bound on requests started per minute, shared by all threads (`None`: no limit).
    pub requests_per_minute: Option<f64>,
    /// First backoff delay; doubles on every retry.
    pub backoff_initial_ms: u64,
    /// Cap of the backoff delay, and of a server's `Retry-After`.
    pub backoff_max_ms: u64,
    /// Texts per embeddings request.
    pub batch_size: usize,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080/v1".into(),
            model: String::new(),
            api_key_env: None,
            concurrency: 4,
            max_retries: 5,
            timeout_s: 60.0,
            requests_per_minute: None,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            batch_size: 64,
        }
    }
}

/// The environment variable read when `api_key_env` is not given.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

impl OpenAiConfig {
    /// A default configuration for `base_url` and `model`.
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            ..Self::default()
        }
    }

    /// Parses the command-line form `<url>#<model>` (e.g.
    /// `http://127.0.0.1:8080/v1#text-embedding-3-small`); other fields take defaults.
    pub fn from_target(target: &str) -> anyhow::Result<Self> {
        Self::default().with_target(target)
    }

    /// These settings (timeouts, retries, concurrency... from the run config's `[openai]`
    /// section) aimed at the server and model of `<url>#<model>`.
    pub fn with_target(&self, target: &str) -> anyhow::Result<Self> {
        let Some((url, model)) = target.split_once('#') else {
            bail!("`{target}` is not <url>#<model> (e.g. http://127.0.0.1:8080/v1#my-model)");
        };
        let cfg = Self {
            base_url: url.into(),
            model: model.into(),
            ..self.clone()
        };
        cfg.validate()
            .with_context(|| format!("in OpenAI target `{target}`"))?;
        Ok(cfg)
    }

    /// Checks every field; the message names the field and the bad value.
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            bail!(
                "openai.base_url must be an http:// or https:// URL such as \
                 http://127.0.0.1:8080/v1, got `{}`",
                self.base_url
            );
        }
        if self.model.trim().is_empty() {
            bail!("openai.model must name the server's model, got an empty string");
        }
        if self.concurrency == 0 {
            bail!("openai.concurrency must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("openai.batch_size must be at least 1");
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            bail!(
                "openai.timeout_s must be a positive number of seconds, got {}",
                self.timeout_s
            );
        }
        if let Some(rpm) = self.requests_per_minute {
            if !(rpm.is_finite() && rpm > 0.0) {
                bail!("openai.requests_per_minute must be positive, got {rpm}");
            }
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            bail!(
                "openai.backoff_initial_ms ({}) must not exceed openai.backoff_max_ms ({})",
                self.backoff_initial_ms,
                self.backoff_max_ms
            );
        }
        if let Some(var) = &self.api_key_env {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                bail!("openai.api_key_env must name an environment variable, got `{var}`");
            }
        }
        Ok(())
    }

    /// The API key from the environment: the variable named by `api_key_env` (an error if
    /// it is unset or empty), else `OPENAI_API_KEY` if set, else none.
    pub fn api_key(&self) -> anyhow::Result<Option<String>> {
        match &self.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_string())),
                _ => bail!(
                    "openai.api_key_env names `{var}`, but that environment variable is \
                     not set (or empty)"
                ),
            },
            None => Ok(std::env::var(DEFAULT_API_KEY_ENV)
                .ok()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())),
        }
    }

    /// `{base_url}/{path}` with exactly one slash between them.
    pub fn endpoint(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.base_url.trim().trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_documentation() {
        let c = OpenAiConfig::default();
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.max_retries, 5);
        assert_eq!(c.timeout_s, 60.0);
        assert_eq!(c.backoff_initial_ms, 500);
        assert_eq!(c.backoff_max_ms, 30_000);
        assert_eq!(c.batch_size, 64);
        assert_eq!(c.requests_per_minute, None);
    }

    #[test]
    fn endpoint_joins_with_one_slash() {
        let c = OpenAiConfig::new("http://h:1/v1/", "m");
        assert_eq!(c.endpoint("/embeddings"), "http://h:1/v1/embeddings");
        let c = OpenAiConfig::new("http://h:1/v1", "m");
        assert_eq!(
            c.endpoint("chat/completions"),
            "http://h:1/v1/chat/completions"
        );
    }

    #[test]
    fn from_target_splits_on_first_hash() {
        let c = OpenAiConfig::from_target("http://127.0.0.1:9/v1#org/model#2").unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(c.model, "org/model#2");
        assert!(OpenAiConfig::from_target("http://127.0.0.1:9/v1").is_err());
        assert!(OpenAiConfig::from_target("http://127.0.0.1:9/v1#").is_err());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let ok = OpenAiConfig::new("http://127.0.0.1:8080/v1", "m");
        ok.validate().unwrap();
        let cases: Vec<(OpenAiConfig, &str)> = vec![
            (
                OpenAiConfig {
                    concurrency: 0,
                    ..ok.clone()
                },
                "concurrency",
            ),
            (
                OpenAiConfig {
                    batch_size: 0,
                    ..ok.clone()
                },
                "batch_size",
            ),
            (
                OpenAiConfig {
                    timeout_s: 0.0,
                    ..ok.clone()
                },
                "timeout_s",
            ),
            (
                OpenAiConfig {
                    timeout_s: f64::NAN,
                    ..ok.clone()
                },
                "timeout_s",
            ),
            (
                OpenAiConfig {
                    requests_per_minute: Some(0.0),
                    ..ok.clone()
                },
                "requests_per_minute",
            ),
            (
                OpenAiConfig {
                    model: " ".into(),
                    ..ok.clone()
                },
                "model",
            ),
            (
                OpenAiConfig {
                    base_url: "127.0.0.1:8080".into(),
                    ..ok.clone()
                },
                "base_url",
            ),
            (
                OpenAiConfig {
                    backoff_initial_ms: 10,
                    backoff_max_ms: 5,
                    ..ok.clone()
                },
                "backoff",
            ),
        ];
        for (cfg, field) in cases {
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(msg.contains(field), "`{msg}` should name {field}");
        }
    }

    #[test]
    fn serde_fills_defaults_and_rejects_typos() {
        let c: OpenAiConfig =
            serde_json::from_str(r#"{"base_url":"http://x:1/v1","model":"m","concurrency":2}"#)
                .unwrap();
        assert_eq!(c.concurrency, 2);
        assert_eq!(c.batch_size, 64);
        assert!(serde_json::from_str::<OpenAiConfig>(r#"{"modle":"m"}"#).is_err());
    }

    #[test]
    fn named_key_variable_must_be_set() {
        let c = OpenAiConfig {
            api_key_env: Some("DAREC_TEST_SURELY_UNSET_KEY_VAR_93172".into()),
            ..OpenAiConfig::new("http://x:1/v1", "m")
        };
        let msg = c.api_key().unwrap_err().to_string();
        assert!(msg.contains("DAREC_TEST_SURELY_UNSET_KEY_VAR_93172"));
    }
}
