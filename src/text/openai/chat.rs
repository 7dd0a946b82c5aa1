//! [`OpenAiChat`]: a [`ChatModel`] over `POST {base_url}/chat/completions` of any
//! OpenAI-compatible server; one request per prompt, up to `concurrency` at once.

use super::config::OpenAiConfig;
use super::http::JsonClient;
use super::pool::run_indexed;
use crate::text::{ChatModel, ChatRequest};
use serde_json::{json, Value};

/// Chat completions from an OpenAI-compatible server.
#[derive(Debug)]
pub struct OpenAiChat {
    cfg: OpenAiConfig,
    url: String,
    client: JsonClient,
}

impl OpenAiChat {
    /// A client for `cfg`; fails on an invalid config or a named but unset API-key
    /// variable. Does not contact the server.
    pub fn new(cfg: OpenAiConfig) -> anyhow::Result<Self> {
        let client = JsonClient::new(&cfg)?;
        Ok(Self {
            url: cfg.endpoint("chat/completions"),
            cfg,
            client,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// The request body for one prompt.
    pub fn request_body(&self, r: &ChatRequest) -> Value {
        json!({
            "model": self.cfg.model,
            "messages": [
                {"role": "system", "content": r.system},
                {"role": "user", "content": r.user},
            ],
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
            "seed": r.seed,
        })
    }

    /// One prompt, with retries.
    pub fn complete(&self, r: &ChatRequest) -> anyhow::Result<String> {
        self.client
            .post(&self.url, &self.request_body(r), parse_chat_answer)
    }
}

/// `choices[0].message.content` of a chat completion, or why it is missing.
pub(crate) fn parse_chat_answer(body: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("no `choices` array")?;
    let first = choices.first().ok_or("`choices` is empty")?;
    first
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "no string at `choices[0].message.content`".to_string())
}

impl ChatModel for OpenAiChat {
    /// `openai:<model>`.
    fn name(&self) -> String {
        format!("openai:{}", self.cfg.model)
    }

    fn complete_batch(&self, requests: &[ChatRequest]) -> Vec<anyhow::Result<String>> {
        run_indexed(requests.len(), self.cfg.concurrency, |i| {
            self.complete(&requests[i])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_first_choice() {
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"hi"}},
                       {"message":{"content":"other"}}]}"#;
        assert_eq!(parse_chat_answer(body).unwrap(), "hi");
    }

    #[test]
    fn explains_what_is_missing() {
        assert!(parse_chat_answer("{").unwrap_err().contains("not JSON"));
        assert!(parse_chat_answer("{}").unwrap_err().contains("choices"));
        assert!(parse_chat_answer(r#"{"choices":[]}"#)
            .unwrap_err()
            .contains("empty"));
        let null_content = r#"{"choices":[{"message":{"content":null}}]}"#;
        assert!(parse_chat_answer(null_content)
            .unwrap_err()
            .contains("content"));
    }

    #[test]
    fn body_has_the_documented_fields() {
        let chat = OpenAiChat::new(OpenAiConfig::new("http://127.0.0.1:9/v1", "m1")).unwrap();
        let b = chat.request_body(&ChatRequest {
            system: "sys".into(),
            user: "usr".into(),
            max_tokens: 7,
            temperature: 0.0,
            seed: 3,
        });
        assert_eq!(b["model"], "m1");
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["messages"][0]["content"], "sys");
        assert_eq!(b["messages"][1]["role"], "user");
        assert_eq!(b["messages"][1]["content"], "usr");
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["temperature"], 0.0);
        assert_eq!(b["seed"], 3);
        assert_eq!(chat.name(), "openai:m1");
    }
}
